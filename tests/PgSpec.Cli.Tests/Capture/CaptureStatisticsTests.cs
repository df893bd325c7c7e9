using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using PgSpec.Cli.Capture;
using PgSpec.Cli.Tests.RealServer;
using PgSpec.Protocol;
using PgSpec.Servers;

namespace PgSpec.Cli.Tests.Capture;

public class CaptureStatisticsTests
{
    private static readonly IPEndPoint Client = IPEndPoint.Parse("10.0.0.7:40001");
    private static readonly IPEndPoint Server = IPEndPoint.Parse("10.0.0.1:5432");
    private static readonly DateTime Start = new(2026, 12, 3, 6, 0, 0, DateTimeKind.Utc);

    [Theory]
    [InlineData("SELECT 1", "SELECT $1")]
    [InlineData("select -1", "select $1")]
    [InlineData("SELECT (-1)", "SELECT ($1)")]
    [InlineData("SELECT * FROM t WHERE a = -5 AND b = 'x''y'", "SELECT * FROM t WHERE a = $1 AND b = $2")]
    [InlineData("SELECT a - 5 FROM t", "SELECT a - $1 FROM t")]
    [InlineData("SELECT a-5, b -7 FROM t", "SELECT a-$1, b -$2 FROM t")]
    [InlineData("SELECT x FROM t LIMIT - 1", "SELECT x FROM t LIMIT $1")]
    [InlineData("UPDATE pgbench_accounts SET abalance = abalance + -1234 WHERE aid = 55;", "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;")]
    [InlineData("SELECT 1.5e10, .5, 2.75, 1e-3, 0x1F, 0o17, 0b101, 1_000_000", "SELECT $1, $2, $3, $4, $5, $6, $7, $8")]
    [InlineData("SELECT E'it\\'s \\\\', e'x', 'plain'", "SELECT $1, $2, $3")]
    [InlineData("SELECT $$a 'b' $$, $tag$x$$y$tag$ FROM t", "SELECT $1, $2 FROM t")]
    [InlineData("SELECT B'1010', X'FF', N'n', U&'d\\0061t'", "SELECT $1, $2, $3, $4")]
    [InlineData("SELECT * FROM t WHERE id IN (1, 2, 3)", "SELECT * FROM t WHERE id IN ($1, $2, $3)")]
    [InlineData("SELECT $1, 5 FROM t WHERE b = $2", "SELECT $1, $3 FROM t WHERE b = $2")]
    [InlineData("SELECT /* tag /* nested */ */ 1 -- comment\n FROM t", "SELECT $1 FROM t")]
    [InlineData("SELECT  a,\n\t b   FROM\r\n t  ", "SELECT a, b FROM t")]
    [InlineData("SELECT \"col 1\", \"a\"\"2\", t1.c2, x3 FROM \"T\"", "SELECT \"col 1\", \"a\"\"2\", t1.c2, x3 FROM \"T\"")]
    [InlineData("SELECT true, NULL, 'a'::text, interval '1 day'", "SELECT true, NULL, $1::text, interval $2")]
    [InlineData("SELECT '-- not a comment', '/* nor this */', 2", "SELECT $1, $2, $3")]
    [InlineData("SELECT e, b, x FROM t WHERE x = e'a'", "SELECT e, b, x FROM t WHERE x = $1")]
    [InlineData("SELECT 1;SELECT 2", "SELECT $1;SELECT $2")]
    [InlineData("SELECT x[1:2] FROM t", "SELECT x[$1:$2] FROM t")]
    [InlineData("SELECT 'unterminated", "SELECT $1")]
    [InlineData("SELECT $$unterminated", "SELECT $1")]
    [InlineData("", "")]
    public void TheNormalizer_ReplacesConstants_AndKeepsTheRest(string sql, string normalized)
    {
        Assert.Equal(normalized, QueryNormalizer.Normalize(sql));
    }

    [Fact]
    public void TheNormalizer_BoundsLongTexts_AndKeepsThemApart()
    {
        string columns = string.Join(", ", Enumerable.Range(0, 5000).Select(i => "c" + i.ToString(CultureInfo.InvariantCulture)));
        string a = QueryNormalizer.Normalize("SELECT " + columns + " FROM a");
        string b = QueryNormalizer.Normalize("SELECT " + columns + " FROM b");
        Assert.True(a.Length < QueryNormalizer.MaxLength + 100, a.Length.ToString(CultureInfo.InvariantCulture));
        Assert.NotEqual(a, b);
    }

