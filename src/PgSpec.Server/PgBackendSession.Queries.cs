using System.Collections.Immutable;
using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using PgSpec.Protocol;
using static PgSpec.Server.PgStatementResult;

namespace PgSpec.Server;

public sealed partial class PgBackendSession
{
    private static readonly short[] s_noFormats = [];

    // Messages without fields, encoded the same every time.
    private static readonly ParseComplete s_parseComplete = new();
    private static readonly BindComplete s_bindComplete = new();
    private static readonly CloseComplete s_closeComplete = new();
    private static readonly NoData s_noData = new();
    private static readonly PortalSuspended s_portalSuspended = new();
    private static readonly EmptyQueryResponse s_emptyQueryResponse = new();
    private static readonly CopyDone s_copyDone = new();
    private static readonly ReadyForQuery[] s_readyForQuery = [new(TransactionStatus.Idle), new(TransactionStatus.InTransaction), new(TransactionStatus.FailedTransaction)];

    /// <summary>The last RowDescription sent, for the columns and formats it describes: a statement described again and again is encoded from the same message.</summary>
    private (IReadOnlyList<PgColumn> Columns, IReadOnlyList<short> Formats, RowDescription Message)? _lastDescription;

    /// <summary>The last CommandComplete sent.</summary>
    private CommandComplete? _lastCompletion;

    private readonly Dictionary<string, PgStatement> _statements = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Portal> _portals = new(StringComparer.Ordinal);

    /// <summary>After an error in an extended-query message, everything up to Sync is skipped.</summary>
    private bool _skipUntilSync;

    /// <summary>An extended-query batch (messages up to Sync) has begun; false when it failed.</summary>
    private bool _inBatch;
    private bool _batchSucceeded;

    private sealed class Portal(PgStatement statement, PgStatementResult result, PgBindContext bind)
    {
        public PgStatement Statement { get; } = statement;

        public PgStatementResult Result { get; } = result;

        public PgBindContext Bind { get; } = bind;

        public bool Done { get; set; }

        public bool Suspended { get; set; }
    }

