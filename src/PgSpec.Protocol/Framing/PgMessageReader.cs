using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace PgSpec.Protocol;

/// <summary>
/// One received message, borrowed: its body is a view over the receive buffer (or the reader's
/// scratch buffer), valid until the next read.
/// </summary>
public readonly ref struct PgReceivedMessage
{
    internal PgReceivedMessage(PgDirection direction, PgFrameKind frameKind, int typeByte, int length, int kind, ReadOnlySpan<byte> body, long offset, bool validated, ReadOnlySpan<long> valueSlots = default)
    {
        ValueSlots = valueSlots;
        IsValidated = validated && kind != 0;
        Direction = direction;
        FrameKind = frameKind;
        TypeByte = typeByte;
        Length = length;
        KindValue = kind;
        Body = body;
        Offset = offset;
    }

    /// <summary>Who sent it.</summary>
    public PgDirection Direction { get; }

    /// <summary>Typed message, startup packet or encryption answer.</summary>
    public PgFrameKind FrameKind { get; }

    /// <summary>The type byte (-1 for startup packets; the answer byte for an encryption answer).</summary>
    public int TypeByte { get; }

    /// <summary>The length word.</summary>
    public int Length { get; }

    internal int KindValue { get; }

    /// <summary>For frontend messages: which one (Unknown for encryption answers and unknown types).</summary>
    public FrontendMessageKind FrontendKind => Direction == PgDirection.Frontend ? (FrontendMessageKind)KindValue : FrontendMessageKind.Unknown;

    /// <summary>For backend messages: which one.</summary>
    public BackendMessageKind BackendKind => Direction == PgDirection.Backend ? (BackendMessageKind)KindValue : BackendMessageKind.Unknown;

    /// <summary>True when no spec names the message (it can still be forwarded as <see cref="UnknownMessage"/>).</summary>
    public bool IsUnknown => FrameKind != PgFrameKind.EncryptionAnswer && KindValue == 0;

    /// <summary>The bytes after the length word.</summary>
    public ReadOnlySpan<byte> Body { get; }

    /// <summary>The offset of the message's first byte in the stream.</summary>
    public long Offset { get; }

    /// <summary>
    /// The reader's slots (not a copy: the reader writes over them when it checks another list):
    /// the offset of the message whose values they hold now, then where the values of its value
    /// list are (DataRow's columns, Bind's parameters), as its check recorded them
    /// (<see cref="PgSpanReader.RecordValues"/>); empty when not recorded.
    /// </summary>
    internal ReadOnlySpan<long> ValueSlots { get; }

    /// <summary>
    /// Where the values of the message's value list are, while the reader's slots still hold them
    /// for this message (<see cref="PgValuePlaces.Current"/>): a message kept past the reader's next
    /// read finds another message's offset there, and its values are walked.
    /// </summary>
    internal PgValuePlaces ValuePlaces => new(ValueSlots, Offset);

    /// <summary>
    /// True when the reader validated the body as the message it names (<see cref="PgMessageReader.Validate"/>):
    /// views and traces over it need not check it again.
    /// </summary>
    public bool IsValidated { get; }

    /// <summary>The documented name.</summary>
    public string Name => FrameKind == PgFrameKind.EncryptionAnswer
        ? "EncryptionAnswer"
        : Direction == PgDirection.Frontend ? FrontendMessages.NameOf(FrontendKind) : BackendMessages.NameOf(BackendKind);

    /// <summary>
    /// Copies the message into an owned one (an <see cref="UnknownMessage"/> for unknown types).
    /// Throws <see cref="PgProtocolException"/> if a String is not UTF-8: the reader takes Strings
    /// in any encoding, as views do, and the owned form needs UTF-8.
    /// </summary>
    public IPgMessage ToMessage(DecodeContext? context = null)
    {
        if (FrameKind == PgFrameKind.EncryptionAnswer)
        {
            throw new InvalidOperationException("an encryption answer is a single byte, not a message");
        }

        if (IsUnknown)
        {
            return FrameKind == PgFrameKind.StartupPacket ? UnknownMessage.StartupPacket(Body.ToArray()) : new UnknownMessage((byte)TypeByte, Body.ToArray());
        }

        // The places of a value list's values the reader's check recorded spare the list a second walk.
        if (Direction == PgDirection.Frontend)
        {
            return FrontendMessages.TryDecodeRecorded(FrontendKind, Body, ValuePlaces.Current, context, out IFrontendMessage? f, out PgDecodeError e) ? f : throw new PgProtocolException(e.Shift(Offset));
        }

        return BackendMessages.TryDecodeRecorded(BackendKind, Body, ValuePlaces.Current, context, out IBackendMessage? b, out PgDecodeError error) ? b : throw new PgProtocolException(error.Shift(Offset));
    }

    /// <summary>
    /// Writes libpq's trace line(s) for the message. The message is traced as the kind the reader
    /// named it, not re-classified: by the time the caller sees it, the reader's context has
    /// already learnt from it (a 'p' message has reset the expected password message, say).
    /// </summary>
    public void Trace(PgTraceWriter trace, DecodeContext? context)
    {
        ArgumentNullException.ThrowIfNull(trace);
        if (FrameKind == PgFrameKind.EncryptionAnswer)
        {
            trace.CharResponse(TypeByte == 'G' || context?.LastEncryptionRequest == FrontendMessageKind.GSSENCRequest ? "GSSENCResponse" : "SSLResponse", (byte)TypeByte);
            return;
        }

        if (IsUnknown)
        {
            // No context: what the reader could not name is printed as libpq prints an unknown message.
            _ = FrameKind == PgFrameKind.StartupPacket
                ? PgTrace.TryTraceStartup(Body, null, trace, out _)
                : PgTrace.TryTrace(Direction, (byte)TypeByte, Body, null, trace, out _);
            return;
        }

        // The reader validated the body (or, when it was told not to, it is validated here):
        // traced as the kind the reader named it, without a second check.
        if (Direction == PgDirection.Frontend)
        {
            if (IsValidated || FrontendMessages.TryValidate(FrontendKind, Body, context, out _))
            {
                FrontendMessages.TraceValidated(FrontendKind, Body, trace);
            }
        }
        else if (IsValidated || BackendMessages.TryValidate(BackendKind, Body, context, out _))
        {
            BackendMessages.TraceValidated(BackendKind, Body, trace);
        }
    }
}

