using System.Buffers.Binary;
using System.Text;
using PgSpec.Protocol;

namespace PgSpec.Fuzz;

/// <summary>
/// The checks every target applies: only the codec's typed error, allocations within budget,
/// and byte-exact re-encoding of what was accepted.
/// </summary>
public static class Oracle
{
    /// <summary>Bytes a validation (or a view's read) may allocate when it rejects a body: the error's text, whatever the body's size.</summary>
    public const int RejectBudget = 8192;

    /// <summary>Fixed bytes an owned decode may allocate besides <see cref="DecodeBytesPerInputByte"/>.</summary>
    public const int DecodeBaseBudget = 1024;

    /// <summary>
    /// Bytes an owned decode may allocate per byte of body: the worst is a list of two-byte items
    /// (an ErrorResponse field with an empty value: an object, a list slot, builder growth).
    /// What the body declares (lengths, counts) must not matter, only how long it is.
    /// </summary>
    public const int DecodeBytesPerInputByte = 64;

    /// <summary>
    /// Bytes the framer and message reader may allocate over a whole single-segment stream: one
    /// error's text, and the reader's table of where a message's values are (under 4 KiB over its life).
    /// </summary>
    public const int StreamBudget = 8192;

    /// <summary>Limits that never refuse: bodies in the body targets are not framed, so their size is not the framer's to check.</summary>
    public static PgLimits Unlimited { get; private set; } = null!;

    /// <summary>Creates what the oracle needs from the codec (called on first use, never before).</summary>
    internal static void Initialise()
    {
        Unlimited ??= PgLimits.Default
            .WithAll(PgDirection.Frontend, int.MaxValue)
            .WithAll(PgDirection.Backend, int.MaxValue)
            .WithStartupPacket(int.MaxValue);
    }

    /// <summary>The bytes allocated so far on this thread.</summary>
    public static long Allocated() => GC.GetAllocatedBytesForCurrentThread();

    /// <summary>Fails when <paramref name="allocated"/> is over <paramref name="budget"/>.</summary>
    public static void CheckAllocation(string what, long allocated, long budget)
    {
        if (allocated > budget)
        {
            throw new FuzzAllocationException($"{what} allocated {allocated} bytes; its budget for this input is {budget}");
        }
    }

    /// <summary>The decode context a selector byte asks for (bit 0: protocol 3.2; bits 1-3: the expected 'p' message).</summary>
    public static DecodeContext Context(byte selector, PgSessionPhase phase = PgSessionPhase.Normal) => new()
    {
        ProtocolVersion = (selector & 1) != 0 ? PgProtocolVersion.V3_2 : PgProtocolVersion.V3_0,
        Phase = phase,
        ExpectedPasswordMessage = ((selector >> 1) & 7) switch
        {
            1 => FrontendMessageKind.PasswordMessage,
            2 => FrontendMessageKind.SASLInitialResponse,
            3 => FrontendMessageKind.SASLResponse,
            4 => FrontendMessageKind.GSSResponse,
            _ => FrontendMessageKind.Unknown,
        },
    };

