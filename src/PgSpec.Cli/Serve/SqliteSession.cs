using System.Diagnostics;
using System.Globalization;
using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace PgSpec.Cli.Serve;

/// <summary>ReadyForQuery's transaction status: 'I', 'T', 'E'.</summary>
internal enum SqlTransactionState
{
    Idle,
    InTransaction,
    Failed,
}

/// <summary>
/// One client's session: its own SQLite connection, its transaction state (implicit blocks,
/// explicit BEGIN ... COMMIT, the failed state), its configuration parameters and notices.
/// Used by one thread at a time; only a cursor's CancellationToken may fire from another.
/// </summary>
internal sealed class SqliteSession : IDisposable
{
    private readonly SqliteConnection connection;
    private readonly List<SqlError> notices = [];
    private readonly HashSet<SqlCursor> openCursors = [];
    private readonly HashSet<SqlStatement> statements = [];
    private readonly List<KeyValuePair<string, string>> initialParameters;
    private bool explicitBlock;
    private bool failed;
    private bool implicitActive;
    private bool disposed;
    private long stepStarted;

    internal SqliteSession(SqliteEngine engine, SqliteConnection connection, string user, IReadOnlyDictionary<string, string> startup, int processId)
    {
        Engine = engine;
        this.connection = connection;
        Db = connection.Handle ?? throw new InvalidOperationException("The SQLite connection is not open.");
        User = user;
        ProcessId = processId;
        DatabaseName = startup.TryGetValue("database", out var db) && db.Length > 0 ? db : user;
        Settings = new SessionSettings(engine.ServerVersion, user);
        foreach (var (name, value) in startup)
        {
            switch (name)
            {
                case "user" or "database" or "replication":
                    continue;
                case "options":
                    foreach (var (n, v) in ParseOptions(value)) StartupSetting(n, v);
                    continue;
                default:
                    StartupSetting(name, value);
                    continue;
            }
        }
        raw.sqlite3_busy_timeout(Db, (int)Math.Clamp(engine.BusyTimeout.TotalMilliseconds, 0, int.MaxValue));
        Exec("PRAGMA foreign_keys = ON", null);
        SqliteFunctions.Register(this, Db);
        initialParameters = Settings.InitialReport();
    }

    private void StartupSetting(string name, string value)
    {
        try
        {
            Settings.SetStartup(name, value);
        }
        catch (SqlError e)
        {
            throw new SqlError("FATAL", e.SqlState, e.Message, e.Detail, e.Hint);
        }
    }

    /// <summary>The -c name=value (and --name=value) pairs of the startup "options" parameter.</summary>
    private static IEnumerable<(string, string)> ParseOptions(string options)
    {
        var words = new List<string>();
        var current = new System.Text.StringBuilder();
        for (int i = 0; i < options.Length; i++)
        {
            char c = options[i];
            if (c == '\\' && i + 1 < options.Length) { current.Append(options[++i]); continue; }
            if (char.IsWhiteSpace(c))
            {
                if (current.Length > 0) { words.Add(current.ToString()); current.Clear(); }
                continue;
            }
            current.Append(c);
        }
        if (current.Length > 0) words.Add(current.ToString());
        for (int i = 0; i < words.Count; i++)
        {
            string w = words[i];
            string? pair = null;
            if (w == "-c" && i + 1 < words.Count) pair = words[++i];
            else if (w.StartsWith("-c", StringComparison.Ordinal)) pair = w[2..];
            else if (w.StartsWith("--", StringComparison.Ordinal)) pair = w[2..];
            if (pair is null) throw SqlError.Fatal(SqlStates.InvalidParameterValue, $"invalid command-line argument for server process: {w}");
            int eq = pair.IndexOf('=');
            if (eq <= 0) throw SqlError.Fatal(SqlStates.SyntaxError, $"-c {pair} requires a value");
            yield return (pair[..eq].Replace('-', '_'), pair[(eq + 1)..]);
        }
    }

    internal SqliteEngine Engine { get; }

    internal sqlite3 Db { get; }

    internal SessionSettings Settings { get; }

    /// <summary>The user the session was opened for.</summary>
    public string User { get; }

    /// <summary>The database name the client asked for (current_database()).</summary>
    public string DatabaseName { get; }

    /// <summary>A number that identifies the session (pg_backend_pid(); usable as BackendKeyData's process ID).</summary>
    public int ProcessId { get; }

    /// <summary>The ParameterStatus messages to send after authentication.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> InitialParameters => initialParameters;

    public SqlTransactionState TransactionState =>
        failed ? SqlTransactionState.Failed : explicitBlock ? SqlTransactionState.InTransaction : SqlTransactionState.Idle;

