using System.Globalization;
using PgSpec.Client;
using PgSpec.Protocol;
using PgSpec.Protocol.PgOutput;
using PgSpec.Protocol.Replication;

namespace PgSpec.Cli.Replicate;

/// <summary>
/// A logical replication stream with pgoutput, written as JSON lines: every transaction once it has
/// committed, whole (an ordinary one at Commit, a streamed one at Stream Commit, a prepared one at
/// Commit Prepared), so that the output holds committed work only, in commit order. Aborted
/// streamed transactions, the changes of aborted subtransactions and transactions rolled back
/// after PREPARE TRANSACTION are dropped.
/// <para>
/// Acknowledgement: the position confirmed to the server (flush = write = apply) is one before
/// which every transaction was written out: the end of the last one written, or, between
/// transactions, the end of WAL a keepalive reports (anything committed before it has been sent);
/// never past the PREPARE of a prepared transaction not yet resolved (the server would not send it
/// again). The output is flushed (and a file fsynced) before each status update.
/// </para>
/// </summary>
internal sealed class LogicalStream
{
    private readonly PgFrontendSession _session;
    private readonly ReplicateSettings _settings;
    private readonly ReplicationOutput _output;
    private readonly TextWriter _stderr;
    private readonly CancellationToken _stop;
    private readonly ReplicateSignals _signals;
    private readonly PgOutputContext _context;
    private readonly ChangeWriter _writer;
    private readonly TransactionBuffers _buffers;
    private readonly Dictionary<int, BufferedTransaction> _streams = [];
    private readonly Dictionary<int, BufferedTransaction> _prepared = [];
    private BufferedTransaction? _current;
    private bool _currentIsPrepare;
    private int? _blockXid;

    /// <summary>Every transaction that ended at or before this position has been written to the output.</summary>
    private long _written;

    /// <summary>The last position confirmed to the server.</summary>
    private long _acknowledged;

    private readonly ReplicationReceiver _receiver;
    private long _abortedTransactions;
    private long _abortedSubtransactions;
    private long _rolledBackPrepared;
    private string _stoppedBy = "SIGINT/SIGTERM";

    public LogicalStream(PgFrontendSession session, ReplicateSettings settings, int protocolVersion, ReplicationOutput output, TextWriter stderr, ReplicateSignals signals)
    {
        _session = session;
        _settings = settings;
        _output = output;
        _stderr = stderr;
        _signals = signals;
        _stop = signals.Stop;
        _context = new PgOutputContext(protocolVersion, settings.Streaming);
        _writer = new ChangeWriter(output.Stream, protocolVersion, settings.Streaming);
        _buffers = new TransactionBuffers(settings.BufferMemory, settings.SpillDirectory);
        _receiver = new ReplicationReceiver(session, settings, output, signals, SendStatusAsync);
    }

    /// <summary>The writer, for the type names the catalogue gives before streaming starts.</summary>
    public ChangeWriter Writer => _writer;

