using Microsoft.Win32.SafeHandles;

namespace PgSpec.Cli;

/// <summary>The process entry point of the <c>pgspec</c> tool.</summary>
public static class Program
{
    /// <summary>Runs the tool on the process's standard streams.</summary>
    public static int Main(string[] args)
    {
        using Stream stdin = Console.OpenStandardInput();
        using Stream stdout = OpenStandardOutput();
        return PgSpecCommandLine.Run(args, stdin, stdout, Console.Error);
    }

    /// <summary>
    /// Standard output as a stream of its own: .NET's console streams share one lock for standard
    /// output and standard error, so a write blocked on a pipe nobody reads (the proxy's trace)
    /// would also block every note on standard error. On Unix, descriptor 1 is written directly.
    /// </summary>
    private static Stream OpenStandardOutput()
        => OperatingSystem.IsWindows()
            ? Console.OpenStandardOutput()
            : new FileStream(new SafeFileHandle(1, ownsHandle: false), FileAccess.Write, bufferSize: 0);
}
