using System.Buffers.Binary;
using System.Text;

namespace PgSpec.Protocol.Tests;

/// <summary>PostgreSQL's rules for the startup packets a server reads, as PgStartupHandshake applies them.</summary>
public class StartupHandshakeTests
{
    private static readonly byte[] s_sslRequest = new SSLRequest().ToArray();
    private static readonly byte[] s_gssRequest = new GSSENCRequest().ToArray();

    private static PgStartupHandshake Handshake(PgProtocolVersion newest = default, PgLimits? limits = null)
        => new(new PgMessageReader(PgDirection.Frontend, new DecodeContext { Limits = limits ?? PgLimits.Default }), newest);

    private static byte[] Startup(PgProtocolVersion version, params (string Name, string Value)[] parameters)
        => new StartupMessage(version.Code, [.. parameters.Select(p => new StartupMessage.Parameter(p.Name, p.Value))]).ToArray();

    /// <summary>A packet of this code and body after it, its length word counting both.</summary>
    private static byte[] Packet(int code, params byte[] rest)
    {
        byte[] packet = new byte[8 + rest.Length];
        BinaryPrimitives.WriteInt32BigEndian(packet, packet.Length);
        BinaryPrimitives.WriteInt32BigEndian(packet.AsSpan(4), code);
        rest.CopyTo(packet, 8);
        return packet;
    }

    private static PgStartupStep Accept(PgStartupHandshake handshake, byte[] packet, out ErrorResponse? error)
        => handshake.Accept(packet, out _, out error);

    /// <summary>Severity, SQLSTATE and message of an error.</summary>
    private static (string? Severity, string? Code, string? Message) Core(ErrorResponse? error)
    {
        Assert.NotNull(error);
        string? Field(char code) => error.Fields.FirstOrDefault(f => f.Code == (byte)code)?.Value;
        Assert.Equal(Field('S'), Field('V'));
        return (Field('S'), Field('C'), Field('M'));
    }

