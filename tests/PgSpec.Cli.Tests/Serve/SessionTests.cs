using System.Text;
using PgSpec.Cli.Serve;

namespace PgSpec.Cli.Tests.Serve;

public class SessionTests : IDisposable
{
    private readonly EngineHarness h = new();

    public void Dispose() => h.Dispose();

    [Fact]
    public void Initial_parameters_are_those_PostgreSQL_sends()
    {
        using var s = h.Open(new Dictionary<string, string> { ["database"] = "db", ["application_name"] = "app", ["TimeZone"] = "Europe/Paris" });
        var p = s.InitialParameters.ToDictionary(kv => kv.Key, kv => kv.Value);
        Assert.StartsWith("16.0 (PgSpec serve, SQLite 3.", p["server_version"]);
        Assert.Equal("UTF8", p["server_encoding"]);
        Assert.Equal("UTF8", p["client_encoding"]);
        Assert.Equal("ISO, MDY", p["DateStyle"]);
        Assert.Equal("on", p["integer_datetimes"]);
        Assert.Equal("on", p["standard_conforming_strings"]);
        Assert.Equal("Europe/Paris", p["TimeZone"]);
        Assert.Equal("postgres", p["IntervalStyle"]);
        Assert.Equal("tester", p["session_authorization"]);
        Assert.Equal("app", p["application_name"]);
        Assert.Equal("off", p["in_hot_standby"]);
        Assert.Equal("off", p["default_transaction_read_only"]);
        Assert.Equal("4096", p["scram_iterations"]);
        Assert.Contains("is_superuser", p.Keys);
        Assert.Empty(s.TakeParameterChanges());
    }

    [Fact]
    public void A_bad_startup_parameter_is_FATAL()
    {
        var e = EngineHarness.Error(() => h.Open(new Dictionary<string, string> { ["client_encoding"] = "LATIN1" }));
        Assert.Equal("FATAL", e.Severity);
        Assert.Equal("22023", e.SqlState);
        Assert.Equal("invalid value for parameter \"client_encoding\": \"LATIN1\"", e.Message);
        var u = EngineHarness.Error(() => h.Open(new Dictionary<string, string> { ["no_such_thing"] = "1" }));
        Assert.Equal("42704", u.SqlState);
        using var ok = h.Open(new Dictionary<string, string> { ["options"] = "-c extra_float_digits=0 --search_path=x", ["client_encoding"] = "SQL_ASCII" });
        Assert.Equal("0", h.Query("SHOW extra_float_digits", ok)[0].Rows[0][0]);
    }

    [Fact]
    public void Set_show_reset_and_parameter_changes()
    {
        var r = h.Query("SET DateStyle TO 'iso, dmy'").Single();
        Assert.Equal("SET", r.Tag);
        Assert.Null(r.Columns);
        Assert.Equal([new KeyValuePair<string, string>("DateStyle", "ISO, DMY")], h.Session.TakeParameterChanges());
        Assert.Empty(h.Session.TakeParameterChanges());
        var show = h.Query("SHOW datestyle").Single();
        Assert.Equal("DateStyle", Assert.Single(show.Columns!).Name);
        Assert.Equal("ISO, DMY", show.Rows.Single()[0]);
        Assert.Equal("SHOW", show.Tag);
        h.Query("SET application_name = 'x'; SET TIME ZONE 'UTC'; SET search_path TO public, other");
        Assert.Equal("public, other", h.Scalar("SHOW search_path"));
        Assert.Contains(new KeyValuePair<string, string>("application_name", "x"), h.Session.TakeParameterChanges());
        Assert.Equal("x", h.Scalar("SELECT current_setting('application_name')"));
        Assert.Equal("RESET", h.Query("RESET ALL").Single().Tag);
        var changes = h.Session.TakeParameterChanges();
        Assert.Contains(new KeyValuePair<string, string>("DateStyle", "ISO, MDY"), changes);
        Assert.Contains(new KeyValuePair<string, string>("application_name", ""), changes);
        var all = h.Query("SHOW ALL").Single();
        Assert.Equal(["name", "setting", "description"], all.Columns!.Select(c => c.Name));
        Assert.Contains(all.Rows, row => row[0] == "TimeZone" && row[1] == "UTC");
        Assert.Equal("42704", EngineHarness.Error(() => h.Query("SHOW nonsense")).SqlState);
        Assert.Equal("42704", EngineHarness.Error(() => h.Query("SET nonsense = 1")).SqlState);
        Assert.Equal("55P02", EngineHarness.Error(() => h.Query("SET server_version = '1'")).SqlState);
        Assert.Equal("22023", EngineHarness.Error(() => h.Query("SET client_encoding = 'LATIN1'")).SqlState);
        h.Query("SET my.custom = 'v'");
        Assert.Equal("v", h.Scalar("SHOW my.custom"));
    }

