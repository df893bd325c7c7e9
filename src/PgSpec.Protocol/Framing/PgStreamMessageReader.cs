using System.Buffers;

namespace PgSpec.Protocol;

/// <summary>
/// Reads messages from a <see cref="Stream"/> (a socket, a TLS stream) through one receive buffer
/// of its own: a receive takes whatever has arrived, and every whole message in it is read from
/// the buffer without going back to the stream, so a client's Bind, Execute and Sync sent together
/// cost one receive. Each <see cref="ReadAsync"/> makes the next message available as
/// <see cref="Current"/>, a borrowed view valid until the next read.
/// </summary>
/// <remarks>
/// The buffer starts at <c>bufferSize</c> bytes (pooled) and grows only with bytes that have
/// arrived, never to a length a peer merely declares (the length is checked against the limits
/// first); after a message larger than the starting size it shrinks back, so memory follows the
/// message being read. A malformed message, or a stream that ends inside a message, throws
/// <see cref="PgProtocolException"/>; a stream that ends between messages returns false.
/// </remarks>
public sealed class PgStreamMessageReader : IDisposable
{
    private readonly Stream _stream;
    private readonly int _smallSize;
    private byte[] _buffer;
    private bool _pooled = true;
    private int _start;
    private int _end;
    private int _currentLength;
    private bool _hasCurrent;
    private PgFrameKind _frameKind;
    private int _typeByte;
    private int _length;
    private int _kind;
    private long _offset;
    private bool _validated;
    private bool _disposed;