    [Fact]
    public void The_first_byte_of_a_TLS_record_starts_direct_TLS_and_a_length_word_does_not()
    {
        Assert.True(PgStartupHandshake.StartsDirectTls(0x16));
        Assert.False(PgStartupHandshake.StartsDirectTls(0x00));
        Assert.False(PgStartupHandshake.StartsDirectTls(s_sslRequest[0]));
        Assert.Equal("postgresql", PgStartupHandshake.TlsApplicationProtocol);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    [InlineData(7)]
    [InlineData(10001)]
    [InlineData(-1)]
    [InlineData(int.MaxValue)]
    public void A_length_word_out_of_range_is_refused_before_the_body(int length)
    {
        byte[] header = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(header, length);

        Assert.False(Handshake().TryReadLength(header, out int packetLength, out ErrorResponse? error));
        Assert.Equal(0, packetLength);
        Assert.Equal(("FATAL", "08P01", $"invalid length of startup packet: {length}"), Core(error));
    }

    [Fact]
    public void A_length_word_in_range_gives_the_packets_length_and_the_limit_is_the_contexts()
    {
        byte[] header = [0, 0, 0x27, 0x10]; // 10000, the default limit
        Assert.True(Handshake().TryReadLength(header, out int length, out ErrorResponse? error));
        Assert.Equal(10000, length);
        Assert.Null(error);

        Assert.False(Handshake(limits: PgLimits.Default.WithStartupPacket(9999)).TryReadLength(header, out _, out error));
        Assert.Equal("invalid length of startup packet: 10000", Core(error).Message);
        Assert.Throws<ArgumentException>(() => Handshake().TryReadLength([0, 0, 8], out _, out _));
    }

    [Fact]
    public void A_whole_packet_too_long_is_closed_without_a_word()
    {
        byte[] packet = Packet(PgProtocolVersion.V3_0.Code, new byte[10001 - 8]);

        Assert.Equal(PgStartupStep.Close, Accept(Handshake(), packet, out ErrorResponse? error));
        Assert.Equal(("FATAL", "08P01", "invalid length of startup packet: 10001"), Core(error));
    }

    [Fact]
    public void A_repeated_SSLRequest_is_refused_as_an_unsupported_protocol_version()
    {
        PgStartupHandshake handshake = Handshake();

        Assert.Equal(PgStartupStep.SSLRequest, Accept(handshake, s_sslRequest, out ErrorResponse? first));
        Assert.Null(first);
        Assert.True(handshake.Reader.Context.ExpectEncryptionAnswer);
        Assert.Equal(PgStartupStep.Fatal, handshake.Accept(s_sslRequest, out PgReceivedMessage message, out ErrorResponse? second));

        Assert.Equal(FrontendMessageKind.SSLRequest, message.FrontendKind);
        Assert.Equal(("FATAL", "0A000", "unsupported frontend protocol 1234.5679: server supports 3.0 to 3.2"), Core(second));

        // The error comes instead of a one-byte answer; and the startup phase is over.
        Assert.False(handshake.Reader.Context.ExpectEncryptionAnswer);
        Assert.Throws<InvalidOperationException>(() => handshake.Accept(Startup(PgProtocolVersion.V3_0, ("user", "u")), out _, out _));
    }

    [Fact]
    public void A_repeated_GSSENCRequest_is_refused_too()
    {
        PgStartupHandshake handshake = Handshake();
        Assert.Equal(PgStartupStep.GSSENCRequest, Accept(handshake, s_gssRequest, out _));

        Assert.Equal(PgStartupStep.Fatal, Accept(handshake, s_gssRequest, out ErrorResponse? error));
        Assert.Equal(("FATAL", "0A000", "unsupported frontend protocol 1234.5680: server supports 3.0 to 3.2"), Core(error));
    }

    [Fact]
    public void GSS_then_SSL_then_the_StartupMessage_each_refused_with_N_is_libpqs_order_and_accepted()
    {
        PgStartupHandshake handshake = Handshake();
        byte[] startup = Startup(PgProtocolVersion.V3_2, ("user", "alice"), ("database", "db"));

        Assert.Equal(PgStartupStep.GSSENCRequest, Accept(handshake, s_gssRequest, out ErrorResponse? gss));
        Assert.Equal(PgStartupStep.SSLRequest, Accept(handshake, s_sslRequest, out ErrorResponse? ssl));
        Assert.Equal(PgStartupStep.StartupMessage, handshake.Accept(startup, out PgReceivedMessage message, out ErrorResponse? error));

        Assert.Null(gss);
        Assert.Null(ssl);
        Assert.Null(error);
        var accepted = Assert.IsType<StartupMessage>(message.ToMessage(handshake.Reader.Context));
        Assert.Equal("alice", accepted.Parameters[0].Value);
        Assert.Equal(PgSessionPhase.Authentication, handshake.Reader.Context.Phase);
        Assert.Equal(PgProtocolVersion.V3_2, handshake.Reader.Context.ProtocolVersion);
        Assert.False(handshake.IsEncrypted);
    }

    [Fact]
    public void After_TLS_from_an_SSLRequest_only_a_StartupMessage_or_a_CancelRequest_may_follow()
    {
        PgStartupHandshake withGss = Handshake();
        Accept(withGss, s_sslRequest, out _);
        Assert.Null(withGss.AcceptEncryption(bytesWaiting: 0));
        Assert.True(withGss.IsEncrypted);

        Assert.Equal(PgStartupStep.Fatal, Accept(withGss, s_gssRequest, out ErrorResponse? error));
        Assert.Equal("unsupported frontend protocol 1234.5680: server supports 3.0 to 3.2", Core(error).Message);

        PgStartupHandshake withStartup = Handshake();
        Accept(withStartup, s_sslRequest, out _);
        withStartup.AcceptEncryption(0);
        Assert.Equal(PgStartupStep.StartupMessage, Accept(withStartup, Startup(PgProtocolVersion.V3_0, ("user", "u")), out _));

        PgStartupHandshake withCancel = Handshake();
        Accept(withCancel, s_sslRequest, out _);
        withCancel.AcceptEncryption(0);
        Assert.Equal(PgStartupStep.CancelRequest, withCancel.Accept(new CancelRequest(7, new byte[32]).ToArray(), out PgReceivedMessage cancel, out _));
        Assert.Equal(7, CancelRequest.View.Read(cancel.Body, withCancel.Reader.Context).ProcessId);
    }

    [Theory]
    [InlineData(true, "received unencrypted data after SSL request")]
    [InlineData(false, "received unencrypted data after GSSAPI encryption request")]
    public void Bytes_that_came_with_an_accepted_encryption_request_are_refused(bool ssl, string text)
    {
        PgStartupHandshake handshake = Handshake();
        Accept(handshake, ssl ? s_sslRequest : s_gssRequest, out _);

        ErrorResponse? error = handshake.AcceptEncryption(bytesWaiting: 42);

        Assert.Equal(("FATAL", "08P01", text), Core(error));
        Assert.Contains(error!.Fields, f => f.Code == (byte)'D' && f.Value.Contains("man-in-the-middle", StringComparison.Ordinal));
        Assert.False(handshake.Reader.Context.ExpectEncryptionAnswer);
        Assert.False(handshake.IsEncrypted);
        Assert.Throws<InvalidOperationException>(() => handshake.Accept(Startup(PgProtocolVersion.V3_0, ("user", "u")), out _, out _));
    }

    [Fact]
    public void Encryption_is_accepted_only_right_after_a_request()
    {
        PgStartupHandshake handshake = Handshake();
        Assert.Throws<InvalidOperationException>(() => handshake.AcceptEncryption(0));
        Accept(handshake, s_sslRequest, out _);
        handshake.AcceptEncryption(0);
        Assert.Throws<InvalidOperationException>(() => handshake.AcceptEncryption(0));
    }

    [Fact]
    public void Direct_TLS_with_ALPN_postgresql_is_encrypted_and_no_request_may_follow()
    {
        PgStartupHandshake handshake = Handshake();

        Assert.Null(handshake.AcceptDirectTls("postgresql"u8));
        Assert.True(handshake.IsEncrypted);
        Assert.Equal(PgStartupStep.Fatal, Accept(handshake, s_sslRequest, out ErrorResponse? error));
        Assert.Equal("unsupported frontend protocol 1234.5679: server supports 3.0 to 3.2", Core(error).Message);
    }

    [Theory]
    [InlineData("")]
    [InlineData("http/1.1")]
    [InlineData("postgres")]
    public void Direct_TLS_without_ALPN_postgresql_is_refused(string alpn)
    {
        PgStartupHandshake handshake = Handshake();

        ErrorResponse? error = handshake.AcceptDirectTls(Encoding.ASCII.GetBytes(alpn));

        Assert.Equal(("FATAL", "08P01", "received direct SSL connection request without ALPN protocol negotiation extension"), Core(error));
        Assert.False(handshake.IsEncrypted);
    }

    [Fact]
    public void Direct_TLS_comes_first_or_not_at_all()
    {
        PgStartupHandshake handshake = Handshake();
        Accept(handshake, s_gssRequest, out _);
        Assert.Throws<InvalidOperationException>(() => handshake.AcceptDirectTls("postgresql"u8));
    }

    [Theory]
    [InlineData(2, 0, "3.2", "unsupported frontend protocol 2.0: server supports 3.0 to 3.2")]
    [InlineData(4, 0, "3.2", "unsupported frontend protocol 4.0: server supports 3.0 to 3.2")]
    [InlineData(1234, 5679, "3.0", "unsupported frontend protocol 1234.5679: server supports 3.0 to 3.0")]
    [InlineData(1234, 5681, "3.2", "unsupported frontend protocol 1234.5681: server supports 3.0 to 3.2")]
    [InlineData(0xFFFF, 0xFFFF, "3.2", "unsupported frontend protocol 65535.65535: server supports 3.0 to 3.2")]
    public void Versions_of_another_major_and_unknown_request_codes_are_refused_as_PostgreSQL_refuses_them(int major, int minor, string newest, string text)
    {
        Assert.True(PgProtocolVersion.TryParse(newest, out PgProtocolVersion version));
        PgStartupHandshake handshake = Handshake(version);
        byte[] packet = Packet(PgProtocolVersion.From(major, minor).Code, [.. "user\0u\0\0"u8]);
        if (major == 1234 && minor == 5679)
        {
            // An SSLRequest the second time, read as a version.
            Accept(handshake, s_sslRequest, out _);
            packet = s_sslRequest;
        }

        Assert.Equal(PgStartupStep.Fatal, Accept(handshake, packet, out ErrorResponse? error));
        Assert.Equal(("FATAL", "0A000", text), Core(error));
    }

    [Theory]
    [InlineData("user\0u\0")]
    [InlineData("user\0u\0lonely\0\0")]
    [InlineData("user\0u")]
    public void A_StartupMessage_without_its_terminator_is_an_invalid_layout(string body)
    {
        byte[] packet = Packet(PgProtocolVersion.V3_0.Code, Encoding.ASCII.GetBytes(body));

        Assert.Equal(PgStartupStep.Fatal, Handshake().Accept(packet, out PgReceivedMessage message, out ErrorResponse? error));

        Assert.Equal(0, message.Length);
        Assert.Equal(("FATAL", "08P01", "invalid startup packet layout: expected terminator as last byte"), Core(error));
        Assert.Contains(error!.Fields, f => f.Code == (byte)'D');
    }

    [Fact]
    public void A_CancelRequest_of_the_wrong_length_is_closed_without_a_word()
    {
        byte[] packet = Packet((1234 << 16) | 5678, 0, 0, 0, 7, 1, 2, 3);

        Assert.Equal(PgStartupStep.Close, Accept(Handshake(), packet, out ErrorResponse? error));
        Assert.Equal(("FATAL", "08P01", "invalid length of cancel request packet"), Core(error));
    }

    [Fact]
    public void A_StartupMessage_asking_for_a_newer_minor_version_leaves_the_servers_newest_in_force()
    {
        PgStartupHandshake handshake = Handshake(PgProtocolVersion.V3_0);

        Assert.Equal(PgStartupStep.StartupMessage, Accept(handshake, Startup(PgProtocolVersion.From(3, 9999), ("user", "u")), out _));
        Assert.Equal(PgProtocolVersion.V3_0, handshake.Reader.Context.ProtocolVersion);
    }

    [Fact]
    public void Bytes_that_are_not_one_whole_packet_are_the_callers_mistake()
    {
        byte[] startup = Startup(PgProtocolVersion.V3_0, ("user", "u"));
        Assert.Throws<ArgumentException>(() => Handshake().Accept(startup.AsSpan(0, startup.Length - 1), out _, out _));
        Assert.Throws<ArgumentException>(() => Handshake().Accept([.. startup, 0], out _, out _));
        Assert.Throws<ArgumentException>(() => Handshake().Accept([0, 0], out _, out _));
    }

    [Fact]
    public void The_handshake_reads_frontend_packets_of_protocol_3_only()
    {
        Assert.Throws<ArgumentException>(() => new PgStartupHandshake(new PgMessageReader(PgDirection.Backend)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PgStartupHandshake(new PgMessageReader(PgDirection.Frontend), PgProtocolVersion.From(4, 0)));
        Assert.Equal(PgProtocolVersion.Latest, new PgStartupHandshake(new PgMessageReader(PgDirection.Frontend)).NewestVersion);
    }

    [Fact]
    public void Negotiation_for_3_9999_with_an_unknown_option_offers_the_newest_version_and_names_the_option()
    {
        var startup = new StartupMessage(PgProtocolVersion.From(3, 9999).Code, [new("user", "u"), new("_pq_.x", "1"), new("application_name", "a")]);

        NegotiateProtocolVersion? negotiation = PgStartupHandshake.Negotiate(startup, PgProtocolVersion.V3_2, out PgProtocolVersion version);

        Assert.NotNull(negotiation);
        Assert.Equal(PgProtocolVersion.V3_2.Code, negotiation.NewestProtocolVersion);
        Assert.Equal(["_pq_.x"], negotiation.UnrecognizedOptions.AsEnumerable());
        Assert.Equal(PgProtocolVersion.V3_2, version);
    }

    [Fact]
    public void Negotiation_for_3_2_when_the_server_offers_only_3_0_offers_3_0()
    {
        var startup = new StartupMessage(PgProtocolVersion.V3_2.Code, [new("user", "u")]);

        NegotiateProtocolVersion? negotiation = PgStartupHandshake.Negotiate(startup, PgProtocolVersion.V3_0, out PgProtocolVersion version);

        Assert.NotNull(negotiation);
        Assert.Equal(PgProtocolVersion.V3_0.Code, negotiation.NewestProtocolVersion);
        Assert.Empty(negotiation.UnrecognizedOptions);
        Assert.Equal(PgProtocolVersion.V3_0, version);
    }

    [Theory]
    [InlineData("3.2", "3.2")]
    [InlineData("3.0", "3.0")]
    [InlineData("3.0", "3.2")]
    public void No_negotiation_when_the_server_speaks_the_clients_version(string requested, string newest)
    {
        Assert.True(PgProtocolVersion.TryParse(requested, out PgProtocolVersion client));
        Assert.True(PgProtocolVersion.TryParse(newest, out PgProtocolVersion server));
        var startup = new StartupMessage(client.Code, [new("user", "u"), new("database", "d")]);

        Assert.Null(PgStartupHandshake.Negotiate(startup, server, out PgProtocolVersion version));
        Assert.Equal(client, version);
    }

    [Fact]
    public void Known_options_are_not_listed_and_unknown_ones_are_in_the_clients_order()
    {
        var startup = new StartupMessage(PgProtocolVersion.V3_2.Code, [new("_pq_.b", "1"), new("user", "u"), new("_pq_.known", "1"), new("_pq_.a", "1")]);

        NegotiateProtocolVersion? negotiation = PgStartupHandshake.Negotiate(startup, default, out PgProtocolVersion version, knownOptions: ["_pq_.known"]);
        Assert.Equal(["_pq_.b", "_pq_.a"], negotiation!.UnrecognizedOptions.AsEnumerable());
        Assert.Equal(PgProtocolVersion.Latest, version);

        var onlyKnown = new StartupMessage(PgProtocolVersion.V3_2.Code, [new("user", "u"), new("_pq_.known", "1")]);
        Assert.Null(PgStartupHandshake.Negotiate(onlyKnown, PgProtocolVersion.V3_2, out _, ["_pq_.known"]));
    }

    [Fact]
    public void Negotiation_is_for_a_version_of_the_servers_major()
    {
        var startup = new StartupMessage(PgProtocolVersion.V3_0.Code, [new("user", "u")]);
        Assert.Throws<ArgumentException>(() => PgStartupHandshake.Negotiate(new StartupMessage(PgProtocolVersion.From(4, 0).Code, []), PgProtocolVersion.V3_2, out _));
        Assert.Throws<ArgumentOutOfRangeException>(() => PgStartupHandshake.Negotiate(startup, PgProtocolVersion.From(2, 0), out _));
    }
}
