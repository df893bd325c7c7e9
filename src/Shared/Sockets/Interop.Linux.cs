using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace PgSpec.Sockets;

/// <summary>The Linux system calls of the epoll socket engine (libc).</summary>
internal static unsafe partial class LinuxInterop
{
    private const string Libc = "libc";

    public const int EAGAIN = 11;
    public const int EINTR = 4;
    public const int EINPROGRESS = 115;

    public const uint EPOLLIN = 0x001;
    public const uint EPOLLOUT = 0x004;
    public const uint EPOLLERR = 0x008;
    public const uint EPOLLHUP = 0x010;
    public const uint EPOLLRDHUP = 0x2000;
    public const uint EPOLLET = 0x80000000;

    public const int EPOLL_CTL_ADD = 1;
    public const int EPOLL_CTL_DEL = 2;
    public const int EPOLL_CLOEXEC = 0x80000;
    public const int EFD_CLOEXEC = 0x80000;
    public const int EFD_NONBLOCK = 0x800;

    public const int MSG_PEEK = 0x02;
    public const int MSG_DONTWAIT = 0x40;
    public const int MSG_NOSIGNAL = 0x4000;

    public const int SHUT_WR = 1;
    private const int F_GETFL = 3;
    private const int F_SETFL = 4;
    private const int O_NONBLOCK = 0x800;
    private const int SOL_SOCKET = 1;
    private const int SO_ERROR = 4;
    private const int FIONREAD = 0x541B;

    /// <summary>struct epoll_event is packed (12 bytes) on x86-64 and naturally aligned (16) elsewhere.</summary>
    public static readonly int EpollEventSize = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 12 : 16;

    public static readonly int EpollDataOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 4 : 8;

    [LibraryImport(Libc, EntryPoint = "epoll_create1", SetLastError = true)]
    public static partial int EpollCreate(int flags);

    [LibraryImport(Libc, EntryPoint = "epoll_ctl", SetLastError = true)]
    private static partial int EpollCtl(int epoll, int operation, int fd, byte* events);

    [LibraryImport(Libc, EntryPoint = "epoll_wait", SetLastError = true)]
    public static partial int EpollWait(int epoll, byte* events, int maxEvents, int timeout);

    [LibraryImport(Libc, EntryPoint = "eventfd", SetLastError = true)]
    public static partial int EventFd(uint initial, int flags);

    [LibraryImport(Libc, EntryPoint = "read", SetLastError = true)]
    public static partial nint Read(int fd, byte* buffer, nint count);

    [LibraryImport(Libc, EntryPoint = "write", SetLastError = true)]
    public static partial nint Write(int fd, byte* buffer, nint count);

    [LibraryImport(Libc, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport(Libc, EntryPoint = "recv", SetLastError = true)]
    public static partial nint Recv(int fd, byte* buffer, nint length, int flags);

    [LibraryImport(Libc, EntryPoint = "send", SetLastError = true)]
    public static partial nint Send(int fd, byte* buffer, nint length, int flags);

    [LibraryImport(Libc, EntryPoint = "connect", SetLastError = true)]
    public static partial int Connect(int fd, byte* address, int length);

    [LibraryImport(Libc, EntryPoint = "shutdown", SetLastError = true)]
    public static partial int Shutdown(int fd, int how);

    [LibraryImport(Libc, EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(int fd, int command, int argument);

    [LibraryImport(Libc, EntryPoint = "getsockopt", SetLastError = true)]
    private static partial int GetSockOpt(int fd, int level, int name, int* value, int* length);

    [LibraryImport(Libc, EntryPoint = "ioctl", SetLastError = true)]
    private static partial int Ioctl(int fd, nuint request, int* value);

    /// <summary>Adds a descriptor to an epoll set with the given events and user data.</summary>
    public static int EpollAdd(int epoll, int fd, uint events, ulong data)
    {
        byte* entry = stackalloc byte[16];
        *(uint*)entry = events;
        *(ulong*)(entry + EpollDataOffset) = data;
        return EpollCtl(epoll, EPOLL_CTL_ADD, fd, entry);
    }

    public static int EpollRemove(int epoll, int fd)
    {
        byte* entry = stackalloc byte[16];
        return EpollCtl(epoll, EPOLL_CTL_DEL, fd, entry);
    }

    public static int SetNonBlocking(int fd)
    {
        int flags = Fcntl(fd, F_GETFL, 0);
        return flags < 0 ? flags : Fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    }

    /// <summary>The pending error of a socket (SO_ERROR), which a non-blocking connect leaves there; -1 if it cannot be read.</summary>
    public static int SocketError(int fd)
    {
        int value = 0;
        int length = sizeof(int);
        return GetSockOpt(fd, SOL_SOCKET, SO_ERROR, &value, &length) == 0 ? value : Marshal.GetLastPInvokeError();
    }

    /// <summary>Bytes waiting to be read (FIONREAD), or -1.</summary>
    public static int Available(int fd)
    {
        int value = 0;
        return Ioctl(fd, FIONREAD, &value) == 0 ? value : -1;
    }

    /// <summary>A SocketException for an errno value, with the system's text for it.</summary>
    public static SocketException Error(int errno)
    {
        SocketError code = errno switch
        {
            2 => System.Net.Sockets.SocketError.AddressNotAvailable,     // ENOENT: no such socket file
            11 => System.Net.Sockets.SocketError.WouldBlock,             // EAGAIN
            13 => System.Net.Sockets.SocketError.AccessDenied,           // EACCES
            32 => System.Net.Sockets.SocketError.Shutdown,               // EPIPE
            99 => System.Net.Sockets.SocketError.AddressNotAvailable,    // EADDRNOTAVAIL
            101 => System.Net.Sockets.SocketError.NetworkUnreachable,    // ENETUNREACH
            103 => System.Net.Sockets.SocketError.ConnectionAborted,     // ECONNABORTED
            104 => System.Net.Sockets.SocketError.ConnectionReset,       // ECONNRESET
            107 => System.Net.Sockets.SocketError.NotConnected,          // ENOTCONN
            110 => System.Net.Sockets.SocketError.TimedOut,              // ETIMEDOUT
            111 => System.Net.Sockets.SocketError.ConnectionRefused,     // ECONNREFUSED
            113 => System.Net.Sockets.SocketError.HostUnreachable,       // EHOSTUNREACH
            _ => System.Net.Sockets.SocketError.SocketError,
        };
        return new SocketException((int)code, Marshal.GetPInvokeErrorMessage(errno));
    }
}