/// <summary>The outcome of reading a message with <see cref="PgMessageReader"/>.</summary>
public enum PgReadStatus
{
    /// <summary>More bytes are needed; nothing was consumed.</summary>
    Incomplete,

    /// <summary>A message was read, validated and consumed.</summary>
    Message,

    /// <summary>The bytes break the protocol; the connection should end.</summary>
    Malformed,
}

/// <summary>
/// Reads the messages of one direction from a byte stream: decides from the decode context
/// whether the next frame is a startup packet, an encryption answer or a typed message, checks
/// the length against the limits before the body arrives, validates the body strictly, names it,
/// and lets the context learn from it. Allocates nothing per message; a body that spans
/// segments is copied into a scratch buffer that is reused. Rows of one layout are checked from
/// the one before: the reader keeps the places of the last value list it checked and, from the
/// second body of one layout on, that body without its values' bytes as a template (256 bytes at
/// most), and takes a body equal to it outside the values without running the check again.
/// </summary>
public sealed class PgMessageReader
{
    /// <summary>
    /// The most values whose places a reader records per message (2 KiB of slots, grown by
    /// doubling from 16: some 4 KiB allocated over a reader's life at most); a longer list is walked.
    /// </summary>
    private const int MaxValueSlots = 256;

    private byte[] _scratch = [];

    /// <summary>
    /// Where the values of the last message's value list are (see <see cref="PgReceivedMessage.ValuePlaces"/>),
    /// from index 1; index 0 is the stream offset of the message they are given with, so that a
    /// message kept past the next read can tell that they are no longer its own.
    /// </summary>
    private long[] _valueSlots = [-1];

    /// <summary>The message kind whose value list <see cref="_valueSlots"/> describes, and how many values it had (-1: none).</summary>
    private int _slotsKind;

    private int _slotsCount = -1;

    /// <summary>The shortest and longest bodies kept as a template (see <see cref="BuildTemplate"/>).</summary>
    private const int MinTemplateLength = sizeof(ulong);