    /// <summary>Streams until SIGINT/SIGTERM, --endpos, or an error; returns the exit code.</summary>
    public async Task<int> RunAsync(string startCommand)
    {
        try
        {
            await _session.StartCopyBothAsync(startCommand, _stop).ConfigureAwait(false);
        }
        catch (PgServerException e)
        {
            throw new ReplicateException(ReplicateCommand.ExitServerError, "START_REPLICATION: " + ReplicationConnection.Describe(e), e);
        }

        Note($"streaming from slot {_settings.Slot} ({_context})");
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                if (_signals.TakeReopen())
                {
                    _output.Reopen();
                    Note($"reopened {_output.Name}");
                }

                IBackendMessage? message = await _receiver.ReceiveAsync().ConfigureAwait(false);
                if (message is null)
                {
                    continue;
                }

                bool stop = await HandleAsync(message).ConfigureAwait(false);

                // The server's silence is counted from when the client is ready for it again.
                _receiver.Ready();
                if (stop)
                {
                    break;
                }
            }
        }
        catch
        {
            DisposeAll();
            throw;
        }

        try
        {
            await FinishAsync().ConfigureAwait(false);
        }
        finally
        {
            DisposeAll();
        }

        return PgSpecCommandLine.ExitOk;
    }

    /// <summary>Handles one message from the server; true when the stream should stop (--endpos).</summary>
    private async Task<bool> HandleAsync(IBackendMessage message)
    {
        switch (message)
        {
            case CopyData data:
                if (!ReplicationMessages.TryDecode(data.Data.Span, PgDirection.Backend, out IReplicationMessage? replication, out PgDecodeError error))
                {
                    throw new ReplicateException(PgSpecCommandLine.ExitServerViolation, "the server sent a CopyData that is not a replication message: " + error);
                }

                switch (replication)
                {
                    case XLogData xlog:
                        return await HandleXLogDataAsync(xlog).ConfigureAwait(false);
                    case PrimaryKeepalive keepalive:
                        return await HandleKeepaliveAsync(keepalive).ConfigureAwait(false);
                    default:
                        return false;
                }

            case ErrorResponse errorResponse:
                throw new ReplicateException(ReplicateCommand.ExitServerError, "the server ended replication with an error: " + ReplicationConnection.Describe(new PgServerException(PgErrorFields.From(errorResponse.Fields.Select(f => (f.Code, f.Value))), errorResponse)));

            case CopyDone:
                throw new ReplicateException(PgSpecCommandLine.ExitConnection, "the server ended the replication stream (CopyDone): it may be shutting down");

            case NoticeResponse notice:
                _stderr.WriteLine("pgspec replicate: server: " + PgErrorFields.From(notice.Fields.Select(f => (f.Code, f.Value))));
                return false;

            case ParameterStatus:
                return false;

            default:
                throw new ReplicateException(PgSpecCommandLine.ExitServerViolation, $"the server sent {message.Name} during replication");
        }
    }

    private async Task<bool> HandleKeepaliveAsync(PrimaryKeepalive keepalive)
    {
        if (_current is null)
        {
            // Between transactions: everything that committed before the server's end of WAL was sent, and written.
            _written = Math.Max(_written, keepalive.WalEnd);
        }

        if (keepalive.ReplyRequested != 0)
        {
            await SendStatusAsync(replyRequested: false).ConfigureAwait(false);
        }

        if (_settings.EndLsn is { } end && _current is null && keepalive.WalEnd >= end)
        {
            _stoppedBy = "--endpos " + ReplicationValues.FormatLsn(end);
            return true;
        }

        return false;
    }

    private async Task<bool> HandleXLogDataAsync(XLogData xlog)
    {
        bool inBlock = _context.InStreamedTransaction;
        if (!PgOutputMessages.TryDecodeNext(xlog.Data.Span, _context, out IPgOutputMessage? message, out PgDecodeError error))
        {
            throw new ReplicateException(PgSpecCommandLine.ExitServerViolation, $"the XLogData at {ReplicationValues.FormatLsn(xlog.WalStart)} is not a pgoutput message ({_context}): {error}");
        }

        switch (message)
        {
            case Begin begin:
                ExpectNoTransaction(message);
                _current = _buffers.Open(begin.Xid, xlog.WalStart, streamed: false);
                _currentIsPrepare = false;
                return false;

            case BeginPrepare beginPrepare:
                ExpectNoTransaction(message);
                _current = _buffers.Open(beginPrepare.Xid, xlog.WalStart, streamed: false);
                _current.Gid = beginPrepare.Gid;
                _currentIsPrepare = true;
                return false;

            case Commit commit:
            {
                BufferedTransaction transaction = ExpectTransaction(message, prepare: false);
                if (PastEnd(commit.EndLsn))
                {
                    return true;
                }

                _current = null;
                return await WriteAsync(transaction, new CommitInfo(commit.CommitLsn, commit.EndLsn, commit.CommitTime));
            }

            case Prepare prepare:
            {
                BufferedTransaction transaction = ExpectTransaction(message, prepare: true);
                _current = null;
                Prepared(transaction, prepare.Xid, prepare.Gid, prepare.PrepareLsn, prepare.EndLsn, prepare.PrepareTime);
                return false;
            }

            case CommitPrepared commitPrepared:
            {
                ExpectNoTransaction(message);
                if (PastEnd(commitPrepared.EndLsn))
                {
                    return true;
                }

                if (!_prepared.Remove(commitPrepared.Xid, out BufferedTransaction? transaction))
                {
                    // Prepared before the position this run started from, and acknowledged then: its changes are not sent again.
                    _stderr.WriteLine($"pgspec replicate: COMMIT PREPARED '{commitPrepared.Gid}' (transaction {commitPrepared.Xid}) at {ReplicationValues.FormatLsn(commitPrepared.CommitLsn)}: its PREPARE was confirmed before this run, so its changes are not in this output");
                    transaction = _buffers.Open(commitPrepared.Xid, xlog.WalStart, streamed: false);
                    transaction.Gid = commitPrepared.Gid;
                }

                return await WriteAsync(transaction, new CommitInfo(commitPrepared.CommitLsn, commitPrepared.EndLsn, commitPrepared.CommitTime));
            }

            case RollbackPrepared rollbackPrepared:
                ExpectNoTransaction(message);
                if (PastEnd(rollbackPrepared.RollbackEndLsn))
                {
                    return true;
                }

                if (_prepared.Remove(rollbackPrepared.Xid, out BufferedTransaction? rolledBack))
                {
                    rolledBack.Dispose();
                }

                _rolledBackPrepared++;
                Note($"ROLLBACK PREPARED '{rollbackPrepared.Gid}' (transaction {rollbackPrepared.Xid}): its changes are dropped");
                _written = Math.Max(_written, rollbackPrepared.RollbackEndLsn);
                return ReachedEnd();

            case StreamStart start:
                _blockXid = start.Xid;
                if (!_streams.ContainsKey(start.Xid))
                {
                    _streams[start.Xid] = _buffers.Open(start.Xid, xlog.WalStart, streamed: true);
                }

                return false;

            case StreamStop:
                if (_settings.Verbose && _blockXid is int blockXid && _streams.TryGetValue(blockXid, out BufferedTransaction? streamed))
                {
                    string subtransactions = streamed.Subtransactions.Count == 0 ? "" : "; with changes of subtransactions " + string.Join(", ", streamed.Subtransactions.Order());
                    Note($"streamed block of transaction {blockXid}: {streamed.Count} messages held{(streamed.Spilled ? " (spilled to a file)" : "")}{subtransactions}");
                }

                _blockXid = null;
                return false;

            case StreamCommit streamCommit:
            {
                ExpectNoTransaction(message);
                if (PastEnd(streamCommit.EndLsn))
                {
                    return true;
                }

                if (!_streams.Remove(streamCommit.Xid, out BufferedTransaction? transaction))
                {
                    transaction = _buffers.Open(streamCommit.Xid, xlog.WalStart, streamed: true);
                }

                return await WriteAsync(transaction, new CommitInfo(streamCommit.CommitLsn, streamCommit.EndLsn, streamCommit.CommitTime));
            }

            case StreamAbort streamAbort:
                if (streamAbort.SubXid == streamAbort.Xid)
                {
                    if (_streams.Remove(streamAbort.Xid, out BufferedTransaction? aborted))
                    {
                        aborted.Dispose();
                    }

                    _abortedTransactions++;
                    Note($"streamed transaction {streamAbort.Xid} aborted: its changes are dropped");
                }
                else if (_streams.TryGetValue(streamAbort.Xid, out BufferedTransaction? parent))
                {
                    parent.AbortSubtransaction(streamAbort.SubXid);
                    _abortedSubtransactions++;
                    Note($"subtransaction {streamAbort.SubXid} of streamed transaction {streamAbort.Xid} aborted: its changes are dropped");
                }

                return false;

            case StreamPrepare streamPrepare:
            {
                ExpectNoTransaction(message);
                if (!_streams.Remove(streamPrepare.Xid, out BufferedTransaction? transaction))
                {
                    transaction = _buffers.Open(streamPrepare.Xid, xlog.WalStart, streamed: true);
                }

                Prepared(transaction, streamPrepare.Xid, streamPrepare.Gid, streamPrepare.PrepareLsn, streamPrepare.EndLsn, streamPrepare.PrepareTime);
                return false;
            }

            case Origin origin:
            {
                BufferedTransaction? target = inBlock ? BlockTransaction(message) : _current;
                if (target is not null)
                {
                    target.Origin = origin.Name;
                    target.OriginLsn = origin.OriginLsn;
                }

                return false;
            }

            case Relation or DataType:
            {
                // The server counts a relation described outside a streamed block as sent for good;
                // one inside a block is learnt when its transaction is written.
                if (!inBlock || message is DataType)
                {
                    _writer.Learn(message);
                }

                BufferedTransaction? target = inBlock ? BlockTransaction(message) : _current;
                target?.Add(new BufferedRecord(xlog.WalStart, XidOf(message) ?? target.Xid, inBlock, xlog.Data));
                return false;
            }

            case LogicalMessage logical when (logical.Flags & LogicalMessageFlags.Transactional) == 0 && !inBlock && _current is null:
                // pg_logical_emit_message(false, ...): written at once, outside any transaction.
                if (PastEnd(xlog.WalStart))
                {
                    return true;
                }

                _writer.WriteMessage(logical, xlog.WalStart);
                _written = Math.Max(_written, xlog.WalStart);
                return ReachedEnd();

            default:
            {
                BufferedTransaction target = inBlock
                    ? BlockTransaction(message)
                    : _current ?? throw new ReplicateException(PgSpecCommandLine.ExitServerViolation, $"the server sent {message.Name} at {ReplicationValues.FormatLsn(xlog.WalStart)} outside a transaction");
                target.Add(new BufferedRecord(xlog.WalStart, XidOf(message) ?? target.Xid, inBlock, xlog.Data));
                return false;
            }
        }
    }

    private static int? XidOf(IPgOutputMessage message) => message switch
    {
        Insert m => m.Xid,
        Update m => m.Xid,
        Delete m => m.Xid,
        Truncate m => m.Xid,
        LogicalMessage m => m.Xid,
        Relation m => m.Xid,
        DataType m => m.Xid,
        _ => null,
    };

    private BufferedTransaction BlockTransaction(IPgOutputMessage message)
        => _blockXid is int xid && _streams.TryGetValue(xid, out BufferedTransaction? transaction)
            ? transaction
            : throw new ReplicateException(PgSpecCommandLine.ExitServerViolation, $"the server sent {message.Name} in a streamed block without its Stream Start");

    private void ExpectNoTransaction(IPgOutputMessage message)
    {
        if (_current is not null)
        {
            throw new ReplicateException(PgSpecCommandLine.ExitServerViolation, $"the server sent {message.Name} inside transaction {_current.Xid}, before its {(_currentIsPrepare ? "Prepare" : "Commit")}");
        }
    }

    private BufferedTransaction ExpectTransaction(IPgOutputMessage message, bool prepare)
    {
        if (_current is null || _currentIsPrepare != prepare)
        {
            throw new ReplicateException(PgSpecCommandLine.ExitServerViolation, $"the server sent {message.Name} without its {(prepare ? "Begin Prepare" : "Begin")}");
        }

        return _current;
    }

    private void Prepared(BufferedTransaction transaction, int xid, string gid, long prepareLsn, long endLsn, long prepareTime)
    {
        transaction.Gid = gid;
        transaction.PrepareLsn = prepareLsn;
        transaction.PrepareEndLsn = endLsn;
        transaction.PrepareTime = prepareTime;
        if (_prepared.Remove(xid, out BufferedTransaction? earlier))
        {
            earlier.Dispose();
        }

        _prepared[xid] = transaction;
        Note($"PREPARE TRANSACTION '{gid}' (transaction {xid}, {transaction.Count} messages): held until COMMIT PREPARED; the position confirmed stays at {ReplicationValues.FormatLsn(prepareLsn)} until then");
    }

    /// <summary>With --endpos, whether a transaction that ends at <paramref name="endLsn"/> lies past it: then the stream stops before it.</summary>
    private bool PastEnd(long endLsn)
    {
        if (_settings.EndLsn is { } end && endLsn > end)
        {
            _stoppedBy = "--endpos " + ReplicationValues.FormatLsn(end);
            return true;
        }

        return false;
    }

    private bool ReachedEnd()
    {
        if (_settings.EndLsn is { } end && _written >= end)
        {
            _stoppedBy = "--endpos " + ReplicationValues.FormatLsn(end);
            return true;
        }

        return false;
    }

    private async Task<bool> WriteAsync(BufferedTransaction transaction, CommitInfo commit)
    {
        try
        {
            int changes = await _writer.WriteTransactionAsync(transaction, commit, KeepAliveAsync).ConfigureAwait(false);
            if (_settings.Verbose)
            {
                Note($"transaction {transaction.Xid} committed at {ReplicationValues.FormatLsn(commit.CommitLsn)}: {changes} changes written{(transaction.Streamed ? " (streamed)" : "")}{(transaction.Gid is { } gid ? $" (prepared as '{gid}')" : "")}");
            }
        }
        finally
        {
            transaction.Dispose();
        }

        _written = Math.Max(_written, commit.EndLsn);
        return ReachedEnd();
    }

    /// <summary>
    /// While a large transaction is written: a status update when one is due (the position it
    /// confirms does not move until the transaction is written), so that the server, which hears
    /// nothing else meanwhile, does not end the connection for wal_sender_timeout.
    /// </summary>
    private async Task KeepAliveAsync()
    {
        TimeSpan interval = _settings.StatusInterval > TimeSpan.Zero ? _settings.StatusInterval : TimeSpan.FromSeconds(10);
        if (DateTime.UtcNow - _receiver.LastStatus >= interval)
        {
            await SendStatusAsync(replyRequested: false).ConfigureAwait(false);
        }
    }

    /// <summary>The position that may be confirmed: what was written, held back before any PREPARE not yet resolved.</summary>
    private long Confirmable()
    {
        long position = _written;
        foreach (BufferedTransaction prepared in _prepared.Values)
        {
            if (prepared.PrepareLsn is long prepareLsn && prepareLsn < position)
            {
                position = prepareLsn;
            }
        }

        // Never backwards: PostgreSQL would move the slot back.
        return Math.Max(position, _acknowledged);
    }

    /// <summary>Makes the output durable, then confirms what it holds with a standby status update.</summary>
    private async Task SendStatusAsync(bool replyRequested)
    {
        _output.FlushDurable();
        long position = Confirmable();
        _session.Send(new CopyData(new StandbyStatusUpdate(position, position, position, ReplicationValues.Now(), replyRequested ? (byte)1 : (byte)0).ToArray()));
        using var bound = new CancellationTokenSource(_settings.Timeout);
        try
        {
            await _session.FlushAsync(bound.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (bound.IsCancellationRequested)
        {
            throw new ReplicateException(PgSpecCommandLine.ExitTimeout, $"the server took no data for {_settings.Timeout.TotalSeconds:0.#} s (--timeout): a standby status update could not be sent");
        }

        _acknowledged = position;
        _receiver.LastStatus = DateTime.UtcNow;
    }

    /// <summary>Stops cleanly: the output made durable, a last status update with what it holds, CopyDone.</summary>
    private async Task FinishAsync()
    {
        _current?.Dispose();
        _current = null;
        int pending = _streams.Count + _prepared.Count;
        await SendStatusAsync(replyRequested: false).ConfigureAwait(false);
        DisposeAll();
        string ended = await ReplicationConnection.EndStreamAsync(_session).ConfigureAwait(false);
        string held = pending == 0 ? "" : $"; {pending} transactions not yet committed were left to the server, which sends them again";
        _stderr.WriteLine(string.Create(
            CultureInfo.InvariantCulture,
            $"pgspec replicate: stopped ({_stoppedBy}); confirmed {ReplicationValues.FormatLsn(_acknowledged)} to the server; {_writer.Transactions} transactions ({_writer.Changes} changes) written; {_abortedTransactions} aborted streamed transactions, {_abortedSubtransactions} aborted subtransactions, {_rolledBackPrepared} rolled-back prepared transactions dropped; {_buffers.SpilledTransactions} transactions spilled to {_buffers.SpillDirectory}{held}{ended}"));
    }

    private void DisposeAll()
    {
        _current?.Dispose();
        _current = null;
        foreach (BufferedTransaction transaction in _streams.Values.Concat(_prepared.Values))
        {
            transaction.Dispose();
        }

        _streams.Clear();
        _prepared.Clear();
    }

    private void Note(string text)
    {
        if (_settings.Verbose)
        {
            _stderr.WriteLine("pgspec replicate: " + text);
        }
    }
}
