using System.Text.RegularExpressions;

namespace PgSpec.Cli.Tests;

/// <summary>`pgspec --help`, `pgspec help [COMMAND]`, `pgspec -V`: short where it lists, whole where it explains.</summary>
public class HelpTests
{
    private static readonly string[] s_commands = ["decode", "conform", "proxy", "serve", "script", "capture", "replicate", "help"];

    /// <summary>A sentence of each command's long description, which only its own help shows.</summary>
    private static readonly (string Command, string Sentence)[] s_longDescriptions =
    [
        ("decode", "Which side: --from."),
        ("conform", "binaries come from PGSPEC_PG_BIN"),
        ("proxy", "Endpoints: HOST:PORT"),
        ("serve", "Server Compatibility Mode=NoTypeLoading"),
        ("script", "Scripts as tests: --expect FILE"),
        ("replicate", "Acknowledgement: a standby status update"),
    ];

    public static TheoryData<string, string> LongDescriptions()
    {
        var data = new TheoryData<string, string>();
        foreach ((string command, string sentence) in s_longDescriptions)
        {
            data.Add(command, sentence);
        }

        return data;
    }

    [Fact]
    public void RootHelp_ListsEveryCommandOnOneLine_IsShort()
    {
        CliResult result = CliRunner.Run("--help");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.True(result.Lines.Length < 30, $"{result.Lines.Length} lines:\n{result.Stdout}");
        string[] commands = result.Lines.SkipWhile(l => l != "Commands:").Skip(1).TakeWhile(l => l.Length > 0).ToArray();
        Assert.Equal(s_commands.Order(StringComparer.Ordinal), commands.Select(l => l.TrimStart().Split(' ')[0]).Order(StringComparer.Ordinal));
        foreach (string line in commands)
        {
            // A name and a summary: no wrapped continuation lines, one sentence (and an argument's default).
            Assert.Matches(@"^  [a-z]+( <[A-Z]+>)? +\S[^.]*\.( \[default: [^\]]*\])?$", line);
        }

        foreach ((string _, string sentence) in s_longDescriptions)
        {
            Assert.DoesNotContain(sentence, result.Stdout, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Help_WithoutCommand_PrintsTheRootHelp()
    {
        CliResult help = CliRunner.Run("help");

        Assert.True(help.ExitCode == 0, help.ToString());
        Assert.Equal(CliRunner.Run("--help").Stdout, help.Stdout);
    }

    [Theory]
    [MemberData(nameof(LongDescriptions))]
    public void Help_WithCommand_PrintsThatCommandsFullHelp(string command, string sentence)
    {
        CliResult help = CliRunner.Run("help", command);
        CliResult own = CliRunner.Run(command, "--help");

        Assert.True(help.ExitCode == 0, help.ToString());
        Assert.True(own.ExitCode == 0, own.ToString());
        Assert.Contains(sentence, own.Stdout, StringComparison.Ordinal);
        Assert.Contains("pgspec " + command, own.Stdout, StringComparison.Ordinal);
        Assert.Equal(own.Stdout, help.Stdout);
    }

    [Theory]
    [InlineData("-V")]
    [InlineData("--version")]
    public void Version_ShortOrLongOption_PrintsNameAndVersion(string option)
    {
        CliResult result = CliRunner.Run(option);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Matches(new Regex(@"^pgspec \d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?\n$"), result.Stdout);
    }

    [Theory]
    [InlineData("nosuch")]
    [InlineData("help", "nosuch")]
    [InlineData("help", "decode", "conform")]
    public void UnknownCommand_ExitsTwoAndSaysSo(params string[] args)
    {
        CliResult result = CliRunner.Run(args);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("pgspec: ", result.Stderr, StringComparison.Ordinal);
        Assert.Equal("", result.Stdout);
    }
}
