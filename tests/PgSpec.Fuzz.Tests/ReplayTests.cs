// The backend target measures what the whole process allocates (its session runs on the thread
// pool): no other test may run beside it.
[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace PgSpec.Fuzz.Tests;

/// <summary>
/// Every seed of fuzz/corpus and every finding kept in fuzz/regressions, replayed through its
/// target's oracle on the uninstrumented build: one test case per file.
/// </summary>
public sealed class ReplayTests
{
    private static readonly string s_inputs = Path.Combine(AppContext.BaseDirectory, "inputs");

    public static TheoryData<string, string> CorpusInputs() => Inputs("corpus");

    public static TheoryData<string, string> RegressionInputs() => Inputs("regressions");

    [Theory]
    [MemberData(nameof(CorpusInputs))]
    public void CorpusSeed_ReplayedThroughItsTarget_PassesTheOracle(string target, string input) => Replay("corpus", target, input);

    [Theory]
    [MemberData(nameof(RegressionInputs))]
    public void KeptFinding_ReplayedThroughItsTarget_PassesTheOracle(string target, string input) => Replay("regressions", target, input);

    [Fact]
    public void EveryTarget_HasSeedsInTheCorpus()
    {
        foreach (string name in FuzzTargets.Names)
        {
            string folder = Path.Combine(s_inputs, "corpus", name);
            Assert.True(Directory.Exists(folder) && Directory.EnumerateFiles(folder).Any(), $"fuzz/corpus/{name} has no seed");
        }
    }

    [Theory]
    [InlineData("replication")]
    [InlineData("pgoutput")]
    public void ReplicationSeeds_AreAcceptedMessages_OfEveryKind(string target)
    {
        // The seeds are whole messages, so the fuzzer starts from inputs the decoders accept.
        var kinds = new HashSet<string>(StringComparer.Ordinal);
        foreach (string file in Directory.GetFiles(Path.Combine(s_inputs, "corpus", target)))
        {
            byte[] input = File.ReadAllBytes(file);
            string? kind = target == "replication"
                ? PgSpec.Protocol.Replication.ReplicationMessages.TryDecode(input.AsSpan(1), (input[0] & 1) != 0 ? PgSpec.Protocol.PgDirection.Frontend : PgSpec.Protocol.PgDirection.Backend, out var r, out var error) ? r.Name : throw new Xunit.Sdk.XunitException($"{file}: {error}")
                : PgSpec.Protocol.PgOutput.PgOutputMessages.TryDecode(input.AsSpan(1), PgOutputTarget.Context(input[0]), out var p, out var perror) ? p.Name : throw new Xunit.Sdk.XunitException($"{file}: {perror}");
            kinds.Add(kind);
        }

        int expected = target == "replication" ? PgSpec.Protocol.Replication.ReplicationMessages.All.Count : PgSpec.Protocol.PgOutput.PgOutputMessages.All.Count;
        Assert.Equal(expected, kinds.Count);
    }

    [Fact]
    public void EveryInputFolder_IsNamedAfterATarget()
    {
        foreach (string kind in new[] { "corpus", "regressions" })
        {
            string root = Path.Combine(s_inputs, kind);
            foreach (string folder in Directory.Exists(root) ? Directory.GetDirectories(root) : [])
            {
                Assert.Contains(Path.GetFileName(folder), FuzzTargets.Names);
            }
        }
    }

    private static TheoryData<string, string> Inputs(string kind)
    {
        var data = new TheoryData<string, string>();
        string root = Path.Combine(s_inputs, kind);
        foreach (string folder in Directory.Exists(root) ? Directory.GetDirectories(root).Order(StringComparer.Ordinal).ToArray() : [])
        {
            foreach (string file in Directory.GetFiles(folder).Order(StringComparer.Ordinal))
            {
                data.Add(Path.GetFileName(folder), Path.GetFileName(file));
            }
        }

        return data;
    }

    private static void Replay(string kind, string target, string input)
    {
        FuzzTarget? fuzzTarget = FuzzTargets.Find(target);
        Assert.True(fuzzTarget is not null, $"no target named {target}");
        byte[] bytes = File.ReadAllBytes(Path.Combine(s_inputs, kind, target, input));
        fuzzTarget.Run(bytes);
    }
}
