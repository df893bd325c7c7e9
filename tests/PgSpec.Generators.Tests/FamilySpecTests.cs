using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace PgSpec.Generators.Tests;

/// <summary>
/// Families of sub-messages ('family Sub in Carrier.data'): a valid family generates code that
/// compiles (in the protocol and in a project of one's own), and every mistake in a family, a
/// sub-message, a part or a condition is a PGSPEC error at its file and line.
/// </summary>
public class FamilySpecTests
{
    /// <summary>A carrier, a family with versions, a part and sub-messages using every kind of condition.</summary>
    private const string Valid = """
        Carrier (F & B)
            Byte1('d')
            Int32 length
            Byten data

        # Sub-messages of the carrier.
        family Sub in Carrier.data versions 1..3

        enum Tag : Byte1
            'K' Key
            'O' Old

        enum ValueKind : Byte1
            'n' Null
            't' Text

        part Row of Sub
            Int16 count
            Cell[count] cells
                ValueKind kind
                Int32 len if kind is Text
                Byten(len) value if kind is Text

        Open (B) of Sub starts-stream
            Byte1('S')
            Int32 xid

        Close (B) of Sub since 2 ends-stream
            Byte1('E')

        Change (B) of Sub
            Byte1('C')
            Int32 xid if streaming
            Tag oldTag optional
            Row old if oldTag
            Byte1('N')
            Row row
            Int64 extra since 3 if parallel

        Ack (F) of Sub
            Byte1('a')
            Int64 lsn
            Int32 count
            Int32[count] oids oid
        """;

    [Fact]
    public void ValidFamily_GeneratesDispatcherPartAndMessages_ThatCompile()
    {
        GeneratorRunResult result = GeneratorHarness.Run(GeneratorHarness.Spec("sub", Valid));
        Assert.Null(result.Exception);
        Assert.True(result.Diagnostics.IsEmpty, GeneratorHarness.Describe(result.Diagnostics));
        var hints = result.GeneratedSources.Select(s => s.HintName).ToHashSet(StringComparer.Ordinal);
        foreach (string hint in new[] { "Sub.Messages.g.cs", "Sub.Row.g.cs", "Sub.Open.g.cs", "Sub.Close.g.cs", "Sub.Change.g.cs", "Sub.Ack.g.cs", "Carrier.g.cs" })
        {
            Assert.Contains(hint, hints);
        }

        var problems = CompilationHarness.ProblemsInGenerated(CompilationHarness.WithGenerated(GeneratorHarness.Sources(result)));
        Assert.True(problems.IsEmpty, "The generated code does not compile:" + Environment.NewLine + CompilationHarness.Describe(problems));

        string dispatcher = GeneratorHarness.Sources(result).Single(s => s.Key == "Sub.Messages.g.cs").Value;
        Assert.Contains("public static bool TryDecodeNext(", dispatcher, StringComparison.Ordinal);
        Assert.Contains("case SubMessageKind.Open: return true;", dispatcher, StringComparison.Ordinal);
        Assert.Contains("global::PgSpec.Protocol.PgDirection direction", dispatcher, StringComparison.Ordinal);
    }

    [Fact]
    public void ValidFamily_InAProjectOfItsOwn_CompilesAgainstTheBuiltRuntime()
    {
        GeneratorRunResult result = GeneratorHarness.RunInto("Acme.Wire", [GeneratorHarness.Spec("sub", Valid)]);
        Assert.True(result.Diagnostics.IsEmpty, GeneratorHarness.Describe(result.Diagnostics));
        const string Use = """
            namespace Acme.Wire.Use;

            /// <summary>Decodes with the family's dispatcher.</summary>
            public static class Use
            {
                /// <summary>Whether the payload is a Change.</summary>
                public static bool Run(byte[] payload)
                {
                    var context = new global::PgSpec.Protocol.PgOutputContext(3, global::PgSpec.Protocol.PgOutputStreaming.Parallel);
                    return global::Acme.Wire.Sub.SubMessages.TryDecodeNext(payload, global::PgSpec.Protocol.PgDirection.Backend, context, out global::Acme.Wire.Sub.ISubMessage? message, out _) && message.Kind == global::Acme.Wire.Sub.SubMessageKind.Change;
                }
            }
            """;

        var problems = CompilationHarness.Problems(CompilationHarness.ConsumerWith(GeneratorHarness.Sources(result).Append(KeyValuePair.Create("Use.cs", Use))));
        Assert.True(problems.IsEmpty, CompilationHarness.Describe(problems));
    }

