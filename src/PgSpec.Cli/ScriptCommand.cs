using System.CommandLine;
using System.CommandLine.Help;
using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using PgSpec.Cli.Script;
using PgSpec.Client;
using PgSpec.Protocol;

namespace PgSpec.Cli;

/// <summary><c>pgspec script</c>: pgproto's scripted protocol tester, with pgproto's gaps closed and scripts as tests.</summary>
internal static class ScriptCommand
{
    private const string Summary = "Run a pgproto script: send its messages, print every message sent and received.";

    private const string Description = """
        Runs a script of protocol messages against a server, as pgpool's pgproto does, with the same
        script format, options, environment variables and output (byte for byte): 'FE=> ...' for
        each message sent, '<= BE ...' for each message received. The whole script is read and
        checked before anything is sent (a script may be up to 64 MiB).

        Script: one message per line, its kind in single quotes, then its fields, each after a TAB:
        "strings" (\n is a newline, a backslash takes the next character as it is, and a line that
        ends with a backslash goes on on the next), 'c' characters, integers. Empty lines and lines
        starting with # are skipped.
          'Q' "sql"                                  Query
          'P' "stmt" "sql" [N OID...]                Parse, with N parameter type OIDs
          'B' "portal" "stmt" N FMT... N (LEN ["v"])... N FMT...
                                                     Bind: parameter formats, parameters (LEN -1 is
                                                     NULL; a binary integer of LEN 2, 4 or 8 is sent
                                                     big-endian, "0x..." as hex bytes), result formats
          'E' "portal" [MAXROWS]                     Execute
          'D' 'S'|'P' "name"    'C' 'S'|'P' "name"   Describe, Close
          'S' Sync  'H' Flush  'X' Terminate  'c' CopyDone
          'd' "data"  'f' "message"                  CopyData, CopyFail
          'F' OID N FMT... N (LEN ["v"])... FMT      FunctionCall
          '!' "hex bytes"                            raw bytes, sent as they are (malformed messages)
          'Y'   read until ReadyForQuery (at most --timeout seconds for each message)
          'y'   read until ReadyForQuery, or until the server is silent for 1 second
          'z'   read one message, if one comes within 1 second

        Connecting: -h HOST (a path starting with / is a Unix socket directory; none: the socket
        in /var/run/postgresql or /tmp), -p PORT, -u USER, -d DATABASE, or PGHOST, PGPORT, PGUSER,
        PGDATABASE; the password from PGPASSWORD (cleartext, MD5 or SCRAM, as the server asks);
        TLS with --sslmode (or PGSSLMODE; prefer by default, never over Unix sockets); --protocol
        3.2 asks for protocol 3.2. As in pgproto, -h is the host: help is -? or --help.

        Differences from pgproto: the lines go to standard output (pgproto writes them to standard
        error), and the notes of pgspec to standard error; FunctionCall prints
        'FE=> FunctionCall(oid=N)' (pgproto prints an empty line); Parse with OIDs prints them and
        closes its parenthesis (pgproto sends 0 for each); no Terminate is sent unless the script
        says 'X'. The output is
        that of the current pgproto (pgpool 4.4 and later): pgpool2 4.3.5's prints ParameterStatus
        without its name and value, and sends "\n" as 'n'. -r is pgproto's nap after each
        message read, in microseconds; --timeout bounds every wait.

        Scripts as tests: --expect FILE compares the output with FILE after pgpool's normalization
        (sed 's/L [0-9]*/L xxx/g' on both: source line numbers in errors), and prints a unified diff
        when they differ. --suite DIR runs every DIR/tests/NAME.data against DIR/expected/NAME.data,
        each in a database created for it (and dropped after) when the user may create one, and
        prints a table and a summary line; a script that expects an error of pgpool's own (F
        pool_*.c) is an expected failure against a server without pgpool, reported as such.

        Output: --format pgproto (the default), trace (libpq's PQtrace lines; --regress for its
        regress mode) or json (one object per message and line).

        Exit codes: 0 the script ran (and matched --expect, or every --suite script passed or
        failed as expected); 1 the output differs from --expect, or a --suite script failed;
        2 a usage error, or a script or expected file that cannot be read; 3 the server broke the
        protocol; 4 the script is malformed (file:line:column on standard error; nothing was sent);
        5 the server cannot be reached, or the connection ended; 6 authentication failed; 7 the
        server did not answer within --timeout (while connecting, or for 'Y').

        Examples:
          pgspec script -d test -f tests/sql-error.data
          pgspec script -h /var/run/postgresql -d test -f flush.data --expect expected/flush.data
          pgspec script -h db.example.com --sslmode require --protocol 3.2 -f session.data
          pgspec script -d postgres --suite /repos/pgpool2/src/test/extended-query-test
        """;

