using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using PgSpec.Protocol;

namespace PgSpec.Client;

/// <summary>One message (or one-byte answer) that crossed the connection, with its exact bytes.</summary>
/// <param name="Direction">Who sent it.</param>
/// <param name="Name">The message name ("SSLResponse" or "GSSENCResponse" for one-byte answers).</param>
/// <param name="Message">The decoded message; null for one-byte answers.</param>
/// <param name="Raw">The bytes as they crossed the wire.</param>
public sealed record PgTraffic(PgDirection Direction, string Name, IPgMessage? Message, ReadOnlyMemory<byte> Raw);

/// <summary>
/// The frontend (client) role of the protocol: TCP or Unix sockets, TLS (SSLRequest or direct),
/// protocol 3.0/3.2 with NegotiateProtocolVersion, trust/cleartext/MD5/SCRAM-SHA-256(-PLUS)
/// authentication, simple and extended query, COPY, function calls, notifications, cancel.
/// Every message sent and received is reported, with its raw bytes, to the traffic callback given to <see cref="ConnectAsync(PgConnectOptions, Action{PgTraffic}?, CancellationToken)"/>.
/// A violation of the protocol by the server ends the session with <see cref="PgProtocolException"/>;
/// a dropped or stalled connection with <see cref="PgConnectionException"/>.
/// The connection is a socket the session opens, or a stream the caller opens (a tunnel, an in-memory pipe).
/// </summary>
public sealed partial class PgFrontendSession : IAsyncDisposable
{
    private readonly Socket? _socket;
    private readonly Func<CancellationToken, ValueTask<Stream>>? _transport;
    private readonly Stream _stream;
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private readonly PgPipeMessageReader _reader;
    private readonly SessionDecodeContext _context;
    private readonly Dictionary<string, string> _parameters = new(StringComparer.Ordinal);
    private readonly Queue<NotificationResponse> _notifications = new();
    private int _cancelRequests;
    private long _droppedNotifications;
    private readonly Action<PgTraffic>? _traffic;
    private bool _broken;
    private bool _disposed;
    private Task<IBackendMessage>? _pendingReceive;
    private PgRowReader? _openReader;
    private CancellationTokenSource? _waitTimeout;

