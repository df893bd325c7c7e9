using System.Collections.Concurrent;
using PgSpec.Protocol;
using PgSpec.Protocol.PgOutput;
using PgSpec.Protocol.Replication;
using PgSpec.Client;

namespace PgSpec.Conformance;

/// <summary>What happened to one message name against one server.</summary>
public sealed class MessageTally
{
    /// <summary>Times it crossed the wire.</summary>
    public int Seen { get; set; }

    /// <summary>Times its bytes decoded strictly.</summary>
    public int Decoded { get; set; }

    /// <summary>Times it re-encoded to exactly the bytes that crossed the wire.</summary>
    public int Reencoded { get; set; }

    /// <summary>The scenarios it appeared in.</summary>
    public SortedSet<string> Scenarios { get; } = new(StringComparer.Ordinal);

    /// <summary>The first failures, for the report.</summary>
    public List<string> Failures { get; } = [];

    /// <summary>Every sighting decoded and re-encoded identically.</summary>
    public bool RoundTripped => Seen > 0 && Decoded == Seen && Reencoded == Seen;
}

/// <summary>
/// Records the traffic of every session of a run: for each message, whether its bytes decode
/// and whether the decoded message encodes back to the very same bytes. The messages carried in
/// others are recorded too, as the tools decode them (<see cref="ReplicationStreamContext"/>, one
/// per session): each CopyData of a replication stream as a replication message, each XLogData of
/// a pgoutput stream as a pgoutput message, under <see cref="SubMessageKey"/>.
/// </summary>
public sealed class Coverage
{
    private readonly ConcurrentDictionary<(string Server, string Message), MessageTally> _tallies = new();

    /// <summary>Messages that no real server produces or accepts for this client, with the reason.</summary>
    public static IReadOnlyDictionary<string, string> Unreachable { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["AuthenticationKerberosV5"] = "Kerberos V5 authentication was removed in PostgreSQL 9.0; no server sends it",
        ["AuthenticationSSPI"] = "SSPI is Windows-only",
        ["AuthenticationGSS"] = "needs a Kerberos realm and a server built with GSSAPI",
        ["AuthenticationGSSContinue"] = "needs a Kerberos realm and a server built with GSSAPI",
        ["GSSResponse"] = "needs a Kerberos realm and a server built with GSSAPI",
    };

    /// <summary>The messages carried in others that no server PgSpec starts sends or takes, with the reason.</summary>
    public static IReadOnlyDictionary<string, string> UnreachableSubMessages { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        [SubMessageKey(ReplicationMessages.FamilyName, "PrimaryStatusUpdate")] = "newer than PostgreSQL 18: the answer to RequestPrimaryStatusUpdate",
        [SubMessageKey(ReplicationMessages.FamilyName, "RequestPrimaryStatusUpdate")] = "newer than PostgreSQL 18, which does not take it",
    };

    /// <summary>The key of a message of a family in the tallies: <c>Family.Name</c> (<c>PgOutput.Insert</c>); an undecodable one's name is Unknown.</summary>
    public static string SubMessageKey(string family, string name) => family + "." + name;

    /// <summary>The tally of one message against one server.</summary>
    public MessageTally Tally(string server, string message) => _tallies.GetOrAdd((server, message), _ => new MessageTally());

    /// <summary>Every (server, message) tally.</summary>
    public IReadOnlyDictionary<(string Server, string Message), MessageTally> All => _tallies;

    /// <summary>A traffic callback for a session of <paramref name="scenario"/> against <paramref name="server"/>, following its replication streams.</summary>
    public Action<PgTraffic> Recorder(string server, string scenario, Func<PgProtocolVersion> version)
    {
        var replication = new ReplicationStreamContext();
        return traffic => Record(server, scenario, traffic, version(), replication);
    }

    /// <summary>
    /// Checks one message: strict decode of its raw bytes, and re-encoding to the same bytes. With
    /// <paramref name="replication"/> (the session's, fed every message in order), a CopyData of a
    /// replication stream is checked as the replication message it carries too, and an XLogData of a
    /// pgoutput stream as the pgoutput message it carries.
    /// </summary>
    public void Record(string server, string scenario, PgTraffic traffic, PgProtocolVersion version, ReplicationStreamContext? replication = null)
    {
        ArgumentNullException.ThrowIfNull(traffic);
        if (replication is not null && traffic.Message is { TypeByte: >= 0 } and not UnknownMessage && traffic.Raw.Length >= 5)
        {
            ReadOnlySpan<byte> body = traffic.Raw.Span[5..];
            ReplicationPayload? payload = null;
            switch (traffic.Message)
            {
                case CopyData:
                    payload = replication.Decode(body, traffic.Direction);
                    break;
                case IFrontendMessage frontend:
                    replication.ObserveFrontend(frontend.FrontendKind, body);
                    break;
                case IBackendMessage backend:
                    replication.ObserveBackend(backend.BackendKind, body);
                    break;
            }

            if (payload is not null)
            {
                RecordCarried(server, scenario, payload, body);
            }
        }

        RecordMessage(server, scenario, traffic, version);
    }