    private const int MaxTemplateLength = 256;

    /// <summary>The template: a body's bytes, then the mask of those its check read (<see cref="MaxTemplateLength"/> each).</summary>
    private byte[] _template = [];

    /// <summary>The kind the template is of (0: none), its length and the protocol version it was checked under.</summary>
    private int _templateKind;

    private int _templateLength;

    private int _templateVersion;

    /// <summary>How many value lists in a row were walked rather than found in the last one's layout.</summary>
    private int _layoutMisses;

    /// <summary>Reads messages sent by <paramref name="direction"/>.</summary>
    public PgMessageReader(PgDirection direction, DecodeContext? context = null)
    {
        Direction = direction;
        Context = context ?? new DecodeContext();
    }

    /// <summary>The side whose messages are read.</summary>
    public PgDirection Direction { get; }

    /// <summary>The shared decode context (share one between the two directions of a connection).</summary>
    public DecodeContext Context { get; }

    /// <summary>The stream offset of the next message.</summary>
    public long Position { get; private set; }

    /// <summary>When false, messages are named and framed but their bodies are not validated.</summary>
    public bool Validate { get; init; } = true;

    /// <summary>Reads the next message. On Malformed the error's offset is the stream offset.</summary>
    public PgReadStatus TryRead(ref ReadOnlySequence<byte> buffer, out PgReceivedMessage message, out PgDecodeError error)
    {
        if (buffer.IsSingleSegment)
        {
            PgReadStatus status = TryRead(buffer.FirstSpan, out int consumed, out message, out error);
            if (status == PgReadStatus.Message)
            {
                buffer = buffer.Slice(consumed);
            }

            return status;
        }

        // A message whole in the first segment is read from its span, as from a single segment:
        // after a refill, a pipe's buffer is several segments, and most messages lie inside one.
        PgReadStatus first = TryRead(buffer.FirstSpan, out int firstConsumed, out message, out error);
        if (first != PgReadStatus.Incomplete)
        {
            if (first == PgReadStatus.Message)
            {
                buffer = buffer.Slice(firstConsumed);
            }

            return first;
        }

        message = default;
        ReadOnlySequence<byte> original = buffer;
        PgFrame frame;
        PgFrameStatus framed = NextFrameKind() switch
        {
            PgFrameKind.StartupPacket => PgFramer.TryReadStartupPacket(ref buffer, Context.Limits, out frame, out error),
            PgFrameKind.EncryptionAnswer => PgFramer.TryReadEncryptionAnswer(ref buffer, out frame, out error),
            _ => PgFramer.TryReadMessage(ref buffer, Direction, Context.Limits, out frame, out error),
        };
        if (framed != PgFrameStatus.Complete)
        {
            return Unframed(framed, ref error);
        }

        PgReadStatus read = Accept(frame.Header, Contiguous(frame.Body), out message, out error);
        if (read != PgReadStatus.Message)
        {
            // Nothing is consumed when the body is malformed.
            buffer = original;
        }

        return read;
    }

    /// <summary>
    /// Reads the next message from contiguous bytes (one receive buffer, say): the same rules as the
    /// sequence overload, without a <see cref="ReadOnlySequence{T}"/>. <paramref name="consumed"/> is
    /// the message's wire length when a message is read, else 0.
    /// </summary>
    public PgReadStatus TryRead(ReadOnlySpan<byte> buffer, out int consumed, out PgReceivedMessage message, out PgDecodeError error)
    {
        // The usual case first: a typed message whose header is within the rules and whose body
        // is whole in the buffer. Anything else (too short, a length out of bounds, a startup
        // packet, an encryption answer) takes the general framer below, which says why.
        PgFrameKind next = NextFrameKind();
        if (next == PgFrameKind.Typed && buffer.Length >= 5)
        {
            byte type = buffer[0];
            int length = BinaryPrimitives.ReadInt32BigEndian(buffer.Slice(1));
            if (length >= 4 && length < buffer.Length && length <= Context.Limits.MaxLength(Direction, type))
            {
                PgReadStatus status = Accept(new PgFrameHeader(PgFrameKind.Typed, type, length), buffer.Slice(5, length - 4), out message, out error);
                consumed = status == PgReadStatus.Message ? length + 1 : 0;
                return status;
            }
        }

        consumed = 0;
        message = default;
        PgFrameStatus framed = PgFramer.TryReadFrame(buffer, next, Direction, Context.Limits, out PgFrameHeader header, out error);
        if (framed != PgFrameStatus.Complete)
        {
            return Unframed(framed, ref error);
        }

        PgReadStatus read = Accept(header, buffer.Slice(header.BodyOffset, header.BodyLength), out message, out error);
        if (read == PgReadStatus.Message)
        {
            consumed = header.WireLength;
        }

        return read;
    }

