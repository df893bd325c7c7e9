using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace PgSpec.Generators.Tests;

/// <summary>
/// The code generated from the real specs compiles with the runtime, so a spec edit that makes
/// the generator emit broken C# fails here, next to the spec, and not only in the library build.
/// </summary>
public class GeneratedCodeCompilationTests
{
    [Fact]
    public void GeneratedSources_RealSpecsWithRuntime_CompileWithoutErrorsOrWarnings()
    {
        GeneratorRunResult result = GeneratorHarness.Run(GeneratorHarness.LoadRealSpecs());
        Assert.Null(result.Exception);
        Assert.True(result.Diagnostics.IsEmpty, GeneratorHarness.Describe(result.Diagnostics));
        Assert.NotEmpty(result.GeneratedSources);

        Compilation compilation = CompilationHarness.WithGenerated(GeneratorHarness.Sources(result));
        var problems = CompilationHarness.Problems(compilation);

        Assert.True(problems.IsEmpty, "The generated code does not compile:" + Environment.NewLine + CompilationHarness.Describe(problems));
        Assert.NotNull(compilation.GetTypeByMetadataName("PgSpec.Protocol.Query"));
        Assert.NotNull(compilation.GetTypeByMetadataName("PgSpec.Protocol.FrontendMessages"));
    }

    [Fact]
    public void RuntimeSources_WithoutGeneratedCode_DoNotCompile()
    {
        // The check can fail: the runtime refers to generated types, so leaving them out is an error.
        var problems = CompilationHarness.Problems(CompilationHarness.Runtime);

        Assert.Contains(problems, problem => problem.Severity == DiagnosticSeverity.Error);
    }

    [Fact]
    public void GeneratedSources_OneMessageBroken_ReportsCompilerErrorInThatFile()
    {
        GeneratorRunResult result = GeneratorHarness.Run(GeneratorHarness.LoadRealSpecs());
        const string Declaration = "public const string MessageName = \"Query\";";
        var sources = GeneratorHarness.Sources(result).ToArray();
        int query = Array.FindIndex(sources, pair => pair.Key == "Query.g.cs");
        Assert.True(query >= 0 && sources[query].Value.Contains(Declaration, StringComparison.Ordinal), "Query.g.cs no longer declares " + Declaration);
        sources[query] = KeyValuePair.Create(sources[query].Key, sources[query].Value.Replace(Declaration, "public const int MessageName = \"Query\";", StringComparison.Ordinal));

        var problems = CompilationHarness.ProblemsInGenerated(CompilationHarness.WithGenerated(sources), ["Query.g.cs"]);

        Assert.Contains(problems, problem => problem.Severity == DiagnosticSeverity.Error && problem.Location.GetLineSpan().Path == CompilationHarness.GeneratedFolder + "Query.g.cs");
    }

    [Fact]
    public void GeneratedSources_SpecWithBackendMessagesOnly_Compile()
    {
        // A protocol of one direction leaves the other direction's dispatcher without type bytes.
        string spec = """
            enum TransactionStatus : Byte1
                'I' Idle
                'T' InTransaction
                'E' FailedTransaction

            ReadyForQuery (B) max 30000
                Byte1('Z')
                Int32(5) length
                TransactionStatus transactionStatus
            """;

        AssertCompiles(GeneratorHarness.Spec("backend", spec));
    }

    [Fact]
    public void GeneratedSources_SpecWithUntypedPacketOnly_Compile()
    {
        string spec = """
            SSLRequest (F) max 10000
                Int32(8) length
                Int32(80877103) requestCode
            """;

        AssertCompiles(GeneratorHarness.Spec("startup", spec));
    }

    [Fact]
    public void GeneratedSources_FieldsNamedLikeCSharpKeywords_Compile()
    {
        string spec = """
            Keywords (F)
                Byte1('k')
                Int32 length
                String string
                Int16 int
                Int32 class
                Int16 count
                Entry[count] entries
                    String namespace
                    Int32 event
            """;

        AssertCompiles(GeneratorHarness.Spec("keywords", spec));
    }

    [Fact]
    public void GeneratedSources_SpecWithoutMessages_Compile()
    {
        AssertCompiles(GeneratorHarness.Spec("empty", "# No messages yet.\n"));
    }

    /// <summary>A message set of a user's own: a pooler's admin commands, say.</summary>
    private const string AdminSpec = """
        enum PoolState : Byte1
            'A' Active
            'P' Paused

        # Asks the pooler to say hello.
        Hello (F) max 1000
            Byte1('h')
            Int32 length
            String greeting

        PoolStatus (B) max 30000
            Byte1('s')
            Int32 length
            PoolState state
            Int16 clientCount
            Client[clientCount] clients
                String name
                Int32 waitMillis
        """;

