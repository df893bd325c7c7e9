using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

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
    }

    /// <summary>The options.</summary>
    public PgProxyOptions Options { get; }

    /// <summary>Counts of connections and messages so far.</summary>
    public ProxyStatistics Statistics { get; } = new();

    /// <summary>Where the proxy listens (with the real port when 0 was asked for); null before <see cref="Start"/>.</summary>
    public EndPoint? LocalEndPoint => _listener?.LocalEndPoint;

    /// <summary>The number of connections being served.</summary>
    public int ActiveConnections => _connections.Count;

    internal CancelKeyMap CancelKeys { get; } = new();

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
                var connection = new ProxyConnection(this, id, client);
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

        _abort.Dispose();
    }

    internal void Note(long id, string text) => Options.Log?.Invoke($"connection {id}: {text}");
}