    /// <summary>
    /// Counts a message the caller passed on without reading it here (a proxy streaming a large
    /// CopyData or DataRow through): later messages keep their stream offsets. The caller checks
    /// such a message itself, and it must be one the context does not learn from.
    /// </summary>
    public void Skip(long wireLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(wireLength);
        Position += wireLength;
    }

    /// <summary>What the context says comes next: a startup packet, an encryption answer or a typed message.</summary>
    private PgFrameKind NextFrameKind()
        => Direction == PgDirection.Frontend && Context.Phase == PgSessionPhase.Startup ? PgFrameKind.StartupPacket
            : Direction == PgDirection.Backend && Context.ExpectEncryptionAnswer ? PgFrameKind.EncryptionAnswer
            : PgFrameKind.Typed;

    private PgReadStatus Unframed(PgFrameStatus status, ref PgDecodeError error)
    {
        if (status == PgFrameStatus.Incomplete)
        {
            return PgReadStatus.Incomplete;
        }

        error = error.Shift(Position);
        return PgReadStatus.Malformed;
    }

    /// <summary>Names, validates and observes a whole frame's body; the message on success.</summary>
    private PgReadStatus Accept(PgFrameHeader header, ReadOnlySpan<byte> body, out PgReceivedMessage message, out PgDecodeError error)
    {
        error = default;
        int kind = header.Kind == PgFrameKind.Typed && (Direction == PgDirection.Frontend ? s_frontendByType : s_backendByType)[(byte)header.TypeByte] is int byType and not 0
            ? byType
            : Classify(header, body);
        ReadOnlySpan<long> slots = default;
        if (Validate && kind != 0 && !TryValidate(kind, body, out slots, out error))
        {
            message = default;
            error = error.Shift(Position);
            return PgReadStatus.Malformed;
        }

        message = new PgReceivedMessage(Direction, header.Kind, header.TypeByte, header.Length, kind, body, Position, Validate, slots);
        Observe(header, kind, body);
        Position += header.WireLength;
        return PgReadStatus.Message;
    }

    /// <summary>
    /// The kind of each type byte that names one message whatever its body and context (0 for the
    /// others: an unused byte, a byte shared by messages told apart by a code in the body, such as
    /// 'R', or by the context, such as 'p'), so that most messages are named by one load. Taken from
    /// the generated classifier itself: given no body and no context, it names only those.
    /// </summary>
    private static readonly int[] s_frontendByType = KindsByType(b => (int)FrontendMessages.Classify(b, default, null));

    private static readonly int[] s_backendByType = KindsByType(b => (int)BackendMessages.Classify(b, default, null));

    private static int[] KindsByType(Func<byte, int> classify)
    {
        int[] kinds = new int[256];
        for (int b = 0; b < kinds.Length; b++)
        {
            kinds[b] = classify((byte)b);
        }

        return kinds;
    }

    private int Classify(PgFrameHeader frame, ReadOnlySpan<byte> body)
    {
        switch (frame.Kind)
        {
            case PgFrameKind.EncryptionAnswer:
                return 0;
            case PgFrameKind.StartupPacket:
                return (int)FrontendMessages.ClassifyStartup(body);
            default:
                return Direction == PgDirection.Frontend
                    ? (int)FrontendMessages.Classify((byte)frame.TypeByte, body, Context)
                    : (int)BackendMessages.Classify((byte)frame.TypeByte, body, Context);
        }
    }