    [Fact]
    public void Set_is_undone_by_a_rollback_and_set_local_lasts_for_the_transaction()
    {
        h.Query("BEGIN; SET application_name = 'inside'");
        h.Query("ROLLBACK");
        Assert.Equal("", h.Scalar("SHOW application_name"));
        h.Query("BEGIN; SET LOCAL application_name = 'local'");
        Assert.Equal("local", h.Scalar("SHOW application_name"));
        h.Query("COMMIT");
        Assert.Equal("", h.Scalar("SHOW application_name"));
        h.Query("SET LOCAL application_name = 'nowhere'");
        Assert.Contains(h.Session.TakeNotices(), n => n.SqlState == "25P01");
        Assert.Equal("", h.Scalar("SHOW application_name"));
    }

    [Fact]
    public void Explicit_transactions_commit_and_roll_back()
    {
        h.Query("CREATE TABLE t (a INTEGER)");
        Assert.Equal(SqlTransactionState.Idle, h.Session.TransactionState);
        Assert.Equal("BEGIN", h.Query("BEGIN").Single().Tag);
        Assert.Equal(SqlTransactionState.InTransaction, h.Session.TransactionState);
        Assert.Equal("INSERT 0 1", h.Query("INSERT INTO t VALUES (1)").Single().Tag);
        Assert.Equal("ROLLBACK", h.Query("ROLLBACK").Single().Tag);
        Assert.Equal("0", h.Scalar("SELECT count(*) FROM t"));
        h.Query("START TRANSACTION ISOLATION LEVEL SERIALIZABLE; INSERT INTO t VALUES (2); COMMIT");
        Assert.Equal("1", h.Scalar("SELECT count(*) FROM t"));
        Assert.Equal(SqlTransactionState.Idle, h.Session.TransactionState);
    }

    [Fact]
    public void Warnings_for_commit_outside_and_begin_inside_a_transaction()
    {
        Assert.Equal("COMMIT", h.Query("COMMIT").Single().Tag);
        var n = Assert.Single(h.Session.TakeNotices());
        Assert.Equal(("WARNING", "25P01", "there is no transaction in progress"), (n.Severity, n.SqlState, n.Message));
        h.Query("BEGIN");
        Assert.Equal("BEGIN", h.Query("BEGIN").Single().Tag);
        var w = Assert.Single(h.Session.TakeNotices());
        Assert.Equal(("WARNING", "25001", "there is already a transaction in progress"), (w.Severity, w.SqlState, w.Message));
        h.Query("ROLLBACK");
        h.Query("ABORT");
        Assert.Equal("25P01", Assert.Single(h.Session.TakeNotices()).SqlState);
    }

    [Fact]
    public void An_error_in_an_explicit_transaction_fails_it_until_its_end()
    {
        h.Query("CREATE TABLE t (a INTEGER PRIMARY KEY)");
        h.Query("BEGIN; INSERT INTO t VALUES (1)");
        Assert.Equal("23505", EngineHarness.Error(() => h.Query("INSERT INTO t VALUES (1)")).SqlState);
        Assert.Equal(SqlTransactionState.Failed, h.Session.TransactionState);
        var e = EngineHarness.Error(() => h.Query("SELECT 1"));
        Assert.Equal("25P02", e.SqlState);
        Assert.Equal("current transaction is aborted, commands ignored until end of transaction block", e.Message);
        Assert.Equal("ROLLBACK", h.Query("COMMIT").Single().Tag);
        Assert.Equal(SqlTransactionState.Idle, h.Session.TransactionState);
        Assert.Equal("0", h.Scalar("SELECT count(*) FROM t"));
    }

