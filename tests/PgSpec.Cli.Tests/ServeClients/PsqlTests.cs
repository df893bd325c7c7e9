using PgSpec.Cli.Tests.RealServer;

namespace PgSpec.Cli.Tests.ServeClients;

/// <summary>psql against <c>pgspec serve</c>: queries, errors with their SQLSTATE, \copy both ways, transactions.</summary>
public sealed class PsqlTests(ServeServers servers) : IClassFixture<ServeServers>
{
    [Theory]
    [InlineData(ClientMode.Plain)]
    [InlineData(ClientMode.TlsScram)]
    public async Task Psql_RunsQueriesCopiesAndTransactions(ClientMode mode)
    {
        ServeServer server = await servers.For(mode);
        string table = "psql_" + mode.ToString().ToLowerInvariant();
        string script = $"""
            \set VERBOSITY verbose
            \conninfo
            CREATE TABLE {table} (id int8, name text, flag bool);
            INSERT INTO {table} VALUES (1, 'one', true), (2, NULL, false);
            SELECT id, name, flag FROM {table} ORDER BY id;
            SELECT * FROM no_such_table;
            BEGIN;
            INSERT INTO {table} VALUES (3, 'rolled back', true);
            ROLLBACK;
            BEGIN;
            INSERT INTO {table} VALUES (4, 'committed', true);
            COMMIT;
            BEGIN;
            SELECT * FROM no_such_table;
            SELECT 'in a failed transaction';
            ROLLBACK;
            \copy {table} from stdin
            5	five\ttab	t
            6	\N	f
            \.
            \copy {table} from stdin with (format csv)
            7,"a,b",true
            8,,false
            \.
            \copy {table} to stdout
            \copy (SELECT id, name FROM {table} WHERE id > 4 ORDER BY id) to stdout with (format csv, header)
            SELECT count(*) AS total FROM {table};
            """;

        ProcessOutput psql = Psql(server, script);

        string context = psql + server.Diagnostics;
        Assert.True(psql.ExitCode == 0, context);
        string[] lines = psql.Stdout.Split('\n');
        Assert.Contains(mode == ClientMode.TlsScram ? "SSL connection" : "You are connected", psql.Stdout);
        Assert.Equal(mode == ClientMode.TlsScram, psql.Stdout.Contains("SSL connection", StringComparison.Ordinal));
        Assert.Contains("id|name|flag", lines);
        Assert.Contains("1|one|t", lines);
        Assert.Contains("2||f", lines);
        Assert.Contains("ERROR:  42P01: relation \"no_such_table\" does not exist", psql.Stderr);
        Assert.Contains("ERROR:  25P02: current transaction is aborted, commands ignored until end of transaction block", psql.Stderr);
        Assert.DoesNotContain("in a failed transaction", psql.Stdout);
        Assert.Contains("COPY 2", lines);

        // \copy to stdout (text): every row once, in insertion order, with text escapes and \N.
        int first = Array.IndexOf(lines, "1\tone\tt");
        Assert.True(first >= 0, context);
        Assert.Equal(
            ["1\tone\tt", "2\t\\N\tf", "4\tcommitted\tt", "5\tfive\\ttab\tt", "6\t\\N\tf", "7\ta,b\tt", "8\t\\N\tf"],
            lines[first..(first + 7)]);

        // \copy to stdout (CSV with a header): quoting and NULL as nothing.
        int header = Array.IndexOf(lines, "id,name");
        Assert.True(header >= 0, context);
        Assert.Equal(["id,name", "5,five\ttab", "6,", "7,\"a,b\"", "8,"], lines[header..(header + 5)]);
        Assert.Contains("total", lines);
        Assert.Equal("7", lines[Array.IndexOf(lines, "total") + 1]);
    }

    [Fact]
    public async Task Psql_OnErrorStop_ExitsWith3AndTheSqlState()
    {
        ServeServer server = await servers.For(ClientMode.Plain);

        ProcessOutput psql = Psql(server, "SELECT 'before';\nSELECT * FROM no_such_table;\nSELECT 'after';\n", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose");

        Assert.True(psql.ExitCode == 3, psql + server.Diagnostics);
        Assert.Contains("before", psql.Stdout);
        Assert.DoesNotContain("after", psql.Stdout);
        Assert.Contains("ERROR:  42P01:", psql.Stderr);
    }

    [Theory]
    [InlineData(ClientMode.Md5)]
    [InlineData(ClientMode.Password)]
    public async Task Psql_LogsInWithAPassword_AndNotWithAWrongOne(ClientMode mode)
    {
        ServeServer server = await servers.For(mode);

        ProcessOutput good = Psql(server, "SELECT current_user AS who;\n");
        ProcessOutput bad = Psql(server with { Password = "wrong" }, "SELECT 1;\n");

        Assert.True(good.ExitCode == 0, good + server.Diagnostics);
        Assert.Contains("who\nu\n", good.Stdout);
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("password authentication failed for user \"u\"", bad.Stderr);
    }

    [Fact]
    public async Task Psql_ConnectsThroughAUnixSocket()
    {
        ServeServer server = await servers.UnixSocket();

        ProcessOutput psql = Psql(server, "\\conninfo\nSELECT 'over the socket' AS via;\n");

        Assert.True(psql.ExitCode == 0, psql + server.Diagnostics);
        Assert.Contains($"via socket in \"{server.Host}\" at port \"5432\"", psql.Stdout);
        Assert.Contains("via\nover the socket\n", psql.Stdout);
    }

    /// <summary>Runs psql -X -A on a script file; psql reads \copy ... from stdin data from the script.</summary>
    private ProcessOutput Psql(ServeServer server, string script, params string[] more)
    {
        string file = Path.Combine(servers.Directory, "psql-" + Guid.NewGuid().ToString("N") + ".sql");
        File.WriteAllText(file, script.ReplaceLineEndings("\n") + "\n");
        string psql = ExternalProcess.FindOnPath("psql") ?? throw new InvalidOperationException("psql is not on PATH (Debian: apt-get install -y postgresql-client)");
        return ExternalProcess.Run(psql, [server.ConnInfo(), "-X", "-A", "-f", file, .. more]);
    }
}
