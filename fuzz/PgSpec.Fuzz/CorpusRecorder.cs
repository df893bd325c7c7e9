using System.Buffers.Binary;
using PgSpec.Conformance;
using PgSpec.Protocol;
using PgSpec.Client;
using PgSpec.Servers;

namespace PgSpec.Fuzz;

/// <summary>
/// Records seed inputs for every target from real traffic: runs the conformance scenarios against
/// a throwaway PostgreSQL 15 and a PostgreSQL 18, keeps each session's messages of both directions
/// with their exact bytes, and writes a few small seeds per target (the smallest of each message for
/// the body targets, the beginnings of whole sessions for the stream, segmentation and session
/// targets). PostgreSQL 15 answers a request for protocol 3.2 with NegotiateProtocolVersion;
/// PostgreSQL 18 speaks 3.2 itself, with a 32-byte cancel key: its sessions are the "-pg18" seeds.
/// Seeds already in the folder are kept (their bytes hold nonces and process ids that change from
/// run to run), unless <c>replace</c> is set.
/// </summary>
internal static class CorpusRecorder
{
    /// <summary>The longest stream seed: the beginning of a session, cut at a message boundary.</summary>
    private const int MaxStreamSeed = 2048;

    private sealed record Session(string Scenario, int Major, List<PgTraffic> Traffic)
    {
        /// <summary>The seed name of the session: the scenario, with the server's version unless it is 15.</summary>
        public string Name => Major == 15 ? Scenario : $"{Scenario}-pg{Major}";
    }

    /// <summary>The servers recorded: 15 for protocol 3.0 and its negotiation, 18 for 3.2 itself.</summary>
    private static readonly int[] s_majors = [15, 18];

    /// <summary>Scenarios whose PostgreSQL 18 sessions differ from 15's in what the codec reads (3.2, wide keys).</summary>
    private static readonly string[] s_pg18Scenarios = ["protocol-3.2"];

    public static async Task<int> RunAsync(string directory, bool replace)
    {
        var sessions = new List<Session>();
        foreach (int major in s_majors)
        {
            await RecordAsync(major, sessions);
        }

        sessions.RemoveAll(s => s.Major != 15 && !s_pg18Scenarios.Contains(s.Scenario));

        var seeds = new SortedDictionary<string, byte[]>(StringComparer.Ordinal);
        BodySeeds(sessions, seeds);
        StreamSeeds(sessions, seeds);
        SessionSeeds(sessions, seeds);
        int written = 0, kept = 0;
        foreach ((string path, byte[] bytes) in seeds)
        {
            string file = Path.Combine(directory, path);
            if (!replace && File.Exists(file))
            {
                kept++;
                continue;
            }

            Directory.CreateDirectory(Path.GetDirectoryName(file)!);
            await File.WriteAllBytesAsync(file, bytes);
            written++;
        }

        Console.WriteLine($"{seeds.Count} seeds, {seeds.Values.Sum(s => s.Length)} bytes: {written} written, {kept} kept as they were, in {directory}");
        return 0;
    }

    private static async Task RecordAsync(int major, List<Session> sessions)
    {
        await using (PgServer server = await new LocalPgServerProvider().StartAsync(new PgServerOptions { MajorVersion = major, Progress = Console.WriteLine }, CancellationToken.None))
        {
            ConformanceReport report = await ConformanceRunner.RunAsync(
                [Target.From(server)],
                Console.WriteLine,
                observe: scenario =>
                {
                    var session = new Session(scenario, major, []);
                    lock (sessions)
                    {
                        sessions.Add(session);
                    }

                    return traffic =>
                    {
                        lock (session.Traffic)
                        {
                            session.Traffic.Add(traffic);
                        }
                    };
                });
            Console.WriteLine(report.Passed ? $"conformance passed on {major}" : $"conformance problems on {major}: " + string.Join("; ", report.Problems));
        }
    }

    /// <summary>The smallest body of every message seen, for the body and startup packet targets.</summary>
    private static void BodySeeds(List<Session> sessions, SortedDictionary<string, byte[]> seeds)
    {
        var smallest = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (Session session in sessions)
        {
            foreach (PgTraffic traffic in session.Traffic)
            {
                if (traffic.Message is null or UnknownMessage)
                {
                    continue;
                }

                byte[] raw = traffic.Raw.ToArray();
                string path;
                byte[] seed;
                if (traffic.Message.TypeByte < 0)
                {
                    // A startup packet: the selector, then the body from the code on.
                    bool wideKey = traffic.Message is CancelRequest && raw.Length > 16;
                    path = "startup-packet/" + traffic.Message.Name + (wideKey ? "-3.2" : "");
                    seed = [(byte)(wideKey ? 1 : 0), .. raw.AsSpan(4)];
                }
                else
                {
                    string target = traffic.Direction == PgDirection.Frontend ? "frontend-body" : "backend-body";
                    byte selector = traffic.Message switch
                    {
                        PasswordMessage => 1 << 1,
                        SASLInitialResponse => 2 << 1,
                        SASLResponse => 3 << 1,
                        GSSResponse => 4 << 1,
                        BackendKeyData when raw.Length > 13 => 1,
                        _ => 0,
                    };
                    path = target + "/" + traffic.Message.Name + (selector == 1 ? "-3.2" : "");
                    seed = [selector, raw[0], .. raw.AsSpan(5)];
                }

                if (!smallest.TryGetValue(path, out byte[]? known) || seed.Length < known.Length)
                {
                    smallest[path] = seed;
                }
            }
        }

        // Empty bodies differ only in their type byte, which the dictionary has: one of them is enough.
        var emptyKept = new HashSet<string>(StringComparer.Ordinal);
        foreach ((string path, byte[] seed) in smallest.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            if (seed.Length > 2 || path.StartsWith("startup-packet/", StringComparison.Ordinal) || emptyKept.Add(path.Split('/')[0]))
            {
                seeds[path] = seed;
            }
        }
    }

