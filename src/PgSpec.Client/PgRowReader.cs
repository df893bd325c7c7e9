using System.Buffers.Binary;
using System.Text;
using PgSpec.Protocol;

namespace PgSpec.Client;

/// <summary>
/// The results of one query, read as they arrive: rows are not collected, so memory does not grow
/// with the result. Opened by <see cref="PgFrontendSession.QueryReaderAsync"/> (simple query: one
/// result per statement, <see cref="NextResultAsync"/> moves on) or
/// <see cref="PgFrontendSession.ExecuteReaderAsync"/> (extended query: one result).
/// <see cref="ReadAsync"/> moves to the next row of the current result; the row
/// (<see cref="Row"/>, <see cref="GetBytes"/>, ...) is borrowed from the receive buffer and valid
/// until the next read. Rows that are already received are read without waiting, and without
/// allocating unless the session has a traffic callback; each wait for the server is bounded by
/// <see cref="PgConnectOptions.CommandTimeout"/>. An ErrorResponse is thrown as
/// <see cref="PgServerException"/> once ReadyForQuery has arrived: the reader has no more results,
/// and once it is disposed the session takes the next query. The session takes no other operation
/// while the reader is open; disposing it reads (and drops) what is left of the answer, however
/// long: to stop a long query early, call <see cref="PgFrontendSession.CancelAsync"/> first (the
/// server then ends the answer with 57014, which disposing passes over; another error in what was
/// left is thrown by disposing, once the session is ready again). COPY is refused: COPY
/// FROM STDIN with CopyFail, COPY TO STDOUT with <see cref="NotSupportedException"/> once its data
/// has been read past. A cancelled <see cref="CancellationToken"/>, like a timeout, leaves the
/// session broken (the answer's end is unknown).
/// </summary>
public sealed class PgRowReader : IAsyncDisposable
{
    private readonly PgFrontendSession _session;
    private readonly string _request;
    private readonly int _cancelRequests;
    private bool _refusedCopyIn;
    private PgServerException? _copyFailAnswer;
    private State _state;
    private long _rowNumber;
    private long _offsetsOf = -1;
    private int[] _starts = new int[16];
    private int[] _lengths = new int[16];
    private int _columnCount;
    private ReadOnlyMemory<byte> _body;

    private enum State
    {
        /// <summary>Before the first result.</summary>
        Start,

        /// <summary>In a result that has rows (after RowDescription).</summary>
        Rows,

        /// <summary>The current result is complete; more may follow.</summary>
        ResultEnd,

        /// <summary>ReadyForQuery has arrived.</summary>
        Done,
    }

    /// <param name="session">The session.</param>
    /// <param name="request">What was sent ("Query" or "Execute").</param>
    /// <param name="cancelRequests">The session's <see cref="PgFrontendSession.CancelRequests"/> before the request went out.</param>
    internal PgRowReader(PgFrontendSession session, string request, int cancelRequests)
    {
        _session = session;
        _request = request;
        _cancelRequests = cancelRequests;
    }

    /// <summary>The columns of the current result; null for a statement without rows.</summary>
    public RowDescription? Description { get; private set; }

    /// <summary>The command tag of the current result (e.g. "SELECT 1000000"), once its rows have all been read; null before, and for an empty query or a suspended portal.</summary>
    public string? CommandTag { get; private set; }

    /// <summary>True when Execute's row limit suspended the portal (PortalSuspended) at the end of the current result.</summary>
    public bool Suspended { get; private set; }

    /// <summary>True when the current result is an empty query (EmptyQueryResponse).</summary>
    public bool EmptyQuery { get; private set; }

    /// <summary>The rows read so far in the current result.</summary>
    public long RowCount { get; private set; }

    /// <summary>True while there is a current result (false once the answer has ended).</summary>
    public bool HasResult => _state is State.Rows or State.ResultEnd;

    /// <summary>The number of columns of the current row.</summary>
    public int FieldCount
    {
        get
        {
            ThrowIfNoRow();
            return BinaryPrimitives.ReadUInt16BigEndian(_body.Span);
        }
    }

    /// <summary>The current row, read in place; valid until the next read.</summary>
    public DataRow.View Row
    {
        get
        {
            ThrowIfNoRow();
            return _session.CurrentRow;
        }
    }

    /// <summary>True when the column of the current row is NULL.</summary>
    public bool IsDBNull(int ordinal) => Column(ordinal).Length < 0;

    /// <summary>The bytes of a column of the current row (empty for NULL; see <see cref="IsDBNull"/>); valid until the next read.</summary>
    public ReadOnlySpan<byte> GetBytes(int ordinal)
    {
        (int start, int length) = Column(ordinal);
        return length < 0 ? default : _body.Span.Slice(start, length);
    }

    /// <summary>A column of the current row as text (UTF-8), or null for NULL.</summary>
    public string? GetString(int ordinal)
    {
        (int start, int length) = Column(ordinal);
        return length < 0 ? null : Encoding.UTF8.GetString(_body.Span.Slice(start, length));
    }

