using System.Buffers.Binary;

namespace PgSpec.Protocol;

/// <summary>What a server does with a startup packet, as <see cref="PgStartupHandshake.Accept"/> says.</summary>
public enum PgStartupStep
{
    /// <summary>Refused: send the ErrorResponse (a FATAL), then close the connection.</summary>
    Fatal,

    /// <summary>Refused without a word: PostgreSQL only logs the error and closes the connection.</summary>
    Close,

    /// <summary>An SSLRequest: answer 'S' (then TLS, see <see cref="PgStartupHandshake.AcceptEncryption"/>) or 'N', and read the next packet.</summary>
    SSLRequest,

    /// <summary>A GSSENCRequest: answer 'G' (then GSSAPI encryption) or 'N', and read the next packet.</summary>
    GSSENCRequest,

    /// <summary>A CancelRequest: deliver it and close the connection, sending nothing.</summary>
    CancelRequest,

    /// <summary>The StartupMessage: the startup phase is over, authentication follows.</summary>
    StartupMessage,
}

/// <summary>
/// The startup phase of a connection as a server (or a proxy in the server's place) sees it,
/// without I/O: the caller reads the bytes and sends the answers; this says what each packet is
/// and which of PostgreSQL's rules it breaks. Read the 4-byte length word, check it with
/// <see cref="TryReadLength"/> before reading the body, then give the whole packet to
/// <see cref="Accept"/>. Each encryption request is accepted at most once, and once the
/// connection is encrypted (<see cref="AcceptEncryption"/>, <see cref="AcceptDirectTls"/>) only
/// a StartupMessage or a CancelRequest may follow. Refusals are the ErrorResponses PostgreSQL
/// sends, in its words. <see cref="Negotiate"/> then decides the NegotiateProtocolVersion to
/// send for the StartupMessage.
/// </summary>
public sealed class PgStartupHandshake
{
    /// <summary>The ALPN protocol a client must offer for direct TLS (PostgreSQL 17 and later).</summary>
    public const string TlsApplicationProtocol = "postgresql";

    private const int CancelRequestCode = (1234 << 16) | 5678;
    private const int EarliestMajor = 3;

    private FrontendMessageKind _pendingRequest;
    private bool _sslDone;
    private bool _gssDone;
    private bool _started;
    private bool _over;

    /// <summary>A handshake that reads its packets with <paramref name="reader"/> (whose context learns from them).</summary>
    /// <param name="reader">A reader of the frontend's messages, in the startup phase.</param>
    /// <param name="newestVersion">The newest protocol version the server speaks (3.0 or later; default: <see cref="PgProtocolVersion.Latest"/>).</param>
    /// <exception cref="ArgumentException">The reader reads the backend's messages.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The version is not of major version 3.</exception>
    public PgStartupHandshake(PgMessageReader reader, PgProtocolVersion newestVersion = default)
    {
        ArgumentNullException.ThrowIfNull(reader);
        if (reader.Direction != PgDirection.Frontend)
        {
            throw new ArgumentException("startup packets are read from the frontend", nameof(reader));
        }

        Reader = reader;
        NewestVersion = CheckNewest(newestVersion, nameof(newestVersion));
    }

    /// <summary>The reader the packets go through.</summary>
    public PgMessageReader Reader { get; }

    /// <summary>The newest protocol version the server speaks.</summary>
    public PgProtocolVersion NewestVersion { get; }

    /// <summary>True once the connection is encrypted: only a StartupMessage or a CancelRequest may follow.</summary>
    public bool IsEncrypted { get; private set; }

    /// <summary>True when the first byte of a connection starts a TLS handshake (direct TLS, PostgreSQL 17 and later), not a startup packet.</summary>
    public static bool StartsDirectTls(byte firstByte) => firstByte == 0x16;

