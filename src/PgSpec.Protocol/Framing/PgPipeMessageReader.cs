using System.Buffers;
using System.IO.Pipelines;

namespace PgSpec.Protocol;

/// <summary>
/// Reads messages from a <see cref="PipeReader"/>. Each <see cref="ReadAsync"/> makes the next
/// message available as <see cref="Current"/>, a borrowed view that stays valid until the next
/// read. Every whole message of one pipe read is taken from that read's buffer without going
/// back to the pipe; the pipe is advanced when a message is not whole in it.
/// A malformed message, or a stream that ends inside a message, throws
/// <see cref="PgProtocolException"/>; a stream that ends between messages returns false.
/// </summary>
public sealed class PgPipeMessageReader
{
    private readonly PipeReader _input;

    // Where the unread bytes start: _segmentOffset bytes into _segment, the memory of the held
    // buffer from _segmentBase to the end of its segment. A message whole in _segment is read from
    // its span, without slicing sequences; the position is made a SequencePosition only when the
    // pipe is advanced or a message crosses segments.
    private SequencePosition _segmentBase;
    private ReadOnlyMemory<byte> _segment;
    private byte[]? _segmentArray;
    private int _segmentArrayStart;
    private int _segmentOffset;
    private ReadOnlySequence<byte> _held;
    private bool _heldCompleted;
    private bool _holding;
    private bool _hasCurrent;
    private PgFrameKind _frameKind;
    private int _typeByte;
    private int _length;
    private int _kind;
    private long _offset;
    private bool _validated;

    /// <summary>How many value places the reader recorded for the current message (see <see cref="PgValuePlaces"/>).</summary>
    private int _slotCount;

    // The current message: in _segment (from _rawStart, _rawLength bytes, of which HeaderSize are the
    // type byte and length word), or, when it crossed segments, as sequences.
    private bool _inSegment;
    private int _rawStart;
    private int _rawLength;
    private ReadOnlySequence<byte> _body;
    private ReadOnlySequence<byte> _raw;

    /// <summary>Reads the messages <paramref name="direction"/> sends from <paramref name="input"/>.</summary>
    public PgPipeMessageReader(PipeReader input, PgDirection direction, DecodeContext? context = null)
    {
        _input = input ?? throw new ArgumentNullException(nameof(input));
        Reader = new PgMessageReader(direction, context);
    }

    /// <summary>The framing reader (its context and position).</summary>
    public PgMessageReader Reader { get; }

    /// <summary>The current message; valid until the next <see cref="ReadAsync"/>.</summary>
    public PgReceivedMessage Current
    {
        get
        {
            if (!_hasCurrent)
            {
                throw new InvalidOperationException("no message has been read");
            }

            return new PgReceivedMessage(Reader.Direction, _frameKind, _typeByte, _length, _kind, BodySpan(), _offset, _validated, Reader.ValueSlots(_slotCount));
        }
    }

    /// <summary>
    /// The current message's body as memory: in place, or the reader's copy of a body that was
    /// split across segments; valid until the next read, like <see cref="Current"/>.
    /// </summary>
    public ReadOnlyMemory<byte> CurrentBody
        => !_hasCurrent ? throw new InvalidOperationException("no message has been read")
            : _inSegment ? _segment.Slice(_rawStart + HeaderSize, _rawLength - HeaderSize)
            : _body.First.Length >= _body.Length ? _body.First[..(int)_body.Length] : Reader.CopiedBodyMemory((int)_body.Length);

    /// <summary>The current message's bytes as they came off the wire (type byte, length and body).</summary>
    public ReadOnlySequence<byte> CurrentRaw
        => !_hasCurrent ? throw new InvalidOperationException("no message has been read")
            : _inSegment ? new ReadOnlySequence<byte>(_segment.Slice(_rawStart, _rawLength)) : _raw;

    /// <summary>
    /// Reads the next message. False when the stream ended cleanly between messages; a read
    /// cancelled by <see cref="PipeReader.CancelPendingRead"/> (or <paramref name="cancellationToken"/>)
    /// throws <see cref="OperationCanceledException"/>, and reading may go on afterwards.
    /// </summary>
    public ValueTask<bool> ReadAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        _hasCurrent = false;
        if (!_holding)
        {
            return ReadFromPipeAsync(cancellationToken);
        }

        // The rest of the last read may hold the next message whole: taken without going back
        // to the pipe (a server's DataRows, a client's Bind, Execute and Sync, come many at once).
        if (TakeHeld())
        {
            return new ValueTask<bool>(true);
        }

        SequencePosition consumed = Consumed();

        // Part of a message: everything held has been examined; wait for more.
        bool completed = _heldCompleted;
        long partial = _held.Slice(consumed).Length;
        Release(consumed, _held.End);
        if (completed)
        {
            if (partial == 0)
            {
                return new ValueTask<bool>(false);
            }

            throw new PgProtocolException(PgDecodeError.ClosedInsideMessage(Reader.Position + partial, partial));
        }

