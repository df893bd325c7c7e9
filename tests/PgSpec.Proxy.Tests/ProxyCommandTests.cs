using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using PgSpec.Cli;
using PgSpec.Cli.Tests.RealServer;
using PgSpec.Servers;

namespace PgSpec.Proxy.Tests;

/// <summary>The <c>pgspec proxy</c> command, as a process and in-process.</summary>
[Collection(ServerCollection.Name)]
public class ProxyCommandTests
{
    private readonly ServerFixture _servers;

    public ProxyCommandTests(ServerFixture servers) => _servers = servers;

    [Fact]
    public async Task ProxyProcess_TracesToStandardOutputHidesThePasswordAndSummarizesOnSigterm()
    {
        PgServer server = await _servers.Server(18);
        PgRole role = server.Role(PgAuthMethod.Md5);
        int port = FreePort();

        (ProcessOutput proxy, ProcessOutput psql) = await RunWithProxyAsync(
            ["--listen", "127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture), "--upstream", $"{server.Host}:{server.Port}", "--trace", "-", "--connection-ids", "--regress"],
            port,
            role);

        Assert.True(psql.ExitCode == 0, psql.ToString());
        Assert.Equal(0, proxy.ExitCode);
        Assert.Contains("1\tF\t", proxy.Stdout);
        Assert.Contains("1\tF\t40\tPasswordMessage\t \"********\"", proxy.Stdout); // "md5" and 32 hex digits
        Assert.DoesNotContain(role.Password, proxy.Stdout);
        Assert.Contains("1\tB\t5\tReadyForQuery\t I", proxy.Stdout);
        Assert.Contains("connections: 1 accepted, 1 closed, 0 failed", proxy.Stderr);
        Assert.Contains("sockets: epoll, ", proxy.Stderr);
    }

    [Fact]
    public async Task ProxyProcess_WritesJsonLinesWithConnectionIdsAndRedactedSaslData()
    {
        PgServer server = await _servers.Server(15);
        PgRole role = server.Role(PgAuthMethod.ScramSha256);
        int port = FreePort();
        string trace = Path.Combine(Path.GetTempPath(), "pgspec-proxy-json-" + Guid.NewGuid().ToString("N") + ".jsonl");
        try
        {
            (ProcessOutput proxy, ProcessOutput psql) = await RunWithProxyAsync(
                ["--listen", "127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture), "--upstream", $"{server.Host}:{server.Port}", "--trace", trace, "--format", "json", "--connection-ids", "--io-threads", "2"],
                port,
                role);

            Assert.True(psql.ExitCode == 0, psql.ToString());
            Assert.Equal(0, proxy.ExitCode);
            JsonElement[] lines = File.ReadAllLines(trace).Select(line => JsonDocument.Parse(line).RootElement).ToArray();
            Assert.All(lines, line => Assert.Equal(1, line.GetProperty("connection").GetInt64()));
            JsonElement sasl = Assert.Single(lines, line => line.GetProperty("name").GetString() == "SASLInitialResponse");
            Assert.True(sasl.GetProperty("fields").GetProperty("redacted").GetBoolean());
            Assert.Contains(lines, line => line.GetProperty("name").GetString() == "DataRow");
            Assert.Contains("sockets: epoll, 2 event threads", proxy.Stderr);
        }
        finally
        {
            File.Delete(trace);
        }
    }

    [Theory]
    [InlineData("proxy", "--listen", "127.0.0.1:6432")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "nowhere")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--tls-cert", "a.pem")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--format", "json", "--regress")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--tls-passthrough", "--upstream-tls")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--tls-passthrough", "--tls-cert", "a.pem", "--tls-key", "a.key")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--stream-threshold", "4")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--io-threads", "-1")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--socket-engine", "kqueue")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--format", "xml", "--regress")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--idle-timeout", "soon")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--regress")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--format", "json")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--connection-ids")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--timestamps")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--show-secrets")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--trace", "-", "--trace-append")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--io-threads", "100000")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--max-client-connections", "-1")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--idle-timeout", "1e12")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--handshake-timeout", "0")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--channel-binding-fallback", "refuse")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--trace", "/nonexistent-pgspec-directory/trace")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--trace-replication")]
    [InlineData("proxy", "--listen", "127.0.0.1:6432", "--upstream", "127.0.0.1:5432", "--trace", "-", "--format", "json", "--trace-replication")]
    public void ProxyCommand_WithBadArguments_ExitsWithUsageError(params string[] args)
    {
        using var output = new MemoryStream();
        using var error = new StringWriter();

        int exit = PgSpecCommandLine.Run(args, new MemoryStream(), output, error);

        Assert.Equal(PgSpecCommandLine.ExitUsage, exit);
        Assert.Contains("pgspec: ", error.ToString());
    }

    [Fact]
    public void ProxyCommand_WithATraceFileThatExists_RefusesToOverwriteIt()
    {
        string trace = Path.Combine(Path.GetTempPath(), "pgspec-proxy-existing-" + Guid.NewGuid().ToString("N") + ".trace");
        File.WriteAllText(trace, "an earlier trace\n");
        try
        {
            using var output = new MemoryStream();
            using var error = new StringWriter();

            int exit = PgSpecCommandLine.Run(["proxy", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:5432", "--trace", trace], new MemoryStream(), output, error);

            Assert.Equal(PgSpecCommandLine.ExitUsage, exit);
            Assert.Contains("exists (17 bytes): give --trace-append", error.ToString());
            Assert.Equal("an earlier trace\n", File.ReadAllText(trace));
        }
        finally
        {
            File.Delete(trace);
        }
    }

    [Fact]
    public async Task ProxyProcess_WithTraceAppend_AddsToTheExistingTrace()
    {
        PgServer server = await _servers.Server(15);
        string trace = Path.Combine(Path.GetTempPath(), "pgspec-proxy-append-" + Guid.NewGuid().ToString("N") + ".trace");
        File.WriteAllText(trace, "an earlier trace\n");
        try
        {
            int port = FreePort();
            (ProcessOutput proxy, ProcessOutput psql) = await RunWithProxyAsync(
                ["--listen", "127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture), "--upstream", $"{server.Host}:{server.Port}", "--trace", trace, "--trace-append"],
                port,
                server.Role(PgAuthMethod.Trust));

            Assert.True(psql.ExitCode == 0, psql.ToString());
            Assert.Equal(0, proxy.ExitCode);
            string[] lines = File.ReadAllLines(trace);
            Assert.Equal("an earlier trace", lines[0]);
            Assert.Contains(lines, line => line.Contains("through the command", StringComparison.Ordinal));
        }
        finally
        {
            File.Delete(trace);
        }
    }

    [Fact]
    public void ProxyCommand_WithAnOutOfRangeHandshakeTimeout_SaysWhatTheRangeIs()
    {
        using var output = new MemoryStream();
        using var error = new StringWriter();

        int exit = PgSpecCommandLine.Run(["proxy", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:5432", "--handshake-timeout", "1e9"], new MemoryStream(), output, error);

        Assert.Equal(PgSpecCommandLine.ExitUsage, exit);
        Assert.Contains("--handshake-timeout is a number of seconds more than 0 and at most 86400", error.ToString());
    }

    [Fact]
    public void ProxyHelp_DescribesTheOptions()
    {
        using var output = new MemoryStream();
        using var error = new StringWriter();

        int exit = PgSpecCommandLine.Run(["proxy", "--help"], new MemoryStream(), output, error);

        string help = Encoding.UTF8.GetString(output.ToArray());
        Assert.Equal(0, exit);
        Assert.Contains("idle between queries", help);
        Assert.Contains("for its startup and login", help);
        foreach (string option in new[] { "--listen", "--upstream", "--tls-cert", "--tls-key", "--trace", "--regress", "--format", "--show-secrets", "--connection-ids", "--timestamps", "--idle-timeout", "--tls-passthrough", "--stream-threshold", "--socket-engine", "--io-threads", "--max-client-connections", "--channel-binding-fallback", "--trace-append", "SIGHUP", "SCRAM-SHA-256-PLUS" })
        {
            Assert.Contains(option, help);
        }
    }

    private static async Task<(ProcessOutput Proxy, ProcessOutput Psql)> RunWithProxyAsync(string[] arguments, int port, PgRole role)
    {
        await using ProxyProcess proxy = await ProxyProcess.StartAsync(arguments);
        string script = Path.Combine(Path.GetTempPath(), "pgspec-proxy-cli-" + Guid.NewGuid().ToString("N") + ".sql");
        await File.WriteAllTextAsync(script, "SELECT 'through the command' AS answer;\n");
        ProcessOutput psql;
        try
        {
            psql = ClientTests.Psql("127.0.0.1", port.ToString(CultureInfo.InvariantCulture), role, script);
        }
        finally
        {
            File.Delete(script);
        }

        (int exitCode, string stdout) = await proxy.StopAsync();
        return (new ProcessOutput(exitCode, stdout, proxy.Stderr), psql);
    }

    private static int FreePort() => ProxyProcess.FreePort();
}
