using System.Globalization;
using System.Text;
using PgSpec.Client;
using PgSpec.Protocol;

namespace PgSpec.Cli.Replicate;

/// <summary>
/// The replication connection of <c>pgspec replicate</c>: connecting (with the password prompt of
/// PostgreSQL's tools), the server's version, and the replication commands and catalogue queries
/// it runs before streaming, each with its failure as a <see cref="ReplicateException"/>.
/// </summary>
internal static class ReplicationConnection
{
    /// <summary>
    /// Connects with <c>replication=database</c> (logical) or <c>replication=true</c> (physical).
    /// A password is asked for on the terminal with -W, or when the server wants one and none was
    /// given (unless -w or standard input is not a terminal).
    /// </summary>
    public static async Task<PgFrontendSession> ConnectAsync(ReplicateSettings settings, TextWriter stderr, CancellationToken stop)
    {
        PgConnectOptions options = settings.Connect with
        {
            Parameters = [.. settings.Connect.Parameters, new("replication", settings.Physical ? "true" : "database")],
        };
        if (settings.PromptPassword && options.Password is null)
        {
            options = options with { Password = AskPassword(stderr) };
        }

        try
        {
            return await PgFrontendSession.ConnectAsync(options, cancellationToken: stop).ConfigureAwait(false);
        }
        catch (PgConnectionException e) when (NeedsPassword(e) && options.Password is null && !settings.NeverPrompt && !Console.IsInputRedirected)
        {
            options = options with { Password = AskPassword(stderr) };
        }

        return await PgFrontendSession.ConnectAsync(options, cancellationToken: stop).ConfigureAwait(false);
    }

    private static bool NeedsPassword(PgConnectionException e) => e.Message.Contains("asks for a password", StringComparison.Ordinal);

    /// <summary>Reads a password from the terminal without echoing it.</summary>
    private static string AskPassword(TextWriter stderr)
    {
        if (Console.IsInputRedirected)
        {
            throw new ReplicateException(PgSpecCommandLine.ExitAuthentication, "cannot ask for a password: standard input is not a terminal (give PGPASSWORD, or a password in -d's connection string)");
        }

        stderr.Write("Password: ");
        stderr.Flush();
        var password = new StringBuilder();
        while (true)
        {
            ConsoleKeyInfo key = Console.ReadKey(intercept: true);
            if (key.Key == ConsoleKey.Enter)
            {
                break;
            }

            if (key.Key == ConsoleKey.Backspace)
            {
                if (password.Length > 0)
                {
                    password.Length--;
                }

                continue;
            }

            if (!char.IsControl(key.KeyChar))
            {
                password.Append(key.KeyChar);
            }
        }

        stderr.WriteLine();
        return password.ToString();
    }

    /// <summary>The server's major version, from its server_version parameter ("15.10 (Debian ...)", "18.0").</summary>
    public static int ServerMajor(PgFrontendSession session)
    {
        if (!session.Parameters.TryGetValue("server_version", out string? version))
        {
            throw new ReplicateException(PgSpecCommandLine.ExitServerViolation, "the server did not report server_version (ParameterStatus), so its version is unknown");
        }

        int digits = 0;
        while (digits < version.Length && char.IsAsciiDigit(version[digits]))
        {
            digits++;
        }

        if (digits == 0 || !int.TryParse(version.AsSpan(0, digits), NumberStyles.None, CultureInfo.InvariantCulture, out int major))
        {
            throw new ReplicateException(PgSpecCommandLine.ExitServerViolation, $"the server's version '{version}' (server_version) is not a version number");
        }

        return major;
    }

    /// <summary>Runs a command or query; a server error becomes a <see cref="ReplicateException"/> (exit 1) saying what was run.</summary>
    public static async Task<IReadOnlyList<PgResult>> RunAsync(PgFrontendSession session, string what, string sql, CancellationToken stop)
    {
        try
        {
            return await session.QueryAsync(sql, cancellationToken: stop).ConfigureAwait(false);
        }
        catch (PgServerException e)
        {
            throw new ReplicateException(ReplicateCommand.ExitServerError, $"{what}: {Describe(e)}", e);
        }
    }

    /// <summary>How long the end of a stream (CopyDone both ways) may take once the last status update has gone.</summary>
    private static readonly TimeSpan s_endBound = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Ends the copy-both exchange (CopyDone, then what the server still sends up to ReadyForQuery,
    /// dropped). The last status update has gone before: a server that takes long (in the middle of a
    /// large transaction) is left after a few seconds. Returns a note for the summary, empty when all went well.
    /// </summary>
    public static async Task<string> EndStreamAsync(PgFrontendSession session)
    {
        using var bound = new CancellationTokenSource(s_endBound);
        try
        {
            await session.EndCopyBothAsync(bound.Token).ConfigureAwait(false);
            return "";
        }
        catch (OperationCanceledException) when (bound.IsCancellationRequested)
        {
            return $"; the server did not end the stream within {s_endBound.TotalSeconds:0} s of CopyDone, so the connection was closed";
        }
        catch (Exception e) when (e is PgConnectionException or PgProtocolException or PgServerException)
        {
            return $"; the server did not end the stream cleanly ({e.Message})";
        }
    }

    /// <summary>A server error in a line or three: severity, SQLSTATE, message, detail, hint.</summary>
    public static string Describe(PgServerException e)
    {
        PgErrorFields fields = e.Fields;
        var text = new StringBuilder();
        text.Append(fields.Message).Append(" (").Append(fields.Severity).Append(' ').Append(fields.SqlState).Append(')');
        if (fields.Detail is { } detail)
        {
            text.Append("\n  DETAIL: ").Append(detail);
        }

        if (fields.Hint is { } hint)
        {
            text.Append("\n  HINT: ").Append(hint);
        }

        return text.ToString();
    }

    /// <summary>A string literal for SQL and replication commands, whatever standard_conforming_strings says.</summary>
    public static string Literal(string value)
        => value.Contains('\\', StringComparison.Ordinal)
            ? "E'" + value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("'", "''", StringComparison.Ordinal) + "'"
            : "'" + value.Replace("'", "''", StringComparison.Ordinal) + "'";

    /// <summary>An identifier, quoted when it is not a plain lower-case one.</summary>
    public static string Identifier(string name)
    {
        bool plain = name.Length > 0 && (char.IsAsciiLetterLower(name[0]) || name[0] == '_')
            && name.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '_' or '$');
        return plain ? name : "\"" + name.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
    }

    /// <summary>Whether <paramref name="name"/> is a valid replication slot name (lower-case letters, digits, underscores; at most 63).</summary>
    public static bool IsSlotName(string name)
        => name.Length is > 0 and <= 63 && name.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '_');

    /// <summary>The text of a row's column, or null.</summary>
    public static string? Text(PgResult result, int row, int column) => result.Text(row, column);
}
