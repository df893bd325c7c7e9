using System.Buffers;
using System.Buffers.Binary;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Text;
using PgSpec.Protocol;
using PgSpec.Proxy.Sockets;

namespace PgSpec.Proxy;

/// <summary>Ends a connection; <see cref="ClientError"/> is sent to the client first when the protocol allows it.</summary>
internal sealed class ProxyConnectionException : Exception
{
    public ProxyConnectionException(string message, byte[]? clientError)
        : base(message)
    {
        ClientError = clientError;
    }

    public byte[]? ClientError { get; }
}

/// <summary>One client connection and its server connection.</summary>
internal sealed class ProxyConnection
{
    private const byte TlsHandshakeRecord = 0x16;
    private static readonly byte[] s_sslRequest = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    private static readonly byte[] s_scramPlus = "SCRAM-SHA-256-PLUS\0"u8.ToArray();

    private readonly PgProxy _proxy;
    private readonly long _id;
    private readonly ProxySocket _client;
    private readonly DecodeContext _context;
    private readonly IProxyTraceSink? _trace;
    private ProxySocket? _upstream;
    private bool _clientTls;
    private bool _clientStreamBroken;
    private int _issuedProcessId;
    private byte[]? _issuedKey;

    public ProxyConnection(PgProxy proxy, long id, ProxySocket client)
    {
        _proxy = proxy;
        _id = id;
        _client = client;
        _context = new DecodeContext { Limits = proxy.Options.Limits };
        _trace = proxy.Options.Trace;
    }

    private PgProxyOptions Options => _proxy.Options;

