using System.Collections.Concurrent;
using PgSpec.Protocol;
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
/// and whether the decoded message encodes back to the very same bytes.
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

    /// <summary>The tally of one message against one server.</summary>
    public MessageTally Tally(string server, string message) => _tallies.GetOrAdd((server, message), _ => new MessageTally());

    /// <summary>Every (server, message) tally.</summary>
    public IReadOnlyDictionary<(string Server, string Message), MessageTally> All => _tallies;

    /// <summary>A traffic callback for a session of <paramref name="scenario"/> against <paramref name="server"/>.</summary>
    public Action<PgTraffic> Recorder(string server, string scenario, Func<PgProtocolVersion> version)
        => traffic => Record(server, scenario, traffic, version());

    /// <summary>Checks one message: strict decode of its raw bytes, and re-encoding to the same bytes.</summary>
    public void Record(string server, string scenario, PgTraffic traffic, PgProtocolVersion version)
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