    /// <summary>Reads the messages <paramref name="direction"/> sends from <paramref name="stream"/> (not owned).</summary>
    public PgStreamMessageReader(Stream stream, PgDirection direction, DecodeContext? context = null, int bufferSize = 16 * 1024)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentOutOfRangeException.ThrowIfLessThan(bufferSize, 16);
        _stream = stream;
        _buffer = ArrayPool<byte>.Shared.Rent(bufferSize);
        _smallSize = _buffer.Length;
        Reader = new PgMessageReader(direction, context);
    }

    /// <summary>The framing reader (its context and position).</summary>
    public PgMessageReader Reader { get; }

    /// <summary>Bytes received and not yet read: when a whole message is among them, the next read does not wait.</summary>
    public int Buffered => _end - _start - _currentLength;

    /// <summary>The current message; valid until the next read.</summary>
    public PgReceivedMessage Current
    {
        get
        {
            if (!_hasCurrent)
            {
                throw new InvalidOperationException("no message has been read");
            }

            int header = HeaderLength(_frameKind);
            return new PgReceivedMessage(Reader.Direction, _frameKind, _typeByte, _length, _kind, _buffer.AsSpan(_start + header, _currentLength - header), _offset, _validated);
        }
    }

    /// <summary>The current message's bytes as they came (header and body); valid until the next read.</summary>
    public ReadOnlySpan<byte> CurrentRaw => _hasCurrent ? _buffer.AsSpan(_start, _currentLength) : throw new InvalidOperationException("no message has been read");

    /// <summary>Reads the next message: true when there is one, false when the stream ended between messages.</summary>
    public ValueTask<bool> ReadAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Release();
        return TryTake() ? new ValueTask<bool>(true) : ReceiveAsync(cancellationToken);
    }

    /// <summary>Reads the next message when it is already whole in the buffer (never waits); false when it is not.</summary>
    public bool TryReadBuffered()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Release();
        return TryTake();
    }

    // Pooled: a session waits here once per round trip, and the state machine is reused rather than allocated each time.
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> ReceiveAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            MakeRoom();
            int received = await _stream.ReadAsync(_buffer.AsMemory(_end), cancellationToken).ConfigureAwait(false);
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (received == 0)
            {
                int unread = _end - _start;
                if (unread == 0)
                {
                    return false;
                }

                throw new PgProtocolException(PgDecodeError.ClosedInsideMessage(Reader.Position + unread, unread));
            }

            _end += received;
            if (TryTake())
            {
                return true;
            }
        }
    }

    /// <summary>Frames, validates and names the message at the front of the buffer, if it is whole.</summary>
    private bool TryTake()
    {
        PgReadStatus status = Reader.TryRead(_buffer.AsSpan(_start, _end - _start), out int consumed, out PgReceivedMessage message, out PgDecodeError error);
        if (status == PgReadStatus.Malformed)
        {
            throw new PgProtocolException(error);
        }

        if (status != PgReadStatus.Message)
        {
            return false;
        }

        _hasCurrent = true;
        _currentLength = consumed;
        _frameKind = message.FrameKind;
        _typeByte = message.TypeByte;
        _length = message.Length;
        _kind = message.Direction == PgDirection.Frontend ? (int)message.FrontendKind : (int)message.BackendKind;
        _offset = message.Offset;
        _validated = message.IsValidated;
        return true;
    }

    /// <summary>Drops the current message; a buffer grown for a large one shrinks back once it has gone.</summary>
    private void Release()
    {
        if (!_hasCurrent)
        {
            return;
        }

        _hasCurrent = false;
        _start += _currentLength;
        _currentLength = 0;
        if (_start == _end)
        {
            _start = _end = 0;
        }

        if (_buffer.Length > _smallSize && _end - _start <= _smallSize)
        {
            Replace(_smallSize);
        }
    }

    /// <summary>
    /// Makes room for a receive: moves the unread bytes to the front, and when the buffer is full
    /// of one partial message, doubles it, but never beyond the length that message declares.
    /// </summary>
    private void MakeRoom()
    {
        if (_end < _buffer.Length)
        {
            return;
        }

        int unread = _end - _start;
        if (_start > 0)
        {
            _buffer.AsSpan(_start, unread).CopyTo(_buffer);
            _start = 0;
            _end = unread;
            return;
        }

        // The declared length has passed the limits already (the reader checks it at the header).
        long wanted = 2L * _buffer.Length;
        if (DeclaredWireLength() is long declared and > 0)
        {
            wanted = Math.Min(wanted, declared);
        }

        Replace((int)Math.Min(Math.Max(wanted, _buffer.Length + 1L), Array.MaxLength));
    }

    /// <summary>The wire length the message at the front declares, when its header is in.</summary>
    private long? DeclaredWireLength()
    {
        ReadOnlySpan<byte> unread = _buffer.AsSpan(_start, _end - _start);
        bool typed = Reader.Direction == PgDirection.Backend || Reader.Context.Phase != PgSessionPhase.Startup;
        int header = typed ? 5 : 4;
        if (Reader.Direction == PgDirection.Backend && Reader.Context.ExpectEncryptionAnswer)
        {
            return 1;
        }

        if (unread.Length < header)
        {
            return null;
        }

        int length = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(unread.Slice(typed ? 1 : 0, 4));
        return typed ? 1L + length : length;
    }

    /// <summary>
    /// Moves the unread bytes into a buffer of <paramref name="size"/> bytes. Buffers up to 1 MiB
    /// come from the shared pool; larger ones are the message's own and are dropped after it, so
    /// that the pool never keeps a large message's memory.
    /// </summary>
    private void Replace(int size)
    {
        int unread = _end - _start;
        size = Math.Max(size, unread);
        bool pooled = size <= PooledLimit;
        byte[] replacement = pooled ? ArrayPool<byte>.Shared.Rent(size) : GC.AllocateUninitializedArray<byte>(size);
        _buffer.AsSpan(_start, unread).CopyTo(replacement);
        ReturnBuffer();
        _buffer = replacement;
        _pooled = pooled;
        _start = 0;
        _end = unread;
    }

    private const int PooledLimit = 1024 * 1024;

    private void ReturnBuffer()
    {
        if (_pooled && _buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
        }

        _buffer = [];
    }

    private static int HeaderLength(PgFrameKind kind) => kind switch
    {
        PgFrameKind.Typed => 5,
        PgFrameKind.StartupPacket => 4,
        _ => 1,
    };

    /// <summary>Gives the buffer back (the stream is not closed); not while a read is under way.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _hasCurrent = false;
        _start = _end = 0;
        ReturnBuffer();
    }
}
