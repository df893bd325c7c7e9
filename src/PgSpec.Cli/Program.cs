namespace PgSpec.Cli;

/// <summary>The process entry point of the <c>pgspec</c> tool.</summary>
public static class Program
{
    /// <summary>Runs the tool on the process's standard streams.</summary>
    public static int Main(string[] args)
    {
        using Stream stdin = Console.OpenStandardInput();
        using Stream stdout = Console.OpenStandardOutput();
        return PgSpecCommandLine.Run(args, stdin, stdout, Console.Error);
    }
}
