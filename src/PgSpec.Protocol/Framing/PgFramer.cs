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

/// <summary>One frame: its kind, type byte, length word and body (the bytes after the length word).</summary>
public readonly struct PgFrame
{
    /// <summary>Creates a frame.</summary>
    public PgFrame(PgFrameKind kind, int typeByte, int length, ReadOnlySequence<byte> body)
    {
        Kind = kind;
        TypeByte = typeByte;
        Length = length;
        Body = body;
    }

    /// <summary>The kind of frame.</summary>
    public PgFrameKind Kind { get; }

    /// <summary>The type byte; -1 for startup packets; the answer byte for an encryption answer.</summary>
    public int TypeByte { get; }

    /// <summary>The length word (0 for an encryption answer).</summary>
    public int Length { get; }

    /// <summary>The bytes after the length word.</summary>
    public ReadOnlySequence<byte> Body { get; }

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
/// more than the limit.
/// </summary>
public static class PgFramer
{
    /// <summary>Reads a typed message: type byte, Int32 length (at least 4, at most the limit), body.</summary>
    public static PgFrameStatus TryReadMessage(ref ReadOnlySequence<byte> buffer, PgDirection direction, PgLimits? limits, out PgFrame frame, out PgDecodeError error)
    {
        frame = default;
        error = default;
        if (buffer.Length < 5)
        {
            return PgFrameStatus.Incomplete;
        }

        Span<byte> header = stackalloc byte[5];
        buffer.Slice(0, 5).CopyTo(header);
        byte type = header[0];
        int length = BinaryPrimitives.ReadInt32BigEndian(header.Slice(1));
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

        if (buffer.Length < 1L + length)
        {
            return PgFrameStatus.Incomplete;
        }

        frame = new PgFrame(PgFrameKind.Typed, type, length, buffer.Slice(5, length - 4));
        buffer = buffer.Slice(1L + length);
        return PgFrameStatus.Complete;
    }

    /// <summary>Reads an untyped startup-phase packet: Int32 length (8 to the limit), then the code and the rest.</summary>
    public static PgFrameStatus TryReadStartupPacket(ref ReadOnlySequence<byte> buffer, PgLimits? limits, out PgFrame frame, out PgDecodeError error)
    {
        frame = default;
        error = default;
        if (buffer.Length < 4)
        {
            return PgFrameStatus.Incomplete;
        }

        Span<byte> header = stackalloc byte[4];
        buffer.Slice(0, 4).CopyTo(header);
        int length = BinaryPrimitives.ReadInt32BigEndian(header);
        int max = (limits ?? PgLimits.Default).MaxStartupPacketLength;
        if (length < 8 || length > max)
        {
            error = new PgDecodeError("frame", "length", 0, $"invalid length of startup packet: {length} (allowed 8 to {max})");
            return PgFrameStatus.Malformed;
        }

        if (buffer.Length < length)
        {
            return PgFrameStatus.Incomplete;
        }

        frame = new PgFrame(PgFrameKind.StartupPacket, -1, length, buffer.Slice(4, length - 4));
        buffer = buffer.Slice(length);
        return PgFrameStatus.Complete;
    }

    /// <summary>Reads exactly one byte: the answer to SSLRequest ('S' or 'N') or GSSENCRequest ('G' or 'N').</summary>
    public static PgFrameStatus TryReadEncryptionAnswer(ref ReadOnlySequence<byte> buffer, out PgFrame frame, out PgDecodeError error)
    {
        frame = default;
        error = default;
        if (buffer.Length < 1)
        {
            return PgFrameStatus.Incomplete;
        }

        byte answer = buffer.FirstSpan[0];
        if (answer is not ((byte)'S' or (byte)'N' or (byte)'G'))
        {
            error = new PgDecodeError("frame", "answer", 0, $"the answer to an encryption request must be 'S', 'N' or 'G', not {PgTraceWriter.FormatByte(answer)}");
            return PgFrameStatus.Malformed;
        }

        frame = new PgFrame(PgFrameKind.EncryptionAnswer, answer, 0, ReadOnlySequence<byte>.Empty);
        buffer = buffer.Slice(1);
        return PgFrameStatus.Complete;
    }
}