    public async Task RunAsync(CancellationToken abort)
    {
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(abort);
        Stream client = _client.Stream;
        Stream? upstream = null;
        bool failed = false;
        try
        {
            cancel.CancelAfter(Options.HandshakeTimeout);
            (client, byte[]? startup, bool tunnel) = await StartupAsync(client, cancel.Token).ConfigureAwait(false);
            if (tunnel)
            {
                upstream = _upstream!.Stream;
                cancel.CancelAfter(Options.IdleTimeout);
                await TunnelAsync(client, upstream, cancel).ConfigureAwait(false);
                return;
            }

            if (startup is null)
            {
                return;
            }

            upstream = await ConnectUpstreamAsync(startup, cancel.Token).ConfigureAwait(false);
            cancel.CancelAfter(Options.IdleTimeout);
            await RelayAsync(client, upstream, cancel).ConfigureAwait(false);
        }
        catch (ProxyConnectionException e)
        {
            failed = true;
            _proxy.Note(_id, e.Message);
            if (e.ClientError is not null && !_clientStreamBroken)
            {
                await TrySendAsync(client, e.ClientError).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
            failed = true;
            _proxy.Note(_id, abort.IsCancellationRequested ? "closed by shutdown" : "closed by a timeout");
        }
        catch (Exception e) when (e is IOException or SocketException or AuthenticationException or ObjectDisposedException)
        {
            failed = true;
            _proxy.Note(_id, "closed: " + e.Message);
        }
        catch (Exception e)
        {
            // Whatever goes wrong ends this connection only.
            failed = true;
            _proxy.Note(_id, "closed after an unexpected error: " + e);
        }
        finally
        {
            if (_issuedKey is not null)
            {
                _proxy.CancelKeys.Remove(_issuedProcessId, _issuedKey);
            }

            _trace?.EndConnection(_id);
            await DisposeQuietlyAsync(upstream).ConfigureAwait(false);
            _upstream?.Dispose();
            await DisposeQuietlyAsync(client).ConfigureAwait(false);
            _client.Dispose();
            if (failed)
            {
                _proxy.Statistics.OnFailed();
            }
            else
            {
                _proxy.Statistics.OnClosed();
            }
        }
    }

    /// <summary>
    /// The startup phase: SSLRequest (answered 'S' with a certificate, else 'N'; with TLS passthrough,
    /// passed to the server, whose answer the client gets), direct TLS, GSSENCRequest (answered 'N'),
    /// CancelRequest (forwarded, then the connection ends), and the StartupMessage, whose bytes are
    /// returned for the server. Tunnel is true when TLS is passed through: the rest is copied as is.
    /// </summary>
    private async Task<(Stream Client, byte[]? Startup, bool Tunnel)> StartupAsync(Stream client, CancellationToken cancellationToken)
    {
        byte[] first = new byte[1];
        int peeked = await _client.PeekAsync(first, cancellationToken).ConfigureAwait(false);
        if (peeked == 0)
        {
            return (client, null, false);
        }

        if (first[0] == TlsHandshakeRecord && Options.TlsPassthrough)
        {
            // Direct TLS (PostgreSQL 17+): the whole connection goes to the server unread.
            await ConnectSocketAsync(cancellationToken).ConfigureAwait(false);
            return (client, null, true);
        }

        if (first[0] == TlsHandshakeRecord)
        {
            if (Options.TlsCertificate is null)
            {
                throw new ProxyConnectionException("the client started direct TLS, but the proxy has no certificate", null);
            }

            client = await AcceptTlsAsync(client, direct: true, cancellationToken).ConfigureAwait(false);
        }

        var reader = new PgMessageReader(PgDirection.Frontend, _context);
        while (true)
        {
            byte[]? packet = await ReadStartupPacketAsync(client, cancellationToken).ConfigureAwait(false);
            if (packet is null)
            {
                return (client, null, false);
            }

            var buffer = new ReadOnlySequence<byte>(packet);
            if (reader.TryRead(ref buffer, out PgReceivedMessage message, out PgDecodeError error) != PgReadStatus.Message)
            {
                throw ProtocolViolation("the client sent an invalid startup packet: " + error.ToString(), fromClient: true);
            }

            _proxy.Statistics.OnMessages(frontend: true, 1, packet.Length);
            Trace(message);
            switch (message.FrontendKind)
            {
                case FrontendMessageKind.SSLRequest when Options.TlsPassthrough:
                    byte answer = await PassEncryptionRequestAsync(packet, cancellationToken).ConfigureAwait(false);
                    await AnswerEncryptionRequestAsync(client, answer, cancellationToken).ConfigureAwait(false);
                    if (answer == (byte)'S')
                    {
                        return (client, null, true);
                    }

                    break;
                case FrontendMessageKind.SSLRequest:
                case FrontendMessageKind.GSSENCRequest:
                    bool tls = message.FrontendKind == FrontendMessageKind.SSLRequest && Options.TlsCertificate is not null && !_clientTls;
                    await AnswerEncryptionRequestAsync(client, tls ? (byte)'S' : (byte)'N', cancellationToken).ConfigureAwait(false);
                    if (tls)
                    {
                        client = await AcceptTlsAsync(client, direct: false, cancellationToken).ConfigureAwait(false);
                    }

                    break;
                case FrontendMessageKind.CancelRequest:
                    await ForwardCancelAsync(packet, cancellationToken).ConfigureAwait(false);
                    return (client, null, false);
                case FrontendMessageKind.StartupMessage:
                    return (client, packet, false);
                default:
                    throw ProtocolViolation("the client asked for an unsupported protocol version", fromClient: true);
            }
        }
    }

    private async Task AnswerEncryptionRequestAsync(Stream client, byte answer, CancellationToken cancellationToken)
    {
        if (_trace is not null)
        {
            // Trace the answer as a backend message of this connection.
            _context.ExpectEncryptionAnswer = true;
            TraceBytes(PgDirection.Backend, [answer]);
        }

        _context.ExpectEncryptionAnswer = false;
        _proxy.Statistics.OnMessages(frontend: false, 1, 1);
        await client.WriteAsync(new[] { answer }, cancellationToken).ConfigureAwait(false);
        await client.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task<Stream> AcceptTlsAsync(Stream client, bool direct, CancellationToken cancellationToken)
    {
        var tls = new SslStream(client, leaveInnerStreamOpen: false);
        var options = new SslServerAuthenticationOptions
        {
            ServerCertificate = Options.TlsCertificate,
            ClientCertificateRequired = false,
            ApplicationProtocols = direct ? [new SslApplicationProtocol("postgresql")] : null,
        };
        await tls.AuthenticateAsServerAsync(options, cancellationToken).ConfigureAwait(false);
        _clientTls = true;
        return tls;
    }

    private async Task<byte[]?> ReadStartupPacketAsync(Stream client, CancellationToken cancellationToken)
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

        int length = BinaryPrimitives.ReadInt32BigEndian(header);
        if (length < 8 || length > _context.Limits.MaxStartupPacketLength)
        {
            throw ProtocolViolation($"invalid length of startup packet: {length}", fromClient: true);
        }

        byte[] packet = new byte[length];
        header.CopyTo(packet, 0);
        await client.ReadExactlyAsync(packet.AsMemory(4), cancellationToken).ConfigureAwait(false);
        return packet;
    }

    private async Task ForwardCancelAsync(byte[] packet, CancellationToken cancellationToken)
    {
        _proxy.Statistics.OnCancelRequest();
        int processId = BinaryPrimitives.ReadInt32BigEndian(packet.AsSpan(8));
        byte[] request;
        if (_proxy.CancelKeys.TryGetUpstreamKey(processId, packet.AsSpan(12), out byte[] upstreamKey))
        {
            request = new byte[12 + upstreamKey.Length];
            BinaryPrimitives.WriteInt32BigEndian(request, request.Length);
            packet.AsSpan(4, 8).CopyTo(request.AsSpan(4));
            upstreamKey.CopyTo(request, 12);
        }
        else if (Options.TlsPassthrough)
        {
            // A connection whose TLS was passed through showed the client the server's own key.
            request = packet;
        }
        else
        {
            _proxy.Note(_id, $"a cancel request for process {processId} with a key the proxy did not issue was ignored");
            return;
        }

        using ProxySocket socket = await _proxy.Sockets.ConnectAsync(Options.Upstream, cancellationToken).ConfigureAwait(false);
        await socket.Stream.WriteAsync(request, cancellationToken).ConfigureAwait(false);
        socket.ShutdownSend();

        // The server closes the connection once it has handled the request.
        byte[] sink = new byte[16];
        while (await socket.Stream.ReadAsync(sink, cancellationToken).ConfigureAwait(false) > 0)
        {
        }

        _proxy.Note(_id, $"cancel request forwarded to process {processId}");
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
            _upstream = await _proxy.Sockets.ConnectAsync(Options.Upstream, cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            throw new ProxyConnectionException($"cannot connect to the server {Options.Upstream}: {e.Message}", ErrorResponse("FATAL", "08006", $"pgspec proxy cannot connect to the server {Options.Upstream}: {e.Message}"));
        }
    }

    /// <summary>TLS passthrough: the client's SSLRequest goes to the server; returns the server's one-byte answer.</summary>
    private async Task<byte> PassEncryptionRequestAsync(byte[] request, CancellationToken cancellationToken)
    {
        await ConnectSocketAsync(cancellationToken).ConfigureAwait(false);
        Stream upstream = _upstream!.Stream;
        await upstream.WriteAsync(request, cancellationToken).ConfigureAwait(false);
        byte[] answer = new byte[1];
        if (await upstream.ReadAsync(answer, cancellationToken).ConfigureAwait(false) == 0)
        {
            throw new ProxyConnectionException("the server closed the connection instead of answering SSLRequest", ErrorResponse("FATAL", "08006", "the server behind pgspec proxy closed the connection instead of answering SSLRequest"));
        }

        if (answer[0] is not ((byte)'S' or (byte)'N'))
        {
            throw ProtocolViolation($"the server answered SSLRequest with {PgTraceWriter.FormatByte(answer[0])}, not 'S' or 'N'", fromClient: false);
        }

        if (_upstream.Available > 0)
        {
            // CVE-2021-23222: nothing may follow the answer before the TLS handshake.
            throw ProtocolViolation("the server sent bytes after its answer to SSLRequest", fromClient: false);
        }

        return answer[0];
    }

    /// <summary>TLS passed through: bytes are copied both ways, unread, until both sides are done.</summary>
    private async Task TunnelAsync(Stream client, Stream upstream, CancellationTokenSource cancel)
    {
        _proxy.Note(_id, "TLS passed through to the server; the rest of the connection is not decoded");
        Task clientToServer = CopyRawAsync(client, upstream, _upstream!, fromClient: true, cancel);
        Task serverToClient = CopyRawAsync(upstream, client, _client, fromClient: false, cancel);
        await Task.WhenAny(clientToServer, serverToClient).ConfigureAwait(false);
        cancel.CancelAfter(Options.ShutdownGrace);
        try
        {
            await Task.WhenAll(clientToServer, serverToClient).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (clientToServer.IsCompletedSuccessfully || serverToClient.IsCompletedSuccessfully)
        {
            // One side finished and the other did not follow within the grace period.
        }
    }

    private async Task CopyRawAsync(Stream input, Stream output, ProxySocket outputSocket, bool fromClient, CancellationTokenSource cancel)
    {
        bool idleTimeout = Options.IdleTimeout != Timeout.InfiniteTimeSpan;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(InitialBufferSize);
        try
        {
            while (true)
            {
                int read = await input.ReadAsync(buffer, cancel.Token).ConfigureAwait(false);
                if (idleTimeout)
                {
                    cancel.CancelAfter(Options.IdleTimeout);
                }

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
            byte[] answer = new byte[1];
            await upstream.ReadExactlyAsync(answer, cancellationToken).ConfigureAwait(false);
            if (answer[0] != (byte)'S')
            {
                throw new ProxyConnectionException("the server refused TLS", ErrorResponse("FATAL", "08001", "the server behind pgspec proxy refused TLS"));
            }

            var tls = new SslStream(upstream, leaveInnerStreamOpen: false);
            await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = Options.Upstream.EndPoint is System.Net.DnsEndPoint dns ? dns.Host : "localhost",
                RemoteCertificateValidationCallback = (_, _, _, _) => true,
            }, cancellationToken).ConfigureAwait(false);
            upstream = tls;
        }

        await upstream.WriteAsync(startup, cancellationToken).ConfigureAwait(false);
        await upstream.FlushAsync(cancellationToken).ConfigureAwait(false);
        return upstream;
    }

    /// <summary>The receive buffer each direction starts with; it grows to hold one whole message, up to the limits.</summary>
    private const int InitialBufferSize = 16 * 1024;

    /// <summary>
    /// Relays messages both ways until one side closes or breaks the protocol. Reads stop on
    /// <paramref name="cancel"/> or when the other direction ends; a write in progress is given the
    /// shutdown grace to finish, so the client never receives half a message followed by an error.
    /// </summary>
    private async Task RelayAsync(Stream client, Stream upstream, CancellationTokenSource cancel)
    {
        using var stopReads = CancellationTokenSource.CreateLinkedTokenSource(cancel.Token);

        // The frontend reader is past the startup packet; the context is shared by both directions.
        var frontend = new PgMessageReader(PgDirection.Frontend, _context);
        var backend = new PgMessageReader(PgDirection.Backend, _context);
        Task clientToServer = PumpAsync(client, upstream, frontend, stopReads.Token, cancel);
        Task serverToClient = PumpAsync(upstream, client, backend, stopReads.Token, cancel);

        Task first = await Task.WhenAny(clientToServer, serverToClient).ConfigureAwait(false);
        if (first == clientToServer && first.IsCompletedSuccessfully && !Options.UpstreamTls)
        {
            // The client is gone: tell the server, and let it close its side.
            _upstream!.ShutdownSend();

            cancel.CancelAfter(Options.ShutdownGrace);
        }
        else
        {
            await stopReads.CancelAsync().ConfigureAwait(false);
            cancel.CancelAfter(Options.ShutdownGrace);
        }

        Exception? failure = null;
        foreach (Task task in new[] { first, first == clientToServer ? serverToClient : clientToServer })
        {
            try
            {
                await task.ConfigureAwait(false);
            }
            catch (Exception e) when (failure is null && !(task != first && e is OperationCanceledException))
            {
                failure = e;
            }
            catch (Exception)
            {
            }
        }

        if (failure is not null)
        {
            throw failure;
        }
    }

    /// <summary>
    /// Reads what arrives, splits it into messages (validating and tracing each) and forwards every
    /// whole message as received, in one write per read. A partial message waits for the rest in a
    /// buffer that grows to its declared length, which the limits bound; a DataRow or CopyData of
    /// <see cref="PgProxyOptions.StreamThreshold"/> bytes or more is instead checked and forwarded
    /// piece by piece as it arrives, when nothing is traced (a trace line needs the whole message).
    /// </summary>
    private async Task PumpAsync(Stream input, Stream output, PgMessageReader reader, CancellationToken readToken, CancellationTokenSource cancel)
    {
        bool fromClient = reader.Direction == PgDirection.Frontend;
        bool idleTimeout = Options.IdleTimeout != Timeout.InfiniteTimeSpan;
        int streamThreshold = _trace is null ? Options.StreamThreshold : int.MaxValue;
        var state = new PumpState(reader, PumpState.Rent(InitialBufferSize));
        try
        {
            while (true)
            {
                if (state.End == state.Buffer.Length)
                {
                    state.MakeRoom(0);
                    _proxy.Statistics.OnBuffer(state.Buffer.Length);
                }

                int read = await input.ReadAsync(state.Buffer.AsMemory(state.End), readToken).ConfigureAwait(false);
                if (idleTimeout)
                {
                    cancel.CancelAfter(Options.IdleTimeout);
                }

                if (read == 0)
                {
                    if (state.End > state.Start || state.Streamed.Active)
                    {
                        // Part of a streamed message has gone on: no error may follow it.
                        _clientStreamBroken |= !fromClient && state.Streamed.Active;
                        long received = state.Streamed.Active ? 0 : state.End - state.Start;
                        throw new ProxyConnectionException(
                            (fromClient ? "the client" : "the server") + $" closed the connection inside a message" + (received > 0 ? $" ({received} bytes of it received)" : ""),
                            fromClient ? null : ErrorResponse("FATAL", "08006", "the server closed the connection inside a message"));
                    }

                    return;
                }

                state.End += read;
                state.Received += read;
                while (true)
                {
                    int sendFrom = state.Start;
                    Step step = Scan(state, fromClient, streamThreshold);
                    if (step.ForwardTo > sendFrom)
                    {
                        await WriteAsync(output, state.Buffer.AsMemory(sendFrom, step.ForwardTo - sendFrom), !fromClient, cancel.Token).ConfigureAwait(false);
                    }

                    if (step.Violation is not null)
                    {
                        _proxy.Statistics.OnMessages(fromClient, state.Messages, state.Received);
                        throw step.Violation;
                    }

                    if (step.Insert is null)
                    {
                        break;
                    }

                    // A BackendKeyData with the proxy's key in place of the server's; then go on after it.
                    await WriteAsync(output, step.Insert, !fromClient, cancel.Token).ConfigureAwait(false);
                }

                _proxy.Statistics.OnMessages(fromClient, state.Messages, state.Received);
                state.Messages = 0;
                state.Received = 0;
                if (state.Start == state.End)
                {
                    state.Reset();
                }
                else if (!state.Streamed.Active)
                {
                    state.MakeRoom(PartialLength(state));
                    _proxy.Statistics.OnBuffer(state.Buffer.Length);
                }
            }
        }
        finally
        {
            PumpState.Return(state.Buffer);
        }
    }

    /// <summary>The state of one direction: the buffer (unread bytes are Buffer[Start..End]) and a message being streamed.</summary>
    private sealed class PumpState(PgMessageReader reader, byte[] buffer)
    {
        public PgMessageReader Reader { get; } = reader;

        public byte[] Buffer { get; private set; } = buffer;

        public int Start { get; set; }

        public int End { get; set; }

        public long Messages { get; set; }

        public long Received { get; set; }

        public StreamedMessage Streamed { get; } = new();

        /// <summary>Buffers up to 1 MiB come from the shared pool; larger ones (a large message held whole) are the garbage collector's, so none stays cached after its message.</summary>
        public static byte[] Rent(int size)
            => size <= PooledLimit ? ArrayPool<byte>.Shared.Rent(size) : GC.AllocateUninitializedArray<byte>(size);

        public static void Return(byte[] buffer)
        {
            if (buffer.Length <= PooledLimit)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        private const int PooledLimit = 1024 * 1024;

        /// <summary>Empties the buffer, and gives back one grown for a large message.</summary>
        public void Reset()
        {
            Start = End = 0;
            if (Buffer.Length > 4 * InitialBufferSize)
            {
                Return(Buffer);
                Buffer = Rent(InitialBufferSize);
            }
        }

        /// <summary>Moves the unread bytes to the front, and grows the buffer to hold <paramref name="needed"/> bytes (a message's declared size).</summary>
        public void MakeRoom(int needed)
        {
            int unread = End - Start;
            if (needed > Buffer.Length || (unread == Buffer.Length && needed == 0))
            {
                byte[] larger = Rent(Math.Max(needed, (int)Math.Min(2L * Buffer.Length, Array.MaxLength)));
                Buffer.AsSpan(Start, unread).CopyTo(larger);
                Return(Buffer);
                Buffer = larger;
            }
            else if (Start > 0 && (needed == 0 || Buffer.Length - Start < needed))
            {
                Buffer.AsSpan(Start, unread).CopyTo(Buffer);
            }
            else
            {
                return;
            }

            Start = 0;
            End = unread;
        }
    }

    /// <summary>What to do after a scan: forward Buffer[..ForwardTo], then write Insert and scan on, or fail.</summary>
    private readonly record struct Step(int ForwardTo, byte[]? Insert, ProxyConnectionException? Violation);

    /// <summary>The wire size of the partial message at the front of the buffer, once its header is in (0 before).</summary>
    private static int PartialLength(PumpState state)
        => state.End - state.Start >= 5 ? 1 + BinaryPrimitives.ReadInt32BigEndian(state.Buffer.AsSpan(state.Start + 1)) : 0;

    /// <summary>Validates, traces and passes over the messages in the buffer; stops where a write must come first.</summary>
    private Step Scan(PumpState state, bool fromClient, int streamThreshold)
    {
        StreamedMessage streamed = state.Streamed;
        PgMessageReader reader = state.Reader;
        while (true)
        {
            if (streamed.Active)
            {
                int take = (int)Math.Min(streamed.Remaining, state.End - state.Start);
                string? problem = streamed.Feed(state.Buffer.AsSpan(state.Start, take));
                state.Start += take;
                if (problem is null && streamed.Remaining == 0)
                {
                    problem = streamed.End();
                    state.Messages++;
                }

                if (problem is not null)
                {
                    // The other side has the beginning of this message: no error may follow it there.
                    _clientStreamBroken |= !fromClient;
                    return new Step(state.Start - take, null, ProtocolViolation((fromClient ? "the client" : "the server") + " sent a malformed message: " + problem, fromClient));
                }

                if (streamed.Active)
                {
                    return new Step(state.Start, null, null);
                }
            }

            int start = state.Start;
            PgReadStatus status = reader.TryRead(state.Buffer.AsSpan(start, state.End - start), out int consumed, out PgReceivedMessage message, out PgDecodeError error);
            if (status == PgReadStatus.Incomplete)
            {
                int length = state.End - start >= 5 ? BinaryPrimitives.ReadInt32BigEndian(state.Buffer.AsSpan(start + 1)) : 0;
                if (length > 0 && StreamedMessage.Streams(reader.Direction, state.Buffer[start], length, streamThreshold))
                {
                    // Too large to hold: check it and forward it as it comes.
                    streamed.Begin(state.Buffer[start], length);
                    reader.Skip(1L + length);
                    state.Start += 5;
                    continue;
                }

                return new Step(start, null, null);
            }

            if (status == PgReadStatus.Malformed)
            {
                return new Step(start, null, ProtocolViolation((fromClient ? "the client" : "the server") + " sent a malformed message: " + error.ToString(), fromClient));
            }

            state.Start = start + consumed;
            state.Messages++;
            if (!fromClient && message.BackendKind == BackendMessageKind.BackendKeyData && message.Body.Length >= 8)
            {
                // The client gets (and the trace shows, as the client's own libpq would) the proxy's key.
                byte[] issued = IssueKey(message.Body);
                TraceBytes(PgDirection.Backend, issued);
                return new Step(start, issued, null);
            }

            Trace(message);
            if (fromClient)
            {
                if (_clientTls && message.FrontendKind == FrontendMessageKind.SASLInitialResponse && message.Body.StartsWith(s_scramPlus))
                {
                    return new Step(start, null, new ProxyConnectionException(
                        "the client chose SCRAM-SHA-256-PLUS, which cannot work through TLS termination",
                        ErrorResponse("FATAL", "28000", "SCRAM-SHA-256-PLUS (channel binding) cannot work through pgspec proxy, which terminates TLS: connect with channel_binding=disable, or without TLS to the proxy, or run the proxy with --tls-passthrough")));
                }
            }
        }
    }

    /// <summary>Writes to the other side; a write to the client that did not finish means no error may follow it.</summary>
    private ValueTask WriteAsync(Stream output, ReadOnlyMemory<byte> bytes, bool toClient, CancellationToken cancellationToken)
    {
        ValueTask write;
        try
        {
            write = output.WriteAsync(bytes, cancellationToken);
        }
        catch (Exception) when (toClient)
        {
            _clientStreamBroken = true;
            throw;
        }

        // Most writes finish at once: no state machine for them (GetResult still lets the source go).
        if (write.IsCompletedSuccessfully)
        {
            write.GetAwaiter().GetResult();
            return default;
        }

        return AwaitWriteAsync(write, toClient);
    }

    private async ValueTask AwaitWriteAsync(ValueTask write, bool toClient)
    {
        try
        {
            await write.ConfigureAwait(false);
        }
        catch (Exception) when (toClient)
        {
            _clientStreamBroken = true;
            throw;
        }
    }

    private byte[] IssueKey(ReadOnlySpan<byte> body)
    {
        int processId = BinaryPrimitives.ReadInt32BigEndian(body);
        ReadOnlySpan<byte> upstreamKey = body[4..];
        if (_issuedKey is not null)
        {
            _proxy.CancelKeys.Remove(_issuedProcessId, _issuedKey);
        }

        _issuedProcessId = processId;
        _issuedKey = _proxy.CancelKeys.Issue(processId, upstreamKey);
        byte[] message = new byte[1 + 4 + body.Length];
        message[0] = (byte)'K';
        BinaryPrimitives.WriteInt32BigEndian(message.AsSpan(1), 4 + body.Length);
        BinaryPrimitives.WriteInt32BigEndian(message.AsSpan(5), processId);
        _issuedKey.CopyTo(message, 9);
        return message;
    }

    private void Trace(PgReceivedMessage message) => _trace?.Write(_id, message, _context);

    /// <summary>Traces a message the proxy itself sends (read back with the connection's context).</summary>
    private void TraceBytes(PgDirection direction, byte[] bytes)
    {
        if (_trace is null)
        {
            return;
        }

        var reader = new PgMessageReader(direction, _context);
        var buffer = new ReadOnlySequence<byte>(bytes);
        if (reader.TryRead(ref buffer, out PgReceivedMessage message, out _) == PgReadStatus.Message)
        {
            Trace(message);
        }
    }

    private static ProxyConnectionException ProtocolViolation(string text, bool fromClient)
        => new(text, ErrorResponse("FATAL", "08P01", fromClient ? text : "pgspec proxy: " + text));

    /// <summary>An ErrorResponse with severity, code and message.</summary>
    internal static byte[] ErrorResponse(string severity, string code, string message)
    {
        var body = new MemoryStream();
        void Field(char type, string value)
        {
            body.WriteByte((byte)type);
            body.Write(Encoding.UTF8.GetBytes(value.Replace('\0', ' ')));
            body.WriteByte(0);
        }

        Field('S', severity);
        Field('V', severity);
        Field('C', code);
        Field('M', message);
        body.WriteByte(0);
        byte[] bytes = new byte[5 + body.Length];
        bytes[0] = (byte)'E';
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(1), 4 + (int)body.Length);
        body.ToArray().CopyTo(bytes, 5);
        return bytes;
    }

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
