using System.Buffers;

namespace PgSpec.Proxy;

/// <summary>
/// Where a proxy's trace goes (give it to a trace sink): writes are queued and written out by a
/// thread of its own, so relaying waits neither for the disk nor for a pipe, unless the trace
/// falls behind by more than <see cref="Capacity"/> bytes (then writers wait for room: the trace
/// is complete, and slow). An output that fails (a full disk, a closed pipe) is reported once,
/// and what is written until <see cref="Reopen"/> succeeds is dropped and counted; after
/// <see cref="Abandon"/> (a shutdown that cannot wait for a stuck output any longer) every write
/// is dropped at once.
/// </summary>
public sealed class ProxyTraceStream : Stream
{
    private const int ChunkSize = 64 * 1024;

    private readonly object _sync = new();
    private readonly Func<Stream>? _open;
    private readonly Action<string>? _log;
    private readonly Thread _writer;
    private List<(byte[] Chunk, int Count)> _queue = [];
    private long _queued;
    private bool _writing;
    private Stream _output;
    private Stream? _reopened;
    private bool _failed;
    private bool _abandoned;
    private bool _disposed;
    private long _dropped;
    private bool _leaveOpen;

    /// <summary>
    /// Writes to <paramref name="output"/>, which cannot be reopened (standard output, say), and is
    /// left open when <paramref name="leaveOpen"/>; <paramref name="log"/> hears of failures.
    /// </summary>
    public ProxyTraceStream(Stream output, Action<string>? log = null, int capacity = 8 * 1024 * 1024, bool leaveOpen = false)
        : this(output, null, log, capacity)
    {
        _leaveOpen = leaveOpen;
    }

    /// <summary>
    /// Writes to <paramref name="output"/>; <see cref="Reopen"/> replaces it with what
    /// <paramref name="reopen"/> returns (a file opened again by name); <paramref name="log"/> hears of failures.
    /// </summary>
    public ProxyTraceStream(Stream output, Func<Stream>? reopen, Action<string>? log = null, int capacity = 8 * 1024 * 1024)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, ChunkSize);
        _output = output;
        _open = reopen;
        _log = log;
        Capacity = capacity;
        _writer = new Thread(WriteOut) { IsBackground = true, Name = "pgspec trace" };
        _writer.Start();
    }

    /// <summary>The most bytes queued before writers wait.</summary>
    public int Capacity { get; }

    /// <summary>Bytes dropped so far (while the output failed, or after <see cref="Abandon"/>).</summary>
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

    /// <summary>Whether the output can be opened again (it was given as a way to open it).</summary>
    public bool CanReopen => _open is not null;

    /// <summary>
    /// Opens the output again (after log rotation moved the file): what is queued goes to the old
    /// output, what comes next to the new one, and a failed trace resumes. Throws what opening throws.
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
                if (left <= TimeSpan.Zero || _failed)
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
            while (_queued >= Capacity && !_abandoned && !_failed && !_disposed)
            {
                Monitor.Wait(_sync);
            }

            if (_abandoned || _failed || _disposed)
            {
                _dropped += buffer.Length;
                return;
            }

            while (!buffer.IsEmpty)
            {
                if (_queue.Count == 0 || _queue[^1].Count == _queue[^1].Chunk.Length)
                {
                    _queue.Add((ArrayPool<byte>.Shared.Rent(ChunkSize), 0));
                }

                (byte[] chunk, int count) = _queue[^1];
                int n = Math.Min(buffer.Length, chunk.Length - count);
                buffer[..n].CopyTo(chunk.AsSpan(count));
                _queue[^1] = (chunk, count + n);
                _queued += n;
                buffer = buffer[n..];
            }

            Monitor.PulseAll(_sync);
        }
    }

    /// <inheritdoc/>
    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    /// <inheritdoc/>
    public override void WriteByte(byte value) => Write([value]);

    /// <summary>Nothing to do: the writer thread flushes the output whenever the queue runs dry.</summary>
    public override void Flush()
    {
    }

    /// <summary>The writer thread: takes what is queued, writes it, flushes when nothing is left.</summary>
    private void WriteOut()
    {
        while (true)
        {
            List<(byte[] Chunk, int Count)> batch;
            Stream output;
            lock (_sync)
            {
                while (_queue.Count == 0 && _reopened is null && !_disposed)
                {
                    Monitor.Wait(_sync);
                }

                if (_queue.Count == 0 && _reopened is null && _disposed)
                {
                    return;
                }

                if (_queue.Count == 0 && _reopened is not null)
                {
                    SwitchOutput();
                    continue;
                }

                batch = _queue;
                _queue = [];
                _writing = true;
                output = _output;
            }

            long written = 0;
            Exception? failure = null;
            foreach ((byte[] chunk, int count) in batch)
            {
                if (failure is null)
                {
                    try
                    {
                        output.Write(chunk, 0, count);
                    }
                    catch (Exception e) when (e is IOException or ObjectDisposedException or NotSupportedException or UnauthorizedAccessException)
                    {
                        failure = e;
                    }
                }

                written += count;
                ArrayPool<byte>.Shared.Return(chunk);
            }

            bool dry;
            lock (_sync)
            {
                dry = _queue.Count == 0;
            }

            if (failure is null && dry)
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
                _writing = false;
                if (failure is not null && !_failed)
                {
                    _failed = true;
                    DropQueued();
                    _log?.Invoke($"the trace cannot be written: {failure.Message}; trace lines are dropped" + (_open is not null ? " until the file is reopened (SIGHUP)" : "") + ", and connections go on");
                }

                if (_reopened is not null && _queue.Count == 0)
                {
                    SwitchOutput();
                }

                Monitor.PulseAll(_sync);
            }
        }
    }

    /// <summary>Under the lock: the reopened output takes over, and a failed trace resumes.</summary>
    private void SwitchOutput()
    {
        Stream old = _output;
        _output = _reopened!;
        _reopened = null;
        if (_failed)
        {
            _failed = false;
            _log?.Invoke($"the trace resumes in the reopened file ({_dropped} bytes of it were dropped)");
        }

        try
        {
            old.Dispose();
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
        }
    }

    /// <summary>Under the lock: gives back what is queued, counting it as dropped.</summary>
    private void DropQueued()
    {
        foreach ((byte[] chunk, int count) in _queue)
        {
            _dropped += count;
            _queued -= count;
            ArrayPool<byte>.Shared.Return(chunk);
        }

        _queue.Clear();
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
            lock (_sync)
            {
                if (_disposed)
                {
                    return;
                }

                _disposed = true;
                Monitor.PulseAll(_sync);
            }

            // A writer stuck in a write to an output nobody reads stays stuck: it is a background thread.
            if (_writer.Join(TimeSpan.FromSeconds(1)))
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
}
