using System.Buffers;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using PgSpec.Protocol;
using PgSpec.Sockets;

namespace PgSpec.Proxy;

/// <summary>Ends a connection; <see cref="ClientError"/> is sent to the client first when the protocol allows it.</summary>
internal sealed class ProxyConnectionException : Exception
{
    public ProxyConnectionException(string message, byte[]? clientError, bool failure = true)
        : base(message)
    {
        ClientError = clientError;
        Failure = failure;
    }

    public byte[]? ClientError { get; }

    /// <summary>False when the connection ends as the protocol foresees (the server refused the login, say).</summary>
    public bool Failure { get; }
}

/// <summary>Which timer of a connection is running.</summary>
internal enum ConnectionTimer
{
    None,
    Handshake,
    Idle,

    /// <summary>One side has ended; the other has the shutdown grace to follow.</summary>
    Closing,

    /// <summary>Beyond the connection limit, a client has a few seconds to send its startup packet and be refused.</summary>
    Refusal,
    ShutdownGrace,
}

/// <summary>
/// One client connection and its server connection, in three steps: the startup packets (TLS,
/// cancel requests), authentication (one message at a time, each side only when it is its turn),
/// then the relay of both directions.
/// </summary>
internal sealed partial class ProxyConnection
{
    private static readonly byte[] s_sslRequest = new SSLRequest().ToArray();
    private static readonly SslApplicationProtocol s_postgresqlAlpn = new(PgStartupHandshake.TlsApplicationProtocol);

    private readonly PgProxy _proxy;
    private readonly long _id;
    private readonly EngineSocket _client;
    private readonly bool _overLimit;
    private readonly DecodeContext _context;
    private readonly PgMessageReader _frontend;
    private readonly PgMessageReader _backend;
    private readonly IProxyTraceSink? _trace;
    private readonly Lock _timerLock = new();
    private CancellationTokenSource? _timers;
    private ConnectionTimer _timer;
    private EngineSocket? _upstream;
    private X509Certificate2? _upstreamCertificate;
    private bool _clientTls;

    /// <summary>The client's TLS stream once the proxy accepted TLS: a farewell goes through it, even when the startup phase fails.</summary>
    private Stream? _clientTlsStream;
    private bool _startupReceived;

    /// <summary>True while the handshake waits for the server (so a timeout names the side it waited for).</summary>
    private bool _awaitingServer;
    private bool _clientStreamBroken;
    private int _issuedProcessId;
    private byte[]? _issuedKey;

    public ProxyConnection(PgProxy proxy, long id, EngineSocket client, string peer, bool overLimit)
    {
        _proxy = proxy;
        _id = id;
        _client = client;
        Peer = peer;
        _overLimit = overLimit;
        _context = new DecodeContext { Limits = proxy.Options.Limits };
        _frontend = new PgMessageReader(PgDirection.Frontend, _context);
        _backend = new PgMessageReader(PgDirection.Backend, _context);
        _trace = proxy.Options.Trace;
    }

    /// <summary>The connection's number.</summary>
    public long Id => _id;

    /// <summary>The client's address, for notes.</summary>
    public string Peer { get; }

    private PgProxyOptions Options => _proxy.Options;

