using System.Buffers;
using PgSpec.Protocol;

namespace PgSpec.Fuzz.Tests;

/// <summary>
/// What the codec makes of an input of a body or stream fuzz target and of variants of it (cut
/// short, a byte set to 0x00 or 0xFF at many places, a byte added): for a body, the
/// message it is classified as and what validation and the owned decode say (accepted, or the
/// error: message, field, reason, offset); for a stream, how many messages the reader reads and
/// how it ends. Written out for every seed and kept finding, it is the codec's strictness: a check
/// dropped or changed shows as a changed line.
/// </summary>
internal static class Strictness
{
    /// <summary>The targets whose inputs are described (the session targets are left to their oracles).</summary>
    public static readonly string[] Targets =
    [
        "backend-body", "frontend-body", "startup-packet", "segmentation",
        "stream-backend-3.0", "stream-backend-3.2", "stream-frontend-3.0", "stream-frontend-3.2",
    ];

    /// <summary>
    /// One line per variant of <paramref name="input"/>: the variant's name, then what the codec said.
    /// A body or startup packet is changed at up to 64 places (most of them at every byte), a stream at 16.
    /// </summary>
    public static IEnumerable<string> Describe(string target, byte[] input)
    {
        foreach ((string variant, byte[] bytes) in Variants(input, target.StartsWith("stream-", StringComparison.Ordinal) || target == "segmentation" ? 16 : 64))
        {
            yield return variant + ": " + Outcome(target, bytes);
        }
    }

    /// <summary>The input itself, then its variants, each named.</summary>
    public static IEnumerable<(string Name, byte[] Bytes)> Variants(byte[] input, int places)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(places, 2);
        yield return ("as is", input);
        if (input.Length > 1)
        {
            yield return ("without its last byte", input[..^1]);
            yield return ($"its first {input.Length / 2} bytes", input[..(input.Length / 2)]);
        }

        yield return ("with 0x00 added", [.. input, 0]);
        var where = new SortedSet<int>();
        for (int i = 0; i < Math.Min(places, input.Length); i++)
        {
            where.Add(input.Length <= places ? i : (int)((long)i * (input.Length - 1) / (places - 1)));
        }