    /// <summary>A replication message (and the pgoutput message in it): decoded strictly, and re-encoded to the bytes carried.</summary>
    private void RecordCarried(string server, string scenario, ReplicationPayload payload, ReadOnlySpan<byte> data)
    {
        RecordSub(server, scenario, SubMessageKey(ReplicationMessages.FamilyName, payload.Name ?? "Unknown"), payload.Message, payload.Error, data);
        if (payload.Message is XLogData wal && (payload.PgOutput is not null || payload.PgOutputError is not null))
        {
            RecordSub(server, scenario, SubMessageKey(PgOutputMessages.FamilyName, payload.PgOutputName ?? "Unknown"), payload.PgOutput, payload.PgOutputError, wal.Data.Span);
        }
    }

    private void RecordSub(string server, string scenario, string key, IPgSubMessage? message, PgDecodeError? error, ReadOnlySpan<byte> carried)
    {
        bool reencoded = false;
        string? problem = message is null ? "decoding failed: " + error : null;
        if (message is not null)
        {
            try
            {
                byte[] bytes = message.ToArray();
                reencoded = bytes.AsSpan().SequenceEqual(carried);
                problem = reencoded ? null : $"re-encoded {bytes.Length} bytes differ from the {carried.Length} carried";
            }
            catch (PgEncodeException e)
            {
                problem = "re-encoding failed: " + e.Message;
            }
        }

        MessageTally tally = Tally(server, key);
        lock (tally)
        {
            tally.Seen++;
            tally.Decoded += message is not null ? 1 : 0;
            tally.Reencoded += reencoded ? 1 : 0;
            tally.Scenarios.Add(scenario);
            if (problem is not null && tally.Failures.Count < 5)
            {
                tally.Failures.Add($"{scenario}: {problem}");
            }
        }
    }

    private void RecordMessage(string server, string scenario, PgTraffic traffic, PgProtocolVersion version)
    {
        if (traffic.Message is null || traffic.Message is UnknownMessage)
        {
            if (traffic.Message is UnknownMessage unknown)
            {
                MessageTally other = Tally(server, "Unknown");
                lock (other)
                {
                    other.Seen++;
                    other.Scenarios.Add(scenario);
                    other.Failures.Add($"unknown message type {PgTraceWriter.FormatByte(unknown.TypeCode)} in {scenario}");
                }
            }

            return;
        }

        MessageTally tally = Tally(server, traffic.Message.Name);
        bool decoded = Decode(traffic, version, out IPgMessage? again, out string? problem);
        bool reencoded = false;
        if (decoded)
        {
            try
            {
                byte[] bytes = again!.ToArray(version, PgLimits.Default);
                reencoded = bytes.AsSpan().SequenceEqual(traffic.Raw.Span);
                problem = reencoded ? null : $"re-encoded {bytes.Length} bytes differ from the {traffic.Raw.Length} received";
            }
            catch (PgEncodeException e)
            {
                problem = "re-encoding failed: " + e.Message;
            }
        }

        lock (tally)
        {
            tally.Seen++;
            tally.Decoded += decoded ? 1 : 0;
            tally.Reencoded += reencoded ? 1 : 0;
            tally.Scenarios.Add(scenario);
            if (problem is not null && tally.Failures.Count < 5)
            {
                tally.Failures.Add($"{scenario}: {problem}");
            }
        }
    }

    private static bool Decode(PgTraffic traffic, PgProtocolVersion version, out IPgMessage? message, out string? problem)
    {
        ReadOnlySpan<byte> raw = traffic.Raw.Span;
        IPgMessage original = traffic.Message!;
        var context = new DecodeContext { ProtocolVersion = version, Phase = PgSessionPhase.Normal };
        bool ok;
        PgDecodeError error;
        if (original.TypeByte < 0)
        {
            FrontendMessageKind kind = FrontendMessages.ClassifyStartup(raw[4..]);
            ok = FrontendMessages.TryDecode(kind, raw[4..], context, out IFrontendMessage? f, out error);
            message = f;
        }
        else if (traffic.Direction == PgDirection.Frontend)
        {
            if (original is IFrontendMessage fm)
            {
                context.ExpectedPasswordMessage = fm.FrontendKind;
            }

            FrontendMessageKind kind = FrontendMessages.Classify(raw[0], raw[5..], context);
            ok = FrontendMessages.TryDecode(kind, raw[5..], context, out IFrontendMessage? f, out error);
            message = f;
        }
        else
        {
            BackendMessageKind kind = BackendMessages.Classify(raw[0], raw[5..], context);
            ok = BackendMessages.TryDecode(kind, raw[5..], context, out IBackendMessage? b, out error);
            message = b;
        }

        if (ok && !message!.Equals(original))
        {
            problem = "decoding the raw bytes again gave a different message";
            return false;
        }

        problem = ok ? null : "decoding failed: " + error;
        return ok;
    }
}
