using System.Buffers;

namespace PgSpec.Proxy;

/// <summary>Writes the line that marks a gap in a trace: <paramref name="droppedBytes"/> were dropped, for <paramref name="reason"/>.</summary>
public delegate string ProxyTraceGapLine(long droppedBytes, string reason);

/// <summary>
/// Where a proxy's trace goes (give it to a trace sink): writes are queued and written out by a
/// thread of its own, so relaying waits neither for the disk nor for a pipe. The trace sinks write
/// a message, then call <see cref="Flush"/>; a message is kept or dropped whole. When the output
/// falls <see cref="Capacity"/> bytes behind, writers wait for room for at most
/// <see cref="StallLimit"/>; then messages are dropped, and counted, until the output has caught
/// up. An output that fails (a full disk, a closed pipe) is reported once, and messages are
/// dropped until <see cref="Reopen"/> succeeds. Where messages were dropped, the trace gets a
/// line saying so (<see cref="ProxyTraceGapLine"/>). After <see cref="Abandon"/> (a shutdown that
/// cannot wait for a stuck output any longer) everything is dropped at once.
/// </summary>
public sealed class ProxyTraceStream : Stream
{
    private const int ChunkSize = 64 * 1024;

    private readonly object _sync = new();
    private readonly Func<Stream>? _open;
    private readonly Action<string>? _log;
    private readonly ProxyTraceGapLine _gapLine;
    private readonly bool _leaveOpen;
    private readonly Thread _writer;
    private List<Segment> _queue = [];
    private long _queued;
    private bool _writing;
    private Stream _output;
    private Stream? _reopened;
    private bool _tailEndsLine = true;
    private bool _gapAfterFailure;
    private bool _switchPending;
    private bool _failed;
    private bool _behind;
    private string? _gapReason;
    private long _gapBytes;
    private bool _inMessage;
    private bool _dropMessage;
    private bool _abandoned;
    private bool _disposed;
    private long _dropped;

    /// <summary>
    /// Writes to <paramref name="output"/>, which cannot be reopened (standard output, say), and is
    /// left open when <paramref name="leaveOpen"/>; <paramref name="log"/> hears of failures.
    /// </summary>
    public ProxyTraceStream(Stream output, Action<string>? log = null, bool leaveOpen = false, ProxyTraceGapLine? gapLine = null)
        : this(output, null, log, gapLine, leaveOpen)
    {
    }

    /// <summary>
    /// Writes to <paramref name="output"/>; <see cref="Reopen"/> replaces it with what
    /// <paramref name="reopen"/> returns (a file opened again by name); <paramref name="log"/> hears
    /// of failures; <paramref name="gapLine"/> writes the line that marks dropped messages (by
    /// default a comment line, <c># pgspec: N bytes of trace dropped (REASON)</c>).
    /// </summary>
    public ProxyTraceStream(Stream output, Func<Stream>? reopen, Action<string>? log = null, ProxyTraceGapLine? gapLine = null, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(output);
        _output = output;
        _open = reopen;
        _log = log;
        _gapLine = gapLine ?? DefaultGapLine;
        _leaveOpen = leaveOpen;
        _writer = new Thread(WriteOut) { IsBackground = true, Name = "pgspec trace" };
        _writer.Start();
    }

    /// <summary>The most bytes queued before writers wait (8 MiB).</summary>
    public int Capacity { get; init; } = 8 * 1024 * 1024;

