using System.Buffers;
using System.Text.Json;
using PgSpec.Protocol;
using PgSpec.Protocol.PgOutput;
using PgSpec.Protocol.Replication;

namespace PgSpec.Fuzz;

/// <summary>
/// The payload of one CopyData of a replication stream, decoded by the Replication family's
/// dispatcher (XLogData, keepalives, status updates, hot standby feedback): validation and owned
/// decoding agree, an accepted payload re-encodes byte for byte, traces and writes its JSON.
/// </summary>
public sealed class ReplicationTarget : FuzzTarget
{
    /// <inheritdoc/>
    public override string Name => "replication";

    /// <inheritdoc/>
    public override string Description =>
        "one CopyData payload of a replication stream. Input: a selector byte (bit 0: sent by the frontend, else by the backend), then the payload (type byte and body).";

    /// <inheritdoc/>
    protected override void Warm()
    {
        Oracle.Initialise();
        Execute([0, (byte)'k', .. new byte[16], 1]);
        Execute([1, (byte)'r', .. new byte[32], 0]);
    }

    /// <inheritdoc/>
    protected override void Execute(ReadOnlySpan<byte> input)
    {
        if (input.Length < 1)
        {
            return;
        }

        PgDirection direction = (input[0] & 1) != 0 ? PgDirection.Frontend : PgDirection.Backend;
        ReadOnlySpan<byte> payload = input[1..];
        string what = $"{Name} {(payload.IsEmpty ? "(empty)" : PgTraceWriter.FormatByte(payload[0]))}";

        long before = Oracle.Allocated();
        bool valid = ReplicationMessages.TryValidate(payload, direction, out ReplicationMessageKind kind, out PgDecodeError validateError);
        long validated = Oracle.Allocated();
        bool decoded = ReplicationMessages.TryDecode(payload, direction, out IReplicationMessage? message, out PgDecodeError decodeError);
        long after = Oracle.Allocated();

        Oracle.CheckAllocation($"{what}: validating", validated - before, valid ? 0 : Oracle.RejectBudget);
        Oracle.CheckAllocation($"{what}: decoding", after - validated, Oracle.DecodeBaseBudget + ((long)Oracle.DecodeBytesPerInputByte * payload.Length));
        Oracle.CheckAgreement(what, valid, validateError, decoded, decodeError);
        if (!payload.IsEmpty && ReplicationMessages.Classify(payload[0], direction) != kind)
        {
            throw new FuzzFindingException($"{what}: validation names {kind}, Classify another");
        }

        if (!valid)
        {
            Oracle.CheckError(what, validateError, 0, payload.Length);
            return;
        }

        if (!decoded)
        {
            return;
        }

        FamilyOracle.Check(what, message!, payload, bytes => ReplicationMessages.TryDecode(bytes, direction, out IReplicationMessage? again, out _) ? again : null, static m => m.ToArray());
        if (!ReplicationMessages.IsSentBy(message!.Kind, direction))
        {
            throw new FuzzFindingException($"{what}: {message.Name} decoded from the wrong side");
        }
    }
}

/// <summary>
/// The data of one XLogData of a logical replication stream: a pgoutput message, decoded with the
/// context the selector byte gives (protocol version, streaming mode, inside a streamed block), then
/// again with <c>TryDecodeNext</c>, which must follow Stream Start and Stream Stop.
/// </summary>
public sealed class PgOutputTarget : FuzzTarget
{
    /// <inheritdoc/>
    public override string Name => "pgoutput";

    /// <inheritdoc/>
    public override string Description =>
        "one pgoutput message (XLogData's data). Input: a selector byte (bits 0-1: protocol version - 1; bits 2-3: streaming 0 off, 1 on, 2 parallel, "
        + "lowered to what the version allows; bit 4: inside a streamed block; bit 5: no context at all), then the message (type byte and body).";

    /// <inheritdoc/>
    protected override void Warm()
    {
        Oracle.Initialise();
        Execute([0, (byte)'I', 0, 0, 0, 1, (byte)'N', 0, 1, (byte)'t', 0, 0, 0, 1, (byte)'x']);
        Execute([0x1D, (byte)'A', 0, 0, 0, 1, 0, 0, 0, 1, .. new byte[16]]);
    }

    /// <summary>The context a selector byte asks for.</summary>
    public static PgOutputContext? Context(byte selector)
    {
        if ((selector & 0x20) != 0)
        {
            return null;
        }

        int version = (selector & 3) + 1;
        var streaming = (PgOutputStreaming)Math.Min((selector >> 2) & 3, 2);
        if (streaming == PgOutputStreaming.Parallel && version < 4)
        {
            streaming = PgOutputStreaming.On;
        }

        if (streaming == PgOutputStreaming.On && version < 2)
        {
            streaming = PgOutputStreaming.Off;
        }

        return new PgOutputContext(version, streaming) { InStreamedTransaction = (selector & 0x10) != 0 };
    }

