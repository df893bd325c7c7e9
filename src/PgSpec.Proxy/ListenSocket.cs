using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace PgSpec.Proxy;

/// <summary>The proxy cannot listen where it was told to: the message says why, in words a user can act on.</summary>
public sealed class PgProxyStartException : Exception
{
    /// <summary>Creates the exception.</summary>
    public PgProxyStartException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}

/// <summary>
/// The listening socket. A Unix-domain socket is guarded as PostgreSQL guards its own: a lock file
/// beside it (<c>PATH.lock</c>, holding the process id, locked while the proxy runs) keeps a second
/// proxy from taking the path over; a socket left by a process that is gone is replaced; a live
/// listener or a file that is not a socket is refused; and on exit the socket is removed only if
/// it is still the one this proxy made.
/// </summary>
internal sealed class ListenSocket : IDisposable
{
    private readonly ProxyEndpoint _endpoint;
    private FileStream? _lock;
    private string? _lockPath;
    private (ulong Device, ulong Inode)? _identity;
    private (ulong Device, ulong Inode)? _lockIdentity;

    private ListenSocket(ProxyEndpoint endpoint, Socket socket)
    {
        _endpoint = endpoint;
        Socket = socket;
    }

    public Socket Socket { get; }

    /// <summary>Binds and listens; throws <see cref="PgProxyStartException"/> with the reason.</summary>
    public static ListenSocket Open(ProxyEndpoint endpoint, int backlog, UnixFileMode permissions)
    {
        Socket socket = endpoint.CreateSocket();
        var listen = new ListenSocket(endpoint, socket);
        try
        {
            if (endpoint.EndPoint is UnixDomainSocketEndPoint unix)
            {
                listen.PrepareUnixPath(unix.ToString());
            }
            else
            {
                // A restart may bind while old connections linger in TIME_WAIT. Only SO_REUSEADDR: .NET's
                // ReuseAddress also sets SO_REUSEPORT on Linux, which would let a second server share the port.
                if (OperatingSystem.IsLinux())
                {
                    socket.SetRawSocketOption(1 /* SOL_SOCKET */, 2 /* SO_REUSEADDR */, BitConverter.GetBytes(1));
                }
            }

            EndPoint bindTo = endpoint.EndPoint;
            if (endpoint.EndPoint is DnsEndPoint dns)
            {
                IPAddress[] addresses;
                try
                {
                    addresses = Dns.GetHostAddresses(dns.Host);
                }
                catch (SocketException e)
                {
                    throw new PgProxyStartException($"cannot listen on {endpoint}: the host name '{dns.Host}' does not resolve ({e.Message})", e);
                }

                bindTo = new IPEndPoint(addresses[0], dns.Port);
            }

            try
            {
                socket.Bind(bindTo);
                socket.Listen(backlog);
            }
            catch (SocketException e)
            {
                throw new PgProxyStartException($"cannot listen on {endpoint}: {Explain(e)}", e);
            }

            if (endpoint.EndPoint is UnixDomainSocketEndPoint bound)
            {
                listen._identity = UnixFile.Identify(bound.ToString());
                if (!OperatingSystem.IsWindows())
                {
                    File.SetUnixFileMode(bound.ToString(), permissions);
                }
            }

            return listen;
        }
        catch
        {
            listen.Dispose();
            throw;
        }
    }

    private static string Explain(SocketException e) => e.SocketErrorCode switch
    {
        SocketError.AddressAlreadyInUse => "the address is in use (another program listens there, or a connection of this machine uses that port)",
        SocketError.AccessDenied => "permission denied",
        SocketError.AddressNotAvailable => "this machine has no such address",
        _ => e.Message,
    };