    public static Command Create(Stream stdin, Stream stdout, TextWriter stderr)
    {
        var host = new Option<string?>("--host", "-h", "--hostname") { Description = "The server's host name or address, or a Unix socket directory (starting with /). Default: PGHOST, else the Unix socket.", HelpName = "HOST" };
        var port = new Option<int?>("--port", "-p") { Description = "The server's port (default: PGPORT, else 5432).", HelpName = "PORT", CustomParser = r => (int?)Number(r, "--port", "a port (1 to 65535)", integer: true) };
        var user = new Option<string?>("--user", "-u", "--username") { Description = "The user name (default: PGUSER, else the operating system's user).", HelpName = "USER" };
        var database = new Option<string?>("--database", "-d") { Description = "The database (default: PGDATABASE, else the user name).", HelpName = "DATABASE" };
        var file = new Option<string>("--proto-data-file", "-f", "--file") { Description = "The script ('-' for standard input).", HelpName = "FILE", DefaultValueFactory = _ => "pgproto.data" };
        var readNap = new Option<int>("--read-nap", "-r") { Description = "pgproto's nap after each message read, in microseconds (to act as a slow client).", HelpName = "MICROSECONDS", DefaultValueFactory = _ => 0, CustomParser = r => (int)(Number(r, "--read-nap", "microseconds, 0 or more", integer: true) ?? 0) };
        var debug = new Option<bool>("--debug", "-D") { Description = "Print the bytes of every message sent and received (also while connecting) on standard error." };
        var sslmode = new Option<string?>("--sslmode") { Description = "libpq's sslmode (default: PGSSLMODE, else prefer).", HelpName = "disable|allow|prefer|require|verify-ca|verify-full" };
        sslmode.AcceptOnlyFromAmong("disable", "allow", "prefer", "require", "verify-ca", "verify-full");
        var rootCert = new Option<string?>("--sslrootcert") { Description = "PEM file of the CA certificates that verify-ca and verify-full trust (default: PGSSLROOTCERT, else the system's).", HelpName = "FILE" };
        var protocol = new Option<string>("--protocol") { Description = "The protocol version to ask for.", HelpName = "3.0|3.2", DefaultValueFactory = _ => "3.0" };
        protocol.AcceptOnlyFromAmong("3.0", "3.2");
        var timeout = new Option<double>("--timeout") { Description = "Seconds that connecting may take and that 'Y' waits for each message.", HelpName = "SECONDS", DefaultValueFactory = _ => 60, CustomParser = r => Number(r, "--timeout", "a number of seconds", integer: false) ?? 0 };
        var format = new Option<string>("--format") { Description = "pgproto: pgproto's lines. trace: libpq's PQtrace lines. json: one JSON object per message and line.", HelpName = "pgproto|trace|json", DefaultValueFactory = _ => "pgproto" };
        format.AcceptOnlyFromAmong("pgproto", "trace", "json");
        var regress = new Option<bool>("--regress") { Description = "libpq's regress mode for --format trace (OIDs as NNNN, error fields F/L/R as SSSS...)." };
        var expect = new Option<string?>("--expect") { Description = "Compare the output with FILE (after pgpool's normalization); print a unified diff and exit 1 when they differ.", HelpName = "FILE" };
        var suite = new Option<string?>("--suite") { Description = "Run every DIR/tests/NAME.data against DIR/expected/NAME.data; print a pass/fail table and a summary.", HelpName = "DIR" };

        var command = new PgSpecCommand("script", Summary, Description)
        {
            host, port, user, database, file, readNap, debug, sslmode, rootCert, protocol, timeout, format, regress, expect, suite,
        };

        // As in pgproto, -h is the host: this command's own help option has no -h, and the help
        // lists it rather than pgspec's (-?, -h, --help), which other commands keep.
        command.Options.Add(new HelpOption("--help", "-?", "/?"));

        command.Validators.Add(result =>
        {
            T? Value<T>(Option<T> option) => PgSpecCommandLine.ValueInValidator(result, option);
            if (Value(expect) is not null && Value(suite) is not null)
            {
                result.AddError("--expect and --suite do not go together (--suite finds each script's expected file).");
            }

            if (Value(regress) && Value(format) != "trace")
            {
                result.AddError("--regress applies to --format trace only.");
            }
        });

        command.SetAction(async (result, cancellationToken) =>
        {
            // Checked here rather than in a validator, which does not see default values.
            double seconds = result.GetValue(timeout);
            if (!(seconds > 0) || seconds > MaxTimeoutSeconds)
            {
                return Usage(stderr, $"--timeout: a number of seconds above 0 and at most {MaxTimeoutSeconds} (every wait has a bound).");
            }

            if (result.GetValue(readNap) < 0)
            {
                return Usage(stderr, "--read-nap: microseconds, 0 or more.");
            }

            if (result.GetValue(port) is int p && p is < 1 or > 65535)
            {
                return Usage(stderr, "--port: 1 to 65535.");
            }

            string? pgPort = Environment.GetEnvironmentVariable("PGPORT");
            int portNumber = result.GetValue(port) ?? 5432;
            if (result.GetValue(port) is null && !string.IsNullOrEmpty(pgPort) && !(int.TryParse(pgPort, NumberStyles.None, CultureInfo.InvariantCulture, out portNumber) && portNumber is >= 1 and <= 65535))
            {
                stderr.WriteLine($"pgspec script: PGPORT '{pgPort}' is not a port (1 to 65535)");
                return PgSpecCommandLine.ExitUsage;
            }

            string? mode = result.GetValue(sslmode) ?? Env("PGSSLMODE");
            PgSslMode ssl;
            try
            {
                ssl = mode is null ? PgSslMode.Prefer : PgConnectOptions.ParseSslMode(mode);
            }
            catch (ArgumentException)
            {
                stderr.WriteLine($"pgspec script: PGSSLMODE '{mode}' is not an sslmode (disable, allow, prefer, require, verify-ca, verify-full)");
                return PgSpecCommandLine.ExitUsage;
            }

            X509Certificate2Collection? roots = null;
            if ((result.GetValue(rootCert) ?? Env("PGSSLROOTCERT")) is { } rootFile)
            {
                try
                {
                    roots = [];
                    roots.ImportFromPemFile(rootFile);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException)
                {
                    stderr.WriteLine($"pgspec script: cannot read the CA certificates in {rootFile}: {e.Message}");
                    return PgSpecCommandLine.ExitUsage;
                }
            }

            string userName = result.GetValue(user) ?? Env("PGUSER") ?? Environment.UserName;
            string hostName = result.GetValue(host) ?? Env("PGHOST") ?? "";
            TimeSpan wait = TimeSpan.FromSeconds(result.GetValue(timeout));
            var connect = new PgConnectOptions
            {
                User = userName,
                Database = result.GetValue(database) ?? Env("PGDATABASE") ?? userName,
                Password = Environment.GetEnvironmentVariable("PGPASSWORD"),
                Port = portNumber,
                SslMode = ssl,
                RootCertificates = roots,
                ProtocolVersion = result.GetValue(protocol) == "3.2" ? PgProtocolVersion.V3_2 : PgProtocolVersion.V3_0,
                ConnectTimeout = wait,
                Parameters = [new("application_name", "pgspec script")],
            };
            if (hostName.Length == 0 || hostName.StartsWith('/'))
            {
                // As libpq: no TLS over a Unix socket.
                connect = connect with { UnixSocketPath = SocketPath(hostName, portNumber), SslMode = PgSslMode.Disable };
            }
            else
            {
                connect = connect with { Host = hostName };
            }

            var settings = new ScriptSettings
            {
                Connect = connect,
                ReadTimeout = wait,
                ReadNapMicroseconds = result.GetValue(readNap),
                Debug = result.GetValue(debug),
            };
            ScriptFormat outputFormat = result.GetValue(format) switch
            {
                "trace" => ScriptFormat.Trace,
                "json" => ScriptFormat.Json,
                _ => ScriptFormat.Pgproto,
            };
            var run = new ScriptRun(settings, outputFormat, result.GetValue(regress), stderr);

            if (result.GetValue(suite) is { } directory)
            {
                return await ScriptSuite.RunAsync(directory, run, stdout, stderr, cancellationToken).ConfigureAwait(false);
            }

            string path = result.GetValue(file)!;
            if (!TryRead(path, stdin, stderr, out string? text))
            {
                return PgSpecCommandLine.ExitUsage;
            }

            IReadOnlyList<ScriptStep> steps;
            try
            {
                steps = ScriptParser.Parse(text, path);
            }
            catch (ScriptParseException e)
            {
                stderr.WriteLine("pgspec script: " + e.Message);
                return PgSpecCommandLine.ExitScriptError;
            }

            if (steps.Count == 0)
            {
                // As pgproto: it still connects (and fails as it would), but says why nothing is sent.
                stderr.WriteLine($"pgspec script: {path} has no commands (only empty lines and comments): nothing to send");
            }

            if (result.GetValue(expect) is not { } expectPath)
            {
                ScriptOutcome outcome = await run.RunAsync(steps, path, stdout, cancellationToken).ConfigureAwait(false);
                return run.Report(outcome);
            }

            if (!TryRead(expectPath, null, stderr, out string? expected))
            {
                return PgSpecCommandLine.ExitUsage;
            }

            using var captured = new MemoryStream();
            ScriptOutcome ran = await run.RunAsync(steps, path, captured, cancellationToken).ConfigureAwait(false);
            if (!ran.Connected)
            {
                return run.Report(ran);
            }

            string actual = Encoding.UTF8.GetString(captured.ToArray());
            string? diff = LineDiff.Unified(LineDiff.Normalize(expected), LineDiff.Normalize(actual), expectPath, "output of " + path);
            if (ran.Error is not null)
            {
                stderr.WriteLine("pgspec script: " + ran.Error);
            }

            if (diff is null)
            {
                return PgSpecCommandLine.ExitOk;
            }

            stdout.Write(Encoding.UTF8.GetBytes(diff));
            stderr.WriteLine($"pgspec script: the output differs from {expectPath}");
            return PgSpecCommandLine.ExitDifference;
        });

        return command;
    }

