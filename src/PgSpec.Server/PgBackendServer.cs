using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using PgSpec.Sockets;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;

namespace PgSpec.Server;

/// <summary>
/// A PostgreSQL-protocol server: listens on TCP and Unix sockets and runs one
/// <see cref="PgBackendSession"/> per connection, each with a handler from the factory given.
/// Cancel requests are routed by process ID and key to their session. Stopping refuses new
/// connections and ends open sessions with FATAL 57P01 after a grace period.
/// </summary>
public sealed class PgBackendServer : IAsyncDisposable
{
    /// <summary>Connections beyond the limit that may wait at once to be refused with 53300; more are closed at once.</summary>
    private const int MaxRefusing = 64;

    private readonly Func<PgBackendSession, PgSessionHandler> _handlerFactory;
    private readonly List<Socket> _listeners = [];
    private readonly List<string> _unixPaths = [];
    private readonly ConcurrentDictionary<int, PgBackendSession> _sessions = new();
    private readonly ConcurrentDictionary<int, PgBackendSession> _keys = new();
    private readonly ConcurrentDictionary<Task, bool> _running = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly ILogger? _logger;
    private readonly List<Task> _acceptLoops = [];
    private SocketEngine? _sockets;
    private int _active;
    private int _refusing;
    private int _stopped;

    private PgBackendServer(PgBackendOptions options, Func<PgBackendSession, PgSessionHandler> handlerFactory)
    {
        Options = options;
        _handlerFactory = handlerFactory;
        _logger = options.LoggerFactory?.CreateLogger<PgBackendServer>();
    }

    /// <summary>The options the server runs with (do not change them once it runs).</summary>
    public PgBackendOptions Options { get; }

    /// <summary>The addresses it listens on, with the ports actually bound.</summary>
    public IReadOnlyList<EndPoint> EndPoints { get; private set; } = [];

    /// <summary>The sessions open now (authenticated or not).</summary>
    public int ActiveSessions => Volatile.Read(ref _active);

    /// <summary>Binds the listeners and starts accepting connections.</summary>
    public static PgBackendServer Start(PgBackendOptions options, Func<PgBackendSession, PgSessionHandler> handlerFactory)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(handlerFactory);
        options.Validate();
        var server = new PgBackendServer(options, handlerFactory);
        try
        {
            server.Bind();

            // Continuations of socket operations run on the event threads unless something on the
            // path may block (a traffic callback) or cost much (TLS records); the session leaves the
            // event thread for the handler unless the handler says it never blocks.
            bool inline = options.Traffic is null && options.TlsCertificate is null;
            int threads = options.IoThreads > 0 ? options.IoThreads : PgBackendOptions.DefaultIoThreads;
            server._sockets = SocketEngine.Create(options.EpollSockets, inline, threads, log: null, sharedEpoll: true, options.EventSpin);
        }
        catch
        {
            server.CloseListeners();
            server._sockets?.Dispose();
            throw;
        }

        foreach (Socket listener in server._listeners)
        {
            server._acceptLoops.Add(Task.Run(() => server.AcceptLoopAsync(listener)));
        }