    /// <summary>The longest a writer waits for room before messages are dropped (2 s).</summary>
    public TimeSpan StallLimit { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Bytes dropped so far (while the output failed or fell behind, or after <see cref="Abandon"/>).</summary>
    public long DroppedBytes
    {
        get
        {
            lock (_sync)
            {
                return _dropped;
            }
        }
    }

    /// <summary>Whether the output can be opened again (it was given with a way to open it).</summary>
    public bool CanReopen => _open is not null;

    /// <summary>The default gap line: a comment, which libpq never prints.</summary>
    public static string DefaultGapLine(long droppedBytes, string reason) => $"# pgspec: {droppedBytes} bytes of trace dropped here ({reason})\n";

    /// <summary>
    /// Opens the output again (after log rotation moved the file): messages queued before go to the
    /// old output, later ones to the new one, whole; a failed trace resumes. Throws what opening throws.
    /// </summary>
    public void Reopen()
    {
        if (_open is null)
        {
            throw new InvalidOperationException("this trace output cannot be reopened");
        }

        Stream fresh = _open();
        lock (_sync)
        {
            if (_disposed)
            {
                fresh.Dispose();
                return;
            }

            _reopened?.Dispose();
            _reopened = fresh;
            if (_failed)
            {
                // The trace resumes with the next message, which goes to the new output (after the switch).
                _failed = false;
                _log?.Invoke($"the trace resumes in the reopened file ({_dropped} bytes of it were dropped)");
                if (!_queue.Exists(segment => segment.Count > 0))
                {
                    _tailEndsLine = true;
                    _gapAfterFailure = false;
                }
            }

            // The switch takes its place in the queue at a message boundary: now, or when the
            // message being written ends.
            if (_inMessage)
            {
                _switchPending = true;
            }
            else
            {
                _queue.Add(new Segment(null, 0, Switch: true));
            }

            Monitor.PulseAll(_sync);
        }
    }

    /// <summary>Waits until everything queued is written out; false if <paramref name="timeout"/> passed first.</summary>
    public bool Drain(TimeSpan timeout)
    {
        DateTime deadline = DateTime.UtcNow + timeout;
        lock (_sync)
        {
            while (_queue.Count > 0 || _writing)
            {
                TimeSpan left = deadline - DateTime.UtcNow;
                // A failed output takes nothing more, unless a reopening waits in the queue.
                if (left <= TimeSpan.Zero || (_failed && !_queue.Exists(segment => segment.Switch)) || _abandoned)
                {
                    return _queue.Count == 0 && !_writing;
                }

                Monitor.Wait(_sync, left);
            }

            return true;
        }
    }

    /// <summary>Drops what is queued and every later write, and lets waiting writers go.</summary>
    public void Abandon()
    {
        lock (_sync)
        {
            _abandoned = true;
            DropQueued();
            Monitor.PulseAll(_sync);
        }
    }

    /// <inheritdoc/>
    public override void Write(ReadOnlySpan<byte> buffer)
    {
        if (buffer.IsEmpty)
        {
            return;
        }

        lock (_sync)
        {
            if (!_inMessage)
            {
                // A message starts: kept or dropped whole. A trace that dropped resumes here,
                // once its output works and has caught up, with a line saying what was dropped.
                _inMessage = true;
                if (_behind && _queued <= Capacity / 2)
                {
                    _behind = false;
                }

                if (!_abandoned && !_disposed && !_failed && !_behind && _gapBytes > 0)
                {
                    // A failed write may have left half a line; so may a message cut when the output stalled.
                    string line = (_tailEndsLine && !_gapAfterFailure ? "" : "\n") + _gapLine(_gapBytes, _gapReason ?? "the output failed");
                    _gapBytes = 0;
                    _gapReason = null;
                    _gapAfterFailure = false;
                    Enqueue(System.Text.Encoding.UTF8.GetBytes(line));
                }

                _dropMessage = _abandoned || _disposed || _failed || _behind;
            }

            if (!_dropMessage)
            {
                DateTime deadline = DateTime.UtcNow + StallLimit;
                while (_queued >= Capacity && !_abandoned && !_failed && !_disposed)
                {
                    TimeSpan left = deadline - DateTime.UtcNow;
                    if (left <= TimeSpan.Zero)
                    {
                        // The output has not taken anything for that long: go on without it for now.
                        _behind = true;
                        _dropMessage = true;
                        NoteGap("the trace output fell " + Capacity / (1024 * 1024) + " MB behind and did not catch up within " + StallLimit.TotalSeconds + " s; a line may be cut here");
                        _log?.Invoke("the trace output has fallen behind: trace lines are dropped until it catches up, and connections go on");
                        break;
                    }

                    Monitor.Wait(_sync, left);
                }

                _dropMessage |= _abandoned || _failed || _disposed;
            }

            if (_dropMessage)
            {
                _dropped += buffer.Length;
                _gapBytes += buffer.Length;
                return;
            }

            Enqueue(buffer);
            Monitor.PulseAll(_sync);
        }
    }

    /// <inheritdoc/>
    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    /// <inheritdoc/>
    public override void WriteByte(byte value) => Write([value]);

    /// <summary>Ends a message: what comes next is another, kept or dropped on its own. (The writer thread flushes the output whenever the queue runs dry.)</summary>
    public override void Flush()
    {
        lock (_sync)
        {
            _inMessage = false;
            _dropMessage = false;
            if (_switchPending)
            {
                _switchPending = false;
                _queue.Add(new Segment(null, 0, Switch: true));
                Monitor.PulseAll(_sync);
            }
        }
    }

    /// <summary>Under the lock: copies bytes into the queue's chunks.</summary>
    private void Enqueue(ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            if (_queue.Count == 0 || _queue[^1].Chunk is null || _queue[^1].Count == _queue[^1].Chunk!.Length)
            {
                _queue.Add(new Segment(ArrayPool<byte>.Shared.Rent(ChunkSize), 0, false));
            }

            Segment tail = _queue[^1];
            int n = Math.Min(bytes.Length, tail.Chunk!.Length - tail.Count);
            bytes[..n].CopyTo(tail.Chunk.AsSpan(tail.Count));
            _queue[^1] = tail with { Count = tail.Count + n };
            _queued += n;
            _tailEndsLine = bytes[n - 1] == (byte)'\n';
            bytes = bytes[n..];
        }
    }

    /// <summary>Under the lock: the reason and size of the gap the next resumption reports.</summary>
    private void NoteGap(string reason) => _gapReason ??= reason;