    [Fact]
    public void Percentile95_IsTheNearestRank()
    {
        List<double> times = [.. Enumerable.Range(1, 20).Select(i => (double)i).Reverse()];
        Assert.Equal(19, CaptureStatistics.Percentile95(times));
        Assert.Equal(5, CaptureStatistics.Percentile95([5]));
        Assert.Equal(95, CaptureStatistics.Percentile95([.. Enumerable.Range(1, 100).Select(i => (double)i)]));
        Assert.Equal(0, CaptureStatistics.Percentile95([]));
    }

    [Theory]
    [InlineData("SELECT 7", 7L)]
    [InlineData("INSERT 0 3", 3L)]
    [InlineData("UPDATE 12", 12L)]
    [InlineData("DELETE 0", 0L)]
    [InlineData("COPY 100000", 100000L)]
    [InlineData("FETCH 5", 5L)]
    [InlineData("MOVE 2", 2L)]
    [InlineData("MERGE 4", 4L)]
    [InlineData("CREATE TABLE", null)]
    [InlineData("BEGIN", null)]
    public void Rows_AreTheLastNumberOfTheTag(string tag, long? rows)
    {
        Assert.Equal(rows, CaptureStatistics.Rows(Encoding.ASCII.GetBytes(tag)));
    }

    [Fact]
    public void SimpleQueries_AreCalls_TimedFromTheQueryToReadyForQuery()
    {
        var wire = new Wire();
        wire.Login();

        // Three calls of one normalized query: 2, 4 and 6 ms; p95 of three is the largest.
        for (int i = 1; i <= 3; i++)
        {
            wire.Send(true, 10, new Query($"SELECT v FROM t WHERE id = {i}"));
            wire.Send(false, 2 * i, Conversation.Columns, Conversation.Row, new CommandComplete("SELECT 1"), new ReadyForQuery(TransactionStatus.Idle));
        }

        // Several statements in one Query: one call of the whole text, rows summed.
        wire.Send(true, 10, new Query("INSERT INTO t VALUES (1); INSERT INTO t VALUES ('two')"));
        wire.Send(false, 5, new CommandComplete("INSERT 0 1"));
        wire.Send(false, 1, new CommandComplete("INSERT 0 1"), new ReadyForQuery(TransactionStatus.Idle));

        JsonElement stats = Run(wire);
        JsonElement select = QueryNamed(stats, "SELECT v FROM t WHERE id = $1");
        Assert.Equal(3, select.GetProperty("calls").GetInt64());
        Assert.Equal(3, select.GetProperty("rows").GetInt64());
        Assert.Equal(12.0, select.GetProperty("total_ms").GetDouble());
        Assert.Equal(4.0, select.GetProperty("mean_ms").GetDouble());
        Assert.Equal(6.0, select.GetProperty("p95_ms").GetDouble());
        Assert.Equal(0, select.GetProperty("errors").GetInt64());

        JsonElement insert = QueryNamed(stats, "INSERT INTO t VALUES ($1); INSERT INTO t VALUES ($2)");
        Assert.Equal(1, insert.GetProperty("calls").GetInt64());
        Assert.Equal(2, insert.GetProperty("rows").GetInt64());
        Assert.Equal(6.0, insert.GetProperty("total_ms").GetDouble());

        // Sorted by total time.
        Assert.Equal("SELECT v FROM t WHERE id = $1", stats.GetProperty("queries")[0].GetProperty("query").GetString());
        Assert.Equal(0, stats.GetProperty("unfinished_calls").GetInt64());
    }

