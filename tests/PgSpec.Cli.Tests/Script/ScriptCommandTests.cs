using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using PgSpec.Cli.Tests.RealServer;
using PgSpec.Servers;

namespace PgSpec.Cli.Tests.Script;

/// <summary><c>pgspec script</c> against real PostgreSQL 15 and 18, and side by side with Debian's pgproto.</summary>
public sealed class ScriptCommandTests(ScriptServers servers) : IClassFixture<ScriptServers>
{
    private static readonly string s_suite = Path.Combine(AppContext.BaseDirectory, "Script", "pgproto");

    private static string Script(TempDirectory directory, string name, string text) => directory.Write(name, Encoding.UTF8.GetBytes(text));

    private static CliResult Run(string[] connect, params string[] args) => CliRunner.Run(["script", .. connect, .. args]);

    [Theory]
    [InlineData(15)]
    [InlineData(18)]
    public void Pgpools_suite_passes_but_the_script_that_expects_pgpools_own_error(int major)
    {
        PgServer server = servers.Major(major);
        CliResult result = Run(ScriptServers.Connect(server), "--sslmode", "disable", "--suite", s_suite);

        Assert.True(result.ExitCode == 0, result.ToString());
        string[] names = [.. Directory.GetFiles(Path.Combine(s_suite, "tests"), "*.data").Select(Path.GetFileNameWithoutExtension).OfType<string>()];
        Assert.Equal(23, names.Length);
        foreach (string name in names.Where(n => n != "unable_to_bind"))
        {
            Assert.Matches(new Regex($"^{Regex.Escape(name)} +pass$", RegexOptions.Multiline), result.Stdout);
        }

        Assert.Matches(new Regex(@"^unable_to_bind +xfail +expects pgpool's own error \(F pool_proto_modules\.c\)", RegexOptions.Multiline), result.Stdout);
        Assert.Contains("\n23 scripts: 22 passed, 0 failed, 1 expected to fail\n", result.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("note: scripts ran in database", result.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Expect_passes_on_pgpools_output_and_fails_with_a_diff_when_the_expected_file_changes()
    {
        using var directory = new TempDirectory();
        string script = Path.Combine(s_suite, "tests", "sql-error.data");
        string expected = File.ReadAllText(Path.Combine(s_suite, "expected", "sql-error.data"));
        string same = Script(directory, "same.data", expected);
        string changed = Script(directory, "changed.data", expected.Replace("CommandComplete(BEGIN)", "CommandComplete(START TRANSACTION)", StringComparison.Ordinal));
        string[] connect = [.. ScriptServers.Connect(servers.Pg15), "--sslmode", "disable"];

        CliResult pass = Run(connect, "-f", script, "--expect", same);
        Assert.True(pass.ExitCode == 0, pass.ToString());
        Assert.Equal("", pass.Stdout);

        CliResult fail = Run(connect, "-f", script, "--expect", changed);
        Assert.True(fail.ExitCode == 1, fail.ToString());
        Assert.StartsWith($"--- {changed}\n+++ output of {script}\n@@ -13,7 +13,7 @@\n", fail.Stdout, StringComparison.Ordinal);
        Assert.Contains("\n <= BE BindComplete\n-<= BE CommandComplete(START TRANSACTION)\n+<= BE CommandComplete(BEGIN)\n <= BE CloseComplete\n", fail.Stdout, StringComparison.Ordinal);
        Assert.Contains("differs from " + changed, fail.Stderr, StringComparison.Ordinal);
    }

    /// <summary>Scripts that pgpool2 4.3.5's pgproto handles (no Bind parameters, no 'z', no "\n", no ParameterStatus, no FunctionCall).</summary>
    public static TheoryData<string> PgprotoScripts => new()
    {
        """
        # Simple query: several results, an empty query, errors and notices.
        'Q'	"SELECT 1 AS a; SELECT 'x', 2"
        'Y'
        'Q'	""
        'Y'
        'Q'	"SELECT 1/0"
        'Y'
        'Q'	"DO $$BEGIN RAISE NOTICE 'hello %', 42; END$$"
        'Y'
        'Q'	"BEGIN"
        'Y'
        'Q'	"SELECT nosuchcolumn"
        'Y'
        'Q'	"ROLLBACK"
        'Y'
        'X'
        """,
        """
        # COPY in, out and failed, on a temporary table.
        'Q'	"CREATE TEMP TABLE t(a text)"
        'Y'
        'Q'	"COPY t FROM STDIN"
        'd'	"one"
        'c'
        'Y'
        'Q'	"COPY t TO STDOUT"
        'Y'
        'Q'	"COPY t FROM STDIN"
        'f'	"changed my mind"
        'Y'
        'X'
        """,
        """
        # Extended query: Describe, row limits, portals, errors, NoData, Flush with 'y'.
        'P'	"s1"	"SELECT * FROM generate_series(1, 5)"	0
        'D'	'S'	"s1"
        'B'	"p1"	"s1"	0	0	0
        'D'	'P'	"p1"
        'E'	"p1"	2
        'E'	"p1"	0
        'C'	'P'	"p1"
        'P'	""	"BEGIN"	0
        'D'	'S'	""
        'B'	""	""	0	0	0
        'E'	""	0
        'S'
        'Y'
        'P'	"s2"	"SELECT nosuchcolumn"	0
        'B'	""	"s2"	0	0	0
        'E'	""	0
        'S'
        'Y'
        'P'	""	"SELECT 3"	0
        'B'	""	""	0	0	0
        'E'	""	0
        'H'
        'y'
        'C'	'S'	"s1"
        'S'
        'Y'
        'Q'	"COMMIT"
        'Y'
        'X'
        """,
    };

    [Theory]
    [MemberData(nameof(PgprotoScripts))]
    public void Prints_what_debians_pgproto_prints(string text)
    {
        using var directory = new TempDirectory();
        string script = Script(directory, "own.data", text.ReplaceLineEndings("\n") + "\n");
        PgServer server = servers.Pg15;
        ProcessOutput pgproto = ExternalProcess.Run(
            "/usr/sbin/pgproto",
            ["-h", server.Host, "-p", server.Port.ToString(CultureInfo.InvariantCulture), "-u", "postgres", "-d", "postgres", "-f", script],
            environment: new Dictionary<string, string> { ["PGSSLMODE"] = "disable" });
        Assert.True(pgproto.ExitCode == 0, pgproto.ToString());
        Assert.Contains("FE=> Terminate", pgproto.Stderr, StringComparison.Ordinal);

        CliResult ours = Run(ScriptServers.Connect(server), "--sslmode", "disable", "-f", script);
        Assert.True(ours.ExitCode == 0, ours.ToString());
        Assert.Equal(pgproto.Stderr, ours.Stdout);
    }

    [Fact]
    public void Bind_parameters_text_binary_and_null_reach_the_server()
    {
        using var directory = new TempDirectory();
        string script = Script(directory, "bind.data", """
            'P'	"s"	"SELECT $1::int4 + $2, $3::text IS NULL"	2	23	23
            'B'	""	"s"	3	0	1	0	3	2	"40"	4	"2"	-1	0
            'E'	""	0
            'S'
            'Y'
            'X'

            """);
        CliResult result = Run(ScriptServers.Connect(servers.Pg15), "--sslmode", "disable", "--format", "trace", "-f", script);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("F\t37\tBind\t \"\" \"s\" 3 0 1 0 3 2 '40' 4 '\\x00\\x00\\x00\\x02' -1 0\n", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("\tDataRow\t 2 2 '42' 1 't'\n", result.Stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("pgspec_password", "cleartext-secret")]
    [InlineData("pgspec_md5", "md5-secret")]
    [InlineData("pgspec_scram", "scram-secret")]
    public void Logs_in_with_PGPASSWORD_and_a_wrong_one_is_an_authentication_failure(string user, string password)
    {
        using var directory = new TempDirectory();
        string script = Script(directory, "q.data", "'Q'\t\"SELECT current_user\"\n'Y'\n'X'\n");
        string[] args = [Path.Combine(AppContext.BaseDirectory, "pgspec.dll"), "script", .. ScriptServers.Connect(servers.Pg15, user), "--sslmode", "disable", "-f", script];

        ProcessOutput right = ExternalProcess.Run("dotnet", args, environment: new Dictionary<string, string> { ["PGPASSWORD"] = password });
        Assert.True(right.ExitCode == 0, right.ToString());
        Assert.Contains("<= BE ReadyForQuery(I)\nFE=> Terminate\n", right.Stdout, StringComparison.Ordinal);

        ProcessOutput wrong = ExternalProcess.Run("dotnet", args, environment: new Dictionary<string, string> { ["PGPASSWORD"] = "not-" + password });
        Assert.True(wrong.ExitCode == 6, wrong.ToString());
        Assert.Contains("authentication failed", wrong.Stderr, StringComparison.Ordinal);
        Assert.Contains("28P01", wrong.Stderr, StringComparison.Ordinal);
        Assert.Equal("", wrong.Stdout);
    }

    [Fact]
    public void Tls_verify_full_with_the_servers_ca_and_a_tls_only_role_refused_without_tls()
    {
        using var directory = new TempDirectory();
        PgServer server = servers.Pg15;
        string ca = directory.Write("ca.pem", Encoding.ASCII.GetBytes(server.CaCertificatePem!));
        string script = Script(directory, "ssl.data", "'Q'\t\"SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()\"\n'Y'\n'X'\n");

        CliResult tls = Run(ScriptServers.Connect(server), "--sslmode", "verify-full", "--sslrootcert", ca, "--format", "trace", "-f", script);
        Assert.True(tls.ExitCode == 0, tls.ToString());
        Assert.Contains("\tDataRow\t 1 1 't'\n", tls.Stdout, StringComparison.Ordinal);

        CliResult plain = Run(ScriptServers.Connect(server), "--sslmode", "disable", "--format", "trace", "-f", script);
        Assert.True(plain.ExitCode == 0, plain.ToString());
        Assert.Contains("\tDataRow\t 1 1 'f'\n", plain.Stdout, StringComparison.Ordinal);

        CliResult refused = Run(ScriptServers.Connect(server, server.SslRole.Name), "--sslmode", "disable", "-f", script);
        Assert.True(refused.ExitCode == 6, refused.ToString());
        Assert.Contains("28000", refused.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Protocol_3_2_with_PostgreSQL_18_and_negotiated_down_by_15()
    {
        using var directory = new TempDirectory();
        string script = Script(directory, "q.data", "'Q'\t\"SELECT 1\"\n'Y'\n'X'\n");

        CliResult pg18 = Run(ScriptServers.Connect(servers.Pg18), "--sslmode", "disable", "--protocol", "3.2", "-D", "-f", script);
        Assert.True(pg18.ExitCode == 0, pg18.ToString());
        // BackendKeyData with a 32-byte key: only protocol 3.2 has keys longer than 4 bytes.
        Assert.Contains("BE BackendKeyData 4b00000028", pg18.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("NegotiateProtocolVersion", pg18.Stderr, StringComparison.Ordinal);

        CliResult pg15 = Run(ScriptServers.Connect(servers.Pg15), "--sslmode", "disable", "--protocol", "3.2", "-D", "-f", script);
        Assert.True(pg15.ExitCode == 0, pg15.ToString());
        Assert.Contains("BE NegotiateProtocolVersion", pg15.Stderr, StringComparison.Ordinal);
        Assert.Contains("BE BackendKeyData 4b0000000c", pg15.Stderr, StringComparison.Ordinal);
        Assert.Equal(pg18.Stdout, pg15.Stdout);
    }

    [Fact]
    public void A_server_that_stalls_ends_Y_after_the_timeout_and_y_after_a_second_of_silence()
    {
        using var directory = new TempDirectory();
        string stalls = Script(directory, "stall.data", "'Q'\t\"SELECT pg_sleep(10)\"\n'Y'\n'X'\n");
        CliResult timeout = Run(ScriptServers.Connect(servers.Pg15), "--sslmode", "disable", "--timeout", "1", "-f", stalls);
        Assert.True(timeout.ExitCode == 7, timeout.ToString());
        Assert.Contains("stall.data:2: 'Y': no message from the server for 1 s", timeout.Stderr, StringComparison.Ordinal);
        Assert.Equal("FE=> Query (query=\"SELECT pg_sleep(10)\")\n", timeout.Stdout);

        string silent = Script(directory, "silent.data", "'Q'\t\"SELECT pg_sleep(10)\"\n'y'\n'X'\n");
        CliResult stops = Run(ScriptServers.Connect(servers.Pg15), "--sslmode", "disable", "--timeout", "1", "-f", silent);
        Assert.True(stops.ExitCode == 0, stops.ToString());
        Assert.Equal("FE=> Query (query=\"SELECT pg_sleep(10)\")\nFE=> Terminate\n", stops.Stdout);
    }

    [Fact]
    public void A_unix_socket_directory_as_host()
    {
        using var directory = new TempDirectory();
        string script = Script(directory, "q.data", "'Q'\t\"SELECT 1\"\n'Y'\n'X'\n");
        PgServer server = servers.Pg18;
        CliResult result = CliRunner.Run("script", "-h", server.SocketDirectory!, "-p", server.Port.ToString(CultureInfo.InvariantCulture), "-u", "postgres", "-d", "postgres", "-f", script);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("FE=> Query (query=\"SELECT 1\")\n<= BE RowDescription\n<= BE DataRow\n<= BE CommandComplete(SELECT 1)\n<= BE ReadyForQuery(I)\nFE=> Terminate\n", result.Stdout);
    }

    [Fact]
    public void Trace_and_json_formats()
    {
        using var directory = new TempDirectory();
        string script = Script(directory, "q.data", "'Q'\t\"SELECT 1/0\"\n'Y'\n'!'\t\"51 00000004\"\n'Y'\n'X'\n");
        string[] connect = [.. ScriptServers.Connect(servers.Pg15), "--sslmode", "disable", "-f", script];

        CliResult trace = Run(connect, "--format", "trace", "--regress");
        Assert.True(trace.ExitCode == 0, trace.ToString());
        Assert.Equal(
            "F\t15\tQuery\t \"SELECT 1/0\"\n"
            + "B\tNN\tErrorResponse\t S \"ERROR\" V \"ERROR\" C \"22012\" M \"division by zero\" F \"SSSS\" L \"SSSS\" R \"SSSS\" \\x00\n"
            + "B\t5\tReadyForQuery\t I\n"
            + "F\t5\tRaw\t 5100000004\n",
            string.Join('\n', trace.Lines.Take(4)) + "\n");
        Assert.Equal("F\t4\tTerminate", trace.Lines[^1]);

        CliResult json = Run(connect, "--format", "json");
        Assert.True(json.ExitCode == 0, json.ToString());
        Assert.StartsWith("{\"offset\":0,\"direction\":\"F\",\"type\":\"Q\",\"length\":15,\"name\":\"Query\",\"fields\":{\"queryString\":\"SELECT 1/0\"}}\n", json.Stdout, StringComparison.Ordinal);
        Assert.Contains("\"name\":\"Raw\",\"fields\":{\"bytes\":{\"hex\":\"5100000004\"}}}\n", json.Stdout, StringComparison.Ordinal);
        Assert.All(json.Lines, line => System.Text.Json.JsonDocument.Parse(line).Dispose());
    }

    [Fact]
    public void A_malformed_script_is_rejected_before_connecting()
    {
        using var directory = new TempDirectory();
        string script = Script(directory, "bad.data", "'Q'\t\"SELECT 1\"\n'B'\t\"\"\t\"\"\tx\n'Y'\n");
        CliResult result = CliRunner.Run("script", "-h", "127.0.0.1", "-p", FreePort().ToString(CultureInfo.InvariantCulture), "-f", script);
        Assert.True(result.ExitCode == 4, result.ToString());
        Assert.Equal("", result.Stdout);
        Assert.Contains($"{script}:2:11: expected the number of parameter format codes as an integer, found \"x\"", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void An_unreachable_server_is_a_connection_failure()
    {
        using var directory = new TempDirectory();
        string script = Script(directory, "q.data", "'Q'\t\"SELECT 1\"\n'Y'\n");
        CliResult result = CliRunner.Run("script", "-h", "127.0.0.1", "-p", FreePort().ToString(CultureInfo.InvariantCulture), "--sslmode", "disable", "-f", script);
        Assert.True(result.ExitCode == 5, result.ToString());
        Assert.Contains("cannot connect to 127.0.0.1:", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void A_script_of_comments_only_connects_sends_nothing_and_says_so()
    {
        using var directory = new TempDirectory();
        string script = Script(directory, "comments.data", "# nothing\n\n# to send\n");
        CliResult result = Run(ScriptServers.Connect(servers.Pg15), "--sslmode", "disable", "-f", script);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("", result.Stdout);
        Assert.Contains($"{script} has no commands (only empty lines and comments): nothing to send", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void A_suite_with_a_missing_expected_file_and_a_script_name_with_spaces()
    {
        using var directory = new TempDirectory();
        Directory.CreateDirectory(Path.Combine(directory.Path, "tests"));
        Directory.CreateDirectory(Path.Combine(directory.Path, "expected"));
        const string Select = "'Q'\t\"SELECT 1\"\n'Y'\n'X'\n";
        const string Output = "FE=> Query (query=\"SELECT 1\")\n<= BE RowDescription\n<= BE DataRow\n<= BE CommandComplete(SELECT 1)\n<= BE ReadyForQuery(I)\nFE=> Terminate\n";
        File.WriteAllText(Path.Combine(directory.Path, "tests", "with space.data"), Select);
        File.WriteAllText(Path.Combine(directory.Path, "expected", "with space.data"), Output);
        File.WriteAllText(Path.Combine(directory.Path, "tests", "unexpected.data"), Select);

        CliResult result = Run(ScriptServers.Connect(servers.Pg15), "--sslmode", "disable", "--suite", directory.Path);
        Assert.True(result.ExitCode == 1, result.ToString());
        Assert.Matches(new Regex(@"^unexpected +error +no expected output \(expected/unexpected\.data\)$", RegexOptions.Multiline), result.Stdout);
        Assert.Matches(new Regex("^with space +pass$", RegexOptions.Multiline), result.Stdout);
        Assert.Contains("\n2 scripts: 1 passed, 1 failed, 0 expected to fail\n", result.Stdout, StringComparison.Ordinal);
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
