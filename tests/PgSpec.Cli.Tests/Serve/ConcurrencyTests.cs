using PgSpec.Cli.Serve;

namespace PgSpec.Cli.Tests.Serve;

public class ConcurrencyTests
{
    [Fact]
    public async Task Pg_sleep_is_cancelled_by_the_cursor_token()
    {
        using var h = new EngineHarness();
        var s = h.Session;
        var started = new SemaphoreSlim(0);
        s.SleepStarted += () => started.Release();
        using var cts = new CancellationTokenSource();
        using var st = s.Prepare("SELECT pg_sleep(60)", []);
        Assert.Equal(PgType.VoidOid, st.Columns![0].TypeOid);
        Assert.Equal("pg_sleep", st.Columns![0].Name);
        s.BeginImplicit();
        using var c = s.Open(st, [], [], cts.Token);
        var reading = Task.Run(() => c.Read());
        Assert.True(await started.WaitAsync(TimeSpan.FromSeconds(30)), "pg_sleep did not start");
        await cts.CancelAsync();
        var e = await Assert.ThrowsAsync<SqlError>(() => reading.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal("57014", e.SqlState);
        Assert.Equal("canceling statement due to user request", e.Message);
        s.OnError();
        s.EndImplicit(false);
        Assert.Equal("1", h.Scalar("SELECT 1"));
    }

    [Fact]
    public async Task Statement_timeout_cancels_pg_sleep()
    {
        using var h = new EngineHarness();
        h.Query("SET statement_timeout = 50");
        var task = Task.Run(() => h.Query("SELECT pg_sleep(60)"));
        var e = await Assert.ThrowsAsync<SqlError>(() => task.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(("57014", "canceling statement due to statement timeout"), (e.SqlState, e.Message));
    }

    [Fact]
    public void Sessions_share_one_in_memory_database()
    {
        using var h = new EngineHarness();
        using var other = h.Open();
        h.Query("CREATE TABLE shared (a INTEGER); INSERT INTO shared VALUES (1)");
        Assert.Equal("1", h.Query("SELECT a FROM shared", other).Single().Rows.Single()[0]);
        using var separate = new EngineHarness();
        Assert.Equal("42P01", EngineHarness.Error(() => separate.Query("SELECT a FROM shared")).SqlState);
    }

    [Fact]
    public void A_writer_waits_a_bounded_time_for_another_sessions_lock()
    {
        string path = Path.Combine(Path.GetTempPath(), $"pgspec-serve-{Guid.NewGuid():N}.db");
        try
        {
            using (var h = new EngineHarness(path))
            {
                h.Engine.BusyTimeout = TimeSpan.FromMilliseconds(200);
                using var other = h.Open();
                h.Query("CREATE TABLE t (a INTEGER)");
                h.Query("BEGIN; INSERT INTO t VALUES (1)");
                var e = EngineHarness.Error(() => h.Query("INSERT INTO t VALUES (2)", other));
                Assert.True(e.SqlState is "55P03" or "40001", e.ToString());
                Assert.Equal(SqlTransactionState.Idle, other.TransactionState);
                h.Query("COMMIT");
                h.Query("INSERT INTO t VALUES (2)", other);
                Assert.Equal("2", h.Scalar("SELECT count(*) FROM t"));
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_file_database_keeps_its_data()
    {
        string path = Path.Combine(Path.GetTempPath(), $"pgspec-serve-{Guid.NewGuid():N}.db");
        try
        {
            using (var h = new EngineHarness(path)) h.Query("CREATE TABLE t (a TEXT); INSERT INTO t VALUES ('kept')");
            using (var h = new EngineHarness(path)) Assert.Equal("kept", h.Scalar("SELECT a FROM t"));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
