using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using PgSpec.Cli.Tests.RealServer;
using PgSpec.Servers;

namespace PgSpec.Proxy.Tests;

/// <summary>TLS terminated at the proxy, towards plain or TLS servers.</summary>
[Collection(ServerCollection.Name)]
public class TlsTests
{
    private readonly ServerFixture _servers;

    public TlsTests(ServerFixture servers) => _servers = servers;

    [Theory]
    [InlineData(15, false)]
    [InlineData(18, false)]
    [InlineData(18, true)]
    public async Task Psql_WithSslmodeRequire_TalksTlsToTheProxy(int major, bool upstreamTls)
    {
        PgServer server = await _servers.Server(major);
        using X509Certificate2 certificate = SelfSigned();
        await using var proxy = new ProxyHarness(server, options => options with { TlsCertificate = certificate, UpstreamTls = upstreamTls });
        ProcessOutput output = Psql(proxy, server.Role(PgAuthMethod.Md5), "SELECT 'over tls' AS answer;\n", "sslmode=require");

        Assert.True(output.ExitCode == 0, output.ToString());
        Assert.Contains("over tls", output.Stdout);
        await proxy.WaitIdleAsync();
        Assert.StartsWith("F\t8\tSSLRequest\t 1234 5679\nB\t1\tSSLResponse\t S\nF\t", proxy.Trace, StringComparison.Ordinal);
        Assert.Contains("\tPasswordMessage\t", proxy.Trace);
    }