    /// <inheritdoc/>
    protected override void Execute(ReadOnlySpan<byte> input)
    {
        if (input.Length < 1)
        {
            return;
        }

        PgOutputContext? context = Context(input[0]);
        ReadOnlySpan<byte> payload = input[1..];
        string what = $"{Name} {(payload.IsEmpty ? "(empty)" : PgTraceWriter.FormatByte(payload[0]))} [{context?.ToString() ?? "no context"}]";

        long before = Oracle.Allocated();
        bool valid = PgOutputMessages.TryValidate(payload, context, out PgOutputMessageKind kind, out PgDecodeError validateError);
        long validated = Oracle.Allocated();
        bool decoded = PgOutputMessages.TryDecode(payload, context, out IPgOutputMessage? message, out PgDecodeError decodeError);
        long after = Oracle.Allocated();

        Oracle.CheckAllocation($"{what}: validating", validated - before, valid ? 0 : Oracle.RejectBudget);
        Oracle.CheckAllocation($"{what}: decoding", after - validated, Oracle.DecodeBaseBudget + ((long)Oracle.DecodeBytesPerInputByte * payload.Length));
        Oracle.CheckAgreement(what, valid, validateError, decoded, decodeError);

        // The tracker decodes as TryDecode does, and follows the stream only when it accepts.
        var tracker = new PgOutputContext(context?.ProtocolVersion ?? PgOutputMessages.MaxVersion, context?.Streaming ?? PgOutputStreaming.Off)
        {
            InStreamedTransaction = context?.InStreamedTransaction ?? false,
        };
        bool next = PgOutputMessages.TryDecodeNext(payload, tracker, out IPgOutputMessage? followed, out _);
        if (next != decoded || (next && !followed!.Equals(message)))
        {
            throw new FuzzFindingException($"{what}: TryDecodeNext and TryDecode disagree");
        }

        bool expectedInStream = !next ? tracker.InStreamedTransaction == (context?.InStreamedTransaction ?? false)
            : PgOutputMessages.StartsStream(kind) ? tracker.InStreamedTransaction
            : PgOutputMessages.EndsStream(kind) ? !tracker.InStreamedTransaction
            : tracker.InStreamedTransaction == (context?.InStreamedTransaction ?? false);
        if (!expectedInStream)
        {
            throw new FuzzFindingException($"{what}: TryDecodeNext did not follow the stream as the spec says ({tracker})");
        }

        if (!valid)
        {
            Oracle.CheckError(what, validateError, 0, payload.Length);
            return;
        }

        if (!decoded)
        {
            return;
        }

        PgOutputContext? encodeContext = context;
        FamilyOracle.Check(what, message!, payload, bytes => PgOutputMessages.TryDecode(bytes, encodeContext, out IPgOutputMessage? again, out _) ? again : null, m => Encode(m, encodeContext));
    }

    /// <summary>Encodes with the context, which checks the fields' presence against it.</summary>
    private static byte[] Encode(IPgSubMessage message, PgOutputContext? context)
        => message switch
        {
            Begin m => m.ToArray(context),
            BeginPrepare m => m.ToArray(context),
            Commit m => m.ToArray(context),
            CommitPrepared m => m.ToArray(context),
            DataType m => m.ToArray(context),
            Delete m => m.ToArray(context),
            Insert m => m.ToArray(context),
            LogicalMessage m => m.ToArray(context),
            Origin m => m.ToArray(context),
            Prepare m => m.ToArray(context),
            Relation m => m.ToArray(context),
            RollbackPrepared m => m.ToArray(context),
            StreamAbort m => m.ToArray(context),
            StreamCommit m => m.ToArray(context),
            StreamPrepare m => m.ToArray(context),
            StreamStart m => m.ToArray(context),
            StreamStop m => m.ToArray(context),
            Truncate m => m.ToArray(context),
            Update m => m.ToArray(context),
            _ => throw new FuzzFindingException($"{message.Name}: not a pgoutput message this target knows"),
        };
}

/// <summary>What every accepted sub-message must do: re-encode byte for byte, decode again to itself, trace, write JSON.</summary>
internal static class FamilyOracle
{
    public static void Check<T>(string what, T message, ReadOnlySpan<byte> payload, Func<byte[], T?> decodeAgain, Func<T, byte[]> encode)
        where T : class, IPgSubMessage
    {
        byte[] again;
        try
        {
            again = encode(message);
        }
        catch (PgEncodeException e)
        {
            throw new FuzzFindingException($"{what}: the accepted {message.Name} cannot be encoded again ({e.Message}); it was decoded from {Oracle.Hex(payload)}", e);
        }

        if (!again.AsSpan().SequenceEqual(payload) || message.EncodedLength != payload.Length)
        {
            throw new FuzzFindingException($"{what}: {message.Name} re-encodes to {Oracle.Hex(again)}, not to the {Oracle.Hex(payload)} it was decoded from");
        }

        T? twice = decodeAgain(again);
        if (twice is null || !twice.Equals(message) || !message.Equals(twice) || twice.GetHashCode() != message.GetHashCode())
        {
            throw new FuzzFindingException($"{what}: {message.Name} decoded again from its own bytes is not equal to itself");
        }

        var trace = new PgTraceWriter(Stream.Null);
        message.Trace(trace, message.Direction == PgDirection.Frontend ? 'F' : 'B');
        if (string.IsNullOrEmpty(message.ToString()))
        {
            throw new FuzzFindingException($"{what}: {message.Name} describes itself as nothing");
        }

        var json = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(json))
        {
            message.WriteJson(writer);
        }

        using JsonDocument document = JsonDocument.Parse(json.WrittenMemory);
        if (document.RootElement.GetProperty("name").GetString() != message.Name)
        {
            throw new FuzzFindingException($"{what}: {message.Name}'s JSON names another message");
        }
    }
}
