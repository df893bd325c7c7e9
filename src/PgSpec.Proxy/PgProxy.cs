using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using PgSpec.Proxy.Sockets;

namespace PgSpec.Proxy;

/// <summary>
/// A logging proxy for the PostgreSQL protocol. Each client connection gets its own server
/// connection; every message of both directions is decoded and validated, traced, and forwarded
/// as the bytes received (only BackendKeyData carries the proxy's own cancel key). A connection
/// that breaks the protocol is closed on its own; the others go on.
/// </summary>
public sealed class PgProxy : IAsyncDisposable
{
    private readonly ConcurrentDictionary<long, Task> _connections = new();
    private readonly CancellationTokenSource _abort = new();
    private Socket? _listener;
    private long _nextId;

    /// <summary>Creates a proxy; <see cref="Start"/> binds it.</summary>
    public PgProxy(PgProxyOptions options)
    {
        Options = options ?? throw new ArgumentNullException(nameof(options));
        if (options.TlsPassthrough && (options.TlsCertificate is not null || options.UpstreamTls))
        {
            throw new ArgumentException("TLS passthrough excludes a certificate of the proxy's own and TLS to the server", nameof(options));
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(options.StreamThreshold, 5, nameof(options.StreamThreshold));
        ArgumentOutOfRangeException.ThrowIfNegative(options.IoThreads, nameof(options.IoThreads));
        Sockets = PgSpec.Proxy.Sockets.SocketEngine.Create(options);
    }

    /// <summary>The options.</summary>
    public PgProxyOptions Options { get; }

    /// <summary>Counts of connections and messages so far.</summary>
    public ProxyStatistics Statistics { get; } = new();

    /// <summary>Where the proxy listens (with the real port when 0 was asked for); null before <see cref="Start"/>.</summary>
    public EndPoint? LocalEndPoint => _listener?.LocalEndPoint;

    /// <summary>The number of connections being served.</summary>
    public int ActiveConnections => _connections.Count;

    /// <summary>The socket engine in use: <see cref="ProxySocketEngine.Epoll"/> or <see cref="ProxySocketEngine.DotNet"/>.</summary>
    public ProxySocketEngine SocketEngine => Sockets is EpollSocketEngine ? ProxySocketEngine.Epoll : ProxySocketEngine.DotNet;

    /// <summary>Which sockets serve the connections, e.g. "epoll, 1 event thread".</summary>
    public string SocketDescription => Sockets.Description;

    internal CancelKeyMap CancelKeys { get; } = new();

    internal SocketEngine Sockets { get; }

    /// <summary>Binds and listens.</summary>
    public void Start()
    {
        if (_listener is not null)
        {
            throw new InvalidOperationException("the proxy has already started");
        }

        Socket listener = Options.Listen.CreateSocket();
        try
        {
            if (Options.Listen.EndPoint is UnixDomainSocketEndPoint unix && File.Exists(unix.ToString()))
            {
                File.Delete(unix.ToString());
            }

            if (!Options.Listen.IsUnix)
            {
                listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            }

            listener.Bind(Options.Listen.EndPoint is DnsEndPoint dns ? new IPEndPoint(Dns.GetHostAddresses(dns.Host)[0], dns.Port) : Options.Listen.EndPoint);
            listener.Listen(512);
        }
        catch
        {
            listener.Dispose();
            throw;
        }

        _listener = listener;
    }

    /// <summary>
    /// Accepts clients until <paramref name="stop"/> is cancelled; then stops accepting, lets
    /// open connections finish for <see cref="PgProxyOptions.ShutdownGrace"/>, and closes the rest.
    /// </summary>
    public async Task RunAsync(CancellationToken stop)
    {
        if (_listener is null)
        {
            Start();
        }

        Socket listener = _listener!;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                Socket client;
                try
                {
                    client = await listener.AcceptAsync(stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionAborted or SocketError.ConnectionReset)
                {
                    continue;
                }

                long id = Interlocked.Increment(ref _nextId);
                Statistics.OnAccepted();
                ProxySocket socket;
                try
                {
                    if (!Options.Listen.IsUnix)
                    {
                        client.NoDelay = true;
                    }

                    socket = Sockets.Adopt(client);
                }
                catch (SocketException e)
                {
                    client.Dispose();
                    Statistics.OnFailed();
                    Note(id, "closed: " + e.Message);
                    continue;
                }

                var connection = new ProxyConnection(this, id, socket);
                _connections[id] = Task.Run(async () =>
                {
                    try
                    {
                        await connection.RunAsync(_abort.Token).ConfigureAwait(false);
                    }
                    finally
                    {
                        _connections.TryRemove(id, out _);
                    }

                    // The connection may have ended on an event thread: whoever awaits the proxy must not go on there.
                    await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
                });
            }
        }
        finally
        {
            listener.Dispose();
            if (Options.Listen.EndPoint is UnixDomainSocketEndPoint unix)
            {
                try
                {
                    File.Delete(unix.ToString());
                }
                catch (IOException)
                {
                }
            }
        }

        Task all = Task.WhenAll(_connections.Values);
        if (await Task.WhenAny(all, Task.Delay(Options.ShutdownGrace, CancellationToken.None)).ConfigureAwait(false) != all)
        {
            await _abort.CancelAsync().ConfigureAwait(false);
        }

        await Task.WhenAll(_connections.Values).ConfigureAwait(false);
    }

    /// <summary>Closes every connection now.</summary>
    public async ValueTask DisposeAsync()
    {
        await _abort.CancelAsync().ConfigureAwait(false);
        _listener?.Dispose();
        try
        {
            await Task.WhenAll(_connections.Values).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Connections report their own failures.
        }

        Sockets.Dispose();
        _abort.Dispose();
    }

    internal void Note(long id, string text) => Options.Log?.Invoke($"connection {id}: {text}");
}