    [Fact]
    public void ConsumerSpec_InItsOwnNamespace_CompilesAgainstTheBuiltRuntimeWithoutWarnings()
    {
        GeneratorRunResult result = GeneratorHarness.RunInto("Acme.Pooler.Admin", [GeneratorHarness.Spec("admin", AdminSpec)]);
        Assert.Null(result.Exception);
        Assert.True(result.Diagnostics.IsEmpty, GeneratorHarness.Describe(result.Diagnostics));
        var sources = GeneratorHarness.Sources(result);
        Assert.All(sources, source => Assert.Contains("namespace Acme.Pooler.Admin", source.Value, StringComparison.Ordinal));

        // Code of the user's that uses the set as README shows: encode, frame, dispatch, decode, trace.
        string use = """
            namespace Acme.Pooler.Admin
            {
                internal static class Use
                {
                    public static string RoundTrip()
                    {
                        byte[] bytes = new Hello("hi").ToArray();
                        var status = global::PgSpec.Protocol.PgFramer.TryReadFrame(bytes, global::PgSpec.Protocol.PgFrameKind.Typed, global::PgSpec.Protocol.PgDirection.Frontend, PgProtocolSpec.Limits, out var header, out _);
                        FrontendMessageKind kind = FrontendMessages.Classify((byte)header.TypeByte, bytes.AsSpan(5), null);
                        FrontendMessages.TryDecode(kind, bytes.AsSpan(5), null, out IFrontendMessage? message, out _);
                        return status + " " + kind + " " + message + " " + new PoolStatus(PoolState.Paused, [new PoolStatus.Client("a", 5)]);
                    }
                }
            }
            """;
        CSharpCompilationWithUse(sources, use, out Compilation compilation);
        var problems = CompilationHarness.Problems(compilation);

        Assert.True(problems.IsEmpty, "The consumer's code does not compile:" + Environment.NewLine + CompilationHarness.Describe(problems));
        Assert.NotNull(compilation.GetTypeByMetadataName("Acme.Pooler.Admin.FrontendMessageKind"));
        Assert.NotNull(compilation.GetTypeByMetadataName("Acme.Pooler.Admin.IFrontendMessage"));
    }

    [Fact]
    public void ConsumerSpec_WithoutANamespaceProperty_GoesIntoTheProjectsRootNamespace()
    {
        GeneratorRunResult result = GeneratorHarness.RunInto(null, [GeneratorHarness.Spec("admin", AdminSpec)], rootNamespace: "Contoso.Pool");

        Assert.All(GeneratorHarness.Sources(result), source => Assert.Contains("namespace Contoso.Pool", source.Value, StringComparison.Ordinal));
    }

    [Fact]
    public void ConsumerSpec_WithoutPgSpecProtocol_IsOnePgspec013SayingWhatToAdd_AndNothingIsGenerated()
    {
        GeneratorRunResult result = GeneratorHarness.RunInto("Acme.Pooler.Admin", [GeneratorHarness.Spec("admin", AdminSpec)], withoutRuntime: true);

        Diagnostic diagnostic = Assert.Single(result.Diagnostics);
        Assert.Equal("PGSPEC013", diagnostic.Id);
        Assert.Equal(DiagnosticSeverity.Error, diagnostic.Severity);
        Assert.Contains("<PackageReference Include=\"PgSpec.Protocol\" />", diagnostic.GetMessage(), StringComparison.Ordinal);
        Assert.Empty(result.GeneratedSources);
    }

    [Fact]
    public void ConsumerSpec_AgainstAnOlderPgSpecProtocol_IsOnePgspec016_AndNothingIsGenerated()
    {
        // A PgSpec.Protocol of before PgSpanReader.SkipValues, which the generated checks call.
        CSharpCompilation old = CSharpCompilation.Create(
            "PgSpec.Protocol",
            [CSharpSyntaxTree.ParseText("namespace PgSpec.Protocol { public sealed class PgLimits { } public ref struct PgSpanReader { } }")],
            [MetadataReference.CreateFromFile(typeof(object).Assembly.Location)],
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary));
        using var image = new MemoryStream();
        Assert.True(old.Emit(image).Success);
        CSharpCompilation consumer = GeneratorHarness.EmptyCompilation().AddReferences(MetadataReference.CreateFromImage(image.ToArray()));

        GeneratorRunResult result = GeneratorHarness.RunAgainst(consumer, "Acme.Pooler.Admin", [GeneratorHarness.Spec("admin", AdminSpec)]);

        Diagnostic diagnostic = Assert.Single(result.Diagnostics);
        Assert.Equal("PGSPEC016", diagnostic.Id);
        Assert.Equal(DiagnosticSeverity.Error, diagnostic.Severity);
        Assert.Contains("same version of both packages", diagnostic.GetMessage(), StringComparison.Ordinal);
        Assert.Empty(result.GeneratedSources);
    }

    [Fact]
    public void ConsumerSpec_ByContextMessage_IsPgspec008()
    {
        string spec = """
            Secret (F) max 1000 by-context
                Byte1('q')
                Int32 length
                String text
            """;

        GeneratorRunResult result = GeneratorHarness.RunInto("Acme.Secrets", [GeneratorHarness.Spec("secret", spec)]);

        Diagnostic diagnostic = Assert.Single(result.Diagnostics);
        Assert.Equal("PGSPEC008", diagnostic.Id);
        Assert.Contains("only the protocol's own 'p' messages", diagnostic.GetMessage(), StringComparison.Ordinal);
    }

    private static void CSharpCompilationWithUse(IEnumerable<KeyValuePair<string, string>> sources, string use, out Compilation compilation)
        => compilation = CompilationHarness.ConsumerWith(sources.Append(KeyValuePair.Create("Use.cs", use)));

    private static void AssertCompiles(params AdditionalText[] specs)
    {
        GeneratorRunResult result = GeneratorHarness.Run(specs);
        Assert.Null(result.Exception);
        Assert.True(result.Diagnostics.IsEmpty, GeneratorHarness.Describe(result.Diagnostics));
        Assert.NotEmpty(result.GeneratedSources);

        var problems = CompilationHarness.ProblemsInGenerated(CompilationHarness.WithGenerated(GeneratorHarness.Sources(result)));

        Assert.True(problems.IsEmpty, "The generated code does not compile:" + Environment.NewLine + CompilationHarness.Describe(problems));
    }
}
