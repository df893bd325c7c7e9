using System.Buffers;
using System.Buffers.Binary;

namespace PgSpec.Protocol;

/// <summary>The three outcomes of reading a frame: values, not exceptions.</summary>
public enum PgFrameStatus
{
    /// <summary>More bytes are needed; nothing was consumed.</summary>
    Incomplete,

    /// <summary>A whole frame was read and consumed.</summary>
    Complete,

    /// <summary>The bytes break the framing rules; the error says how and where.</summary>
    Malformed,
}

/// <summary>What kind of frame was read.</summary>
public enum PgFrameKind
{
    /// <summary>A type byte, an Int32 length, a body.</summary>
    Typed,

    /// <summary>An untyped startup-phase packet: an Int32 length, then a code and the rest.</summary>
    StartupPacket,

    /// <summary>The single-byte answer to SSLRequest or GSSENCRequest ('S', 'N' or 'G').</summary>
    EncryptionAnswer,
}

/// <summary>One frame: its header (kind, type byte, length word) and body (the bytes after the length word).</summary>
public readonly struct PgFrame
{
    /// <summary>Creates a frame.</summary>
    public PgFrame(PgFrameKind kind, int typeByte, int length, ReadOnlySequence<byte> body)
        : this(new PgFrameHeader(kind, typeByte, length), body)
    {
    }

    /// <summary>Creates a frame from its header.</summary>
    public PgFrame(PgFrameHeader header, ReadOnlySequence<byte> body)
    {
        Header = header;
        Body = body;
    }

    /// <summary>The kind, type byte and length word.</summary>
    public PgFrameHeader Header { get; }

    /// <summary>The kind of frame.</summary>
    public PgFrameKind Kind => Header.Kind;

    /// <summary>The type byte; -1 for startup packets; the answer byte for an encryption answer.</summary>
    public int TypeByte => Header.TypeByte;

    /// <summary>The length word (0 for an encryption answer).</summary>
    public int Length => Header.Length;

    /// <summary>The bytes after the length word.</summary>
    public ReadOnlySequence<byte> Body { get; }

    /// <summary>The frame's size on the wire.</summary>
    public int WireLength => Header.WireLength;
}

/// <summary>Where a frame lies in contiguous bytes: its kind, type byte, length word, and body.</summary>
public readonly struct PgFrameHeader
{
    /// <summary>Creates a header.</summary>
    public PgFrameHeader(PgFrameKind kind, int typeByte, int length)
    {
        Kind = kind;
        TypeByte = typeByte;
        Length = length;
    }

    /// <summary>The kind of frame.</summary>
    public PgFrameKind Kind { get; }

    /// <summary>The type byte; -1 for startup packets; the answer byte for an encryption answer.</summary>
    public int TypeByte { get; }

    /// <summary>The length word (0 for an encryption answer).</summary>
    public int Length { get; }

    /// <summary>Where the body starts, from the frame's first byte.</summary>
    public int BodyOffset => Kind switch
    {
        PgFrameKind.Typed => 5,
        PgFrameKind.StartupPacket => 4,
        _ => 1,
    };

    /// <summary>The body's length.</summary>
    public int BodyLength => Kind == PgFrameKind.EncryptionAnswer ? 0 : Length - 4;

    /// <summary>The frame's size on the wire.</summary>
    public int WireLength => Kind switch
    {
        PgFrameKind.Typed => Length + 1,
        PgFrameKind.StartupPacket => Length,
        _ => 1,
    };
}

/// <summary>
/// Splits a byte stream into frames. The declared length is checked against the limit for its
/// type byte before any body is awaited, so a peer cannot make the reader wait for (or buffer)
/// more than the limit. Every overload applies the same rules; the span one reads contiguous
/// bytes without a <see cref="ReadOnlySequence{T}"/>.
/// </summary>
public static class PgFramer
{
    /// <summary>
    /// Reads the frame of the expected kind at the start of contiguous bytes. Complete means the
    /// whole frame (<see cref="PgFrameHeader.WireLength"/> bytes) is there; Incomplete that more
    /// bytes are needed; Malformed that the header breaks the rules.
    /// </summary>
    public static PgFrameStatus TryReadFrame(ReadOnlySpan<byte> buffer, PgFrameKind kind, PgDirection direction, PgLimits? limits, out PgFrameHeader header, out PgDecodeError error)
        => Examine(buffer, buffer.Length, kind, direction, limits, out header, out error);