    /// <summary>
    /// Moves to the next row of the current result: false when the result has no more rows (its
    /// <see cref="CommandTag"/> is then known).
    /// </summary>
    public ValueTask<bool> ReadAsync(CancellationToken cancellationToken = default)
    {
        if (_state != State.Rows)
        {
            return new ValueTask<bool>(false);
        }

        ValueTask<IBackendMessage?> next = _session.ReceiveRowOrMessageAsync(cancellationToken);
        if (!next.IsCompletedSuccessfully)
        {
            return WaitForRowAsync(next, cancellationToken);
        }

        IBackendMessage? message = next.Result;
        if (message is null)
        {
            return new ValueTask<bool>(Advance());
        }

        return message is CommandComplete or PortalSuspended or EmptyQueryResponse
            ? new ValueTask<bool>(EndOfRows(message))
            : ReadAfterAsync(message, cancellationToken);
    }

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> WaitForRowAsync(ValueTask<IBackendMessage?> next, CancellationToken cancellationToken)
    {
        IBackendMessage? message = await next.ConfigureAwait(false);
        return message is null ? Advance() : await ReadAfterAsync(message, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Goes on from a message among the rows that is not a row: the end of the result, an error, or a notice to pass over.</summary>
    private async ValueTask<bool> ReadAfterAsync(IBackendMessage message, CancellationToken cancellationToken)
    {
        while (true)
        {
            switch (message)
            {
                case ErrorResponse error:
                    await FailAsync(error, cancellationToken).ConfigureAwait(false);
                    break;
                case ReadyForQuery:
                    throw Violation("ReadyForQuery before the end of a result");
                case NoticeResponse or NotificationResponse or ParameterStatus:
                    break;
                default:
                    return EndOfRows(message);
            }

            IBackendMessage? next = await _session.ReceiveRowOrMessageAsync(cancellationToken).ConfigureAwait(false);
            if (next is null)
            {
                return Advance();
            }

            message = next;
        }
    }

    /// <summary>
    /// Moves to the next result (the next statement of a simple query), skipping the rows left in
    /// the current one: false when there is none (ReadyForQuery has arrived).
    /// </summary>
    public async Task<bool> NextResultAsync(CancellationToken cancellationToken = default)
    {
        while (await ReadAsync(cancellationToken).ConfigureAwait(false))
        {
        }

        Description = null;
        CommandTag = null;
        Suspended = false;
        EmptyQuery = false;
        RowCount = 0;
        while (_state != State.Done)
        {
            IBackendMessage? message = await _session.ReceiveRowOrMessageAsync(cancellationToken).ConfigureAwait(false);
            switch (message)
            {
                case null:
                    throw Violation("DataRow without a RowDescription");
                case RowDescription description:
                    Description = description;
                    _state = State.Rows;
                    return true;
                case CommandComplete complete:
                    CommandTag = complete.CommandTag;
                    _state = State.ResultEnd;
                    return true;
                case EmptyQueryResponse:
                    EmptyQuery = true;
                    _state = State.ResultEnd;
                    return true;
                case PortalSuspended:
                    Suspended = true;
                    _state = State.ResultEnd;
                    return true;
                case ReadyForQuery:
                    _state = State.Done;
                    return false;
                case ErrorResponse error:
                    await FailAsync(error, cancellationToken).ConfigureAwait(false);
                    break;
                case CopyInResponse:
                    await RefuseCopyInAsync(cancellationToken).ConfigureAwait(false);
                    break;
                case CopyOutResponse or CopyData or CopyDone:
                    // A later statement's failure (which rolled back the ones before it) says more than the refusal.
                    throw await DrainAsync(cancellationToken).ConfigureAwait(false)
                        ?? (Exception)new NotSupportedException("a row reader does not take COPY TO STDOUT; use QueryAsync");
                case ParseComplete or BindComplete or NoData:
                    break;
                default:
                    if (!IsAside(message))
                    {
                        throw Violation($"unexpected {message.Name} in answer to {_request}");
                    }

                    break;
            }
        }

        return false;
    }

    /// <summary>
    /// Reads (and drops) what is left of the answer, up to ReadyForQuery, and frees the session. An
    /// error the server reported in what was left (a later statement that failed, which also rolled
    /// back the statements before it in an implicit transaction) is thrown as
    /// <see cref="PgServerException"/> once the session is ready again, except the 57014 that ends
    /// an answer after <see cref="PgFrontendSession.CancelAsync"/> and the server's answer to the
    /// reader's own CopyFail. Inside <c>await using</c>, that error replaces an exception the block
    /// was throwing.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_state != State.Done && !_session.IsBroken)
            {
                try
                {
                    while (await NextResultAsync().ConfigureAwait(false))
                    {
                    }
                }
                catch (PgServerException e) when (e == _copyFailAnswer || (e.SqlState == "57014" && _session.CancelRequests != _cancelRequests))
                {
                    // The answer to the reader's own CopyFail, or the end of an answer the caller
                    // cancelled; the session is ready again.
                }
                catch (NotSupportedException)
                {
                    // A COPY TO STDOUT nobody read; drained.
                }
            }
        }
        finally
        {
            _state = State.Done;
            _session.ReaderClosed(this);
        }
    }

