using Microsoft.CodeAnalysis;

namespace PgSpec.Generators.Tests;

/// <summary>
/// What a user's project gets from the generator: its spec files are the additional files the
/// build marks (PgSpecFile), nothing at all without a message or enum, and one clear error when
/// the generated code could not compile (PGSPEC013 without PgSpec.Protocol, PGSPEC014 in the
/// protocol's own namespace).
/// </summary>
public class ConsumerProjectTests
{
    private const string Namespace = "Acme.Pooler.Admin";

    private const string HelloSpec = """
        Hello (F) max 1000
            Byte1('h')
            Int32 length
            String greeting
        """;

    private const string EnumSpec = """
        enum PoolState : Byte1
            'A' Active
            'P' Paused
        """;

    [Fact]
    public void NoSpecFiles_WithPgSpecProtocol_GeneratesAndReportsNothing()
    {
        GeneratorRunResult result = GeneratorHarness.RunInto(Namespace, []);

        AssertNothing(result);
    }

    [Fact]
    public void NoSpecFiles_WithoutPgSpecProtocol_GeneratesAndReportsNothing()
    {
        GeneratorRunResult result = GeneratorHarness.RunInto(Namespace, [], withoutRuntime: true);

        AssertNothing(result);
    }

    [Fact]
    public void SpecOfCommentsOnly_GeneratesAndReportsNothing()
    {
        GeneratorRunResult result = GeneratorHarness.RunInto(Namespace, [GeneratorHarness.Spec("notes", "# Messages to come.\n")], withoutRuntime: true);

        AssertNothing(result);
    }

    [Fact]
    public void EnumsOnly_WithoutPgSpecProtocol_IsOnePgspec013_AndNothingIsGenerated()
    {
        GeneratorRunResult result = GeneratorHarness.RunInto(Namespace, [GeneratorHarness.Spec("enums", EnumSpec)], withoutRuntime: true);

        Diagnostic diagnostic = Assert.Single(result.Diagnostics);
        Assert.Equal("PGSPEC013", diagnostic.Id);
        Assert.Equal(DiagnosticSeverity.Error, diagnostic.Severity);
        Assert.Empty(result.GeneratedSources);
    }

    [Fact]
    public void EnumsOnly_WithPgSpecProtocol_CompileWithoutWarnings()
    {
        GeneratorRunResult result = GeneratorHarness.RunInto(Namespace, [GeneratorHarness.Spec("enums", EnumSpec)]);
        Assert.True(result.Diagnostics.IsEmpty, GeneratorHarness.Describe(result.Diagnostics));
        Assert.Contains(result.GeneratedSources, source => source.HintName == "Enums.g.cs");

        Compilation compilation = CompilationHarness.ConsumerWith(GeneratorHarness.Sources(result));
        var problems = CompilationHarness.Problems(compilation);

        Assert.True(problems.IsEmpty, CompilationHarness.Describe(problems));
        Assert.NotNull(compilation.GetTypeByMetadataName(Namespace + ".PoolState"));
    }

