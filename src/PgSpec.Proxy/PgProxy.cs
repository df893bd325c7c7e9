using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using PgSpec.Sockets;

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
    private ListenSocket? _listener;
    private long _nextId;
    private int _served;
    private int _refusing;

    /// <summary>Descriptors kept for the runtime, the listener, the trace, certificates and cancel requests.</summary>
    private const int ReservedDescriptors = 128;

    /// <summary>How long a connection beyond the limit may take to send its startup packet and get its FATAL.</summary>
    internal static readonly TimeSpan RefusalTimeout = TimeSpan.FromSeconds(5);

    private long _lastAcceptFailure;

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
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.IoThreads, MaxIoThreads, nameof(options.IoThreads));
        ArgumentOutOfRangeException.ThrowIfNegative(options.MaxClientConnections, nameof(options.MaxClientConnections));
        // Continuations run on the event thread unless something on the relay path may block (a
        // trace writing to a file) or cost much (TLS records), which go to the thread pool instead.
        Sockets = PgSpec.Sockets.SocketEngine.Create(
            options.SocketEngine switch
            {
                ProxySocketEngine.Epoll => true,
                ProxySocketEngine.DotNet => false,
                _ => null,
            },
            inlineCompletions: options.Trace is null && options.TlsCertificate is null && !options.UpstreamTls,
            options.IoThreads,
            options.Log);
    }

    /// <summary>The most event threads the epoll engine may be given.</summary>
    public const int MaxIoThreads = 256;

    /// <summary>The options.</summary>
    public PgProxyOptions Options { get; }

    /// <summary>Counts of connections and messages so far.</summary>
    public ProxyStatistics Statistics { get; } = new();

    /// <summary>Where the proxy listens (with the real port when 0 was asked for); null before <see cref="Start"/>.</summary>
    public EndPoint? LocalEndPoint => _listener?.Socket.LocalEndPoint;

    /// <summary>The number of connections being served.</summary>
    public int ActiveConnections => _connections.Count;

    /// <summary>The socket engine in use: <see cref="ProxySocketEngine.Epoll"/> or <see cref="ProxySocketEngine.DotNet"/>.</summary>
    public ProxySocketEngine SocketEngine => Sockets is EpollSocketEngine ? ProxySocketEngine.Epoll : ProxySocketEngine.DotNet;

    /// <summary>Which sockets serve the connections, e.g. "epoll, 1 event thread".</summary>
    public string SocketDescription => Sockets.Description;

    internal CancelKeyMap CancelKeys { get; } = new();

    internal SocketEngine Sockets { get; }

    /// <summary>
    /// The most client connections served at once: <see cref="PgProxyOptions.MaxClientConnections"/>,
    /// or fewer when the limit of open files allows fewer (each takes two descriptors, the
    /// client's and the server's); set by <see cref="Start"/>.
    /// </summary>
    public int MaxClientConnections { get; private set; }

    /// <summary>Connections beyond <see cref="MaxClientConnections"/> that are read for a refusal (or a cancel request) at once; more are closed at once.</summary>
    public int RefusalBacklog { get; private set; }

    /// <summary>The limit of open files the proxy runs with (raised to the hard limit at start), or 0 where it is not known.</summary>
    public long FileDescriptorLimit { get; private set; }

    /// <summary>Binds and listens; throws <see cref="PgProxyStartException"/> saying why it cannot.</summary>
    public void Start()
    {
        if (_listener is not null)
        {
            throw new InvalidOperationException("the proxy has already started");
        }

        FileDescriptorLimit = PgSpec.Sockets.FileDescriptors.RaiseToHardLimit();
        long budget = FileDescriptorLimit > 0 ? FileDescriptorLimit - ReservedDescriptors : long.MaxValue;
        if (budget < 8)
        {
            throw new PgProxyStartException($"the limit of open files ({FileDescriptorLimit}) leaves no room for connections; raise it (ulimit -n)");
        }

        RefusalBacklog = (int)Math.Clamp(budget / 8, 1, 256);
        long byDescriptors = (budget - RefusalBacklog) / 2;
        int wanted = Options.MaxClientConnections == 0 ? int.MaxValue : Options.MaxClientConnections;
        MaxClientConnections = (int)Math.Min(wanted, byDescriptors);
        _listener = ListenSocket.Open(Options.Listen, 512, Options.UnixSocketPermissions);
        if (MaxClientConnections < wanted)
        {
            Options.Log?.Invoke($"the limit of open files ({FileDescriptorLimit}) allows {MaxClientConnections} client connections at once (each takes two descriptors), so that is the limit in force" + (Options.MaxClientConnections == 0 ? "" : $", not --max-client-connections {Options.MaxClientConnections}"));
        }
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

        ListenSocket listener = _listener!;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                Socket client;
                try
                {
                    client = await listener.Socket.AcceptAsync(stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionAborted or SocketError.ConnectionReset)
                {
                    continue;
                }
                catch (SocketException e) when (e.SocketErrorCode is SocketError.TooManyOpenSockets or SocketError.NoBufferSpaceAvailable)
                {
                    // Out of file descriptors (something else holds many): the clients already served
                    // go on; new ones wait in the listen backlog. Said once in ten seconds.
                    long now = Environment.TickCount64;
                    if (now - Interlocked.Read(ref _lastAcceptFailure) > 10_000)
                    {
                        Interlocked.Exchange(ref _lastAcceptFailure, now);
                        Options.Log?.Invoke(e.SocketErrorCode == SocketError.TooManyOpenSockets
                            ? $"cannot accept connections for now: the proxy has reached its limit of open files ({FileDescriptorLimit}); they wait in the listen backlog"
                            : "cannot accept connections for now: the system is out of socket buffers");
                    }

                    await Task.Delay(100, stop).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                    continue;
                }

                Accept(client);
            }
        }
        finally
        {
            listener.Dispose();
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

    internal void Note(long id, string peer, string text) => Options.Log?.Invoke($"connection {id} from {peer}: {text}");

    internal void Note(ProxyConnection connection, string text) => Note(connection.Id, connection.Peer, text);

    /// <summary>Starts serving an accepted client, or refusing it when the proxy serves its maximum.</summary>
    private void Accept(Socket client)
    {
        long id = Interlocked.Increment(ref _nextId);
        Statistics.OnAccepted();
        string peer = client.RemoteEndPoint is IPEndPoint ip ? ip.ToString() : "the Unix socket";
        bool overLimit = Volatile.Read(ref _served) >= MaxClientConnections;
        if (overLimit && Interlocked.Increment(ref _refusing) > RefusalBacklog)
        {
            Interlocked.Decrement(ref _refusing);
            client.Dispose();
            Statistics.OnRefused();
            Statistics.OnClosed();
            return;
        }

        if (!overLimit)
        {
            Interlocked.Increment(ref _served);
        }

        EngineSocket socket;
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
            Interlocked.Decrement(ref overLimit ? ref _refusing : ref _served);
            Statistics.OnFailed();
            Note(id, peer, "closed: " + e.Message);
            return;
        }

        var connection = new ProxyConnection(this, id, socket, peer, overLimit);

        // Registered before it runs: a connection that ends at once must find its entry to remove.
        var registered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _connections[id] = Task.Run(async () =>
        {
            await registered.Task.ConfigureAwait(false);
            try
            {
                await connection.RunAsync(_abort.Token).ConfigureAwait(false);
            }
            finally
            {
                Interlocked.Decrement(ref overLimit ? ref _refusing : ref _served);
                _connections.TryRemove(id, out _);
            }

            // The connection may have ended on an event thread: whoever awaits the proxy must not go on there.
            await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
        });
        registered.SetResult();
    }
}
