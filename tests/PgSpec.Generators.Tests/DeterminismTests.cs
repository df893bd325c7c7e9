using System.Collections.Immutable;
using Microsoft.CodeAnalysis;

namespace PgSpec.Generators.Tests;

/// <summary>The same specs always give the same code, whatever order the build lists them in.</summary>
public class DeterminismTests
{
    [Fact]
    public void Generator_RunTwiceWithFreshDrivers_ProducesIdenticalSources()
    {
        ImmutableArray<AdditionalText> specs = GeneratorHarness.LoadRealSpecs();

        GeneratorRunResult first = GeneratorHarness.Run(specs);
        GeneratorRunResult second = GeneratorHarness.Run(specs);

        Assert.NotEmpty(first.GeneratedSources);
        AssertSameSources(GeneratorHarness.Sources(first), GeneratorHarness.Sources(second));
    }

    [Fact]
    public void Generator_SpecFilesInShuffledOrder_ProducesIdenticalSources()
    {
        ImmutableArray<AdditionalText> specs = GeneratorHarness.LoadRealSpecs();
        var expected = GeneratorHarness.Sources(GeneratorHarness.Run(specs));
        Assert.NotEmpty(expected);

        foreach (AdditionalText[] order in Orders(specs, seed: 1234))
        {
            AssertSameSources(expected, GeneratorHarness.Sources(GeneratorHarness.Run(order)));
        }
    }

    [Fact]
    public void Generator_InvalidSpecFilesInShuffledOrder_ReportsIdenticalDiagnostics()
    {
        AdditionalText[] specs =
        [
            GeneratorHarness.Spec("a", "Query (F)\n    Byte1('Q')\n    Int32 length\n    Strin queryString\n"),
            GeneratorHarness.Spec("b", "Query (F)\n    Byte1('Q')\n    Int32 length\n    String queryString\n"),
            GeneratorHarness.Spec("c", "Sync (F)\n    Byte1('S')\n    Int32 length bogus\n"),
            GeneratorHarness.Spec("d", "    Int32 orphan\n"),
        ];
        string expected = GeneratorHarness.Describe(GeneratorHarness.Run(specs).Diagnostics);
        Assert.Contains("PGSPEC", expected, StringComparison.Ordinal);

        foreach (AdditionalText[] order in Orders(specs, seed: 5678))
        {
            Assert.Equal(expected, GeneratorHarness.Describe(GeneratorHarness.Run(order).Diagnostics));
        }
    }

    private static void AssertSameSources(IReadOnlyList<KeyValuePair<string, string>> expected, IReadOnlyList<KeyValuePair<string, string>> actual)
    {
        Assert.Equal(expected.Select(pair => pair.Key), actual.Select(pair => pair.Key));
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.True(
                string.Equals(expected[i].Value, actual[i].Value, StringComparison.Ordinal),
                expected[i].Key + " differs between runs:" + Environment.NewLine + Difference(expected[i].Value, actual[i].Value));
        }
    }

    private static string Difference(string expected, string actual)
    {
        string[] e = expected.Split('\n');
        string[] a = actual.Split('\n');
        for (int i = 0; i < Math.Min(e.Length, a.Length); i++)
        {
            if (!string.Equals(e[i], a[i], StringComparison.Ordinal))
            {
                return $"line {i + 1}: `{e[i]}` then `{a[i]}`";
            }
        }

        return $"{e.Length} lines then {a.Length} lines";
    }

    /// <summary>The files reversed, then in several seeded random orders.</summary>
    private static IEnumerable<AdditionalText[]> Orders(IReadOnlyList<AdditionalText> specs, int seed)
    {
        yield return specs.Reverse().ToArray();
        var random = new Random(seed);
        for (int i = 0; i < 8; i++)
        {
            AdditionalText[] shuffled = [.. specs];
            random.Shuffle(shuffled);
            yield return shuffled;
        }
    }
}
