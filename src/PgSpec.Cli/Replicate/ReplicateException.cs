namespace PgSpec.Cli.Replicate;

/// <summary>Why <c>pgspec replicate</c> stops with an error: the message for standard error and the exit code.</summary>
internal sealed class ReplicateException(int exitCode, string message, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>The exit code the command returns.</summary>
    public int ExitCode { get; } = exitCode;
}
