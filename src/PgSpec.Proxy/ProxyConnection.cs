using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Text;
using PgSpec.Protocol;

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
    private readonly Socket _client;
    private readonly DecodeContext _context;
    private readonly IProxyTraceSink? _trace;
    private Socket? _upstream;
    private bool _clientTls;
    private int _issuedProcessId;
    private byte[]? _issuedKey;

    public ProxyConnection(PgProxy proxy, long id, Socket client)
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
        Stream client = new NetworkStream(_client, ownsSocket: false);
        Stream? upstream = null;
        bool failed = false;
        try
        {
            if (_client.RemoteEndPoint is not null && !Options.Listen.IsUnix)
            {
                _client.NoDelay = true;
            }

            cancel.CancelAfter(Options.HandshakeTimeout);
            (client, byte[]? startup) = await StartupAsync(client, cancel.Token).ConfigureAwait(false);
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
            if (e.ClientError is not null)
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
    /// The startup phase: SSLRequest (answered 'S' with a certificate, else 'N'), direct TLS,
    /// GSSENCRequest (answered 'N'), CancelRequest (forwarded, then the connection ends), and the
    /// StartupMessage, whose bytes are returned for the server.
    /// </summary>
    private async Task<(Stream Client, byte[]? Startup)> StartupAsync(Stream client, CancellationToken cancellationToken)
    {
        byte[] first = new byte[1];
        int peeked = await _client.ReceiveAsync(first, SocketFlags.Peek, cancellationToken).ConfigureAwait(false);
        if (peeked == 0)
        {
            return (client, null);
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
                return (client, null);
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
                    return (client, null);
                case FrontendMessageKind.StartupMessage:
                    return (client, packet);
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
            var reader = new PgMessageReader(PgDirection.Backend, _context);
            var buffer = new ReadOnlySequence<byte>(new[] { answer });
            if (reader.TryRead(ref buffer, out PgReceivedMessage message, out _) == PgReadStatus.Message)
            {
                Trace(message);
            }
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
        if (!_proxy.CancelKeys.TryGetUpstreamKey(processId, packet.AsSpan(12), out byte[] upstreamKey))
        {
            _proxy.Note(_id, $"a cancel request for process {processId} with a key the proxy did not issue was ignored");
            return;
        }

        byte[] request = new byte[12 + upstreamKey.Length];
        BinaryPrimitives.WriteInt32BigEndian(request, request.Length);
        packet.AsSpan(4, 8).CopyTo(request.AsSpan(4));
        upstreamKey.CopyTo(request, 12);
        using Socket socket = Options.Upstream.CreateSocket();
        await socket.ConnectAsync(Options.Upstream.EndPoint, cancellationToken).ConfigureAwait(false);
        await socket.SendAsync(request, SocketFlags.None, cancellationToken).ConfigureAwait(false);
        socket.Shutdown(SocketShutdown.Send);

        // The server closes the connection once it has handled the request.
        byte[] sink = new byte[16];
        while (await socket.ReceiveAsync(sink, SocketFlags.None, cancellationToken).ConfigureAwait(false) > 0)
        {
        }

        _proxy.Note(_id, $"cancel request forwarded to process {processId}");
    }

    private async Task<Stream> ConnectUpstreamAsync(byte[] startup, CancellationToken cancellationToken)
    {
        _upstream = Options.Upstream.CreateSocket();
        try
        {
            await _upstream.ConnectAsync(Options.Upstream.EndPoint, cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            throw new ProxyConnectionException($"cannot connect to the server {Options.Upstream}: {e.Message}", ErrorResponse("FATAL", "08006", $"pgspec proxy cannot connect to the server {Options.Upstream}: {e.Message}"));
        }

        Stream upstream = new NetworkStream(_upstream, ownsSocket: false);
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

    private async Task RelayAsync(Stream client, Stream upstream, CancellationTokenSource cancel)
    {
        PipeReader fromClient = PipeReader.Create(client, new StreamPipeReaderOptions(leaveOpen: true));
        PipeWriter toClient = PipeWriter.Create(client, new StreamPipeWriterOptions(leaveOpen: true));
        PipeReader fromServer = PipeReader.Create(upstream, new StreamPipeReaderOptions(leaveOpen: true));
        PipeWriter toServer = PipeWriter.Create(upstream, new StreamPipeWriterOptions(leaveOpen: true));

        // The frontend reader is past the startup packet; the context is shared by both directions.
        var frontend = new PgMessageReader(PgDirection.Frontend, _context);
        var backend = new PgMessageReader(PgDirection.Backend, _context);
        Task clientToServer = PumpAsync(fromClient, toServer, frontend, cancel);
        Task serverToClient = PumpAsync(fromServer, toClient, backend, cancel);

        Task first = await Task.WhenAny(clientToServer, serverToClient).ConfigureAwait(false);
        if (first == clientToServer && first.IsCompletedSuccessfully && !Options.UpstreamTls)
        {
            // The client is gone: tell the server, and let it close its side.
            try
            {
                _upstream!.Shutdown(SocketShutdown.Send);
            }
            catch (SocketException)
            {
            }

            cancel.CancelAfter(Options.ShutdownGrace);
        }
        else
        {
            await cancel.CancelAsync().ConfigureAwait(false);
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
    /// Reads what arrives, splits it into messages (validating each and tracing it), and forwards
    /// every whole message as received; a partial message waits for the rest, bounded by the limits.
    /// </summary>
    private async Task PumpAsync(PipeReader input, PipeWriter output, PgMessageReader reader, CancellationTokenSource cancel)
    {
        bool fromClient = reader.Direction == PgDirection.Frontend;
        bool idleTimeout = Options.IdleTimeout != Timeout.InfiniteTimeSpan;
        CancellationToken cancellationToken = cancel.Token;
        while (true)
        {
            ReadResult result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            if (idleTimeout)
            {
                cancel.CancelAfter(Options.IdleTimeout);
            }

            ReadOnlySequence<byte> buffer = result.Buffer;
            ReadOnlySequence<byte> rest = buffer;
            SequencePosition forwardFrom = buffer.Start;
            long messages = 0;
            ProxyConnectionException? violation = null;
            while (true)
            {
                SequencePosition start = rest.Start;
                PgReadStatus status = reader.TryRead(ref rest, out PgReceivedMessage message, out PgDecodeError error);
                if (status == PgReadStatus.Incomplete)
                {
                    break;
                }

                if (status == PgReadStatus.Malformed)
                {
                    violation = ProtocolViolation((fromClient ? "the client" : "the server") + " sent a malformed message: " + error.ToString(), fromClient);
                    break;
                }

                messages++;
                Trace(message);
                if (fromClient)
                {
                    if (_clientTls && message.FrontendKind == FrontendMessageKind.SASLInitialResponse && message.Body.StartsWith(s_scramPlus))
                    {
                        violation = new ProxyConnectionException(
                            "the client chose SCRAM-SHA-256-PLUS, which cannot work through TLS termination",
                            ErrorResponse("FATAL", "28000", "SCRAM-SHA-256-PLUS (channel binding) cannot work through pgspec proxy, which terminates TLS: connect with channel_binding=disable, or without TLS to the proxy"));
                        Forward(output, buffer.Slice(forwardFrom, start));
                        forwardFrom = start;
                        rest = buffer.Slice(start);
                        break;
                    }
                }
                else if (message.BackendKind == BackendMessageKind.BackendKeyData && message.Body.Length >= 8)
                {
                    // Forward what came before, then the message with the proxy's key in place of the server's.
                    Forward(output, buffer.Slice(forwardFrom, start));
                    output.Write(IssueKey(message.Body));
                    forwardFrom = rest.Start;
                }
            }

            Forward(output, buffer.Slice(forwardFrom, rest.Start));
            long consumed = buffer.Slice(0, rest.Start).Length;
            input.AdvanceTo(rest.Start, buffer.End);
            _proxy.Statistics.OnMessages(fromClient, messages, consumed);
            await output.FlushAsync(cancellationToken).ConfigureAwait(false);
            if (violation is not null)
            {
                throw violation;
            }

            if (result.IsCompleted || result.IsCanceled)
            {
                if (rest.Length > 0)
                {
                    throw new ProxyConnectionException((fromClient ? "the client" : "the server") + $" closed the connection inside a message ({rest.Length} bytes of it received)", fromClient ? null : ErrorResponse("FATAL", "08006", "the server closed the connection inside a message"));
                }

                await output.CompleteAsync().ConfigureAwait(false);
                return;
            }
        }
    }

    private static void Forward(PipeWriter output, ReadOnlySequence<byte> bytes)
    {
        foreach (ReadOnlyMemory<byte> segment in bytes)
        {
            output.Write(segment.Span);
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