    [Fact]
    public void Savepoints_recover_a_failed_transaction()
    {
        h.Query("CREATE TABLE t (a INTEGER PRIMARY KEY)");
        h.Query("BEGIN; INSERT INTO t VALUES (1); SAVEPOINT s1");
        EngineHarness.Error(() => h.Query("INSERT INTO t VALUES (1)"));
        Assert.Equal(SqlTransactionState.Failed, h.Session.TransactionState);
        Assert.Equal("ROLLBACK", h.Query("ROLLBACK TO SAVEPOINT s1").Single().Tag);
        Assert.Equal(SqlTransactionState.InTransaction, h.Session.TransactionState);
        h.Query("INSERT INTO t VALUES (2); RELEASE SAVEPOINT s1; COMMIT");
        Assert.Equal("2", h.Scalar("SELECT count(*) FROM t"));
        Assert.Equal("25P01", EngineHarness.Error(() => h.Query("SAVEPOINT x")).SqlState);
    }

    [Fact]
    public void An_implicit_block_is_all_or_nothing_and_BEGIN_makes_it_explicit()
    {
        h.Query("CREATE TABLE t (a INTEGER PRIMARY KEY)");
        Assert.Equal("23505", EngineHarness.Error(() => h.Query("INSERT INTO t VALUES (1); INSERT INTO t VALUES (1)")).SqlState);
        Assert.Equal(SqlTransactionState.Idle, h.Session.TransactionState);
        Assert.Equal("0", h.Scalar("SELECT count(*) FROM t"));
        h.Query("INSERT INTO t VALUES (5); BEGIN; INSERT INTO t VALUES (6)");
        Assert.Equal(SqlTransactionState.InTransaction, h.Session.TransactionState);
        h.Query("ROLLBACK");
        Assert.Equal("0", h.Scalar("SELECT count(*) FROM t"));
        h.Query("INSERT INTO t VALUES (7); COMMIT; INSERT INTO t VALUES (8)");
        Assert.Equal("2", h.Scalar("SELECT count(*) FROM t"));
    }

    [Fact]
    public void Extended_batch_up_to_Sync_is_one_implicit_transaction()
    {
        var s = h.Session;
        h.Query("CREATE TABLE t (a INTEGER PRIMARY KEY)");
        s.BeginImplicit();
        using (var st = s.Prepare("INSERT INTO t VALUES ($1)", [PgType.Int4Oid]))
        {
            using (var c = s.Open(st, [Encoding.ASCII.GetBytes("1")], [], CancellationToken.None)) Assert.Equal("INSERT 0 1", c.CommandTag);
            using var c2 = s.Open(st, [Encoding.ASCII.GetBytes("1")], [], CancellationToken.None);
            Assert.Equal("23505", Assert.Throws<SqlError>(() => c2.CommandTag).SqlState);
            s.OnError();
        }
        s.EndImplicit(false);
        Assert.Equal("0", h.Scalar("SELECT count(*) FROM t"));
    }

