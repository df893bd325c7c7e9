using System.Buffers.Binary;

namespace PgSpec.Protocol;

/// <summary>
/// Where a connection is in the protocol: decides what the next bytes can be. The spec's flow
/// options name these phases: what each side may send in each (<see cref="FrontendMessages.IsAllowedIn"/>,
/// <see cref="BackendMessages.IsAllowedIn"/>) and how messages change them (<see cref="FrontendMessages.NextPhase"/>,
/// <see cref="BackendMessages.NextPhase"/>).
/// </summary>
public enum PgSessionPhase
{
    /// <summary>Before StartupMessage: the frontend sends untyped packets (SSLRequest, GSSENCRequest, StartupMessage, CancelRequest).</summary>
    Startup,

    /// <summary>After StartupMessage, until AuthenticationOk.</summary>
    Authentication,

    /// <summary>Authenticated: simple and extended query, function calls.</summary>
    Normal,

    /// <summary>COPY FROM STDIN: the frontend sends CopyData, then CopyDone or CopyFail.</summary>
    CopyIn,

    /// <summary>COPY TO STDOUT: the backend sends CopyData, then CopyDone.</summary>
    CopyOut,

    /// <summary>Replication: CopyData both ways, until each side has sent CopyDone (the frontend's leaves CopyOut, the backend's CopyIn).</summary>
    CopyBoth,
}

/// <summary>
/// What the bytes alone cannot say: the negotiated protocol version (the width of cancel keys),
/// the phase (typed messages or startup packets), which 'p' message the frontend sends (decided by
/// the last authentication request), and the size limits. Feed it every message of both
/// directions with <see cref="ObserveFrontend"/> and <see cref="ObserveBackend"/>.
/// </summary>
public class DecodeContext
{
    // The kinds of message from which a plain DecodeContext learns nothing (see IsInert).
    private static readonly bool[] FrontendInert;

    private static readonly bool[] BackendInert;

    private readonly bool _plain;

    /// <summary>
    /// Builds the tables when the type is first used, which is when the first context is made (a
    /// static constructor: not later, inside the first read, which should allocate nothing).
    /// </summary>
    static DecodeContext()
    {
        FrontendInert = InertKinds<FrontendMessageKind>(kind =>
            !FrontendMessages.IsByContext(kind)
            && kind is not (FrontendMessageKind.StartupMessage or FrontendMessageKind.SSLRequest or FrontendMessageKind.GSSENCRequest)
            && KeepsPhase(phase => FrontendMessages.NextPhase(kind, phase)));
        BackendInert = InertKinds<BackendMessageKind>(kind =>
            BackendMessages.AnsweredBy(kind) == FrontendMessageKind.Unknown
            && kind != BackendMessageKind.NegotiateProtocolVersion
            && KeepsPhase(phase => BackendMessages.NextPhase(kind, phase)));
    }

    /// <summary>A context for a connection from its start: the newest protocol version, the startup phase and the default limits.</summary>
    public DecodeContext()
    {
        _plain = GetType() == typeof(DecodeContext);
    }

    /// <summary>The protocol version in force. Until the startup packet says otherwise, the newest.</summary>
    public PgProtocolVersion ProtocolVersion { get; set; } = PgProtocolVersion.Latest;

    /// <summary>The phase of the connection.</summary>
    public PgSessionPhase Phase { get; set; } = PgSessionPhase.Startup;

    /// <summary>Which 'p' message the frontend sends next; Unknown when no authentication request is pending.</summary>
    public FrontendMessageKind ExpectedPasswordMessage { get; set; } = FrontendMessageKind.Unknown;

    /// <summary>True after an SSLRequest or GSSENCRequest: the backend answers with one byte.</summary>
    public bool ExpectEncryptionAnswer { get; set; }

    /// <summary>The last SSLRequest or GSSENCRequest seen (names the one-byte answer in traces).</summary>
    public FrontendMessageKind LastEncryptionRequest { get; set; }

    /// <summary>The size limits.</summary>
    public PgLimits Limits { get; set; } = PgLimits.Default;

    /// <summary>Names the frontend message of a type byte that only the context can tell apart.</summary>
    public virtual FrontendMessageKind ResolveFrontendByContext(byte typeByte)
        => typeByte == (byte)'p' ? ExpectedPasswordMessage : FrontendMessageKind.Unknown;

    /// <summary>Names the backend message of a type byte that only the context can tell apart (none in protocol 3.2).</summary>
    public virtual BackendMessageKind ResolveBackendByContext(byte typeByte) => BackendMessageKind.Unknown;