    public async Task RunAsync(CancellationToken abort)
    {
        using var timers = CancellationTokenSource.CreateLinkedTokenSource(abort);
        _timers = timers;
        Stream client = _client.Stream;
        Stream? upstream = null;
        string? failure = null;
        byte[]? farewell = null;
        bool farewellAllowed = false;
        try
        {
            if (_overLimit)
            {
                Arm(ConnectionTimer.Refusal, Options.HandshakeTimeout > PgProxy.RefusalTimeout ? PgProxy.RefusalTimeout : Options.HandshakeTimeout);
            }
            else
            {
                Arm(ConnectionTimer.Handshake, Options.HandshakeTimeout);
            }
            (client, byte[]? startup, bool tunnel) = await StartupAsync(client, timers.Token).ConfigureAwait(false);
            if (tunnel)
            {
                upstream = _upstream!.Stream;
                Arm(ConnectionTimer.Idle, Options.IdleTimeout);
                await TunnelAsync(client, upstream, timers).ConfigureAwait(false);
                return;
            }

            if (startup is null)
            {
                return;
            }

            if (_overLimit)
            {
                _proxy.Statistics.OnRefused();
                farewell = Fatal("53300", "sorry, too many clients already");
                farewellAllowed = true;
                _proxy.Note(this, $"refused: the proxy already serves {_proxy.MaxClientConnections} connections (--max-client-connections)");
                return;
            }

            _awaitingServer = true;
            upstream = await ConnectUpstreamAsync(startup, timers.Token).ConfigureAwait(false);
            if (!await AuthenticateAsync(client, upstream, timers.Token).ConfigureAwait(false))
            {
                return;
            }

            await RelayAsync(client, upstream, timers).ConfigureAwait(false);
        }
        catch (ProxyConnectionException e)
        {
            if (e.Failure)
            {
                failure = e.Message;
            }

            _proxy.Note(this, e.Message);
            farewell = e.ClientError;
            farewellAllowed = true;
        }
        catch (OperationCanceledException)
        {
            ConnectionTimer timer = abort.IsCancellationRequested ? ConnectionTimer.ShutdownGrace : _timer;
            (failure, farewell) = TimedOut(timer);
            _proxy.Note(this, failure);

            // Before its StartupMessage a client is not reading messages: it is only closed. A
            // refusal is no failure; the client may still read why.
            farewellAllowed = _startupReceived || timer == ConnectionTimer.Refusal;
            if (timer == ConnectionTimer.Refusal)
            {
                failure = null;
                _proxy.Statistics.OnRefused();
            }
        }
        catch (Exception e) when (e is IOException or SocketException or AuthenticationException or ObjectDisposedException)
        {
            failure = "closed: " + ProxyErrors.Describe(e);
            _proxy.Note(this, failure);
        }
        catch (Exception e)
        {
            // Whatever goes wrong ends this connection only.
            failure = "closed after an unexpected error: " + ProxyErrors.DescribeUnexpected(e);
            _proxy.Note(this, failure);
        }
        finally
        {
            client = _clientTlsStream ?? client;
            if (farewell is not null && farewellAllowed && !_clientStreamBroken)
            {
                try
                {
                    TraceSent(PgDirection.Backend, farewell, _backend.Position);
                }
                catch (Exception e)
                {
                    _proxy.Note(this, "the trace sink failed: " + ProxyErrors.Describe(e));
                }

                await TrySendAsync(client, farewell).ConfigureAwait(false);

                // Closing with unread input would reset the connection, and the reset can overtake
                // the error on its way: finish sending, and drop what the client has already sent.
                _client.ShutdownSend();
                await DiscardInputAsync().ConfigureAwait(false);
            }

            if (_issuedKey is not null)
            {
                _proxy.CancelKeys.Remove(_issuedProcessId, _issuedKey);
            }

            try
            {
                _trace?.EndConnection(_id, failure);
            }
            catch (Exception e)
            {
                // A trace that fails never keeps a connection from closing.
                _proxy.Note(this, "the trace sink failed: " + ProxyErrors.Describe(e));
            }

            await DisposeQuietlyAsync(upstream).ConfigureAwait(false);
            _upstream?.Dispose();
            await DisposeQuietlyAsync(client).ConfigureAwait(false);
            _client.Dispose();
            if (failure is not null)
            {
                _proxy.Statistics.OnFailed();
            }
            else
            {
                _proxy.Statistics.OnClosed();
            }

            _timers = null;
        }
    }

    /// <summary>Drops the bytes the client has sent and the proxy has not read, without waiting for more.</summary>
    private async Task DiscardInputAsync()
    {
        try
        {
            byte[] sink = new byte[4096];
            for (int i = 0; i < 16 && _client.Available > 0; i++)
            {
                if (await _client.Stream.ReadAsync(sink.AsMemory(0, Math.Min(sink.Length, _client.Available))).ConfigureAwait(false) <= 0)
                {
                    break;
                }
            }
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or ObjectDisposedException or InvalidOperationException or NotSupportedException)
        {
        }
    }