    /// <summary>Reads a typed message: type byte, Int32 length (at least 4, at most the limit), body.</summary>
    public static PgFrameStatus TryReadMessage(ref ReadOnlySequence<byte> buffer, PgDirection direction, PgLimits? limits, out PgFrame frame, out PgDecodeError error)
        => TryRead(ref buffer, PgFrameKind.Typed, direction, limits, out frame, out error);

    /// <summary>Reads an untyped startup-phase packet: Int32 length (8 to the limit), then the code and the rest.</summary>
    public static PgFrameStatus TryReadStartupPacket(ref ReadOnlySequence<byte> buffer, PgLimits? limits, out PgFrame frame, out PgDecodeError error)
        => TryRead(ref buffer, PgFrameKind.StartupPacket, PgDirection.Frontend, limits, out frame, out error);

    /// <summary>Reads exactly one byte: the answer to SSLRequest ('S' or 'N') or GSSENCRequest ('G' or 'N').</summary>
    public static PgFrameStatus TryReadEncryptionAnswer(ref ReadOnlySequence<byte> buffer, out PgFrame frame, out PgDecodeError error)
        => TryRead(ref buffer, PgFrameKind.EncryptionAnswer, PgDirection.Backend, null, out frame, out error);

    private static PgFrameStatus TryRead(ref ReadOnlySequence<byte> buffer, PgFrameKind kind, PgDirection direction, PgLimits? limits, out PgFrame frame, out PgDecodeError error)
    {
        frame = default;
        Span<byte> first = stackalloc byte[5];
        int copied = (int)Math.Min(buffer.Length, 5);
        buffer.Slice(0, copied).CopyTo(first);
        PgFrameStatus status = Examine(first[..copied], buffer.Length, kind, direction, limits, out PgFrameHeader header, out error);
        if (status == PgFrameStatus.Complete)
        {
            frame = new PgFrame(header, buffer.Slice(header.BodyOffset, header.BodyLength));
            buffer = buffer.Slice(header.WireLength);
        }

        return status;
    }

    /// <summary>The framing rules, on the first bytes (up to 5) of <paramref name="available"/> bytes.</summary>
    private static PgFrameStatus Examine(ReadOnlySpan<byte> first, long available, PgFrameKind kind, PgDirection direction, PgLimits? limits, out PgFrameHeader header, out PgDecodeError error)
    {
        header = default;
        error = default;
        switch (kind)
        {
            case PgFrameKind.Typed:
            {
                if (available < 5)
                {
                    return PgFrameStatus.Incomplete;
                }

                byte type = first[0];
                int length = BinaryPrimitives.ReadInt32BigEndian(first.Slice(1));
                if (length < 4)
                {
                    error = new PgDecodeError("frame", "length", 1, $"length {length} of message type {PgTraceWriter.FormatByte(type)} is less than 4");
                    return PgFrameStatus.Malformed;
                }

                int max = (limits ?? PgLimits.Default).MaxLength(direction, type);
                if (length > max)
                {
                    error = new PgDecodeError("frame", "length", 1, $"length {length} of message type {PgTraceWriter.FormatByte(type)} is over the limit of {max}");
                    return PgFrameStatus.Malformed;
                }

                header = new PgFrameHeader(PgFrameKind.Typed, type, length);
                return available < 1L + length ? PgFrameStatus.Incomplete : PgFrameStatus.Complete;
            }

            case PgFrameKind.StartupPacket:
            {
                if (available < 4)
                {
                    return PgFrameStatus.Incomplete;
                }

                int length = BinaryPrimitives.ReadInt32BigEndian(first);
                int max = (limits ?? PgLimits.Default).MaxStartupPacketLength;
                if (length < 8 || length > max)
                {
                    error = new PgDecodeError("frame", "length", 0, $"invalid length of startup packet: {length} (allowed 8 to {max})");
                    return PgFrameStatus.Malformed;
                }

                header = new PgFrameHeader(PgFrameKind.StartupPacket, -1, length);
                return available < length ? PgFrameStatus.Incomplete : PgFrameStatus.Complete;
            }

            default:
            {
                if (available < 1)
                {
                    return PgFrameStatus.Incomplete;
                }

                byte answer = first[0];
                if (answer is not ((byte)'S' or (byte)'N' or (byte)'G'))
                {
                    error = new PgDecodeError("frame", "answer", 0, $"the answer to an encryption request must be 'S', 'N' or 'G', not {PgTraceWriter.FormatByte(answer)}");
                    return PgFrameStatus.Malformed;
                }

                header = new PgFrameHeader(PgFrameKind.EncryptionAnswer, answer, 0);
                return PgFrameStatus.Complete;
            }
        }
    }
}
