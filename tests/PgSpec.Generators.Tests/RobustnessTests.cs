using System.Collections.Immutable;
using System.Text;
using Microsoft.CodeAnalysis;
using Xunit.Abstractions;

namespace PgSpec.Generators.Tests;

/// <summary>
/// Whatever the spec text, the generator never throws: it reports PGSPEC errors, or it generates
/// code that compiles.
/// </summary>
public class RobustnessTests
{
    private static readonly string[] s_vocabulary =
    [
        "Byte1", "Byte1('Q')", "Byte1('')", "Byte1(0)", "Byte4", "Byte0", "Byte99999999999", "Byten", "Byten(len)", "Byten()", "Int8", "Int16", "Int32", "Int64",
        "Int32(4)", "Int32(-1)", "Int32(0x)", "Int64(99999999999999999999)", "Int16[count]", "Int32[]", "String", "String[]", "String[n]", "Group[]", "Group[count]",
        "length", "count", "len", "name", "value", "code", "type", "view", "class", "int", "string", "Query", "enum", "enum X : Byte1", "(F)", "(B)", "(F & B)", "(F&B)",
        "max", "0x40000002", "3", "-7", "by-context", "masked-length", "oid", "nullable", "until", "0", "range", "1..0", "5..9", "size", "3.0:4", "3.2:4..256",
        "masked", "masked-if-code=", "masked-if-code=FLR", "untraced", "traced-as-int32", "trace-end", "'S'", "'", "''", "#", "#!", ":", "..", "[", "]", "(", ")",
        "\t", "é", "\u00a0", "\u200b", "🙂", "\\", "\"", "null", "@x",
    ];

    private readonly ITestOutputHelper _output;

    public RobustnessTests(ITestOutputHelper output)
    {
        _output = output;
    }

    [Fact]
    public void Generator_RandomGarbageLines_ReportsErrorsAndNeverThrows()
    {
        var random = new Random(20250101);
        ImmutableArray<AdditionalText> real = GeneratorHarness.LoadRealSpecs();
        var checker = new OutcomeChecker(GeneratorHarness.Sources(GeneratorHarness.Run(real)));
        for (int iteration = 0; iteration < 200; iteration++)
        {
            string garbage = Garbage(random);
            AdditionalText file = GeneratorHarness.Spec("garbage", garbage);

            // Alone, and among the real specs (so that it meets the cross-file checks).
            checker.Check(GeneratorHarness.Run(file), garbage);
            checker.Check(GeneratorHarness.Run(real.Add(file)), garbage);
        }

        _output.WriteLine(checker.Summary);
        Assert.True(checker.Rejected > 300, "garbage should almost always be rejected: " + checker.Summary);
    }

    [Fact]
    public void Generator_RealSpecsWithTokensDeletedOrDuplicated_ReportsErrorsOrCompilesAndNeverThrows()
    {
        var random = new Random(20250102);
        ImmutableArray<AdditionalText> real = GeneratorHarness.LoadRealSpecs();
        var checker = new OutcomeChecker(GeneratorHarness.Sources(GeneratorHarness.Run(real)));
        for (int iteration = 0; iteration < 300; iteration++)
        {
            int index = random.Next(real.Length);
            string original = real[index].GetText()!.ToString();
            string mutated = Mutate(original, random);
            ImmutableArray<AdditionalText> files = real.SetItem(index, new InMemoryAdditionalText(real[index].Path, mutated));

            checker.Check(GeneratorHarness.Run(files), Path.GetFileName(real[index].Path) + ":" + Environment.NewLine + mutated);
        }

        _output.WriteLine(checker.Summary);
        Assert.True(checker.Rejected > 100, "most mutations should be rejected: " + checker.Summary);
        Assert.True(checker.Compiled > 0, "some mutations should change the output and still compile: " + checker.Summary);
    }

    [Fact]
    public void Generator_RandomWellFormedSpecs_ReportsErrorsOrCompilesAndNeverThrows()
    {
        // Specs built from the grammar, with names drawn from a pool that includes C# keywords
        // and the names of generated members: each is rejected, or its code compiles.
        var random = new Random(20250103);
        var checker = new OutcomeChecker([]);
        for (int iteration = 0; iteration < 150; iteration++)
        {
            string spec = RandomSpec(random);
            checker.Check(GeneratorHarness.Run(GeneratorHarness.Spec("random", spec)), spec);
        }

        _output.WriteLine(checker.Summary);
        Assert.True(checker.Rejected > 0 && checker.Compiled > 0, "expected both outcomes: " + checker.Summary);
    }

