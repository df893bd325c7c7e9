using System.Net;
using System.Net.Sockets;

namespace PgSpec.Sockets;

/// <summary>A connected stream socket, to a client or to a server.</summary>
internal abstract class EngineSocket : IDisposable
{
    /// <summary>The socket's bytes as a stream (not owning the socket).</summary>
    public abstract Stream Stream { get; }

    /// <summary>Bytes that can be read now without waiting.</summary>
    public abstract int Available { get; }

    /// <summary>Waits for bytes and copies them without taking them; 0 at the end of the stream.</summary>
    public abstract ValueTask<int> PeekAsync(Memory<byte> buffer, CancellationToken cancellationToken);

    /// <summary>Tells the peer nothing more will be sent (errors are ignored: the connection is ending).</summary>
    public abstract void ShutdownSend();

    /// <summary>Closes the socket; waiting operations end with <see cref="ObjectDisposedException"/>.</summary>
    public abstract void Dispose();
}

/// <summary>Makes sockets: adopts accepted ones and connects to servers.</summary>
internal abstract class SocketEngine : IDisposable
{
    /// <summary>
    /// The engine to use: epoll on Linux unless <paramref name="epoll"/> says otherwise (false: .NET's
    /// sockets; true: epoll, and an error elsewhere). Continuations run on the event threads when
    /// <paramref name="inlineCompletions"/> is set (nothing on the path blocks or costs much), else on
    /// the thread pool. With <paramref name="sharedEpoll"/>, the event threads wait on one epoll set
    /// (a ready socket goes to whichever is free) instead of one set each. An event thread polls for
    /// up to <paramref name="spin"/> before it sleeps (see <see cref="EventSpin"/>; zero: never).
    /// </summary>
    public static SocketEngine Create(bool? epoll, bool inlineCompletions, int ioThreads, Action<string>? log, bool sharedEpoll = false, TimeSpan spin = default)
    {
        if (epoll == true && !OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("the epoll socket engine needs Linux");
        }

        if (!(epoll ?? OperatingSystem.IsLinux()))
        {
            return new SystemSocketEngine();
        }

        return new EpollSocketEngine(ioThreads > 0 ? ioThreads : DefaultIoThreads, sharedEpoll, inlineCompletions, log, spin);
    }

    /// <summary>One event thread per four processors, at least one.</summary>
    public static int DefaultIoThreads => Math.Max(1, Environment.ProcessorCount / 4);

    /// <summary>A line for the start-up note, e.g. "epoll, 1 event thread".</summary>
    public abstract string Description { get; }

    /// <summary>Takes over a socket the listener accepted (no operation may have been started on it).</summary>
    public abstract EngineSocket Adopt(Socket accepted);

    /// <summary>Connects to an endpoint (IP, host name or Unix-domain), trying each address of a host name; a failure is a <see cref="SocketException"/>.</summary>
    public abstract ValueTask<EngineSocket> ConnectAsync(EndPoint endpoint, CancellationToken cancellationToken);

    public abstract void Dispose();
}

/// <summary>.NET's own sockets: every platform.</summary>
internal sealed class SystemSocketEngine : SocketEngine
{
    public override string Description => ".NET sockets";

    public override EngineSocket Adopt(Socket accepted) => new SystemProxySocket(accepted);

    public override async ValueTask<EngineSocket> ConnectAsync(EndPoint endpoint, CancellationToken cancellationToken)
    {
        Socket socket = endpoint switch
        {
            UnixDomainSocketEndPoint => new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified),
            _ when endpoint.AddressFamily == AddressFamily.Unspecified => new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true },
            _ => new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true },
        };
        try
        {
            await socket.ConnectAsync(endpoint, cancellationToken).ConfigureAwait(false);
            return new SystemProxySocket(socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public override void Dispose()
    {
    }

    private sealed class SystemProxySocket(Socket socket) : EngineSocket
    {
        private NetworkStream? _stream;

        public override Stream Stream => _stream ??= new NetworkStream(socket, ownsSocket: false);

        public override int Available => socket.Available;

        public override ValueTask<int> PeekAsync(Memory<byte> buffer, CancellationToken cancellationToken)
            => socket.ReceiveAsync(buffer, SocketFlags.Peek, cancellationToken);

        public override void ShutdownSend()
        {
            try
            {
                socket.Shutdown(SocketShutdown.Send);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
            }
        }

        public override void Dispose()
        {
            _stream?.Dispose();
            socket.Dispose();
        }
    }
}

/// <summary>Endpoint helpers shared by the engines.</summary>
internal static class EndPoints
{
    /// <summary>The addresses to try for an endpoint: a host name's, in the resolver's order.</summary>
    public static async ValueTask<EndPoint[]> ResolveAsync(EndPoint endpoint, CancellationToken cancellationToken)
    {
        if (endpoint is not DnsEndPoint dns)
        {
            return [endpoint];
        }

        IPAddress[] addresses = await Dns.GetHostAddressesAsync(dns.Host, cancellationToken).ConfigureAwait(false);
        if (addresses.Length == 0)
        {
            throw new SocketException((int)SocketError.HostNotFound);
        }

        return Array.ConvertAll(addresses, address => (EndPoint)new IPEndPoint(address, dns.Port));
    }
}
