using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using PgSpec.Cli.Tests.RealServer;
using PgSpec.Client;
using PgSpec.Protocol;

namespace PgSpec.Server.Tests;

/// <summary>How TLS starts (SSLRequest, direct with ALPN) or is refused, and the encryption requests answered 'N'.</summary>
[Collection(PostgresCollection.Name)]
public sealed class TlsTests(PostgresFixture postgres) : IDisposable
{
    private readonly X509Certificate2 _certificate = Certificates.SelfSigned();

    public void Dispose() => _certificate.Dispose();

    [Fact]
    public async Task SSLRequest_is_answered_S_with_a_certificate_and_the_session_runs_under_TLS()
    {
        await using var server = TestServer.Start(o => o.TlsCertificate = _certificate);
        await using (RawConnection raw = await RawConnection.OpenAsync(server.Port))
        {
            await raw.SendAsync(new SSLRequest());
            Assert.Equal((byte)'S', await raw.ReceiveByteAsync());
            await raw.StartTlsAsync(alpn: null);
            IReadOnlyList<IBackendMessage> login = await raw.LoginAsync();
            Assert.IsType<AuthenticationOk>(login[0]);
        }

        await using PgFrontendSession client = await PgFrontendSession.ConnectAsync(server.Client() with { SslMode = PgSslMode.Require }, cancellationToken: Wait.Token);
        Assert.Equal("SSLRequest", client.Tls);
        Assert.Equal(_certificate.Thumbprint, client.ServerCertificate!.Thumbprint);
        Assert.Equal(2, (await client.QueryAsync("rows 2", cancellationToken: Wait.Token))[0].Rows.Count);
        Assert.All(server.Handlers, h => Assert.Equal("SSLRequest", h.Session.Tls));
    }