    /// <summary>Validates a body; <paramref name="slots"/> are where the values of its value list are, when recorded.</summary>
    private bool TryValidate(int kind, ReadOnlySpan<byte> body, out ReadOnlySpan<long> slots, out PgDecodeError error)
    {
        if (kind == _templateKind && body.Length == _templateLength && Context.ProtocolVersion.Code == _templateVersion && MatchesTemplate(body))
        {
            Debug.Assert(kind == _slotsKind && _slotsCount >= 0, "a template goes with the slots of its body");
            error = default;
            _valueSlots[0] = Position;
            slots = new ReadOnlySpan<long>(_valueSlots, 0, 1 + _slotsCount);
            return true;
        }

        // The slots of the last list, if it was a list of this same message, are where this one's
        // values are first looked for (rows of the same layout); after two lists in a row that did
        // not have the layout of the one before (text values of varying lengths), only one in
        // eight is looked for there, the others are walked at once.
        int known = kind == _slotsKind && (_layoutMisses < 2 || (_layoutMisses & 7) == 0) ? _slotsCount : -1;
        bool ok = Direction == PgDirection.Frontend
            ? FrontendMessages.TryValidateRecording((FrontendMessageKind)kind, body, Context, _valueSlots.AsSpan(1), known, out int recorded, out error)
            : BackendMessages.TryValidateRecording((BackendMessageKind)kind, body, Context, _valueSlots.AsSpan(1), known, out recorded, out error);
        if (ok && recorded >= 0)
        {
            bool sameLayout = (recorded & PgSpanReader.SameLayoutFlag) != 0;
            recorded &= ~PgSpanReader.SameLayoutFlag;
            // This message's now: one kept from before no longer finds its places here.
            _valueSlots[0] = Position;
            slots = new ReadOnlySpan<long>(_valueSlots, 0, 1 + recorded);
            _slotsKind = kind;
            _slotsCount = recorded;
            if (sameLayout)
            {
                // A second body of one layout in a row: the next ones are likely to have it too.
                _layoutMisses = 0;
                BuildTemplate(kind, body, _valueSlots.AsSpan(1, recorded));
            }
            else
            {
                if (++_layoutMisses < 0)
                {
                    _layoutMisses = 8;
                }

                _templateKind = 0;
            }

            return true;
        }

        slots = default;
        if (recorded != -1)
        {
            // The slots were (or may have been) written over, or did not fit: no message's any more.
            _valueSlots[0] = -1;
            _slotsCount = -1;
            _templateKind = 0;
        }

        if (recorded < -1 && ~recorded <= MaxValueSlots)
        {
            // The list did not fit (it was walked): room for such lists from the next message on.
            // Messages kept from before keep the old array, which nothing writes to any more.
            var larger = new long[1 + Math.Min(Math.Max(~recorded, Math.Max(16, 2 * (_valueSlots.Length - 1))), MaxValueSlots)];
            larger[0] = -1;
            _valueSlots = larger;
        }

        return ok;
    }

    /// <summary>
    /// Keeps <paramref name="body"/>, just validated with value places <paramref name="slots"/>, as
    /// the template of its kind: every byte but the values' own (the counts, the length words,
    /// anything else in the body), which is what its check read. A later body of the same kind and
    /// length, under the same protocol version, whose bytes outside those values are the
    /// template's is what that check would accept again, with the same places: the values' bytes
    /// are opaque to it (Byte(n)), and what it reads of a body is its bytes, its length and the
    /// context's protocol version (the only fact of the context a body's check depends on).
    /// </summary>
    private void BuildTemplate(int kind, ReadOnlySpan<byte> body, ReadOnlySpan<long> slots)
    {
        if (body.Length < MinTemplateLength || body.Length > MaxTemplateLength)
        {
            _templateKind = 0;
            return;
        }

        if (_template.Length == 0)
        {
            _template = new byte[2 * MaxTemplateLength];
        }

        // The body's bytes, then the mask: all ones but over each value's bytes. The values' bytes
        // are not kept (a Bind's parameters may be secrets): zeros in the template, as in the mask.
        Span<byte> bytes = _template.AsSpan(0, body.Length);
        Span<byte> mask = _template.AsSpan(MaxTemplateLength, body.Length);
        body.CopyTo(bytes);
        mask.Fill(0xff);
        foreach (long slot in slots)
        {
            int length = (int)slot;
            if (length > 0)
            {
                int place = (int)(slot >> 32);
                mask.Slice(place, length).Clear();
                bytes.Slice(place, length).Clear();
            }
        }

        _templateKind = kind;
        _templateLength = body.Length;
        _templateVersion = Context.ProtocolVersion.Code;
    }

