using System.Text;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;

namespace PgSpec.Generators.Tests;

/// <summary>
/// The code generated from the real specs, compared with the committed baselines, so that every
/// change to the generated API or codecs shows up in review as a diff.
/// </summary>
public class BaselineTests
{
    private const string UpdateVariable = "PGSPEC_UPDATE_BASELINES";
    private const string BaselineExtension = ".txt";
    private static readonly UTF8Encoding s_utf8NoBom = new(encoderShouldEmitUTF8Identifier: false);

    private static string BaselineDirectory
        => Path.Combine(GeneratorHarness.RepositoryRoot, "tests", "PgSpec.Generators.Tests", "Baselines");

    private static string HowToUpdate
        => "If the change is intended, regenerate the baselines with `" + UpdateVariable + "=1 dotnet test tests/PgSpec.Generators.Tests` and review the diff.";

    [Fact]
    public void GeneratedSources_RealSpecs_MatchCommittedBaselines()
    {
        GeneratorRunResult result = GeneratorHarness.Run(GeneratorHarness.LoadRealSpecs());
        Assert.Null(result.Exception);
        Assert.True(result.Diagnostics.IsEmpty, "The real specs must not produce diagnostics:" + Environment.NewLine + GeneratorHarness.Describe(result.Diagnostics));

        var generated = GeneratorHarness.Sources(result).ToDictionary(pair => pair.Key + BaselineExtension, pair => pair.Value, StringComparer.Ordinal);
        Assert.NotEmpty(generated);

        if (Environment.GetEnvironmentVariable(UpdateVariable) == "1")
        {
            Update(generated);
            return;
        }

        var problems = new List<string>();
        string[] existing = Directory.Exists(BaselineDirectory)
            ? Directory.GetFiles(BaselineDirectory, "*" + BaselineExtension).Select(path => Path.GetFileName(path)!).ToArray()
            : [];

        foreach ((string fileName, string text) in generated.OrderBy(pair => pair.Key, StringComparer.Ordinal))
        {
            string path = Path.Combine(BaselineDirectory, fileName);
            if (!File.Exists(path))
            {
                problems.Add($"Missing baseline {fileName}: the generator produced it, but it is not committed.");
                continue;
            }

            // ReadAllText drops a byte order mark, so an editor adding one does not count as a change.
            string expected = GeneratorHarness.Normalize(File.ReadAllText(path, Encoding.UTF8));
            if (!string.Equals(expected, text, StringComparison.Ordinal))
            {
                problems.Add($"Stale baseline {fileName}: {FirstDifference(expected, text)}");
            }
        }

        foreach (string fileName in existing.Where(name => !generated.ContainsKey(name)).Order(StringComparer.Ordinal))
        {
            problems.Add($"Orphaned baseline {fileName}: the generator no longer produces it.");
        }

        Assert.True(problems.Count == 0, string.Join(Environment.NewLine, problems.Append(HowToUpdate)));
    }

    [Fact]
    public void GeneratedSources_RealSpecs_IncludeOneFilePerSpecifiedMessage()
    {
        // Every message header in the specs gets its own baseline, so none escapes review; a family's
        // sub-messages ('XLogData (B) of Replication') and parts ('part TupleData of PgOutput') are
        // generated as Family.Name.g.cs.
        var header = new Regex(@"^(?<name>[A-Za-z][A-Za-z0-9]*) \((F|B|F & B)\)(?:.*\bof (?<family>[A-Za-z][A-Za-z0-9]*))?|^part (?<name>[A-Za-z][A-Za-z0-9]*) of (?<family>[A-Za-z][A-Za-z0-9]*)", RegexOptions.CultureInvariant);
        string[] messages = GeneratorHarness.LoadRealSpecs()
            .SelectMany(text => text.GetText()!.Lines.Select(line => header.Match(line.ToString())))
            .Where(match => match.Success)
            .Select(match => match.Groups["family"].Success ? match.Groups["family"].Value + "." + match.Groups["name"].Value : match.Groups["name"].Value)
            .ToArray();
        Assert.Contains("Replication.XLogData", messages);
        Assert.Contains("PgOutput.TupleData", messages);
        Assert.True(messages.Length >= 50, "expected the specs to define the protocol's messages, found " + messages.Length);

        GeneratorRunResult result = GeneratorHarness.Run(GeneratorHarness.LoadRealSpecs());
        var hintNames = result.GeneratedSources.Select(source => source.HintName).ToHashSet(StringComparer.Ordinal);
        Assert.Equal(result.GeneratedSources.Length, hintNames.Count);
        foreach (string message in messages)
        {
            Assert.Contains(message + ".g.cs", hintNames);
        }
    }

    private static void Update(Dictionary<string, string> generated)
    {
        Directory.CreateDirectory(BaselineDirectory);
        foreach (string path in Directory.GetFiles(BaselineDirectory, "*" + BaselineExtension))
        {
            if (!generated.ContainsKey(Path.GetFileName(path)))
            {
                File.Delete(path);
            }
        }

        foreach ((string fileName, string text) in generated)
        {
            File.WriteAllText(Path.Combine(BaselineDirectory, fileName), text, s_utf8NoBom);
        }
    }

    private static string FirstDifference(string expected, string actual)
    {
        string[] expectedLines = expected.Split('\n');
        string[] actualLines = actual.Split('\n');
        for (int i = 0; i < Math.Max(expectedLines.Length, actualLines.Length); i++)
        {
            string? e = i < expectedLines.Length ? expectedLines[i] : null;
            string? a = i < actualLines.Length ? actualLines[i] : null;
            if (!string.Equals(e, a, StringComparison.Ordinal))
            {
                return $"line {i + 1} was `{e ?? "<end of file>"}`, is now `{a ?? "<end of file>"}`.";
            }
        }

        return "the texts differ.";
    }
}