    /// <summary>
    /// Checks a startup packet's length word (its first 4 bytes) against the limits of the
    /// reader's context, before the body is read. When it is out of range the error is
    /// FATAL 08P01 "invalid length of startup packet", which PostgreSQL only logs before it closes.
    /// </summary>
    /// <param name="header">At least the packet's first 4 bytes.</param>
    /// <param name="packetLength">The packet's whole length (length word included) when it is accepted.</param>
    /// <param name="error">The refusal, when false.</param>
    /// <exception cref="ArgumentException">Fewer than 4 bytes.</exception>
    public bool TryReadLength(ReadOnlySpan<byte> header, out int packetLength, out ErrorResponse? error)
    {
        if (header.Length < 4)
        {
            throw new ArgumentException("the length word of a startup packet is 4 bytes", nameof(header));
        }

        int length = BinaryPrimitives.ReadInt32BigEndian(header);
        if (length < 8 || length > Reader.Context.Limits.MaxStartupPacketLength)
        {
            packetLength = 0;
            error = PgErrors.Fatal("08P01", $"invalid length of startup packet: {length}");
            return false;
        }

        packetLength = length;
        error = null;
        return true;
    }

    /// <summary>
    /// Reads a whole startup packet through the reader (the context learns from it) and says what
    /// to do: answer an encryption request, deliver a CancelRequest, go on with the StartupMessage,
    /// or refuse (<see cref="PgStartupStep.Fatal"/>, <see cref="PgStartupStep.Close"/>, with the
    /// error). A version of another major than 3 ("unsupported frontend protocol 2.0: server
    /// supports 3.0 to 3.2", 0A000), an unknown request code, and an encryption request sent a
    /// second time or after encryption began, are refused as PostgreSQL refuses them (it reads
    /// their codes as versions); a broken StartupMessage gets 08P01 "invalid startup packet
    /// layout"; a CancelRequest of the wrong length is dropped without a word. After a
    /// StartupMessage the context's version is the one in force (the newest the server speaks
    /// when the client asks for a newer one).
    /// </summary>
    /// <param name="packet">One whole packet, length word included.</param>
    /// <param name="message">The packet as the reader read it, over <paramref name="packet"/>; default (Length 0) when the reader refused it.</param>
    /// <param name="error">The refusal, for Fatal and Close; else null.</param>
    /// <exception cref="ArgumentException">The bytes are not one whole packet as its length word says.</exception>
    /// <exception cref="InvalidOperationException">The startup phase is over (a StartupMessage, a CancelRequest or a refusal came before).</exception>
    public PgStartupStep Accept(ReadOnlySpan<byte> packet, out PgReceivedMessage message, out ErrorResponse? error)
    {
        message = default;
        ThrowIfOver();
        if (Reader.Context.Phase != PgSessionPhase.Startup)
        {
            throw new InvalidOperationException($"the reader's context is in the {Reader.Context.Phase} phase, not in the startup phase");
        }

        if (packet.Length < 4)
        {
            throw new ArgumentException("a startup packet starts with its 4-byte length word", nameof(packet));
        }

        _started = true;
        _pendingRequest = FrontendMessageKind.Unknown;
        if (!TryReadLength(packet, out int length, out error))
        {
            return Over(PgStartupStep.Close);
        }

        if (length != packet.Length)
        {
            throw new ArgumentException($"not one whole startup packet: its length word says {length} bytes, {packet.Length} were given", nameof(packet));
        }

        int code = BinaryPrimitives.ReadInt32BigEndian(packet[4..]);
        if (Reader.TryRead(packet, out _, out message, out PgDecodeError malformed) != PgReadStatus.Message)
        {
            message = default;
            if (code == CancelRequestCode)
            {
                error = PgErrors.Fatal("08P01", "invalid length of cancel request packet", detail: malformed.ToString());
                return Over(PgStartupStep.Close);
            }

            string what = (uint)code >> 16 == EarliestMajor ? "invalid startup packet layout: expected terminator as last byte" : "invalid startup packet layout";
            error = PgErrors.Fatal("08P01", what, detail: malformed.ToString());
            return Over(PgStartupStep.Fatal);
        }

        switch (message.FrontendKind)
        {
            case FrontendMessageKind.SSLRequest:
            case FrontendMessageKind.GSSENCRequest:
                bool ssl = message.FrontendKind == FrontendMessageKind.SSLRequest;
                if (ssl ? _sslDone : _gssDone)
                {
                    // PostgreSQL reads the code of a request it no longer takes as a protocol version.
                    return Unsupported(code, out error);
                }

                if (ssl)
                {
                    _sslDone = true;
                }
                else
                {
                    _gssDone = true;
                }

                _pendingRequest = message.FrontendKind;
                return ssl ? PgStartupStep.SSLRequest : PgStartupStep.GSSENCRequest;
            case FrontendMessageKind.CancelRequest:
                return Over(PgStartupStep.CancelRequest);
            case FrontendMessageKind.StartupMessage:
                var requested = new PgProtocolVersion(code);
                if (requested.Major != NewestVersion.Major)
                {
                    return Unsupported(code, out error);
                }

                Reader.Context.ProtocolVersion = requested.Minor > NewestVersion.Minor ? NewestVersion : requested;
                return Over(PgStartupStep.StartupMessage);
            default:
                return Unsupported(code, out error);
        }
    }