    /// <summary>Starts (or stops, with an infinite time) the one timer of the connection; when it runs out, the connection ends.</summary>
    private void Arm(ConnectionTimer timer, TimeSpan after)
    {
        lock (_timerLock)
        {
            if (_timers is null || _timers.IsCancellationRequested)
            {
                // A timer that ran out keeps its name: it says why the connection ends.
                return;
            }

            _timer = after == Timeout.InfiniteTimeSpan ? ConnectionTimer.None : timer;
            _timers.CancelAfter(after);
        }
    }

    /// <summary>What a timer that ran out says: the note, and the FATAL for the client (when the protocol allows one).</summary>
    private (string Note, byte[]? Farewell) TimedOut(ConnectionTimer timer)
    {
        static string Seconds(TimeSpan time) => time.TotalSeconds.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture) + " s";
        return timer switch
        {
            ConnectionTimer.Handshake when _awaitingServer => (
                $"closed by the handshake timeout ({Seconds(Options.HandshakeTimeout)}): the server did not answer in time",
                Fatal("08006", $"pgspec proxy: the server did not complete authentication within --handshake-timeout ({Seconds(Options.HandshakeTimeout)})")),
            ConnectionTimer.Handshake => (
                $"closed by the handshake timeout ({Seconds(Options.HandshakeTimeout)}): the client did not complete startup and authentication in time",
                Fatal("57014", $"pgspec proxy: canceling authentication due to timeout (startup and authentication did not complete within --handshake-timeout {Seconds(Options.HandshakeTimeout)})")),
            ConnectionTimer.Idle => (
                $"closed by the idle timeout ({Seconds(Options.IdleTimeout)}): the client sent nothing for that long between queries",
                Fatal("57P05", $"pgspec proxy: terminating connection due to idle timeout (--idle-timeout {Seconds(Options.IdleTimeout)})")),
            ConnectionTimer.Refusal => (
                $"refused: the proxy already serves {_proxy.MaxClientConnections} connections (--max-client-connections), and the client sent no startup packet within {Seconds(PgProxy.RefusalTimeout)}",
                Fatal("53300", "sorry, too many clients already")),
            ConnectionTimer.Closing => (
                $"closed: one side ended and the other did not follow within the grace ({Seconds(Options.ShutdownGrace)})",
                null),
            ConnectionTimer.ShutdownGrace => (
                $"closed by shutdown: the connection did not finish within the shutdown grace ({Seconds(Options.ShutdownGrace)})",
                Fatal("57P01", "pgspec proxy: terminating connection due to administrator command (the proxy is shutting down)")),
            _ => ("closed: cancelled", null),
        };
    }

    /// <summary>
    /// The startup phase: SSLRequest (answered 'S' with a certificate, else 'N'; with TLS passthrough,
    /// passed to the server, whose answer the client gets), direct TLS, GSSENCRequest (answered 'N'),
    /// CancelRequest (forwarded, then the connection ends), and the StartupMessage, whose bytes are
    /// returned for the server. Tunnel is true when TLS is passed through: the rest is copied as is.
    /// PostgreSQL's rules for the packets are <see cref="PgStartupHandshake"/>'s.
    /// </summary>
    private async Task<(Stream Client, byte[]? Startup, bool Tunnel)> StartupAsync(Stream client, CancellationToken cancellationToken)
    {
        byte[] first = new byte[1];
        int peeked = await _client.PeekAsync(first, cancellationToken).ConfigureAwait(false);
        if (peeked == 0)
        {
            return (client, null, false);
        }

        var handshake = new PgStartupHandshake(_frontend);
        if (PgStartupHandshake.StartsDirectTls(first[0]) && Options.TlsPassthrough && !_overLimit)
        {
            // Direct TLS (PostgreSQL 17+): the whole connection goes to the server unread.
            await ConnectSocketAsync(cancellationToken).ConfigureAwait(false);
            return (client, null, true);
        }

        if (PgStartupHandshake.StartsDirectTls(first[0]))
        {
            if (Options.TlsCertificate is null)
            {
                throw new ProxyConnectionException("the client started direct TLS, but the proxy has no certificate", null);
            }

            client = await AcceptTlsAsync(client, handshake, cancellationToken).ConfigureAwait(false);
        }

        while (true)
        {
            byte[]? packet = await ReadStartupPacketAsync(client, handshake, cancellationToken).ConfigureAwait(false);
            if (packet is null)
            {
                return (client, null, false);
            }

            PgStartupStep step = handshake.Accept(packet, out PgReceivedMessage message, out ErrorResponse? refusal);
            if (message.Length != 0)
            {
                _proxy.Statistics.OnMessages(frontend: true, 1, packet.Length);
                Trace(message);
            }

            switch (step)
            {
                case PgStartupStep.Fatal:
                case PgStartupStep.Close:
                    // The client is told why, even where PostgreSQL only logs it.
                    throw Refused(refusal!);
                case PgStartupStep.SSLRequest when Options.TlsPassthrough && !_overLimit:
                    byte answer = await PassEncryptionRequestAsync(packet, cancellationToken).ConfigureAwait(false);
                    await AnswerEncryptionRequestAsync(client, answer, cancellationToken).ConfigureAwait(false);
                    if (answer == (byte)'S')
                    {
                        return (client, null, true);
                    }

                    break;
                case PgStartupStep.SSLRequest when Options.TlsCertificate is not null:
                    if (handshake.AcceptEncryption(_client.Available) is { } injected)
                    {
                        throw Refused(injected);
                    }

                    await AnswerEncryptionRequestAsync(client, (byte)'S', cancellationToken).ConfigureAwait(false);
                    client = await AcceptTlsAsync(client, null, cancellationToken).ConfigureAwait(false);
                    break;
                case PgStartupStep.SSLRequest:
                case PgStartupStep.GSSENCRequest:
                    await AnswerEncryptionRequestAsync(client, (byte)'N', cancellationToken).ConfigureAwait(false);
                    break;
                case PgStartupStep.CancelRequest:
                    await ForwardCancelAsync(packet, cancellationToken).ConfigureAwait(false);
                    return (client, null, false);
                case PgStartupStep.StartupMessage:
                default:
                    _startupReceived = true;
                    return (client, packet, false);
            }
        }
    }

    /// <summary>A refusal of the startup phase: noted, and sent to the client.</summary>
    private static ProxyConnectionException Refused(ErrorResponse error)
    {
        string text = error.Fields.FirstOrDefault(field => field.Code == (byte)ErrorFieldCode.Message)?.Value ?? "the startup packet was refused";
        string? detail = error.Fields.FirstOrDefault(field => field.Code == (byte)ErrorFieldCode.Detail)?.Value;
        return new ProxyConnectionException(detail is null ? text : $"{text} ({detail})", error.ToArray());
    }

    private async Task AnswerEncryptionRequestAsync(Stream client, byte answer, CancellationToken cancellationToken)
    {
        if (_trace is not null)
        {
            // Trace the answer as a backend message of this connection.
            _context.ExpectEncryptionAnswer = true;
            TraceSent(PgDirection.Backend, [answer], _backend.Position);
        }

        _context.ExpectEncryptionAnswer = false;
        _proxy.Statistics.OnMessages(frontend: false, 1, 1);
        await client.WriteAsync(new[] { answer }, cancellationToken).ConfigureAwait(false);
        await client.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The TLS handshake with the client: direct when <paramref name="direct"/> is given (which checks the ALPN), else after SSLRequest.</summary>
    private async Task<Stream> AcceptTlsAsync(Stream client, PgStartupHandshake? direct, CancellationToken cancellationToken)
    {
        var tls = new SslStream(client, leaveInnerStreamOpen: false);
        var options = new SslServerAuthenticationOptions
        {
            ServerCertificate = Options.TlsCertificate,
            ClientCertificateRequired = false,
            ApplicationProtocols = direct is not null ? [s_postgresqlAlpn] : null,
        };
        try
        {
            await tls.AuthenticateAsServerAsync(options, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is AuthenticationException or IOException)
        {
            throw new ProxyConnectionException("the TLS handshake with the client failed: " + ProxyErrors.Describe(e), null);
        }

        if (direct?.AcceptDirectTls(tls.NegotiatedApplicationProtocol.Protocol.Span) is not null)
        {
            // A TLS connection meant for another protocol (HTTPS, say) cannot be taken for
            // PostgreSQL's. PostgreSQL closes it without a word.
            await tls.DisposeAsync().ConfigureAwait(false);
            throw new ProxyConnectionException("the client started direct TLS without the ALPN protocol 'postgresql'; refused, as PostgreSQL refuses it", null);
        }

        _clientTls = true;
        _clientTlsStream = tls;
        return tls;
    }

    /// <summary>Reads one startup packet exactly (never a byte beyond it: TLS may follow); null when the client left between packets.</summary>
    private async Task<byte[]?> ReadStartupPacketAsync(Stream client, PgStartupHandshake handshake, CancellationToken cancellationToken)
    {
        byte[] header = new byte[4];
        int read = await client.ReadAtLeastAsync(header, 4, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
        if (read == 0)
        {
            return null;
        }

        if (read < 4)
        {
            throw new ProxyConnectionException("the client closed inside a startup packet", null);
        }

        if (!handshake.TryReadLength(header, out int length, out ErrorResponse? refusal))
        {
            throw Refused(refusal!);
        }

        byte[] packet = new byte[length];
        header.CopyTo(packet, 0);
        try
        {
            await client.ReadExactlyAsync(packet.AsMemory(4), cancellationToken).ConfigureAwait(false);
        }
        catch (EndOfStreamException)
        {
            throw new ProxyConnectionException("the client closed inside a startup packet", null);
        }

        return packet;
    }

    private async Task ForwardCancelAsync(byte[] packet, CancellationToken cancellationToken)
    {
        _proxy.Statistics.OnCancelRequest();
        var cancel = CancelRequest.View.Read(packet.AsSpan(4), _context);
        int processId = cancel.ProcessId;
        byte[] request;
        if (_proxy.CancelKeys.TryGetUpstreamKey(processId, cancel.SecretKey, out byte[] upstreamKey))
        {
            request = new CancelRequest(processId, upstreamKey).ToArray(_context.ProtocolVersion, _context.Limits);
        }
        else if (Options.TlsPassthrough)
        {
            // A connection whose TLS was passed through showed the client the server's own key.
            request = packet;
        }
        else
        {
            _proxy.Note(this, $"a cancel request for process {processId} with a key the proxy did not issue was ignored");
            return;
        }

        using EngineSocket socket = await _proxy.Sockets.ConnectAsync(Options.Upstream.EndPoint, cancellationToken).ConfigureAwait(false);
        await socket.Stream.WriteAsync(request, cancellationToken).ConfigureAwait(false);
        socket.ShutdownSend();

        // The server closes the connection once it has handled the request.
        byte[] sink = new byte[16];
        while (await socket.Stream.ReadAsync(sink, cancellationToken).ConfigureAwait(false) > 0)
        {
        }

        _proxy.Note(this, $"cancel request forwarded to process {processId}");
    }

    /// <summary>Connects to the server, once per client connection.</summary>
    private async Task ConnectSocketAsync(CancellationToken cancellationToken)
    {
        if (_upstream is not null)
        {
            return;
        }

        try
        {
            _upstream = await _proxy.Sockets.ConnectAsync(Options.Upstream.EndPoint, cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            throw new ProxyConnectionException($"cannot connect to the server {Options.Upstream}: {e.Message}", Fatal("08006", $"pgspec proxy cannot connect to the server {Options.Upstream}: {e.Message}"));
        }
    }

    /// <summary>TLS passthrough: the client's SSLRequest goes to the server; returns the server's one-byte answer.</summary>
    private async Task<byte> PassEncryptionRequestAsync(byte[] request, CancellationToken cancellationToken)
    {
        await ConnectSocketAsync(cancellationToken).ConfigureAwait(false);
        Stream upstream = _upstream!.Stream;
        await upstream.WriteAsync(request, cancellationToken).ConfigureAwait(false);
        byte answer = await ReadEncryptionAnswerAsync(upstream, cancellationToken).ConfigureAwait(false);
        if (answer is not ((byte)'S' or (byte)'N'))
        {
            throw ProtocolViolation($"the server answered SSLRequest with {PgTraceWriter.FormatByte(answer)}, not 'S' or 'N'", fromClient: false);
        }

        return answer;
    }

    /// <summary>Reads the server's one-byte answer to SSLRequest, refusing bytes that come with it (CVE-2021-23222).</summary>
    private async Task<byte> ReadEncryptionAnswerAsync(Stream upstream, CancellationToken cancellationToken)
    {
        byte[] answer = new byte[1];
        if (await upstream.ReadAsync(answer, cancellationToken).ConfigureAwait(false) == 0)
        {
            throw new ProxyConnectionException("the server closed the connection instead of answering SSLRequest", Fatal("08006", "the server behind pgspec proxy closed the connection instead of answering SSLRequest"));
        }

        if (answer[0] == (byte)'S' && _upstream!.Available > 0)
        {
            // Nothing may follow the answer before the TLS handshake: it would be read as if it came through TLS.
            throw ProtocolViolation($"the server sent {_upstream.Available} bytes after its answer 'S' to SSLRequest, before the TLS handshake", fromClient: false);
        }

        return answer[0];
    }

    /// <summary>TLS passed through: bytes are copied both ways, unread, until both sides are done.</summary>
    private async Task TunnelAsync(Stream client, Stream upstream, CancellationTokenSource cancel)
    {
        _proxy.Note(this, "TLS passed through to the server; the rest of the connection is not decoded");
        Task clientToServer = CopyRawAsync(client, upstream, _upstream!, fromClient: true, cancel);
        Task serverToClient = CopyRawAsync(upstream, client, _client, fromClient: false, cancel);
        await Task.WhenAny(clientToServer, serverToClient).ConfigureAwait(false);
        Arm(ConnectionTimer.Closing, Options.ShutdownGrace);
        try
        {
            await Task.WhenAll(clientToServer, serverToClient).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (clientToServer.IsCompletedSuccessfully || serverToClient.IsCompletedSuccessfully)
        {
            // One side finished and the other did not follow within the grace period.
        }
    }

    /// <summary>
    /// Copies one direction of a tunnel. A reset from the reading side ends the direction like a
    /// close: TLS clients commonly close with the server's close_notify unread, which resets.
    /// </summary>
    private async Task CopyRawAsync(Stream input, Stream output, EngineSocket outputSocket, bool fromClient, CancellationTokenSource cancel)
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(ReceiveBuffer.SmallSize);
        try
        {
            while (true)
            {
                int read;
                try
                {
                    read = await input.ReadAsync(buffer, cancel.Token).ConfigureAwait(false);
                }
                catch (IOException e) when (ProxyErrors.IsReset(e))
                {
                    read = 0;
                }

                Arm(ConnectionTimer.Idle, Options.IdleTimeout);
                if (read == 0)
                {
                    outputSocket.ShutdownSend();
                    return;
                }

                await output.WriteAsync(buffer.AsMemory(0, read), cancel.Token).ConfigureAwait(false);
                _proxy.Statistics.OnMessages(fromClient, 0, read);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private async Task<Stream> ConnectUpstreamAsync(byte[] startup, CancellationToken cancellationToken)
    {
        await ConnectSocketAsync(cancellationToken).ConfigureAwait(false);
        Stream upstream = _upstream!.Stream;
        if (Options.UpstreamTls)
        {
            await upstream.WriteAsync(s_sslRequest, cancellationToken).ConfigureAwait(false);
            byte answer = await ReadEncryptionAnswerAsync(upstream, cancellationToken).ConfigureAwait(false);
            if (answer != (byte)'S')
            {
                string what = answer == (byte)'N' ? "refused TLS (answered 'N' to SSLRequest)" : $"answered SSLRequest with {PgTraceWriter.FormatByte(answer)}, not 'S' or 'N'";
                throw new ProxyConnectionException("the server " + what, Fatal("08001", "the server behind pgspec proxy " + what + ", and the proxy was told to use TLS (--upstream-tls)"));
            }

            var tls = new SslStream(upstream, leaveInnerStreamOpen: false);
            try
            {
                await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
                {
                    TargetHost = Options.Upstream.EndPoint is DnsEndPoint dns ? dns.Host : "localhost",
                    RemoteCertificateValidationCallback = (_, _, _, _) => true,
                }, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is AuthenticationException or IOException)
            {
                string text = "the TLS handshake with the server failed: " + ProxyErrors.Describe(e);
                throw new ProxyConnectionException(text, Fatal("08006", "pgspec proxy: " + text));
            }

            _upstreamCertificate = tls.RemoteCertificate is { } certificate ? new X509Certificate2(certificate) : null;
            upstream = tls;
        }

        await upstream.WriteAsync(startup, cancellationToken).ConfigureAwait(false);
        await upstream.FlushAsync(cancellationToken).ConfigureAwait(false);
        return upstream;
    }

    private void Trace(PgReceivedMessage message) => _trace?.Write(_id, message, _context);

    /// <summary>
    /// Traces a message the proxy itself sends (a FATAL, a key of its own, a rewritten offer): read
    /// back with a copy of the connection's context, so tracing changes nothing of the connection.
    /// </summary>
    private void TraceSent(PgDirection direction, byte[] bytes, long offset)
    {
        if (_trace is null)
        {
            return;
        }

        var context = new DecodeContext
        {
            ProtocolVersion = _context.ProtocolVersion,
            Phase = _context.Phase,
            ExpectedPasswordMessage = _context.ExpectedPasswordMessage,
            ExpectEncryptionAnswer = _context.ExpectEncryptionAnswer,
            LastEncryptionRequest = _context.LastEncryptionRequest,
            Limits = _context.Limits,
        };
        var reader = new PgMessageReader(direction, context);
        reader.Skip(offset);
        if (reader.TryRead(bytes, out _, out PgReceivedMessage message, out _) == PgReadStatus.Message)
        {
            _trace.Write(_id, message, context);
        }
    }

    private static ProxyConnectionException ProtocolViolation(string text, bool fromClient)
        => new(text, Fatal("08P01", fromClient ? text : "pgspec proxy: " + text));

    /// <summary>A FATAL ErrorResponse, as PostgreSQL writes one (severity, code, message), encoded.</summary>
    internal static byte[] Fatal(string code, string message) => PgErrors.Fatal(code, message).ToArray();

    private static async Task TrySendAsync(Stream stream, byte[] bytes)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await stream.WriteAsync(bytes, timeout.Token).ConfigureAwait(false);
            await stream.FlushAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException or NotSupportedException or InvalidOperationException)
        {
        }
    }

    private static async Task DisposeQuietlyAsync(Stream? stream)
    {
        if (stream is null)
        {
            return;
        }

        try
        {
            await stream.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
        }
    }
}

/// <summary>Wording of the errors the proxy meets.</summary>
internal static class ProxyErrors
{
    /// <summary>
    /// An exception's message with those of its inner exceptions, leaving out the wrappers' "see
    /// inner exception" (SslStream's "Authentication failed, see inner exception.").
    /// </summary>
    public static string Describe(Exception exception)
    {
        var parts = new List<string>();
        for (Exception? e = exception; e is not null; e = e.InnerException)
        {
            string text = e.Message.Replace("see inner exception.", "", StringComparison.OrdinalIgnoreCase).Trim().TrimEnd(',', '.').Trim();
            if (text.Length > 0 && !parts.Exists(part => part.Contains(text, StringComparison.Ordinal)))
            {
                parts.Add(text);
            }
        }

        return parts.Count == 0 ? exception.GetType().Name : string.Join(": ", parts);
    }

    /// <summary>An unexpected exception with its stack trace (which needs files the runtime may not be able to open when out of descriptors).</summary>
    public static string DescribeUnexpected(Exception exception)
    {
        try
        {
            return exception.ToString();
        }
        catch (Exception)
        {
            return exception.GetType().Name + ": " + exception.Message;
        }
    }

    /// <summary>True when the peer reset the connection.</summary>
    public static bool IsReset(Exception exception)
    {
        for (Exception? e = exception; e is not null; e = e.InnerException)
        {
            if (e is SocketException { SocketErrorCode: SocketError.ConnectionReset })
            {
                return true;
            }
        }

        return false;
    }
}
