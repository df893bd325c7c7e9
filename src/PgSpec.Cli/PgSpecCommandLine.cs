using System.CommandLine;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using System.Text;

namespace PgSpec.Cli;

/// <summary>The <c>pgspec</c> command line, runnable in-process on any streams.</summary>
public static class PgSpecCommandLine
{
    /// <summary>Success.</summary>
    public const int ExitOk = 0;

    /// <summary>The input breaks the protocol or ends inside a message.</summary>
    public const int ExitMalformed = 1;

    /// <summary>A usage error, or an input that cannot be read.</summary>
    public const int ExitUsage = 2;

    /// <summary>
    /// An option's value for a command's validator: default when the option fails on its own (not a
    /// number, not one of its values), which is reported as such; reading it would throw instead.
    /// </summary>
    internal static T? ValueInValidator<T>(System.CommandLine.Parsing.CommandResult result, System.CommandLine.Option<T> option)
    {
        try
        {
            return result.GetValue(option);
        }
        catch (InvalidOperationException)
        {
            return default;
        }
    }

    /// <summary>
    /// Parses <paramref name="args"/> and runs the command. Binary input comes from
    /// <paramref name="stdin"/> (when the input is '-'), output goes to <paramref name="stdout"/>,
    /// errors and notes to <paramref name="stderr"/>. Never throws for bad input or arguments.
    /// </summary>
    public static int Run(string[] args, Stream stdin, Stream stdout, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(stdin);
        ArgumentNullException.ThrowIfNull(stdout);
        ArgumentNullException.ThrowIfNull(stderr);

        var output = new BufferedStream(stdout, 64 * 1024);
        var text = new StreamWriter(output, new UTF8Encoding(false), 4096, leaveOpen: true) { AutoFlush = true };
        try
        {
            RootCommand root = Build(stdin, output, stderr);
            ParseResult result = root.Parse(args);
            if (result.Errors.Count > 0 && result.Action is not CommandLineAction { ClearsParseErrors: true })
            {
                foreach (ParseError error in result.Errors)
                {
                    stderr.WriteLine("pgspec: " + error.Message);
                }

                stderr.WriteLine("Run 'pgspec --help' or 'pgspec <command> --help' for usage.");
                return ExitUsage;
            }

            return result.Invoke(new InvocationConfiguration { Output = text, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        finally
        {
            text.Flush();
            output.Flush();
        }
    }

    private static RootCommand Build(Stream stdin, Stream stdout, TextWriter stderr)
    {
        var root = new RootCommand("pgspec: tools for the PostgreSQL frontend/backend protocol (3.0 and 3.2), built from its spec.");
        root.Subcommands.Add(DecodeCommand.Create(stdin, stdout, stderr));
        root.Subcommands.Add(ConformCommand.Create(stdout, stderr));
        root.Subcommands.Add(ProxyCommand.Create(stdout, stderr));
        return root;
    }
}