    [Fact]
    public void P95_IsExactOnAKnownSetOfCalls()
    {
        var wire = new Wire();
        wire.Login();
        int[] durations = [7, 3, 20, 1, 15, 9, 12, 4, 18, 2, 6, 11, 19, 5, 8, 14, 10, 17, 13, 16];
        foreach (int ms in durations)
        {
            wire.Send(true, 1, new Query("SELECT 1"));
            wire.Send(false, ms, new CommandComplete("SELECT 1"), new ReadyForQuery(TransactionStatus.Idle));
        }

        JsonElement select = QueryNamed(Run(wire), "SELECT $1");
        Assert.Equal(20, select.GetProperty("calls").GetInt64());
        Assert.Equal(19.0, select.GetProperty("p95_ms").GetDouble());
        Assert.Equal(10.5, select.GetProperty("mean_ms").GetDouble());
        Assert.False(select.GetProperty("p95_sampled").GetBoolean());
    }

    [Fact]
    public void Errors_AreCountedBySqlstate_PerQueryAndPerConnection()
    {
        var wire = new Wire();
        wire.Login();
        wire.Send(true, 1, new Query("SELECT * FROM missing"));
        wire.Send(false, 1, Error("42P01"), new ReadyForQuery(TransactionStatus.Idle));
        for (int i = 0; i < 2; i++)
        {
            wire.Send(true, 1, new Query($"SELECT {i} / 0"));
            wire.Send(false, 1, Error("22012"), new ReadyForQuery(TransactionStatus.Idle));
        }

        wire.Send(true, 1, new Query("SELECT 1"));
        wire.Send(false, 1, new CommandComplete("SELECT 1"), new ReadyForQuery(TransactionStatus.Idle));
        wire.Send(true, 1, new Query("SELECT 2"));
        wire.Send(false, 1, Error("<script>"), new ReadyForQuery(TransactionStatus.Idle));

        JsonElement stats = Run(wire);
        JsonElement errors = stats.GetProperty("errors");
        Assert.Equal(1, errors.GetProperty("invalid").GetInt64());
        Assert.Equal(1, errors.GetProperty("42P01").GetInt64());
        Assert.Equal(2, errors.GetProperty("22012").GetInt64());
        Assert.Equal(3, errors.EnumerateObject().Count());
        Assert.Equal(2, QueryNamed(stats, "SELECT $1 / $2").GetProperty("errors").GetInt64());
        Assert.Equal(2, QueryNamed(stats, "SELECT $1 / $2").GetProperty("calls").GetInt64());
        Assert.Equal(1, QueryNamed(stats, "SELECT * FROM missing").GetProperty("errors").GetInt64());
        Assert.Equal(1, QueryNamed(stats, "SELECT $1").GetProperty("errors").GetInt64());
        Assert.Equal(2, QueryNamed(stats, "SELECT $1").GetProperty("calls").GetInt64());

        JsonElement connection = stats.GetProperty("connection_list").EnumerateArray().Single();
        Assert.Equal(4, connection.GetProperty("errors").GetInt64());
        Assert.Equal("10.0.0.7:40001 -> 10.0.0.1:5432", connection.GetProperty("endpoints").GetString());
        Assert.Equal("closed", connection.GetProperty("ended").GetString());
    }

    [Fact]
    public void ANamedPreparedStatementExecutedSeveralTimes_IsOneQueryWithACallPerExecute()
    {
        var wire = new Wire();
        wire.Login();

        // Prepared alone (Parse, Sync): not a call.
        wire.Send(true, 1, new Parse("P0_1", "SELECT abalance FROM pgbench_accounts WHERE aid = $1", []), new Sync());
        wire.Send(false, 1, new ParseComplete(), new ReadyForQuery(TransactionStatus.Idle));
        for (int i = 1; i <= 4; i++)
        {
            wire.Send(true, 3, new Bind("", "P0_1", [], [Encoding.ASCII.GetBytes(i.ToString(CultureInfo.InvariantCulture))], []), new Execute("", 0), new Sync());
            wire.Send(false, i, new BindComplete(), Conversation.Row, new CommandComplete("SELECT 1"));
            wire.Send(false, 1, new ReadyForQuery(TransactionStatus.Idle));
        }

        // The unnamed statement, parsed and executed in one batch, failing at its Execute.
        wire.Send(true, 1, new Parse("", "UPDATE t SET v = v + 1 WHERE id = $1", []), new Bind("", "", [], [null], []), new Execute("", 0), new Sync());
        wire.Send(false, 2, new ParseComplete(), new BindComplete(), Error("23502"), new ReadyForQuery(TransactionStatus.Idle));

        JsonElement stats = Run(wire);
        JsonElement select = QueryNamed(stats, "SELECT abalance FROM pgbench_accounts WHERE aid = $1");
        Assert.Equal(4, select.GetProperty("calls").GetInt64());
        Assert.Equal(4, select.GetProperty("rows").GetInt64());

        // Each call runs from its Bind to its ReadyForQuery: i + 1 ms.
        Assert.Equal(2 + 3 + 4 + 5, select.GetProperty("total_ms").GetDouble());
        Assert.Equal(5.0, select.GetProperty("p95_ms").GetDouble());

        // Constants are numbered after the parameters the text has.
        JsonElement update = QueryNamed(stats, "UPDATE t SET v = v + $2 WHERE id = $1");
        Assert.Equal(1, update.GetProperty("calls").GetInt64());
        Assert.Equal(1, update.GetProperty("errors").GetInt64());
        Assert.Equal(2.0, update.GetProperty("total_ms").GetDouble());
        Assert.Equal(2, stats.GetProperty("queries").GetArrayLength());
    }

