using System.Runtime.InteropServices;
using System.Text;
using PgSpec.Client;
using PgSpec.Protocol;

namespace PgSpec.Cli.Replicate;

/// <summary>
/// Runs <c>pgspec replicate</c>: opens the output, connects, creates or drops the slot when asked,
/// checks the slot and the publications, and streams (<see cref="LogicalStream"/>,
/// <see cref="PhysicalStream"/>). Every failure ends as a line on standard error and an exit code.
/// </summary>
internal sealed class ReplicateRunner
{
    private readonly ReplicateSettings _settings;
    private readonly Stream _stdout;
    private readonly TextWriter _stderr;
    private ReplicateSignals _signals = new(CancellationToken.None);

    private ReplicateRunner(ReplicateSettings settings, Stream stdout, TextWriter stderr)
    {
        _settings = settings;
        _stdout = stdout;
        _stderr = stderr;
    }

    /// <summary>
    /// Runs until the stream ends. Without a <paramref name="stop"/> token that can be cancelled (a
    /// process of its own), SIGINT and SIGTERM stop it cleanly and SIGHUP reopens the output file;
    /// with one (in-process), the token stops it.
    /// </summary>
    public static int Run(ReplicateSettings settings, Stream stdout, TextWriter stderr, CancellationToken stop)
    {
        var runner = new ReplicateRunner(settings, stdout, stderr);
        if (stop.CanBeCanceled)
        {
            return runner.RunAsync(stop).GetAwaiter().GetResult();
        }

        using var signalled = new CancellationTokenSource();
        void OnStop(PosixSignalContext context)
        {
            context.Cancel = true;
            signalled.Cancel();
        }

        void OnHangUp(PosixSignalContext context)
        {
            context.Cancel = true;
            runner._signals.RequestReopen();
        }

        using PosixSignalRegistration sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnStop);
        using PosixSignalRegistration sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnStop);
        using PosixSignalRegistration sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, OnHangUp);
        return runner.RunAsync(signalled.Token).GetAwaiter().GetResult();
    }

    private async Task<int> RunAsync(CancellationToken stop)
    {
        _signals = new ReplicateSignals(stop);
        ReplicationOutput output;
        try
        {
            output = _settings.OutputFile is { } path && path != "-" ? ReplicationOutput.ForFile(path) : ReplicationOutput.ForStandardOutput(_stdout);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return Fail(PgSpecCommandLine.ExitUsage, $"cannot open {_settings.OutputFile}: {e.Message}");
        }

        using (output)
        {
            try
            {
                await using PgFrontendSession session = await ReplicationConnection.ConnectAsync(_settings, _stderr, stop).ConfigureAwait(false);
                int major = ReplicationConnection.ServerMajor(session);
                if (_settings.DropSlot)
                {
                    await ReplicationConnection.RunAsync(session, "DROP_REPLICATION_SLOT", $"DROP_REPLICATION_SLOT {_settings.Slot}", stop).ConfigureAwait(false);
                    _stderr.WriteLine($"pgspec replicate: dropped replication slot {_settings.Slot}");
                    return PgSpecCommandLine.ExitOk;
                }

                return _settings.Physical
                    ? await RunPhysicalAsync(session, major, output, stop).ConfigureAwait(false)
                    : await RunLogicalAsync(session, major, output, stop).ConfigureAwait(false);
            }
            catch (ReplicateException e)
            {
                return Fail(e.ExitCode, e.Message);
            }
            catch (PgServerException e)
            {
                // At connection time: the server refused us.
                bool login = e.SqlState.StartsWith("28", StringComparison.Ordinal);
                return Fail(login ? PgSpecCommandLine.ExitAuthentication : ReplicateCommand.ExitServerError, (login ? "authentication failed: " : "the server refused the connection: ") + ReplicationConnection.Describe(e));
            }
            catch (PgConnectionException e) when (e.InnerException is TimeoutException)
            {
                return Fail(PgSpecCommandLine.ExitTimeout, e.Message + " (--timeout)");
            }
            catch (PgConnectionException e) when (e.Message.Contains("password", StringComparison.Ordinal) || e.Message.StartsWith("SCRAM", StringComparison.Ordinal))
            {
                return Fail(PgSpecCommandLine.ExitAuthentication, "authentication failed: " + e.Message + (e.Message.Contains("none was given", StringComparison.Ordinal) ? " (give PGPASSWORD, a password in -d's connection string, or -W)" : ""));
            }
            catch (PgConnectionException e)
            {
                return Fail(PgSpecCommandLine.ExitConnection, e.Message);
            }
            catch (PgProtocolException e)
            {
                return Fail(PgSpecCommandLine.ExitServerViolation, "the server broke the protocol: " + e.Message);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                // Stopped before streaming started: nothing was written, nothing confirmed.
                _stderr.WriteLine("pgspec replicate: stopped before streaming started");
                return PgSpecCommandLine.ExitOk;
            }
            catch (IOException e) when (!StandardOutputStream.IsBrokenPipe(e))
            {
                return Fail(PgSpecCommandLine.ExitUsage, $"cannot write {output.Name}: {e.Message}");
            }
        }
    }

    private int Fail(int exitCode, string message)
    {
        _stderr.WriteLine("pgspec replicate: " + message);
        return exitCode;
    }

    private async Task<int> RunLogicalAsync(PgFrontendSession session, int major, ReplicationOutput output, CancellationToken stop)
    {
        if (major < 10)
        {
            throw new ReplicateException(ReplicateCommand.ExitServerError, $"logical replication with pgoutput needs PostgreSQL 10 or later; the server is {major}");
        }

        int highest = ReplicateCommand.HighestProtocolVersion(major);
        int version = _settings.ProtocolVersion ?? highest;
        if (version > highest)
        {
            throw new ReplicateException(PgSpecCommandLine.ExitUsage, $"--proto-version {version}: PostgreSQL {major} has pgoutput protocol versions 1 to {highest} (2 needs 14, 3 needs 15, 4 needs 16)");
        }

        CheckOption(_settings.Streaming == PgOutputStreaming.On && version < 2, $"--streaming needs protocol version 2 or later (--proto-version {version})");
        CheckOption(_settings.Streaming == PgOutputStreaming.Parallel && version < 4, $"--streaming parallel needs protocol version 4 (PostgreSQL 16 or later; --proto-version {version})");
        CheckOption(_settings.TwoPhase && version < 3, $"--two-phase needs protocol version 3 or later (PostgreSQL 15 or later; --proto-version {version})");
        CheckOption(_settings.Binary && major < 14, $"--binary needs PostgreSQL 14 or later; the server is {major}");
        CheckOption(_settings.Origin is not null && major < 16, $"--origin needs PostgreSQL 16 or later; the server is {major}");

        string slot = _settings.Slot!;
        if (_settings.CreateSlot)
        {
            string create = _settings.TwoPhase
                ? $"CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput (SNAPSHOT 'nothing', TWO_PHASE)"
                : $"CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput NOEXPORT_SNAPSHOT";
            await CreateSlotAsync(session, slot, create, stop).ConfigureAwait(false);
        }

        await CheckSlotAsync(session, slot, "logical", stop).ConfigureAwait(false);
        await CheckPublicationsAsync(session, stop).ConfigureAwait(false);

        var stream = new LogicalStream(session, _settings, version, output, _stderr, _signals);
        await LoadTypeNamesAsync(session, stream.Writer, stop).ConfigureAwait(false);

        var options = new List<string>
        {
            $"proto_version '{version}'",
            "publication_names " + ReplicationConnection.Literal(string.Join(',', _settings.Publications.Select(ReplicationConnection.Identifier))),
        };
        if (_settings.Messages && major >= 14)
        {
            options.Add("messages 'true'");
        }

        if (_settings.Binary)
        {
            options.Add("binary 'true'");
        }

        if (_settings.Streaming != PgOutputStreaming.Off)
        {
            options.Add(_settings.Streaming == PgOutputStreaming.Parallel ? "streaming 'parallel'" : "streaming 'on'");
        }

        if (_settings.TwoPhase)
        {
            options.Add("two_phase 'on'");
        }

        if (_settings.Origin is { } origin)
        {
            options.Add("origin " + ReplicationConnection.Literal(origin));
        }

        string start = $"START_REPLICATION SLOT {slot} LOGICAL {ReplicationValues.FormatLsn(_settings.StartLsn)} ({string.Join(", ", options)})";
        if (_settings.Verbose)
        {
            _stderr.WriteLine("pgspec replicate: " + start);
        }

        return await stream.RunAsync(start).ConfigureAwait(false);
    }

    private static void CheckOption(bool wrong, string message)
    {
        if (wrong)
        {
            throw new ReplicateException(PgSpecCommandLine.ExitUsage, message);
        }
    }

    private async Task CreateSlotAsync(PgFrontendSession session, string slot, string command, CancellationToken stop)
    {
        try
        {
            await session.QueryAsync(command, cancellationToken: stop).ConfigureAwait(false);
            _stderr.WriteLine($"pgspec replicate: created replication slot {slot}");
        }
        catch (PgServerException e) when (e.SqlState == "42710" && _settings.IfNotExists)
        {
            _stderr.WriteLine($"pgspec replicate: replication slot {slot} exists already (--if-not-exists): using it");
        }
        catch (PgServerException e) when (e.SqlState == "42710")
        {
            throw new ReplicateException(ReplicateCommand.ExitServerError, $"replication slot {slot} exists already: leave out --create-slot to use it, or add --if-not-exists", e);
        }
        catch (PgServerException e)
        {
            throw new ReplicateException(ReplicateCommand.ExitServerError, "CREATE_REPLICATION_SLOT: " + ReplicationConnection.Describe(e), e);
        }
        catch (PgConnectionException e) when (!stop.IsCancellationRequested && e.Message.Contains("did not answer", StringComparison.Ordinal))
        {
            throw new ReplicateException(PgSpecCommandLine.ExitTimeout, $"creating replication slot {slot} took longer than --timeout: the server waits for the transactions running when the slot was asked for to end (a long transaction, or a prepared one?)", e);
        }
    }

    /// <summary>Checks that the slot exists and is of the right kind, for a clearer error than START_REPLICATION's.</summary>
    private async Task CheckSlotAsync(PgFrontendSession session, string slot, string kind, CancellationToken stop)
    {
        IReadOnlyList<PgResult> results = await ReplicationConnection.RunAsync(
            session,
            "reading pg_replication_slots",
            $"SELECT slot_type, plugin, database, active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = {ReplicationConnection.Literal(slot)}",
            stop).ConfigureAwait(false);
        PgResult result = results[^1];
        if (result.Rows.Count == 0)
        {
            throw new ReplicateException(ReplicateCommand.ExitServerError, $"replication slot {slot} does not exist (--create-slot creates it)");
        }

        string? type = result.Text(0, 0);
        string? plugin = result.Text(0, 1);
        string? database = result.Text(0, 2);
        string? activePid = result.Text(0, 3);
        if (type != kind)
        {
            throw new ReplicateException(ReplicateCommand.ExitServerError, $"replication slot {slot} is a {type} slot; {(kind == "logical" ? "stream it with --physical" : "it needs logical replication (without --physical)")}");
        }

        if (kind == "logical" && plugin != "pgoutput")
        {
            throw new ReplicateException(ReplicateCommand.ExitServerError, $"replication slot {slot} decodes with the plugin {plugin}; pgspec replicate reads pgoutput");
        }

        string ours = _settings.Connect.Database ?? _settings.Connect.User;
        if (kind == "logical" && database is not null && database != ours)
        {
            throw new ReplicateException(ReplicateCommand.ExitServerError, $"replication slot {slot} belongs to database {database}; connect to it with -d {database}");
        }

        if (activePid is not null)
        {
            throw new ReplicateException(ReplicateCommand.ExitServerError, $"replication slot {slot} is in use by the server process {activePid}");
        }
    }

    /// <summary>
    /// Warns about publications that do not exist (yet): the server tells only when it decodes the
    /// first change (PostgreSQL 15 to 17 end the stream with an error then; 18 skips them with a
    /// warning). Not an error here, since a publication created after the stream starts, before
    /// the changes, is one the server uses.
    /// </summary>
    private async Task CheckPublicationsAsync(PgFrontendSession session, CancellationToken stop)
    {
        string names = string.Join(", ", _settings.Publications.Select(ReplicationConnection.Literal));
        IReadOnlyList<PgResult> results = await ReplicationConnection.RunAsync(
            session,
            "reading pg_publication",
            $"SELECT pubname FROM pg_catalog.pg_publication WHERE pubname IN ({names})",
            stop).ConfigureAwait(false);
        PgResult result = results[^1];
        var found = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < result.Rows.Count; i++)
        {
            found.Add(result.Text(i, 0) ?? "");
        }

        foreach (string missing in _settings.Publications.Where(p => !found.Contains(p)))
        {
            _stderr.WriteLine($"pgspec replicate: warning: publication {missing} does not exist (yet) in database {_settings.Connect.Database ?? _settings.Connect.User}: unless it is created before the next change, the server ends the stream with an error at that change (PostgreSQL 15 to 17) or leaves it out (18)");
        }
    }

    /// <summary>The names of the built-in types (the server names the others in Type messages).</summary>
    private async Task LoadTypeNamesAsync(PgFrontendSession session, ChangeWriter writer, CancellationToken stop)
    {
        IReadOnlyList<PgResult> results = await ReplicationConnection.RunAsync(
            session,
            "reading pg_type",
            "SELECT t.oid, n.nspname, t.typname FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE t.oid < 16384",
            stop).ConfigureAwait(false);
        PgResult result = results[^1];
        for (int i = 0; i < result.Rows.Count; i++)
        {
            if (uint.TryParse(result.Text(i, 0), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out uint oid))
            {
                writer.AddTypeName(oid, ChangeWriter.Qualified(result.Text(i, 1) ?? "", result.Text(i, 2) ?? ""));
            }
        }
    }

    private async Task<int> RunPhysicalAsync(PgFrontendSession session, int major, ReplicationOutput output, CancellationToken stop)
    {
        IReadOnlyList<PgResult> identify = await ReplicationConnection.RunAsync(session, "IDENTIFY_SYSTEM", "IDENTIFY_SYSTEM", stop).ConfigureAwait(false);
        PgResult system = identify[^1];
        if (system.Rows.Count != 1 || system.Text(0, 1) is not { } timeline || !ReplicationValues.TryParseLsn(system.Text(0, 2), out long position))
        {
            throw new ReplicateException(PgSpecCommandLine.ExitServerViolation, "IDENTIFY_SYSTEM did not answer with a timeline and a WAL position");
        }

        long start = _settings.StartLsn;
        if (_settings.Slot is { } slot)
        {
            if (_settings.CreateSlot)
            {
                await CreateSlotAsync(session, slot, $"CREATE_REPLICATION_SLOT {slot} PHYSICAL RESERVE_WAL", stop).ConfigureAwait(false);
            }

            if (start == 0 && major >= 15)
            {
                // Where the slot keeps WAL from (READ_REPLICATION_SLOT, PostgreSQL 15 and later).
                IReadOnlyList<PgResult> read = await ReplicationConnection.RunAsync(session, "READ_REPLICATION_SLOT", $"READ_REPLICATION_SLOT {slot}", stop).ConfigureAwait(false);
                PgResult row = read[^1];
                if (row.Rows.Count == 1 && row.Text(0, 0) is null)
                {
                    throw new ReplicateException(ReplicateCommand.ExitServerError, $"replication slot {slot} does not exist (--create-slot creates it)");
                }

                if (row.Rows.Count == 1 && row.Text(0, 0) != "physical")
                {
                    throw new ReplicateException(ReplicateCommand.ExitServerError, $"replication slot {slot} is a {row.Text(0, 0)} slot; --physical needs a physical one");
                }

                if (row.Rows.Count == 1 && ReplicationValues.TryParseLsn(row.Text(0, 1), out long restart) && restart != 0)
                {
                    start = restart;
                }
            }
        }

        if (start == 0)
        {
            start = position;
        }

        return await new PhysicalStream(session, _settings, output, _stderr, _signals).RunAsync(start, timeline).ConfigureAwait(false);
    }
}
