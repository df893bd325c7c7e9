using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using System.Reflection;
using System.Text;

namespace PgSpec.Cli;

/// <summary>The <c>pgspec</c> command line, runnable in-process on any streams.</summary>
public static class PgSpecCommandLine
{
    /// <summary>Success.</summary>
    public const int ExitOk = 0;

    /// <summary><c>pgspec decode</c>: the input breaks the protocol or ends inside a message; <c>pgspec conform</c>: PgSpec's codec or session failed.</summary>
    public const int ExitMalformed = 1;

    /// <summary>A usage error, or an input that cannot be read.</summary>
    public const int ExitUsage = 2;

    /// <summary><c>pgspec conform</c>: a server given with --server broke the protocol, and PgSpec did not fail; <c>pgspec script</c>: the server broke the protocol.</summary>
    public const int ExitServerViolation = 3;

    /// <summary><c>pgspec script</c>: the output differs from --expect, or a --suite script failed.</summary>
    public const int ExitDifference = 1;

    /// <summary><c>pgspec script</c>: the script is malformed; nothing was sent.</summary>
    public const int ExitScriptError = 4;

    /// <summary><c>pgspec script</c>: the server cannot be reached, refused the connection, or the connection ended.</summary>
    public const int ExitConnection = 5;

    /// <summary><c>pgspec script</c>: authentication failed.</summary>
    public const int ExitAuthentication = 6;

    /// <summary><c>pgspec script</c>: the server did not answer within --timeout.</summary>
    public const int ExitTimeout = 7;

    /// <summary>The version, as <c>pgspec --version</c> prints it after the name (without build metadata).</summary>
    public static string Version
    {
        get
        {
            Assembly assembly = typeof(PgSpecCommandLine).Assembly;
            string version = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
                ?? assembly.GetName().Version?.ToString(3)
                ?? "0.0.0";
            int metadata = version.IndexOf('+', StringComparison.Ordinal);
            return metadata < 0 ? version : version[..metadata];
        }
    }

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
    /// An option's value for the option's own validator: false when the value could not be converted
    /// (not a number, say), which System.CommandLine reports itself; reading it would throw instead.
    /// </summary>
    internal static bool TryValueInValidator<T>(OptionResult result, out T? value)
    {
        try
        {
            value = result.GetValueOrDefault<T>();
            return true;
        }
        catch (InvalidOperationException)
        {
            value = default;
            return false;
        }
    }

    /// <summary>
    /// Parses <paramref name="args"/> and runs the command. Binary input comes from
    /// <paramref name="stdin"/> (when the input is '-'), output goes to <paramref name="stdout"/>,
    /// errors and notes to <paramref name="stderr"/>. Never throws for bad input or arguments.
    /// </summary>
    public static int Run(string[] args, Stream stdin, Stream stdout, TextWriter stderr)
        => Run(args, stdin, stdout, stderr, CancellationToken.None);

    /// <summary>
    /// As <see cref="Run(string[], Stream, Stream, TextWriter)"/>; a long-running command (replicate)
    /// stops cleanly when <paramref name="stop"/> is cancelled, instead of on SIGINT/SIGTERM.
    /// </summary>
    internal static int Run(string[] args, Stream stdin, Stream stdout, TextWriter stderr, CancellationToken stop)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(stdin);
        ArgumentNullException.ThrowIfNull(stdout);
        ArgumentNullException.ThrowIfNull(stderr);