        foreach (int place in where)
        {
            foreach (byte value in new byte[] { 0x00, 0xFF })
            {
                if (input[place] != value)
                {
                    byte[] changed = (byte[])input.Clone();
                    changed[place] = value;
                    yield return ($"byte {place} 0x{value:X2}", changed);
                }
            }
        }
    }

    /// <summary>What the codec makes of one input of <paramref name="target"/>.</summary>
    public static string Outcome(string target, byte[] input) => target switch
    {
        "backend-body" => Body(backend: true, input),
        "frontend-body" => Body(backend: false, input),
        "startup-packet" => Startup(input),
        "segmentation" => input.Length < 2 || input.Length < 2 + (2 * (input[1] & 0x0F))
            ? "too short"
            : Stream((input[0] & 1) != 0, (input[0] & 2) != 0, input.AsSpan(2 + (2 * (input[1] & 0x0F))).ToArray()),
        "stream-backend-3.0" => Stream(backend: true, protocol32: false, input),
        "stream-backend-3.2" => Stream(backend: true, protocol32: true, input),
        "stream-frontend-3.0" => Stream(backend: false, protocol32: false, input),
        "stream-frontend-3.2" => Stream(backend: false, protocol32: true, input),
        _ => throw new ArgumentException($"no description of {target}'s inputs", nameof(target)),
    };

    private static string Body(bool backend, byte[] input)
    {
        if (input.Length < 2)
        {
            return "too short";
        }

        DecodeContext context = Oracle.Context(input[0]);
        byte type = input[1];
        ReadOnlySpan<byte> body = input.AsSpan(2);
        if (backend)
        {
            BackendMessageKind kind = BackendMessages.Classify(type, body, context);
            return kind == BackendMessageKind.Unknown
                ? "no message"
                : Said(kind.ToString(),
                    BackendMessages.TryValidate(kind, body, context, out PgDecodeError validateError), validateError,
                    BackendMessages.TryDecode(kind, body, context, out _, out PgDecodeError decodeError), decodeError);
        }

        FrontendMessageKind frontend = FrontendMessages.Classify(type, body, context);
        return frontend == FrontendMessageKind.Unknown
            ? "no message"
            : Said(frontend.ToString(),
                FrontendMessages.TryValidate(frontend, body, context, out PgDecodeError frontendValidateError), frontendValidateError,
                FrontendMessages.TryDecode(frontend, body, context, out _, out PgDecodeError frontendDecodeError), frontendDecodeError);
    }

    private static string Startup(byte[] input)
    {
        if (input.Length < 1)
        {
            return "too short";
        }

        DecodeContext context = Oracle.Context((byte)(input[0] & 1), PgSessionPhase.Startup);
        ReadOnlySpan<byte> body = input.AsSpan(1);
        FrontendMessageKind kind = FrontendMessages.ClassifyStartup(body);
        return kind == FrontendMessageKind.Unknown
            ? "no message"
            : Said(kind.ToString(),
                FrontendMessages.TryValidate(kind, body, context, out PgDecodeError validateError), validateError,
                FrontendMessages.TryDecode(kind, body, context, out _, out PgDecodeError decodeError), decodeError);
    }

    private static string Said(string name, bool valid, PgDecodeError validateError, bool decoded, PgDecodeError decodeError)
    {
        string validation = valid ? "accepted" : validateError.ToString();
        string decoding = decoded ? "accepted" : decodeError.ToString();
        return validation == decoding ? $"{name}, {validation}" : $"{name}, validation {validation}, decoding {decoding}";
    }

    /// <summary>
    /// A stream from its first byte, as the stream targets read it (a backend's after the
    /// StartupMessage): from one <see cref="ReadOnlySequence{T}"/> and from one span (the two
    /// readers' ways), each message also decoded to its owned form.
    /// </summary>
    private static string Stream(bool backend, bool protocol32, byte[] data)
    {
        string sequence = ReadStream(backend, protocol32, data, span: false);
        string span = ReadStream(backend, protocol32, data, span: true);
        return sequence == span ? sequence : $"from a sequence {sequence}; from a span {span}";
    }

    private static string ReadStream(bool backend, bool protocol32, byte[] data, bool span)
    {
        DecodeContext context = StreamContexts.Create(backend, protocol32);
        var reader = new PgMessageReader(backend ? PgDirection.Backend : PgDirection.Frontend, context);
        var buffer = new ReadOnlySequence<byte>(data);
        int offset = 0;
        int messages = 0;
        string owned = "";
        while (true)
        {
            PgReadStatus status;
            PgDecodeError error;
            if (span)
            {
                status = reader.TryRead(data.AsSpan(offset), out int consumed, out PgReceivedMessage message, out error);
                if (status == PgReadStatus.Message)
                {
                    offset += consumed;
                    owned += Owned(message, context, ++messages);
                    continue;
                }
            }
            else
            {
                status = reader.TryRead(ref buffer, out PgReceivedMessage message, out error);
                if (status == PgReadStatus.Message)
                {
                    owned += Owned(message, context, ++messages);
                    continue;
                }
            }

            long left = span ? data.Length - offset : buffer.Length;
            string end = status == PgReadStatus.Malformed ? error.ToString()
                : left > 0 ? $"{left} bytes of an unfinished message"
                : "the end";
            return $"{messages} messages, then {end}{owned}";
        }
    }

    /// <summary>Nothing when the message read decodes to its owned form, else what refused it.</summary>
    private static string Owned(PgReceivedMessage message, DecodeContext context, int number)
    {
        try
        {
            _ = message.ToMessage(context);
            return "";
        }
        catch (PgProtocolException e)
        {
            return $"; message {number} read, its owned decode refused: {e.Message}";
        }
    }
}
