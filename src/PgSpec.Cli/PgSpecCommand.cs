using System.CommandLine;

namespace PgSpec.Cli;

/// <summary>
/// A command of <c>pgspec</c> with two texts: a one-line <see cref="Summary"/>, which the list of
/// commands in <c>pgspec --help</c> (and <c>pgspec help</c>) shows, and a long description, as
/// long as it needs to be, which the command's own help (<c>pgspec COMMAND --help</c>,
/// <c>pgspec help COMMAND</c>) shows.
/// </summary>
internal sealed class PgSpecCommand : Command
{
    /// <summary>A command named <paramref name="name"/>.</summary>
    /// <param name="name">The command's name.</param>
    /// <param name="summary">One sentence on one line, ending with a period.</param>
    /// <param name="description">The whole description: paragraphs, exit codes, examples.</param>
    public PgSpecCommand(string name, string summary, string description)
        : base(name, description)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(summary);
        if (summary.Contains('\n', StringComparison.Ordinal))
        {
            throw new ArgumentException("a summary is one line", nameof(summary));
        }

        Summary = summary;
    }

    /// <summary>The one line that lists the command.</summary>
    public string Summary { get; }
}