    /// <summary>The longest --timeout (what a wait in milliseconds can take).</summary>
    private const int MaxTimeoutSeconds = int.MaxValue / 1000;

    /// <summary>An option's number, or an error that names the option and what it takes (rather than a .NET type).</summary>
    private static double? Number(System.CommandLine.Parsing.ArgumentResult result, string option, string what, bool integer)
    {
        string token = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
        if (integer && int.TryParse(token, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int whole))
        {
            return whole;
        }

        if (!integer && double.TryParse(token, NumberStyles.Float, CultureInfo.InvariantCulture, out double number))
        {
            return number;
        }

        result.AddError($"{option}: '{token}' is not {what}.");
        return null;
    }

    private static int Usage(TextWriter stderr, string message)
    {
        stderr.WriteLine("pgspec: " + message);
        stderr.WriteLine("Run 'pgspec help' or 'pgspec help COMMAND' for usage.");
        return PgSpecCommandLine.ExitUsage;
    }

    private static string? Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } value ? value : null;

    /// <summary>The Unix socket of a directory given as -h, or, without one, of libpq's usual directories (Debian's first).</summary>
    internal static string SocketPath(string directory, int port)
    {
        string name = ".s.PGSQL." + port.ToString(CultureInfo.InvariantCulture);
        if (directory.Length > 0)
        {
            return Path.Combine(directory, name);
        }

        string debian = Path.Combine("/var/run/postgresql", name);
        return File.Exists(debian) ? debian : Path.Combine("/tmp", name);
    }

    /// <summary>The largest script or expected file read (its whole text is held, and every message built, before anything is sent).</summary>
    internal const int MaxFileBytes = 64 * 1024 * 1024;

    /// <summary>Reads a text file ('-': standard input) of at most <see cref="MaxFileBytes"/>; false, with the reason on standard error, when it cannot be read.</summary>
    internal static bool TryRead(string path, Stream? stdin, TextWriter stderr, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out string? text)
    {
        text = null;
        try
        {
            bool standardInput = path == "-" && stdin is not null;
            if (!standardInput && Directory.Exists(path))
            {
                stderr.WriteLine($"pgspec script: cannot read {path}: it is a directory");
                return false;
            }

            // Read up to one byte past the limit, whatever the file claims to be (a pipe, /dev/zero).
            Stream input = standardInput ? stdin! : new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, FileOptions.SequentialScan);
            using var content = new MemoryStream();
            try
            {
                byte[] buffer = new byte[64 * 1024];
                int read;
                while ((read = input.Read(buffer, 0, (int)Math.Min(buffer.Length, MaxFileBytes + 1L - content.Length))) > 0)
                {
                    content.Write(buffer, 0, read);
                    if (content.Length > MaxFileBytes)
                    {
                        stderr.WriteLine($"pgspec script: cannot read {path}: it is larger than {MaxFileBytes / (1024 * 1024)} MiB");
                        return false;
                    }
                }
            }
            finally
            {
                if (!standardInput)
                {
                    input.Dispose();
                }
            }

            ReadOnlySpan<byte> bytes = content.GetBuffer().AsSpan(0, (int)content.Length);
            text = Encoding.UTF8.GetString(bytes.StartsWith(Encoding.UTF8.Preamble) ? bytes[Encoding.UTF8.Preamble.Length..] : bytes);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"pgspec script: cannot read {path}: {e.Message}");
            return false;
        }
    }
}

/// <summary>One way of running scripts (connection, output format), for one script or a suite.</summary>
internal sealed class ScriptRun(ScriptSettings settings, ScriptFormat format, bool regress, TextWriter stderr)
{
    public ScriptSettings Settings { get; } = settings;

    public Task<ScriptOutcome> RunAsync(IReadOnlyList<ScriptStep> steps, string file, Stream output, CancellationToken cancellationToken, string? database = null)
    {
        ScriptSettings settings = database is null ? Settings : Settings with { Connect = Settings.Connect with { Database = database } };
        return ScriptRunner.RunAsync(
            steps,
            file,
            settings,
            version => format == ScriptFormat.Pgproto ? new PgprotoOutput(output) : new DecodedOutput(output, format, regress, version),
            stderr,
            cancellationToken);
    }

    /// <summary>The exit code of a run, its error (if any) on standard error.</summary>
    public int Report(ScriptOutcome outcome)
    {
        if (outcome.Error is not null)
        {
            stderr.WriteLine("pgspec script: " + outcome.Error);
        }

        return outcome.ExitCode;
    }
}