    [Fact]
    public void FamilyInTheProtocolsCopyData_InAProjectOfItsOwn_CompilesAgainstTheBuiltRuntime()
    {
        // A sub-protocol inside CopyData: the carrier is PgSpec.Protocol's, which the project's specs do not declare.
        const string Spec = """
            family Admin in CopyData.data

            Pause (F) of Admin
                Byte1('P')
                String pool

            Paused (B) of Admin
                Byte1('p')
                String pool
                Int32 clients
            """;
        GeneratorRunResult result = GeneratorHarness.RunInto("Acme.Pooler", [GeneratorHarness.Spec("admin", Spec)]);
        Assert.True(result.Diagnostics.IsEmpty, GeneratorHarness.Describe(result.Diagnostics));
        const string Use = """
            namespace Acme.Pooler.Use;

            /// <summary>Decodes the admin messages inside CopyData.</summary>
            public static class Use
            {
                /// <summary>The pool a Pause names.</summary>
                public static string? Pool(global::PgSpec.Protocol.CopyData copy)
                    => global::Acme.Pooler.Admin.AdminMessages.TryDecode(copy, global::PgSpec.Protocol.PgDirection.Frontend, out global::Acme.Pooler.Admin.IAdminMessage? message, out _) && message is global::Acme.Pooler.Admin.Pause pause ? pause.Pool : null;
            }
            """;

        var problems = CompilationHarness.Problems(CompilationHarness.ConsumerWith(GeneratorHarness.Sources(result).Append(KeyValuePair.Create("Use.cs", Use))));
        Assert.True(problems.IsEmpty, CompilationHarness.Describe(problems));

        // In the protocol's own specs, a carrier must be declared.
        GeneratorRunResult own = GeneratorHarness.Run(GeneratorHarness.Spec("admin", Spec));
        Assert.Equal("PGSPEC003", Assert.Single(own.Diagnostics).Id);
    }

    [Fact]
    public void ValidFamily_AgainstAPgSpecProtocolWithoutFamilies_IsOnePgspec016_AndNothingIsGenerated()
    {
        // A PgSpec.Protocol of before the families: it has what plain messages need, not IPgSubMessage.
        CSharpCompilation old = CSharpCompilation.Create(
            "PgSpec.Protocol",
            [CSharpSyntaxTree.ParseText("namespace PgSpec.Protocol { public sealed class PgLimits { } public ref struct PgSpanReader { public bool SkipValues(string f, int c, bool n) => true; } }")],
            [MetadataReference.CreateFromFile(typeof(object).Assembly.Location)],
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary));
        using var image = new MemoryStream();
        Assert.True(old.Emit(image).Success);
        CSharpCompilation consumer = GeneratorHarness.EmptyCompilation().AddReferences(MetadataReference.CreateFromImage(image.ToArray()));

        GeneratorRunResult result = GeneratorHarness.RunAgainst(consumer, "Acme.Wire", [GeneratorHarness.Spec("sub", Valid)]);

        Diagnostic diagnostic = Assert.Single(result.Diagnostics);
        Assert.Equal("PGSPEC016", diagnostic.Id);
        Assert.Empty(result.GeneratedSources);