    /// <summary>The token of the statement being run (pg_sleep waits on it).</summary>
    internal CancellationToken CurrentCancel { get; set; }

    /// <summary>Set when pg_sleep starts waiting (lets a test cancel a statement known to be running).</summary>
    internal event Action? SleepStarted;

    internal void RaiseSleepStarted() => SleepStarted?.Invoke();

    /// <summary>The error a registered function raised, taken by the error that SQLite then reports.</summary>
    internal SqlError? PendingFunctionError { get; set; }

    /// <summary>The 57014 error for the cancellation of the running statement.</summary>
    internal Func<SqlError> CancelErrorFactory { get; set; } = DefaultCancelError;

    internal SqlError CancelError() => CancelErrorFactory();

    internal static SqlError DefaultCancelError() => SqlError.Error(SqlStates.QueryCanceled, "canceling statement due to user request");

    private bool InBlock => explicitBlock || implicitActive;

    private bool SqliteInTransaction => raw.sqlite3_get_autocommit(Db) == 0;

    // ---------------------------------------------------------------- statements

    public IReadOnlyList<string> Split(string sql) => SqlLexer.Split(sql);

    /// <summary>
    /// PostgreSQL parses the whole string of a Query message before it runs any of it: a syntax
    /// error in any statement fails the message before the first statement runs. Throws the first
    /// syntax error of <paramref name="statements"/>. Only errors of the grammar count: the others
    /// (a table that a statement before would create, say) come when the statement runs, as in
    /// PostgreSQL, whose analysis of a statement waits for the statements before it.
    /// </summary>
    public void CheckSyntax(IReadOnlyList<string> statements)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        foreach (string sql in statements)
        {
            try
            {
                // Building prepares the statement and runs nothing.
                StatementBuilder.Build(this, sql, []).Dispose();
            }
            catch (SqlError e) when (!(e.SqlState == SqlStates.SyntaxError && e.Message.StartsWith("syntax error at ", StringComparison.Ordinal)))
            {
            }
        }
    }

    /// <summary>Parse: one statement (a trailing semicolon allowed) into a statement. Throws SqlError.</summary>
    public SqlStatement Prepare(string sql, IReadOnlyList<uint> parameterTypes)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        var statement = StatementBuilder.Build(this, sql, parameterTypes);
        if (failed && !statement.EndsFailedTransaction && statement.Kind != SqlCommandKind.Empty)
        {
            statement.Dispose();
            throw AbortedError();
        }
        statements.Add(statement);
        return statement;
    }

    internal void Forget(SqlStatement statement) => statements.Remove(statement);

    internal static SqlError AbortedError() =>
        SqlError.Error(SqlStates.InFailedTransaction, "current transaction is aborted, commands ignored until end of transaction block");

    /// <summary>Bind (and the start of Execute): a cursor over the statement with these parameter values. Throws SqlError.</summary>
    public SqlCursor Open(SqlStatement statement, IReadOnlyList<ReadOnlyMemory<byte>?> parameters, IReadOnlyList<short> parameterFormats, CancellationToken cancel)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (failed && !statement.EndsFailedTransaction && statement.Kind != SqlCommandKind.Empty) throw AbortedError();
        int count = statement.ParameterTypes.Count;
        if (parameters.Count != count)
            throw SqlError.Error("08P01", $"bind message supplies {parameters.Count} parameters, but prepared statement \"\" requires {count}");
        if (parameterFormats.Count > 1 && parameterFormats.Count != count)
            throw SqlError.Error("08P01", $"bind message has {parameterFormats.Count} parameter formats but {count} parameters");
        var values = new object?[count];
        for (int i = 0; i < count; i++)
        {
            var p = parameters[i];
            if (p is null) continue;
            short format = parameterFormats.Count == 0 ? (short)0 : parameterFormats.Count == 1 ? parameterFormats[0] : parameterFormats[i];
            uint oid = statement.ParameterTypes[i];
            var type = PgType.FromOid(oid);
            try
            {
                values[i] = format switch
                {
                    0 => PgValues.ParseText(type, PgValues.DecodeUtf8(p.Value.Span)),
                    1 when i < statement.UntypedParameters.Count && statement.UntypedParameters[i] => p.Value.ToArray(),
                    1 => PgValues.ParseBinary(type, oid, p.Value.Span, i + 1),
                    _ => throw SqlError.Error("08P01", $"unsupported format code: {format}"),
                };
            }
            catch (SqlError e) when (e.Where is null)
            {
                throw e.WithWhere($"unnamed portal parameter ${i + 1}");
            }
        }
        var cursor = new SqlCursor(this, statement, values, cancel);
        openCursors.Add(cursor);
        return cursor;
    }

    internal void Forget(SqlCursor cursor) => openCursors.Remove(cursor);

    // ---------------------------------------------------------------- transactions

    /// <summary>Before the first statement of a Query message or of an extended-query batch.</summary>
    public void BeginImplicit() => implicitActive = true;

    /// <summary>
    /// At the end of the Query message or at Sync: commits the implicit transaction (or rolls it back
    /// after an error); an explicit transaction stays open. Throws SqlError when the commit fails (it is
    /// then rolled back): the caller reports it before ReadyForQuery.
    /// </summary>
    public void EndImplicit(bool success)
    {
        implicitActive = false;
        if (explicitBlock)
        {
            if (!success) failed = true;
            return;
        }
        if (success) CommitSqlite();
        else RollbackSqlite();
    }

    /// <summary>An error in the current statement: an explicit transaction becomes failed.</summary>
    public void OnError()
    {
        if (explicitBlock) failed = true;
    }

    public IReadOnlyList<KeyValuePair<string, string>> TakeParameterChanges() => Settings.TakeChanges();

    public IReadOnlyList<SqlError> TakeNotices()
    {
        if (notices.Count == 0) return [];
        var list = notices.ToList();
        notices.Clear();
        return list;
    }

    internal void Notice(SqlError notice) => notices.Add(notice);

    /// <summary>Before a statement runs in SQLite: the failed state, the lazy BEGIN of a transaction block.</summary>
    internal void BeforeStatement(SqlStatement statement, bool outsideTransaction = false)
    {
        if (failed && !statement.EndsFailedTransaction) throw AbortedError();
        if (outsideTransaction)
        {
            if (explicitBlock || SqliteInTransaction)
                throw SqlError.Error(SqlStates.ActiveTransaction, "VACUUM cannot run inside a transaction block");
            return;
        }
        if (InBlock && !SqliteInTransaction) Exec("BEGIN", null);
    }

    private void ResetCursors()
    {
        foreach (var c in openCursors.ToList()) c.Close();
    }

    private void CommitSqlite()
    {
        ResetCursors();
        if (SqliteInTransaction)
        {
            try
            {
                Exec("COMMIT", null);
            }
            catch (SqlError)
            {
                RollbackSqlite();
                throw;
            }
        }
        Settings.EndTransaction(committed: true);
    }

    private void RollbackSqlite()
    {
        ResetCursors();
        if (SqliteInTransaction)
        {
            try { Exec("ROLLBACK", null); }
            catch (SqlError) { /* SQLite may already have rolled back. */ }
        }
        Settings.EndTransaction(committed: false);
    }

    // ---------------------------------------------------------------- commands the engine answers

    /// <summary>Runs a command the engine answers itself; returns its tag and, for SHOW, its rows.</summary>
    internal (string Tag, List<object?[]>? Rows) RunUtility(SqlStatement s)
    {
        switch (s.Kind)
        {
            case SqlCommandKind.Begin:
                if (failed) throw AbortedError();
                if (explicitBlock)
                {
                    Notice(SqlError.Warning(SqlStates.ActiveTransaction, "there is already a transaction in progress"));
                    return ("BEGIN", null);
                }
                explicitBlock = true;
                if (!SqliteInTransaction) Exec(s.SettingValue is { } mode ? "BEGIN " + mode : "BEGIN", null);
                return ("BEGIN", null);
            case SqlCommandKind.Commit:
                if (failed)
                {
                    failed = false;
                    explicitBlock = false;
                    RollbackSqlite();
                    return ("ROLLBACK", null);
                }
                if (!explicitBlock)
                {
                    Notice(SqlError.Warning(SqlStates.NoActiveTransaction, "there is no transaction in progress"));
                    CommitSqlite();
                    return ("COMMIT", null);
                }
                explicitBlock = false;
                CommitSqlite();
                if (s.TransactionChain)
                {
                    explicitBlock = true;
                    Exec("BEGIN", null);
                }
                return ("COMMIT", null);
            case SqlCommandKind.Rollback:
                if (!explicitBlock && !failed)
                {
                    Notice(SqlError.Warning(SqlStates.NoActiveTransaction, "there is no transaction in progress"));
                    RollbackSqlite();
                    return ("ROLLBACK", null);
                }
                failed = false;
                explicitBlock = false;
                RollbackSqlite();
                if (s.TransactionChain)
                {
                    explicitBlock = true;
                    Exec("BEGIN", null);
                }
                return ("ROLLBACK", null);
            case SqlCommandKind.Savepoint:
                if (!explicitBlock) throw SqlError.Error(SqlStates.NoActiveTransaction, "SAVEPOINT can only be used in transaction blocks");
                if (failed) throw AbortedError();
                Exec("SAVEPOINT " + SqlLexer.QuoteIdent(s.SavepointName!), s.Sql);
                return ("SAVEPOINT", null);
            case SqlCommandKind.Release:
                if (!explicitBlock) throw SqlError.Error(SqlStates.NoActiveTransaction, "RELEASE SAVEPOINT can only be used in transaction blocks");
                if (failed) throw AbortedError();
                Exec("RELEASE " + SqlLexer.QuoteIdent(s.SavepointName!), s.Sql);
                return ("RELEASE", null);
            case SqlCommandKind.RollbackToSavepoint:
                if (!explicitBlock) throw SqlError.Error(SqlStates.NoActiveTransaction, "ROLLBACK TO SAVEPOINT can only be used in transaction blocks");
                ResetCursors();
                Exec("ROLLBACK TO " + SqlLexer.QuoteIdent(s.SavepointName!), s.Sql);
                failed = false;
                return ("ROLLBACK", null);
            case SqlCommandKind.Set:
                if (s.SettingName is null) return ("SET", null);
                if (s.SettingValue is null) Settings.Reset(s.SettingName, InBlock);
                else SetSetting(s.SettingName, s.SettingValue, s.SettingLocal);
                return ("SET", null);
            case SqlCommandKind.Reset:
                if (s.SettingName is null) Settings.ResetAll(InBlock);
                else Settings.Reset(s.SettingName, InBlock);
                return ("RESET", null);
            case SqlCommandKind.Show:
                if (s.SettingName is null)
                    return ("SHOW", Settings.All().Select(p => new object?[] { p.Name, p.Value, p.Description }).ToList());
                return ("SHOW", [[Settings.Get(s.SettingName)]]);
            case SqlCommandKind.Discard:
                if (explicitBlock) throw SqlError.Error(SqlStates.ActiveTransaction, $"{s.Tag} cannot run inside a transaction block");
                if (s.Tag == "DISCARD ALL") Settings.ResetAll(InBlock);
                return (s.Tag!, null);
            case SqlCommandKind.Deallocate or SqlCommandKind.NoOp:
                return (s.Tag!, null);
            case SqlCommandKind.Batch:
                BeforeStatement(s);
                foreach (string sql in s.BatchSql!) Exec(sql, s.Sql);
                return (s.Tag!, null);
            default:
                throw new InvalidOperationException($"{s.Kind} is not a command the engine answers.");
        }
    }

    /// <summary>SET name = value (and set_config): inside a block, undone by a rollback; SET LOCAL only lasts for the transaction.</summary>
    internal void SetSetting(string name, string value, bool local)
    {
        if (local && !explicitBlock)
        {
            Notice(SqlError.Warning(SqlStates.NoActiveTransaction, "SET LOCAL can only be used in transaction blocks"));
            Settings.Check(name, value);
            return;
        }
        Settings.Set(name, value, InBlock, local);
    }

    // ---------------------------------------------------------------- SQLite calls

    /// <summary>Runs SQL without results; throws the mapped SqlError.</summary>
    internal void Exec(string sql, string? originalSql)
    {
        StartStep();
        int rc = raw.sqlite3_exec(Db, sql);
        if (rc != raw.SQLITE_OK) throw Error(rc, originalSql ?? sql);
    }

    internal void StartStep()
    {
        stepStarted = Stopwatch.GetTimestamp();
        PendingFunctionError = null;
    }

    /// <summary>The SqlError of SQLite's last failure (or of the function that caused it).</summary>
    internal SqlError Error(int rc, string? originalSql)
    {
        if (PendingFunctionError is { } pending)
        {
            PendingFunctionError = null;
            return pending;
        }
        int extended = raw.sqlite3_extended_errcode(Db);
        string message = raw.sqlite3_errmsg(Db).utf8_to_string() ?? "unknown error";
        bool timedOut = Stopwatch.GetElapsedTime(stepStarted) >= Engine.BusyTimeout * 0.9;
        if ((rc & 0xff) == raw.SQLITE_INTERRUPT) return CancelError();
        return SqliteErrors.Map(rc, extended, message, originalSql, timedOut);
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        foreach (var c in openCursors.ToList()) c.Dispose();
        foreach (var s in statements.ToList())
        {
            s.Handle?.Dispose();
            s.Handle = null;
        }
        statements.Clear();
        try
        {
            if (SqliteInTransaction) raw.sqlite3_exec(Db, "ROLLBACK");
        }
        catch (ObjectDisposedException)
        {
        }
        connection.Dispose();
    }

    internal static string Invariant(long v) => v.ToString(CultureInfo.InvariantCulture);
}
