using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using PgSpec.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using PgSpec.Protocol;

namespace PgSpec.Server;

/// <summary>
/// One client connection in the backend role: the startup packets (TLS, cancel requests), the
/// protocol version, authentication, then the client's queries, handed to its
/// <see cref="PgSessionHandler"/>. What a handler may ask of its session is public here.
/// </summary>
public sealed partial class PgBackendSession
{
    private readonly PgBackendServer _server;
    private readonly PgBackendOptions _options;
    private readonly EngineSocket? _socket;
    private readonly ILogger? _logger;
    private readonly DecodeContext _context;
    private readonly Dictionary<string, string> _parameters = new(StringComparer.Ordinal);
    private readonly List<KeyValuePair<string, string>> _changedParameters = [];
    private readonly ConcurrentQueue<NotificationResponse> _notifications = new();
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly CancellationTokenSource _lifetime = new();
    private readonly Lock _cancelLock = new();
    private readonly Dictionary<string, string> _startupParameters = new(StringComparer.Ordinal);
    private Stream _stream;
    private SessionOutput? _output;
    private PgStreamMessageReader? _reader;
    private PgSessionHandler? _handler;
    private CancellationTokenSource _cancelRequest = new();
    private CancellationTokenSource? _queryToken;
    private bool _busy;
    private bool _outputBroken;
    private long _backendOffset;
    private volatile SessionEnd _end;

    internal PgBackendSession(PgBackendServer server, Stream stream, EngineSocket? socket, EndPoint? remoteEndPoint, int processId)
    {
        _server = server;
        _options = server.Options;
        _stream = stream;
        _socket = socket;
        RemoteEndPoint = remoteEndPoint;
        ProcessId = processId;
        _logger = _options.LoggerFactory?.CreateLogger<PgBackendSession>();

        // The client may send nothing large before it is authenticated: only the answers to
        // authentication requests, at most PostgreSQL's limit for them (PG_MAX_AUTH_TOKEN_LENGTH).
        _context = new DecodeContext { Limits = _options.Limits.WithAll(PgDirection.Frontend, AuthenticationMessageLimit), ProtocolVersion = _options.MaxProtocolVersion };
    }

    /// <summary>The largest ParameterStatus (its length word), as the spec gives it.</summary>
    private static int ParameterStatusLimit => PgLimits.Default.MaxLength(PgDirection.Backend, (byte)'S');

    /// <summary>The largest length word a message may have before the client is authenticated.</summary>
    internal const int AuthenticationMessageLimit = 65539;

    /// <summary>The session's process ID, as BackendKeyData gives it to the client.</summary>
    public int ProcessId { get; }

    /// <summary>The client's address (null for a stream given to <see cref="PgBackendServer.ServeAsync"/> without one).</summary>
    public EndPoint? RemoteEndPoint { get; }

    /// <summary>The user the startup packet names (and authentication checked).</summary>
    public string User { get; private set; } = "";

    /// <summary>The database the startup packet names (the user's name when none).</summary>
    public string Database { get; private set; } = "";

    /// <summary>The startup packet's other parameters (application_name, client_encoding, options, ...), not user and database.</summary>
    public IReadOnlyDictionary<string, string> StartupParameters => _startupParameters;

    /// <summary>The protocol version in force (3.0 or 3.2).</summary>
    public PgProtocolVersion ProtocolVersion => _context.ProtocolVersion;

    /// <summary>How TLS started ("SSLRequest" or "direct"), or null without TLS.</summary>
    public string? Tls { get; private set; }

    /// <summary>The authentication method that let the client in ("trust", "password", "md5", "scram-sha-256").</summary>
    public string AuthenticationMethod => _options.Authentication.Method;

    /// <summary>The values reported to the client with ParameterStatus.</summary>
    public IReadOnlyDictionary<string, string> Parameters => _parameters;

    /// <summary>The cancel key (4 bytes under 3.0, <see cref="PgBackendOptions.CancelKeyLength"/> under 3.2).</summary>
    internal byte[] SecretKey { get; private set; } = [];