    /// <summary>The frame of a typed message: type byte, length word, body.</summary>
    public static byte[] TypedFrame(byte type, ReadOnlySpan<byte> body)
    {
        byte[] frame = new byte[body.Length + 5];
        frame[0] = type;
        BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(1), body.Length + 4);
        body.CopyTo(frame.AsSpan(5));
        return frame;
    }

    /// <summary>The frame of an untyped startup packet: length word, then the body from its code on.</summary>
    public static byte[] StartupFrame(ReadOnlySpan<byte> body)
    {
        byte[] frame = new byte[body.Length + 4];
        BinaryPrimitives.WriteInt32BigEndian(frame, body.Length + 4);
        body.CopyTo(frame.AsSpan(4));
        return frame;
    }

    /// <summary>An accepted message must encode back to exactly the bytes it was decoded from.</summary>
    public static void CheckReencodes(string what, IPgMessage message, ReadOnlySpan<byte> raw, PgProtocolVersion version, PgLimits limits)
    {
        byte[] again;
        try
        {
            again = message.ToArray(version, limits);
        }
        catch (PgEncodeException e)
        {
            throw new FuzzFindingException($"{what}: the accepted {message.Name} cannot be encoded again ({e.Message}); it was decoded from {Hex(raw)}", e);
        }

        if (!again.AsSpan().SequenceEqual(raw))
        {
            throw new FuzzFindingException($"{what}: {message.Name} re-encodes to {Hex(again)}, not to the {Hex(raw)} it was decoded from");
        }

        if (message.EncodedLength != raw.Length)
        {
            throw new FuzzFindingException($"{what}: {message.Name}.EncodedLength is {message.EncodedLength}; it encodes to {raw.Length} bytes");
        }
    }

    /// <summary>A message decoded again from its own encoding must be equal to it, with the same hash.</summary>
    public static void CheckEqual(string what, IPgMessage message, IPgMessage again)
    {
        if (!message.Equals(again) || !again.Equals(message))
        {
            throw new FuzzFindingException($"{what}: {message.Name} decoded again from its own bytes is not equal to itself");
        }

        if (message.GetHashCode() != again.GetHashCode())
        {
            throw new FuzzFindingException($"{what}: two equal {message.Name} messages have different hash codes");
        }
    }

    /// <summary>An error must name a message and a reason, and point inside the bytes it was given.</summary>
    public static void CheckError(string what, PgDecodeError error, long minOffset, long maxOffset)
    {
        if (string.IsNullOrEmpty(error.MessageName) || string.IsNullOrEmpty(error.Reason))
        {
            throw new FuzzFindingException($"{what}: an error without a message name or reason: {error}");
        }

        if (error.Offset < minOffset || error.Offset > maxOffset)
        {
            throw new FuzzFindingException($"{what}: the error points at offset {error.Offset}, outside {minOffset}..{maxOffset}: {error}");
        }
    }

    /// <summary>Whether an owned decode failed only because a String is not UTF-8 (views and validation take any encoding).</summary>
    public static bool IsEncodingError(PgDecodeError error) => error.Reason.StartsWith("String is not valid UTF-8", StringComparison.Ordinal);

    /// <summary>
    /// Validation and owned decoding must agree, except that the owned form also needs its
    /// Strings in UTF-8: decoding may stop at a String that validation (which takes any
    /// encoding) passes, and validation then accepts the body or fails further on.
    /// </summary>
    public static void CheckAgreement(string what, bool valid, PgDecodeError validateError, bool decoded, PgDecodeError decodeError)
    {
        if (decoded && !valid)
        {
            throw new FuzzFindingException($"{what}: decoding accepts what validation rejects ({validateError})");
        }

        if (!decoded && IsEncodingError(decodeError))
        {
            if (!valid && validateError.Offset < decodeError.Offset)
            {
                throw new FuzzFindingException($"{what}: decoding stops at a String that is not UTF-8 ({decodeError}), but validation fails before it ({validateError})");
            }

            return;
        }

        if (valid != decoded)
        {
            throw new FuzzFindingException($"{what}: validation accepts what decoding rejects ({decodeError})");
        }

        if (!valid)
        {
            CheckSameError($"{what}: validating and decoding", validateError, decodeError);
        }
    }

    /// <summary>Two outcomes of the same bytes must be the same error.</summary>
    public static void CheckSameError(string what, PgDecodeError expected, PgDecodeError actual)
    {
        if (expected != actual)
        {
            throw new FuzzFindingException($"{what}: the errors differ: {expected} | {actual}");
        }
    }

    /// <summary>Up to 64 bytes in hex, for findings.</summary>
    public static string Hex(ReadOnlySpan<byte> bytes)
    {
        var text = new StringBuilder();
        text.Append(Convert.ToHexString(bytes[..Math.Min(bytes.Length, 64)]));
        if (bytes.Length > 64)
        {
            text.Append($"... ({bytes.Length} bytes)");
        }

        return text.ToString();
    }
}

/// <summary>The codec's dispatchers for either direction, by kind number.</summary>
internal static class Codec
{
    public static int Classify(PgDirection direction, byte type, ReadOnlySpan<byte> body, DecodeContext context)
        => direction == PgDirection.Frontend ? (int)FrontendMessages.Classify(type, body, context) : (int)BackendMessages.Classify(type, body, context);

    public static bool TryValidate(PgDirection direction, int kind, ReadOnlySpan<byte> body, DecodeContext context, out PgDecodeError error)
        => direction == PgDirection.Frontend
            ? FrontendMessages.TryValidate((FrontendMessageKind)kind, body, context, out error)
            : BackendMessages.TryValidate((BackendMessageKind)kind, body, context, out error);

    public static bool TryDecode(PgDirection direction, int kind, ReadOnlySpan<byte> body, DecodeContext context, out IPgMessage? message, out PgDecodeError error)
    {
        if (direction == PgDirection.Frontend)
        {
            bool ok = FrontendMessages.TryDecode((FrontendMessageKind)kind, body, context, out IFrontendMessage? f, out error);
            message = f;
            return ok;
        }

        bool okB = BackendMessages.TryDecode((BackendMessageKind)kind, body, context, out IBackendMessage? b, out error);
        message = b;
        return okB;
    }

    public static string NameOf(PgDirection direction, int kind)
        => direction == PgDirection.Frontend ? FrontendMessages.NameOf((FrontendMessageKind)kind) : BackendMessages.NameOf((BackendMessageKind)kind);
}