        var output = new BufferedStream(stdout, 64 * 1024);
        var text = new StreamWriter(output, new UTF8Encoding(false), 4096, leaveOpen: true) { AutoFlush = true };
        try
        {
            RootCommand root = Build(stdin, output, stdout, stderr, stop);
            ParseResult result = root.Parse(args);
            if (result.Errors.Count > 0 && result.Action is not CommandLineAction { ClearsParseErrors: true })
            {
                foreach (ParseError error in result.Errors)
                {
                    stderr.WriteLine("pgspec: " + error.Message);
                }

                stderr.WriteLine("Run 'pgspec help' or 'pgspec help COMMAND' for usage.");
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

    private static RootCommand Build(Stream stdin, Stream stdout, Stream unbufferedStdout, TextWriter stderr, CancellationToken stop)
    {
        var root = new RootCommand("""
            pgspec: tools for the PostgreSQL frontend/backend protocol (3.0 and 3.2), built from its spec.
            'pgspec help COMMAND' shows a command's options, exit codes and examples.
            """);
        root.Subcommands.Add(DecodeCommand.Create(stdin, stdout, stderr));
        root.Subcommands.Add(ConformCommand.Create(stdout, stderr));
        // The proxy's trace has a writer thread of its own, which may be stuck on a pipe nobody
        // reads: it writes to standard output directly, never through the buffer the rest shares.
        root.Subcommands.Add(ProxyCommand.Create(unbufferedStdout, stderr));
        root.Subcommands.Add(ServeCommand.Create(unbufferedStdout, stderr));
        root.Subcommands.Add(ScriptCommand.Create(stdin, stdout, stderr));
        root.Subcommands.Add(CaptureCommand.Create(stdout, stderr));
        root.Subcommands.Add(ReplicateCommand.Create(unbufferedStdout, stderr, stop));
        root.Subcommands.Add(HelpCommand(root));

        HelpOption help = root.Options.OfType<HelpOption>().Single();
        help.Action = new SummaryHelpAction((HelpAction)help.Action!);
        VersionOption version = root.Options.OfType<VersionOption>().Single();
        version.Aliases.Add("-V");
        version.Action = new VersionAction();
        return root;
    }

    /// <summary><c>pgspec help [COMMAND]</c>: the same as <c>pgspec [COMMAND] --help</c>.</summary>
    private static PgSpecCommand HelpCommand(RootCommand root)
    {
        string[] names = root.Subcommands.Select(c => c.Name).Append("help").ToArray();
        var target = new Argument<string?>("COMMAND")
        {
            Description = "The command to explain: " + string.Join(", ", names) + ".",
            HelpName = "COMMAND",
            Arity = ArgumentArity.ZeroOrOne,
        };
        target.AcceptOnlyFromAmong(names);
        var command = new PgSpecCommand(
            "help",
            "Show the list of commands, or the whole help of one command.",
            "Shows the list of commands with a line on each (as pgspec --help does), or, given a command, its whole help: what it does, its options, exit codes and examples (as pgspec COMMAND --help does).")
        {
            target,
        };
        command.SetAction(result =>
        {
            string? name = result.GetValue(target);
            return root.Parse(name is null ? ["--help"] : [name, "--help"]).Invoke(result.InvocationConfiguration);
        });
        return command;
    }

    /// <summary>
    /// The summary of a command in a list of commands: its <see cref="PgSpecCommand.Summary"/>, or,
    /// for a command without one, the first sentence of its description on one line.
    /// </summary>
    internal static string Summary(Command command)
    {
        if (command is PgSpecCommand { Summary: var summary })
        {
            return summary;
        }

        string description = (command.Description ?? "").ReplaceLineEndings("\n");
        int paragraph = description.IndexOf("\n\n", StringComparison.Ordinal);
        string first = string.Join(' ', (paragraph < 0 ? description : description[..paragraph]).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
        int sentence = first.IndexOf(". ", StringComparison.Ordinal);
        return sentence < 0 ? first : first[..(sentence + 1)];
    }

    /// <summary>
    /// Help as System.CommandLine writes it, except that the list of a command's subcommands shows
    /// each one's <see cref="Summary(Command)"/> rather than its whole description.
    /// </summary>
    private sealed class SummaryHelpAction(HelpAction help) : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            // The help writer lists a subcommand with its Description, so for as long as it writes, that is the summary.
            IList<Command> subcommands = parseResult.CommandResult.Command.Subcommands;
            string?[] descriptions = subcommands.Select(c => c.Description).ToArray();
            try
            {
                foreach (Command subcommand in subcommands)
                {
                    subcommand.Description = Summary(subcommand);
                }

                return help.Invoke(parseResult);
            }
            finally
            {
                for (int i = 0; i < descriptions.Length; i++)
                {
                    subcommands[i].Description = descriptions[i];
                }
            }
        }
    }

    /// <summary>Prints "pgspec VERSION".</summary>
    private sealed class VersionAction : SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            parseResult.InvocationConfiguration.Output.WriteLine("pgspec " + Version);
            return ExitOk;
        }
    }
}