        return ReadFromPipeAsync(cancellationToken);
    }

    /// <summary>
    /// Reads the next message if it is whole in what the last pipe read delivered, without going
    /// back to the pipe: true when it was (it is <see cref="Current"/>), false when the next
    /// message needs more bytes or another pipe read (then call <see cref="ReadAsync"/>, under a
    /// timeout of the caller's choosing). A malformed message throws <see cref="PgProtocolException"/>.
    /// </summary>
    public bool TryRead()
    {
        _hasCurrent = false;
        if (!_holding)
        {
            return false;
        }

        // Not whole: left held, so that ReadAsync examines it again before going to the pipe.
        return TakeHeld();
    }

    /// <summary>
    /// <see cref="TryRead()"/>, giving the message at once: reading many messages out of one pipe
    /// read, this is the span reader's loop with little more (<see cref="Current"/> is not made
    /// again for each message). <see cref="Current"/> and the other members of the current message
    /// are set as by <see cref="TryRead()"/>.
    /// </summary>
    public bool TryRead(out PgReceivedMessage message)
    {
        _hasCurrent = false;
        if (_holding && _segmentOffset < _segment.Length)
        {
            // The usual case: a message whole in the segment being read.
            long offset = Reader.Position;
            PgReadStatus status;
            int consumed;
            PgDecodeError error;
            try
            {
                status = Reader.TryRead(SegmentSpan(_segmentOffset, _segment.Length - _segmentOffset), out consumed, out message, out error);
            }
            catch
            {
                // A context that throws: as in TakeHeld, the pipe is released, the message left unread.
                SequencePosition at = Consumed();
                Release(at, at);
                throw;
            }

            if (status == PgReadStatus.Message)
            {
                SetCurrent(message, offset);
                _inSegment = true;
                _rawStart = _segmentOffset;
                _rawLength = consumed;
                _segmentOffset += consumed;
                return true;
            }

            if (status == PgReadStatus.Malformed)
            {
                SequencePosition consumedUpTo = Consumed();
                Release(consumedUpTo, consumedUpTo);
                throw new PgProtocolException(error);
            }
        }

        if (TryRead())
        {
            message = Current;
            return true;
        }

        message = default;
        return false;
    }

    /// <summary>
    /// Takes the next message from the held buffer if it is whole there. A malformed one, or a
    /// context that throws, releases the buffer (the pipe is never left mid-read) and throws.
    /// </summary>
    private bool TakeHeld()
    {
        bool taken;
        PgDecodeError error;
        bool malformed;
        try
        {
            taken = TryTake(out error, out malformed);
        }
        catch
        {
            // A context that throws: the message is left unread and not examined, so that reading
            // again reads it from what the pipe holds instead of waiting for more bytes.
            SequencePosition at = Consumed();
            Release(at, at);
            throw;
        }

        if (malformed)
        {
            SequencePosition consumed = Consumed();
            Release(consumed, consumed);
            throw new PgProtocolException(error);
        }

        return taken;
    }

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> ReadFromPipeAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            ReadResult result = await _input.ReadAsync(cancellationToken).ConfigureAwait(false);
            ReadOnlySequence<byte> buffer = result.Buffer;
            SequencePosition consumed = buffer.Start;
            SequencePosition examined = buffer.Start;
            bool held = false;
            try
            {
                _held = buffer;
                StartAt(buffer.Start, buffer.First);
                if (TryTake(out PgDecodeError error, out bool malformed))
                {
                    // Held: the pipe is advanced when a later message is not whole in this buffer.
                    _heldCompleted = result.IsCompleted;
                    _holding = held = true;
                    return true;
                }

                if (malformed)
                {
                    throw new PgProtocolException(error);
                }

                if (result.IsCanceled)
                {
                    throw new OperationCanceledException("reading the pipe was cancelled (PipeReader.CancelPendingRead)");
                }

                if (result.IsCompleted)
                {
                    consumed = examined = buffer.End;
                    if (buffer.Length == 0)
                    {
                        return false;
                    }

                    throw new PgProtocolException(PgDecodeError.ClosedInsideMessage(Reader.Position + buffer.Length, buffer.Length));
                }

                // Nothing consumed; everything examined: wait for more bytes.
                examined = buffer.End;
            }
            finally
            {
                // Whatever happened (a decode context that throws, say), the pipe is never left mid-read.
                if (!held)
                {
                    _held = default;
                    _segment = default;
                    _segmentArray = null;
                    _input.AdvanceTo(consumed, examined);
                }
            }
        }
    }

    private void Release(SequencePosition consumed, SequencePosition examined)
    {
        _holding = false;
        _held = default;
        _segment = default;
        _segmentArray = null;
        _input.AdvanceTo(consumed, examined);
    }

    /// <summary>Where the unread bytes of the held buffer start.</summary>
    private SequencePosition Consumed() => _segmentOffset == 0 ? _segmentBase : _held.GetPosition(_segmentOffset, _segmentBase);

    private void StartAt(SequencePosition position, ReadOnlyMemory<byte> segment)
    {
        _segmentBase = position;
        _segment = segment;

        // Most pipes lend arrays: a span over one is made without Memory's type checks.
        if (System.Runtime.InteropServices.MemoryMarshal.TryGetArray(segment, out ArraySegment<byte> array))
        {
            _segmentArray = array.Array;
            _segmentArrayStart = array.Offset;
        }
        else
        {
            _segmentArray = null;
        }
        _segmentOffset = 0;
    }

    /// <summary>Takes the next message from the held buffer if it is whole there.</summary>
    private bool TryTake(out PgDecodeError error, out bool malformed)
    {
        long offset = Reader.Position;
        if (_segmentOffset < _segment.Length)
        {
            PgReadStatus status = Reader.TryRead(SegmentSpan(_segmentOffset, _segment.Length - _segmentOffset), out int consumed, out PgReceivedMessage message, out error);
            if (status == PgReadStatus.Message)
            {
                SetCurrent(message, offset);
                _inSegment = true;
                _rawStart = _segmentOffset;
                _rawLength = consumed;
                _segmentOffset += consumed;
                malformed = false;
                return true;
            }

            if (status == PgReadStatus.Malformed)
            {
                malformed = true;
                return false;
            }
        }

        // Not whole in this segment: read from the sequence, across segments.
        ReadOnlySequence<byte> buffer = _held.Slice(Consumed());
        ReadOnlySequence<byte> rest = buffer;
        PgReadStatus read = Reader.TryRead(ref rest, out PgReceivedMessage crossing, out error);
        malformed = read == PgReadStatus.Malformed;
        if (read != PgReadStatus.Message)
        {
            return false;
        }

        SetCurrent(crossing, offset);
        _inSegment = false;
        _raw = buffer.Slice(0, rest.Start);
        _body = _raw.Slice(HeaderSize);
        StartAt(rest.Start, rest.First);
        return true;
    }

    private ReadOnlySpan<byte> SegmentSpan(int start, int length)
        => _segmentArray is { } array ? new ReadOnlySpan<byte>(array, _segmentArrayStart + start, length) : _segment.Span.Slice(start, length);

    private void SetCurrent(in PgReceivedMessage message, long offset)
    {
        _hasCurrent = true;
        _frameKind = message.FrameKind;
        _typeByte = message.TypeByte;
        _length = message.Length;
        _kind = message.KindValue;
        _validated = message.IsValidated;
        _slotCount = message.ValuePlaces.Count;
        _offset = offset;
    }

    /// <summary>The current message's type byte and length word (5 bytes), or a startup packet's length word (4), or none (an encryption answer).</summary>
    private int HeaderSize => _frameKind switch
    {
        PgFrameKind.Typed => 5,
        PgFrameKind.StartupPacket => 4,
        _ => 1,
    };

    /// <summary>
    /// The body as one span: in place when it lies in one segment (also when it ends exactly where
    /// its segment does, so that the sequence's end is the next segment's start), or the copy the
    /// reader made of a body split across segments (one copy, not two).
    /// </summary>
    private ReadOnlySpan<byte> BodySpan()
        => _inSegment ? SegmentSpan(_rawStart + HeaderSize, _rawLength - HeaderSize)
            : _body.FirstSpan.Length >= _body.Length ? _body.FirstSpan[..(int)_body.Length] : Reader.CopiedBody((int)_body.Length);

}

