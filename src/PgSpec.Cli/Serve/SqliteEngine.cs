using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace PgSpec.Cli.Serve;

/// <summary>
/// The SQL engine behind <c>pgspec serve</c>: a SQLite database that sessions speak to as if it were
/// PostgreSQL. A file path opens (or creates) that file; ":memory:" makes one in-memory database that
/// every session shares and that lives as long as the engine.
/// </summary>
internal sealed class SqliteEngine : IDisposable
{
    private readonly string connectionString;
    private readonly SqliteConnection? keeper;
    private int nextProcessId = Environment.ProcessId % 100_000 * 10;
    private bool disposed;

    public SqliteEngine(string database)
    {
        ArgumentException.ThrowIfNullOrEmpty(database);
        Database = database;
        if (database == ":memory:")
        {
            // The memdb VFS shares one in-memory database between the connections that name it
            // (a name starting with '/'), with the locking of a file: the busy timeout works as for files.
            string name = $"file:/pgspec-{Guid.NewGuid():N}?vfs=memdb";
            connectionString = new SqliteConnectionStringBuilder { DataSource = name, Pooling = false }.ToString();
            keeper = new SqliteConnection(connectionString);
            keeper.Open();
        }
        else
        {
            connectionString = new SqliteConnectionStringBuilder { DataSource = database, Mode = SqliteOpenMode.ReadWriteCreate, Pooling = false }.ToString();
            // Fail now, with the reason, when the file cannot be opened or is not a database; and
            // journal ahead (WAL), so that readers do not wait for a session that writes.
            using var probe = new SqliteConnection(connectionString);
            probe.Open();
            using SqliteCommand wal = probe.CreateCommand();
            wal.CommandText = "PRAGMA journal_mode=WAL";
            wal.ExecuteNonQuery();
        }
        SqliteVersion = raw.sqlite3_libversion().utf8_to_string();
        ServerVersion = $"16.0 (PgSpec serve, SQLite {SqliteVersion})";
    }

    /// <summary>The database as given (a path or ":memory:").</summary>
    public string Database { get; }

    /// <summary>The version of the SQLite library.</summary>
    public string SqliteVersion { get; }

    /// <summary>What server_version reports: PostgreSQL-shaped (a version number first) so drivers parse it.</summary>
    public string ServerVersion { get; }

    /// <summary>What version() returns.</summary>
    public string VersionText => $"PostgreSQL 16.0 (PgSpec serve, SQLite {SqliteVersion}) on {RuntimeInformation.OSArchitecture.ToString().ToLowerInvariant()}-{(OperatingSystem.IsWindows() ? "windows" : OperatingSystem.IsMacOS() ? "apple-darwin" : "pc-linux-gnu")}, 64-bit";

    /// <summary>How long a statement waits for another session's lock before it fails (55P03); 5 s by default.</summary>
    public TimeSpan BusyTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Opens a session for <paramref name="user"/> with the StartupMessage's parameters (database,
    /// application_name, client_encoding, DateStyle, TimeZone, options=-c name=value, ...).
    /// Throws SqlError (FATAL) for a parameter it cannot accept.
    /// </summary>
    public SqliteSession OpenSession(string user, IReadOnlyDictionary<string, string> startupParameters, int? processId = null)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        // The protocol session's process id when there is one (pg_backend_pid() and BackendKeyData agree).
        int pid = processId ?? Interlocked.Increment(ref nextProcessId);
        var connection = new SqliteConnection(connectionString);
        try
        {
            connection.Open();
            return new SqliteSession(this, connection, user, startupParameters, pid);
        }
        catch (SqlError e)
        {
            connection.Dispose();
            throw e.Severity == "FATAL" ? e : new SqlError("FATAL", e.SqlState, e.Message, e.Detail, e.Hint);
        }
        catch (SqliteException e)
        {
            connection.Dispose();
            throw SqlError.Fatal(SqlStates.IoError, $"could not open the database: {e.Message}");
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        keeper?.Dispose();
    }
}

