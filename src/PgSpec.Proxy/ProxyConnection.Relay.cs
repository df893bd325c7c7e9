using System.Buffers.Binary;
using PgSpec.Protocol;

namespace PgSpec.Proxy;

/// <summary>The relay of an authenticated connection: both directions at once, message by message.</summary>
internal sealed partial class ProxyConnection
{
    /// <summary>Requests (Query, Sync, FunctionCall) the server has yet to answer with ReadyForQuery; the login counts as one.</summary>
    private int _unanswered = 1;

    /// <summary>Syncs since the last Execute, with only Sync and Flush between; -1 when another message came after it.</summary>
    private int _syncsAfterExecute = -1;

    /// <summary>
    /// Relays messages both ways until one side closes or breaks the protocol. Reads stop on
    /// <paramref name="cancel"/> or when the other direction ends; a write in progress is given the
    /// shutdown grace to finish, so the client never receives half a message followed by an error.
    /// </summary>
    private async Task RelayAsync(Stream client, Stream upstream, CancellationTokenSource cancel)
    {
        using var stopReads = CancellationTokenSource.CreateLinkedTokenSource(cancel.Token);

        // The handshake is over; the idle timer starts once the server is ready for a query.
        Arm(ConnectionTimer.None, Timeout.InfiniteTimeSpan);
        Task clientToServer = PumpAsync(client, upstream, _frontend, stopReads.Token, cancel);
        Task serverToClient = PumpAsync(upstream, client, _backend, stopReads.Token, cancel);

        Task first = await Task.WhenAny(clientToServer, serverToClient).ConfigureAwait(false);
        if (first == clientToServer && first.IsCompletedSuccessfully && !Options.UpstreamTls)
        {
            // The client is gone: tell the server, and let it close its side.
            _upstream!.ShutdownSend();
            Arm(ConnectionTimer.Closing, Options.ShutdownGrace);
        }
        else
        {
            await stopReads.CancelAsync().ConfigureAwait(false);
            Arm(ConnectionTimer.Closing, Options.ShutdownGrace);
        }

        Exception? failure = null;
        foreach (Task task in new[] { first, first == clientToServer ? serverToClient : clientToServer })
        {
            try
            {
                await task.ConfigureAwait(false);
            }
            catch (Exception e) when (failure is null && !(task != first && e is OperationCanceledException))
            {
                failure = e;
            }
            catch (Exception)
            {
            }
        }

        if (failure is not null)
        {
            throw failure;
        }
    }

    /// <summary>
    /// Reads what arrives, splits it into messages (validating and tracing each) and forwards every
    /// whole message as received, in one write per read. A partial message waits for the rest in a
    /// buffer that grows with what arrives (up to its declared length, which the limits bound); a
    /// DataRow or CopyData of <see cref="PgProxyOptions.StreamThreshold"/> bytes or more is instead
    /// checked and forwarded piece by piece as it arrives, when nothing is traced (a trace line
    /// needs the whole message).
    /// </summary>
    private async Task PumpAsync(Stream input, Stream output, PgMessageReader reader, CancellationToken readToken, CancellationTokenSource cancel)
    {
        bool fromClient = reader.Direction == PgDirection.Frontend;
        int streamThreshold = _trace is null ? Options.StreamThreshold : int.MaxValue;
        var state = new PumpState(reader);
        _proxy.Statistics.OnBuffer(state.Buffer.Capacity);
        try
        {
            while (true)
            {
                if (state.Buffer.MakeRoom(PartialLength(state)))
                {
                    _proxy.Statistics.OnBuffer(state.Buffer.Capacity);
                }

                int read = await input.ReadAsync(state.Buffer.Free, readToken).ConfigureAwait(false);
                if (read == 0)
                {
                    if (state.Buffer.Unread > 0 || state.Streamed.Active)
                    {
                        // Part of a streamed message has gone on: no error may follow it.
                        _clientStreamBroken |= !fromClient && state.Streamed.Active;
                        long received = state.Streamed.Active ? 0 : state.Buffer.Unread;
                        throw new ProxyConnectionException(
                            (fromClient ? "the client" : "the server") + $" closed the connection inside a message" + (received > 0 ? $" ({received} bytes of it received)" : ""),
                            fromClient ? null : Fatal("08006", "the server closed the connection inside a message"));
                    }

                    return;
                }

                state.Buffer.End += read;
                state.Received += read;
                while (true)
                {
                    int sendFrom = state.Buffer.Start;
                    Step step = Scan(state, fromClient, streamThreshold);
                    if (step.ForwardTo > sendFrom)
                    {
                        await WriteAsync(output, state.Buffer.Memory[sendFrom..step.ForwardTo], !fromClient, cancel.Token).ConfigureAwait(false);
                    }

                    if (step.Violation is not null)
                    {
                        _proxy.Statistics.OnMessages(fromClient, state.Messages, state.Received);
                        throw step.Violation;
                    }

                    if (step.Insert is null)
                    {
                        break;
                    }

                    // A BackendKeyData with the proxy's key in place of the server's; then go on after it.
                    await WriteAsync(output, step.Insert, !fromClient, cancel.Token).ConfigureAwait(false);
                }

                _proxy.Statistics.OnMessages(fromClient, state.Messages, state.Received);
                state.Messages = 0;
                state.Received = 0;
                state.Buffer.Settle(state.Streamed.Active ? 0 : PartialLength(state));
            }
        }
        finally
        {
            state.Buffer.Dispose();
        }
    }