/// <summary>Encodes messages into a <see cref="PipeWriter"/>; nothing is sent until <see cref="FlushAsync"/>, so many messages go out in one write.</summary>
public sealed class PgPipeMessageWriter
{
    private readonly PipeWriter _output;

    /// <summary>Writes to <paramref name="output"/> with the given protocol version and limits.</summary>
    public PgPipeMessageWriter(PipeWriter output, PgProtocolVersion version = default, PgLimits? limits = null)
    {
        _output = output ?? throw new ArgumentNullException(nameof(output));
        Version = version;
        Limits = limits;
    }

    /// <summary>The protocol version messages are encoded for (cancel key widths).</summary>
    public PgProtocolVersion Version { get; set; }

    /// <summary>The limits messages are checked against; null for the defaults.</summary>
    public PgLimits? Limits { get; set; }

    /// <summary>Bytes written since the last flush.</summary>
    public long UnflushedBytes { get; private set; }

    /// <summary>Validates and encodes a message into the pipe's buffer.</summary>
    public void Write(IPgMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        message.Encode(_output, Version, Limits);
        UnflushedBytes += message.EncodedLength;
    }

    /// <summary>Copies bytes as they are (a proxy forwarding what it received).</summary>
    public void WriteRaw(ReadOnlySequence<byte> bytes)
    {
        foreach (ReadOnlyMemory<byte> segment in bytes)
        {
            _output.Write(segment.Span);
        }

        UnflushedBytes += bytes.Length;
    }

    /// <summary>Sends what was written.</summary>
    public ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
    {
        UnflushedBytes = 0;
        return _output.FlushAsync(cancellationToken);
    }
}
