using System.Globalization;
using PgSpec.Cli.Tests.RealServer;
using PgSpec.Servers;

namespace PgSpec.Proxy.Tests;

/// <summary>Real clients through the proxy give what they give on a direct connection.</summary>
[Collection(ServerCollection.Name)]
public class ClientTests
{
    private const string PsqlScript = """
        SELECT 1 AS one, 'two' AS two, NULL AS nothing;
        SELECT g, repeat('x', g) FROM generate_series(1, 5) g;
        SELECT 1/0;
        BEGIN;
        CREATE TEMP TABLE t (a int, b text);
        COPY t FROM STDIN;
        1	one
        2	\N
        \.
        COPY t TO STDOUT;
        SELECT count(*), string_agg(b, ',') FROM t;
        ROLLBACK;
        DO $$ BEGIN RAISE NOTICE 'a notice'; END $$;
        SELECT length(repeat('y', 300000));
        SELECT md5(string_agg(repeat('z', 1000), '')) FROM generate_series(1, 2000);
        PREPARE p(int, text) AS SELECT $1 + 1, $2;
        EXECUTE p(41, 'hello');
        """;

    private readonly ServerFixture _servers;

    public ClientTests(ServerFixture servers) => _servers = servers;

    public static TheoryData<int, PgAuthMethod> PsqlCases
    {
        get
        {
            var cases = new TheoryData<int, PgAuthMethod>();
            foreach (int major in new[] { 15, 18 })
            {
                foreach (PgAuthMethod method in Enum.GetValues<PgAuthMethod>())
                {
                    cases.Add(major, method);
                }
            }

            return cases;
        }
    }

    public static TheoryData<int, string> PgbenchCases
    {
        get
        {
            var cases = new TheoryData<int, string>();
            foreach (int major in new[] { 15, 18 })
            {
                foreach (string mode in new[] { "simple", "extended", "prepared" })
                {
                    cases.Add(major, mode);
                }
            }

            return cases;
        }
    }

    [Theory]
    [MemberData(nameof(PsqlCases))]
    public async Task Psql_ThroughTheProxy_PrintsWhatADirectConnectionPrints(int major, PgAuthMethod method)
    {
        PgServer server = await _servers.Server(major);
        PgRole role = server.Role(method);
        await using var proxy = new ProxyHarness(server);
        string script = Path.Combine(Path.GetTempPath(), "pgspec-proxy-psql-" + Guid.NewGuid().ToString("N") + ".sql");
        await File.WriteAllTextAsync(script, PsqlScript.Replace("\r\n", "\n") + "\n");
        try
        {
            ProcessOutput direct = Psql(server.Host, server.Port.ToString(CultureInfo.InvariantCulture), role, script);
            ProcessOutput proxied = Psql("127.0.0.1", proxy.PortText, role, script);

            Assert.Contains("hello", direct.Stdout);
            Assert.Contains("division by zero", direct.Stderr);
            Assert.Equal(direct.ToString(), proxied.ToString());
            await proxy.WaitIdleAsync();
            Assert.Contains("F\t", proxy.Trace);
            Assert.Contains("B\t", proxy.Trace);
            Assert.Equal(0, proxy.Proxy.Statistics.Failed);
        }
        finally
        {
            File.Delete(script);
        }
    }

    [Theory]
    [MemberData(nameof(PgbenchCases))]
    public async Task Pgbench_ThroughTheProxy_ProcessesEveryTransactionAsDirectly(int major, string mode)
    {
        PgServer server = await _servers.Server(major);
        PgRole role = server.Role(PgAuthMethod.Trust);
        await using var proxy = new ProxyHarness(server, options => options with { Trace = null });

        ProcessOutput direct = Pgbench(server.Host, server.Port.ToString(CultureInfo.InvariantCulture), role, mode);
        ProcessOutput proxied = Pgbench("127.0.0.1", proxy.PortText, role, mode);

        Assert.True(direct.ExitCode == 0, direct.ToString());
        Assert.True(proxied.ExitCode == 0, proxied.ToString());
        Assert.Equal(ProcessedLine(direct), ProcessedLine(proxied));
        Assert.Contains("number of transactions actually processed: 100/100", proxied.Stdout);
        Assert.Contains("number of failed transactions: 0 ", proxied.Stdout);
        await proxy.WaitIdleAsync();
        Assert.True(proxy.Proxy.Statistics.Accepted >= 4, proxy.Proxy.Statistics.ToString());
        Assert.Equal(0, proxy.Proxy.Statistics.Failed);
    }

