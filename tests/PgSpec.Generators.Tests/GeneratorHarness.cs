using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace PgSpec.Generators.Tests;

/// <summary>Runs <see cref="PgSpecGenerator"/> in memory and finds the repository's files.</summary>
internal static class GeneratorHarness
{
    private static readonly Lazy<string> s_repositoryRoot = new(FindRepositoryRoot);

    /// <summary>The folder holding PgSpec.sln.</summary>
    public static string RepositoryRoot => s_repositoryRoot.Value;

    public static string SpecDirectory => Path.Combine(RepositoryRoot, "spec");

    /// <summary>The protocol specs, as the build passes them: every spec/*.txt.</summary>
    public static ImmutableArray<AdditionalText> LoadRealSpecs()
    {
        string[] paths = Directory.GetFiles(SpecDirectory, "*.txt");
        Array.Sort(paths, StringComparer.Ordinal);
        Assert.NotEmpty(paths);
        return paths
            .Select(path => (AdditionalText)new InMemoryAdditionalText(path, File.ReadAllText(path)))
            .ToImmutableArray();
    }

    /// <summary>An in-memory spec file named like the build names them (a .txt under a spec folder), marked as a spec.</summary>
    public static AdditionalText Spec(string name, string text)
        => new InMemoryAdditionalText("memory/spec/" + name + ".txt", text);

    /// <summary>An additional file the build does not mark as a spec (BannedSymbols.txt, PublicAPI.Shipped.txt...).</summary>
    public static AdditionalText OtherFile(string path, string text)
        => new InMemoryAdditionalText(path, text, pgSpecFile: false);

    /// <summary>A compilation with nothing in it: no PgSpec.Protocol, in source or referenced.</summary>
    public static CSharpCompilation EmptyCompilation()
        => CSharpCompilation.Create(
            "PgSpec.Generators.Tests.Input",
            options: new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary));

    /// <summary>
    /// PgSpec.Protocol's own build, as the generator tells it apart: PgSpec.Protocol.PgLimits is
    /// declared in source (the runtime's real sources are compiled by <see cref="CompilationHarness"/>).
    /// </summary>
    public static CSharpCompilation ProtocolCompilation()
        => EmptyCompilation().AddSyntaxTrees(CSharpSyntaxTree.ParseText("namespace PgSpec.Protocol { internal sealed class PgLimits { } }"));

    /// <summary>A user's project: PgSpec.Protocol is a referenced assembly, as README says.</summary>
    public static CSharpCompilation ConsumerCompilation()
        => EmptyCompilation().AddReferences(CompilationHarness.RuntimeAssembly);

    /// <summary>The protocol's own namespace, as PgSpec.Protocol's build sets PgSpecNamespace.</summary>
    public const string ProtocolNamespace = "PgSpec.Protocol";

    /// <summary>A driver that generates into <paramref name="ns"/> (the PgSpecNamespace build property; null: none set).</summary>
    public static GeneratorDriver CreateDriver(IEnumerable<AdditionalText> texts, bool trackSteps = false, string? ns = ProtocolNamespace, string? rootNamespace = null)
        => CSharpGeneratorDriver.Create(
            [new PgSpecGenerator().AsSourceGenerator()],
            additionalTexts: texts,
            optionsProvider: new BuildProperties(new Dictionary<string, string?>
            {
                ["build_property.PgSpecNamespace"] = ns,
                ["build_property.RootNamespace"] = rootNamespace,
            }),
            driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: trackSteps));

    /// <summary>Runs a fresh driver once over the given files.</summary>
    public static GeneratorRunResult Run(IEnumerable<AdditionalText> texts) => RunInto(ProtocolNamespace, texts);

    /// <summary>
    /// Runs a fresh driver once over the given files, generating into <paramref name="ns"/>: as
    /// PgSpec.Protocol's own build for its namespace, else as a user's project referencing
    /// PgSpec.Protocol (or without it when <paramref name="withoutRuntime"/>).
    /// </summary>
    public static GeneratorRunResult RunInto(string? ns, IEnumerable<AdditionalText> texts, string? rootNamespace = null, bool withoutRuntime = false)
        => RunAgainst(withoutRuntime ? EmptyCompilation() : ns == ProtocolNamespace ? ProtocolCompilation() : ConsumerCompilation(), ns, texts, rootNamespace);

    /// <summary>Runs a fresh driver once over the given files and compilation, generating into <paramref name="ns"/>.</summary>
    public static GeneratorRunResult RunAgainst(CSharpCompilation compilation, string? ns, IEnumerable<AdditionalText> texts, string? rootNamespace = null)
    {
        GeneratorDriver driver = CreateDriver(texts, ns: ns, rootNamespace: rootNamespace).RunGenerators(compilation);
        GeneratorDriverRunResult result = driver.GetRunResult();
        return Assert.Single(result.Results);
    }

    /// <summary>
    /// Build properties as MSBuild passes them to analyzers (build_property.NAME), and the item
    /// metadata of additional files (build_metadata.AdditionalFiles.NAME): PgSpecFile, which the
    /// build sets on spec files.
    /// </summary>
    private sealed class BuildProperties(IReadOnlyDictionary<string, string?> values) : Microsoft.CodeAnalysis.Diagnostics.AnalyzerConfigOptionsProvider
    {
        private readonly Options _options = new(values);

        private readonly Options _specFile = new(new Dictionary<string, string?> { ["build_metadata.AdditionalFiles.PgSpecFile"] = "true" });

        private readonly Options _none = new(new Dictionary<string, string?>());

        public override Microsoft.CodeAnalysis.Diagnostics.AnalyzerConfigOptions GlobalOptions => _options;

        public override Microsoft.CodeAnalysis.Diagnostics.AnalyzerConfigOptions GetOptions(SyntaxTree tree) => _none;

        public override Microsoft.CodeAnalysis.Diagnostics.AnalyzerConfigOptions GetOptions(AdditionalText textFile)
            => textFile is InMemoryAdditionalText { PgSpecFile: true } ? _specFile : _none;

        private sealed class Options(IReadOnlyDictionary<string, string?> values) : Microsoft.CodeAnalysis.Diagnostics.AnalyzerConfigOptions
        {
            public override bool TryGetValue(string key, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out string? value)
                => values.TryGetValue(key, out value) && value is not null;
        }
    }

    public static GeneratorRunResult Run(params AdditionalText[] texts) => Run((IEnumerable<AdditionalText>)texts);

    /// <summary>The generated files as hint name and text, in the order the generator added them; line ends normalized to '\n'.</summary>
    public static ImmutableArray<KeyValuePair<string, string>> Sources(GeneratorRunResult result)
        => result.GeneratedSources
            .Select(source => KeyValuePair.Create(source.HintName, Normalize(source.SourceText.ToString())))
            .ToImmutableArray();

    public static string Normalize(string text) => text.Replace("\r\n", "\n", StringComparison.Ordinal);

    /// <summary>One line per diagnostic: id, severity, file, line and message.</summary>
    public static string Describe(IEnumerable<Diagnostic> diagnostics)
        => string.Join(
            Environment.NewLine,
            diagnostics.Select(d => d.Id + " " + d.Severity + " " + d.Location.GetLineSpan().Path + ":" + (d.Location.GetLineSpan().StartLinePosition.Line + 1) + " " + d.GetMessage(System.Globalization.CultureInfo.InvariantCulture)));

    private static string FindRepositoryRoot()
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