    /// <summary>
    /// Whether <paramref name="body"/> (as long as the template, <see cref="MinTemplateLength"/> at
    /// least) has the template's bytes wherever its mask is set: vectors of the processor's size
    /// (words of 8 bytes without them, or for a shorter body), the last one overlapping the one
    /// before it, so that no load leaves the body.
    /// </summary>
    private bool MatchesTemplate(ReadOnlySpan<byte> body)
    {
        int length = body.Length;
        ref byte data = ref MemoryMarshal.GetReference(body);
        ref byte template = ref MemoryMarshal.GetArrayDataReference(_template);
        ref byte mask = ref Unsafe.Add(ref template, MaxTemplateLength);
        if (Vector.IsHardwareAccelerated && length >= Vector<byte>.Count)
        {
            Vector<byte> differ = Vector<byte>.Zero;
            int last = length - Vector<byte>.Count;
            for (int i = 0; i < last; i += Vector<byte>.Count)
            {
                differ |= (Vector.LoadUnsafe(ref data, (nuint)i) ^ Vector.LoadUnsafe(ref template, (nuint)i)) & Vector.LoadUnsafe(ref mask, (nuint)i);
            }

            differ |= (Vector.LoadUnsafe(ref data, (nuint)last) ^ Vector.LoadUnsafe(ref template, (nuint)last)) & Vector.LoadUnsafe(ref mask, (nuint)last);
            return differ == Vector<byte>.Zero;
        }

        ulong words = 0;
        int end = length - sizeof(ulong);
        for (int i = 0; i < end; i += sizeof(ulong))
        {
            words |= (Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref data, i)) ^ Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref template, i))) & Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref mask, i));
        }

        words |= (Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref data, end)) ^ Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref template, end))) & Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref mask, end));
        return words == 0;
    }

    private void Observe(PgFrameHeader frame, int kind, ReadOnlySpan<byte> body)
    {
        if (Context.IsInert(Direction, kind))
        {
            return;
        }

        if (frame.Kind == PgFrameKind.EncryptionAnswer)
        {
            Context.ExpectEncryptionAnswer = false;
            return;
        }

        if (Direction == PgDirection.Frontend)
        {
            Context.ObserveFrontend((FrontendMessageKind)kind, body);
        }
        else
        {
            Context.ObserveBackend((BackendMessageKind)kind, body);
        }
    }

    /// <summary>The slots of the last message (<see cref="PgReceivedMessage.ValueSlots"/>), by the number of its places (0: none).</summary>
    internal ReadOnlySpan<long> ValueSlots(int count) => count == 0 ? default : new ReadOnlySpan<long>(_valueSlots, 0, 1 + count);

    /// <summary>The copy <see cref="Contiguous"/> made of the last body split across segments (valid until the next read).</summary>
    internal ReadOnlySpan<byte> CopiedBody(int length) => _scratch.AsSpan(0, length);

    /// <summary>The same copy as memory.</summary>
    internal ReadOnlyMemory<byte> CopiedBodyMemory(int length) => _scratch.AsMemory(0, length);

    private ReadOnlySpan<byte> Contiguous(ReadOnlySequence<byte> body)
    {
        if (body.IsSingleSegment)
        {
            return body.FirstSpan;
        }

        int length = checked((int)body.Length);

        // A message kept from before whose body was copied here has its bytes written over: its
        // places are no longer its own (it walks what it finds, see PgValuePlaces.Current).
        _valueSlots[0] = -1;
        if (_scratch.Length < length)
        {
            _scratch = new byte[Math.Max(length, Math.Min(2 * _scratch.Length, Array.MaxLength))];
        }

        body.CopyTo(_scratch);
        return _scratch.AsSpan(0, length);
    }
}
