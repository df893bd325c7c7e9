using PgSpec.Protocol;

namespace PgSpec.Fuzz;

/// <summary>
/// Typed message bodies of one direction, decoded every way the codec offers: classify,
/// validate, owned decode, zero-copy view, trace. They must agree with each other, allocate
/// nothing to validate an accepted body, and re-encode byte for byte.
/// </summary>
public sealed class BodyTarget : FuzzTarget
{
    private readonly bool _backend;

    /// <summary>Creates the target for frontend or backend bodies.</summary>
    public BodyTarget(bool backend) => _backend = backend;

    /// <inheritdoc/>
    public override string Name => _backend ? "backend-body" : "frontend-body";

    /// <inheritdoc/>
    public override string Description =>
        $"one {(_backend ? "backend" : "frontend")} message body. Input: a selector byte (bit 0: protocol 3.2; bits 1-3: the expected 'p' message: "
        + "1 PasswordMessage, 2 SASLInitialResponse, 3 SASLResponse, 4 GSSResponse; bit 4: regress-mode trace), the type byte, then the body (the bytes after the length word).";

    private PgDirection Direction => _backend ? PgDirection.Backend : PgDirection.Frontend;

    /// <inheritdoc/>
    protected override void Warm()
    {
        Oracle.Initialise();
        Execute([0, (byte)'Q', (byte)'x', 0]);
        Execute([0, (byte)'C', (byte)'x', 0]);
    }

    /// <inheritdoc/>
    protected override void Execute(ReadOnlySpan<byte> input)
    {
        if (input.Length < 2)
        {
            return;
        }

        DecodeContext context = Oracle.Context(input[0]);
        bool regress = (input[0] & 0x10) != 0;
        byte type = input[1];
        ReadOnlySpan<byte> body = input[2..];
        PgDirection direction = Direction;
        string what = $"{Name} '{PgTraceWriter.FormatByte(type)}'";

        int kind = Codec.Classify(direction, type, body, context);
        var trace = new PgTraceWriter(Stream.Null, new PgTraceOptions { Regress = regress });
        if (kind == 0)
        {
            // No spec names it: it must stay forwardable, and trace as libpq traces unknown messages.
            if (Codec.TryValidate(direction, kind, body, context, out _))
            {
                throw new FuzzFindingException($"{what}: a message no spec names passed validation");
            }

            if (!PgTrace.TryTrace(direction, type, body, context, trace, out PgDecodeError unknownError))
            {
                throw new FuzzFindingException($"{what}: tracing an unknown message failed: {unknownError}");
            }

            var unknown = new UnknownMessage(type, body.ToArray());
            Oracle.CheckReencodes(what, unknown, Oracle.TypedFrame(type, body), context.ProtocolVersion, Oracle.Unlimited);
            return;
        }

        string name = Codec.NameOf(direction, kind);
        what = $"{Name} {name}";
        long before = Oracle.Allocated();
        bool valid = Codec.TryValidate(direction, kind, body, context, out PgDecodeError validateError);
        long validated = Oracle.Allocated();
        bool decoded = Codec.TryDecode(direction, kind, body, context, out IPgMessage? message, out PgDecodeError decodeError);
        long after = Oracle.Allocated();

        Oracle.CheckAllocation($"{what}: validating", validated - before, valid ? 0 : Oracle.RejectBudget);
        Oracle.CheckAllocation($"{what}: decoding", after - validated, Oracle.DecodeBaseBudget + ((long)Oracle.DecodeBytesPerInputByte * body.Length));
        Oracle.CheckAgreement(what, valid, validateError, decoded, decodeError);

        if (!PgTrace.TryTrace(direction, type, body, context, trace, out PgDecodeError traceError) != !valid)
        {
            throw new FuzzFindingException($"{what}: tracing {(valid ? "rejects" : "accepts")} what validation {(valid ? "accepts" : "rejects")}");
        }

        if (!valid)
        {
            Oracle.CheckSameError($"{what}: validating and tracing", validateError, traceError);
            Oracle.CheckError(what, validateError, 0, body.Length + 5);
            Views.Check(what, kind, direction, body, context, accepted: false);
            return;
        }

        if (!decoded)
        {
            // Valid, but with a String that is not UTF-8: the view reads it, the owned form cannot.
            Views.Check(what, kind, direction, body, context, accepted: true);
            return;
        }

        byte[] frame = Oracle.TypedFrame(type, body);
        Oracle.CheckReencodes(what, message!, frame, context.ProtocolVersion, Oracle.Unlimited);
        if (!Codec.TryDecode(direction, kind, frame.AsSpan(5), context, out IPgMessage? again, out PgDecodeError againError))
        {
            throw new FuzzFindingException($"{what}: its own encoding does not decode: {againError}");
        }

        Oracle.CheckEqual(what, message!, again!);
        Views.Check(what, kind, direction, body, context, accepted: true, message);
    }
}