    /// <summary>The scenarios whose sessions make the stream seeds: authentication of every kind, every part of the protocol.</summary>
    private static readonly string[] s_streamScenarios =
    [
        "auth-md5", "auth-scram", "extended-query", "pipeline-error", "copy-in", "copy-out", "function-call",
        "protocol-option", "protocol-3.2",
    ];

    /// <summary>Sessions of protocol 3.0 that seed the 3.2 stream targets too (PostgreSQL 15 speaks only 3.0).</summary>
    private static readonly string[] s_alsoFor32 = ["auth-scram", "extended-query", "copy-out"];

    private static void StreamSeeds(List<Session> sessions, SortedDictionary<string, byte[]> seeds)
    {
        foreach (Session session in sessions.Where(s => s_streamScenarios.Contains(s.Scenario) && s.Traffic.Count > 0).DistinctBy(s => s.Name))
        {
            string scenario = session.Scenario;
            bool v32 = scenario == "protocol-3.2";
            byte[] frontend = Stream(session, PgDirection.Frontend, includeAnswers: false);
            byte[] backend = Stream(session, PgDirection.Backend, includeAnswers: false);
            foreach (string version in v32 || s_alsoFor32.Contains(scenario) ? ["3.2", "3.0"] : new[] { "3.0" })
            {
                seeds[$"stream-frontend-{version}/{session.Name}"] = frontend;
                seeds[$"stream-backend-{version}/{session.Name}"] = backend;
            }

            if (scenario is "extended-query" or "auth-scram" or "protocol-3.2" or "copy-in")
            {
                seeds[$"segmentation/{session.Name}-backend"] = Segmented(backend, backend: true, v32);
                seeds[$"segmentation/{session.Name}-frontend"] = Segmented(frontend, backend: false, v32);
            }
        }
    }

    /// <summary>A segmentation seed: splits inside a header, inside a body and at a boundary.</summary>
    private static byte[] Segmented(byte[] stream, bool backend, bool v32)
    {
        int[] splits = [1, 3, 5, 6, stream.Length / 3, stream.Length / 2, stream.Length - 1];
        var seed = new List<byte> { (byte)((backend ? 1 : 0) | (v32 ? 2 : 0)), (byte)splits.Length };
        foreach (int at in splits)
        {
            byte[] word = new byte[2];
            BinaryPrimitives.WriteUInt16BigEndian(word, (ushort)Math.Max(at, 0));
            seed.AddRange(word);
        }

        seed.AddRange(stream);
        return seed.ToArray();
    }

    /// <summary>What one side sent in a session, from the start, cut at a message boundary.</summary>
    private static byte[] Stream(Session session, PgDirection direction, bool includeAnswers)
    {
        var bytes = new List<byte>();
        foreach (PgTraffic traffic in session.Traffic)
        {
            if (traffic.Direction != direction || (traffic.Message is null && !includeAnswers))
            {
                continue;
            }

            if (bytes.Count + traffic.Raw.Length > MaxStreamSeed && bytes.Count > 0)
            {
                break;
            }

            bytes.AddRange(traffic.Raw.ToArray());
        }

        return bytes.ToArray();
    }

    /// <summary>The session target's option bytes for the scenarios it can replay (no TLS: its handshake is not in the traffic).</summary>
    private static readonly (string Scenario, byte A, byte B)[] s_sessionScenarios =
    [
        ("auth-trust", 0 << 5, 0),
        ("auth-password", (0 << 5) | 0x10, 0),
        ("auth-md5", (0 << 5) | 0x10, 0),
        ("auth-scram", (0 << 5) | 0x10, 0),
        ("gssenc-request", (0 << 5) | 0x02, 0),
        ("protocol-3.2", (0 << 5) | 0x01, 0),
        ("copy-in", 1 << 5, 0x10),
        ("extended-query", 6 << 5, 0),
        ("function-call", (3 << 5) | 0x10, 0),
        ("notifications", 5 << 5, 0x10),
    ];

    private static void SessionSeeds(List<Session> sessions, SortedDictionary<string, byte[]> seeds)
    {
        foreach ((string scenario, byte a, byte b) in s_sessionScenarios)
        {
            foreach (Session session in sessions.Where(s => s.Scenario == scenario && s.Traffic.Count > 0).DistinctBy(s => s.Name))
            {
                seeds[$"session/{session.Name}"] = [a, b, .. Stream(session, PgDirection.Backend, includeAnswers: true)];
            }
        }
    }
}