    [Fact]
    public async Task SSLRequest_is_answered_N_without_a_certificate_and_the_client_goes_on_in_the_clear()
    {
        await using var server = TestServer.Start();
        await using (RawConnection raw = await RawConnection.OpenAsync(server.Port))
        {
            await raw.SendAsync(new SSLRequest());
            Assert.Equal((byte)'N', await raw.ReceiveByteAsync());
            IReadOnlyList<IBackendMessage> login = await raw.LoginAsync();
            Assert.IsType<AuthenticationOk>(login[0]);
        }

        await using (PgFrontendSession prefer = await PgFrontendSession.ConnectAsync(server.Client() with { SslMode = PgSslMode.Prefer }, cancellationToken: Wait.Token))
        {
            Assert.Null(prefer.Tls);
            Assert.Single((await prefer.QueryAsync("rows 1", cancellationToken: Wait.Token))[0].Rows);
        }

        PgConnectionException required = await Assert.ThrowsAsync<PgConnectionException>(
            () => PgFrontendSession.ConnectAsync(server.Client() with { SslMode = PgSslMode.Require }, cancellationToken: Wait.Token));
        Assert.Contains("does not support SSL", required.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Direct_TLS_with_ALPN_postgresql_from_our_client()
    {
        await using var server = TestServer.Start(o => o.TlsCertificate = _certificate);
        await using PgFrontendSession client = await PgFrontendSession.ConnectAsync(
            server.Client() with { SslMode = PgSslMode.Require, SslNegotiation = PgSslNegotiation.Direct, ProtocolVersion = PgProtocolVersion.V3_2 },
            cancellationToken: Wait.Token);
        Assert.Equal("direct", client.Tls);
        Assert.Equal(2, (await client.QueryAsync("rows 2", cancellationToken: Wait.Token))[0].Rows.Count);
        Assert.Equal("direct", server.HandlerOf(client.ProcessId).Session.Tls);
    }

    [Fact]
    public async Task Direct_TLS_from_libpq_18()
    {
        await using var server = TestServer.Start(o => o.TlsCertificate = _certificate);
        ProcessOutput output = Psycopg.RunWithLibpq18($"host=127.0.0.1 port={server.Port} user=alice dbname=postgres sslmode=require sslnegotiation=direct max_protocol_version=3.2", "rows 2");
        Assert.True(output.ExitCode == 0, output.ToString());
        Assert.Equal("1|row 1\n2|row 2\n", output.Stdout);
        ScriptedHandler handler = Assert.Single(server.Handlers);
        Assert.Equal("direct", handler.Session.Tls);
        Assert.Equal(PgProtocolVersion.V3_2, handler.Session.ProtocolVersion);
    }

    [Fact]
    public async Task Direct_TLS_without_ALPN_is_refused_before_authentication()
    {
        await using var server = TestServer.Start(o => o.TlsCertificate = _certificate);
        await using RawConnection raw = await RawConnection.OpenAsync(server.Port);
        await raw.StartTlsAsync(alpn: null);
        await raw.StartupAsync(("user", "alice"));

        // As PostgreSQL 17 and later: the refusal is logged, and the connection closed without a word.
        Assert.Empty(await raw.ReceiveToEndAsync());
        Assert.Empty(server.Handlers);
    }

    [Fact]
    public async Task Direct_TLS_with_another_ALPN_protocol_fails_the_handshake()
    {
        await using var server = TestServer.Start(o => o.TlsCertificate = _certificate);
        await using RawConnection raw = await RawConnection.OpenAsync(server.Port);
        Exception? failure = await Record.ExceptionAsync(() => raw.StartTlsAsync(alpn: "http/1.1"));
        Assert.True(failure is AuthenticationException or IOException, $"the handshake should fail, not {failure?.ToString() ?? "succeed"}");
        Assert.Empty(server.Handlers);
        await Wait.UntilAsync(() => server.Server.ActiveSessions == 0, "the session has ended");
    }

    [Fact]
    public async Task Direct_TLS_without_a_certificate_is_closed()
    {
        await using var server = TestServer.Start();
        await using RawConnection raw = await RawConnection.OpenAsync(server.Port);
        Exception? failure = await Record.ExceptionAsync(() => raw.StartTlsAsync("postgresql"));
        Assert.True(failure is AuthenticationException or IOException, $"the handshake should fail, not {failure?.ToString() ?? "succeed"}");
        Assert.Empty(server.Handlers);
    }

    [Fact]
    public async Task GSSENCRequest_is_answered_N_and_the_session_goes_on()
    {
        await using var server = TestServer.Start(o => o.TlsCertificate = _certificate);
        await using (RawConnection raw = await RawConnection.OpenAsync(server.Port))
        {
            // libpq's order with gssencmode=prefer: GSSAPI first, then TLS.
            await raw.SendAsync(new GSSENCRequest());
            Assert.Equal((byte)'N', await raw.ReceiveByteAsync());
            await raw.SendAsync(new SSLRequest());
            Assert.Equal((byte)'S', await raw.ReceiveByteAsync());
            await raw.StartTlsAsync(alpn: null);
            Assert.IsType<AuthenticationOk>((await raw.LoginAsync())[0]);
        }

        await using PgFrontendSession client = await PgFrontendSession.ConnectAsync(server.Client() with { RequestGssEncryption = true }, cancellationToken: Wait.Token);
        Assert.Equal((byte)'N', client.GssEncryptionAnswer);
        Assert.Single((await client.QueryAsync("rows 1", cancellationToken: Wait.Token))[0].Rows);
    }

    [Fact]
    public async Task A_second_SSLRequest_gets_PostgreSQLs_error()
    {
        await using var server = TestServer.Start(o => o.TlsCertificate = _certificate);

        async Task<ErrorResponse> RequestTwiceAsync(int port)
        {
            await using RawConnection raw = await RawConnection.OpenAsync(port);
            await raw.SendAsync(new SSLRequest());
            Assert.Equal((byte)'S', await raw.ReceiveByteAsync());
            await raw.StartTlsAsync(alpn: null);
            await raw.SendAsync(new SSLRequest().ToArray());
            return Assert.IsType<ErrorResponse>(Assert.Single(await raw.ReceiveToEndAsync()));
        }

        ErrorResponse ours = await RequestTwiceAsync(server.Port);
        ErrorResponse theirs = await RequestTwiceAsync(postgres.Server.Port);
        Assert.Equal("FATAL", ours.Fields().Severity);
        Assert.Equal(theirs.Fields().SqlState, ours.Fields().SqlState);
        Assert.StartsWith("unsupported frontend protocol 1234.5679: server supports 3.0 to ", ours.Fields().Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Bytes_sent_after_SSLRequest_before_the_answer_are_refused()
    {
        await using var server = TestServer.Start(o => o.TlsCertificate = _certificate);
        await using RawConnection raw = await RawConnection.OpenAsync(server.Port);
        byte[] startup = new StartupMessage(PgProtocolVersion.V3_0.Code, [new("user", "alice")]).ToArray();
        await raw.SendAsync([.. new SSLRequest().ToArray(), .. startup]);

        // No 'S': the error comes at once, in the clear, and the connection ends.
        IReadOnlyList<IBackendMessage> messages = await raw.ReceiveToEndAsync();
        ErrorResponse error = Assert.IsType<ErrorResponse>(Assert.Single(messages));
        Assert.Equal(("FATAL", "FATAL", "08P01", "received unencrypted data after SSL request"), error.Fields().Core());
        Assert.Empty(server.Handlers);
    }
}