    /// <summary>
    /// The server accepts the encryption request <see cref="Accept"/> has just returned: it is
    /// about to answer 'S' (TLS) or 'G' (GSSAPI), and the handshake follows. Call it before the
    /// answer is sent. Bytes the client sent after its request, before any answer, cannot be part
    /// of a handshake it starts after the answer; someone may be injecting them
    /// (CVE-2021-23222): then the result is PostgreSQL's FATAL 08P01 "received unencrypted data
    /// after SSL request", to send instead of the answer. Otherwise null, and from now on only a
    /// StartupMessage or a CancelRequest may come.
    /// </summary>
    /// <param name="bytesWaiting">How many bytes of the client have arrived and are not read (Socket.Available).</param>
    /// <exception cref="InvalidOperationException">The last packet was no encryption request.</exception>
    public ErrorResponse? AcceptEncryption(int bytesWaiting)
    {
        ThrowIfOver();
        if (_pendingRequest == FrontendMessageKind.Unknown)
        {
            throw new InvalidOperationException("the last packet was no SSLRequest or GSSENCRequest");
        }

        bool ssl = _pendingRequest == FrontendMessageKind.SSLRequest;
        _pendingRequest = FrontendMessageKind.Unknown;
        if (bytesWaiting > 0)
        {
            // The error comes instead of the one-byte answer.
            Reader.Context.ExpectEncryptionAnswer = false;
            _over = true;
            return PgErrors.Fatal(
                "08P01",
                ssl ? "received unencrypted data after SSL request" : "received unencrypted data after GSSAPI encryption request",
                detail: "This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.");
        }

        Encrypted();
        return null;
    }

    /// <summary>
    /// The connection began with a TLS handshake (<see cref="StartsDirectTls"/>), now complete.
    /// A client must have agreed on the ALPN protocol <see cref="TlsApplicationProtocol"/>, so
    /// that a connection meant for another protocol cannot be taken for PostgreSQL's; when it did
    /// not, the result is the error "received direct SSL connection request without ALPN protocol
    /// negotiation extension", which PostgreSQL only logs before it closes. Otherwise null, and
    /// only a StartupMessage or a CancelRequest may come.
    /// </summary>
    /// <param name="applicationProtocol">The ALPN protocol the TLS handshake agreed on (empty for none).</param>
    /// <exception cref="InvalidOperationException">A packet came before.</exception>
    public ErrorResponse? AcceptDirectTls(ReadOnlySpan<byte> applicationProtocol)
    {
        ThrowIfOver();
        if (_started || IsEncrypted)
        {
            throw new InvalidOperationException("direct TLS starts a connection, before any startup packet");
        }

        _started = true;
        if (!applicationProtocol.SequenceEqual("postgresql"u8))
        {
            _over = true;
            return PgErrors.Fatal("08P01", "received direct SSL connection request without ALPN protocol negotiation extension");
        }

        Encrypted();
        return null;
    }