/// <summary>The functions PostgreSQL has and SQLite lacks, registered on each session's connection.</summary>
internal static class SqliteFunctions
{
    public static void Register(SqliteSession session, sqlite3 db)
    {
        const int Utf8 = raw.SQLITE_UTF8;
        const int Deterministic = Utf8 | 0x800; // SQLITE_DETERMINISTIC
        Create(db, "version", 0, Deterministic, session, (ctx, s, _) => raw.sqlite3_result_text(ctx, s.Engine.VersionText));
        Create(db, "pg_backend_pid", 0, Deterministic, session, (ctx, s, _) => raw.sqlite3_result_int64(ctx, s.ProcessId));
        Create(db, "current_database", 0, Deterministic, session, (ctx, s, _) => raw.sqlite3_result_text(ctx, s.DatabaseName));
        Create(db, "current_schema", 0, Deterministic, session, (ctx, _, _) => raw.sqlite3_result_text(ctx, "public"));
        Create(db, "current_user", 0, Deterministic, session, (ctx, s, _) => raw.sqlite3_result_text(ctx, s.User));
        Create(db, "session_user", 0, Deterministic, session, (ctx, s, _) => raw.sqlite3_result_text(ctx, s.User));
        Create(db, "current_setting", 1, Utf8, session, (ctx, s, args) => CurrentSetting(ctx, s, args, missingOk: false));
        Create(db, "current_setting", 2, Utf8, session, (ctx, s, args) =>
            CurrentSetting(ctx, s, args, missingOk: raw.sqlite3_value_type(args[1]) != raw.SQLITE_NULL && raw.sqlite3_value_int64(args[1]) != 0));
        Create(db, "set_config", 3, Utf8, session, SetConfig);
        Create(db, "pg_sleep", 1, Utf8, session, Sleep);
        // No advisory lock is ever held: releasing them all is done (Npgsql's reset of a pooled connection calls it).
        Create(db, "pg_advisory_unlock_all", 0, Utf8, session, (ctx, _, _) => raw.sqlite3_result_null(ctx));
        foreach (string name in new[] { "now", "statement_timestamp", "transaction_timestamp", "clock_timestamp" })
            Create(db, name, 0, Utf8, session, (ctx, _, _) => raw.sqlite3_result_text(ctx, PgValues.FormatTimestamp(DateTime.UtcNow, withZone: true, sqliteStyle: true)));
        Create(db, "gen_random_uuid", 0, Utf8, session, (ctx, _, _) => raw.sqlite3_result_text(ctx, Guid.NewGuid().ToString()));
    }

    private delegate void Function(sqlite3_context ctx, SqliteSession session, sqlite3_value[] args);

    private static void Create(sqlite3 db, string name, int args, int flags, SqliteSession session, Function f)
    {
        int rc = raw.sqlite3_create_function(db, name, args, flags, session, (ctx, userData, values) =>
        {
            var s = (SqliteSession)userData;
            try
            {
                f(ctx, s, values);
            }
            catch (SqlError e)
            {
                s.PendingFunctionError = e;
                raw.sqlite3_result_error(ctx, e.Message);
            }
            catch (Exception e)
            {
                raw.sqlite3_result_error(ctx, e.Message);
            }
        });
        if (rc != raw.SQLITE_OK) throw SqlError.Fatal(SqlStates.InternalError, $"could not register function {name}: {raw.sqlite3_errmsg(db).utf8_to_string()}");
    }

    private static string? Text(sqlite3_value v) =>
        raw.sqlite3_value_type(v) == raw.SQLITE_NULL ? null : raw.sqlite3_value_text(v).utf8_to_string();

    private static void CurrentSetting(sqlite3_context ctx, SqliteSession s, sqlite3_value[] args, bool missingOk)
    {
        string? name = Text(args[0]);
        if (name is null) { raw.sqlite3_result_null(ctx); return; }
        string? value = s.Settings.TryGet(name);
        if (value is null)
        {
            if (missingOk) { raw.sqlite3_result_null(ctx); return; }
            throw SessionSettings.Unrecognized(name);
        }
        raw.sqlite3_result_text(ctx, value);
    }

    private static void SetConfig(sqlite3_context ctx, SqliteSession s, sqlite3_value[] args)
    {
        string name = Text(args[0]) ?? throw SqlError.Error(SqlStates.InvalidParameterValue, "SET requires parameter name");
        string value = Text(args[1]) ?? "";
        bool local = raw.sqlite3_value_type(args[2]) != raw.SQLITE_NULL && raw.sqlite3_value_int64(args[2]) != 0;
        s.SetSetting(name, value, local);
        raw.sqlite3_result_text(ctx, s.Settings.Get(name));
    }

    /// <summary>pg_sleep(seconds): waits, and stops with 57014 when the running statement is cancelled.</summary>
    private static void Sleep(sqlite3_context ctx, SqliteSession s, sqlite3_value[] args)
    {
        int type = raw.sqlite3_value_type(args[0]);
        double seconds = type switch
        {
            raw.SQLITE_NULL => 0,
            raw.SQLITE_INTEGER => raw.sqlite3_value_int64(args[0]),
            raw.SQLITE_FLOAT => raw.sqlite3_value_double(args[0]),
            _ => PgValues.ParseFloat(PgType.Float8, Text(args[0]) ?? "0"),
        };
        var token = s.CurrentCancel;
        s.RaiseSleepStarted();
        if (double.IsNaN(seconds) || seconds <= 0)
        {
            raw.sqlite3_result_null(ctx);
            return;
        }
        var until = Stopwatch.GetTimestamp() + (long)(Math.Min(seconds, TimeSpan.MaxValue.TotalSeconds / 2) * Stopwatch.Frequency);
        while (true)
        {
            if (token.IsCancellationRequested) throw s.CancelError();
            long left = until - Stopwatch.GetTimestamp();
            if (left <= 0) break;
            int ms = (int)Math.Min(int.MaxValue - 1, Math.Max(1, left * 1000 / Stopwatch.Frequency));
            if (token.CanBeCanceled) token.WaitHandle.WaitOne(ms);
            else Thread.Sleep(Math.Min(ms, 1000));
        }
        raw.sqlite3_result_null(ctx);
    }

    public static string Invariant(long v) => v.ToString(CultureInfo.InvariantCulture);
}
