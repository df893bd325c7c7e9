using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Text;

namespace PgSpec.Generators.Tests;

/// <summary>
/// Compiles generated code together with the hand-written runtime of PgSpec.Protocol, read from
/// disk, the way the PgSpec.Protocol project compiles it (nullable on, warnings are errors, XML
/// documentation checked).
/// </summary>
internal static class CompilationHarness
{
    // The SDK's implicit usings for Microsoft.NET.Sdk, which the runtime sources rely on.
    private const string ImplicitUsings = """
        global using global::System;
        global using global::System.Collections.Generic;
        global using global::System.IO;
        global using global::System.Linq;
        global using global::System.Net.Http;
        global using global::System.Threading;
        global using global::System.Threading.Tasks;
        """;

    public const string GeneratedFolder = "generated/";

    public static readonly CSharpParseOptions ParseOptions = new(LanguageVersion.Preview, DocumentationMode.Diagnose);

    private static readonly Lazy<CSharpCompilation> s_runtime = new(CreateRuntimeCompilation);

    /// <summary>The runtime sources and the platform references, parsed once and shared.</summary>
    public static CSharpCompilation Runtime => s_runtime.Value;

    public static string RuntimeDirectory => Path.Combine(GeneratorHarness.RepositoryRoot, "src", "PgSpec.Protocol");

    public static CSharpCompilation WithGenerated(IEnumerable<KeyValuePair<string, string>> sources)
        => Runtime.AddSyntaxTrees(sources.Select(source => Parse(source.Value, GeneratedFolder + source.Key)));

    /// <summary>Errors, and warnings (which the project treats as errors).</summary>
    public static ImmutableArray<Diagnostic> Problems(Compilation compilation)
        => compilation.GetDiagnostics()
            .Where(diagnostic => diagnostic.Severity >= DiagnosticSeverity.Warning)
            .ToImmutableArray();

    /// <summary>
    /// Errors and warnings in the generated files only: for specs other than the real ones, the
    /// runtime may miss messages it names, which is no fault of the generator.
    /// </summary>
    public static ImmutableArray<Diagnostic> ProblemsInGenerated(Compilation compilation)
        => Problems(compilation)
            .Where(diagnostic => diagnostic.Location.GetLineSpan().Path.StartsWith(GeneratedFolder, StringComparison.Ordinal))
            .ToImmutableArray();

    /// <summary>Errors and warnings in the named generated files only, binding no more than they need.</summary>
    public static ImmutableArray<Diagnostic> ProblemsInGenerated(Compilation compilation, IEnumerable<string> hintNames)
    {
        var paths = hintNames.Select(hintName => GeneratedFolder + hintName).ToHashSet(StringComparer.Ordinal);
        return compilation.SyntaxTrees
            .Where(tree => paths.Contains(tree.FilePath))
            .SelectMany(tree => compilation.GetSemanticModel(tree).GetDiagnostics())
            .Where(diagnostic => diagnostic.Severity >= DiagnosticSeverity.Warning)
            .ToImmutableArray();
    }

    public static string Describe(IEnumerable<Diagnostic> diagnostics, int max = 20)
    {
        Diagnostic[] all = diagnostics.ToArray();
        IEnumerable<string> lines = all.Take(max).Select(diagnostic => diagnostic.ToString());
        if (all.Length > max)
        {
            lines = lines.Append($"... and {all.Length - max} more");
        }

        return string.Join(Environment.NewLine, lines);
    }

    private static SyntaxTree Parse(string text, string path)
        => CSharpSyntaxTree.ParseText(SourceText.From(text, System.Text.Encoding.UTF8), ParseOptions, path);

    private static readonly Lazy<MetadataReference> s_runtimeAssembly = new(CreateRuntimeAssembly);

    /// <summary>PgSpec.Protocol built from its sources and the real specs, as a reference for code of another assembly.</summary>
    public static MetadataReference RuntimeAssembly => s_runtimeAssembly.Value;

    /// <summary>A user's own assembly: <paramref name="sources"/> (generated into its namespace) against the built runtime.</summary>
    public static CSharpCompilation ConsumerWith(IEnumerable<KeyValuePair<string, string>> sources)
        => CSharpCompilation.Create(
            "Consumer",
            sources.Select(source => Parse(source.Value, GeneratedFolder + source.Key)).Append(Parse(ImplicitUsings, "ImplicitUsings.cs")),
            Runtime.References.Append(RuntimeAssembly),
            Runtime.Options);

    private static MetadataReference CreateRuntimeAssembly()
    {
        GeneratorRunResult result = GeneratorHarness.Run(GeneratorHarness.LoadRealSpecs());
        CSharpCompilation runtime = WithGenerated(GeneratorHarness.Sources(result));
        using var image = new MemoryStream();
        Microsoft.CodeAnalysis.Emit.EmitResult emitted = runtime.Emit(image);
        Assert.True(emitted.Success, Describe(emitted.Diagnostics));
        return MetadataReference.CreateFromImage(image.ToArray());
    }

    private static CSharpCompilation CreateRuntimeCompilation()
    {
        string root = RuntimeDirectory;
        string[] files = Directory.EnumerateFiles(root, "*.cs", SearchOption.AllDirectories)
            .Where(path => !IsBuildOutput(Path.GetRelativePath(root, path)))
            .Order(StringComparer.Ordinal)
            .ToArray();
        Assert.True(files.Length > 5, "expected the runtime sources under " + root + ", found " + files.Length);

        var trees = files
            .Select(path => Parse(File.ReadAllText(path), Path.GetRelativePath(root, path)))
            .Append(Parse(ImplicitUsings, "ImplicitUsings.cs"));

        string platform = (string?)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")
            ?? throw new InvalidOperationException("The host lists no trusted platform assemblies.");
        MetadataReference[] references = platform
            .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Where(IsPlatformAssembly)
            .Select(path => (MetadataReference)MetadataReference.CreateFromFile(path))
            .ToArray();

        return CSharpCompilation.Create(
            "PgSpec.Protocol",
            trees,
            references,
            new CSharpCompilationOptions(
                OutputKind.DynamicallyLinkedLibrary,
                nullableContextOptions: NullableContextOptions.Enable,
                generalDiagnosticOption: ReportDiagnostic.Error,
                deterministic: true));
    }

    private static bool IsBuildOutput(string relativePath)
    {
        string[] parts = relativePath.Split(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
        return parts.Any(part => part.Equals("obj", StringComparison.OrdinalIgnoreCase) || part.Equals("bin", StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>The framework's assemblies; not the test's own dependencies (Roslyn, xunit, the generator).</summary>
    private static bool IsPlatformAssembly(string path)
    {
        string name = Path.GetFileNameWithoutExtension(path);
        return name == "netstandard" || name == "mscorlib"
            || name.StartsWith("System", StringComparison.Ordinal)
            || name.StartsWith("Microsoft.Win32", StringComparison.Ordinal)
            || name == "Microsoft.VisualBasic" || name == "Microsoft.CSharp";
    }
}