    /// <summary>Reads and answers the client's messages until it leaves.</summary>
    private async Task ServeQueriesAsync()
    {
        PgStreamMessageReader reader = _reader!;
        while (true)
        {
            if (!await ReadNextAsync(reader).ConfigureAwait(false))
            {
                // The client has sent all it will (it may still read: a half-closed connection).
                // What was answered but not yet flushed goes out, bounded in time.
                await FlushAtEndAsync().ConfigureAwait(false);
                return;
            }

            await _writeLock.WaitAsync(_lifetime.Token).ConfigureAwait(false);
            try
            {
                // Every whole message already received is answered under one hold of the lock
                // (a client's Bind, Describe, Execute and Sync arrive together).
                do
                {
                    BeginBusy();
                    try
                    {
                        if (!await DispatchAsync(reader).ConfigureAwait(false))
                        {
                            // Terminate: what was answered before it goes out too (bounded in
                            // time), so that the wire says what Traffic was told.
                            await FlushAtEndAsync().ConfigureAwait(false);
                            return;
                        }
                    }
                    finally
                    {
                        EndBusy();
                    }
                }
                while (reader.Buffered > 0 && reader.TryReadBuffered());
            }
            finally
            {
                _writeLock.Release();
            }

            if (!_notifications.IsEmpty && IsIdle)
            {
                await DeliverNotificationsWhileIdleAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Drops a prepared statement (DEALLOCATE name), or every one (null: DEALLOCATE ALL, DISCARD
    /// ALL), as the statements a handler runs ask. Call it from the handler.
    /// </summary>
    public void Deallocate(string? name)
    {
        if (name is null)
        {
            ReleaseStatements();
        }
        else if (_statements.Remove(name, out PgStatement? statement))
        {
            statement.Release();
        }
        else
        {
            throw new PgErrorException("26000", $"prepared statement \"{name}\" does not exist");
        }
    }

    /// <summary>Drops every prepared statement, telling each (the session's end, DEALLOCATE ALL).</summary>
    private void ReleaseStatements()
    {
        foreach (PgStatement statement in _statements.Values)
        {
            statement.Release();
        }

        _statements.Clear();
    }

    /// <summary>Idle: the last message answered was ReadyForQuery, and no batch is open.</summary>
    private bool IsIdle => !_inBatch && !_skipUntilSync;

    private ValueTask<bool> ReadNextAsync(PgStreamMessageReader reader)
    {
        TimeSpan timeout = !IsIdle ? Timeout.InfiniteTimeSpan
            : _handler!.TransactionStatus == TransactionStatus.Idle ? _options.IdleTimeout : _options.IdleInTransactionTimeout;
        return timeout == Timeout.InfiniteTimeSpan ? reader.ReadAsync(_lifetime.Token) : ReadWithTimeoutAsync(reader, timeout);
    }

    private async ValueTask<bool> ReadWithTimeoutAsync(PgStreamMessageReader reader, TimeSpan timeout)
    {
        using var idle = CancellationTokenSource.CreateLinkedTokenSource(_lifetime.Token);
        idle.CancelAfter(timeout);
        try
        {
            return await reader.ReadAsync(idle.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (idle.IsCancellationRequested && !_lifetime.IsCancellationRequested)
        {
            End(_handler!.TransactionStatus == TransactionStatus.Idle ? SessionEnd.IdleTimeout : SessionEnd.IdleInTransactionTimeout);
            throw;
        }
    }

    private async ValueTask FlushAtEndAsync()
    {
        if (_output is not { UnflushedBytes: > 0 } || _outputBroken)
        {
            return;
        }

        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(_lifetime.Token);
        bounded.CancelAfter(TimeSpan.FromSeconds(1));
        try
        {
            await FlushAsync(bounded.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or System.Net.Sockets.SocketException)
        {
            // A client that does not read what it asked for: the session ends all the same.
        }
    }

    /// <summary>Answers one message; false when the session ends (Terminate).</summary>
    private async ValueTask<bool> DispatchAsync(PgStreamMessageReader reader)
    {
        OnTraffic(PgDirection.Frontend, reader.CurrentRaw);
        PgReceivedMessage received = reader.Current;
        FrontendMessageKind kind = received.FrontendKind;
        byte typeByte = (byte)received.TypeByte;
        if (kind == FrontendMessageKind.Terminate)
        {
            return false;
        }

        if (received.IsUnknown)
        {
            throw new PgErrorException("FATAL", "08P01", $"invalid frontend message type {received.TypeByte}");
        }

        if (_skipUntilSync && !FrontendMessages.EndsErrorSkip(kind))
        {
            // PostgreSQL discards everything after an extended-query error until Sync.
            return true;
        }

        IFrontendMessage message;
        try
        {
            message = (IFrontendMessage)received.ToMessage(_context);
        }
        catch (PgProtocolException)
        {
            // The frame is sound (the reader checked it); a string in it is not UTF-8.
            var error = new PgErrorException("22021", "invalid byte sequence for encoding \"UTF8\"");
            await FailAsync(error, extended: FrontendMessages.IsExtendedQuery(kind)).ConfigureAwait(false);
            if (!FrontendMessages.IsExtendedQuery(kind))
            {
                await ReadyForQueryAsync(_lifetime.Token).ConfigureAwait(false);
            }

            return true;
        }

        if (MustLeaveIoThread(_handler))
        {
            await Task.Yield();
        }

        CancellationToken token = QueryToken;
        try
        {
            switch (message)
            {
                case Query query:
                    await SimpleQueryAsync(query.QueryString, token).ConfigureAwait(false);
                    break;
                case Parse parse:
                    await BeginBatchAsync(token).ConfigureAwait(false);
                    await ParseAsync(parse, token).ConfigureAwait(false);
                    break;
                case Bind bind:
                    await BeginBatchAsync(token).ConfigureAwait(false);
                    await BindAsync(bind, token).ConfigureAwait(false);
                    break;
                case Describe describe:
                    await BeginBatchAsync(token).ConfigureAwait(false);
                    await DescribeAsync(describe).ConfigureAwait(false);
                    break;
                case Execute execute:
                    await BeginBatchAsync(token).ConfigureAwait(false);
                    await ExecuteAsync(execute, token).ConfigureAwait(false);
                    break;
                case Close close:
                    await BeginBatchAsync(token).ConfigureAwait(false);
                    await CloseAsync(close).ConfigureAwait(false);
                    break;
                case Sync:
                    await SyncAsync(token).ConfigureAwait(false);
                    break;
                case Flush:
                    await FlushAsync(_lifetime.Token).ConfigureAwait(false);
                    break;
                case FunctionCall call:
                    await FunctionCallAsync(call, token).ConfigureAwait(false);
                    break;
                case CopyData or CopyDone or CopyFail:
                    // Outside COPY these are dropped: a COPY that failed leaves the client still sending.
                    break;
                default:
                    throw new PgErrorException("FATAL", "08P01", $"unexpected message {((IPgMessage)message).Name} ({PgTraceWriter.FormatByte(typeByte)})");
            }
        }
        catch (PgErrorException e) when (!e.IsFatal)
        {
            await FailAsync(e, FrontendMessages.IsExtendedQuery(kind)).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (_cancelRequest.IsCancellationRequested && !_lifetime.IsCancellationRequested)
        {
            await FailAsync(new PgErrorException("57014", "canceling statement due to user request"), FrontendMessages.IsExtendedQuery(kind)).ConfigureAwait(false);
        }
        catch (Exception e) when (IsHandlerFailure(e))
        {
            // A handler that throws something else fails its statement, not the session.
            _logger?.LogWarning(e, "session {ProcessId}: the handler failed", ProcessId);
            await FailAsync(new PgErrorException("XX000", "internal error: " + e.Message), FrontendMessages.IsExtendedQuery(kind)).ConfigureAwait(false);
            if (kind is FrontendMessageKind.Query)
            {
                await ReadyForQueryAsync(_lifetime.Token).ConfigureAwait(false);
            }
        }

        return true;
    }

    /// <summary>An exception of the handler's own, not of the connection or of the session's end.</summary>
    private bool IsHandlerFailure(Exception e)
        => e is not (IOException or System.Net.Sockets.SocketException or OperationCanceledException or PgProtocolException or ObjectDisposedException or PgErrorException)
            && !_outputBroken && !_lifetime.IsCancellationRequested;

    /// <summary>An error in a statement: ErrorResponse; in the extended protocol, skip to Sync.</summary>
    private async ValueTask FailAsync(PgErrorException error, bool extended)
    {
        if (_handler is not null)
        {
            try
            {
                await _handler.OnErrorAsync(error, _lifetime.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                _logger?.LogWarning(e, "session {ProcessId}: the handler's OnErrorAsync failed", ProcessId);
            }
        }

        Send(error.ToErrorResponse());
        if (extended)
        {
            _skipUntilSync = true;
            _batchSucceeded = false;

            // PostgreSQL sends an error at once: a client waiting for it without Sync (after a
            // Flush, which is skipped now, or a CopyFail) must not wait for its own Sync.
            await FlushAsync(_lifetime.Token).ConfigureAwait(false);
        }
    }

    private async ValueTask ReadyForQueryAsync(CancellationToken cancellationToken)
    {
        SendNotifications();
        foreach (KeyValuePair<string, string> changed in _changedParameters)
        {
            Send(new ParameterStatus(changed.Key, changed.Value));
        }

        _changedParameters.Clear();
        TransactionStatus status = _handler!.TransactionStatus;
        if (status == TransactionStatus.Idle && _portals.Count > 0)
        {
            // Portals last until the end of their transaction.
            await DisposeResultsAsync().ConfigureAwait(false);
        }

        Send(status switch
        {
            TransactionStatus.Idle => s_readyForQuery[0],
            TransactionStatus.InTransaction => s_readyForQuery[1],
            TransactionStatus.FailedTransaction => s_readyForQuery[2],
            _ => new ReadyForQuery(status),
        });
        await FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask DisposeResultsAsync(bool andStatements = false)
    {
        if (andStatements)
        {
            ReleaseStatements();
        }

        foreach (Portal portal in _portals.Values)
        {
            await portal.Result.DisposeAsync().ConfigureAwait(false);
        }

        _portals.Clear();
    }

    // ------------------------------------------------------------------ simple query

    private async ValueTask SimpleQueryAsync(string sql, CancellationToken cancellationToken)
    {
        PgSessionHandler handler = _handler!;
        IReadOnlyList<string> statements;
        try
        {
            statements = handler.SplitQuery(sql);
        }
        catch (PgErrorException e) when (!e.IsFatal)
        {
            await FailAsync(e, extended: false).ConfigureAwait(false);
            await ReadyForQueryAsync(_lifetime.Token).ConfigureAwait(false);
            return;
        }

        if (statements.Count == 0)
        {
            Send(s_emptyQueryResponse);
            await ReadyForQueryAsync(_lifetime.Token).ConfigureAwait(false);
            return;
        }

        bool success = true;
        await handler.BeginBatchAsync(cancellationToken).ConfigureAwait(false);
        foreach (string text in statements)
        {
            try
            {
                PgStatement statement = await handler.PrepareAsync(text, [], cancellationToken).ConfigureAwait(false);
                try
                {
                    if (statement.ParameterTypes.Count > 0)
                    {
                        // A simple query has no values to bind, as PostgreSQL says.
                        throw new PgErrorException("42P02", "there is no parameter $1");
                    }

                    var bind = new PgBindContext([], s_noFormats, s_noFormats);
                    PgStatementResult result = await handler.BindAsync(statement, bind, cancellationToken).ConfigureAwait(false);
                    await using (result.ConfigureAwait(false))
                    {
                        if (result is not (PgCopyInResult or PgCopyOutResult) && result.Columns is { } columns)
                        {
                            Send(Describe(columns, bind));
                        }

                        await RunAsync(result, bind, maxRows: 0, extended: false, cancellationToken).ConfigureAwait(false);
                    }
                }
                finally
                {
                    // A simple query's statement lives as long as it runs.
                    statement.Release();
                }
            }
            catch (PgErrorException e) when (!e.IsFatal)
            {
                await FailAsync(e, extended: false).ConfigureAwait(false);
                success = false;
            }
            catch (OperationCanceledException) when (_cancelRequest.IsCancellationRequested && !_lifetime.IsCancellationRequested)
            {
                await FailAsync(new PgErrorException("57014", "canceling statement due to user request"), extended: false).ConfigureAwait(false);
                success = false;
            }
            catch (Exception e) when (IsHandlerFailure(e))
            {
                _logger?.LogWarning(e, "session {ProcessId}: the handler failed", ProcessId);
                await FailAsync(new PgErrorException("XX000", "internal error: " + e.Message), extended: false).ConfigureAwait(false);
                success = false;
            }

            if (!success)
            {
                break;
            }
        }

        try
        {
            await handler.EndBatchAsync(success, _lifetime.Token).ConfigureAwait(false);
        }
        catch (PgErrorException e) when (!e.IsFatal)
        {
            // The implicit transaction could not commit (a lock, a constraint checked at commit):
            // the error, then ReadyForQuery all the same.
            await FailAsync(e, extended: false).ConfigureAwait(false);
        }

        await ReadyForQueryAsync(_lifetime.Token).ConfigureAwait(false);
    }

    /// <summary>Sends a result: its rows (up to <paramref name="maxRows"/>, 0 for all) and CommandComplete, or the COPY sub-protocol.</summary>
    /// <returns>True when the result is complete; false when the row limit suspended it.</returns>
    private async ValueTask<bool> RunAsync(PgStatementResult result, PgBindContext bind, int maxRows, bool extended, CancellationToken cancellationToken)
    {
        switch (result)
        {
            case EmptyQueryResult:
                Send(s_emptyQueryResponse);
                return true;
            case PgCopyInResult copyIn:
                await CopyInAsync(copyIn, extended, cancellationToken).ConfigureAwait(false);
                return true;
            case PgCopyOutResult copyOut:
                await CopyOutAsync(copyOut, cancellationToken).ConfigureAwait(false);
                return true;
        }

        IReadOnlyList<PgColumn>? columns = result.Columns;
        long rows = 0;
        if (columns is not null)
        {
            int count = columns.Count;
            while (maxRows == 0 || rows < maxRows)
            {
                if (!await result.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    Send(Completion(Tag(result.CommandTag, rows)));
                    return true;
                }

                var values = new ReadOnlyMemory<byte>?[count];
                for (int i = 0; i < count; i++)
                {
                    values[i] = result.GetValue(i, bind.ResultFormat(i));
                }

                // The array is the message's: handed over without a copy.
                Send(new DataRow(ImmutableCollectionsMarshal.AsImmutableArray(values)));
                rows++;
                await FlushIfFullAsync().ConfigureAwait(false);
            }

            Send(s_portalSuspended);
            return false;
        }

        Send(Completion(result.CommandTag));
        return true;
    }

    private CommandComplete Completion(string tag)
    {
        if (_lastCompletion is { } last && last.CommandTag == tag)
        {
            return last;
        }

        return _lastCompletion = new CommandComplete(tag);
    }

    /// <summary>
    /// The tag of a result with rows counts the rows of this Execute, as PostgreSQL's does when a
    /// portal is fetched in parts: "SELECT 2", and "INSERT 0 2", "UPDATE 2", "DELETE 2" of a
    /// statement with RETURNING (the count that ends the tag); a tag without a count stays as it is.
    /// </summary>
    private static string Tag(string tag, long rows)
    {
        int space = tag.LastIndexOf(' ');
        if (space <= 0 || space == tag.Length - 1 || tag.AsSpan(space + 1).IndexOfAnyExceptInRange('0', '9') >= 0)
        {
            return tag;
        }

        // Usually the handler's tag already counts these rows: no new string.
        Span<char> digits = stackalloc char[20];
        return rows.TryFormat(digits, out int written, default, CultureInfo.InvariantCulture) && tag.AsSpan(space + 1).SequenceEqual(digits[..written])
            ? tag
            : string.Concat(tag.AsSpan(0, space + 1), rows.ToString(CultureInfo.InvariantCulture));
    }

    private RowDescription Describe(IReadOnlyList<PgColumn> columns, PgBindContext? bind)
    {
        IReadOnlyList<short> formats = bind?.ResultFormats ?? s_noFormats;
        if (_lastDescription is var (lastColumns, lastFormats, message) && ReferenceEquals(lastColumns, columns) && SameFormats(lastFormats, formats))
        {
            return message;
        }

        RowDescription description = DescribeColumns(columns, bind);
        _lastDescription = (columns, formats.ToArray(), description);
        return description;
    }

    private static bool SameFormats(IReadOnlyList<short> a, IReadOnlyList<short> b)
    {
        if (a.Count != b.Count)
        {
            return false;
        }

        for (int i = 0; i < a.Count; i++)
        {
            if (a[i] != b[i])
            {
                return false;
            }
        }

        return true;
    }

    private static RowDescription DescribeColumns(IReadOnlyList<PgColumn> columns, PgBindContext? bind)
    {
        var fields = ImmutableArray.CreateBuilder<RowDescription.Field>(columns.Count);
        for (int i = 0; i < columns.Count; i++)
        {
            PgColumn c = columns[i];
            fields.Add(new RowDescription.Field(c.Name, c.TableOid, c.ColumnNumber, c.TypeOid, c.TypeSize, c.TypeModifier, bind?.ResultFormat(i) ?? 0));
        }

        return new RowDescription(fields.MoveToImmutable());
    }

    // ------------------------------------------------------------------ COPY

    private async ValueTask CopyInAsync(PgCopyInResult copy, bool extended, CancellationToken cancellationToken)
    {
        Send(new CopyInResponse(copy.Format, [.. Enumerable.Repeat((short)copy.Format, copy.ColumnCount)]));
        await FlushAsync(_lifetime.Token).ConfigureAwait(false);
        PgStreamMessageReader reader = _reader!;
        try
        {
            while (true)
            {
                if (!await reader.ReadAsync(_lifetime.Token).ConfigureAwait(false))
                {
                    throw new EndOfStreamException("the client closed the connection during COPY FROM STDIN");
                }

                OnTraffic(PgDirection.Frontend, reader.CurrentRaw);
                PgReceivedMessage received = reader.Current;
                switch (received.FrontendKind)
                {
                    case FrontendMessageKind.CopyData:
                        // The body is CopyData's data: handed on as it is, copied once.
                        await copy.WriteAsync(received.Body.ToArray(), cancellationToken).ConfigureAwait(false);
                        break;
                    case FrontendMessageKind.CopyDone:
                        await copy.CompleteAsync(cancellationToken).ConfigureAwait(false);
                        Send(Completion(copy.CommandTag));
                        return;
                    case FrontendMessageKind.CopyFail:
                        string reason = ((CopyFail)received.ToMessage(_context)).ErrorMessage;
                        await copy.FailAsync(reason, _lifetime.Token).ConfigureAwait(false);
                        throw new PgErrorException("57014", $"COPY from stdin failed: {reason}");
                    case FrontendMessageKind kind when FrontendMessages.IsIgnoredIn(kind, PgSessionPhase.CopyIn):
                        // Flush and Sync: ignored during COPY IN, as the protocol says.
                        break;
                    case FrontendMessageKind.Terminate:
                        await copy.FailAsync("the client terminated the session", _lifetime.Token).ConfigureAwait(false);
                        throw new EndOfStreamException("the client terminated the session during COPY FROM STDIN");
                    default:
                        throw new PgErrorException("08P01", $"unexpected message type 0x{received.TypeByte:X2} during COPY from stdin");
                }
            }
        }
        catch (Exception e) when (e is PgErrorException { IsFatal: false } or OperationCanceledException && !_lifetime.IsCancellationRequested)
        {
            if (e is not PgErrorException { SqlState: "57014" })
            {
                await copy.FailAsync(e.Message, _lifetime.Token).ConfigureAwait(false);
            }

            // Back to normal: later CopyData, CopyDone and CopyFail are dropped.
            _context.Phase = PgSessionPhase.Normal;
            throw;
        }
    }

    private async ValueTask CopyOutAsync(PgCopyOutResult copy, CancellationToken cancellationToken)
    {
        Send(new CopyOutResponse(copy.Format, [.. Enumerable.Repeat((short)copy.Format, copy.ColumnCount)]));
        try
        {
            while (await copy.ReadCopyDataAsync(cancellationToken).ConfigureAwait(false) is ReadOnlyMemory<byte> data)
            {
                Send(new CopyData(data));
                await FlushIfFullAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            // An error ends COPY OUT too: the ErrorResponse follows the data sent.
            _context.Phase = PgSessionPhase.Normal;
        }

        Send(s_copyDone);
        Send(Completion(copy.CommandTag));
    }

    // ------------------------------------------------------------------ extended query

    private async ValueTask BeginBatchAsync(CancellationToken cancellationToken)
    {
        if (!_inBatch)
        {
            _inBatch = true;
            _batchSucceeded = true;
            await _handler!.BeginBatchAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private async ValueTask SyncAsync(CancellationToken cancellationToken)
    {
        _skipUntilSync = false;
        if (_inBatch)
        {
            _inBatch = false;
            try
            {
                await _handler!.EndBatchAsync(_batchSucceeded, cancellationToken).ConfigureAwait(false);
            }
            catch (PgErrorException e) when (!e.IsFatal)
            {
                // The Sync was consumed: the error starts no skip, and ReadyForQuery follows.
                await FailAsync(e, extended: false).ConfigureAwait(false);
            }
        }

        await ReadyForQueryAsync(_lifetime.Token).ConfigureAwait(false);
    }

    private async ValueTask ParseAsync(Parse parse, CancellationToken cancellationToken)
    {
        if (parse.StatementName.Length > 0 && _statements.ContainsKey(parse.StatementName))
        {
            throw new PgErrorException("42P05", $"prepared statement \"{parse.StatementName}\" already exists");
        }

        PgStatement statement = await _handler!.PrepareAsync(parse.QueryString, parse.ParameterTypeOids, cancellationToken).ConfigureAwait(false);
        if (_statements.Remove(parse.StatementName, out PgStatement? replaced))
        {
            // The unnamed statement: replaced by the next Parse.
            replaced.Release();
        }

        _statements[parse.StatementName] = statement;
        Send(s_parseComplete);
    }

    private PgStatement FindStatement(string name)
        => _statements.TryGetValue(name, out PgStatement? statement) ? statement
            : throw new PgErrorException("26000", name.Length == 0 ? "unnamed prepared statement does not exist" : $"prepared statement \"{name}\" does not exist");

    private Portal FindPortal(string name)
        => _portals.TryGetValue(name, out Portal? portal) ? portal
            : throw new PgErrorException("34000", $"portal \"{name}\" does not exist");

    private async ValueTask BindAsync(Bind bind, CancellationToken cancellationToken)
    {
        PgStatement statement = FindStatement(bind.StatementName);
        int parameterCount = bind.Parameters.Length;
        if (bind.ParameterFormatCodes.Length > 1 && bind.ParameterFormatCodes.Length != parameterCount)
        {
            throw new PgErrorException("08P01", $"bind message has {bind.ParameterFormatCodes.Length} parameter formats but {parameterCount} parameters");
        }

        if (parameterCount != statement.ParameterTypes.Count)
        {
            throw new PgErrorException("08P01", $"bind message supplies {parameterCount} parameters, but prepared statement \"{bind.StatementName}\" requires {statement.ParameterTypes.Count}");
        }

        short[] formats = parameterCount == 0 ? [] : new short[parameterCount];
        for (int i = 0; i < parameterCount; i++)
        {
            formats[i] = CheckFormat(bind.ParameterFormatCodes.Length switch
            {
                0 => 0,
                1 => bind.ParameterFormatCodes[0],
                _ => bind.ParameterFormatCodes[i],
            });
        }

        foreach (short format in bind.ResultFormatCodes)
        {
            CheckFormat(format);
        }

        // The statement's columns only when the count needs checking: reading them tells a handler the client knows them.
        if (bind.ResultFormatCodes.Length > 1 && statement.Columns is { } columns && bind.ResultFormatCodes.Length != columns.Count)
        {
            throw new PgErrorException("08P01", $"bind message has {bind.ResultFormatCodes.Length} result formats but query has {columns.Count} columns");
        }

        if (bind.PortalName.Length > 0 && _portals.ContainsKey(bind.PortalName))
        {
            throw new PgErrorException("42P03", $"cursor \"{bind.PortalName}\" already exists");
        }

        if (_portals.Remove(bind.PortalName, out Portal? replaced))
        {
            await replaced.Result.DisposeAsync().ConfigureAwait(false);
        }

        // The decoded message's own lists: no copy (its values, one box for the list).
        var context = new PgBindContext(bind.Parameters, formats, ImmutableCollectionsMarshal.AsArray(bind.ResultFormatCodes)!);
        PgStatementResult result = await _handler!.BindAsync(statement, context, cancellationToken).ConfigureAwait(false);
        _portals[bind.PortalName] = new Portal(statement, result, context);
        Send(s_bindComplete);
    }

    private static short CheckFormat(short format)
        => format is 0 or 1 ? format : throw new PgErrorException("22023", $"unsupported format code: {format}");

    private ValueTask DescribeAsync(Describe describe)
    {
        if (describe.Target == StatementOrPortal.Statement)
        {
            PgStatement statement = FindStatement(describe.Name);
            Send(new ParameterDescription([.. statement.ParameterTypes]));
            Send(statement.Columns is { } columns ? Describe(columns, null) : new NoData());
        }
        else
        {
            Portal portal = FindPortal(describe.Name);
            IReadOnlyList<PgColumn>? columns = portal.Result is PgCopyInResult or PgCopyOutResult ? null : portal.Result.Columns;
            Send(columns is not null ? Describe(columns, portal.Bind) : new NoData());
        }

        return ValueTask.CompletedTask;
    }

    private async ValueTask ExecuteAsync(Execute execute, CancellationToken cancellationToken)
    {
        Portal portal = FindPortal(execute.PortalName);
        if (portal.Done)
        {
            switch (portal.Result)
            {
                case EmptyQueryResult:
                    // An empty statement answers EmptyQueryResponse every time.
                    Send(s_emptyQueryResponse);
                    return;
                case not (PgCopyInResult or PgCopyOutResult) when portal.Result.Columns is not null:
                    // A portal of rows run to its end gives no more rows.
                    Send(Completion(Tag(portal.Result.CommandTag, 0)));
                    return;
                default:
                    // A command runs once: PostgreSQL marks its portal done, and running it again is an error.
                    throw new PgErrorException("55000", $"portal \"{execute.PortalName}\" cannot be run");
            }
        }

        bool complete = await RunAsync(portal.Result, portal.Bind, execute.MaxRows < 0 ? 0 : execute.MaxRows, extended: true, cancellationToken).ConfigureAwait(false);
        portal.Done = complete;
        portal.Suspended = !complete;
    }

    private async ValueTask CloseAsync(Close close)
    {
        if (close.Target == StatementOrPortal.Statement)
        {
            if (_statements.Remove(close.Name, out PgStatement? closed))
            {
                closed.Release();
            }
        }
        else if (_portals.Remove(close.Name, out Portal? portal))
        {
            await portal.Result.DisposeAsync().ConfigureAwait(false);
        }

        Send(s_closeComplete);
    }

    // ------------------------------------------------------------------ function call

    private async ValueTask FunctionCallAsync(FunctionCall call, CancellationToken cancellationToken)
    {
        try
        {
            short[] formats = new short[call.Arguments.Length];
            for (int i = 0; i < formats.Length; i++)
            {
                formats[i] = CheckFormat(call.ArgumentFormatCodes.Length switch
                {
                    0 => 0,
                    1 => call.ArgumentFormatCodes[0],
                    _ => i < call.ArgumentFormatCodes.Length ? call.ArgumentFormatCodes[i] : (short)0,
                });
            }

            ReadOnlyMemory<byte>? value = await _handler!.FunctionCallAsync(call.FunctionOid, call.Arguments, formats, CheckFormat(call.ResultFormatCode), cancellationToken).ConfigureAwait(false);
            Send(new FunctionCallResponse(value));
        }
        catch (PgErrorException e) when (!e.IsFatal)
        {
            await FailAsync(e, extended: false).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (_cancelRequest.IsCancellationRequested && !_lifetime.IsCancellationRequested)
        {
            await FailAsync(new PgErrorException("57014", "canceling statement due to user request"), extended: false).ConfigureAwait(false);
        }

        await ReadyForQueryAsync(_lifetime.Token).ConfigureAwait(false);
    }
}
