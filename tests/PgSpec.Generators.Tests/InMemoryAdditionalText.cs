using System.Text;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

namespace PgSpec.Generators.Tests;

/// <summary>
/// An additional file that lives in memory, as the compiler would hand a spec to the generator:
/// marked as a spec (item metadata PgSpecFile="true") unless <paramref name="pgSpecFile"/> is false.
/// </summary>
internal sealed class InMemoryAdditionalText(string path, string text, bool pgSpecFile = true) : AdditionalText
{
    private readonly SourceText _text = SourceText.From(text, Encoding.UTF8);

    public override string Path { get; } = path;

    /// <summary>Whether the build marks the file as a spec (PgSpecFile="true", build_metadata.AdditionalFiles.PgSpecFile).</summary>
    public bool PgSpecFile { get; } = pgSpecFile;

    public override SourceText GetText(CancellationToken cancellationToken = default) => _text;

    public override string ToString() => Path;
}