    private static string Garbage(Random random)
    {
        var text = new StringBuilder();
        int lines = random.Next(1, 12);
        for (int line = 0; line < lines; line++)
        {
            text.Append(random.Next(4) switch
            {
                0 => "",
                1 => "    ",
                2 => "        ",
                _ => new string(' ', random.Next(1, 10)),
            });

            int tokens = random.Next(0, 7);
            for (int token = 0; token < tokens; token++)
            {
                if (token > 0)
                {
                    text.Append(random.Next(5) == 0 ? "" : " ");
                }

                text.Append(random.Next(6) == 0 ? RandomChars(random) : s_vocabulary[random.Next(s_vocabulary.Length)]);
            }

            text.Append(random.Next(8) == 0 ? "\r\n" : "\n");
        }

        return text.ToString();
    }

    private static string RandomChars(Random random)
    {
        var chars = new char[random.Next(1, 8)];
        for (int i = 0; i < chars.Length; i++)
        {
            chars[i] = random.Next(3) == 0 ? (char)random.Next(0x20, 0x7f) : (char)random.Next(0, 0x3000);
        }

        return new string(chars);
    }

    private static readonly string[] s_fieldNames = ["name", "value", "code", "count", "data", "items", "item", "entry", "status", "format", "kind", "key", "type", "text"];

    // C# keywords and the names of generated members: each must be escaped or rejected.
    private static readonly string[] s_hardFieldNames = ["class", "int", "string", "event", "namespace", "default", "params", "view", "body", "bytes", "list", "equals", "toString", "read", "length"];

    private static readonly string[] s_typeNames = ["Item", "Entry", "Field", "Value", "Items", "View", "List", "Length", "Format", "Status"];

    /// <summary>One enum and a few messages (distinct type bytes) with random fields, groups and attributes.</summary>
    private static string RandomSpec(Random random)
    {
        var text = new StringBuilder();
        text.Append("enum Format : ").Append(random.Next(2) == 0 ? "Byte1" : "Int8").Append('\n');
        text.Append("    0 Text\n    1 Binary\n\n");

        string[] messages = ["Alpha", "Beta", "Gamma", "Item", "Format"];
        int count = random.Next(1, 3);
        for (int m = 0; m < count; m++)
        {
            string direction = random.Next(3) switch { 0 => "F", 1 => "B", _ => "F & B" };
            text.Append(messages[random.Next(messages.Length)]).Append(" (").Append(direction).Append(')');
            text.Append(random.Next(3) == 0 ? " max " + random.Next(4, 100000) : "").Append('\n');
            text.Append("    Byte1('").Append((char)('a' + m)).Append("')\n    Int32 length\n");
            RandomFields(text, random, "    ", depth: 0);
            if (random.Next(4) == 0)
            {
                text.Append("    Byten ").Append(s_fieldNames[random.Next(s_fieldNames.Length)]).Append('\n');
            }

            text.Append('\n');
        }

        return text.ToString();
    }

    private static void RandomFields(StringBuilder text, Random random, string indent, int depth)
    {
        int fields = random.Next(1, 5);
        var used = new HashSet<string>(StringComparer.Ordinal);
        for (int f = 0; f < fields; f++)
        {
            string name = random.Next(6) == 0 ? s_hardFieldNames[random.Next(s_hardFieldNames.Length)] : s_fieldNames[random.Next(s_fieldNames.Length)];
            name = used.Add(name) ? name : name + f;
            string counter = "n" + depth + f;
            switch (random.Next(depth < 2 ? 9 : 7))
            {
                case 0:
                    string[] scalars = ["Byte1", "Int8", "Int16", "Int32", "Int64"];
                    text.Append(indent).Append(scalars[random.Next(scalars.Length)]).Append(' ').Append(name);
                    text.Append(random.Next(4) == 0 ? " range 0.." + random.Next(1, 300) : "").Append(random.Next(8) == 0 ? " oid" : "").Append('\n');
                    break;
                case 1:
                    text.Append(indent).Append("String ").Append(name).Append(random.Next(5) == 0 ? " masked" : "").Append('\n');
                    break;
                case 2:
                    text.Append(indent).Append("Byte").Append(random.Next(1, 9)).Append(' ').Append(name).Append('\n');
                    break;
                case 3:
                    text.Append(indent).Append("Int32 ").Append(counter).Append(random.Next(2) == 0 ? " nullable" : "").Append('\n');
                    text.Append(indent).Append("Byten(").Append(counter).Append(") ").Append(name).Append('\n');
                    break;
                case 4:
                    text.Append(indent).Append(random.Next(2) == 0 ? "Int16 " : "Int32 ").Append(counter).Append('\n');
                    text.Append(indent).Append(random.Next(3) switch { 0 => "String", 1 => "Int16", _ => "Int32" }).Append('[').Append(counter).Append("] ").Append(name).Append('\n');
                    break;
                case 5:
                    text.Append(indent).Append("String[] ").Append(name).Append(" until 0").Append(random.Next(3) == 0 ? " trace-end" : "").Append('\n');
                    break;
                case 6:
                    text.Append(indent).Append("Format ").Append(name).Append('\n');
                    break;
                case 7:
                    text.Append(indent).Append("Int16 ").Append(counter).Append('\n');
                    text.Append(indent).Append(s_typeNames[random.Next(s_typeNames.Length)]).Append('[').Append(counter).Append("] ").Append(name).Append('\n');
                    RandomFields(text, random, indent + "    ", depth + 1);
                    break;
                default:
                    text.Append(indent).Append(s_typeNames[random.Next(s_typeNames.Length)]).Append("[] ").Append(name).Append(" until 0\n");
                    text.Append(indent).Append("    ").Append(random.Next(2) == 0 ? "String key\n" : "Byte1 kind\n");
                    RandomFields(text, random, indent + "    ", depth + 1);
                    break;
            }
        }
    }