    [Fact]
    public void ExecutesOfAStatementPreparedBeforeTheCapture_AreCountedApart()
    {
        var wire = new Wire();
        wire.Login();
        wire.Send(true, 1, new Bind("", "prepared_earlier", [], [], []), new Execute("", 0), new Sync());
        wire.Send(false, 2, new BindComplete(), new CommandComplete("UPDATE 3"), new ReadyForQuery(TransactionStatus.Idle));

        JsonElement stats = Run(wire);
        JsonElement apart = stats.GetProperty("queries").EnumerateArray().Single();
        Assert.Equal("(statements prepared before the capture started)", apart.GetProperty("query").GetString());
        Assert.False(apart.GetProperty("other").GetBoolean());
        Assert.Equal(1, apart.GetProperty("calls").GetInt64());
        Assert.Equal(3, apart.GetProperty("rows").GetInt64());
        Assert.Equal(2.0, apart.GetProperty("total_ms").GetDouble());
    }

    [Fact]
    public void ABatchOfSeveralExecutes_IsSplitAtEachCompletion()
    {
        var wire = new Wire();
        wire.Login();
        wire.Send(true, 1, new Parse("a", "SELECT 1", []), new Parse("b", "DELETE FROM t", []), new Sync());
        wire.Send(false, 1, new ParseComplete(), new ParseComplete(), new ReadyForQuery(TransactionStatus.Idle));
        wire.Send(true, 1, new Bind("pa", "a", [], [], []), new Execute("pa", 0), new Bind("pb", "b", [], [], []), new Execute("pb", 0), new Sync());
        wire.Send(false, 3, new BindComplete(), Conversation.Row, new CommandComplete("SELECT 1"));
        wire.Send(false, 4, new BindComplete(), new CommandComplete("DELETE 9"));
        wire.Send(false, 2, new ReadyForQuery(TransactionStatus.Idle));

        JsonElement stats = Run(wire);
        Assert.Equal(3.0, QueryNamed(stats, "SELECT $1").GetProperty("total_ms").GetDouble());
        Assert.Equal(1, QueryNamed(stats, "SELECT $1").GetProperty("rows").GetInt64());
        Assert.Equal(6.0, QueryNamed(stats, "DELETE FROM t").GetProperty("total_ms").GetDouble());
        Assert.Equal(9, QueryNamed(stats, "DELETE FROM t").GetProperty("rows").GetInt64());
    }

    [Fact]
    public void MessagesAndBytes_AreCountedByTypeAndDirection()
    {
        var wire = new Wire();
        wire.Login();
        wire.Send(true, 1, new Query("SELECT 1"));
        wire.Send(false, 1, new CommandComplete("SELECT 1"), new ReadyForQuery(TransactionStatus.Idle));

        JsonElement stats = Run(wire);
        JsonElement messages = stats.GetProperty("messages");
        long frontendBytes = Conversation.Bytes(new StartupMessage(196608, [new StartupMessage.Parameter("user", "u")]), new Query("SELECT 1")).Length;
        long backendBytes = Conversation.Bytes(new AuthenticationOk(), new ReadyForQuery(TransactionStatus.Idle), new CommandComplete("SELECT 1"), new ReadyForQuery(TransactionStatus.Idle)).Length;
        Assert.Equal(frontendBytes, messages.GetProperty("frontend").GetProperty("bytes").GetInt64());
        Assert.Equal(2, messages.GetProperty("frontend").GetProperty("count").GetInt64());
        Assert.Equal(backendBytes, messages.GetProperty("backend").GetProperty("bytes").GetInt64());
        JsonElement ready = messages.GetProperty("types").EnumerateArray().Single(t => t.GetProperty("name").GetString() == "ReadyForQuery");
        Assert.Equal("B", ready.GetProperty("direction").GetString());
        Assert.Equal(2, ready.GetProperty("count").GetInt64());
        Assert.Equal(12, ready.GetProperty("bytes").GetInt64());
        Assert.Equal(frontendBytes, stats.GetProperty("connection_list")[0].GetProperty("frontend_bytes").GetInt64());
    }

