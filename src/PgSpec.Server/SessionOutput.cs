using System.Buffers;

namespace PgSpec.Server;

/// <summary>
/// A session's unsent output: messages are encoded into one buffer and written to the stream in
/// one write at a flush (ReadyForQuery, Flush, a full buffer). Buffers up to 1 MiB come from the
/// shared pool; a larger one, grown for a large message, is the message's own and is dropped after
/// the flush, so that the pool never keeps it.
/// </summary>
internal sealed class SessionOutput(Stream stream) : IBufferWriter<byte>, IDisposable
{
    private const int SmallSize = 16 * 1024;
    private const int PooledLimit = 1024 * 1024;

    private byte[] _buffer = ArrayPool<byte>.Shared.Rent(SmallSize);
    private bool _pooled = true;
    private int _written;

    /// <summary>Bytes written and not yet flushed.</summary>
    public long UnflushedBytes => _written;

    public void Advance(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (count > _buffer.Length - _written)
        {
            throw new InvalidOperationException("advanced past the end of the buffer");
        }

        _written += count;
    }

    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        Reserve(sizeHint);
        return _buffer.AsMemory(_written);
    }

    public Span<byte> GetSpan(int sizeHint = 0)
    {
        Reserve(sizeHint);
        return _buffer.AsSpan(_written);
    }

    /// <summary>Writes everything unsent to the stream; completes synchronously when the stream does.</summary>
    public ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        if (_written == 0)
        {
            return ValueTask.CompletedTask;
        }

        ValueTask write = stream.WriteAsync(_buffer.AsMemory(0, _written), cancellationToken);
        if (!write.IsCompletedSuccessfully)
        {
            return FlushSlowAsync(write, cancellationToken);
        }

        write.GetAwaiter().GetResult();
        Written();
        Task flush = stream.FlushAsync(cancellationToken);
        return flush.IsCompletedSuccessfully ? ValueTask.CompletedTask : new ValueTask(flush);
    }

    private async ValueTask FlushSlowAsync(ValueTask write, CancellationToken cancellationToken)
    {
        await write.ConfigureAwait(false);
        Written();
        await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Drops what is unsent (the session is closing) and gives the buffer back.</summary>
    public void Dispose()
    {
        _written = 0;
        if (_pooled && _buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
        }

        _buffer = [];
        _pooled = false;
    }

    private void Written()
    {
        _written = 0;
        if (_buffer.Length > SmallSize)
        {
            Replace(SmallSize);
        }
    }

    private void Reserve(int sizeHint)
    {
        ObjectDisposedException.ThrowIf(_buffer.Length == 0, this);
        int needed = Math.Max(sizeHint, 256);
        if (_buffer.Length - _written >= needed)
        {
            return;
        }

        long wanted = Math.Max(2L * _buffer.Length, (long)_written + needed);
        if (wanted > Array.MaxLength)
        {
            throw new OutOfMemoryException($"the session's output would exceed {Array.MaxLength} bytes");
        }

        Replace((int)wanted);
    }

    private void Replace(int size)
    {
        bool pooled = size <= PooledLimit;
        byte[] replacement = pooled ? ArrayPool<byte>.Shared.Rent(size) : GC.AllocateUninitializedArray<byte>(size);
        _buffer.AsSpan(0, _written).CopyTo(replacement);
        if (_pooled)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
        }

        _buffer = replacement;
        _pooled = pooled;
    }
}