    /// <summary>
    /// Learns from a frontend message (its body is the bytes after the length word). The phase
    /// changes as the spec says ('enters': <see cref="FrontendMessages.NextPhase"/>).
    /// </summary>
    public virtual void ObserveFrontend(FrontendMessageKind kind, ReadOnlySpan<byte> body)
    {
        if (FrontendMessages.IsByContext(kind))
        {
            // The answer the request asked for has come.
            ExpectedPasswordMessage = FrontendMessageKind.Unknown;
        }

        switch (kind)
        {
            case FrontendMessageKind.StartupMessage when body.Length >= 4:
                var requested = new PgProtocolVersion(BinaryPrimitives.ReadInt32BigEndian(body));
                ProtocolVersion = requested.Code > PgProtocolVersion.Latest.Code ? PgProtocolVersion.Latest : requested;
                break;
            case FrontendMessageKind.SSLRequest:
            case FrontendMessageKind.GSSENCRequest:
                ExpectEncryptionAnswer = true;
                LastEncryptionRequest = kind;
                break;
        }

        EnterPhase(FrontendMessages.NextPhase(kind, Phase));
    }

    /// <summary>
    /// Learns from a backend message (its body is the bytes after the length word). The phase
    /// changes as the spec says ('enters': <see cref="BackendMessages.NextPhase"/>).
    /// </summary>
    public virtual void ObserveBackend(BackendMessageKind kind, ReadOnlySpan<byte> body)
    {
        // Which 'p' message answers a request is the spec's ('answered-by').
        FrontendMessageKind answer = BackendMessages.AnsweredBy(kind);
        if (answer != FrontendMessageKind.Unknown)
        {
            ExpectedPasswordMessage = answer;
        }

        if (kind == BackendMessageKind.NegotiateProtocolVersion && body.Length >= 4)
        {
            var offered = new PgProtocolVersion(BinaryPrimitives.ReadInt32BigEndian(body));
            if (offered.Code < ProtocolVersion.Code)
            {
                ProtocolVersion = offered;
            }
        }

        EnterPhase(BackendMessages.NextPhase(kind, Phase));
    }

    /// <summary>
    /// True when <see cref="ObserveBackend"/> of this class learns nothing from a message of this
    /// kind, in any phase: it names no answer, negotiates nothing and changes no phase (DataRow,
    /// CommandComplete, RowDescription, ...). A derived context whose own rules are about other
    /// messages can pass such messages by without its locks (a DataRow is most of the traffic).
    /// </summary>
    public static bool LearnsNothingFrom(BackendMessageKind kind)
        => kind != BackendMessageKind.Unknown && (uint)kind < (uint)BackendInert.Length && BackendInert[(int)kind];

    /// <summary>
    /// True when observing a message of this kind would change nothing: the context is a plain
    /// <see cref="DecodeContext"/> (a derived one may learn from anything), and the kind is one that
    /// <see cref="ObserveFrontend"/> or <see cref="ObserveBackend"/> above does nothing with and that
    /// changes no phase. A reader skips telling it of such messages (DataRow, most of the traffic).
    /// </summary>
    internal bool IsInert(PgDirection direction, int kind)
    {
        bool[] inert = direction == PgDirection.Frontend ? FrontendInert : BackendInert;
        return _plain && (uint)kind < (uint)inert.Length && inert[kind];
    }

    private static bool[] InertKinds<TKind>(Func<TKind, bool> inert)
        where TKind : struct, Enum
    {
        TKind[] kinds = Enum.GetValues<TKind>();
        var table = new bool[kinds.Max(k => Convert.ToInt32(k, System.Globalization.CultureInfo.InvariantCulture)) + 1];
        foreach (TKind kind in kinds)
        {
            int value = Convert.ToInt32(kind, System.Globalization.CultureInfo.InvariantCulture);

            // Unknown (0) is still reported: a derived rule may resolve it.
            table[value] = value != 0 && inert(kind);
        }

        return table;
    }

    private static bool KeepsPhase(Func<PgSessionPhase, PgSessionPhase> next)
        => Enum.GetValues<PgSessionPhase>().All(phase => next(phase) == phase);

    private void EnterPhase(PgSessionPhase next)
    {
        if (next != PgSessionPhase.Authentication && Phase == PgSessionPhase.Authentication)
        {
            // Authentication is over (AuthenticationOk): no request awaits an answer.
            ExpectedPasswordMessage = FrontendMessageKind.Unknown;
        }

        Phase = next;
    }
}
