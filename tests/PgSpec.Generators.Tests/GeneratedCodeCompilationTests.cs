using Microsoft.CodeAnalysis;

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