/// <summary>
/// Untyped startup-phase packets (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest),
/// classified by their code and decoded every way, as <see cref="BodyTarget"/> does.
/// </summary>
public sealed class StartupPacketTarget : FuzzTarget
{
    /// <inheritdoc/>
    public override string Name => "startup-packet";

    /// <inheritdoc/>
    public override string Description =>
        "one untyped startup packet. Input: a selector byte (bit 0: protocol 3.2, which decides the cancel key's size; bit 4: regress-mode trace), then the body from its Int32 code on.";

    /// <inheritdoc/>
    protected override void Warm()
    {
        Oracle.Initialise();
        Execute([0, 0x04, 0xD2, 0x16, 0x2F]);
        Execute([0, 0x00, 0x03, 0x00, 0x00, (byte)'u', 0, (byte)'x', 0, 0]);
    }

    /// <inheritdoc/>
    protected override void Execute(ReadOnlySpan<byte> input)
    {
        if (input.Length < 1)
        {
            return;
        }

        DecodeContext context = Oracle.Context((byte)(input[0] & 1), PgSessionPhase.Startup);
        bool regress = (input[0] & 0x10) != 0;
        ReadOnlySpan<byte> body = input[1..];
        var trace = new PgTraceWriter(Stream.Null, new PgTraceOptions { Regress = regress });
        FrontendMessageKind kind = FrontendMessages.ClassifyStartup(body);
        if (kind == FrontendMessageKind.Unknown)
        {
            if (!PgTrace.TryTraceStartup(body, context, trace, out PgDecodeError unknownError))
            {
                throw new FuzzFindingException($"{Name}: tracing an unknown packet failed: {unknownError}");
            }

            return;
        }

        string what = $"{Name} {FrontendMessages.NameOf(kind)}";
        if (FrontendMessages.TypeByteOf(kind) >= 0)
        {
            throw new FuzzFindingException($"{what}: a startup code names a typed message");
        }

        long before = Oracle.Allocated();
        bool valid = FrontendMessages.TryValidate(kind, body, context, out PgDecodeError validateError);
        long validated = Oracle.Allocated();
        bool decoded = FrontendMessages.TryDecode(kind, body, context, out IFrontendMessage? message, out PgDecodeError decodeError);
        long after = Oracle.Allocated();

        Oracle.CheckAllocation($"{what}: validating", validated - before, valid ? 0 : Oracle.RejectBudget);
        Oracle.CheckAllocation($"{what}: decoding", after - validated, Oracle.DecodeBaseBudget + ((long)Oracle.DecodeBytesPerInputByte * body.Length));
        Oracle.CheckAgreement(what, valid, validateError, decoded, decodeError);

        if (!PgTrace.TryTraceStartup(body, context, trace, out PgDecodeError traceError) != !valid)
        {
            throw new FuzzFindingException($"{what}: tracing {(valid ? "rejects" : "accepts")} what validation {(valid ? "accepts" : "rejects")}");
        }

        if (!valid)
        {
            Oracle.CheckSameError($"{what}: validating and tracing", validateError, traceError);
            Oracle.CheckError(what, validateError, 0, body.Length + 4);
            Views.Check(what, (int)kind, PgDirection.Frontend, body, context, accepted: false);
            return;
        }

        if (!decoded)
        {
            Views.Check(what, (int)kind, PgDirection.Frontend, body, context, accepted: true);
            return;
        }

        byte[] frame = Oracle.StartupFrame(body);
        Oracle.CheckReencodes(what, message!, frame, context.ProtocolVersion, Oracle.Unlimited);
        if (!FrontendMessages.TryDecode(kind, frame.AsSpan(4), context, out IFrontendMessage? again, out PgDecodeError againError))
        {
            throw new FuzzFindingException($"{what}: its own encoding does not decode: {againError}");
        }

        Oracle.CheckEqual(what, message!, again!);
        Views.Check(what, (int)kind, PgDirection.Frontend, body, context, accepted: true, message);
    }
}
