using PgSpec.Protocol;

namespace PgSpec.Client;

/// <summary>The outcome of one statement: its row description, rows and command tag.</summary>
public sealed class PgResult
{
    /// <summary>The columns, if the statement returns rows.</summary>
    public RowDescription? Description { get; internal set; }

    /// <summary>The rows received.</summary>
    public List<DataRow> Rows { get; } = [];

    /// <summary>The command tag (CommandComplete), e.g. "SELECT 1"; null if the portal was suspended or the query empty.</summary>
    public string? CommandTag { get; internal set; }

    /// <summary>True when Execute's row limit suspended the portal (PortalSuspended).</summary>
    public bool Suspended { get; internal set; }

    /// <summary>True for an empty query string (EmptyQueryResponse).</summary>
    public bool EmptyQuery { get; internal set; }

    /// <summary>COPY TO STDOUT data, one entry per CopyData.</summary>
    public List<ReadOnlyMemory<byte>> CopyData { get; } = [];

    /// <summary>A column as text (null for NULL).</summary>
    public string? Text(int row, int column)
        => Rows[row].Columns[column] is { } value ? System.Text.Encoding.UTF8.GetString(value.Span) : null;
}

public sealed partial class PgFrontendSession
{
    /// <summary>
    /// Runs a simple query (one or more statements) and returns one result per statement, with
    /// every row collected in memory: for results of any size, read them as they arrive with
    /// <see cref="QueryReaderAsync"/>.
    /// A COPY FROM STDIN in it gets <paramref name="copyIn"/> as its data (or CopyFail without it).
    /// An ErrorResponse is thrown as <see cref="PgServerException"/> once ReadyForQuery arrived.
    /// </summary>
    public async Task<IReadOnlyList<PgResult>> QueryAsync(string sql, IEnumerable<ReadOnlyMemory<byte>>? copyIn = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(sql);
        return await WithTimeoutAsync(async token =>
        {
            Send(new Query(sql));
            await FlushAsync(token).ConfigureAwait(false);
            var results = new List<PgResult>();
            PgResult? current = null;
            PgServerException? error = null;
            while (true)
            {
                IBackendMessage message = await ReceiveAsync(token).ConfigureAwait(false);
                switch (message)
                {
                    case RowDescription description:
                        current = new PgResult { Description = description };
                        break;
                    case DataRow row:
                        CheckRowWidth(current?.Description, row.Columns.Length);
                        (current ??= new PgResult()).Rows.Add(row);
                        break;
                    case CommandComplete complete:
                        (current ??= new PgResult()).CommandTag = complete.CommandTag;
                        results.Add(current);
                        current = null;
                        break;
                    case EmptyQueryResponse:
                        results.Add(new PgResult { EmptyQuery = true });
                        break;
                    case CopyInResponse:
                        if (copyIn is null)
                        {
                            Send(new CopyFail("no data was given for COPY FROM STDIN"));
                        }
                        else
                        {
                            try
                            {
                                foreach (ReadOnlyMemory<byte> chunk in copyIn)
                                {
                                    Send(new CopyData(chunk));
                                }
                            }
                            catch (Exception e) when (e is not PgException)
                            {
                                // The caller's data failed midway: the server waits inside COPY for what it will never get.
                                _broken = true;
                                throw;
                            }

                            Send(new CopyDone());
                        }

                        await FlushAsync(token).ConfigureAwait(false);
                        break;
                    case CopyOutResponse:
                        current = new PgResult();
                        break;
                    case CopyData data:
                        (current ??= new PgResult()).CopyData.Add(data.Data);
                        break;
                    case CopyDone:
                        break;
                    case ErrorResponse e:
                        error ??= ServerError(e);
                        current = null;
                        break;
                    case ReadyForQuery:
                        if (error is not null)
                        {
                            throw error;
                        }

                        return (IReadOnlyList<PgResult>)results;
                    case ParameterStatus or NoticeResponse or NotificationResponse:
                        break;
                    default:
                        throw Violation($"unexpected {message.Name} in answer to Query");
                }
            }
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Runs one statement with the extended protocol: Parse (unnamed), Bind (text or binary
    /// parameters, null for NULL), Describe portal, Execute (with a row limit, 0 for all), Sync;
    /// every row is collected in memory: for results of any size, read them as they arrive with
    /// <see cref="ExecuteReaderAsync"/>.
    /// </summary>
    public async Task<PgResult> ExecuteAsync(string sql, IReadOnlyList<ReadOnlyMemory<byte>?>? parameters = null, IReadOnlyList<short>? parameterFormats = null, IReadOnlyList<uint>? parameterTypes = null, int maxRows = 0, IReadOnlyList<short>? resultFormats = null, CancellationToken cancellationToken = default)
    {
        IReadOnlyList<IBackendMessage> replies = await RoundTripAsync(
            [
                new Parse("", sql, [.. parameterTypes ?? []]),
                new Bind("", "", [.. parameterFormats ?? []], [.. parameters ?? []], [.. resultFormats ?? []]),
                new Describe(StatementOrPortal.Portal, ""),
                new Execute("", maxRows),
                new Sync(),
            ],
            cancellationToken).ConfigureAwait(false);
        ThrowFirstError(replies);
        var result = new PgResult();
        foreach (IBackendMessage message in replies)
        {
            switch (message)
            {
                case RowDescription description:
                    result.Description = description;
                    break;
                case DataRow row:
                    CheckRowWidth(result.Description, row.Columns.Length);
                    result.Rows.Add(row);
                    break;
                case CommandComplete complete:
                    result.CommandTag = complete.CommandTag;
                    break;
                case PortalSuspended:
                    result.Suspended = true;
                    break;
                case EmptyQueryResponse:
                    result.EmptyQuery = true;
                    break;
            }
        }

        return result;
    }

    /// <summary>
    /// Runs a simple query (one or more statements) and returns a reader of its results as they
    /// arrive, positioned on the first result: rows are not collected (memory does not grow with
    /// the result), each is borrowed until the next read. Dispose the reader before the next
    /// operation on the session. A COPY FROM STDIN in the query is refused with CopyFail.
    /// </summary>
    public async Task<PgRowReader> QueryReaderAsync(string sql, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(sql);
        cancellationToken.ThrowIfCancellationRequested();
        Send(new Query(sql));
        return await OpenReaderAsync("Query", cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Runs one statement with the extended protocol (Parse, Bind, Describe portal, Execute with a
    /// row limit or 0 for all, Sync; the parameters as for <see cref="ExecuteAsync"/>) and returns
    /// a reader of its rows as they arrive: rows are not collected, each is borrowed until the next
    /// read. Dispose the reader before the next operation on the session.
    /// </summary>
    public async Task<PgRowReader> ExecuteReaderAsync(string sql, IReadOnlyList<ReadOnlyMemory<byte>?>? parameters = null, IReadOnlyList<short>? parameterFormats = null, IReadOnlyList<uint>? parameterTypes = null, int maxRows = 0, IReadOnlyList<short>? resultFormats = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(sql);
        cancellationToken.ThrowIfCancellationRequested();
        SendAll(
        [
            new Parse("", sql, [.. parameterTypes ?? []]),
            new Bind("", "", [.. parameterFormats ?? []], [.. parameters ?? []], [.. resultFormats ?? []]),
            new Describe(StatementOrPortal.Portal, ""),
            new Execute("", maxRows),
            new Sync(),
        ]);
        return await OpenReaderAsync("Execute", cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Sends what was written, within the command timeout.</summary>
    internal Task FlushBoundedAsync(CancellationToken cancellationToken)
        => WithTimeoutAsync(async token =>
        {
            await FlushAsync(token).ConfigureAwait(false);
            return true;
        }, cancellationToken);

    private async Task<PgRowReader> OpenReaderAsync(string request, CancellationToken cancellationToken)
    {
        // A cancel sent from here on may end this answer with 57014.
        int cancelRequests = CancelRequests;
        await FlushBoundedAsync(cancellationToken).ConfigureAwait(false);
        var reader = new PgRowReader(this, request, cancelRequests);
        _openReader = reader;
        try
        {
            await reader.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            ReaderClosed(reader);
            if (e is not (PgServerException or NotSupportedException))
            {
                // Not read to ReadyForQuery (a handler of the caller's threw, say): what is left of
                // the answer would be taken for the next one's.
                _broken = true;
            }

            throw;
        }

        return reader;
    }

    /// <summary>
    /// Sends messages, flushes, and receives until one ReadyForQuery per Sync or Query sent
    /// (or, with neither, until the answers to a Flush have come: pass <paramref name="until"/>).
    /// Errors are returned among the messages, not thrown.
    /// </summary>
    public async Task<IReadOnlyList<IBackendMessage>> RoundTripAsync(IReadOnlyList<IFrontendMessage> messages, CancellationToken cancellationToken = default, Func<IBackendMessage, bool>? until = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        int expected = messages.Count(m => m is Sync or Query or FunctionCall);
        return await WithTimeoutAsync(async token =>
        {
            SendAll(messages);
            await FlushAsync(token).ConfigureAwait(false);
            var replies = new List<IBackendMessage>();
            while (expected > 0 || until is not null)
            {
                IBackendMessage reply = await ReceiveAsync(token).ConfigureAwait(false);
                replies.Add(reply);
                if (reply is ReadyForQuery)
                {
                    expected--;
                }

                if (until is not null && Until(until, reply))
                {
                    break;
                }
            }

            return (IReadOnlyList<IBackendMessage>)replies;
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Calls a function by OID through the fast-path interface (FunctionCall).</summary>
    public async Task<ReadOnlyMemory<byte>?> CallFunctionAsync(uint functionOid, IReadOnlyList<ReadOnlyMemory<byte>?> arguments, IReadOnlyList<short>? argumentFormats = null, short resultFormat = 0, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(arguments);
        IReadOnlyList<IBackendMessage> replies = await RoundTripAsync(
            [new FunctionCall(functionOid, [.. argumentFormats ?? []], [.. arguments], resultFormat)],
            cancellationToken).ConfigureAwait(false);
        ThrowFirstError(replies);
        FunctionCallResponse[] responses = [.. replies.OfType<FunctionCallResponse>()];
        if (responses.Length != 1)
        {
            throw Violation($"{responses.Length} FunctionCallResponse messages in answer to FunctionCall, not one");
        }

        return responses[0].Value;
    }

    /// <summary>Returns the next notification: one already received, or the next to arrive while idle.</summary>
    public async Task<NotificationResponse> WaitForNotificationAsync(CancellationToken cancellationToken = default)
    {
        if (TryTakeNotification(out NotificationResponse? queued))
        {
            return queued;
        }

        return await WithTimeoutAsync(async token =>
        {
            while (true)
            {
                IBackendMessage message = await ReceiveAsync(token).ConfigureAwait(false);
                if (message is NotificationResponse && TryTakeNotification(out NotificationResponse? notification))
                {
                    return notification;
                }

                if (message is ErrorResponse error)
                {
                    throw ServerError(error);
                }
            }
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Starts a COPY BOTH (replication) exchange with a simple query; returns the CopyBothResponse.</summary>
    public async Task<CopyBothResponse> StartCopyBothAsync(string sql, CancellationToken cancellationToken = default)
    {
        return await WithTimeoutAsync(async token =>
        {
            Send(new Query(sql));
            await FlushAsync(token).ConfigureAwait(false);
            while (true)
            {
                IBackendMessage message = await ReceiveAsync(token).ConfigureAwait(false);
                switch (message)
                {
                    case CopyBothResponse response:
                        return response;
                    case ErrorResponse error:
                        await DrainUntilReadyAsync(token).ConfigureAwait(false);
                        throw ServerError(error);
                    case NoticeResponse or ParameterStatus:
                        break;
                    default:
                        throw Violation($"unexpected {message.Name} before CopyBothResponse");
                }
            }
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Ends a COPY BOTH exchange: sends CopyDone and reads until ReadyForQuery.</summary>
    public async Task<IReadOnlyList<IBackendMessage>> EndCopyBothAsync(CancellationToken cancellationToken = default)
    {
        return await WithTimeoutAsync(async token =>
        {
            Send(new CopyDone());
            await FlushAsync(token).ConfigureAwait(false);
            var replies = new List<IBackendMessage>();
            while (true)
            {
                IBackendMessage message = await ReceiveAsync(token).ConfigureAwait(false);
                replies.Add(message);
                if (message is ReadyForQuery)
                {
                    return (IReadOnlyList<IBackendMessage>)replies;
                }
            }
        }, cancellationToken).ConfigureAwait(false);
    }

    private async Task DrainUntilReadyAsync(CancellationToken cancellationToken)
    {
        while (await ReceiveAsync(cancellationToken).ConfigureAwait(false) is not ReadyForQuery)
        {
        }
    }

    private static void ThrowFirstError(IReadOnlyList<IBackendMessage> replies)
    {
        if (replies.OfType<ErrorResponse>().FirstOrDefault() is { } error)
        {
            throw ServerError(error);
        }
    }

    /// <summary>Runs an operation under the command timeout; a timeout breaks the connection, since its state is then unknown.</summary>
    private async Task<T> WithTimeoutAsync<T>(Func<CancellationToken, Task<T>> operation, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(Options.CommandTimeout);
        try
        {
            return await operation(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw Broken(new PgConnectionException($"the server did not answer within {Options.CommandTimeout.TotalSeconds:0.#} s"));
        }
    }

    /// <summary>The caller's <c>until</c> of <see cref="RoundTripAsync"/>: one that throws breaks the session (the rest of the answer is unread).</summary>
    private bool Until(Func<IBackendMessage, bool> until, IBackendMessage reply)
    {
        try
        {
            return until(reply);
        }
        catch
        {
            _broken = true;
            throw;
        }
    }
}