    [Theory]
    [InlineData(ProxySocketEngine.Epoll, true)]
    [InlineData(ProxySocketEngine.Epoll, false)]
    [InlineData(ProxySocketEngine.DotNet, true)]
    [InlineData(ProxySocketEngine.DotNet, false)]
    public async Task PsqlAndPgbench_ThroughEachSocketEngine_TracedOrNot_GiveWhatADirectConnectionGives(ProxySocketEngine engine, bool traced)
    {
        PgServer server = await _servers.Server(15);
        PgRole role = server.Role(PgAuthMethod.ScramSha256);
        await using var proxy = new ProxyHarness(server, options => options with { SocketEngine = engine, Trace = traced ? options.Trace : null });
        string script = Path.Combine(Path.GetTempPath(), "pgspec-proxy-psql-" + Guid.NewGuid().ToString("N") + ".sql");
        await File.WriteAllTextAsync(script, PsqlScript.Replace("\r\n", "\n") + "\n");
        try
        {
            ProcessOutput direct = Psql(server.Host, server.Port.ToString(CultureInfo.InvariantCulture), role, script);
            ProcessOutput proxied = Psql("127.0.0.1", proxy.PortText, role, script);
            ProcessOutput bench = Pgbench("127.0.0.1", proxy.PortText, server.Role(PgAuthMethod.Trust), "prepared");

            Assert.Equal(engine, proxy.Proxy.SocketEngine);
            Assert.Contains("hello", direct.Stdout);
            Assert.Equal(direct.ToString(), proxied.ToString());
            Assert.True(bench.ExitCode == 0, bench.ToString());
            Assert.Contains("number of transactions actually processed: 100/100", bench.Stdout);
            await proxy.WaitIdleAsync();
            Assert.Equal(traced, proxy.Trace.Contains("\tRowDescription\t", StringComparison.Ordinal));
            Assert.Equal(0, proxy.Proxy.Statistics.Failed);
        }
        finally
        {
            File.Delete(script);
        }
    }

    [Theory]
    [InlineData(15)]
    [InlineData(18)]
    public async Task ProxyTrace_OfAPsycopgSession_EqualsLibpqsOwnTraceLineForLine(int major)
    {
        PgServer server = await _servers.Server(major);
        string libpq = Libpq18.LibraryDirectory;
        await using var proxy = new ProxyHarness(server);
        string trace = Path.Combine(Path.GetTempPath(), "pgspec-proxy-libpq-" + Guid.NewGuid().ToString("N") + ".trace");
        try
        {
            string script = Path.Combine(AppContext.BaseDirectory, "Scripts", "libpq_session.py");
            var environment = new Dictionary<string, string> { ["PSYCOPG_IMPL"] = "python", ["LD_LIBRARY_PATH"] = libpq, ["PGCONNECT_TIMEOUT"] = "30" };
            ProcessOutput client = ExternalProcess.Run(Libpq18.Python, [script, "127.0.0.1", proxy.PortText, server.Role(PgAuthMethod.Trust).Name, "", "full", trace], environment: environment);
            Assert.True(client.ExitCode == 0, client.ToString());
            await proxy.WaitIdleAsync();

            string[] expected = Lines(await File.ReadAllTextAsync(trace));
            string[] actual = Lines(proxy.Trace);

            Assert.Contains(expected, line => line.Contains("\tCopyData\t", StringComparison.Ordinal));
            Assert.Contains(expected, line => line.Contains("\tErrorResponse\t", StringComparison.Ordinal));
            Assert.Equal(string.Join('\n', expected), string.Join('\n', actual));
        }
        finally
        {
            File.Delete(trace);
        }
    }

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    private static string ProcessedLine(ProcessOutput output)
        => output.Stdout.Split('\n').Single(line => line.StartsWith("number of transactions actually processed", StringComparison.Ordinal));

    internal static ProcessOutput Psql(string host, string port, PgRole role, string script, string extra = "sslmode=disable")
        => ExternalProcess.Run("/usr/bin/psql", ["-X", "-A", "-v", "ON_ERROR_STOP=0", "-f", script, $"host={host} port={port} user={role.Name} dbname=postgres {extra}"], environment: Environment(role));

    private static ProcessOutput Pgbench(string host, string port, PgRole role, string mode)
        => ExternalProcess.Run("/usr/bin/pgbench", ["-n", "-M", mode, "-c", "4", "-j", "2", "-t", "25", "-h", host, "-p", port, "-U", role.Name, "postgres"], environment: Environment(role));

    internal static Dictionary<string, string> Environment(PgRole role) => new()
    {
        ["PGPASSWORD"] = role.Password,
        ["PGCONNECT_TIMEOUT"] = "30",
        ["PGAPPNAME"] = "pgspec-test",
    };
}
