using System.Text;
using PgSpec.Protocol;
using PgSpec.Client;
using PgSpec.Servers;

namespace PgSpec.Integration.Tests;

[Collection(ServerCollection.Name)]
public class SessionTests(ServerFixture fixture)
{
    private async Task<PgFrontendSession> ConnectAsync(int major, PgAuthMethod method, Func<PgConnectOptions, PgConnectOptions>? adjust = null, List<PgTraffic>? traffic = null)
    {
        PgConnectOptions options = await fixture.OptionsAsync(major, method);
        return await PgFrontendSession.ConnectAsync(adjust is null ? options : adjust(options), traffic is null ? null : t => { lock (traffic) { traffic.Add(t); } });
    }

    [Theory]
    [InlineData(15, PgAuthMethod.Trust, "trust")]
    [InlineData(15, PgAuthMethod.Password, "cleartext")]
    [InlineData(15, PgAuthMethod.Md5, "md5")]
    [InlineData(15, PgAuthMethod.ScramSha256, "SCRAM-SHA-256")]
    [InlineData(18, PgAuthMethod.Trust, "trust")]
    [InlineData(18, PgAuthMethod.Password, "cleartext")]
    [InlineData(18, PgAuthMethod.Md5, "md5")]
    [InlineData(18, PgAuthMethod.ScramSha256, "SCRAM-SHA-256")]
    public async Task Connect_EachAuthenticationMethod_AuthenticatesAndQueries(int major, PgAuthMethod method, string expected)
    {
        await using PgFrontendSession session = await ConnectAsync(major, method);
        Assert.Equal(expected, session.AuthenticationMethod);
        IReadOnlyList<PgResult> results = await session.QueryAsync("SELECT 1 AS a, current_user");
        Assert.Equal("1", results[0].Text(0, 0));
        Assert.StartsWith(major.ToString(System.Globalization.CultureInfo.InvariantCulture), session.Parameters["server_version"], StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(15)]
    [InlineData(18)]
    public async Task Connect_WrongPassword_Surfaces28P01(int major)
    {
        PgServerException e = await Assert.ThrowsAsync<PgServerException>(() => ConnectAsync(major, PgAuthMethod.ScramSha256, o => o with { Password = "wrong" }));
        Assert.Equal("28P01", e.SqlState);
        Assert.Equal("FATAL", e.Fields.Severity);
    }

    [Theory]
    [InlineData(15)]
    [InlineData(18)]
    public async Task Connect_VerifyFullWithScram_BindsTheChannel(int major)
    {
        await using PgFrontendSession session = await ConnectAsync(major, PgAuthMethod.ScramSha256, o => o with { SslMode = PgSslMode.VerifyFull, Host = "127.0.0.1" });
        Assert.Equal("SSLRequest", session.Tls);
        Assert.Equal("SCRAM-SHA-256-PLUS", session.AuthenticationMethod);
    }

    [Fact]
    public async Task Connect_Protocol32AgainstPostgres18_Gets32ByteKeyAndCancels()
    {
        var traffic = new List<PgTraffic>();
        await using PgFrontendSession session = await ConnectAsync(18, PgAuthMethod.Trust, o => o with { ProtocolVersion = PgProtocolVersion.V3_2 }, traffic);
        Assert.Equal(PgProtocolVersion.V3_2, session.ProtocolVersion);
        Assert.Equal(32, session.SecretKey.Length);
        Task<IReadOnlyList<PgResult>> sleeping = session.QueryAsync("SELECT pg_sleep(30)");
        await Activity.UntilRunningAsync(await fixture.Server(18), session, "SELECT pg_sleep(30)");
        await session.CancelAsync();
        PgServerException e = await Assert.ThrowsAsync<PgServerException>(() => sleeping);
        Assert.Equal("57014", e.SqlState);
        Assert.Contains(traffic, t => t.Name == "CancelRequest" && t.Raw.Length == 12 + 32);
    }

    [Fact]
    public async Task Connect_Protocol32AgainstPostgres15_NegotiatesDownTo30()
    {
        await using PgFrontendSession session = await ConnectAsync(15, PgAuthMethod.Trust, o => o with { ProtocolVersion = PgProtocolVersion.V3_2, Parameters = [new("_pq_.pgspec_test", "1")] });
        Assert.Equal(PgProtocolVersion.V3_0, session.ProtocolVersion);
        Assert.NotNull(session.Negotiation);
        Assert.Contains("_pq_.pgspec_test", session.Negotiation!.UnrecognizedOptions);
        Assert.Equal(4, session.SecretKey.Length);
    }

    [Fact]
    public async Task Connect_Protocol32RequiredAgainstPostgres15_FailsClearly()
    {
        PgConnectionException e = await Assert.ThrowsAsync<PgConnectionException>(() => ConnectAsync(15, PgAuthMethod.Trust, o => o with { ProtocolVersion = PgProtocolVersion.V3_2, RequireProtocolVersion = true }));
        Assert.Contains("supports protocol 3.0 at most, but 3.2 is required", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Connect_DirectTlsAgainstPostgres15_FailsClearly()
    {
        PgConnectionException e = await Assert.ThrowsAsync<PgConnectionException>(() => ConnectAsync(15, PgAuthMethod.ScramSha256, o => o with { SslMode = PgSslMode.Require, SslNegotiation = PgSslNegotiation.Direct, ConnectTimeout = TimeSpan.FromSeconds(10) }));
        Assert.Contains("TLS handshake failed", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Connect_UnixSocket_Authenticates()
    {
        PgServer server = await fixture.Server(18);
        await using PgFrontendSession session = await ConnectAsync(18, PgAuthMethod.Trust, o => o with { UnixSocketPath = server.SocketPath });
        IReadOnlyList<PgResult> results = await session.QueryAsync("SELECT inet_server_addr() IS NULL");
        Assert.Equal("t", results[0].Text(0, 0));
    }

    [Theory]
    [InlineData(15)]
    [InlineData(18)]
    public async Task Query_ExtendedWithNullAndBinary_RoundTrips(int major)
    {
        await using PgFrontendSession session = await ConnectAsync(major, PgAuthMethod.Trust);
        PgResult result = await session.ExecuteAsync("SELECT $1::int4 + 1, $2::text IS NULL", [Encoding.ASCII.GetBytes("41"), null]);
        Assert.Equal("42", result.Text(0, 0));
        Assert.Equal("t", result.Text(0, 1));
        Assert.Equal("SELECT 1", result.CommandTag);
    }
}