        return server;
    }

    /// <summary>A server that listens nowhere: connections come through <see cref="ServeAsync"/>.</summary>
    public static PgBackendServer Create(PgBackendOptions options, Func<PgBackendSession, PgSessionHandler> handlerFactory)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(handlerFactory);
        options.Validate();
        return new PgBackendServer(options, handlerFactory);
    }

    /// <summary>Runs a session over a connection the caller opened (a tunnel, an in-memory pipe); completes when the session ends, and disposes the stream.</summary>
    public Task ServeAsync(Stream stream, EndPoint? remoteEndPoint = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        return RunSession(stream, null, remoteEndPoint) ?? Task.CompletedTask;
    }

    private void Bind()
    {
        IEnumerable<EndPoint> endPoints = Options.Listen.Count > 0 ? Options.Listen : [new IPEndPoint(IPAddress.Loopback, 5432)];
        var bound = new List<EndPoint>();
        foreach (EndPoint endPoint in endPoints)
        {
            Socket socket;
            if (endPoint is UnixDomainSocketEndPoint unix)
            {
                string path = unix.ToString();
                RemoveStaleSocket(path);
                socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                socket.Bind(unix);
                _unixPaths.Add(path);
            }
            else
            {
                socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                // A restart may bind while old connections linger in TIME_WAIT. Only SO_REUSEADDR: .NET's
                // ReuseAddress also sets SO_REUSEPORT on Linux, which would let a second server share the port.
                if (OperatingSystem.IsLinux())
                {
                    socket.SetRawSocketOption(1 /* SOL_SOCKET */, 2 /* SO_REUSEADDR */, BitConverter.GetBytes(1));
                }
                socket.Bind(endPoint);
            }

            _listeners.Add(socket);
            socket.Listen(512);
            bound.Add(socket.LocalEndPoint!);
        }

        EndPoints = bound;
    }

    /// <summary>
    /// A socket file nobody listens on any more is replaced; one in use is an error, and so is
    /// anything else at the path (a file, a link, a directory): it is never deleted.
    /// </summary>
    private static void RemoveStaleSocket(string path)
    {
        if (Directory.Exists(path))
        {
            throw new IOException($"{path} is a directory, not a socket");
        }

        var info = new FileInfo(path);
        if (!info.Exists && info.LinkTarget is null)
        {
            return;
        }

        // .NET cannot name a file's type; a socket has no length, and opening it fails (ENXIO).
        if (info.LinkTarget is not null || info.Length != 0 || !FailsToOpen(path))
        {
            throw new IOException($"{path} exists and is not a socket");
        }

        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionRefused)
        {
            File.Delete(path);
            return;
        }
        catch (SocketException e)
        {
            throw new IOException($"{path} exists and cannot be checked: {e.Message}", e);
        }

        throw new IOException($"another server listens on {path}");
    }

    /// <summary>True when the path cannot be opened as a file (a socket); a FIFO, whose open would wait, counts as a file.</summary>
    private static bool FailsToOpen(string path)
    {
        Task<bool> open = Task.Run(() =>
        {
            try
            {
                using Microsoft.Win32.SafeHandles.SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
                return false;
            }
            catch (IOException)
            {
                return true;
            }
            catch (UnauthorizedAccessException)
            {
                return false;
            }
        });
        return open.Wait(TimeSpan.FromSeconds(1)) && open.Result;
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                // Out of descriptors, say: keep serving the open sessions, and try again.
                _logger?.LogWarning("accepting a connection failed: {Message}", e.Message);
                try
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(100), _stopping.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                continue;
            }

            if (client.AddressFamily != AddressFamily.Unix)
            {
                client.NoDelay = true;
            }

            EndPoint? remote = client.RemoteEndPoint;
            EngineSocket socket;
            try
            {
                socket = _sockets!.Adopt(client);
            }
            catch (SocketException e)
            {
                _logger?.LogWarning("taking a connection failed: {Message}", e.Message);
                client.Dispose();
                continue;
            }

            _ = RunSession(socket.Stream, socket, remote);
        }
    }

    private Task? RunSession(Stream stream, EngineSocket? socket, EndPoint? remote)
    {
        int active = Interlocked.Increment(ref _active);
        bool overLimit = active > Options.MaxConnections;
        if (_stopping.IsCancellationRequested || overLimit && Interlocked.Increment(ref _refusing) > MaxRefusing)
        {
            if (overLimit && !_stopping.IsCancellationRequested)
            {
                Interlocked.Decrement(ref _refusing);
            }

            Interlocked.Decrement(ref _active);
            stream.Dispose();
            socket?.Dispose();
            return null;
        }

        var session = new PgBackendSession(this, stream, socket, remote, NewProcessId());
        _sessions[session.ProcessId] = session;
        Task task = Task.Run(async () =>
        {
            try
            {
                await session.RunAsync(overLimit).ConfigureAwait(false);
            }
            finally
            {
                _sessions.TryRemove(session.ProcessId, out _);
                Interlocked.Decrement(ref _active);
                if (overLimit)
                {
                    Interlocked.Decrement(ref _refusing);
                }
            }
        });
        _running[task] = true;
        _ = task.ContinueWith(t => _running.TryRemove(t, out _), TaskScheduler.Default);
        return task;
    }

    private int NewProcessId()
    {
        while (true)
        {
            int id = RandomNumberGenerator.GetInt32(1000, int.MaxValue);
            if (!_sessions.ContainsKey(id))
            {
                return id;
            }
        }
    }

    internal PgSessionHandler CreateHandler(PgBackendSession session)
        => _handlerFactory(session) ?? throw new InvalidOperationException("the handler factory returned null");

    /// <summary>The session can be cancelled from now on (it has sent BackendKeyData).</summary>
    internal void Register(PgBackendSession session) => _keys[session.ProcessId] = session;

    internal void Unregister(PgBackendSession session) => _keys.TryRemove(new KeyValuePair<int, PgBackendSession>(session.ProcessId, session));

    /// <summary>A CancelRequest: cancels the session whose process ID and key both match; anything else is ignored, as PostgreSQL does.</summary>
    internal void DeliverCancel(int processId, ReadOnlySpan<byte> key)
    {
        if (_keys.TryGetValue(processId, out PgBackendSession? session)
            && key.Length == session.SecretKey.Length
            && CryptographicOperations.FixedTimeEquals(key, session.SecretKey))
        {
            session.Cancel();
        }
        else
        {
            _logger?.LogInformation("a cancel request for process {ProcessId} matched no session", processId);
        }
    }

    /// <summary>
    /// Stops: new connections are refused at once; open sessions may go on for the grace period
    /// (<see cref="PgBackendOptions.ShutdownGracePeriod"/>), then those still open are ended with
    /// FATAL 57P01. Completes when every session has ended.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 0)
        {
            _stopping.Cancel();
            CloseListeners();
            await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
        }

        Task all = Task.WhenAll(_running.Keys);
        using var grace = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        grace.CancelAfter(Options.ShutdownGracePeriod);
        try
        {
            await all.WaitAsync(grace.Token).ConfigureAwait(false);
            StopSockets();
            return;
        }
        catch (OperationCanceledException)
        {
        }

        foreach (PgBackendSession session in _sessions.Values)
        {
            session.End(SessionEnd.Shutdown);
        }

        await Task.WhenAll(_running.Keys).ConfigureAwait(false);
        StopSockets();
    }

    /// <summary>After the last session: the socket engine's threads stop.</summary>
    private void StopSockets() => Interlocked.Exchange(ref _sockets, null)?.Dispose();

    private void CloseListeners()
    {
        foreach (Socket listener in _listeners)
        {
            listener.Dispose();
        }

        foreach (string path in _unixPaths)
        {
            try
            {
                File.Delete(path);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>Stops the server (see <see cref="StopAsync"/>).</summary>
    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        _stopping.Dispose();
    }
}
