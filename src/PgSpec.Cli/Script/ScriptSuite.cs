using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using PgSpec.Client;
using PgSpec.Protocol;

namespace PgSpec.Cli.Script;

/// <summary>
/// <c>--suite DIR</c>: every DIR/tests/NAME.data against DIR/expected/NAME.data, as pgpool's
/// extended-query suite runs them, each in a database of its own when one can be created.
/// </summary>
internal static partial class ScriptSuite
{
    public static async Task<int> RunAsync(string directory, ScriptRun run, Stream stdout, TextWriter stderr, CancellationToken cancellationToken)
    {
        string tests = Path.Combine(directory, "tests");
        string[] scripts;
        try
        {
            scripts = [.. Directory.GetFiles(tests, "*.data").OrderBy(p => p, StringComparer.Ordinal)];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"pgspec script: cannot list {tests}: {e.Message}");
            return PgSpecCommandLine.ExitUsage;
        }

        if (scripts.Length == 0)
        {
            stderr.WriteLine($"pgspec script: no scripts (*.data) in {tests}");
            return PgSpecCommandLine.ExitUsage;
        }

        // One connection to create and drop the databases; if it cannot log in, no script can.
        PgFrontendSession admin;
        try
        {
            admin = await PgFrontendSession.ConnectAsync(run.Settings.Connect, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (PgException e)
        {
            ScriptOutcome refused = e switch
            {
                PgServerException server when server.SqlState.StartsWith("28", StringComparison.Ordinal) => new(PgSpecCommandLine.ExitAuthentication, "authentication failed: " + server.Fields.Message),
                PgServerException server => new(PgSpecCommandLine.ExitConnection, "the server refused the connection: " + server.Fields.Message),
                PgConnectionException { InnerException: TimeoutException } => new(PgSpecCommandLine.ExitTimeout, e.Message),
                PgConnectionException connection when connection.Message.Contains("password", StringComparison.Ordinal) => new(PgSpecCommandLine.ExitAuthentication, "authentication failed: " + connection.Message),
                PgConnectionException => new(PgSpecCommandLine.ExitConnection, e.Message),
                _ => new(PgSpecCommandLine.ExitServerViolation, "the server broke the protocol while connecting: " + e.Message),
            };
            return run.Report(refused);
        }

        var rows = new List<(string Name, string Result, string Note)>();
        var diffs = new StringBuilder();
        string? noDatabase = null;
        await using (admin.ConfigureAwait(false))
        {
            int index = 0;
            foreach (string script in scripts)
            {
                index++;
                string name = Path.GetFileNameWithoutExtension(script);
                string expectedPath = Path.Combine(directory, "expected", name + ".data");
                if (!ScriptCommand.TryRead(script, null, TextWriter.Null, out string? text))
                {
                    rows.Add((name, "error", "cannot read the script"));
                    continue;
                }

                if (!ScriptCommand.TryRead(expectedPath, null, TextWriter.Null, out string? expected))
                {
                    rows.Add((name, "error", $"no expected output ({Path.Combine("expected", name + ".data")})"));
                    continue;
                }

                IReadOnlyList<ScriptStep> steps;
                try
                {
                    steps = ScriptParser.Parse(text, script);
                }
                catch (ScriptParseException e)
                {
                    rows.Add((name, "error", "malformed script: " + e.Message));
                    continue;
                }

                string database = $"pgspec_script_{Environment.ProcessId.ToString(CultureInfo.InvariantCulture)}_{index.ToString(CultureInfo.InvariantCulture)}";
                bool created = false;
                if (noDatabase is null)
                {
                    try
                    {
                        await admin.QueryAsync($"CREATE DATABASE {database}", cancellationToken: cancellationToken).ConfigureAwait(false);
                        created = true;
                    }
                    catch (PgServerException e)
                    {
                        noDatabase = $"{e.SqlState} {e.Fields.Message}";
                    }
                }

                using var output = new MemoryStream();
                ScriptOutcome outcome;
                try
                {
                    outcome = await run.RunAsync(steps, script, output, cancellationToken, created ? database : null).ConfigureAwait(false);
                }
                finally
                {
                    if (created)
                    {
                        await DropAsync(admin, database, cancellationToken).ConfigureAwait(false);
                    }
                }

                string actual = Encoding.UTF8.GetString(output.ToArray());
                string? diff = LineDiff.Unified(LineDiff.Normalize(expected), LineDiff.Normalize(actual), Path.Combine("expected", name + ".data"), "output of " + Path.Combine("tests", name + ".data"));
                string? pgpool = PgpoolError(expected);
                if (diff is null)
                {
                    rows.Add((name, "pass", ""));
                }
                else if (pgpool is not null)
                {
                    rows.Add((name, "xfail", $"expects pgpool's own error ({pgpool}), which only a server behind pgpool sends"));
                }
                else
                {
                    rows.Add((name, "FAIL", outcome.Error ?? "the output differs"));
                    diffs.Append("=== ").Append(name).Append('\n').Append(diff);
                }
            }
        }

        var table = new StringBuilder();
        if (noDatabase is not null)
        {
            table.Append($"note: scripts ran in database {run.Settings.Connect.Database}: cannot create one ({noDatabase})\n");
        }

        int width = Math.Max(6, rows.Max(r => r.Name.Length)) + 2;
        table.Append("SCRIPT".PadRight(width)).Append("RESULT  NOTE\n");
        foreach ((string name, string result, string note) in rows)
        {
            table.Append(name.PadRight(width)).Append(note.Length == 0 ? result : result.PadRight(8) + note).Append('\n');
        }

        int passed = rows.Count(r => r.Result == "pass");
        int xfail = rows.Count(r => r.Result == "xfail");
        int failed = rows.Count - passed - xfail;
        table.Append($"{rows.Count} scripts: {passed} passed, {failed} failed, {xfail} expected to fail\n");
        stdout.Write(Encoding.UTF8.GetBytes(table.ToString()));
        if (diffs.Length > 0)
        {
            stdout.Write(Encoding.UTF8.GetBytes("\n" + diffs));
        }

        return failed == 0 ? PgSpecCommandLine.ExitOk : PgSpecCommandLine.ExitDifference;
    }

    /// <summary>The file of an ErrorResponse or NoticeResponse pgpool raised itself (F pool_*.c) in an expected output, if any.</summary>
    private static string? PgpoolError(string expected)
    {
        Match match = PgpoolFile().Match(expected);
        return match.Success ? "F " + match.Groups[1].Value : null;
    }

    [GeneratedRegex(@"^<= BE (?:Error|Notice)Response\(.* F (pool_[A-Za-z0-9_]+\.c) ", RegexOptions.Multiline | RegexOptions.CultureInvariant)]
    private static partial Regex PgpoolFile();

    private static async Task DropAsync(PgFrontendSession admin, string database, CancellationToken cancellationToken)
    {
        try
        {
            // WITH (FORCE) (PostgreSQL 13 and later) ends a session the script left behind.
            await admin.QueryAsync($"DROP DATABASE IF EXISTS {database} WITH (FORCE)", cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (PgServerException)
        {
            try
            {
                await admin.QueryAsync($"DROP DATABASE IF EXISTS {database}", cancellationToken: cancellationToken).ConfigureAwait(false);
            }
            catch (PgServerException)
            {
                // Left behind; its name says where it came from.
            }
        }
    }
}
