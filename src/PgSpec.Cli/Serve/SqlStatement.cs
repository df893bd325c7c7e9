using SQLitePCL;

namespace PgSpec.Cli.Serve;

/// <summary>A column of a result: RowDescription's fields (table OID, attribute number are 0; format is the caller's).</summary>
internal readonly record struct SqlColumn(string Name, uint TypeOid, short TypeSize, int TypeModifier)
{
    public static SqlColumn Of(string name, PgType type) => new(name, type.Oid, type.Size, -1);
}

/// <summary>What a statement is: SQL run by SQLite, or a command the engine answers itself.</summary>
internal enum SqlCommandKind
{
    /// <summary>Only whitespace or comments: EmptyQueryResponse.</summary>
    Empty,
    /// <summary>Run by SQLite.</summary>
    Query,
    Begin,
    Commit,
    Rollback,
    Savepoint,
    Release,
    RollbackToSavepoint,
    Set,
    Reset,
    Show,
    CopyIn,
    CopyOut,
    /// <summary>DISCARD ALL (and DISCARD PLANS/SEQUENCES/TEMP): the caller also drops its prepared statements and portals on DISCARD ALL.</summary>
    Discard,
    /// <summary>DEALLOCATE name / ALL: the caller drops that prepared statement (<see cref="SqlStatement.DeallocateName"/>, null = all).</summary>
    Deallocate,
    /// <summary>A command that SQLite runs as several statements (TRUNCATE, DROP TABLE a, b).</summary>
    Batch,
    /// <summary>A command accepted and answered with its tag alone (UNLISTEN, VACUUM with options, SET TRANSACTION).</summary>
    NoOp,
}

/// <summary>The options of a COPY.</summary>
internal sealed class CopyOptions
{
    public bool Csv;
    public bool Header;
    public byte Delimiter = (byte)'\t';
    public string Null = "\\N";
    public byte Quote = (byte)'"';
    public byte Escape = (byte)'"';
    public bool ForceQuoteAll;
    public HashSet<string> ForceQuote = new(StringComparer.OrdinalIgnoreCase);
}

/// <summary>A COPY: which table or query, which columns, which direction, which options.</summary>
internal sealed class CopyCommand
{
    public required bool In;
    /// <summary>The table as written (quoted as needed), or null for COPY (query).</summary>
    public string? Table;
    /// <summary>The table's name for messages.</summary>
    public string? TableName;
    public string? Schema;
    public List<string>? Columns;
    /// <summary>COPY (query) TO: the query, rewritten.</summary>
    public string? Query;
    public required CopyOptions Options;
}

/// <summary>
/// A parsed statement (Parse): its parameters' types and, for Describe S, its columns. Statements of
/// SQLite keep their prepared SQLite statement for the cursors opened from them.
/// </summary>
internal sealed class SqlStatement : IDisposable
{
    private readonly IReadOnlyList<SqlColumn>? columns;

    internal SqlStatement(SqliteSession session, string sql, SqlCommandKind kind, IReadOnlyList<uint> parameterTypes, IReadOnlyList<SqlColumn>? columns)
    {
        Session = session;
        Sql = sql;
        Kind = kind;
        ParameterTypes = parameterTypes;
        this.columns = columns;
    }

    public string Sql { get; }

    /// <summary>What the statement is (addition to the contract: lets the caller act on DISCARD ALL and DEALLOCATE).</summary>
    public SqlCommandKind Kind { get; }

    /// <summary>ParameterDescription: one OID per $n (a cast on $n decides an unspecified one, else text).</summary>
    public IReadOnlyList<uint> ParameterTypes { get; }

    /// <summary>
    /// Per $n: neither Parse nor a cast gave its type, so text is a guess. A value of such a
    /// parameter in binary format is taken as bytea (node-postgres sends a Buffer that way, for a
    /// bytea column PostgreSQL would infer).
    /// </summary>
    internal IReadOnlyList<bool> UntypedParameters { get; set; } = [];

    /// <summary>
    /// RowDescription for Describe S (null = NoData). Reading it marks the statement described: the
    /// cursors opened from it then keep these columns (types not known before execution are text).
    /// </summary>
    public IReadOnlyList<SqlColumn>? Columns
    {
        get
        {
            Described = true;
            return columns;
        }
    }

    /// <summary>The columns without marking the statement described.</summary>
    internal IReadOnlyList<SqlColumn>? PeekColumns => columns;

    internal bool Described { get; private set; }

    public bool IsCopyIn => Kind == SqlCommandKind.CopyIn;

    public bool IsCopyOut => Kind == SqlCommandKind.CopyOut;

    /// <summary>Only whitespace and comments: Execute answers EmptyQueryResponse.</summary>
    public bool IsEmpty => Kind == SqlCommandKind.Empty;

    /// <summary>DEALLOCATE's statement name (null = ALL).</summary>
    public string? DeallocateName { get; internal init; }

    internal SqliteSession Session { get; }

    /// <summary>The SQL given to SQLite.</summary>
    internal string? SqliteSql { get; init; }

    internal RewrittenSql? Rewritten { get; init; }

    /// <summary>The PostgreSQL type of each column when it is known without running (cast, declared type, known function), else null.</summary>
    internal PgType?[]? StaticTypes { get; init; }

    internal string[]? ColumnNames { get; init; }

    /// <summary>The prepared SQLite statement, shared by the cursors opened one after the other.</summary>
    internal sqlite3_stmt? Handle { get; set; }

    internal bool HandleInUse { get; set; }

    // Payloads of the commands the engine answers.
    internal bool TransactionChain { get; init; }
    internal string? SavepointName { get; init; }
    internal string? SettingName { get; init; }
    internal string? SettingValue { get; init; }
    internal bool SettingLocal { get; init; }
    internal CopyCommand? Copy { get; init; }
    internal List<string>? BatchSql { get; init; }
    internal string? Tag { get; init; }
    /// <summary>A statement SQLite cannot run inside a transaction (VACUUM).</summary>
    internal bool OutsideTransaction { get; init; }

    /// <summary>Whether this statement may run in a failed transaction (ROLLBACK, COMMIT, ROLLBACK TO).</summary>
    internal bool EndsFailedTransaction => Kind is SqlCommandKind.Commit or SqlCommandKind.Rollback or SqlCommandKind.RollbackToSavepoint;

    public void Dispose()
    {
        Released = true;
        if (!HandleInUse)
        {
            Handle?.Dispose();
            Handle = null;
        }
        Session.Forget(this);
    }

    /// <summary>Disposed while a cursor ran on its handle: the cursor disposes the handle when it ends.</summary>
    internal bool Released { get; private set; }
}