        // The same runtime is enough for a spec without a family.
        string plain = Valid[..Valid.IndexOf("# Sub-messages", StringComparison.Ordinal)];
        GeneratorRunResult plainResult = GeneratorHarness.RunAgainst(consumer, "Acme.Wire", [GeneratorHarness.Spec("plain", plain)]);
        Assert.Empty(plainResult.Diagnostics);
        Assert.NotEmpty(plainResult.GeneratedSources);
    }

    [Theory]
    [InlineData("Change (B) of Sub", "Change (B) of Nowhere", "PGSPEC008", 31)]
    [InlineData("family Sub in Carrier.data versions 1..3", "family Sub in Carrier.nothing versions 1..3", "PGSPEC003", 7)]
    [InlineData("    Tag oldTag optional", "    Tag oldTag optional\n    Int32 length", "PGSPEC008", 35)]
    [InlineData("    Row old if oldTag", "    Row old if nothing", "PGSPEC003", 35)]
    [InlineData("if kind is Text", "if kind is Texts", "PGSPEC009", 21)]
    [InlineData("if kind is Text", "if kind", "PGSPEC003", 21)]
    [InlineData("    Int32 len if kind is Text", "    Int32 len", "PGSPEC010", 22)]
    [InlineData("    Int64 extra since 3 if parallel", "    Int64 extra since 4 if parallel", "PGSPEC010", 38)]
    [InlineData("    Int64 extra since 3 if parallel", "    Int64 extra if Sometimes", "PGSPEC010", 38)]
    [InlineData("    Int64 extra since 3 if parallel", "    Int64 extra optional", "PGSPEC010", 38)]
    [InlineData("Close (B) of Sub since 2 ends-stream", "Close (B) of Sub since 2 ends-stream in Normal", "PGSPEC008", 28)]
    [InlineData("Close (B) of Sub since 2 ends-stream", "Close (B) of Sub since 7", "PGSPEC008", 28)]
    [InlineData("    Byte1('E')", "    Byte1('S')", "PGSPEC005", 28)]
    [InlineData("Ack (F) of Sub", "Ack (F) of Sub\n    Byte1('a')\n    Int32 length", "PGSPEC008", 42)]
    [InlineData("    Row row", "    Rows row", "PGSPEC002", 37)]
    [InlineData("    Row row", "    Row kind", "PGSPEC004", 37)]
    [InlineData("        ValueKind kind", "        ValueKind writeBody", "PGSPEC004", 20)]
    public void BrokenFamilyLine_IsAPgSpecErrorAtItsLine(string valid, string broken, string id, int line)
    {
        Assert.Contains(valid, Valid, StringComparison.Ordinal);
        string spec = Valid.Replace(valid, broken, StringComparison.Ordinal);

        GeneratorRunResult result = GeneratorHarness.Run(GeneratorHarness.Spec("sub", spec));
        Assert.Null(result.Exception);
        string described = GeneratorHarness.Describe(result.Diagnostics);

        // The broken line's error, at its file and line; what depends on it (a part's users) may add errors of their own.
        Assert.True(
            result.Diagnostics.Any(d => d.Id == id && d.Location.GetLineSpan().Path.EndsWith("/sub.txt", StringComparison.Ordinal) && d.Location.GetLineSpan().StartLinePosition.Line + 1 == line),
            $"expected {id} at line {line}, got: {described}");
        Assert.All(result.Diagnostics, d => Assert.Equal(DiagnosticSeverity.Error, d.Severity));
        Assert.True(result.Diagnostics.Length <= 5, described);
        Assert.Empty(result.GeneratedSources);
    }

    [Fact]
    public void ConditionOnAProtocolMessage_IsPgSpec010()
    {
        // 'if', 'since' and 'optional' belong to families: the protocol's own messages have a length word.
        string spec = """
            Other (F)
                Byte1('o')
                Int32 length
                Int32 xid if streaming
            """;

        GeneratorRunResult result = GeneratorHarness.Run(GeneratorHarness.Spec("other", spec));
        Diagnostic diagnostic = Assert.Single(result.Diagnostics);
        Assert.Equal("PGSPEC010", diagnostic.Id);
        Assert.Equal(4, diagnostic.Location.GetLineSpan().StartLinePosition.Line + 1);
    }

    [Theory]
    [InlineData("family sub in Carrier.data versions 1..3", 7)]
    [InlineData("family Sub in Carrier.data versions 3..1", 7)]
    [InlineData("part Row", 17)]
    public void BrokenFamilyOrPartHeader_IsPgSpec008AtItsLine(string broken, int line)
    {
        // What depends on the broken header may add errors of its own; the header's comes first.
        string spec = Valid.Replace(broken.StartsWith("part ", StringComparison.Ordinal) ? "part Row of Sub" : "family Sub in Carrier.data versions 1..3", broken, StringComparison.Ordinal);

        GeneratorRunResult result = GeneratorHarness.Run(GeneratorHarness.Spec("sub", spec));
        Assert.Contains(result.Diagnostics, d => d.Id == "PGSPEC008" && d.Location.GetLineSpan().StartLinePosition.Line + 1 == line);
        Assert.All(result.Diagnostics, d => Assert.Equal(DiagnosticSeverity.Error, d.Severity));
        Assert.Empty(result.GeneratedSources);
    }

    [Fact]
    public void StreamingFieldInAFamilyWithoutVersions_IsPgSpec010()
    {
        string spec = Valid.Replace("family Sub in Carrier.data versions 1..3", "family Sub in Carrier.data", StringComparison.Ordinal)
            .Replace("Open (B) of Sub starts-stream", "Open (B) of Sub", StringComparison.Ordinal)
            .Replace("Close (B) of Sub since 2 ends-stream", "Close (B) of Sub", StringComparison.Ordinal)
            .Replace("    Int64 extra since 3 if parallel\n", "", StringComparison.Ordinal);

        GeneratorRunResult result = GeneratorHarness.Run(GeneratorHarness.Spec("sub", spec));
        Diagnostic diagnostic = Assert.Single(result.Diagnostics);
        Assert.Equal("PGSPEC010", diagnostic.Id);
        Assert.Equal(33, diagnostic.Location.GetLineSpan().StartLinePosition.Line + 1);
    }
}