    /// <summary>
    /// A whole message from the client, before it goes on: the idle timer stops (as PostgreSQL's
    /// idle_session_timeout stops once a command has been read, not at its first byte), and a
    /// request that a ReadyForQuery will answer is counted (each Query, FunctionCall and Sync, but a
    /// Sync the server ignores in the phase, as in copy-in mode: the spec's 'ignored-in'). Counted
    /// before the server can have it, so its ReadyForQuery can never come first.
    /// </summary>
    private void OnClientMessage(FrontendMessageKind kind)
    {
        if (Options.IdleTimeout == Timeout.InfiniteTimeSpan)
        {
            return;
        }

        lock (_timerLock)
        {
            switch (kind)
            {
                case FrontendMessageKind.Sync:
                    if (!FrontendMessages.IsIgnoredIn(kind, _context.Phase))
                    {
                        _unanswered++;
                        if (_syncsAfterExecute >= 0)
                        {
                            _syncsAfterExecute++;
                        }
                    }

                    break;
                case FrontendMessageKind.Flush:
                    break;
                case FrontendMessageKind.Execute:
                    _syncsAfterExecute = 0;
                    break;
                case FrontendMessageKind.Query:
                case FrontendMessageKind.FunctionCall:
                    _unanswered++;
                    _syncsAfterExecute = -1;
                    break;
                default:
                    _syncsAfterExecute = -1;
                    break;
            }

            if (_timer == ConnectionTimer.Idle)
            {
                Arm(ConnectionTimer.Idle, Timeout.InfiniteTimeSpan);
            }
        }
    }

    /// <summary>A whole message from the server: a ReadyForQuery that answers the last request starts the idle timer.</summary>
    private void OnServerMessage(BackendMessageKind kind)
    {
        if (Options.IdleTimeout == Timeout.InfiniteTimeSpan)
        {
            return;
        }

        // A message that starts a phase in which the server ignores Sync (CopyInResponse: copy-in mode).
        bool syncsIgnored = FrontendMessages.IsIgnoredIn(FrontendMessageKind.Sync, BackendMessages.NextPhase(kind, PgSessionPhase.Normal));
        if (kind != BackendMessageKind.ReadyForQuery && !syncsIgnored)
        {
            return;
        }

        lock (_timerLock)
        {
            if (syncsIgnored)
            {
                // The Syncs that followed the Execute starting the COPY (libpq sends Execute and
                // Sync together) reached the server in that phase: they get no ReadyForQuery.
                _unanswered -= Math.Max(0, _syncsAfterExecute);
                _syncsAfterExecute = -1;
                return;
            }

            _unanswered = Math.Max(0, _unanswered - 1);
            if (_unanswered == 0)
            {
                Arm(ConnectionTimer.Idle, Options.IdleTimeout);
            }
        }
    }

    /// <summary>The state of one direction: the buffer and a message being streamed.</summary>
    private sealed class PumpState(PgMessageReader reader)
    {
        public PgMessageReader Reader { get; } = reader;

        public ReceiveBuffer Buffer { get; } = new();

        public long Messages { get; set; }

        public long Received { get; set; }

        public StreamedMessage Streamed { get; } = new();
    }

    /// <summary>What to do after a scan: forward Buffer[..ForwardTo], then write Insert and scan on, or fail.</summary>
    private readonly record struct Step(int ForwardTo, byte[]? Insert, ProxyConnectionException? Violation);