    internal async Task StartAsync(CancellationToken cancellationToken)
    {
        if (!await NextResultAsync(cancellationToken).ConfigureAwait(false))
        {
            _state = State.Done;
        }
    }

    private bool Advance()
    {
        _body = _session.CurrentRowBody;
        if (Description is { } description && BinaryPrimitives.ReadUInt16BigEndian(_body.Span) != description.Fields.Length)
        {
            _state = State.Done;
            _session.CheckRowWidth(description, BinaryPrimitives.ReadUInt16BigEndian(_body.Span));
        }

        _rowNumber++;
        RowCount++;
        return true;
    }

    private bool EndOfRows(IBackendMessage message)
    {
        switch (message)
        {
            case CommandComplete complete:
                CommandTag = complete.CommandTag;
                break;
            case PortalSuspended:
                Suspended = true;
                break;
            case EmptyQueryResponse:
                EmptyQuery = true;
                break;
            default:
                throw Violation($"unexpected {message.Name} among the rows of a result");
        }

        _state = State.ResultEnd;
        return false;
    }

    private static bool IsAside(IBackendMessage message) => message is NoticeResponse or NotificationResponse or ParameterStatus;

    private async Task FailAsync(ErrorResponse error, CancellationToken cancellationToken)
    {
        PgServerException failure = ServerError(error);
        await DrainAsync(cancellationToken).ConfigureAwait(false);
        throw failure;
    }

    /// <summary>
    /// Reads the rest of the answer up to ReadyForQuery; returns the first error the server reported
    /// in it (but the answer to the reader's own CopyFail), or null.
    /// </summary>
    private async Task<PgServerException?> DrainAsync(CancellationToken cancellationToken)
    {
        _state = State.Done;
        PgServerException? first = null;
        while (true)
        {
            IBackendMessage? message = await _session.ReceiveRowOrMessageAsync(cancellationToken).ConfigureAwait(false);
            switch (message)
            {
                case ReadyForQuery:
                    return first;
                case CopyInResponse:
                    await RefuseCopyInAsync(cancellationToken).ConfigureAwait(false);
                    break;
                case ErrorResponse error:
                    PgServerException failure = ServerError(error);
                    if (failure != _copyFailAnswer)
                    {
                        first ??= failure;
                    }

                    break;
            }
        }
    }

    /// <summary>The exception of an ErrorResponse; the first 57014 after the reader's own CopyFail is remembered as its answer.</summary>
    private PgServerException ServerError(ErrorResponse error)
    {
        PgServerException failure = PgFrontendSession.ServerError(error);
        if (_refusedCopyIn && failure.SqlState == "57014")
        {
            _refusedCopyIn = false;
            _copyFailAnswer = failure;
        }

        return failure;
    }

    /// <summary>
    /// Ends a COPY FROM STDIN with CopyFail. In the extended protocol the server ignored the Sync
    /// sent with Execute while it was copying, and skips to the next one after the failure: one more.
    /// </summary>
    private async Task RefuseCopyInAsync(CancellationToken cancellationToken)
    {
        _refusedCopyIn = true;
        _session.SendUnchecked(new CopyFail("a row reader sends no COPY data"));
        if (_request == "Execute")
        {
            _session.SendUnchecked(new Sync());
        }

        await _session.FlushBoundedAsync(cancellationToken).ConfigureAwait(false);
    }

    private PgProtocolException Violation(string reason)
    {
        _state = State.Done;
        return _session.ViolationFor(reason);
    }

    private void ThrowIfNoRow()
    {
        if (_state != State.Rows || RowCount == 0 || _session.IsBroken)
        {
            throw new InvalidOperationException(_session.IsBroken
                ? "there is no current row: the session broke while reading"
                : "there is no current row: call ReadAsync first, and use the row before the next read");
        }
    }

    /// <summary>Where a column of the current row starts in its body, and its length (-1 for NULL); the row is walked once, on the first indexed access.</summary>
    private (int Start, int Length) Column(int ordinal)
    {
        ThrowIfNoRow();
        if (_offsetsOf != _rowNumber)
        {
            ReadOnlySpan<byte> body = _body.Span;
            int count = BinaryPrimitives.ReadUInt16BigEndian(body);
            if (count > _starts.Length)
            {
                _starts = new int[count];
                _lengths = new int[count];
            }

            int position = 2;
            for (int i = 0; i < count; i++)
            {
                int length = BinaryPrimitives.ReadInt32BigEndian(body.Slice(position));
                position += 4;
                _starts[i] = position;
                _lengths[i] = length;
                position += Math.Max(length, 0);
            }

            _columnCount = count;
            _offsetsOf = _rowNumber;
        }

        ArgumentOutOfRangeException.ThrowIfNegative(ordinal);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(ordinal, _columnCount);
        return (_starts[ordinal], _lengths[ordinal]);
    }
}