    private void PrepareUnixPath(string path)
    {
        string directory = Path.GetDirectoryName(Path.GetFullPath(path)) ?? "/";
        if (!Directory.Exists(directory))
        {
            throw new PgProxyStartException($"cannot listen on unix:{path}: the directory {directory} does not exist");
        }

        TakeLock(path);
        if (!File.Exists(path) && !Directory.Exists(path))
        {
            return;
        }

        if (Directory.Exists(path) || UnixFile.IsSocket(path) == false)
        {
            throw new PgProxyStartException($"cannot listen on unix:{path}: the path exists and is not a socket (the proxy removes only sockets)");
        }

        // A socket is there: a live listener keeps it; one left behind by a process that is gone goes.
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            throw new PgProxyStartException($"cannot listen on unix:{path}: another process is listening on that socket");
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused)
        {
            File.Delete(path);
        }
        catch (SocketException e)
        {
            throw new PgProxyStartException($"cannot listen on unix:{path}: a socket is there and cannot be checked: {e.Message}", e);
        }
    }

    /// <summary>What a lock file of this proxy holds: the process id, then this line.</summary>
    private const string LockMarker = "pgspec proxy";

    /// <summary>
    /// Creates PATH.lock, as PostgreSQL creates its own: never through a link, never over a file
    /// that is there (O_CREAT|O_EXCL); it stays locked (flock) while the proxy runs. A lock file
    /// left by a proxy that is gone (its format, and no lock on it) is replaced; anything else at
    /// that path is left alone and refused.
    /// </summary>
    private void TakeLock(string path)
    {
        string lockPath = path + ".lock";
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                // FileMode.CreateNew is O_CREAT|O_EXCL, which follows no link; FileShare.None takes an
                // exclusive advisory lock (flock) on Unix, held while the file is open.
                _lock = new FileStream(lockPath, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
                break;
            }
            catch (IOException e) when (attempt < 3 && (File.Exists(lockPath) || UnixFile.Identify(lockPath) is not null))
            {
                RemoveStaleLock(path, lockPath, e);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new PgProxyStartException($"cannot listen on unix:{path}: cannot create its lock file {lockPath}: {e.Message}", e);
            }
        }

        _lockPath = lockPath;
        _lockIdentity = UnixFile.Identify(lockPath);
        byte[] content = System.Text.Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n" + LockMarker + "\n");
        _lock.Write(content);
        _lock.Flush();
    }

    /// <summary>
    /// Removes a lock file that a proxy which is gone left behind, and refuses anything else: a
    /// file that is not a regular one, belongs to another user, has another format, is locked, or
    /// names a process that still runs. The file is removed while this proxy holds its lock, and
    /// only if the path still names the file that was checked, so two proxies starting together
    /// cannot both take over.
    /// </summary>
    private static void RemoveStaleLock(string path, string lockPath, Exception cause)
    {
        if (UnixFile.Describe(lockPath) is { } described)
        {
            if (!described.Regular)
            {
                throw new PgProxyStartException($"cannot listen on unix:{path}: {lockPath} exists and is not a lock file of pgspec proxy (it is not a regular file); remove it if nothing uses that socket", cause);
            }

            if (described.Owner != UnixFile.CurrentUser)
            {
                throw new PgProxyStartException($"cannot listen on unix:{path}: {lockPath} belongs to another user (uid {described.Owner}); it is left alone", cause);
            }
        }

        FileStream existing;
        try
        {
            // FileShare.None waits for no one: it fails at once while a running proxy holds the lock.
            existing = new FileStream(lockPath, FileMode.Open, FileAccess.Read, FileShare.None);
        }
        catch (IOException e) when (File.Exists(lockPath))
        {
            throw new PgProxyStartException($"cannot listen on unix:{path}: another pgspec proxy is listening there (it holds the lock file {lockPath})", e);
        }

        using (existing)
        {
            if (UnixFile.Identify(existing.SafeFileHandle) is { } held && UnixFile.Identify(lockPath) is { } named && held != named)
            {
                throw new PgProxyStartException($"cannot listen on unix:{path}: {lockPath} changed while it was checked (another proxy is starting?)", cause);
            }

            byte[] head = new byte[64];
            string content = System.Text.Encoding.ASCII.GetString(head, 0, existing.Read(head));
            string[] lines = content.Split('\n');
            if (lines.Length < 2 || !int.TryParse(lines[0], NumberStyles.None, CultureInfo.InvariantCulture, out int pid) || lines[1] != LockMarker)
            {
                throw new PgProxyStartException($"cannot listen on unix:{path}: {lockPath} exists and was not written by pgspec proxy; remove it if nothing uses that socket", cause);
            }

            if (pid != Environment.ProcessId && UnixFile.ProcessRuns(pid))
            {
                // As PostgreSQL: a lock whose process still runs is not taken over (with file locks off,
                // DOTNET_SYSTEM_IO_DISABLEFILELOCKING, this is what keeps two proxies apart).
                throw new PgProxyStartException($"cannot listen on unix:{path}: process {pid}, which wrote {lockPath}, still runs; if it is not a pgspec proxy, remove the lock file", cause);
            }

            // Removed while this proxy holds its lock: whoever opens the path next finds no file, or its own.
            File.Delete(lockPath);
        }
    }

    /// <summary>Closes the socket; removes a Unix socket (if it is still this proxy's) and its lock file.</summary>
    public void Dispose()
    {
        Socket.Dispose();
        if (_endpoint.EndPoint is UnixDomainSocketEndPoint unix && _lock is not null)
        {
            string path = unix.ToString();
            try
            {
                if (_identity is { } mine && UnixFile.Identify(path) is { } now && now == mine)
                {
                    File.Delete(path);
                }
            }
            catch (IOException)
            {
            }

            try
            {
                if (_lockPath is not null && _lockIdentity is { } lockMine && UnixFile.Identify(_lockPath) is { } lockNow && lockNow == lockMine)
                {
                    File.Delete(_lockPath);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }
        }

        _lock?.Dispose();
        _lock = null;
    }
}