    [Fact]
    public void AGap_IsCounted_AndTheCallItHidWasUnfinished()
    {
        var wire = new Wire();
        wire.Login();
        wire.Send(true, 1, new Query("SELECT 1"));
        wire.Skip(false, Conversation.Bytes(new CommandComplete("SELECT 1"), new ReadyForQuery(TransactionStatus.Idle)));
        wire.Send(true, 1, new Query("SELECT 2"), new Query("SELECT 3"), new Query("SELECT 4"));
        wire.Send(false, 1, new CommandComplete("SELECT 1"), new ReadyForQuery(TransactionStatus.Idle), new CommandComplete("SELECT 1"), new ReadyForQuery(TransactionStatus.Idle), new CommandComplete("SELECT 1"), new ReadyForQuery(TransactionStatus.Idle));

        JsonElement stats = Run(wire);
        Assert.Equal(1, stats.GetProperty("events").GetProperty("gap").GetProperty("count").GetInt64());
        Assert.Equal(1, stats.GetProperty("connection_list")[0].GetProperty("gaps").GetInt64());
        Assert.True(stats.GetProperty("unfinished_calls").GetInt64() >= 1);
        Assert.True(stats.GetProperty("connection_list")[0].GetProperty("gap_bytes").GetInt64() > 0);
    }

    [Fact]
    public void AnEncryptedConnection_IsCountedAsAnEvent_WithItsEndpoints()
    {
        var wire = new Wire();
        wire.Send(true, 1, new SSLRequest());
        wire.SendBytes(false, 1, "S"u8.ToArray());
        wire.SendBytes(true, 1, [0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]);

        JsonElement stats = Run(wire);
        Assert.Equal(1, stats.GetProperty("events").GetProperty("encrypted").GetProperty("count").GetInt64());
        JsonElement connection = stats.GetProperty("connection_list").EnumerateArray().Single();
        Assert.Equal("10.0.0.7:40001 -> 10.0.0.1:5432", connection.GetProperty("endpoints").GetString());
        Assert.Equal(2, connection.GetProperty("messages").GetInt64());
        Assert.Equal(8, connection.GetProperty("frontend_bytes").GetInt64());
        Assert.Empty(stats.GetProperty("queries").EnumerateArray());
    }

    [Fact]
    public void DistinctQueriesBeyondTheBound_AreCountedAsOther()
    {
        var wire = new Wire();
        wire.Login();
        for (int i = 0; i < CaptureStatistics.MaxQueries + 5; i++)
        {
            wire.Send(true, 1, new Query($"SELECT c{i} FROM t"));
            wire.Send(false, 1, new CommandComplete("SELECT 0"), new ReadyForQuery(TransactionStatus.Idle));
        }

        JsonElement stats = Run(wire);
        Assert.True(stats.GetProperty("queries_capped").GetBoolean());
        JsonElement[] queries = [.. stats.GetProperty("queries").EnumerateArray()];
        Assert.Equal(CaptureStatistics.MaxQueries + 1, queries.Length);
        JsonElement other = queries.Single(q => q.GetProperty("other").GetBoolean());
        Assert.Equal(5, other.GetProperty("calls").GetInt64());

        // A query already known is still counted as itself.
        Assert.Equal(1, QueryNamed(stats, "SELECT c0 FROM t").GetProperty("calls").GetInt64());
    }