    [Fact]
    public async Task Psql_WithoutAProxyCertificate_GetsNoAndCanGoOnInPlainText()
    {
        PgServer server = await _servers.Server(18);
        await using var proxy = new ProxyHarness(server);
        ProcessOutput output = Psql(proxy, server.Role(PgAuthMethod.Trust), "SELECT 'plain' AS answer;\n", "sslmode=prefer");

        Assert.True(output.ExitCode == 0, output.ToString());
        Assert.Contains("plain", output.Stdout);
        await proxy.WaitIdleAsync();
        Assert.StartsWith("F\t8\tSSLRequest\t 1234 5679\nB\t1\tSSLResponse\t N\nF\t", proxy.Trace, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(15)]
    [InlineData(18)]
    public async Task Scram_FromAClientWithoutTlsThroughUpstreamTls_IsOfferedWithoutPlusAndAuthenticates(int major)
    {
        PgServer server = await _servers.Server(major);
        await using var proxy = new ProxyHarness(server, options => options with { UpstreamTls = true });

        // libpq's defaults otherwise (channel_binding=prefer): a -PLUS offer over a plain connection is refused by libpq itself.
        ProcessOutput output = Psql(proxy, server.Role(PgAuthMethod.ScramSha256), "SELECT 'scram over upstream tls' AS answer;\n", "sslmode=disable");

        Assert.True(output.ExitCode == 0, output.ToString());
        Assert.Contains("scram over upstream tls", output.Stdout);
        await proxy.WaitIdleAsync();
        Assert.Contains("B\t23\tAuthenticationSASL\t \"SCRAM-SHA-256\" \"\"\n", proxy.Trace);
        Assert.DoesNotContain("SCRAM-SHA-256-PLUS", proxy.Trace);
        Assert.Equal(0, proxy.Proxy.Statistics.Failed);
    }

    [Theory]
    [InlineData(15)]
    [InlineData(18)]
    public async Task Scram_FromATlsClientWithLibpqDefaults_AuthenticatesThroughThePasswordRelay(int major)
    {
        PgServer server = await _servers.Server(major);
        using X509Certificate2 certificate = SelfSigned();
        await using var proxy = new ProxyHarness(server, options => options with { TlsCertificate = certificate, UpstreamTls = true }, showSecrets: false);
        PgRole role = server.Role(PgAuthMethod.ScramSha256);

        // sslmode=prefer and channel_binding=prefer, libpq's defaults: the client has TLS to the proxy and would bind.
        ProcessOutput output = Psql(proxy, role, "SELECT 'relayed' AS answer;\n", "sslmode=prefer");

        Assert.True(output.ExitCode == 0, output.ToString());
        Assert.Contains("relayed", output.Stdout);
        await proxy.WaitIdleAsync();
        Assert.Contains("B\t8\tAuthenticationCleartextPassword\n", proxy.Trace);
        Assert.Contains("\tPasswordMessage\t \"********\"\n", proxy.Trace);
        Assert.DoesNotContain("AuthenticationSASL", proxy.Trace);
        Assert.DoesNotContain(role.Password, proxy.Trace);
        Assert.Contains("SCRAM-SHA-256-PLUS on its behalf", proxy.Log);
        Assert.Equal(0, proxy.Proxy.Statistics.Failed);
    }

    [Fact]
    public async Task Scram_ThroughThePasswordRelayWithAWrongPassword_GivesTheServersError()
    {
        PgServer server = await _servers.Server(18);
        using X509Certificate2 certificate = SelfSigned();
        await using var proxy = new ProxyHarness(server, options => options with { TlsCertificate = certificate, UpstreamTls = true });
        PgRole role = server.Role(PgAuthMethod.ScramSha256) with { Password = "not the password" };

        ProcessOutput output = Psql(proxy, role, "SELECT 1;\n", "sslmode=require");

        Assert.NotEqual(0, output.ExitCode);
        Assert.Contains("password authentication failed", output.Stderr);
        await proxy.WaitIdleAsync();
        Assert.Equal(0, proxy.Proxy.Statistics.Failed);
    }

    [Fact]
    public async Task Scram_WithTheRefuseFallback_GivesABindingTlsClientAClearFatalAndANonBindingOneAccess()
    {
        PgServer server = await _servers.Server(18);
        using X509Certificate2 certificate = SelfSigned();
        await using var proxy = new ProxyHarness(server, options => options with { TlsCertificate = certificate, UpstreamTls = true, ChannelBindingFallback = ProxyChannelBindingFallback.Refuse });
        PgRole role = server.Role(PgAuthMethod.ScramSha256);

        ProcessOutput binding = Psql(proxy, role, "SELECT 1;\n", "sslmode=require");
        ProcessOutput disabled = Psql(proxy, role, "SELECT 'without binding' AS answer;\n", "sslmode=require channel_binding=disable");

        Assert.NotEqual(0, binding.ExitCode);
        Assert.Contains("SCRAM channel binding cannot pass through pgspec proxy", binding.Stderr);
        Assert.Contains("channel_binding=disable", binding.Stderr);
        Assert.True(disabled.ExitCode == 0, disabled.ToString());
        Assert.Contains("without binding", disabled.Stdout);
        await proxy.WaitIdleAsync();
        Assert.Contains("\tAuthenticationSASL\t \"SCRAM-SHA-256\" \"\"\n", proxy.Trace);
        Assert.DoesNotContain("SCRAM-SHA-256-PLUS", proxy.Trace);
    }

    [Fact]
    public async Task ScramPlus_WhenTheProxyHasTheServersOwnCertificate_BindsThroughIt()
    {
        PgServer server = await _servers.Server(18);
        using X509Certificate2 certificate = X509Certificate2.CreateFromPemFile(Path.Combine(server.DataDirectory!, "server.crt"), Path.Combine(server.DataDirectory!, "server.key"));
        await using var proxy = new ProxyHarness(server, options => options with { TlsCertificate = certificate, UpstreamTls = true });

        ProcessOutput output = Psql(proxy, server.Role(PgAuthMethod.ScramSha256), "SELECT 'bound through' AS answer;\n", "sslmode=require channel_binding=require");

        Assert.True(output.ExitCode == 0, output.ToString());
        Assert.Contains("bound through", output.Stdout);
        await proxy.WaitIdleAsync();
        Assert.Contains("\tAuthenticationSASL\t \"SCRAM-SHA-256-PLUS\"", proxy.Trace);
        Assert.Contains("\tSASLInitialResponse\t \"SCRAM-SHA-256-PLUS\"", proxy.Trace);
    }

    [Fact]
    public async Task DirectTls_FromLibpq18_IsTerminated()
    {
        PgServer server = await _servers.Server(18);
        using X509Certificate2 certificate = SelfSigned();
        await using var proxy = new ProxyHarness(server, options => options with { TlsCertificate = certificate });
        string script = Path.Combine(AppContext.BaseDirectory, "Scripts", "query.py");
        var environment = new Dictionary<string, string> { ["PSYCOPG_IMPL"] = "python", ["LD_LIBRARY_PATH"] = Libpq18.LibraryDirectory };

        ProcessOutput output = ExternalProcess.Run(Libpq18.Python, [script, $"host=127.0.0.1 port={proxy.PortText} user={server.Role(PgAuthMethod.Trust).Name} dbname=postgres sslmode=require sslnegotiation=direct", "SELECT 'direct'"], environment: environment);

        Assert.True(output.ExitCode == 0, output.ToString());
        Assert.Contains("direct", output.Stdout);
        await proxy.WaitIdleAsync();
        Assert.StartsWith("F\t", proxy.Trace, StringComparison.Ordinal);
        Assert.DoesNotContain("SSLRequest", proxy.Trace);
        Assert.Contains("\tStartupMessage\t", proxy.Trace);
    }

    [Theory]
    [InlineData(15)]
    [InlineData(18)]
    public async Task ScramPlus_ThroughTlsPassthrough_Authenticates(int major)
    {
        PgServer server = await _servers.Server(major);
        await using var proxy = new ProxyHarness(server, options => options with { TlsPassthrough = true });
        ProcessOutput output = Psql(proxy, server.Role(PgAuthMethod.ScramSha256), "SELECT 'bound to the channel' AS answer;\n", "sslmode=require channel_binding=require");

        Assert.True(output.ExitCode == 0, output.ToString());
        Assert.Contains("bound to the channel", output.Stdout);
        await proxy.WaitIdleAsync();

        // Only the request and the server's answer are readable; the rest went through encrypted.
        Assert.Equal("F\t8\tSSLRequest\t 1234 5679\nB\t1\tSSLResponse\t S\n", proxy.Trace);
        Assert.Contains("TLS passed through", proxy.Log);
        Assert.True(proxy.Proxy.Statistics.BackendBytes > 1000, $"{proxy.Proxy.Statistics.BackendBytes} bytes from the server");
    }

    [Fact]
    public async Task DirectTls_ThroughTlsPassthrough_ReachesTheServer()
    {
        PgServer server = await _servers.Server(18);
        await using var proxy = new ProxyHarness(server, options => options with { TlsPassthrough = true });
        string script = Path.Combine(AppContext.BaseDirectory, "Scripts", "query.py");
        var environment = new Dictionary<string, string> { ["PSYCOPG_IMPL"] = "python", ["LD_LIBRARY_PATH"] = Libpq18.LibraryDirectory };

        ProcessOutput output = ExternalProcess.Run(Libpq18.Python, [script, $"host=127.0.0.1 port={proxy.PortText} user={server.Role(PgAuthMethod.Trust).Name} dbname=postgres sslmode=require sslnegotiation=direct", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"], environment: environment);

        Assert.True(output.ExitCode == 0, output.ToString());
        Assert.Contains("True", output.Stdout);
        await proxy.WaitIdleAsync();
        Assert.Equal("", proxy.Trace);
        Assert.Contains("TLS passed through", proxy.Log);
    }

    [Fact]
    public async Task PlainClient_ThroughTlsPassthrough_IsStillDecodedAndTraced()
    {
        PgServer server = await _servers.Server(18);
        await using var proxy = new ProxyHarness(server, options => options with { TlsPassthrough = true });
        ProcessOutput output = Psql(proxy, server.Role(PgAuthMethod.ScramSha256), "SELECT 'in the clear' AS answer;\n", "sslmode=disable");

        Assert.True(output.ExitCode == 0, output.ToString());
        Assert.Contains("in the clear", output.Stdout);
        await proxy.WaitIdleAsync();
        Assert.Contains("\tStartupMessage\t", proxy.Trace);
        Assert.Contains("\tDataRow\t 1 12 'in the clear'", proxy.Trace);
    }

    [Theory]
    [InlineData(15)]
    [InlineData(18)]
    public async Task Cancel_ThroughTlsPassthrough_ReachesTheServerWithItsOwnKey(int major)
    {
        PgServer server = await _servers.Server(major);
        await using var proxy = new ProxyHarness(server, options => options with { TlsPassthrough = true });
        string script = Path.Combine(AppContext.BaseDirectory, "Scripts", "cancel_session.py");
        PgRole role = server.Role(PgAuthMethod.Trust);

        ProcessOutput client = ExternalProcess.Run(Libpq18.Python, [script, $"host=127.0.0.1 port={proxy.PortText} user={role.Name} dbname=postgres sslmode=require"]);

        Assert.True(client.ExitCode == 0, client.ToString());
        Assert.Contains("cancelled", client.Stdout);
        await proxy.WaitIdleAsync();
        Assert.Contains("TLS passed through", proxy.Log);
    }

    internal static X509Certificate2 SelfSigned()
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(System.Net.IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
    }

    /// <summary>Runs SQL with psql through the proxy.</summary>
    private static ProcessOutput Psql(ProxyHarness proxy, PgRole role, string sql, string extra)
    {
        string script = Path.Combine(Path.GetTempPath(), "pgspec-proxy-tls-" + Guid.NewGuid().ToString("N") + ".sql");
        File.WriteAllText(script, sql);
        try
        {
            return ClientTests.Psql("127.0.0.1", proxy.PortText, role, script, extra);
        }
        finally
        {
            File.Delete(script);
        }
    }
}