    /// <summary>The writer thread: takes what is queued, writes it, flushes when nothing is left; switches outputs at message boundaries.</summary>
    private void WriteOut()
    {
        while (true)
        {
            List<Segment> batch;
            Stream output;
            lock (_sync)
            {
                while (_queue.Count == 0 && !_disposed)
                {
                    Monitor.Wait(_sync);
                }

                if (_queue.Count == 0)
                {
                    return;
                }

                batch = _queue;
                _queue = [];
                _writing = true;
                output = _output;
            }

            long written = 0;
            long lost = 0;
            int next = 0;
            Exception? failure = null;
            for (; next < batch.Count; next++)
            {
                Segment segment = batch[next];
                if (segment.Switch)
                {
                    break;
                }

                if (failure is null && segment.Count > 0)
                {
                    try
                    {
                        output.Write(segment.Chunk!, 0, segment.Count);
                    }
                    catch (Exception e) when (e is IOException or ObjectDisposedException or NotSupportedException or UnauthorizedAccessException)
                    {
                        failure = e;
                    }
                }

                written += segment.Count;
                if (failure is not null)
                {
                    lost += segment.Count;
                }

                if (segment.Chunk is not null)
                {
                    ArrayPool<byte>.Shared.Return(segment.Chunk);
                }
            }

            bool dry;
            lock (_sync)
            {
                dry = _queue.Count == 0 && next == batch.Count;
            }

            if (failure is null && (dry || next < batch.Count))
            {
                try
                {
                    output.Flush();
                }
                catch (Exception e) when (e is IOException or ObjectDisposedException or NotSupportedException)
                {
                    failure = e;
                }
            }

            lock (_sync)
            {
                _queued -= written;
                _dropped += lost;
                _gapBytes += lost;
                _writing = false;
                if (failure is not null && !_failed)
                {
                    _failed = true;
                    _gapAfterFailure = true;
                    NoteGap("the trace output failed: " + failure.Message);
                    _log?.Invoke($"the trace cannot be written: {failure.Message}; trace lines are dropped" + (_open is not null ? " until the file is reopened (SIGHUP)" : "") + ", and connections go on");
                }

                if (next < batch.Count)
                {
                    // A reopening, at a message boundary: what follows it goes to the new output.
                    SwitchOutput();
                    List<Segment> rest = batch.GetRange(next + 1, batch.Count - next - 1);
                    rest.AddRange(_queue);
                    _queue = rest;
                    if (!_queue.Exists(segment => segment.Count > 0))
                    {
                        // Nothing follows the switch yet: the new output starts at the start of a line.
                        _tailEndsLine = true;
                        _gapAfterFailure = false;
                    }
                }

                if (_failed)
                {
                    DropQueued();
                }

                Monitor.PulseAll(_sync);
            }
        }
    }

    /// <summary>Under the lock: the reopened output takes over, and a failed trace resumes.</summary>
    private void SwitchOutput()
    {
        if (_reopened is null)
        {
            return;
        }

        Stream old = _output;
        _output = _reopened;
        _reopened = null;
        // An output that failed while the reopening waited in the queue is replaced all the same.
        _failed = false;

        try
        {
            old.Dispose();
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
        }
    }

    /// <summary>Under the lock: gives back what is queued (but reopenings), counting it as dropped.</summary>
    private void DropQueued()
    {
        var keep = new List<Segment>();
        foreach (Segment segment in _queue)
        {
            if (segment.Switch)
            {
                keep.Add(segment);
                continue;
            }

            _dropped += segment.Count;
            _gapBytes += segment.Count;
            _queued -= segment.Count;
            if (segment.Chunk is not null)
            {
                ArrayPool<byte>.Shared.Return(segment.Chunk);
            }
        }

        _queue = keep;
    }

    /// <inheritdoc/>
    public override bool CanRead => false;

    /// <inheritdoc/>
    public override bool CanSeek => false;

    /// <inheritdoc/>
    public override bool CanWrite => true;

    /// <inheritdoc/>
    public override long Length => throw new NotSupportedException();

    /// <inheritdoc/>
    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    /// <inheritdoc/>
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    /// <inheritdoc/>
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    /// <inheritdoc/>
    public override void SetLength(long value) => throw new NotSupportedException();

    /// <summary>Stops the writer once what is queued is written (call <see cref="Drain"/> or <see cref="Abandon"/> first to bound the wait), and closes the output.</summary>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            bool abandoned;
            lock (_sync)
            {
                if (_disposed)
                {
                    return;
                }

                _disposed = true;
                abandoned = _abandoned;
                Monitor.PulseAll(_sync);
            }

            // A writer stuck in a write to an output nobody reads stays stuck: it is a background thread.
            if (_writer.Join(abandoned ? TimeSpan.FromMilliseconds(100) : TimeSpan.FromSeconds(1)))
            {
                try
                {
                    if (_leaveOpen)
                    {
                        _output.Flush();
                    }
                    else
                    {
                        _output.Dispose();
                    }
                }
                catch (Exception e) when (e is IOException or ObjectDisposedException)
                {
                }
            }
        }

        base.Dispose(disposing);
    }

    /// <summary>A chunk of the queue (<see cref="Switch"/>: a reopening, with no bytes).</summary>
    private readonly record struct Segment(byte[]? Chunk, int Count, bool Switch);
}