    [Fact]
    public void CallsBeyondTheReservoir_GiveASampledP95()
    {
        var wire = new Wire();
        wire.Login();
        int calls = CaptureStatistics.ReservoirSize + 200;
        for (int i = 0; i < calls; i++)
        {
            // Most calls take 1 ms, one in ten 10 ms: the 95th percentile is 10 ms, sampled or not.
            wire.Send(true, 1, new Query("SELECT 1"));
            wire.Send(false, i % 10 == 0 ? 10 : 1, new CommandComplete("SELECT 1"), new ReadyForQuery(TransactionStatus.Idle));
        }

        JsonElement select = QueryNamed(Run(wire), "SELECT $1");
        Assert.Equal(calls, select.GetProperty("calls").GetInt64());
        Assert.True(select.GetProperty("p95_sampled").GetBoolean());
        Assert.Equal(10.0, select.GetProperty("p95_ms").GetDouble());
        int slow = (calls + 9) / 10;
        Assert.Equal((slow * 10.0) + (calls - slow), select.GetProperty("total_ms").GetDouble(), 3);
    }

    [Fact]
    public void BatchesWhoseAnswersWereNotCaptured_AreBounded_AndCountedUnfinished()
    {
        var wire = new Wire();
        wire.Login();
        int batches = CaptureStatistics.MaxPendingCalls + 10;
        for (int i = 0; i < batches; i++)
        {
            wire.Send(true, 1, new Query("SELECT 1"));
        }

        JsonElement stats = Run(wire);
        Assert.Equal(batches, stats.GetProperty("unfinished_calls").GetInt64());
        Assert.Empty(stats.GetProperty("queries").EnumerateArray());
    }

