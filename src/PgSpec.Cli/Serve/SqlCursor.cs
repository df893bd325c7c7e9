using System.Text;
using SQLitePCL;

namespace PgSpec.Cli.Serve;

/// <summary>
/// A portal: a statement bound to its parameter values, run as the caller reads its rows (Read,
/// GetValue), or a COPY's data flow. Its command tag is known once Read has returned false (or COPY
/// has ended).
/// </summary>
internal sealed class SqlCursor : IDisposable
{
    private const string CopySavepoint = "pgspec_copy";

    private readonly SqliteSession session;
    private readonly SqlStatement statement;
    private readonly CancellationToken cancel;
    private sqlite3_stmt? stmt;
    private bool ownsStmt;
    private PgType[]? types;
    private IReadOnlyList<SqlColumn>? columns;
    private bool columnsResolved;
    private bool started;
    private bool finished;
    private bool havePending;
    private object?[]? cells;
    private long rowCount;
    private string? tag;
    private List<object?[]>? utilityRows;
    private int utilityIndex;
    private CancellationTokenSource? timeoutSource;
    private CancellationTokenRegistration registration;
    private CancellationToken token;
    private bool disposed;

    // COPY
    private readonly CopyCommand? copy;
    private CopyInParser? copyParser;
    private string[]? copyColumns;
    private PgType?[]? copyTypes;
    private bool copyStarted;
    private bool copyFailed;

    internal SqlCursor(SqliteSession session, SqlStatement statement, object?[] parameters, CancellationToken cancel)
    {
        this.session = session;
        this.statement = statement;
        this.cancel = cancel;
        token = cancel;
        copy = statement.Copy;
        switch (statement.Kind)
        {
            case SqlCommandKind.Query:
                AcquireStatement(statement.SqliteSql!);
                Bind(parameters);
                break;
            case SqlCommandKind.CopyIn:
                OpenCopyIn();
                break;
            case SqlCommandKind.CopyOut:
                OpenCopyOut();
                break;
        }
    }

    /// <summary>RowDescription (null = no rows). For a statement already described, its columns.</summary>
    public IReadOnlyList<SqlColumn>? Columns
    {
        get
        {
            ResolveColumns();
            return columns;
        }
    }

    public bool IsCopyIn => statement.Kind == SqlCommandKind.CopyIn;

    public bool IsCopyOut => statement.Kind == SqlCommandKind.CopyOut;

    /// <summary>Only whitespace and comments: EmptyQueryResponse instead of CommandComplete.</summary>
    public bool IsEmpty => statement.Kind == SqlCommandKind.Empty;

    /// <summary>The statement this cursor runs.</summary>
    public SqlStatement Statement => statement;

    /// <summary>The number of columns of a COPY.</summary>
    public int CopyColumnCount => copyColumns?.Length ?? 0;

    /// <summary>The command tag; if the statement has not run yet, runs it to its end first.</summary>
    public string CommandTag
    {
        get
        {
            if (tag is null && !finished)
            {
                if (statement.Kind == SqlCommandKind.Query)
                    while (ReadRaw()) { }
                else if (!IsCopyIn && !IsCopyOut)
                    RunUtility();
            }
            return tag ?? "";
        }
    }

    // ---------------------------------------------------------------- rows

