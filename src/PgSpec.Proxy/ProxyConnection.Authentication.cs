using System.Collections.Immutable;
using PgSpec.Protocol;
using PgSpec.Client;

namespace PgSpec.Proxy;

/// <summary>
/// Authentication, one message at a time, as PostgreSQL's own backend reads it: the server speaks
/// until it asks for something; then the client may send exactly the answer it was asked for (a
/// 'p' message, at most the 'p' limit, 65539 bytes), and nothing else is read from it. A client
/// that sends anything else gets PostgreSQL's own FATAL 08P01 before the body is read, so no
/// unauthenticated client makes the proxy hold more than one small message.
/// </summary>
internal sealed partial class ProxyConnection
{
    /// <summary>
    /// The longest message a server may send before authentication completes: libpq refuses an
    /// ErrorResponse or authentication request longer than 30000 bytes at that point, whatever the
    /// message's own limit after login.
    /// </summary>
    private const int MaxServerMessageDuringLogin = 30000;

    private ImmutableArray<string> _offeredMechanisms;
    private bool _serverBindsChannel;

    /// <summary>Relays authentication; true once the client has AuthenticationOk, false if the login ended (refused, or the client left).</summary>
    private async Task<bool> AuthenticateAsync(Stream client, Stream upstream, CancellationToken cancellationToken)
    {
        while (true)
        {
            byte[] message = await ReadServerDuringAuthenticationAsync(upstream, cancellationToken).ConfigureAwait(false);
            BackendMessageKind kind = AcceptFromServer(message);
            switch (kind)
            {
                case BackendMessageKind.AuthenticationOk:
                    await SendAsync(client, message, cancellationToken).ConfigureAwait(false);
                    return true;
                case BackendMessageKind.ErrorResponse:
                    // The server refused the login (a wrong password, say) and closes: the client learns why.
                    await SendAsync(client, message, cancellationToken).ConfigureAwait(false);
                    throw new ProxyConnectionException("the server refused the login: " + ServerError(message), null, failure: false);
                case BackendMessageKind.AuthenticationSASL:
                    if (await OfferSaslAsync(client, upstream, message, cancellationToken).ConfigureAwait(false))
                    {
                        continue;
                    }

                    break;
                default:
                    await SendAsync(client, message, cancellationToken).ConfigureAwait(false);
                    break;
            }

            if (_context.ExpectedPasswordMessage == FrontendMessageKind.Unknown)
            {
                // No answer is due (SASLFinal, a notice, NegotiateProtocolVersion): the server goes on.
                continue;
            }

            byte[]? answer = await ReadClientAnswerAsync(client, cancellationToken).ConfigureAwait(false);
            if (answer is null)
            {
                // Clients may leave instead of answering (psql does, to ask its user for a password).
                return false;
            }

            await SendAsync(upstream, answer, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Passes on the server's SASL offer as the client can complete it through this proxy. Channel
    /// binding (SCRAM-SHA-256-PLUS) binds the client's TLS channel to the server's certificate,
    /// which only works when the client's channel ends at the server (TLS passthrough) or at the
    /// same certificate. Otherwise the offer loses -PLUS: a client without TLS answers "n" and
    /// succeeds; a TLS client would answer "y" (it could bind but sees no offer), which a server
    /// that offered -PLUS must refuse as a downgrade, so by default such a client is asked for its
    /// password over its TLS connection instead, and the proxy completes SCRAM-SHA-256-PLUS with
    /// the server itself. Returns true when the exchange with the server is done (the password relay).
    /// </summary>
    private async Task<bool> OfferSaslAsync(Stream client, Stream upstream, byte[] message, CancellationToken cancellationToken)
    {
        var offer = AuthenticationSASL.Decode(message.AsSpan(5), _context);
        _serverBindsChannel = offer.Mechanisms.Contains(SaslMechanism.ScramSha256Plus);
        bool bindsThrough = _clientTls && _upstreamCertificate is not null && Options.TlsCertificate is not null
            && _upstreamCertificate.RawData.AsSpan().SequenceEqual(Options.TlsCertificate.RawData);
        if (!_serverBindsChannel || bindsThrough)
        {
            _offeredMechanisms = offer.Mechanisms;
            TraceSent(PgDirection.Backend, message, _backend.Position - message.Length);
            await SendAsync(client, message, cancellationToken).ConfigureAwait(false);
            return false;
        }

        if (_clientTls && Options.ChannelBindingFallback == ProxyChannelBindingFallback.RelayPassword && _upstreamCertificate is not null)
        {
            await RelayPasswordAsync(client, upstream, cancellationToken).ConfigureAwait(false);
            return true;
        }

        _offeredMechanisms = offer.Mechanisms.Remove(SaslMechanism.ScramSha256Plus);
        byte[] rewritten = new AuthenticationSASL(_offeredMechanisms).ToArray(_context.ProtocolVersion, _context.Limits);
        TraceSent(PgDirection.Backend, rewritten, _backend.Position - message.Length);
        await SendAsync(client, rewritten, cancellationToken).ConfigureAwait(false);
        return false;
    }

    /// <summary>
    /// Asks a TLS client for its password (AuthenticationCleartextPassword, over its TLS connection)
    /// and authenticates to the server with it by SCRAM-SHA-256-PLUS, bound to the server's
    /// certificate; the server's verdict (AuthenticationOk or an error) then goes to the client.
    /// </summary>
    private async Task RelayPasswordAsync(Stream client, Stream upstream, CancellationToken cancellationToken)
    {
        byte[] request = new AuthenticationCleartextPassword().ToArray();
        _context.ObserveBackend(BackendMessageKind.AuthenticationCleartextPassword, request.AsSpan(5));
        TraceSent(PgDirection.Backend, request, _backend.Position);
        await SendAsync(client, request, cancellationToken).ConfigureAwait(false);
        byte[]? answer = await ReadClientAnswerAsync(client, cancellationToken).ConfigureAwait(false);
        if (answer is null)
        {
            throw new ProxyConnectionException("the client left instead of giving its password", null, failure: false);
        }

        var scram = new ScramSha256Client(
            PasswordMessage.View.Read(answer.AsSpan(5)).Password,
            plus: true,
            channelBinding: ScramSha256Client.TlsServerEndPoint(_upstreamCertificate!),
            clientSupportsBinding: true);
        _proxy.Note(this, "the client's TLS connection cannot carry SCRAM channel binding to the server: asked for its password and authenticating with SCRAM-SHA-256-PLUS on its behalf");
        await SendAsync(upstream, new SASLInitialResponse(scram.Mechanism, scram.ClientFirst()).ToArray(), cancellationToken).ConfigureAwait(false);
        byte[] serverFirst = await ReadServerStepAsync(client, upstream, BackendMessageKind.AuthenticationSASLContinue, cancellationToken).ConfigureAwait(false);
        byte[] clientFinal;
        try
        {
            clientFinal = scram.ClientFinal(serverFirst.AsSpan(9));
        }
        catch (PgConnectionException e)
        {
            throw ServerAuthenticationFailure(e.Message);
        }

        await SendAsync(upstream, new SASLResponse(clientFinal).ToArray(), cancellationToken).ConfigureAwait(false);
        byte[] serverFinal = await ReadServerStepAsync(client, upstream, BackendMessageKind.AuthenticationSASLFinal, cancellationToken).ConfigureAwait(false);
        try
        {
            scram.VerifyServerFinal(serverFinal.AsSpan(9));
        }
        catch (PgConnectionException e)
        {
            throw ServerAuthenticationFailure(e.Message);
        }
    }

    /// <summary>The next SCRAM step of the server during a password relay; a notice goes to the client, an error ends the login.</summary>
    private async Task<byte[]> ReadServerStepAsync(Stream client, Stream upstream, BackendMessageKind expected, CancellationToken cancellationToken)
    {
        while (true)
        {
            byte[] message = await ReadServerDuringAuthenticationAsync(upstream, cancellationToken).ConfigureAwait(false);
            BackendMessageKind kind = Accept(_backend, message).BackendKind;
            if (kind == expected)
            {
                // The proxy's own exchange with the server: the client never sees it.
                return message;
            }

            if (kind is not (BackendMessageKind.ErrorResponse or BackendMessageKind.NoticeResponse))
            {
                // Nothing else reaches the client before the proxy has checked the server (an
                // AuthenticationOk without the server's signature, say).
                throw ProtocolViolation($"the server sent {BackendMessages.NameOf(kind)} where SCRAM expects {BackendMessages.NameOf(expected)}", fromClient: false);
            }

            TraceSent(PgDirection.Backend, message, _backend.Position - message.Length);
            await SendAsync(client, message, cancellationToken).ConfigureAwait(false);
            if (kind == BackendMessageKind.ErrorResponse)
            {
                throw new ProxyConnectionException("the server refused the password the client gave: " + ServerError(message), null, failure: false);
            }
        }
    }

    /// <summary>An ErrorResponse's severity, code and message, for a note.</summary>
    private static string ServerError(byte[] message)
    {
        var error = PgSpec.Protocol.ErrorResponse.View.Read(message.AsSpan(5));
        string severity = "", code = "", text = "";
        foreach (var field in error.Fields)
        {
            string value = System.Text.Encoding.UTF8.GetString(field.Value);
            switch ((char)field.Code)
            {
                case 'V': severity = value; break;
                case 'S' when severity.Length == 0: severity = value; break;
                case 'C': code = value; break;
                case 'M': text = value; break;
            }
        }

        return $"{severity} {code} {text}".Trim();
    }

    private static ProxyConnectionException ServerAuthenticationFailure(string reason)
        => new("authenticating to the server failed: " + reason, Fatal("28000", "pgspec proxy could not authenticate to the server: " + reason));

    /// <summary>
    /// The server's next message before authentication completes: only what the flow allows in the
    /// Authentication phase may come ('R', 'E', 'N' and 'v'), each within its limit.
    /// </summary>
    private async Task<byte[]> ReadServerDuringAuthenticationAsync(Stream upstream, CancellationToken cancellationToken)
    {
        _awaitingServer = true;
        byte[]? message = await ReadMessageAsync(upstream, PgDirection.Backend, static type => BackendMessages.IsTypeByteAllowedIn(type, PgSessionPhase.Authentication)
            ? null
            : $"the server sent a message of type {PgTraceWriter.FormatByte(type)} before authentication completed", cancellationToken, MaxServerMessageDuringLogin).ConfigureAwait(false);
        return message ?? throw new ProxyConnectionException(
            "the server closed the connection during authentication",
            Fatal("08006", "the server behind pgspec proxy closed the connection during authentication"));
    }

    /// <summary>
    /// The client's answer to an authentication request: one 'p' message (its kind named by the
    /// request), the only one the flow allows in the Authentication phase; anything else is refused
    /// from its type byte, as PostgreSQL does. Null when the client closes instead.
    /// </summary>
    private async Task<byte[]?> ReadClientAnswerAsync(Stream client, CancellationToken cancellationToken)
    {
        _awaitingServer = false;
        string expected = _context.ExpectedPasswordMessage switch
        {
            FrontendMessageKind.SASLInitialResponse or FrontendMessageKind.SASLResponse => "SASL",
            FrontendMessageKind.GSSResponse => "GSS",
            _ => "password",
        };
        byte[]? answer = await ReadMessageAsync(client, PgDirection.Frontend, type => FrontendMessages.IsTypeByteAllowedIn(type, PgSessionPhase.Authentication)
            ? null
            : $"expected {expected} response, got message type {type}", cancellationToken).ConfigureAwait(false);
        if (answer is null)
        {
            return null;
        }

        PgReceivedMessage received = Accept(_frontend, answer);
        Trace(received);
        FrontendMessageKind kind = received.FrontendKind;
        if (kind == FrontendMessageKind.SASLInitialResponse)
        {
            CheckSaslChoice(answer);
        }

        return answer;
    }

    /// <summary>The client's SASL mechanism must be one it was offered, and channel binding must be one the proxy can carry.</summary>
    private void CheckSaslChoice(byte[] answer)
    {
        var choice = SASLInitialResponse.View.Read(answer.AsSpan(5), _context);
        string mechanism = System.Text.Encoding.UTF8.GetString(choice.Mechanism);
        if (_offeredMechanisms.IsDefault || !_offeredMechanisms.Contains(mechanism))
        {
            throw ProtocolViolation($"client selected an invalid SASL authentication mechanism ('{mechanism}' was not offered)", fromClient: true);
        }

        if (_serverBindsChannel && !choice.Data.IsNull && choice.Data.Bytes.StartsWith("y,"u8))
        {
            // The client has TLS (to the proxy) and could bind; the server has TLS (from the proxy) and
            // would take "y" for a downgrade attack. Say so here, with what would work.
            throw new ProxyConnectionException(
                "the client supports SCRAM channel binding, which cannot pass through the proxy",
                Fatal("28000", "SCRAM channel binding cannot pass through pgspec proxy: the client's TLS connection ends at the proxy, the server's begins there. Connect with channel_binding=disable, or run the proxy with the server's certificate, with --tls-passthrough, or with --channel-binding-fallback password"));
        }
    }

    /// <summary>
    /// Reads one whole message: the 5-byte header first, which <paramref name="admit"/> (a refusal
    /// text, or null) and the size limit judge before any of the body is read; then exactly the
    /// body. Null when the peer closes before a message starts.
    /// </summary>
    private async Task<byte[]?> ReadMessageAsync(Stream input, PgDirection from, Func<byte, string?> admit, CancellationToken cancellationToken, int maxLength = int.MaxValue)
    {
        bool fromClient = from == PgDirection.Frontend;
        string who = fromClient ? "the client" : "the server";
        byte[] header = new byte[5];
        int read = await input.ReadAtLeastAsync(header, header.Length, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
        if (read == 0)
        {
            return null;
        }

        if (read < header.Length || admit(header[0]) is not { } refusal)
        {
            if (read < header.Length)
            {
                throw new ProxyConnectionException(who + " closed the connection inside a message", null);
            }
        }
        else
        {
            throw ProtocolViolation(refusal, fromClient);
        }

        if (PgFramer.TryReadFrame(header, PgFrameKind.Typed, from, _context.Limits, out PgFrameHeader frame, out PgDecodeError error) == PgFrameStatus.Malformed)
        {
            throw ProtocolViolation(who + " sent a malformed message: " + error.ToString(), fromClient);
        }

        if (frame.Length > maxLength)
        {
            throw ProtocolViolation($"{who} sent a message of type {PgTraceWriter.FormatByte(header[0])} and length {frame.Length} during login, where at most {maxLength} is allowed", fromClient);
        }

        // The buffer grows with what arrives: a length word alone buys nothing (a server's ErrorResponse may declare 1 GiB).
        byte[] message = new byte[Math.Min(frame.WireLength, ReceiveBuffer.SmallSize)];
        header.CopyTo(message, 0);
        int filled = header.Length;
        while (filled < frame.WireLength)
        {
            if (filled == message.Length)
            {
                Array.Resize(ref message, (int)Math.Min(2L * message.Length, frame.WireLength));
            }

            int got = await input.ReadAsync(message.AsMemory(filled), cancellationToken).ConfigureAwait(false);
            if (got == 0)
            {
                throw new ProxyConnectionException(
                    who + $" closed the connection inside a message ({filled} of its {frame.WireLength} bytes received)",
                    fromClient ? null : Fatal("08006", "the server closed the connection inside a message"));
            }

            filled += got;
        }

        return message;
    }

    /// <summary>
    /// Validates a whole message read on its own (the context learns from it) and counts it; the
    /// message is returned over <paramref name="bytes"/>, for the caller to trace or not.
    /// </summary>
    private PgReceivedMessage Accept(PgMessageReader reader, byte[] bytes, string malformed = "a malformed message")
    {
        bool fromClient = reader.Direction == PgDirection.Frontend;
        if (reader.TryRead(bytes, out _, out PgReceivedMessage message, out PgDecodeError error) != PgReadStatus.Message)
        {
            throw ProtocolViolation((fromClient ? "the client sent " : "the server sent ") + malformed + ": " + error.ToString(), fromClient);
        }

        _proxy.Statistics.OnMessages(fromClient, 1, bytes.Length);
        return message;
    }

    /// <summary>A message of the server during login, traced unless it is a SASL offer (traced as the client gets it, see <see cref="OfferSaslAsync"/>).</summary>
    private BackendMessageKind AcceptFromServer(byte[] bytes)
    {
        PgReceivedMessage message = Accept(_backend, bytes);
        if (message.BackendKind != BackendMessageKind.AuthenticationSASL)
        {
            Trace(message);
        }

        return message.BackendKind;
    }

    /// <summary>Writes a whole message to one side during the handshake.</summary>
    private static async Task SendAsync(Stream output, byte[] message, CancellationToken cancellationToken)
    {
        await output.WriteAsync(message, cancellationToken).ConfigureAwait(false);
        await output.FlushAsync(cancellationToken).ConfigureAwait(false);
    }
}