    /// <summary>Deletes or duplicates one to three tokens or lines of a spec.</summary>
    private static string Mutate(string text, Random random)
    {
        var lines = text.Split('\n').ToList();
        int mutations = random.Next(1, 4);
        for (int m = 0; m < mutations; m++)
        {
            int at = random.Next(lines.Count);
            string line = lines[at];
            switch (random.Next(5))
            {
                case 0:
                    lines.RemoveAt(at);
                    break;
                case 1:
                    lines.Insert(at, line);
                    break;
                default:
                {
                    string indent = line[..(line.Length - line.TrimStart().Length)];
                    var tokens = line.Split(' ', StringSplitOptions.RemoveEmptyEntries).ToList();
                    if (tokens.Count == 0)
                    {
                        break;
                    }

                    int token = random.Next(tokens.Count);
                    if (random.Next(2) == 0)
                    {
                        tokens.RemoveAt(token);
                    }
                    else
                    {
                        tokens.Insert(token, tokens[token]);
                    }

                    lines[at] = indent + string.Join(' ', tokens);
                    break;
                }
            }

            if (lines.Count == 0)
            {
                lines.Add("");
            }
        }

        return string.Join('\n', lines);
    }

    /// <summary>
    /// The outcome of one run must be: no generator exception, and either PGSPEC errors with
    /// nothing generated, or no diagnostics and code that compiles with the runtime.
    /// </summary>
    private sealed class OutcomeChecker
    {
        private readonly IReadOnlyList<KeyValuePair<string, string>> _realOutput;
        private readonly Dictionary<string, string> _realFiles;
        private readonly HashSet<string> _compiledOutputs = new(StringComparer.Ordinal);

        public OutcomeChecker(IReadOnlyList<KeyValuePair<string, string>> realOutput)
        {
            _realOutput = realOutput;
            _realFiles = realOutput.ToDictionary(pair => pair.Key, pair => pair.Value, StringComparer.Ordinal);
        }

        public int Rejected { get; private set; }

        public int Unchanged { get; private set; }

        public int Compiled { get; private set; }

        public int Runs { get; private set; }

        public string Summary => $"{Runs} runs: {Rejected} rejected with PGSPEC errors, {Unchanged} generated the real specs' code, {Compiled} generated other code that compiled";

        public void Check(GeneratorRunResult result, string input)
        {
            Runs++;
            string context = Environment.NewLine + "Input:" + Environment.NewLine + input;
            Assert.True(result.Exception is null, "The generator threw " + result.Exception + context);

            if (!result.Diagnostics.IsEmpty)
            {
                foreach (Diagnostic diagnostic in result.Diagnostics)
                {
                    Assert.True(
                        diagnostic.Id.StartsWith("PGSPEC", StringComparison.Ordinal) && diagnostic.Severity == DiagnosticSeverity.Error,
                        "unexpected diagnostic " + diagnostic + context);
                    Assert.True(diagnostic.Location.GetLineSpan().StartLinePosition.Line >= 0, "diagnostic without a line: " + diagnostic + context);
                }

                Assert.True(result.GeneratedSources.IsEmpty, "a protocol with errors generated code" + context);
                Rejected++;
                return;
            }

            var sources = GeneratorHarness.Sources(result);
            if (sources.SequenceEqual(_realOutput))
            {
                Unchanged++;
                return;
            }

            string key = string.Concat(sources.Select(pair => pair.Key + "\0" + pair.Value + "\0"));
            if (_compiledOutputs.Add(key))
            {
                // The files that differ from the real specs' output, and the dispatchers that call into every message.
                var changed = sources
                    .Where(pair => !(_realFiles.TryGetValue(pair.Key, out string? real) && real == pair.Value) || pair.Key is "FrontendMessages.g.cs" or "BackendMessages.g.cs")
                    .Select(pair => pair.Key);
                var problems = CompilationHarness.ProblemsInGenerated(CompilationHarness.WithGenerated(sources), changed);
                Assert.True(problems.IsEmpty, "The spec was accepted, but its code does not compile:" + Environment.NewLine + CompilationHarness.Describe(problems, 10) + context);
            }

            Compiled++;
        }
    }
}