    private PgFrontendSession(PgConnectOptions options, Socket? socket, Func<CancellationToken, ValueTask<Stream>>? transport, Stream stream, SessionDecodeContext context, Action<PgTraffic>? traffic)
    {
        Options = options;
        _socket = socket;
        _transport = transport;
        _stream = stream;
        _context = context;
        _traffic = traffic;
        // Reads of up to 64 KiB: a result's rows come in a few large reads rather than many small ones.
        _input = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 65536, minimumReadSize: 16384, leaveOpen: true));
        _output = PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true));
        _reader = new PgPipeMessageReader(_input, PgDirection.Backend, context);
    }

    /// <summary>The options the session was opened with.</summary>
    public PgConnectOptions Options { get; }

    /// <summary>The protocol version in force (after NegotiateProtocolVersion).</summary>
    public PgProtocolVersion ProtocolVersion => _context.ProtocolVersion;

    /// <summary>The server's NegotiateProtocolVersion, if it sent one.</summary>
    public NegotiateProtocolVersion? Negotiation { get; private set; }

    /// <summary>The backend's process ID (BackendKeyData).</summary>
    public int ProcessId { get; private set; }

    /// <summary>The cancel key (4 bytes in 3.0, up to 256 in 3.2).</summary>
    public ReadOnlyMemory<byte> SecretKey { get; private set; }

    /// <summary>The authentication the server asked for ("trust", "cleartext", "md5", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS").</summary>
    public string AuthenticationMethod { get; private set; } = "trust";

    /// <summary>Whether TLS is on, and how it started.</summary>
    public string? Tls { get; private set; }

    /// <summary>The server's certificate, when TLS is on.</summary>
    public X509Certificate2? ServerCertificate { get; private set; }

    /// <summary>The latest value of each ParameterStatus.</summary>
    public IReadOnlyDictionary<string, string> Parameters => _parameters;

    /// <summary>The transaction status from the last ReadyForQuery.</summary>
    public TransactionStatus TransactionStatus { get; private set; } = TransactionStatus.Idle;

    /// <summary>
    /// Notices (NoticeResponse) as they arrive, also while idle. A handler that throws breaks the
    /// session (the operation that was reading cannot follow the rest of the answer): its exception
    /// reaches that operation's caller, and the session takes no more operations.
    /// </summary>
    public event Action<NoticeResponse>? Notice;

    /// <summary>
    /// Notifications (NotificationResponse) as they arrive, also while idle. A handler that throws
    /// breaks the session, as a <see cref="Notice"/> handler does.
    /// </summary>
    public event Action<NotificationResponse>? Notification;

    /// <summary>
    /// How many notifications <see cref="WaitForNotificationAsync"/> keeps for later: beyond them, the
    /// oldest not yet taken is dropped and counted in <see cref="DroppedNotifications"/>, so that a
    /// session whose notifications are only handled by <see cref="Notification"/> (or a server that
    /// sends without end) holds bounded memory.
    /// </summary>
    public const int MaxQueuedNotifications = 10_000;

    /// <summary>Notifications dropped unread from the queue of <see cref="WaitForNotificationAsync"/> (see <see cref="MaxQueuedNotifications"/>).</summary>
    public long DroppedNotifications => Interlocked.Read(ref _droppedNotifications);

    /// <summary>Connects, negotiates TLS and the protocol version, authenticates and waits for ReadyForQuery.</summary>
    public static Task<PgFrontendSession> ConnectAsync(PgConnectOptions options, Action<PgTraffic>? traffic = null, CancellationToken cancellationToken = default)
        => ConnectCoreAsync(options, null, traffic, cancellationToken);

    /// <summary>
    /// Runs the protocol over streams the caller opens instead of a socket (a tunnel, an in-memory
    /// pipe): <paramref name="transport"/> is called for each connection (the session's, a retry
    /// without TLS, a CancelRequest's), and the session disposes what it returns. Host, port and
    /// socket path of <paramref name="options"/> are not used.
    /// </summary>
    public static Task<PgFrontendSession> ConnectAsync(PgConnectOptions options, Func<CancellationToken, ValueTask<Stream>> transport, Action<PgTraffic>? traffic = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transport);
        return ConnectCoreAsync(options, transport, traffic, cancellationToken);
    }

    private static async Task<PgFrontendSession> ConnectCoreAsync(PgConnectOptions options, Func<CancellationToken, ValueTask<Stream>>? transport, Action<PgTraffic>? traffic, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.ConnectTimeout);
        try
        {
            // Each fallback happens at most once, whatever order the server forces them in.
            PgConnectOptions attempt = options;
            bool plainOnly = false;
            bool gssAccepted = false;
            while (true)
            {
                try
                {
                    PgFrontendSession session = await ConnectOnceAsync(attempt, transport, traffic, plainOnly, timeout.Token).ConfigureAwait(false);
                    if (gssAccepted)
                    {
                        session.GssEncryptionAnswer = (byte)'G';
                    }

                    return session;
                }
                catch (GssAcceptedException) when (attempt.RequestGssEncryption)
                {
                    // The server would do GSSAPI encryption, which this client lacks: start over
                    // without asking, as libpq does when it has no GSSAPI credentials.
                    attempt = attempt with { RequestGssEncryption = false };
                    gssAccepted = true;
                }
                catch (SslRefusedException) when (!plainOnly && options.SslMode is PgSslMode.Prefer or PgSslMode.Allow)
                {
                    // The server answered SSLRequest with an error ('E'): try again without TLS, as libpq does.
                    plainOnly = true;
                }
            }
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            string message = $"connecting to {Describe(options)} timed out after {options.ConnectTimeout.TotalSeconds:0.#} s";
            throw new PgConnectionException(message, new TimeoutException(message));
        }
        catch (SslRefusedException e)
        {
            throw new PgConnectionException(e.Message);
        }
    }

    private static string Describe(PgConnectOptions options) => options.UnixSocketPath ?? $"{options.Host}:{options.Port}";

    private sealed class SslRefusedException(string message) : Exception(message);

    private sealed class GssAcceptedException() : Exception("the server accepted GSSAPI encryption");

    /// <summary>The server's answer to GSSENCRequest ('N' or 'G'), if one was sent.</summary>
    public byte? GssEncryptionAnswer { get; private set; }

    private static async Task<PgFrontendSession> ConnectOnceAsync(PgConnectOptions options, Func<CancellationToken, ValueTask<Stream>>? transport, Action<PgTraffic>? traffic, bool plainOnly, CancellationToken cancellationToken)
    {
        (Socket? socket, Stream stream) = await OpenAsync(options, transport, cancellationToken).ConfigureAwait(false);
        var context = new SessionDecodeContext();
        string? tls = null;
        X509Certificate2? serverCertificate = null;
        try
        {
            byte? gssAnswer = null;
            if (options.RequestGssEncryption)
            {
                // Only 'N' returns; 'G' throws GssAcceptedException, since GSSAPI encryption is not supported.
                gssAnswer = await RequestEncryptionAsync(stream, socket, new GSSENCRequest(), "GSSENCResponse", traffic, context, cancellationToken).ConfigureAwait(false);
            }

            bool wantTls = !plainOnly && options.SslMode is not (PgSslMode.Disable or PgSslMode.Allow);
            if (wantTls && options.SslNegotiation == PgSslNegotiation.Direct)
            {
                if (options.SslMode is PgSslMode.Prefer)
                {
                    throw new PgConnectionException("sslnegotiation=direct needs sslmode=require, verify-ca or verify-full");
                }

                (stream, serverCertificate) = await StartTlsAsync(stream, options, direct: true, cancellationToken).ConfigureAwait(false);
                tls = "direct";
            }
            else if (wantTls)
            {
                byte answer = await RequestEncryptionAsync(stream, socket, new SSLRequest(), "SSLResponse", traffic, context, cancellationToken).ConfigureAwait(false);
                if (answer == (byte)'S')
                {
                    (stream, serverCertificate) = await StartTlsAsync(stream, options, direct: false, cancellationToken).ConfigureAwait(false);
                    tls = "SSLRequest";
                }
                else if (options.SslMode >= PgSslMode.Require)
                {
                    throw new PgConnectionException($"the server at {Describe(options)} does not support SSL, but sslmode={options.SslMode} requires it");
                }
            }

            var session = new PgFrontendSession(options, socket, transport, stream, context, traffic)
            {
                Tls = tls,
                ServerCertificate = serverCertificate,
                GssEncryptionAnswer = gssAnswer,
            };
            try
            {
                await session.StartupAsync(cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                await session.CloseAsync().ConfigureAwait(false);
                throw;
            }

            return session;
        }
        catch
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            socket?.Dispose();
            throw;
        }
    }

    /// <summary>Opens a connection: the caller's transport stream, or a socket.</summary>
    private static async Task<(Socket? Socket, Stream Stream)> OpenAsync(PgConnectOptions options, Func<CancellationToken, ValueTask<Stream>>? transport, CancellationToken cancellationToken)
    {
        if (transport is not null)
        {
            Stream opened = await transport(cancellationToken).ConfigureAwait(false);
            return (null, opened ?? throw new InvalidOperationException("the transport returned no stream"));
        }

        Socket socket = await OpenSocketAsync(options, cancellationToken).ConfigureAwait(false);
        return (socket, new NetworkStream(socket, ownsSocket: false));
    }

    private static async Task<Socket> OpenSocketAsync(PgConnectOptions options, CancellationToken cancellationToken)
    {
        Socket socket;
        EndPoint endPoint;
        if (options.UnixSocketPath is not null)
        {
            socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            endPoint = new UnixDomainSocketEndPoint(options.UnixSocketPath);
        }
        else
        {
            IPAddress address = IPAddress.TryParse(options.Host, out IPAddress? parsed)
                ? parsed
                : (await Dns.GetHostAddressesAsync(options.Host, cancellationToken).ConfigureAwait(false)).FirstOrDefault()
                    ?? throw new PgConnectionException($"cannot resolve {options.Host}");
            socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            endPoint = new IPEndPoint(address, options.Port);
        }

        try
        {
            await socket.ConnectAsync(endPoint, cancellationToken).ConfigureAwait(false);
            return socket;
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new PgConnectionException($"cannot connect to {Describe(options)}: {e.Message}", e);
        }
    }

    /// <summary>Sends SSLRequest or GSSENCRequest and reads exactly one byte back, nothing more.</summary>
    private static async Task<byte> RequestEncryptionAsync(Stream stream, Socket? socket, IFrontendMessage request, string answerName, Action<PgTraffic>? traffic, DecodeContext context, CancellationToken cancellationToken)
    {
        byte[] bytes = request.ToArray();
        traffic?.Invoke(new PgTraffic(PgDirection.Frontend, ((IPgMessage)request).Name, request, bytes));
        context.ObserveFrontend(request.FrontendKind, bytes.AsSpan(4));
        await stream.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
        byte[] answer = new byte[1];
        int n = await stream.ReadAsync(answer, cancellationToken).ConfigureAwait(false);
        if (n == 0)
        {
            throw new PgConnectionException($"the server closed the connection instead of answering {request.Name}");
        }

        context.ExpectEncryptionAnswer = false;
        traffic?.Invoke(new PgTraffic(PgDirection.Backend, answerName, null, answer));
        switch (answer[0])
        {
            case (byte)'S' when request is SSLRequest:
            case (byte)'G' when request is GSSENCRequest:
                // Bytes that arrived with the answer were not encrypted: a man in the middle could
                // have injected them (CVE-2021-23222). Over a caller's stream they cannot be seen
                // here; they are never read as plain data, and the TLS handshake rejects them.
                if (socket is { Available: > 0 })
                {
                    throw new PgConnectionException($"received unencrypted data after the answer to {request.Name}");
                }

                if (request is GSSENCRequest)
                {
                    throw new GssAcceptedException();
                }

                return answer[0];
            case (byte)'N':
                return answer[0];
            case (byte)'E':
                // An error message from a server that does not know the request. It is not read or
                // shown: it was sent before any encryption (CVE-2024-10977).
                throw new SslRefusedException($"the server does not support {(request is SSLRequest ? "SSL" : "GSSAPI encryption")} (it answered {request.Name} with an error)");
            default:
                throw new PgProtocolException(new PgDecodeError(answerName, null, 0, $"expected 'S', 'G' or 'N', received {PgTraceWriter.FormatByte(answer[0])}"));
        }
    }

    private static async Task<(Stream, X509Certificate2)> StartTlsAsync(Stream stream, PgConnectOptions options, bool direct, CancellationToken cancellationToken)
    {
        var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
        var authentication = new SslClientAuthenticationOptions
        {
            TargetHost = options.UnixSocketPath is null ? options.Host : "localhost",
            RemoteCertificateValidationCallback = (_, certificate, chain, errors) => Validate(options, certificate, errors),
            EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        };
        if (direct)
        {
            authentication.ApplicationProtocols = [new SslApplicationProtocol("postgresql")];
        }

        try
        {
            await ssl.AuthenticateAsClientAsync(authentication, cancellationToken).ConfigureAwait(false);
        }
        catch (AuthenticationException e)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw new PgConnectionException($"TLS handshake failed: {e.Message}", e);
        }
        catch (IOException e)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw new PgConnectionException($"TLS handshake failed: {e.Message}{(direct ? " (direct TLS needs PostgreSQL 17 or later)" : "")}", e);
        }

        if (direct && ssl.NegotiatedApplicationProtocol != new SslApplicationProtocol("postgresql"))
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw new PgConnectionException("the server did not agree to ALPN \"postgresql\" for direct TLS");
        }

        X509Certificate2 certificate = X509CertificateLoader.LoadCertificate(ssl.RemoteCertificate!.GetRawCertData());
        return (ssl, certificate);
    }

    private static bool Validate(PgConnectOptions options, X509Certificate? certificate, SslPolicyErrors errors)
    {
        if (options.SslMode is PgSslMode.Prefer or PgSslMode.Require or PgSslMode.Allow)
        {
            return certificate is not null;
        }

        if (certificate is null || (errors & SslPolicyErrors.RemoteCertificateNotAvailable) != 0)
        {
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (options.RootCertificates is { Count: > 0 } roots)
        {
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.AddRange(roots);
        }

        using X509Certificate2 leaf = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        if (!chain.Build(leaf))
        {
            return false;
        }

        return options.SslMode != PgSslMode.VerifyFull || (errors & SslPolicyErrors.RemoteCertificateNameMismatch) == 0;
    }

    private async Task StartupAsync(CancellationToken cancellationToken)
    {
        var parameters = new List<StartupMessage.Parameter> { new("user", Options.User) };
        if (Options.Database is not null)
        {
            parameters.Add(new("database", Options.Database));
        }

        foreach (KeyValuePair<string, string> pair in Options.Parameters)
        {
            parameters.Add(new(pair.Key, pair.Value));
        }

        Send(new StartupMessage(Options.ProtocolVersion.Code, [.. parameters]));
        await FlushAsync(cancellationToken).ConfigureAwait(false);

        ScramSha256Client? scram = null;
        while (true)
        {
            IBackendMessage message = await ReceiveAsync(cancellationToken).ConfigureAwait(false);
            switch (message)
            {
                case AuthenticationOk:
                    if (Options.ChannelBinding == PgChannelBinding.Require && AuthenticationMethod != "SCRAM-SHA-256-PLUS")
                    {
                        throw new PgConnectionException($"channel_binding=require, but the server authenticated with {AuthenticationMethod}");
                    }

                    await FinishStartupAsync(cancellationToken).ConfigureAwait(false);
                    return;
                case AuthenticationCleartextPassword:
                    AuthenticationMethod = "cleartext";
                    Send(new PasswordMessage(RequirePassword()));
                    break;
                case AuthenticationMD5Password md5:
                    AuthenticationMethod = "md5";
                    Send(new PasswordMessage(Md5Password(Options.User, RequirePassword(), md5.Salt.Span)));
                    break;
                case AuthenticationSASL sasl:
                    scram = StartScram(sasl);
                    Send(new SASLInitialResponse(scram.Mechanism, scram.ClientFirst()));
                    break;
                case AuthenticationSASLContinue next:
                    Send(new SASLResponse((scram ?? throw Violation("AuthenticationSASLContinue before AuthenticationSASL")).ClientFinal(next.Data.Span)));
                    break;
                case AuthenticationSASLFinal final:
                    (scram ?? throw Violation("AuthenticationSASLFinal before AuthenticationSASL")).VerifyServerFinal(final.Data.Span);
                    continue;
                case AuthenticationKerberosV5:
                case AuthenticationGSS:
                case AuthenticationGSSContinue:
                case AuthenticationSSPI:
                    throw new PgConnectionException($"the server asks for {((IPgMessage)message).Name}: GSSAPI, SSPI and Kerberos authentication are not supported");
                case NegotiateProtocolVersion negotiation:
                    Negotiate(negotiation);
                    continue;
                case ErrorResponse error:
                    throw ServerError(error);
                case NoticeResponse:
                    continue;
                default:
                    throw Violation($"unexpected {message.Name} during authentication");
            }

            await FlushAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private void Negotiate(NegotiateProtocolVersion negotiation)
    {
        Negotiation = negotiation;
        var offered = new PgProtocolVersion(negotiation.NewestProtocolVersion);
        if (offered.Major != Options.ProtocolVersion.Major || offered.Code > Options.ProtocolVersion.Code)
        {
            throw Violation($"NegotiateProtocolVersion offers {offered}, which is not below the requested {Options.ProtocolVersion}");
        }

        if (Options.RequireProtocolVersion && offered.Code < Options.ProtocolVersion.Code)
        {
            throw new PgConnectionException($"the server supports protocol {offered} at most, but {Options.ProtocolVersion} is required");
        }
    }

    private async Task FinishStartupAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            IBackendMessage message = await ReceiveAsync(cancellationToken).ConfigureAwait(false);
            switch (message)
            {
                case BackendKeyData key:
                    ProcessId = key.ProcessId;
                    SecretKey = key.SecretKey;
                    break;
                case ReadyForQuery:
                    return;
                case ErrorResponse error:
                    throw ServerError(error);
                case ParameterStatus or NoticeResponse or NegotiateProtocolVersion:
                    break;
                default:
                    throw Violation($"unexpected {message.Name} after authentication");
            }
        }
    }

    private string RequirePassword()
        => Options.Password ?? throw new PgConnectionException($"the server asks for a password for user {Options.User}, and none was given");

    /// <summary>"md5" + md5(md5(password + user) + salt), in lower-case hex.</summary>
    internal static string Md5Password(string user, string password, ReadOnlySpan<byte> salt)
    {
        ArgumentNullException.ThrowIfNull(user);
        ArgumentNullException.ThrowIfNull(password);
        string inner = Convert.ToHexStringLower(MD5.HashData(Encoding.UTF8.GetBytes(password + user)));
        byte[] salted = [.. Encoding.ASCII.GetBytes(inner), .. salt];
        return "md5" + Convert.ToHexStringLower(MD5.HashData(salted));
    }

    private ScramSha256Client StartScram(AuthenticationSASL sasl)
    {
        bool tls = ServerCertificate is not null;
        bool offersPlus = sasl.Mechanisms.Contains("SCRAM-SHA-256-PLUS");
        bool offersPlain = sasl.Mechanisms.Contains("SCRAM-SHA-256");
        string password = RequirePassword();
        if (tls && offersPlus && Options.ChannelBinding != PgChannelBinding.Disable)
        {
            AuthenticationMethod = "SCRAM-SHA-256-PLUS";
            return new ScramSha256Client(password, plus: true, ScramSha256Client.TlsServerEndPoint(ServerCertificate!), clientSupportsBinding: true);
        }

        if (Options.ChannelBinding == PgChannelBinding.Require)
        {
            throw new PgConnectionException(tls
                ? "channel_binding=require, but the server does not offer SCRAM-SHA-256-PLUS"
                : "channel_binding=require needs TLS");
        }

        if (!offersPlain)
        {
            throw new PgConnectionException($"none of the server's SASL mechanisms is supported: {string.Join(", ", sasl.Mechanisms)}");
        }

        AuthenticationMethod = "SCRAM-SHA-256";
        return new ScramSha256Client(password, plus: false, null, clientSupportsBinding: tls && Options.ChannelBinding != PgChannelBinding.Disable);
    }

    // ------------------------------------------------------------------ sending and receiving

    /// <summary>Encodes a message into the send buffer (nothing goes out until <see cref="FlushAsync"/>).</summary>
    public void Send(IFrontendMessage message)
    {
        ThrowIfReaderOpen();
        SendUnchecked(message);
    }

    /// <summary>Encodes a message, also while a row reader is open (its own CopyFail).</summary>
    internal void SendUnchecked(IFrontendMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        ThrowIfBroken();
        Write(message, message.ToArray(_context.ProtocolVersion));
    }

    private void Write(IFrontendMessage message, byte[] bytes)
    {
        ArgumentNullException.ThrowIfNull(message);
        _context.ObserveFrontend(message.FrontendKind, bytes.AsSpan(message.TypeByte < 0 ? 4 : 5));
        _output.Write(bytes);
        if (_traffic is not null)
        {
            Report(new PgTraffic(PgDirection.Frontend, message.Name, message, bytes));
        }
    }

    /// <summary>
    /// Gives the traffic callback a message of the session's connection. A callback that throws
    /// breaks the session: the message has been written or read already, and the operation it
    /// interrupts cannot follow the conversation any more.
    /// </summary>
    private void Report(PgTraffic traffic)
    {
        try
        {
            _traffic!(traffic);
        }
        catch
        {
            _broken = true;
            throw;
        }
    }

    /// <summary>Sends what was written.</summary>
    public async Task FlushAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfBroken();
        try
        {
            FlushResult result = await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
            if (result.IsCompleted)
            {
                throw Broken(new PgConnectionException("the connection is closed"));
            }
        }
        catch (IOException e)
        {
            throw Broken(new PgConnectionException("sending failed: " + e.Message, e));
        }
        catch (OperationCanceledException)
        {
            // What was sent of the buffer is unknown: the session cannot go on.
            _broken = true;
            throw;
        }
    }

    /// <summary>
    /// Encodes every message before writing any, so that one that cannot be encoded (a Bind with
    /// more values than an Int16 counts) leaves nothing queued.
    /// </summary>
    internal void SendAll(IReadOnlyList<IFrontendMessage> messages)
    {
        ThrowIfReaderOpen();
        ThrowIfBroken();
        var encoded = new byte[messages.Count][];
        for (int i = 0; i < messages.Count; i++)
        {
            encoded[i] = messages[i].ToArray(_context.ProtocolVersion);
        }

        for (int i = 0; i < messages.Count; i++)
        {
            Write(messages[i], encoded[i]);
        }
    }

    /// <summary>
    /// Receives the next message, whatever it is (notices and notifications too, which are also
    /// raised as events). ParameterStatus and the transaction status are tracked. A message the
    /// protocol's flow does not allow in the connection's phase (<see cref="BackendMessages.IsAllowedIn"/>:
    /// a DataRow during COPY, a CopyData outside it) breaks the connection with a
    /// <see cref="PgProtocolException"/>.
    /// </summary>
    public async Task<IBackendMessage> ReceiveAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfReaderOpen();
        return await ReceiveUncheckedAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task<IBackendMessage> ReceiveUncheckedAsync(CancellationToken cancellationToken)
    {
        if (_pendingReceive is { } pending)
        {
            // A receive that TryReceiveAsync started and stopped waiting for.
            _pendingReceive = null;
            try
            {
                return await pending.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!pending.IsCompleted)
            {
                _broken = true;
                throw;
            }
        }

        return await ReceiveCoreAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Receives the next message if one arrives within <paramref name="wait"/>; null when the
    /// server stays silent that long. Unlike a cancelled <see cref="ReceiveAsync"/>, a wait that
    /// ends leaves the session usable: the read goes on, and the next receive returns its message.
    /// Messages may be sent meanwhile.
    /// </summary>
    public async Task<IBackendMessage?> TryReceiveAsync(TimeSpan wait, CancellationToken cancellationToken = default)
    {
        ThrowIfReaderOpen();
        Task<IBackendMessage> receive = _pendingReceive ?? ReceiveCoreAsync(CancellationToken.None);
        _pendingReceive = receive;
        if (!receive.IsCompleted)
        {
            using var delay = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            Task winner = await Task.WhenAny(receive, Task.Delay(wait, delay.Token)).ConfigureAwait(false);
            await delay.CancelAsync().ConfigureAwait(false);
            if (winner != receive)
            {
                cancellationToken.ThrowIfCancellationRequested();
                return null;
            }
        }

        _pendingReceive = null;
        return await receive.ConfigureAwait(false);
    }

    /// <summary>
    /// Writes bytes as they are into the send buffer (nothing goes out until <see cref="FlushAsync"/>),
    /// unchecked: a malformed message on purpose, to see what a server does with it. The session
    /// does not learn from them (a phase they would change stays as it was).
    /// </summary>
    public void SendRaw(ReadOnlySpan<byte> bytes)
    {
        ThrowIfReaderOpen();
        ThrowIfBroken();
        _output.Write(bytes);
        if (_traffic is not null)
        {
            Report(new PgTraffic(PgDirection.Frontend, "Raw", null, bytes.ToArray()));
        }
    }

    /// <summary>Closes the connection at once, without sending Terminate (what a client that dies does).</summary>
    public async ValueTask AbortAsync()
    {
        if (_disposed)
        {
            return;
        }

        _broken = true;
        await CloseAsync().ConfigureAwait(false);
    }

    private async Task<IBackendMessage> ReceiveCoreAsync(CancellationToken cancellationToken)
    {
        await ReadFrameAsync(cancellationToken).ConfigureAwait(false);
        return AcceptCurrent(borrowRows: false)!;
    }

    /// <summary>
    /// The next message for a row reader: null when it is a DataRow, left borrowed in the
    /// framing reader (<see cref="CurrentRow"/>, valid until the next read) without a message
    /// object; otherwise the message. A message already received whole is taken without waiting
    /// or allocating; a wait for the server is bounded by the command timeout.
    /// </summary>
    internal ValueTask<IBackendMessage?> ReceiveRowOrMessageAsync(CancellationToken cancellationToken)
    {
        if (_pendingReceive is null)
        {
            ThrowIfBroken();
            bool taken;
            try
            {
                taken = _reader.TryRead();
            }
            catch (PgProtocolException e)
            {
                throw Broken(e);
            }

            if (taken)
            {
                return new ValueTask<IBackendMessage?>(AcceptCurrent(borrowRows: true));
            }
        }

        return ReceiveRowOrMessageWaitingAsync(cancellationToken);
    }

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<IBackendMessage?> ReceiveRowOrMessageWaitingAsync(CancellationToken cancellationToken)
    {
        // One timer for every wait of the session's row readers, unless the caller's token must be linked in.
        CancellationTokenSource timeout;
        if (cancellationToken.CanBeCanceled)
        {
            timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        }
        else
        {
            if (_waitTimeout is null || !_waitTimeout.TryReset())
            {
                _waitTimeout?.Dispose();
                _waitTimeout = new CancellationTokenSource();
            }

            timeout = _waitTimeout;
        }

        timeout.CancelAfter(Options.CommandTimeout);
        try
        {
            if (_pendingReceive is not null)
            {
                // A receive TryReceiveAsync left running: its message is still the framing reader's current one.
                IBackendMessage message = await ReceiveUncheckedAsync(timeout.Token).ConfigureAwait(false);
                return message is DataRow ? null : message;
            }

            await ReadFrameAsync(timeout.Token).ConfigureAwait(false);
            return AcceptCurrent(borrowRows: true);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw Broken(new PgConnectionException($"no message from the server arrived whole within {Options.CommandTimeout.TotalSeconds:0.#} s (the command timeout bounds each wait for a message, however long)"));
        }
        finally
        {
            if (timeout != _waitTimeout)
            {
                timeout.Dispose();
            }
            else if (!_disposed)
            {
                // Disarmed for the next wait (the session's closing disposes it).
                timeout.CancelAfter(Timeout.InfiniteTimeSpan);
            }
        }
    }

    /// <summary>The DataRow a row reader was given (null from <see cref="ReceiveRowOrMessageAsync"/>), borrowed until the next read.</summary>
    internal DataRow.View CurrentRow => DataRow.View.Read(_reader.Current, _context);

    /// <summary>The validated body of that DataRow, borrowed until the next read.</summary>
    internal ReadOnlyMemory<byte> CurrentRowBody => _reader.CurrentBody;

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadFrameAsync(CancellationToken cancellationToken)
    {
        ThrowIfBroken();
        bool any;
        try
        {
            any = await _reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (PgProtocolException e) when (e.Error.IsClosedInsideMessage)
        {
            throw Broken(new PgConnectionException("the server closed the connection inside a message", e));
        }
        catch (PgProtocolException e)
        {
            throw Broken(e);
        }
        catch (IOException e)
        {
            throw Broken(new PgConnectionException("the connection failed: " + e.Message, e));
        }
        catch (OperationCanceledException)
        {
            _broken = true;
            throw;
        }

        if (!any)
        {
            throw Broken(new PgConnectionException("the server closed the connection"));
        }
    }

    /// <summary>
    /// Checks the message the framing reader holds against the phase, reports it to the traffic
    /// callback and learns from it; returns it as a message, or null for a DataRow when
    /// <paramref name="borrowRows"/> (the row stays the framing reader's).
    /// </summary>
    private IBackendMessage? AcceptCurrent(bool borrowRows)
    {
        PgReceivedMessage received = _reader.Current;
        PgSessionPhase phase = _context.PhaseBeforeBackend;
        if (!received.IsUnknown && !BackendMessages.IsAllowedIn(received.BackendKind, phase))
        {
            throw Violation($"the server sent {received.Name}, which the protocol does not allow in the {phase} phase");
        }

        if (borrowRows && !received.IsUnknown && received.BackendKind == BackendMessageKind.DataRow)
        {
            if (_traffic is not null)
            {
                Report(new PgTraffic(PgDirection.Backend, DataRow.MessageName, received.ToMessage(_context), _reader.CurrentRaw.ToArray()));
            }

            return null;
        }

        IBackendMessage message;
        try
        {
            message = (IBackendMessage)received.ToMessage(_context);
        }
        catch (PgProtocolException e)
        {
            // A String that is not UTF-8 (a server in another client_encoding): the answer cannot be followed.
            throw Broken(e);
        }

        switch (message)
        {
            case ParameterStatus status:
                _parameters[status.Name] = status.Value;
                break;
            case ReadyForQuery ready:
                TransactionStatus = ready.TransactionStatus;
                break;
            case NotificationResponse notification:
                // Under a lock: a receive TryReceiveAsync stopped waiting for may still run while
                // the caller takes notifications.
                lock (_notifications)
                {
                    if (_notifications.Count == MaxQueuedNotifications)
                    {
                        _notifications.Dequeue();
                        _droppedNotifications++;
                    }

                    _notifications.Enqueue(notification);
                }

                break;
        }

        // The caller's callbacks, last: one that throws breaks the session (whatever operation was
        // reading can no longer follow the answer) and its exception reaches that operation's caller.
        if (_traffic is not null)
        {
            // The bytes are copied only for a traffic callback: they are the reader's until the next read.
            Report(new PgTraffic(PgDirection.Backend, received.IsUnknown ? "Unknown" : message.Name, message, _reader.CurrentRaw.ToArray()));
        }

        try
        {
            switch (message)
            {
                case NoticeResponse notice:
                    Notice?.Invoke(notice);
                    break;
                case NotificationResponse notification:
                    Notification?.Invoke(notification);
                    break;
            }
        }
        catch
        {
            _broken = true;
            throw;
        }

        return message;
    }

    private void ThrowIfReaderOpen()
    {
        if (_openReader is not null)
        {
            throw new InvalidOperationException("a row reader is open on this session: read it to the end or dispose it first");
        }
    }

    /// <summary>True once an error has broken the connection.</summary>
    internal bool IsBroken => _broken || _disposed;

    /// <summary>How many times <see cref="CancelAsync"/> has been called (a row reader passes over the 57014 it asked for).</summary>
    internal int CancelRequests => Volatile.Read(ref _cancelRequests);

    internal void ReaderClosed(PgRowReader reader)
    {
        if (_openReader == reader)
        {
            _openReader = null;
        }
    }

    internal PgProtocolException ViolationFor(string reason) => Violation(reason);

    /// <summary>
    /// A DataRow has as many columns as the RowDescription of its result (libpq: "unexpected field
    /// count in "D" message"); else the answer cannot be followed and the session breaks.
    /// </summary>
    internal void CheckRowWidth(RowDescription? description, int columns)
    {
        if (description is null)
        {
            throw Violation("DataRow without a RowDescription");
        }

        if (columns != description.Fields.Length)
        {
            throw Violation($"a DataRow of {columns} columns in a result of {description.Fields.Length}");
        }
    }

    /// <summary>Takes a notification kept for <see cref="WaitForNotificationAsync"/>.</summary>
    private bool TryTakeNotification([System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out NotificationResponse? notification)
    {
        lock (_notifications)
        {
            return _notifications.TryDequeue(out notification);
        }
    }

    private void ThrowIfBroken()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_broken)
        {
            throw new PgConnectionException("the connection is broken by an earlier error");
        }
    }

    private Exception Broken(Exception e)
    {
        _broken = true;
        try
        {
            _socket?.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
        }
        catch (ObjectDisposedException)
        {
        }

        return e;
    }

    private PgProtocolException Violation(string reason)
        => (PgProtocolException)Broken(new PgProtocolException(new PgDecodeError("session", null, _reader.Reader.Position, reason)));

    internal static PgServerException ServerError(ErrorResponse error)
        => new(PgErrorFields.From(error.Fields.Select(f => (f.Code, f.Value))), error);

    /// <summary>Sends Terminate and closes the connection.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        if (!_broken)
        {
            try
            {
                SendUnchecked(new Terminate());
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                await _output.FlushAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or PgException or ObjectDisposedException or InvalidOperationException)
            {
                // Closing anyway.
            }
        }

        await CloseAsync().ConfigureAwait(false);
    }

    private async Task CloseAsync()
    {
        _disposed = true;
        Task<IBackendMessage>? pending = _pendingReceive;
        _pendingReceive = null;
        if (pending is not null)
        {
            // The read in progress ends when the connection closes; it is not waited for on the pipe.
            _socket?.Dispose();
            await _stream.DisposeAsync().ConfigureAwait(false);
            try
            {
                await pending.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
            }
            catch (Exception e) when (e is PgException or IOException or ObjectDisposedException or InvalidOperationException or OperationCanceledException or TimeoutException)
            {
                // Closing anyway.
            }
        }

        await _input.CompleteAsync().ConfigureAwait(false);
        await _output.CompleteAsync().ConfigureAwait(false);
        await _stream.DisposeAsync().ConfigureAwait(false);
        _socket?.Dispose();
        _waitTimeout?.Dispose();
    }

    /// <summary>Asks the server to cancel what this session runs, over a new connection (CancelRequest with this session's key).</summary>
    public async Task CancelAsync(CancellationToken cancellationToken = default)
    {
        (Socket? socket, Stream stream) = await OpenAsync(Options, _transport, cancellationToken).ConfigureAwait(false);
        using Socket? owned = socket;
        await using Stream closing = stream;
        var request = new CancelRequest(ProcessId, SecretKey);
        byte[] bytes = request.ToArray(ProtocolVersion);
        _traffic?.Invoke(new PgTraffic(PgDirection.Frontend, CancelRequest.MessageName, request, bytes));
        await stream.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
        await stream.FlushAsync(cancellationToken).ConfigureAwait(false);

        // Sent: a row reader open now passes over the 57014 that may end its answer.
        Interlocked.Increment(ref _cancelRequests);

        // The server closes the connection when it has processed the request. Like libpq, wait
        // for that rather than half-closing first: a pooler may still be forwarding the request
        // (pgbouncer 1.18 aborts on a client EOF at that moment).
        byte[] sink = new byte[16];
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(5));
        try
        {
            while (await stream.ReadAsync(sink, timeout.Token).ConfigureAwait(false) > 0)
            {
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException)
        {
            // The request was sent; waiting for the close is a courtesy.
        }
    }
}