    /// <summary>The wire size of the partial message at the front of the buffer, once its header is in (0 before).</summary>
    private static long PartialLength(PumpState state)
        => state.Streamed.Active || state.Buffer.Unread < 5 ? 0 : 1L + BinaryPrimitives.ReadInt32BigEndian(state.Buffer.Span[(state.Buffer.Start + 1)..]);

    /// <summary>Validates, traces and passes over the messages in the buffer; stops where a write must come first.</summary>
    private Step Scan(PumpState state, bool fromClient, int streamThreshold)
    {
        StreamedMessage streamed = state.Streamed;
        PgMessageReader reader = state.Reader;
        ReceiveBuffer buffer = state.Buffer;
        while (true)
        {
            if (streamed.Active)
            {
                int take = (int)Math.Min(streamed.Remaining, buffer.Unread);
                string? problem = streamed.Feed(buffer.Span.Slice(buffer.Start, take));
                buffer.Start += take;
                if (problem is null && streamed.Remaining == 0)
                {
                    problem = streamed.End();
                    state.Messages++;
                }

                if (problem is not null)
                {
                    // The other side has the beginning of this message: no error may follow it there.
                    _clientStreamBroken |= !fromClient;
                    return new Step(buffer.Start - take, null, ProtocolViolation((fromClient ? "the client" : "the server") + " sent a malformed message: " + problem, fromClient));
                }

                if (streamed.Active)
                {
                    return new Step(buffer.Start, null, null);
                }
            }

            int start = buffer.Start;
            ReadOnlySpan<byte> unread = buffer.Span[start..buffer.End];
            PgReadStatus status = reader.TryRead(unread, out int consumed, out PgReceivedMessage message, out PgDecodeError error);
            if (status == PgReadStatus.Incomplete)
            {
                int length = unread.Length >= 5 ? BinaryPrimitives.ReadInt32BigEndian(unread[1..]) : 0;
                if (length > 0 && StreamedMessage.Streams(reader.Direction, unread[0], length, streamThreshold))
                {
                    // Too large to hold: check it and forward it as it comes.
                    streamed.Begin(unread[0], length);
                    reader.Skip(1L + length);
                    buffer.Start += 5;
                    continue;
                }

                return new Step(start, null, null);
            }

            if (status == PgReadStatus.Malformed)
            {
                return new Step(start, null, ProtocolViolation((fromClient ? "the client" : "the server") + " sent a malformed message: " + error.ToString(), fromClient));
            }

            buffer.Start = start + consumed;
            state.Messages++;
            if (fromClient)
            {
                OnClientMessage(message.FrontendKind);
            }
            else
            {
                OnServerMessage(message.BackendKind);
            }

            if (!fromClient && message.BackendKind == BackendMessageKind.BackendKeyData && message.Body.Length >= 8)
            {
                // The client gets (and the trace shows, as the client's own libpq would) the proxy's key.
                byte[] issued = IssueKey(message.Body);
                TraceSent(PgDirection.Backend, issued, message.Offset);
                return new Step(start, issued, null);
            }

            Trace(message);
        }
    }

    /// <summary>Writes to the other side; a write to the client that did not finish means no error may follow it.</summary>
    private ValueTask WriteAsync(Stream output, ReadOnlyMemory<byte> bytes, bool toClient, CancellationToken cancellationToken)
    {
        ValueTask write;
        try
        {
            write = output.WriteAsync(bytes, cancellationToken);
        }
        catch (Exception) when (toClient)
        {
            _clientStreamBroken = true;
            throw;
        }

        // Most writes finish at once: no state machine for them (GetResult still lets the source go).
        if (write.IsCompletedSuccessfully)
        {
            write.GetAwaiter().GetResult();
            return default;
        }

        return AwaitWriteAsync(write, toClient);
    }

    private async ValueTask AwaitWriteAsync(ValueTask write, bool toClient)
    {
        try
        {
            await write.ConfigureAwait(false);
        }
        catch (Exception) when (toClient)
        {
            _clientStreamBroken = true;
            throw;
        }
    }

    private byte[] IssueKey(ReadOnlySpan<byte> body)
    {
        int processId = BinaryPrimitives.ReadInt32BigEndian(body);
        ReadOnlySpan<byte> upstreamKey = body[4..];
        if (_issuedKey is not null)
        {
            _proxy.CancelKeys.Remove(_issuedProcessId, _issuedKey);
        }

        _issuedProcessId = processId;
        _issuedKey = _proxy.CancelKeys.Issue(processId, upstreamKey);
        return new BackendKeyData(processId, _issuedKey).ToArray(_context.ProtocolVersion, _context.Limits);
    }
}