    [Fact]
    public void ProtocolNamespace_InAUsersProject_IsOnePgspec014_AndNothingIsGenerated()
    {
        // PgSpec.Protocol is referenced: its PgLimits comes from an assembly, not from source.
        GeneratorRunResult result = GeneratorHarness.RunAgainst(GeneratorHarness.ConsumerCompilation(), GeneratorHarness.ProtocolNamespace, [GeneratorHarness.Spec("admin", HelloSpec)]);

        Diagnostic diagnostic = Assert.Single(result.Diagnostics);
        Assert.Equal("PGSPEC014", diagnostic.Id);
        Assert.Equal(DiagnosticSeverity.Error, diagnostic.Severity);
        Assert.Contains("PgSpecNamespace", diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
        Assert.Empty(result.GeneratedSources);
    }

    [Fact]
    public void ProtocolNamespace_InAUsersProjectWithoutPgSpecProtocol_IsOnePgspec014_AndNothingIsGenerated()
    {
        GeneratorRunResult result = GeneratorHarness.RunInto(GeneratorHarness.ProtocolNamespace, [GeneratorHarness.Spec("enums", EnumSpec)], withoutRuntime: true);

        Assert.Equal("PGSPEC014", Assert.Single(result.Diagnostics).Id);
        Assert.Empty(result.GeneratedSources);
    }

    [Fact]
    public void ProtocolNamespace_InAUsersProjectWithoutSpecs_GeneratesAndReportsNothing()
    {
        GeneratorRunResult result = GeneratorHarness.RunAgainst(GeneratorHarness.ConsumerCompilation(), GeneratorHarness.ProtocolNamespace, []);

        AssertNothing(result);
    }

    [Fact]
    public void ProtocolsOwnBuild_WithoutSpecs_StillGeneratesTheTypesItsRuntimeNames()
    {
        GeneratorRunResult result = GeneratorHarness.RunInto(GeneratorHarness.ProtocolNamespace, []);

        Assert.True(result.Diagnostics.IsEmpty, GeneratorHarness.Describe(result.Diagnostics));
        Assert.Contains(result.GeneratedSources, source => source.HintName == "FrontendMessages.g.cs");
    }

    [Fact]
    public void TextFilesUnderAFolderNamedSpec_AreReadOnlyWhenMarkedAsSpecs()
    {
        // A project living under /repos/spec/: its analyzers' text files are no specs.
        AdditionalText[] files =
        [
            GeneratorHarness.OtherFile("/repos/spec/MyApp/BannedSymbols.txt", "T:System.Console;Use the logger\n"),
            GeneratorHarness.OtherFile("/repos/spec/MyApp/PublicAPI.Shipped.txt", "#nullable enable\nAcme.Pooler.Admin.Hello\n"),
            GeneratorHarness.OtherFile("/repos/spec/MyApp/spec/notes.txt", "Not a spec: the build does not mark it.\n"),
            new InMemoryAdditionalText("/repos/spec/MyApp/spec/admin.txt", HelloSpec),
        ];

        GeneratorRunResult result = GeneratorHarness.RunInto(Namespace, files);

        Assert.True(result.Diagnostics.IsEmpty, GeneratorHarness.Describe(result.Diagnostics));
        Assert.Contains(result.GeneratedSources, source => source.HintName == "Hello.g.cs");
    }

    [Fact]
    public void MarkedFile_OutsideAnySpecFolder_IsRead()
    {
        // A user who lists the specs (PgSpecIncludeSpecFiles=false) may keep them anywhere.
        GeneratorRunResult result = GeneratorHarness.RunInto(Namespace, [new InMemoryAdditionalText("/repos/MyApp/protocol/admin.pgspec", HelloSpec)]);

        Assert.True(result.Diagnostics.IsEmpty, GeneratorHarness.Describe(result.Diagnostics));
        Assert.Contains(result.GeneratedSources, source => source.HintName == "Hello.g.cs");
    }

    [Fact]
    public void SpecOfYourOwn_WithFlow_CompilesIntoPhaseTables()
    {
        string spec = """
            Hello (F) max 100 in Startup enters Normal
                Int32 length
                Int32(12345678) code

            Ping (F & B) max 100
                (F) in Normal, CopyIn  ignored-in CopyOut  extended  enters CopyOut from CopyIn
                (B) in Normal
                Byte1('!')
                Int32(4) length
            """;

        GeneratorRunResult result = GeneratorHarness.RunInto(Namespace, [GeneratorHarness.Spec("flow", spec)]);
        Assert.True(result.Diagnostics.IsEmpty, GeneratorHarness.Describe(result.Diagnostics));

        Compilation compilation = CompilationHarness.ConsumerWith(GeneratorHarness.Sources(result));
        var problems = CompilationHarness.Problems(compilation);
        Assert.True(problems.IsEmpty, CompilationHarness.Describe(problems));

        string frontend = GeneratorHarness.Sources(result).Single(pair => pair.Key == "FrontendMessages.g.cs").Value;
        Assert.Contains("case global::PgSpec.Protocol.PgSessionPhase.CopyIn: return global::PgSpec.Protocol.PgSessionPhase.CopyOut;", frontend, StringComparison.Ordinal);
        Assert.Contains("return phase is global::PgSpec.Protocol.PgSessionPhase.Normal or global::PgSpec.Protocol.PgSessionPhase.CopyIn or global::PgSpec.Protocol.PgSessionPhase.CopyOut;", frontend, StringComparison.Ordinal);
        Assert.Contains("public static bool IsExtendedQuery(FrontendMessageKind kind)", frontend, StringComparison.Ordinal);
        string backend = GeneratorHarness.Sources(result).Single(pair => pair.Key == "BackendMessages.g.cs").Value;
        Assert.DoesNotContain("IsExtendedQuery", backend, StringComparison.Ordinal);
    }

    private static void AssertNothing(GeneratorRunResult result)
    {
        Assert.Null(result.Exception);
        Assert.True(result.Diagnostics.IsEmpty, GeneratorHarness.Describe(result.Diagnostics));
        Assert.Empty(result.GeneratedSources);
    }
}