    /// <summary>
    /// Sets a parameter the client is told about (ParameterStatus): sent before the next
    /// ReadyForQuery, as PostgreSQL reports a changed setting. Call it from the handler.
    /// </summary>
    public void SetParameter(string name, string value)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(value);
        if (name.Contains('\0', StringComparison.Ordinal) || value.Contains('\0', StringComparison.Ordinal))
        {
            throw new ArgumentException("a parameter's name and value cannot contain NUL");
        }

        // ParameterStatus is at most 30000 bytes (its spec's limit): refused here, not when it is sent.
        if (System.Text.Encoding.UTF8.GetByteCount(name) + System.Text.Encoding.UTF8.GetByteCount(value) + 6 > ParameterStatusLimit)
        {
            throw new ArgumentException($"the parameter {name} is too long for ParameterStatus ({ParameterStatusLimit} bytes at most)", nameof(value));
        }

        if (_parameters.TryGetValue(name, out string? old) && old == value)
        {
            return;
        }

        _parameters[name] = value;
        _changedParameters.Add(new(name, value));
    }

    /// <summary>Sends a NoticeResponse now, among the messages of the statement running. Call it from the handler.</summary>
    public void SendNotice(PgErrorException notice)
    {
        ArgumentNullException.ThrowIfNull(notice);
        if (_output is not null)
        {
            Send(notice.ToNoticeResponse());
        }
    }

    /// <summary>
    /// Queues a NotificationResponse (LISTEN/NOTIFY): sent at once when the session is idle, else
    /// before its next ReadyForQuery, as PostgreSQL delivers notifications between transactions.
    /// Safe to call from any thread.
    /// </summary>
    public void Notify(string channel, string payload, int senderProcessId)
    {
        ArgumentNullException.ThrowIfNull(channel);
        ArgumentNullException.ThrowIfNull(payload);
        _notifications.Enqueue(new NotificationResponse(senderProcessId, channel, payload));
        _ = DeliverNotificationsWhileIdleAsync();
    }

    /// <summary>Ends the session: FATAL 57P01 (terminating connection due to administrator command) once the statement running stops.</summary>
    public void Terminate() => End(SessionEnd.Shutdown);

    internal bool IsAuthenticated { get; private set; }

    /// <summary>Delivers a CancelRequest: cancels what the session runs, if it runs anything.</summary>
    internal void Cancel()
    {
        lock (_cancelLock)
        {
            if (_busy)
            {
                _cancelRequest.Cancel();
            }
        }
    }

    internal void End(SessionEnd reason)
    {
        if (_end == SessionEnd.None)
        {
            _end = reason;
        }

        try
        {
            _lifetime.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    // ------------------------------------------------------------------ the connection's life

    internal async Task RunAsync(bool overLimit)
    {
        string? failure = null;
        PgErrorException? farewell = null;
        using var handshake = CancellationTokenSource.CreateLinkedTokenSource(_lifetime.Token);
        handshake.CancelAfter(_options.HandshakeTimeout);
        bool started = false;
        try
        {
            if (!await StartupAsync(handshake.Token).ConfigureAwait(false))
            {
                return;
            }

            started = true;
            if (overLimit)
            {
                farewell = new PgErrorException("FATAL", "53300", "sorry, too many clients already");
                return;
            }

            await AuthenticateAsync(handshake.Token).ConfigureAwait(false);
            handshake.CancelAfter(Timeout.InfiniteTimeSpan);
            await ServeQueriesAsync().ConfigureAwait(false);
        }
        catch (PgErrorException e)
        {
            farewell = e;
            failure = e.Message;
        }
        catch (PgProtocolException e)
        {
            // Malformed input ends the connection with FATAL 08P01, and nothing else.
            farewell = new PgErrorException("FATAL", "08P01", "invalid frontend message") { Detail = e.Error.ToString() };
            failure = e.Message;
        }
        catch (OperationCanceledException) when (_lifetime.IsCancellationRequested || handshake.IsCancellationRequested)
        {
            (farewell, failure) = _end switch
            {
                SessionEnd.Shutdown => (new PgErrorException("FATAL", "57P01", "terminating connection due to administrator command"), "ended by the server's shutdown"),
                SessionEnd.IdleTimeout => (new PgErrorException("FATAL", "57P05", "terminating connection due to idle-session timeout"), "idle-session timeout"),
                SessionEnd.IdleInTransactionTimeout => (new PgErrorException("FATAL", "25P03", "terminating connection due to idle-in-transaction timeout"), "idle-in-transaction timeout"),
                _ => (started ? new PgErrorException("FATAL", "57014", "canceling authentication due to timeout") : null, "handshake timeout"),
            };
        }
        catch (Exception e) when (e is IOException or SocketException or AuthenticationException or ObjectDisposedException or EndOfStreamException)
        {
            failure = "the connection failed: " + e.Message;
        }
        catch (Exception e)
        {
            // Whatever goes wrong ends this session only.
            farewell = new PgErrorException("FATAL", "XX000", "internal error: " + e.Message);
            failure = "unexpected error: " + e;
        }
        finally
        {
            if (farewell is not null)
            {
                await SendFarewellAsync(farewell).ConfigureAwait(false);
            }

            await CloseAsync().ConfigureAwait(false);
            if (failure is not null)
            {
                _logger?.LogInformation("session {ProcessId} ({Peer}) ended: {Reason}", ProcessId, RemoteEndPoint, failure);
            }

            try
            {
                _options.SessionEnded?.Invoke(this, failure);
            }
            catch (Exception e)
            {
                _logger?.LogWarning(e, "session {ProcessId}: the SessionEnded callback failed", ProcessId);
            }
        }
    }

    private async Task SendFarewellAsync(PgErrorException error)
    {
        if (_outputBroken)
        {
            return;
        }

        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            byte[] bytes = error.ToErrorResponse().ToArray(ProtocolVersion);
            OnTraffic(PgDirection.Backend, bytes);
            if (_output is not null)
            {
                _output.Write(bytes);
                await _output.FlushAsync(timeout.Token).ConfigureAwait(false);
            }
            else
            {
                await _stream.WriteAsync(bytes, timeout.Token).ConfigureAwait(false);
                await _stream.FlushAsync(timeout.Token).ConfigureAwait(false);
            }

            // Closing with unread input would reset the connection, and the reset can overtake the
            // error on its way.
            _socket?.ShutdownSend();
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException or InvalidOperationException or AuthenticationException)
        {
        }
    }

    private async Task CloseAsync()
    {
        _server.Unregister(this);
        if (_handler is not null)
        {
            try
            {
                await DisposeResultsAsync(andStatements: true).ConfigureAwait(false);
                await _handler.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception e)
            {
                _logger?.LogWarning(e, "session {ProcessId}: the handler failed to close", ProcessId);
            }
        }

        try
        {
            // What is still unsent is dropped: what had to be said was flushed, and a client that
            // does not read must not hold up the close.
            _reader?.Dispose();
            _output?.Dispose();
            await _stream.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or InvalidOperationException or OperationCanceledException or AuthenticationException)
        {
        }

        _socket?.Dispose();
        _queryToken?.Dispose();
        _linked?.Dispose();
        _lifetime.Dispose();
        _cancelRequest.Dispose();
    }

    // ------------------------------------------------------------------ startup

    private static readonly SslApplicationProtocol s_postgresqlAlpn = new(PgStartupHandshake.TlsApplicationProtocol);

    /// <summary>
    /// TLS and the startup packets, by PostgreSQL's rules (<see cref="PgStartupHandshake"/>); true
    /// when a StartupMessage arrived (false: a cancel request, or the client left).
    /// </summary>
    private async Task<bool> StartupAsync(CancellationToken cancellationToken)
    {
        byte[] first = new byte[1];
        if (await _stream.ReadAsync(first, cancellationToken).ConfigureAwait(false) == 0)
        {
            return false;
        }

        var handshake = new PgStartupHandshake(new PgMessageReader(PgDirection.Frontend, _context), _options.MaxProtocolVersion);
        byte[]? pending = first;
        if (PgStartupHandshake.StartsDirectTls(first[0]))
        {
            if (_options.TlsCertificate is null)
            {
                // Nothing to answer a TLS handshake with; PostgreSQL without ssl closes too.
                _logger?.LogInformation("session {ProcessId}: direct TLS without a certificate configured", ProcessId);
                return false;
            }

            await StartTlsAsync(new PrefixedStream(_stream, first), handshake, direct: true, cancellationToken).ConfigureAwait(false);
            pending = null;
        }

        while (true)
        {
            byte[]? packet = await ReadStartupPacketAsync(handshake, pending, cancellationToken).ConfigureAwait(false);
            pending = null;
            if (packet is null)
            {
                return false;
            }

            OnTraffic(PgDirection.Frontend, packet);
            PgStartupStep step = handshake.Accept(packet, out PgReceivedMessage message, out ErrorResponse? refusal);
            switch (step)
            {
                case PgStartupStep.Fatal:
                    throw Refusal(refusal!);
                case PgStartupStep.Close:
                    // A cancel request of the wrong length, say: PostgreSQL only logs it, and closes.
                    _logger?.LogInformation("session {ProcessId}: {Reason}", ProcessId, Refusal(refusal!).Message);
                    return false;
                case PgStartupStep.SSLRequest:
                case PgStartupStep.GSSENCRequest:
                    bool tls = step == PgStartupStep.SSLRequest && _options.TlsCertificate is not null;
                    if (tls && handshake.AcceptEncryption(_socket?.Available ?? 0) is { } injected)
                    {
                        throw Refusal(injected);
                    }

                    byte[] answer = [tls ? (byte)'S' : (byte)'N'];
                    OnTraffic(PgDirection.Backend, answer);
                    _context.ExpectEncryptionAnswer = false;
                    await _stream.WriteAsync(answer, cancellationToken).ConfigureAwait(false);
                    await _stream.FlushAsync(cancellationToken).ConfigureAwait(false);
                    if (tls)
                    {
                        await StartTlsAsync(_stream, handshake, direct: false, cancellationToken).ConfigureAwait(false);
                    }

                    break;
                case PgStartupStep.CancelRequest:
                    var cancel = (CancelRequest)message.ToMessage(_context);
                    _server.DeliverCancel(cancel.ProcessId, cancel.SecretKey.Span);
                    return false;
                case PgStartupStep.StartupMessage:
                default:
                    AcceptStartup((StartupMessage)message.ToMessage(_context));
                    return true;
            }
        }
    }

    /// <summary>Reads one startup packet exactly (never a byte beyond it: TLS may follow); null when the client left between packets.</summary>
    private async Task<byte[]?> ReadStartupPacketAsync(PgStartupHandshake handshake, byte[]? firstByte, CancellationToken cancellationToken)
    {
        byte[] header = new byte[4];
        int have = 0;
        if (firstByte is not null)
        {
            header[0] = firstByte[0];
            have = 1;
        }

        while (have < 4)
        {
            int n = await _stream.ReadAsync(header.AsMemory(have), cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                return null;
            }

            have += n;
        }

        if (!handshake.TryReadLength(header, out int length, out ErrorResponse? refusal))
        {
            // PostgreSQL only logs this ("invalid length of startup packet") and closes.
            throw new EndOfStreamException(Refusal(refusal!).Message);
        }

        byte[] packet = new byte[length];
        header.CopyTo(packet, 0);
        await _stream.ReadExactlyAsync(packet.AsMemory(4), cancellationToken).ConfigureAwait(false);
        return packet;
    }

    /// <summary>A refusal of the startup phase as the error the session ends with.</summary>
    private static PgErrorException Refusal(ErrorResponse error)
    {
        string? Field(ErrorFieldCode code) => error.Fields.FirstOrDefault(field => field.Code == (byte)code)?.Value;
        return new PgErrorException(Field(ErrorFieldCode.SeverityNonLocalized) ?? "FATAL", Field(ErrorFieldCode.SqlState) ?? "08P01", Field(ErrorFieldCode.Message) ?? "invalid startup packet")
        {
            Detail = Field(ErrorFieldCode.Detail),
            Hint = Field(ErrorFieldCode.Hint),
        };
    }

    private async Task StartTlsAsync(Stream inner, PgStartupHandshake handshake, bool direct, CancellationToken cancellationToken)
    {
        var ssl = new SslStream(inner, leaveInnerStreamOpen: false);
        var options = new SslServerAuthenticationOptions
        {
            ServerCertificate = _options.TlsCertificate,
            ClientCertificateRequired = false,
            EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,

            // A client that offers ALPN must offer "postgresql" (PostgreSQL 17 and later).
            ApplicationProtocols = [s_postgresqlAlpn],
        };
        await ssl.AuthenticateAsServerAsync(options, cancellationToken).ConfigureAwait(false);
        _stream = ssl;
        if (direct && handshake.AcceptDirectTls(ssl.NegotiatedApplicationProtocol.Protocol.Span) is { } refusal)
        {
            // PostgreSQL only logs this, and closes without a word.
            throw new AuthenticationException(Refusal(refusal).Message);
        }

        Tls = direct ? "direct" : "SSLRequest";
    }

    private void AcceptStartup(StartupMessage startup)
    {
        // No protocol extension (_pq_.) is known here: each is reported as unrecognized.
        NegotiateProtocolVersion? negotiation = PgStartupHandshake.Negotiate(startup, _options.MaxProtocolVersion, out PgProtocolVersion version);
        _context.ProtocolVersion = version;
        foreach (StartupMessage.Parameter parameter in startup.Parameters)
        {
            switch (parameter.Name)
            {
                case "user":
                    User = parameter.Value;
                    break;
                case "database":
                    Database = parameter.Value;
                    break;
                case ['_', 'p', 'q', '_', '.', ..]:
                    break;
                default:
                    _startupParameters[parameter.Name] = parameter.Value;
                    break;
            }
        }

        if (User.Length == 0)
        {
            throw new PgErrorException("FATAL", "28000", "no PostgreSQL user name specified in startup packet");
        }

        if (Database.Length == 0)
        {
            Database = User;
        }

        _pendingNegotiation = negotiation;
    }

    private NegotiateProtocolVersion? _pendingNegotiation;

    // ------------------------------------------------------------------ authentication

    private async Task AuthenticateAsync(CancellationToken cancellationToken)
    {
        if (MustLeaveIoThread(null))
        {
            // Authentication hashes (SCRAM's PBKDF2): never on an I/O thread.
            await Task.Yield();
        }

        _output = new SessionOutput(_stream);
        _reader = new PgStreamMessageReader(_stream, PgDirection.Frontend, _context);
        if (_pendingNegotiation is not null)
        {
            Send(_pendingNegotiation);
        }

        await _options.Authentication.AuthenticateAsync(new Exchange(this), cancellationToken).ConfigureAwait(false);
        Send(new AuthenticationOk());
        IsAuthenticated = true;
        _context.Limits = _options.Limits;

        _handler = _server.CreateHandler(this);
        foreach (KeyValuePair<string, string> pair in _options.Parameters)
        {
            _parameters[pair.Key] = pair.Value;
        }

        foreach (string name in (string[])["application_name", "client_encoding", "DateStyle", "TimeZone", "IntervalStyle"])
        {
            if (_startupParameters.TryGetValue(name, out string? value))
            {
                _parameters[name] = value;
            }
        }

        _parameters["session_authorization"] = User;
        _parameters.TryAdd("application_name", "");
        BeginBusy();
        try
        {
            await _handler.StartAsync(this, Linked(cancellationToken)).ConfigureAwait(false);
        }
        finally
        {
            EndBusy();
        }

        _changedParameters.Clear();
        foreach (KeyValuePair<string, string> pair in _parameters.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            Send(new ParameterStatus(pair.Key, pair.Value));
        }

        SecretKey = RandomNumberGenerator.GetBytes(ProtocolVersion.HasVariableCancelKey ? _options.CancelKeyLength : 4);
        _server.Register(this);
        Send(new BackendKeyData(ProcessId, SecretKey));
        await ReadyForQueryAsync(_lifetime.Token).ConfigureAwait(false);
        _logger?.LogDebug("session {ProcessId} ({Peer}): {User}@{Database} authenticated ({Method}, protocol {Version}, TLS {Tls})", ProcessId, RemoteEndPoint, User, Database, AuthenticationMethod, ProtocolVersion, Tls ?? "off");
    }

    private sealed class Exchange(PgBackendSession session) : PgAuthenticationExchange
    {
        public override string User => session.User;

        public override X509Certificate2? TlsCertificate => session.Tls is null ? null : session._options.TlsCertificate;

        public override async ValueTask SendAsync(IBackendMessage message, CancellationToken cancellationToken)
        {
            session.Send(message);
            await session.FlushAsync(cancellationToken).ConfigureAwait(false);
        }

        public override async ValueTask<IFrontendMessage> ReceiveAsync(CancellationToken cancellationToken)
        {
            FrontendMessageKind expected = session._context.ExpectedPasswordMessage;
            PgStreamMessageReader reader = session._reader!;
            bool any;
            try
            {
                any = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (PgProtocolException e) when (e.Error.MessageName != "frame")
            {
                throw PgAuthenticator.MalformedAnswer(expected, e.Error);
            }

            if (!any)
            {
                throw new EndOfStreamException("the client closed the connection during authentication");
            }

            session.OnTraffic(PgDirection.Frontend, reader.CurrentRaw);
            PgReceivedMessage received = reader.Current;
            if (received.FrontendKind != expected || expected == FrontendMessageKind.Unknown)
            {
                string what = expected switch
                {
                    FrontendMessageKind.SASLInitialResponse or FrontendMessageKind.SASLResponse => "SASL",
                    FrontendMessageKind.GSSResponse => "GSS",
                    _ => "password",
                };
                throw new PgErrorException("FATAL", "08P01", $"expected {what} response, got message type {received.TypeByte}");
            }

            try
            {
                return (IFrontendMessage)received.ToMessage(session._context);
            }
            catch (PgProtocolException)
            {
                // Strings are UTF-8; a password that is not cannot match.
                throw PgAuthenticator.PasswordFailed(session.User);
            }
        }
    }

    // ------------------------------------------------------------------ sending

    /// <summary>Encodes a message into the output (sent at the next flush), and lets the decode context learn from it.</summary>
    private void Send(IBackendMessage message)
    {
        SessionOutput output = _output!;
        if (_options.Traffic is null && message.BackendKind != BackendMessageKind.NegotiateProtocolVersion)
        {
            long before = output.UnflushedBytes;
            message.Encode(output, ProtocolVersion);
            _backendOffset += output.UnflushedBytes - before;
            _context.ObserveBackend(message.BackendKind, default);
            return;
        }

        byte[] bytes = message.ToArray(ProtocolVersion);
        OnTraffic(PgDirection.Backend, bytes);
        output.Write(bytes);
        _backendOffset += bytes.Length;
        int header = message.TypeByte < 0 ? 4 : 5;
        _context.ObserveBackend(message.BackendKind, bytes.AsSpan(header));
    }

    private async ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        // Cancelled before anything went out (Terminate, shutdown): the connection is still sound
        // for the FATAL error that ends the session.
        cancellationToken.ThrowIfCancellationRequested();
        try
        {
            await _output!.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Part of a message may have gone out: nothing more can be said on this connection.
            _outputBroken = true;
            throw;
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            _outputBroken = true;
            throw;
        }
    }

    /// <summary>
    /// Flushes when enough output waits: a client that does not read holds back its own session only.
    /// Only the session's end interrupts the wait, not a cancel request: a write cut short leaves part
    /// of a message on the wire. A cancelled statement stops at its next row, as PostgreSQL's does.
    /// </summary>
    private ValueTask FlushIfFullAsync()
        => _output!.UnflushedBytes >= _options.OutputBufferSize ? FlushAsync(_lifetime.Token) : ValueTask.CompletedTask;

    private void OnTraffic(PgDirection direction, ReadOnlySpan<byte> raw) => _options.Traffic?.Invoke(this, direction, raw);

    private void OnTraffic(PgDirection direction, ReadOnlySequence<byte> raw)
    {
        if (_options.Traffic is { } traffic)
        {
            traffic(this, direction, raw.IsSingleSegment ? raw.FirstSpan : raw.ToArray());
        }
    }

    private async ValueTask DeliverNotificationsWhileIdleAsync()
    {
        if (_output is null || !IsAuthenticated || !await _writeLock.WaitAsync(0).ConfigureAwait(false))
        {
            // The session is busy: it delivers them before its next ReadyForQuery.
            return;
        }

        try
        {
            if (SendNotifications())
            {
                await FlushAsync(_lifetime.Token).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException or InvalidOperationException or EndOfStreamException)
        {
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private bool SendNotifications()
    {
        bool any = false;
        while (_notifications.TryDequeue(out NotificationResponse? notification))
        {
            Send(notification);
            any = true;
        }

        return any;
    }

    // ------------------------------------------------------------------ cancel requests

    /// <summary>The session runs something a CancelRequest may cancel: a fresh token if the last one was used.</summary>
    private void BeginBusy()
    {
        lock (_cancelLock)
        {
            if (_cancelRequest.IsCancellationRequested)
            {
                _queryToken?.Dispose();
                _queryToken = null;
                _cancelRequest.Dispose();
                _cancelRequest = new CancellationTokenSource();
            }

            _busy = true;
        }
    }

    /// <summary>What the handler's calls are given: fires on a cancel request or when the session ends.</summary>
    private CancellationToken QueryToken
        => (_queryToken ??= CancellationTokenSource.CreateLinkedTokenSource(_cancelRequest.Token, _lifetime.Token)).Token;

    /// <summary>
    /// Leaves the socket's I/O thread (where continuations run when the process inlines them) for
    /// the thread pool, unless the handler says it never blocks.
    /// </summary>
    private static bool MustLeaveIoThread(PgSessionHandler? handler)
        => handler is not { RunsInline: true } && !Thread.CurrentThread.IsThreadPoolThread;

    private void EndBusy()
    {
        lock (_cancelLock)
        {
            _busy = false;
        }
    }

    private CancellationToken Linked(CancellationToken other)
    {
        _linked?.Dispose();
        _linked = CancellationTokenSource.CreateLinkedTokenSource(_cancelRequest.Token, _lifetime.Token, other);
        return _linked.Token;
    }

    private CancellationTokenSource? _linked;

    /// <summary>A stream that gives back the bytes already read from another before reading on.</summary>
    private sealed class PrefixedStream(Stream inner, byte[] prefix) : Stream
    {
        private int _offset;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush() => inner.Flush();

        public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (_offset < prefix.Length)
            {
                int n = Math.Min(buffer.Length, prefix.Length - _offset);
                prefix.AsSpan(_offset, n).CopyTo(buffer);
                _offset += n;
                return n;
            }

            return inner.Read(buffer);
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
            => _offset < prefix.Length ? ValueTask.FromResult(Read(buffer.Span)) : inner.ReadAsync(buffer, cancellationToken);

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
            => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => inner.WriteAsync(buffer, cancellationToken);

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => inner.WriteAsync(buffer, offset, count, cancellationToken);

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
            }

            base.Dispose(disposing);
        }

        public override ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}

/// <summary>Why a session is being ended from outside its own flow.</summary>
internal enum SessionEnd
{
    None,
    Shutdown,
    IdleTimeout,
    IdleInTransactionTimeout,
}