    [Fact]
    public void TheTable_ListsQueriesMessagesErrorsAndConnections()
    {
        var wire = new Wire();
        wire.Login();
        wire.Send(true, 1, new Query("SELECT * FROM missing WHERE a = 'x'"));
        wire.Send(false, 3, Error("42P01"), new ReadyForQuery(TransactionStatus.Idle));

        string table = Encoding.UTF8.GetString(Output(wire, json: false));
        string[] lines = table.Split('\n');
        string query = lines.Single(l => l.EndsWith("SELECT * FROM missing WHERE a = $1", StringComparison.Ordinal));
        Assert.Equal(["1", "0", "3.000", "3.000", "3.000", "1"], query.Split(' ', StringSplitOptions.RemoveEmptyEntries)[..6]);
        Assert.Contains(lines, l => l.Trim() == "1  42P01");
        Assert.Contains(lines, l => l.Trim().StartsWith("1 ", StringComparison.Ordinal) && l.EndsWith("F Query", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("10.0.0.7:40001 -> 10.0.0.1:5432 (closed)", StringComparison.Ordinal));
    }

    [Fact]
    public void StatsWithRegress_IsAUsageError()
    {
        CliResult result = CliRunner.Run("capture", "--stats", "--regress", "-");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--stats", result.Stderr);
    }

    [Fact]
    public void TheHelp_DescribesTheStatistics()
    {
        CliResult result = CliRunner.Run("capture", "--help");
        Assert.Contains("--stats", result.Stdout);
        Assert.Contains("\"p95_ms\"", result.Stdout);
        Assert.Contains("10,000 distinct queries", result.Stdout);
    }

    [Fact]
    public async Task ACaptureOfPgbenchAndPsql_AgainstPostgreSql15_GivesTheirQueriesCallsRowsAndErrors()
    {
        const int Transactions = 15;
        const int Clients = 2;
        await using PgServer server = await new LocalPgServerProvider().StartAsync(new PgServerOptions { MajorVersion = 15 }, CancellationToken.None);

        // psql and pgbench of the same installation as the server.
        PgBinaries binaries = await PgBinaries.FindLocalAsync(15, CancellationToken.None) ?? throw new InvalidOperationException("no local PostgreSQL 15 binaries");
        string psql = Path.Combine(binaries.BinDirectory, "psql");
        string pgbench = Path.Combine(binaries.BinDirectory, "pgbench");
        string user = server.Role(PgAuthMethod.Trust).Name;
        string port = server.Port.ToString(CultureInfo.InvariantCulture);
        string[] connect = ["-h", server.Host, "-p", port, "-U", user];

        // Plain text, so that the capture can be decoded.
        var environment = new Dictionary<string, string> { ["PGSSLMODE"] = "disable", ["PGCONNECT_TIMEOUT"] = "30" };

        // The tables are made before the capture starts: only the runs are captured.
        Succeed(ExternalProcess.Run(psql, [.. connect, "-X", "-d", "postgres", "-c", "CREATE DATABASE statsbench"], environment: environment));
        Succeed(ExternalProcess.Run(pgbench, [.. connect, "-i", "-s", "1", "statsbench"], environment: environment));

        using var directory = new TempDirectory();
        string file = Path.Combine(directory.Path, "bench.pcap");
        using (Tcpdump.Start(["-i", "lo", "--immediate-mode", "-U", "-B", "32768", "-w", file, $"tcp port {port}"]))
        {
            string[] run = ["-n", "-t", Transactions.ToString(CultureInfo.InvariantCulture), "-c", Clients.ToString(CultureInfo.InvariantCulture)];
            Succeed(ExternalProcess.Run(pgbench, [.. connect, .. run, "-M", "prepared", "statsbench"], environment: environment));
            Succeed(ExternalProcess.Run(pgbench, [.. connect, .. run, "-M", "simple", "statsbench"], environment: environment));
            ProcessOutput session = ExternalProcess.Run(psql, [.. connect, "-X", "-d", "statsbench", "-c", "SELECT generate_series(1, 7)", "-c", "SELECT * FROM no_such_table"], environment: environment);
            Assert.Contains("no_such_table", session.Stderr);
            Tcpdump.WaitForEnds(file, TimeSpan.FromSeconds(30));
        }

        CliResult result = CliRunner.Run("capture", "--port", port, "--stats", "--format", "json", file);
        Assert.True(result.ExitCode == 0, result.ToString());
        using JsonDocument document = JsonDocument.Parse(result.Stdout);
        JsonElement stats = document.RootElement;
        Assert.False(stats.GetProperty("events").TryGetProperty("gap", out _), result.Stdout);
        Assert.True(stats.GetProperty("queries").GetArrayLength() > 0, $"host {server.Host}: {result}");

        // pgbench's TPC-B-like script, prepared (Parse text with $n) and simple (constants in the
        // text) normalized to the same queries: Transactions * Clients calls of each per run.
        int calls = 2 * Transactions * Clients;
        string[] script =
        [
            "BEGIN;",
            "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;",
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
            "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2;",
            "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2;",
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP);",
            "END;",
        ];
        foreach (string statement in script)
        {
            JsonElement query = QueryNamed(stats, statement);
            Assert.True(calls == query.GetProperty("calls").GetInt64(), $"{statement}: {query}");
            Assert.Equal(0, query.GetProperty("errors").GetInt64());
            Assert.True(query.GetProperty("total_ms").GetDouble() > 0, query.ToString());
            Assert.True(query.GetProperty("p95_ms").GetDouble() >= query.GetProperty("mean_ms").GetDouble() / 10, query.ToString());
        }

        Assert.Equal(calls, QueryNamed(stats, "SELECT abalance FROM pgbench_accounts WHERE aid = $1;").GetProperty("rows").GetInt64());
        Assert.Equal(calls, QueryNamed(stats, "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;").GetProperty("rows").GetInt64());

        JsonElement series = QueryNamed(stats, "SELECT generate_series($1, $2)");
        Assert.Equal(1, series.GetProperty("calls").GetInt64());
        Assert.Equal(7, series.GetProperty("rows").GetInt64());

        JsonElement missing = QueryNamed(stats, "SELECT * FROM no_such_table");
        Assert.Equal(1, missing.GetProperty("errors").GetInt64());
        Assert.Equal(1, stats.GetProperty("errors").GetProperty("42P01").GetInt64());
        Assert.Equal(1, stats.GetProperty("connection_list").EnumerateArray().Sum(c => c.GetProperty("errors").GetInt64()));

        // Every connection was seen from its start to its end, with its bytes both ways.
        JsonElement[] connections = [.. stats.GetProperty("connection_list").EnumerateArray()];
        Assert.Equal(stats.GetProperty("connections").GetInt64(), connections.Length);
        Assert.True(connections.Length >= 2 * Clients + 1, stats.GetProperty("connection_list").ToString());
        Assert.All(connections, c => Assert.Equal("closed", c.GetProperty("ended").GetString()));
        Assert.All(connections, c => Assert.True(c.GetProperty("frontend_bytes").GetInt64() > 0 && c.GetProperty("backend_bytes").GetInt64() > 0));
        Assert.Equal(0, stats.GetProperty("unfinished_calls").GetInt64());
        JsonElement executes = stats.GetProperty("messages").GetProperty("types").EnumerateArray().Single(t => t.GetProperty("name").GetString() == "Execute");
        Assert.Equal(script.Length * Transactions * Clients, executes.GetProperty("count").GetInt64());
    }