    /// <summary>The next row; false at the end. Throws SqlError (57014 when cancelled).</summary>
    public bool Read()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        switch (statement.Kind)
        {
            case SqlCommandKind.Query:
                if (finished) return false;
                ResolveColumns();
                if (!ReadRaw()) return false;
                ConvertRow();
                return true;
            case SqlCommandKind.CopyIn or SqlCommandKind.CopyOut or SqlCommandKind.Empty:
                return false;
            default:
                if (!finished) RunUtility();
                if (utilityRows is null || utilityIndex >= utilityRows.Count) return false;
                cells = utilityRows[utilityIndex++];
                rowCount++;
                return true;
        }
    }

    /// <summary>The current row's value in the wire format (0 text, 1 binary) of the column's type; null = SQL NULL.</summary>
    public ReadOnlyMemory<byte>? GetValue(int column, short format)
    {
        if (cells is null) throw new InvalidOperationException("There is no current row.");
        object? cell = cells[column];
        if (cell is null) return null;
        var type = types is not null ? types[column] : PgType.Text;
        if (statement.Kind != SqlCommandKind.Query && cell is string s) return Encoding.UTF8.GetBytes(s);
        return format == 1 ? PgValues.EncodeBinary(type, cell) : PgValues.EncodeText(type, cell, session.Settings.ExtraFloatDigits, session.Settings.ByteaEscape);
    }

    private void ResolveColumns()
    {
        if (columnsResolved) return;
        columnsResolved = true;
        switch (statement.Kind)
        {
            case SqlCommandKind.Query:
                break;
            case SqlCommandKind.Show:
                columns = statement.PeekColumns;
                types = columns!.Select(_ => PgType.Text).ToArray();
                return;
            default:
                return;
        }
        var staticTypes = statement.StaticTypes;
        if (staticTypes is null) return;
        if (statement.Described || staticTypes.All(t => t is not null))
        {
            columns = statement.PeekColumns;
            types = staticTypes.Select(t => t ?? PgType.Text).ToArray();
            return;
        }
        // Expressions: the first row's values tell their types.
        types = new PgType[staticTypes.Length];
        if (ReadRaw())
        {
            havePending = true;
            for (int i = 0; i < types.Length; i++) types[i] = staticTypes[i] ?? PgType.FromStorageClass(ColumnValue(stmt!, i));
        }
        else
        {
            for (int i = 0; i < types.Length; i++) types[i] = staticTypes[i] ?? PgType.Text;
        }
        var names = statement.ColumnNames!;
        columns = types.Select((t, i) => SqlColumn.Of(names[i], t)).ToList();
    }

    /// <summary>Steps to the next row without converting it.</summary>
    private bool ReadRaw()
    {
        if (finished) return false;
        if (havePending)
        {
            havePending = false;
            return true;
        }
        if (!started)
        {
            started = true;
            session.BeforeStatement(statement, statement.OutsideTransaction);
            StartCancel();
        }
        if (token.IsCancellationRequested)
        {
            var e = session.CancelError();
            Finish();
            throw e;
        }
        session.CurrentCancel = token;
        session.StartStep();
        int rc = raw.sqlite3_step(stmt);
        session.CurrentCancel = default;
        if (rc == raw.SQLITE_ROW)
        {
            rowCount++;
            return true;
        }
        if (rc == raw.SQLITE_DONE)
        {
            tag = QueryTag();
            Finish();
            return false;
        }
        var error = session.Error(rc, statement.Sql);
        Finish();
        throw error;
    }

    private void ConvertRow()
    {
        int n = types!.Length;
        var row = new object?[n];
        try
        {
            for (int i = 0; i < n; i++) row[i] = PgValues.ToCell(types[i], ColumnValue(stmt!, i));
        }
        catch (SqlError)
        {
            Finish();
            throw;
        }
        cells = row;
    }

    internal static object? ColumnValue(sqlite3_stmt s, int i) => raw.sqlite3_column_type(s, i) switch
    {
        raw.SQLITE_INTEGER => raw.sqlite3_column_int64(s, i),
        raw.SQLITE_FLOAT => raw.sqlite3_column_double(s, i),
        raw.SQLITE_TEXT => raw.sqlite3_column_text(s, i).utf8_to_string(),
        raw.SQLITE_BLOB => raw.sqlite3_column_blob(s, i).ToArray(),
        _ => null,
    };

    private string QueryTag()
    {
        var rw = statement.Rewritten!;
        var units = rw.Units;
        long changes = raw.sqlite3_changes(session.Db);
        string verb = rw.Verb ?? "";
        bool rows = statement.StaticTypes is not null;
        switch (verb)
        {
            case "select" or "values" or "with" or "table":
                return $"SELECT {rowCount}";
            case "insert" or "replace":
                return $"INSERT 0 {changes}";
            case "update":
                return $"UPDATE {changes}";
            case "delete":
                return $"DELETE {changes}";
            case "create" or "drop":
            {
                string? obj = units.Skip(1).Take(4).FirstOrDefault(u => u.Kind == UnitKind.Word && u.Name is "table" or "index" or "view" or "trigger")?.Name;
                if (verb == "create" && obj == "table" && units.Any(u => u.IsWord("as")) && units.Any(u => u.IsWord("select")))
                    return $"SELECT {changes}";
                return obj is null ? verb.ToUpperInvariant() : $"{verb.ToUpperInvariant()} {obj.ToUpperInvariant()}";
            }
            case "alter":
                return "ALTER TABLE";
            default:
                return rows ? $"SELECT {rowCount}" : verb.ToUpperInvariant();
        }
    }

    private void RunUtility()
    {
        if (finished) return;
        try
        {
            var (t, rows) = session.RunUtility(statement);
            tag = t;
            utilityRows = rows;
            if (rows is not null) types = rows.Count > 0 ? rows[0].Select(_ => PgType.Text).ToArray() : types;
        }
        finally
        {
            finished = true;
        }
    }

    // ---------------------------------------------------------------- statement handle, cancellation

    private void AcquireStatement(string sql)
    {
        if (statement.Handle is { } handle && !statement.HandleInUse)
        {
            stmt = handle;
            statement.HandleInUse = true;
            raw.sqlite3_reset(stmt);
            raw.sqlite3_clear_bindings(stmt);
            return;
        }
        session.StartStep();
        int rc = raw.sqlite3_prepare_v2(session.Db, sql, out sqlite3_stmt fresh, out _);
        if (rc != raw.SQLITE_OK)
        {
            fresh?.Dispose();
            throw session.Error(rc, statement.Sql);
        }
        stmt = fresh;
        ownsStmt = true;
    }

    private void Bind(object?[] parameters)
    {
        int slots = raw.sqlite3_bind_parameter_count(stmt);
        for (int i = 0; i < parameters.Length && i < slots; i++)
        {
            int rc = parameters[i] switch
            {
                null => raw.sqlite3_bind_null(stmt, i + 1),
                long l => raw.sqlite3_bind_int64(stmt, i + 1, l),
                double d => raw.sqlite3_bind_double(stmt, i + 1, d),
                string s => raw.sqlite3_bind_text(stmt, i + 1, s),
                byte[] b => raw.sqlite3_bind_blob(stmt, i + 1, b),
                var other => raw.sqlite3_bind_text(stmt, i + 1, other.ToString()),
            };
            if (rc != raw.SQLITE_OK) throw session.Error(rc, statement.Sql);
        }
    }

    private void StartCancel()
    {
        long timeoutMs = session.Settings.StatementTimeoutMs;
        if (timeoutMs > 0)
        {
            timeoutSource = CancellationTokenSource.CreateLinkedTokenSource(cancel);
            timeoutSource.CancelAfter(TimeSpan.FromMilliseconds(timeoutMs));
            token = timeoutSource.Token;
        }
        var userToken = cancel;
        session.CancelErrorFactory = () => !userToken.IsCancellationRequested && token.IsCancellationRequested
            ? SqlError.Error(SqlStates.QueryCanceled, "canceling statement due to statement timeout")
            : SqliteSession.DefaultCancelError();
        if (token.CanBeCanceled)
        {
            var db = session.Db;
            registration = token.Register(() => raw.sqlite3_interrupt(db));
        }
    }

    private void StopCancel()
    {
        registration.Dispose();
        registration = default;
        timeoutSource?.Dispose();
        timeoutSource = null;
    }

    private void Finish()
    {
        finished = true;
        havePending = false;
        StopCancel();
        if (stmt is not null && !stmt.IsInvalid) raw.sqlite3_reset(stmt);
    }

    /// <summary>The end of the transaction the portal lives in: it can give no more rows.</summary>
    internal void Close()
    {
        if (IsCopyIn && copyStarted && !finished) AbortCopy();
        if (!finished)
        {
            tag ??= statement.Kind == SqlCommandKind.Query ? QueryTagSoFar() : tag;
            Finish();
        }
    }

    private string QueryTagSoFar() => $"SELECT {rowCount}";

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        if (IsCopyIn && copyStarted && !finished) AbortCopy();
        StopCancel();
        if (stmt is not null)
        {
            if (ownsStmt)
            {
                stmt.Dispose();
            }
            else
            {
                if (!stmt.IsInvalid)
                {
                    raw.sqlite3_reset(stmt);
                    raw.sqlite3_clear_bindings(stmt);
                }
                statement.HandleInUse = false;
                if (statement.Released)
                {
                    statement.Handle?.Dispose();
                }
            }
            stmt = null;
        }
        session.Forget(this);
    }

    // ---------------------------------------------------------------- COPY FROM STDIN

    private void OpenCopyIn()
    {
        var c = copy!;
        string pragma = c.Schema is null
            ? $"PRAGMA table_xinfo({SqlLexer.QuoteLiteral(c.TableName!)})"
            : $"PRAGMA {SqlLexer.QuoteIdent(c.Schema)}.table_xinfo({SqlLexer.QuoteLiteral(c.TableName!)})";
        var tableColumns = new List<(string Name, string? Type)>();
        session.StartStep();
        int rc = raw.sqlite3_prepare_v2(session.Db, pragma, out sqlite3_stmt info, out _);
        if (rc != raw.SQLITE_OK)
        {
            info?.Dispose();
            throw session.Error(rc, statement.Sql);
        }
        using (info)
        {
            while ((rc = raw.sqlite3_step(info)) == raw.SQLITE_ROW)
            {
                if (raw.sqlite3_column_int64(info, 6) != 0) continue; // hidden or generated
                tableColumns.Add((raw.sqlite3_column_text(info, 1).utf8_to_string(), raw.sqlite3_column_text(info, 2).utf8_to_string()));
            }
            if (rc != raw.SQLITE_DONE) throw session.Error(rc, statement.Sql);
        }
        if (tableColumns.Count == 0) throw SqlError.Error(SqlStates.UndefinedTable, $"relation \"{c.TableName}\" does not exist");
        var names = c.Columns ?? tableColumns.Select(t => t.Name).ToList();
        var typesOut = new PgType?[names.Count];
        for (int i = 0; i < names.Count; i++)
        {
            int at = tableColumns.FindIndex(t => t.Name.Equals(names[i], StringComparison.OrdinalIgnoreCase));
            if (at < 0) throw SqlError.Error(SqlStates.UndefinedColumn, $"column \"{names[i]}\" of relation \"{c.TableName}\" does not exist");
            names[i] = tableColumns[at].Name;
            typesOut[i] = PgType.FromDeclaredType(tableColumns[at].Type);
            if (names.Take(i).Contains(names[i], StringComparer.OrdinalIgnoreCase))
                throw SqlError.Error(SqlStates.DuplicateColumn, $"column \"{names[i]}\" specified more than once");
        }
        copyColumns = [.. names];
        copyTypes = typesOut;
        string insert = $"INSERT INTO {c.Table} ({string.Join(", ", names.Select(SqlLexer.QuoteIdent))}) VALUES ({string.Join(", ", names.Select((_, i) => "?" + (i + 1)))})";
        AcquireStatementFresh(insert);
        copyParser = new CopyInParser(c.Options);
    }

    private void AcquireStatementFresh(string sql)
    {
        session.StartStep();
        int rc = raw.sqlite3_prepare_v2(session.Db, sql, out sqlite3_stmt fresh, out _);
        if (rc != raw.SQLITE_OK)
        {
            fresh?.Dispose();
            throw session.Error(rc, statement.Sql);
        }
        stmt = fresh;
        ownsStmt = true;
    }

    /// <summary>COPY FROM STDIN: a chunk of data, split anywhere. Throws SqlError (22P04, 22P02, ...); the COPY's rows are then rolled back.</summary>
    public void WriteCopyData(ReadOnlySpan<byte> data)
    {
        if (!IsCopyIn) throw new InvalidOperationException("The cursor is not a COPY FROM STDIN.");
        if (copyFailed || finished) return;
        try
        {
            StartCopyIn();
            copyParser!.Feed(data, InsertRow);
        }
        catch (SqlError e)
        {
            AbortCopy();
            throw e.Where is null ? e.WithWhere($"COPY {copy!.TableName}, line {copyParser!.LineNumber}: \"{Shorten(copyParser.CurrentLine)}\"") : e;
        }
    }

    /// <summary>CopyDone: the last line (without a newline) is read, the rows are kept; CommandTag is then COPY n.</summary>
    public void CompleteCopy()
    {
        if (!IsCopyIn) throw new InvalidOperationException("The cursor is not a COPY FROM STDIN.");
        if (copyFailed || finished) return;
        try
        {
            StartCopyIn();
            copyParser!.Finish(InsertRow);
            session.Exec("RELEASE " + CopySavepoint, statement.Sql);
        }
        catch (SqlError e)
        {
            AbortCopy();
            throw e.Where is null ? e.WithWhere($"COPY {copy!.TableName}, line {copyParser!.LineNumber}: \"{Shorten(copyParser.CurrentLine)}\"") : e;
        }
        finished = true;
        tag = $"COPY {rowCount}";
    }

    /// <summary>CopyFail: rolls back what this COPY inserted.</summary>
    public void FailCopy(string message)
    {
        if (!IsCopyIn || finished) return;
        AbortCopy();
        finished = true;
    }

    private void StartCopyIn()
    {
        if (copyStarted) return;
        session.BeforeStatement(statement);
        session.Exec("SAVEPOINT " + CopySavepoint, statement.Sql);
        copyStarted = true;
    }

    private void AbortCopy()
    {
        if (copyFailed) return;
        copyFailed = true;
        if (stmt is not null && !stmt.IsInvalid) raw.sqlite3_reset(stmt);
        if (!copyStarted) return;
        try
        {
            session.Exec("ROLLBACK TO " + CopySavepoint, statement.Sql);
            session.Exec("RELEASE " + CopySavepoint, statement.Sql);
        }
        catch (SqlError)
        {
            // The transaction is already gone (SQLite rolled it back).
        }
        rowCount = 0;
    }

    private static string Shorten(string line) => line.Length > 100 ? line[..100] + "..." : line;

    private void InsertRow(string?[] fields)
    {
        var names = copyColumns!;
        if (fields.Length < names.Length)
            throw SqlError.Error(SqlStates.BadCopyFileFormat, $"missing data for column \"{names[fields.Length]}\"");
        if (fields.Length > names.Length)
            throw SqlError.Error(SqlStates.BadCopyFileFormat, "extra data after last expected column");
        raw.sqlite3_reset(stmt);
        for (int i = 0; i < fields.Length; i++)
        {
            string? f = fields[i];
            object? value;
            try
            {
                value = f is null ? null : copyTypes![i] is { } type ? PgValues.ParseText(type, f) : f;
            }
            catch (SqlError e)
            {
                throw e.WithWhere($"COPY {copy!.TableName}, line {copyParser!.LineNumber}, column {names[i]}: \"{Shorten(f ?? "")}\"");
            }
            int rc = value switch
            {
                null => raw.sqlite3_bind_null(stmt, i + 1),
                long l => raw.sqlite3_bind_int64(stmt, i + 1, l),
                double d => raw.sqlite3_bind_double(stmt, i + 1, d),
                byte[] b => raw.sqlite3_bind_blob(stmt, i + 1, b),
                var other => raw.sqlite3_bind_text(stmt, i + 1, other.ToString()),
            };
            if (rc != raw.SQLITE_OK) throw session.Error(rc, statement.Sql);
        }
        session.StartStep();
        int step = raw.sqlite3_step(stmt);
        if (step != raw.SQLITE_DONE)
        {
            var e = session.Error(step, statement.Sql);
            raw.sqlite3_reset(stmt);
            throw e.WithWhere($"COPY {copy!.TableName}, line {copyParser!.LineNumber}");
        }
        raw.sqlite3_reset(stmt);
        rowCount++;
    }

    // ---------------------------------------------------------------- COPY TO STDOUT

    private void OpenCopyOut()
    {
        var c = copy!;
        string query = c.Query ?? $"SELECT {(c.Columns is null ? "*" : string.Join(", ", c.Columns.Select(SqlLexer.QuoteIdent)))} FROM {c.Table}";
        AcquireStatementFresh(query);
        int n = raw.sqlite3_column_count(stmt);
        if (n == 0) throw SqlError.Error(SqlStates.FeatureNotSupported, "COPY query must have a RETURNING clause or return rows");
        copyColumns = new string[n];
        copyTypes = new PgType?[n];
        for (int i = 0; i < n; i++)
        {
            copyColumns[i] = raw.sqlite3_column_name(stmt, i).utf8_to_string() ?? "?column?";
            copyTypes[i] = PgType.FromDeclaredType(raw.sqlite3_column_decltype(stmt, i).utf8_to_string());
        }
        if (c.Query is not null)
        {
            // The casts of COPY (SELECT x::int8 ...) decide the types, as for a query.
            var items = SqlRewriter.Rewrite(StatementQueryText()).Items;
            if (items is not null && items.Count == n && items.All(i => !i.IsStar))
                for (int i = 0; i < n; i++)
                {
                    copyTypes[i] = items[i].Type ?? copyTypes[i];
                    if (items[i].Name is { } name) copyColumns[i] = name;
                }
        }
    }

    /// <summary>The original text of COPY (query) TO's query.</summary>
    private string StatementQueryText()
    {
        var units = SqlRewriter.Rewrite(statement.Sql).Units;
        var group = units.FirstOrDefault(u => u.Kind == UnitKind.Group);
        if (group is null) return "";
        int start = group.Origin + 1;
        int depth = 0;
        foreach (var t in SqlLexer.Tokenize(statement.Sql[group.Origin..]))
        {
            if (t.Kind == TokenKind.OpenParen) depth++;
            else if (t.Kind == TokenKind.CloseParen && --depth == 0) return statement.Sql.Substring(start, group.Origin + t.Start - start);
        }
        return "";
    }

    /// <summary>COPY TO STDOUT: the next line (with its newline); false at the end (CommandTag is then COPY n).</summary>
    public bool ReadCopyData(out ReadOnlyMemory<byte> data)
    {
        data = default;
        if (!IsCopyOut) throw new InvalidOperationException("The cursor is not a COPY TO STDOUT.");
        if (finished) return false;
        var options = copy!.Options;
        if (!copyStarted)
        {
            copyStarted = true;
            started = true;
            session.BeforeStatement(statement);
            StartCancel();
            if (options.Header)
            {
                data = CopyOutFormatter.Line(options, copyColumns!, null);
                return true;
            }
        }
        if (token.IsCancellationRequested)
        {
            var e = session.CancelError();
            Finish();
            throw e;
        }
        session.CurrentCancel = token;
        session.StartStep();
        int rc = raw.sqlite3_step(stmt);
        session.CurrentCancel = default;
        if (rc == raw.SQLITE_DONE)
        {
            tag = $"COPY {rowCount}";
            Finish();
            return false;
        }
        if (rc != raw.SQLITE_ROW)
        {
            var e = session.Error(rc, statement.Sql);
            Finish();
            throw e;
        }
        int n = copyColumns!.Length;
        var fields = new string?[n];
        try
        {
            for (int i = 0; i < n; i++)
            {
                object? value = ColumnValue(stmt!, i);
                var type = copyTypes![i] ?? PgType.FromStorageClass(value);
                object? cell = PgValues.ToCell(type, value);
                fields[i] = cell is null ? null : Encoding.UTF8.GetString(PgValues.EncodeText(type, cell, session.Settings.ExtraFloatDigits, session.Settings.ByteaEscape));
            }
        }
        catch (SqlError)
        {
            Finish();
            throw;
        }
        rowCount++;
        data = CopyOutFormatter.Line(options, fields, copyColumns);
        return true;
    }
}
