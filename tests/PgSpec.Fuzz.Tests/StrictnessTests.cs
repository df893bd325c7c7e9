using System.Text;

namespace PgSpec.Fuzz.Tests;

/// <summary>
/// The codec's strictness held in files: for every seed and kept finding of the body and stream
/// targets, and variants of each (<see cref="Strictness"/>), what the codec accepts and the errors
/// it gives, compared line by line with Strictness/TARGET.txt. Work on the decoders' speed must
/// leave every line as it is; a change in what is refused, or in how, is made on purpose and shows
/// in the files' diff.
/// </summary>
public sealed class StrictnessTests
{
    private const string UpdateVariable = "PGSPEC_UPDATE_STRICTNESS";

    private static readonly string s_inputs = Path.Combine(AppContext.BaseDirectory, "inputs");

    public static TheoryData<string> Targets() => [.. Strictness.Targets];

    [Theory]
    [MemberData(nameof(Targets))]
    public void EveryInputAndItsVariants_GiveTheRecordedOutcomes(string target)
    {
        string actual = Describe(target);
        string file = Path.Combine(RepositoryRoot(), "tests", "PgSpec.Fuzz.Tests", "Strictness", target + ".txt");
        if (Environment.GetEnvironmentVariable(UpdateVariable) == "1")
        {
            Directory.CreateDirectory(Path.GetDirectoryName(file)!);
            File.WriteAllText(file, actual, new UTF8Encoding(false));
            return;
        }

        Assert.True(File.Exists(file), $"{file} is missing: write it with `{UpdateVariable}=1 dotnet test tests/PgSpec.Fuzz.Tests` and review it");
        string[] expected = File.ReadAllText(file).ReplaceLineEndings("\n").Split('\n');
        string[] lines = actual.Split('\n');
        for (int i = 0; i < Math.Max(expected.Length, lines.Length); i++)
        {
            string want = i < expected.Length ? expected[i] : "(no line)";
            string got = i < lines.Length ? lines[i] : "(no line)";
            Assert.True(want == got, $"{target}, line {i + 1}:\n  recorded: {want}\n  now:      {got}\nIf the change is meant, rewrite the files with `{UpdateVariable}=1 dotnet test tests/PgSpec.Fuzz.Tests` and review the diff.");
        }
    }

    [Fact]
    public void TheRecordedOutcomes_HoldErrorsOfManyKinds()
    {
        // Variants that break a length word, a count or a terminator are what make the files a
        // check of strictness: there must be many refusals, and of many kinds.
        var errors = new HashSet<string>(StringComparer.Ordinal);
        int accepted = 0;
        foreach (string target in Strictness.Targets)
        {
            foreach (string line in Describe(target).Split('\n'))
            {
                int at = line.IndexOf("(at offset", StringComparison.Ordinal);
                if (at > 0)
                {
                    // The message, the field and the reason, without the input's name or the offset.
                    string said = line[(line.IndexOf(": ", StringComparison.Ordinal) + 2)..at];
                    errors.Add(said[(said.LastIndexOf(", then ", StringComparison.Ordinal) + 1)..]);
                }
                else if (line.Contains("accepted", StringComparison.Ordinal) || line.EndsWith("then the end", StringComparison.Ordinal))
                {
                    accepted++;
                }
            }
        }

        Assert.True(errors.Count >= 100, $"only {errors.Count} different errors");
        Assert.True(accepted >= 100, $"only {accepted} accepted inputs");
    }

    [Fact]
    public void Variants_NameEachChangeOnce_AndKeepTheInputAsIs()
    {
        byte[] input = [1, 2, 3, 0, 0xFF];
        var variants = Strictness.Variants(input, 16).ToList();
        Assert.Equal(("as is", input), (variants[0].Name, variants[0].Bytes));
        Assert.Equal(variants.Count, variants.Select(v => v.Name).Distinct().Count());
        Assert.Contains(variants, v => v.Name == "byte 4 0x00" && v.Bytes.SequenceEqual(new byte[] { 1, 2, 3, 0, 0 }));
        Assert.DoesNotContain(variants, v => v.Name == "byte 3 0x00");
        Assert.Equal([1, 2, 3, 0, 0xFF], input);

        // A long input: sixteen places from the first byte to the last.
        byte[] longer = new byte[1000];
        var places = Strictness.Variants(longer, 16).Where(v => v.Name.EndsWith("0xFF", StringComparison.Ordinal)).ToList();
        Assert.Equal(16, places.Count);
        Assert.Equal("byte 0 0xFF", places[0].Name);
        Assert.Equal("byte 999 0xFF", places[^1].Name);
    }

    /// <summary>Every seed and kept finding of <paramref name="target"/>, in name order, each with its variants.</summary>
    private static string Describe(string target)
    {
        var text = new StringBuilder();
        foreach (string kind in new[] { "corpus", "regressions" })
        {
            string folder = Path.Combine(s_inputs, kind, target);
            string[] files = Directory.Exists(folder) ? Directory.GetFiles(folder) : [];
            Array.Sort(files, StringComparer.Ordinal);
            foreach (string file in files)
            {
                foreach (string line in Strictness.Describe(target, File.ReadAllBytes(file)))
                {
                    text.Append(kind).Append('/').Append(Path.GetFileName(file)).Append(", ").Append(line).Append('\n');
                }
            }
        }

        return text.ToString();
    }

    private static string RepositoryRoot()
    {
        for (DirectoryInfo? directory = new(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "PgSpec.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException("PgSpec.sln was not found above " + AppContext.BaseDirectory);
    }
}
