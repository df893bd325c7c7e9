using System.Globalization;
using System.Text;
using PgSpec.Cli.Tests.RealServer;
using PgSpec.Protocol;
using PgSpec.Servers;

namespace PgSpec.Proxy.Tests;

/// <summary>Unix-domain sockets on both sides, the message size limits, the libpq trace of logins, shutdown.</summary>
[Collection(ServerCollection.Name)]
public class EndpointAndLimitTests
{
    private readonly ServerFixture _servers;

    public EndpointAndLimitTests(ServerFixture servers) => _servers = servers;

    [Fact]
    public async Task Psql_OverUnixSocketsOnBothSides_Works()
    {
        PgServer server = await _servers.Server(15);
        string folder = Directory.CreateTempSubdirectory("pgspec-proxy-sock-").FullName;
        try
        {
            ProxyEndpoint listen = ProxyEndpoint.Parse(Path.Combine(folder, ".s.PGSQL.5999"));
            await using var proxy = new ProxyHarness(server, options => options with { Listen = listen, Upstream = ProxyEndpoint.Parse("unix:" + server.SocketPath) });
            string script = Path.Combine(folder, "q.sql");
            await File.WriteAllTextAsync(script, "SELECT 'over unix sockets' AS answer;\n");

            ProcessOutput output = ClientTests.Psql(folder, "5999", server.Role(PgAuthMethod.Trust), script);

            Assert.True(output.ExitCode == 0, output.ToString());
            Assert.Contains("over unix sockets", output.Stdout);
            await proxy.WaitIdleAsync();
            Assert.Contains("\tStartupMessage\t", proxy.Trace);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public async Task DataRow_OverTheLimit_ClosesTheConnectionWithFatal08P01()
    {
        PgServer server = await _servers.Server(18);
        await using var proxy = new ProxyHarness(server, options => options with { Limits = PgLimits.Default.With(PgDirection.Backend, (byte)'D', 1000) });
        using RawClient client = await RobustnessTests.LoggedInAsync(proxy, server);

        await client.SendAsync(RawClient.Message('Q', "SELECT repeat('x', 5000)\0"));
        (char Type, byte[] Body)? error = await client.ReadUntilAsync('E');

        Assert.NotNull(error);
        string fields = Encoding.UTF8.GetString(error.Value.Body);
        Assert.Contains("08P01", fields);
        Assert.Contains("over the limit of 1000", fields);
        Assert.True(await client.ClosedAsync());
    }

    [Theory]
    [InlineData("password", PgAuthMethod.Password)]
    [InlineData("md5", PgAuthMethod.Md5)]
    [InlineData("scram-sha-256", PgAuthMethod.ScramSha256)]
    public async Task ProxyTrace_OfAPsycopgLogin_EqualsLibpqsOwnTrace(string name, PgAuthMethod method)
    {
        PgServer server = await _servers.Server(18);
        PgRole role = server.Role(method);
        await using var proxy = new ProxyHarness(server);
        string trace = Path.Combine(Path.GetTempPath(), "pgspec-proxy-login-" + Guid.NewGuid().ToString("N") + ".trace");
        try
        {
            string script = Path.Combine(AppContext.BaseDirectory, "Scripts", "libpq_session.py");
            var environment = new Dictionary<string, string> { ["PSYCOPG_IMPL"] = "python", ["LD_LIBRARY_PATH"] = Libpq18.LibraryDirectory, ["PGCONNECT_TIMEOUT"] = "30" };
            ProcessOutput client = ExternalProcess.Run(Libpq18.Python, [script, "127.0.0.1", proxy.PortText, role.Name, role.Password, "login", trace], environment: environment);
            Assert.True(client.ExitCode == 0, name + ": " + client);
            await proxy.WaitIdleAsync();

            string expected = await File.ReadAllTextAsync(trace);

            Assert.Contains(method == PgAuthMethod.ScramSha256 ? "\tSASLResponse\t" : "\tPasswordMessage\t", expected);
            Assert.Equal(expected, proxy.Trace);
        }
        finally
        {
            File.Delete(trace);
        }
    }

    [Fact]
    public async Task Shutdown_ClosesConnectionsStillOpenAfterTheGrace()
    {
        PgServer server = await _servers.Server(15);
        var harness = new ProxyHarness(server, options => options with { ShutdownGrace = TimeSpan.FromMilliseconds(200) });
        using RawClient open = await RobustnessTests.LoggedInAsync(harness, server);

        await harness.DisposeAsync();

        Assert.True(await open.ClosedAsync());
        Assert.Equal(0, harness.Proxy.ActiveConnections);
        Assert.Contains("closed by shutdown", harness.Log);
    }
}