/// <summary>
/// The session's decode context: what sending (on the caller's thread) and receiving (possibly
/// still in progress after <see cref="PgFrontendSession.TryReceiveAsync"/> stopped waiting) learn
/// is learned one at a time, and the phase a backend message arrived in is kept for its check.
/// A CopyDone or CopyFail sent ahead, before the server's CopyInResponse came (as a script that
/// sends a COPY's data without waiting does), ends the COPY the server then starts: its phase is
/// over before it begins, and CommandComplete after it is no violation.
/// </summary>
internal sealed class SessionDecodeContext : DecodeContext
{
    private readonly Lock _lock = new();
    private int _copyEndsAhead;

    /// <summary>The phase before the last backend message was observed.</summary>
    public PgSessionPhase PhaseBeforeBackend { get; private set; }

    public override void ObserveFrontend(FrontendMessageKind kind, ReadOnlySpan<byte> body)
    {
        lock (_lock)
        {
            if (kind is FrontendMessageKind.CopyDone or FrontendMessageKind.CopyFail && Phase is not (PgSessionPhase.CopyIn or PgSessionPhase.CopyBoth))
            {
                _copyEndsAhead++;
            }

            base.ObserveFrontend(kind, body);
        }
    }

    public override void ObserveBackend(BackendMessageKind kind, ReadOnlySpan<byte> body)
    {
        if (LearnsNothingFrom(kind))
        {
            // A DataRow, or another message that keeps the phase whatever it is: nothing to learn, and
            // no CopyInResponse to meet a CopyDone sent ahead. The phase read may race only with a
            // frontend message's change of it, which the lock would order either way.
            PhaseBeforeBackend = Phase;
            return;
        }

        lock (_lock)
        {
            PhaseBeforeBackend = Phase;
            base.ObserveBackend(kind, body);
            if (Phase == PgSessionPhase.CopyIn && PhaseBeforeBackend != PgSessionPhase.CopyIn && _copyEndsAhead > 0)
            {
                _copyEndsAhead--;
                Phase = PgSessionPhase.Normal;
            }
        }
    }
}
