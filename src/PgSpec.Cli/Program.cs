namespace PgSpec.Cli;

/// <summary>The process entry point of the <c>pgspec</c> tool.</summary>
public static class Program
{
    /// <summary>Runs the tool on the process's standard streams.</summary>
    public static int Main(string[] args)
    {
        try
        {
            using Stream stdin = Console.OpenStandardInput();
            using Stream stdout = OperatingSystem.IsWindows() ? Console.OpenStandardOutput() : new StandardOutputStream();
            return PgSpecCommandLine.Run(args, stdin, stdout, Console.Error);
        }
        catch (Exception e) when (StandardOutputStream.IsBrokenPipe(e))
        {
            // The reader of standard output has gone (`pgspec decode ... | head`): stop quietly, as
            // a program killed by SIGPIPE does.
            return StandardOutputStream.BrokenPipeExitCode;
        }
    }
}