/// <summary>The type and identity of a file, from <c>statx</c> (Linux); unknown elsewhere.</summary>
internal static unsafe partial class UnixFile
{
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxType = 0x1;
    private const uint StatxIno = 0x100;
    private const uint StatxUid = 0x8;
    private const int AtEmptyPath = 0x1000;
    private const int SocketType = 0xC000;
    private const int RegularType = 0x8000;
    private const int TypeMask = 0xF000;

    /// <summary>True for a socket, false for anything else, null when it cannot be told (not Linux, or no such file).</summary>
    public static bool? IsSocket(string path)
        => Stat(path) is { } stat ? (stat.Mode & TypeMask) == SocketType : null;

    /// <summary>True for a regular file (not a link to one), false for anything else, null when it cannot be told.</summary>
    public static bool? IsRegularFile(string path)
        => Stat(path) is { } stat ? (stat.Mode & TypeMask) == RegularType : null;

    /// <summary>The device and inode of a file; null when it cannot be told.</summary>
    public static (ulong Device, ulong Inode)? Identify(string path)
        => Stat(path) is { } stat ? (stat.Device, stat.Inode) : null;

    /// <summary>The device and inode of an open file; null when they cannot be told.</summary>
    public static (ulong Device, ulong Inode)? Identify(Microsoft.Win32.SafeHandles.SafeFileHandle handle)
    {
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            return Stat((int)handle.DangerousGetHandle(), "", AtEmptyPath) is { } stat ? (stat.Device, stat.Inode) : null;
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    /// <summary>Whether a file (not followed through a link) is a regular one, and its owner; null when it cannot be told.</summary>
    public static (bool Regular, uint Owner)? Describe(string path)
        => Stat(path) is { } stat ? ((stat.Mode & TypeMask) == RegularType, stat.Owner) : null;

    /// <summary>The user this process runs as.</summary>
    public static uint CurrentUser => OperatingSystem.IsLinux() ? GetUid() : 0;

    /// <summary>Whether a process with this id runs (it may belong to another user); false where it cannot be told.</summary>
    public static bool ProcessRuns(int pid)
    {
        if (!OperatingSystem.IsLinux() || pid <= 0)
        {
            return false;
        }

        const int EPERM = 1;
        return Kill(pid, 0) == 0 || Marshal.GetLastPInvokeError() == EPERM;
    }

    private static (int Mode, ulong Device, ulong Inode, uint Owner)? Stat(string path) => Stat(AtFdCwd, path, AtSymlinkNoFollow);

    private static (int Mode, ulong Device, ulong Inode, uint Owner)? Stat(int directory, string path, int flags)
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }

        byte* buffer = stackalloc byte[256];
        try
        {
            if (Statx(directory, path, flags, StatxType | StatxIno | StatxUid, buffer) != 0)
            {
                return null;
            }
        }
        catch (EntryPointNotFoundException)
        {
            return null;
        }

        // struct statx: stx_uid (u32) at 20, stx_mode (u16) at 28, stx_ino (u64) at 32, stx_dev_major/minor (u32) at 136/140.
        uint owner = *(uint*)(buffer + 20);
        int mode = *(ushort*)(buffer + 28);
        ulong inode = *(ulong*)(buffer + 32);
        ulong device = ((ulong)*(uint*)(buffer + 136) << 32) | *(uint*)(buffer + 140);
        return (mode, device, inode, owner);
    }

    [LibraryImport("libc", EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Statx(int directory, string path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", EntryPoint = "getuid")]
    private static partial uint GetUid();

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}