    private static void Succeed(ProcessOutput output) => Assert.True(output.ExitCode == 0, output.ToString());

    private static ErrorResponse Error(string sqlstate)
        => new([new ErrorResponse.Field((byte)'S', "ERROR"), new ErrorResponse.Field((byte)'C', sqlstate), new ErrorResponse.Field((byte)'M', "failed")]);

    private static JsonElement QueryNamed(JsonElement stats, string text)
    {
        JsonElement[] matches = [.. stats.GetProperty("queries").EnumerateArray().Where(q => q.GetProperty("query").GetString() == text)];
        Assert.True(matches.Length == 1, $"query '{text}' not in: {stats.GetProperty("queries")}");
        return matches[0];
    }

    private static JsonElement Run(Wire wire)
    {
        using var document = JsonDocument.Parse(Output(wire, json: true));
        return document.RootElement.Clone();
    }

    private static byte[] Output(Wire wire, bool json)
    {
        using var output = new MemoryStream();
        var statistics = new CaptureStatistics(output, json);
        var decoder = new CaptureDecoder([5432], server: null, statistics);
        wire.Finish(decoder);

        decoder.Finish(wire.Time);
        statistics.Complete();
        return output.ToArray();
    }

    /// <summary>A connection's segments, each sent a given number of milliseconds after the one before.</summary>
    private sealed class Wire
    {
        private readonly List<(bool ToServer, uint Sequence, TcpFlags Flags, byte[] Payload, DateTime Time, uint Ack)> _segments = [];
        private uint _client = 1000;
        private uint _server = 50_000;

        public Wire()
        {
            Time = Start;
            _segments.Add((true, _client++, TcpFlags.Syn, [], Time, 0));
            _segments.Add((false, _server++, TcpFlags.Syn | TcpFlags.Ack, [], Time, _client));
        }

        public DateTime Time { get; private set; }

        public void Login()
        {
            Send(true, 1, new StartupMessage(196608, [new StartupMessage.Parameter("user", "u")]));
            Send(false, 1, new AuthenticationOk(), new ReadyForQuery(TransactionStatus.Idle));
        }

        public void Send(bool toServer, int milliseconds, params IPgMessage[] messages) => SendBytes(toServer, milliseconds, Conversation.Bytes(messages));

        public void SendBytes(bool toServer, int milliseconds, byte[] bytes)
        {
            Time = Time.AddMilliseconds(milliseconds);
            ref uint sequence = ref toServer ? ref _client : ref _server;
            _segments.Add((toServer, sequence, TcpFlags.Ack | TcpFlags.Psh, bytes, Time, toServer ? _server : _client));
            sequence += (uint)bytes.Length;
        }

        /// <summary>Bytes sent but not captured.</summary>
        public void Skip(bool toServer, byte[] bytes)
        {
            ref uint sequence = ref toServer ? ref _client : ref _server;
            sequence += (uint)bytes.Length;
        }

        public void Finish(CaptureDecoder decoder)
        {
            Time = Time.AddMilliseconds(1);
            _segments.Add((true, _client++, TcpFlags.Fin | TcpFlags.Ack, [], Time, _server));
            _segments.Add((false, _server++, TcpFlags.Fin | TcpFlags.Ack, [], Time, _client));
            foreach ((bool toServer, uint sequence, TcpFlags flags, byte[] payload, DateTime time, uint ack) in _segments)
            {
                decoder.Add(new TcpSegment(time, toServer ? Client : Server, toServer ? Server : Client, sequence, flags, payload, truncated: false, acknowledgment: ack));
            }
        }
    }
}
