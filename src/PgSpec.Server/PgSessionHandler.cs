using PgSpec.Protocol;

namespace PgSpec.Server;

/// <summary>
/// What a server does with the queries of one session: one handler per connection, made by the
/// factory given to <see cref="PgBackendServer"/>. The session calls it from one task at a time, in
/// the order the client's messages arrive; the protocol (framing, the statement and portal store,
/// row limits, errors up to Sync, COPY sub-protocol, cancel) is the session's.
/// Throw <see cref="PgErrorException"/> to answer with an ErrorResponse; the
/// <see cref="CancellationToken"/> passed to each call fires when the client sends a CancelRequest
/// for this session (the session then answers 57014, as PostgreSQL does).
/// </summary>
public abstract class PgSessionHandler : IAsyncDisposable
{
    /// <summary>
    /// After authentication, before ParameterStatus, BackendKeyData and ReadyForQuery: check the
    /// database (throw a FATAL <see cref="PgErrorException"/> to refuse it), set parameters with
    /// <see cref="PgBackendSession.SetParameter"/>.
    /// </summary>
    public virtual ValueTask StartAsync(PgBackendSession session, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <summary>
    /// The statements of one simple Query message, in order. An empty list is an empty query
    /// (EmptyQueryResponse). By default the whole string is one statement, and a string of only
    /// white space is empty.
    /// </summary>
    public virtual IReadOnlyList<string> SplitQuery(string query)
        => string.IsNullOrWhiteSpace(query) ? [] : [query];

    /// <summary>
    /// Parses a statement (Parse, or a statement of a simple Query with no parameter types):
    /// says its parameter types and its columns, without running it.
    /// </summary>
    /// <param name="sql">The statement.</param>
    /// <param name="parameterTypes">The parameter type OIDs the client gave (0: unspecified; the list may be shorter than the statement's parameters).</param>
    /// <param name="cancellationToken">Fires on a cancel request.</param>
    public abstract ValueTask<PgStatement> PrepareAsync(string sql, IReadOnlyList<uint> parameterTypes, CancellationToken cancellationToken);

    /// <summary>
    /// Binds parameters to a prepared statement (Bind, or a statement of a simple Query): the
    /// result is read when the client executes it. A result that produces rows should not run
    /// further than its columns need until <see cref="PgStatementResult.ReadAsync"/> is called.
    /// </summary>
    public abstract ValueTask<PgStatementResult> BindAsync(PgStatement statement, PgBindContext bind, CancellationToken cancellationToken);

    /// <summary>
    /// True when the handler's methods never block a thread: they complete at once or await
    /// asynchronous work. The session may then call them on the socket's event thread (on Linux,
    /// where the server's own epoll engine serves the sockets, when no TLS certificate and no
    /// traffic callback are set), which saves a thread hop per message; otherwise, and by default,
    /// it moves to the thread pool before calling the handler, so that a slow statement never
    /// holds up other connections.
    /// </summary>
    public virtual bool RunsInline => false;

    /// <summary>The transaction status that ReadyForQuery reports; Idle by default.</summary>
    public virtual TransactionStatus TransactionStatus => TransactionStatus.Idle;

    /// <summary>
    /// Called before the first statement of a Query message, or of an extended-query batch (the
    /// messages up to Sync): PostgreSQL runs these in one implicit transaction.
    /// </summary>
    public virtual ValueTask BeginBatchAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <summary>At the end of a Query message or at Sync: <paramref name="success"/> is false when an error ended the batch.</summary>
    public virtual ValueTask EndBatchAsync(bool success, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <summary>Called when a statement failed with an error (before the ErrorResponse goes out): inside a transaction block the transaction is now failed.</summary>
    public virtual ValueTask OnErrorAsync(PgErrorException error, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <summary>
    /// FunctionCall (the fast-path interface): the result value, null for NULL. By default an error,
    /// as most servers no longer offer it.
    /// </summary>
    public virtual ValueTask<ReadOnlyMemory<byte>?> FunctionCallAsync(uint functionOid, IReadOnlyList<ReadOnlyMemory<byte>?> arguments, IReadOnlyList<short> argumentFormats, short resultFormat, CancellationToken cancellationToken)
        => throw new PgErrorException("0A000", "the function call interface is not supported by this server");

    /// <summary>The session ended; release what the handler holds.</summary>
    public virtual ValueTask DisposeAsync()
    {
        GC.SuppressFinalize(this);
        return ValueTask.CompletedTask;
    }
}

/// <summary>A column of a result, as RowDescription announces it.</summary>
/// <param name="Name">The column name.</param>
/// <param name="TypeOid">The data type's OID (25 text, 20 int8, 23 int4, 701 float8, 16 bool, 17 bytea, ...).</param>
/// <param name="TypeSize">The type's size (pg_type.typlen): -1 for variable-length types.</param>
/// <param name="TypeModifier">The type modifier (-1: none).</param>
/// <param name="TableOid">The table's OID when the column is a table's column, else 0.</param>
/// <param name="ColumnNumber">The column's attribute number in that table, else 0.</param>
public readonly record struct PgColumn(string Name, uint TypeOid, short TypeSize = -1, int TypeModifier = -1, uint TableOid = 0, short ColumnNumber = 0);

/// <summary>A prepared statement: what Describe of the statement says. Handlers subclass it to keep their own state.</summary>
public class PgStatement
{
    /// <summary>A statement with these parameter types and columns (null: it returns no rows).</summary>
    public PgStatement(string sql, IReadOnlyList<uint> parameterTypes, IReadOnlyList<PgColumn>? columns)
    {
        Sql = sql ?? throw new ArgumentNullException(nameof(sql));
        ParameterTypes = parameterTypes ?? throw new ArgumentNullException(nameof(parameterTypes));
        Columns = columns;
    }

    /// <summary>The statement's text.</summary>
    public string Sql { get; }

    /// <summary>One type OID per parameter ($1, $2, ...): ParameterDescription.</summary>
    public IReadOnlyList<uint> ParameterTypes { get; }

    /// <summary>
    /// The columns of its rows (RowDescription), or null (NoData). Read for Describe of the
    /// statement (and at Bind when it gives one result format per column); a handler whose
    /// columns are only known once a portal runs overrides it to learn that the client saw them.
    /// </summary>
    public virtual IReadOnlyList<PgColumn>? Columns { get; }

    /// <summary>
    /// Called when the session no longer needs the statement: the unnamed one replaced by the next
    /// Parse, Close, DEALLOCATE, a simple Query's statement once it has run, the session's end.
    /// Portals bound from it may still be running. Release what the statement holds here.
    /// </summary>
    public virtual void Release()
    {
    }
}

/// <summary>The values a Bind gives a statement, and the formats the client wants its results in.</summary>
public sealed class PgBindContext
{
    internal PgBindContext(IReadOnlyList<ReadOnlyMemory<byte>?> parameters, IReadOnlyList<short> parameterFormats, IReadOnlyList<short> resultFormats)
    {
        Parameters = parameters;
        ParameterFormats = parameterFormats;
        ResultFormats = resultFormats;
    }

    /// <summary>The parameter values as they came (null: SQL NULL).</summary>
    public IReadOnlyList<ReadOnlyMemory<byte>?> Parameters { get; }

    /// <summary>One format per parameter (0 text, 1 binary), already expanded from Bind's 0, 1 or N codes.</summary>
    public IReadOnlyList<short> ParameterFormats { get; }

    /// <summary>The result format codes as Bind gave them: none (all text), one (for all columns) or one per column.</summary>
    public IReadOnlyList<short> ResultFormats { get; }

    /// <summary>The format (0 text, 1 binary) the client wants column <paramref name="column"/> in.</summary>
    public short ResultFormat(int column) => ResultFormats.Count switch
    {
        0 => 0,
        1 => ResultFormats[0],
        _ => column < ResultFormats.Count ? ResultFormats[column] : (short)0,
    };
}

/// <summary>
/// The result of a bound statement, read by the session as the client executes it: rows are
/// pulled one at a time (so they stream to the client with backpressure, and a row limit
/// suspends the portal), then the command tag. Subclass <see cref="PgCopyInResult"/> or
/// <see cref="PgCopyOutResult"/> for COPY.
/// </summary>
public abstract class PgStatementResult : IAsyncDisposable
{
    /// <summary>The columns of the rows (RowDescription), or null when the statement returns no rows (NoData).</summary>
    public virtual IReadOnlyList<PgColumn>? Columns => null;

    /// <summary>Moves to the next row; false when there are no more.</summary>
    public virtual ValueTask<bool> ReadAsync(CancellationToken cancellationToken) => ValueTask.FromResult(false);

    /// <summary>The current row's value of <paramref name="column"/> in <paramref name="format"/> (0 text, 1 binary); null for NULL.</summary>
    public virtual ReadOnlyMemory<byte>? GetValue(int column, short format)
        => throw new InvalidOperationException("this result has no rows");

    /// <summary>The command tag (CommandComplete), once the rows are read: "SELECT 3", "INSERT 0 1", "CREATE TABLE".</summary>
    public abstract string CommandTag { get; }

    /// <summary>The result of a statement that is empty (only white space or comments): EmptyQueryResponse instead of CommandComplete.</summary>
    public static PgStatementResult EmptyQuery { get; } = new EmptyQueryResult();

    /// <summary>A result with no rows, only a command tag.</summary>
    public static PgStatementResult Command(string commandTag) => new CommandResult(commandTag);

    /// <summary>
    /// Rows given as text (null for NULL), in memory: each column is sent in text format, or in
    /// binary for the types whose binary form is simple (text, varchar, name, int2, int4, int8,
    /// float4, float8, bool, bytea given as <c>\x</c> hex); the tag is "SELECT n".
    /// </summary>
    public static PgStatementResult Rows(IReadOnlyList<PgColumn> columns, IEnumerable<IReadOnlyList<string?>> rows)
        => new TextRowsResult(columns, rows);

    /// <summary>Releases what the result holds (the session disposes of every result).</summary>
    public virtual ValueTask DisposeAsync()
    {
        GC.SuppressFinalize(this);
        return ValueTask.CompletedTask;
    }

    internal sealed class EmptyQueryResult : PgStatementResult
    {
        public override string CommandTag => "";

        public override ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    private sealed class CommandResult(string tag) : PgStatementResult
    {
        public override string CommandTag => tag;
    }
}

/// <summary>A COPY ... FROM STDIN: the session answers CopyInResponse and hands each CopyData to the result.</summary>
public abstract class PgCopyInResult : PgStatementResult
{
    /// <summary>0 for text (and CSV), 1 for binary COPY.</summary>
    public virtual CopyFormat Format => CopyFormat.Text;

    /// <summary>The number of columns copied.</summary>
    public abstract int ColumnCount { get; }

    /// <summary>A CopyData's bytes (split anywhere: rows may span messages).</summary>
    public abstract ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken);

    /// <summary>CopyDone: finish and make <see cref="PgStatementResult.CommandTag"/> ("COPY n").</summary>
    public abstract ValueTask CompleteAsync(CancellationToken cancellationToken);

    /// <summary>CopyFail (or an error): undo what this COPY did. The session answers 57014 "COPY from stdin failed: message".</summary>
    public abstract ValueTask FailAsync(string message, CancellationToken cancellationToken);
}

/// <summary>A COPY ... TO STDOUT: the session answers CopyOutResponse, then sends each piece of data as CopyData, then CopyDone.</summary>
public abstract class PgCopyOutResult : PgStatementResult
{
    /// <summary>0 for text (and CSV), 1 for binary COPY.</summary>
    public virtual CopyFormat Format => CopyFormat.Text;

    /// <summary>The number of columns copied.</summary>
    public abstract int ColumnCount { get; }

    /// <summary>The next piece of data (a row's line, say); null at the end, when <see cref="PgStatementResult.CommandTag"/> is "COPY n".</summary>
    public abstract ValueTask<ReadOnlyMemory<byte>?> ReadCopyDataAsync(CancellationToken cancellationToken);
}