    [Fact]
    public void Command_tags_are_worded_as_PostgreSQL_words_them()
    {
        Assert.Equal("CREATE TABLE", h.Query("CREATE TABLE t (a INTEGER, b TEXT)").Single().Tag);
        Assert.Equal("CREATE INDEX", h.Query("CREATE UNIQUE INDEX i ON t (a)").Single().Tag);
        Assert.Equal("INSERT 0 3", h.Query("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')").Single().Tag);
        Assert.Equal("UPDATE 2", h.Query("UPDATE t SET b = 'x' WHERE a > 1").Single().Tag);
        var returning = h.Query("DELETE FROM t WHERE a = 3 RETURNING a, b AS bee").Single();
        Assert.Equal("DELETE 1", returning.Tag);
        Assert.Equal(["a", "bee"], returning.Columns!.Select(c => c.Name));
        Assert.Equal("SELECT 2", h.Query("SELECT * FROM t").Single().Tag);
        Assert.Equal("CREATE VIEW", h.Query("CREATE VIEW v AS SELECT a FROM t").Single().Tag);
        Assert.Equal("DROP VIEW", h.Query("DROP VIEW v").Single().Tag);
        Assert.Equal("TRUNCATE TABLE", h.Query("TRUNCATE TABLE t").Single().Tag);
        Assert.Equal("0", h.Scalar("SELECT count(*) FROM t"));
        Assert.Equal("ALTER TABLE", h.Query("ALTER TABLE t ADD COLUMN c REAL").Single().Tag);
        Assert.Equal("DROP TABLE", h.Query("DROP TABLE IF EXISTS t, nothere CASCADE").Single().Tag);
        Assert.Equal("DISCARD ALL", h.Query("DISCARD ALL").Single().Tag);
        using var empty = h.Session.Prepare("  -- nothing\n", []);
        Assert.True(empty.IsEmpty);
        Assert.Empty(h.Session.Split(" ;; /* x */ "));
    }

    [Fact]
    public void Errors_map_to_SQLSTATEs_with_PostgreSQL_wording()
    {
        h.Query("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT NOT NULL, c INTEGER CHECK (c > 0), d INTEGER REFERENCES t(a))");
        void Expect(string sql, string state, string? message = null)
        {
            var e = EngineHarness.Error(() => h.Query(sql));
            Assert.Equal(state, e.SqlState);
            if (message is not null) Assert.Equal(message, e.Message);
        }
        Expect("SELEC 1", "42601", "syntax error at or near \"SELEC\"");
        Expect("SELECT * FROM nothere", "42P01", "relation \"nothere\" does not exist");
        Expect("SELECT nope FROM t", "42703", "column \"nope\" does not exist");
        Expect("CREATE TABLE t (x INTEGER)", "42P07", "relation \"t\" already exists");
        h.Query("INSERT INTO t VALUES (1, 'x', 1, NULL)");
        Expect("INSERT INTO t VALUES (1, 'y', 1, NULL)", "23505", "duplicate key value violates unique constraint \"t_pkey\"");
        Expect("INSERT INTO t VALUES (2, NULL, 1, NULL)", "23502", "null value in column \"b\" of relation \"t\" violates not-null constraint");
        Expect("INSERT INTO t VALUES (3, 'z', -1, NULL)", "23514");
        Expect("INSERT INTO t VALUES (4, 'z', 1, 99)", "23503");
        Expect("SELECT * FROM pg_catalog.pg_type", "42P01", "relation \"pg_catalog.pg_type\" does not exist");
        Expect("SELECT * FROM information_schema.tables", "42P01", "relation \"information_schema.tables\" does not exist");
        Expect("SELECT * FROM pg_class", "42P01", "relation \"pg_class\" does not exist");
        Expect("SELECT nofunc(1)", "42883");
        Expect("LISTEN x", "0A000");
        Expect("SELECT 1; SELECT", "42601");
        Expect("SELECT 'unterminated", "42601");
        Assert.Equal("42601", EngineHarness.Error(() => h.Session.Prepare("SELECT 1; SELECT 2", [])).SqlState);
    }

    [Fact]
    public void Functions_of_PostgreSQL()
    {
        Assert.Equal(h.Session.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture), h.Scalar("SELECT pg_backend_pid()"));
        Assert.Equal("db", h.Scalar("SELECT current_database()"));
        Assert.Equal("on", h.Scalar("SELECT set_config('my.x', 'on', false)"));
        Assert.Equal("on", h.Scalar("SELECT current_setting('my.x')"));
        var now = h.Query("SELECT now()").Single();
        Assert.Equal(PgType.TimestampTzOid, now.Columns![0].TypeOid);
        Assert.EndsWith("+00", now.Rows[0][0]);
    }
}