    /// <summary>
    /// What a server answers a StartupMessage with, before authentication, as PostgreSQL does:
    /// NegotiateProtocolVersion when the client asks for a newer minor version than the server's
    /// newest, or for protocol options (<c>_pq_.</c>) the server does not know; else null.
    /// </summary>
    /// <param name="startup">The client's StartupMessage.</param>
    /// <param name="newestVersion">The newest protocol version the server speaks (default: <see cref="PgProtocolVersion.Latest"/>).</param>
    /// <param name="version">The version in force: the client's, or the server's newest when the client's is newer.</param>
    /// <param name="knownOptions">The <c>_pq_.</c> options the server knows (none when null); the others are listed as unrecognized, in the client's order.</param>
    /// <exception cref="ArgumentException">The client's major version is not the server's (<see cref="Accept"/> refuses it).</exception>
    public static NegotiateProtocolVersion? Negotiate(StartupMessage startup, PgProtocolVersion newestVersion, out PgProtocolVersion version, IEnumerable<string>? knownOptions = null)
    {
        ArgumentNullException.ThrowIfNull(startup);
        PgProtocolVersion newest = CheckNewest(newestVersion, nameof(newestVersion));
        var requested = new PgProtocolVersion(startup.ProtocolVersion);
        if (requested.Major != newest.Major)
        {
            throw new ArgumentException($"protocol {requested} is not of major version {newest.Major}", nameof(startup));
        }

        version = requested.Minor > newest.Minor ? newest : requested;
        HashSet<string>? known = null;
        List<string>? unrecognized = null;
        foreach (StartupMessage.Parameter parameter in startup.Parameters)
        {
            if (parameter.Name.StartsWith("_pq_.", StringComparison.Ordinal))
            {
                known ??= knownOptions is null ? [] : new HashSet<string>(knownOptions, StringComparer.Ordinal);
                if (!known.Contains(parameter.Name))
                {
                    (unrecognized ??= []).Add(parameter.Name);
                }
            }
        }

        return version != requested || unrecognized is not null
            ? new NegotiateProtocolVersion(version.Code, [.. unrecognized ?? []])
            : null;
    }

    private static PgProtocolVersion CheckNewest(PgProtocolVersion version, string name)
    {
        PgProtocolVersion newest = version.IsDefault ? PgProtocolVersion.Latest : version;
        if (newest.Major != EarliestMajor)
        {
            throw new ArgumentOutOfRangeException(name, newest, "the newest version a server speaks is 3.0 or a later 3.x");
        }

        return newest;
    }

    /// <summary>PostgreSQL's refusal of a code it reads as a protocol version of another major.</summary>
    private PgStartupStep Unsupported(int code, out ErrorResponse? error)
    {
        // No one-byte answer comes to a refused encryption request: the error does.
        Reader.Context.ExpectEncryptionAnswer = false;
        error = PgErrors.Fatal("0A000", $"unsupported frontend protocol {(uint)code >> 16}.{code & 0xFFFF}: server supports {EarliestMajor}.0 to {NewestVersion.Major}.{NewestVersion.Minor}");
        return Over(PgStartupStep.Fatal);
    }

    private void Encrypted()
    {
        // As PostgreSQL: once encrypted, neither request may follow.
        IsEncrypted = true;
        _sslDone = true;
        _gssDone = true;
    }

    private PgStartupStep Over(PgStartupStep step)
    {
        _over = true;
        return step;
    }

    private void ThrowIfOver()
    {
        if (_over)
        {
            throw new InvalidOperationException("the startup phase is over: a StartupMessage, a CancelRequest or a refusal came before");
        }
    }
}
