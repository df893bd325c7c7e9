using System.Runtime.InteropServices;

namespace PgSpec.Sockets;

/// <summary>The process's limit of open files (Linux).</summary>
internal static unsafe partial class FileDescriptors
{
    private const int RlimitNoFile = 7;

    /// <summary>Raises the soft limit of open files to the hard limit, as servers do; returns the limit in force (0 where it is not known).</summary>
    public static long RaiseToHardLimit()
    {
        if (!OperatingSystem.IsLinux())
        {
            return 0;
        }

        ulong* limit = stackalloc ulong[2];
        try
        {
            if (GetRlimit(RlimitNoFile, limit) != 0)
            {
                return 0;
            }

            if (limit[0] < limit[1])
            {
                ulong soft = limit[0];
                limit[0] = limit[1];
                if (SetRlimit(RlimitNoFile, limit) != 0)
                {
                    limit[0] = soft;
                }
            }
        }
        catch (EntryPointNotFoundException)
        {
            return 0;
        }

        return limit[0] > long.MaxValue ? long.MaxValue : (long)limit[0];
    }

    [LibraryImport("libc", EntryPoint = "getrlimit", SetLastError = true)]
    private static partial int GetRlimit(int resource, ulong* limit);

    [LibraryImport("libc", EntryPoint = "setrlimit", SetLastError = true)]
    private static partial int SetRlimit(int resource, ulong* limit);
}
