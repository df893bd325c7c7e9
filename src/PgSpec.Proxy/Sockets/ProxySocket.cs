using System.Net;
using System.Net.Sockets;

namespace PgSpec.Proxy.Sockets;

/// <summary>A connected stream socket of the proxy, to a client or to the server.</summary>
internal abstract class ProxySocket : IDisposable
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

/// <summary>Makes the proxy's sockets: adopts accepted ones and connects to servers.</summary>
internal abstract class SocketEngine : IDisposable
{
    /// <summary>The engine for the options: epoll on Linux unless .NET's sockets are asked for.</summary>
    public static SocketEngine Create(PgProxyOptions options)
    {
        bool epoll = options.SocketEngine switch
        {
            ProxySocketEngine.Epoll when !OperatingSystem.IsLinux() => throw new PlatformNotSupportedException("the epoll socket engine needs Linux"),
            ProxySocketEngine.Epoll => true,
            ProxySocketEngine.DotNet => false,
            _ => OperatingSystem.IsLinux(),
        };
        if (!epoll)
        {
            return new SystemSocketEngine();
        }

        // Continuations run on the event thread unless something on the relay path may block (a
        // trace writing to a file) or cost much (TLS records), which go to the thread pool instead.
        bool inline = options.Trace is null && options.TlsCertificate is null && !options.UpstreamTls;
        int threads = options.IoThreads > 0 ? options.IoThreads : DefaultIoThreads;
        return new EpollSocketEngine(threads, inline, options.Log);
    }

    /// <summary>One event thread per four processors, at least one.</summary>
    public static int DefaultIoThreads => Math.Max(1, Environment.ProcessorCount / 4);

    /// <summary>A line for the start-up note, e.g. "epoll, 1 event thread".</summary>
    public abstract string Description { get; }

    /// <summary>Takes over a socket the listener accepted (no operation may have been started on it).</summary>
    public abstract ProxySocket Adopt(Socket accepted);

    /// <summary>Connects to an endpoint, trying each address of a host name; a failure is a <see cref="SocketException"/>.</summary>
    public abstract ValueTask<ProxySocket> ConnectAsync(ProxyEndpoint endpoint, CancellationToken cancellationToken);

    public abstract void Dispose();
}

/// <summary>.NET's own sockets: every platform.</summary>
internal sealed class SystemSocketEngine : SocketEngine
{
    public override string Description => ".NET sockets";

    public override ProxySocket Adopt(Socket accepted) => new SystemProxySocket(accepted);

    public override async ValueTask<ProxySocket> ConnectAsync(ProxyEndpoint endpoint, CancellationToken cancellationToken)
    {
        Socket socket = endpoint.CreateSocket();
        try
        {
            await socket.ConnectAsync(endpoint.EndPoint, cancellationToken).ConfigureAwait(false);
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

    private sealed class SystemProxySocket(Socket socket) : ProxySocket
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
