using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using PgSpec.Cli.Replicate;
using PgSpec.Client;
using PgSpec.Protocol;

namespace PgSpec.Cli;

/// <summary><c>pgspec replicate</c>: logical replication from a server as JSON lines (change data capture), or physical replication's WAL positions.</summary>
internal static class ReplicateCommand
{
    /// <summary>The server reported an error: a slot or publication missing, wal_level, permissions, the slot in use.</summary>
    public const int ExitServerError = 1;

    private const string Summary = "Stream a server's changes through a replication slot (pgoutput) as JSON lines, confirming only what was written.";

    private const string Description = """
        Logical replication from a PostgreSQL server (10 and later) through a replication slot with
        the pgoutput plugin, the way a subscriber receives it, written as JSON lines (change data
        capture): each committed transaction as a 'begin' line, a line per change (insert, update,
        delete, truncate, message) with its relation, column names and types, and values, and a
        'commit' line. The connection options and environment variables are pg_recvlogical's.

        Connecting: -h HOST (a path starting with / is a Unix socket directory; none: PGHOST, else
        the socket in /var/run/postgresql or /tmp), -p PORT, -U USER, -d DATABASE (or a connection
        string: "host=... port=... dbname=... user=... password=... sslmode=..." or
        postgres://user:password@host:port/database?sslmode=...; the other options win over it),
        or PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGSSLMODE, PGSSLROOTCERT, PGAPPNAME.
        A password is asked for on the terminal when the server wants one and none was given
        (-W: always, first; -w: never). TLS with --sslmode (prefer by default, never over Unix
        sockets). The user needs the REPLICATION attribute and a pg_hba.conf line for the database.

        Replication: --slot NAME (with --create-slot, it is created first, with TWO_PHASE under
        --two-phase; a slot that exists is an error unless --if-not-exists) and --publication
        NAME[,NAME...] (one that does not exist yet is a warning: PostgreSQL 15 to 17 end the
        stream at the first change with an error, 18 leaves it out). pgoutput's protocol version
        is the highest the server has unless --proto-version says (1; 2 for PostgreSQL 14; 3 for
        15; 4 for 16 and later). --streaming [on|parallel] has the server stream large
        transactions before they commit (version 2; parallel: 4); --two-phase has it decode
        transactions at PREPARE TRANSACTION (version 3); --binary asks for values in binary;
        pg_logical_emit_message's messages are asked for (PostgreSQL 14 and later) unless
        --no-messages; --origin none leaves out changes that came from another origin (16 and
        later). The stream starts where the slot is, or at --startpos, and stops at --endpos
        (transactions ending after it are not written), or on SIGINT or SIGTERM. --drop-slot
        drops the slot and stops.

        Output (standard output, or appended to --file FILE): one JSON object per line.
          {"op":"begin","xid":N,"lsn":L,"commitLsn":L,"commitTime":T[,"origin":NAME,"originLsn":L][,"gid":G,"prepareLsn":L,"prepareTime":T][,"streamed":true]}
          {"op":"insert"|"update"|"delete","xid":N,"lsn":L,"commitLsn":L,"commitTime":T[,"origin":NAME],
           "relation":{"oid":N,"schema":S,"name":S,"replicaIdentity":"default"|"full"|"index"|"nothing",
                       "columns":[{"name":S,"type":S|null,"typeOid":N[,"typeModifier":N],"key":B}...]},
           "new":{...} (insert, update), "key":{...} or "old":{...} (update when the server sent it, delete)}
          {"op":"truncate",...,"relations":[{"oid":N,"schema":S,"name":S}...],"cascade":B,"restartIdentity":B}
          {"op":"message",["xid":N,...,]"lsn":L,"transactional":B,"prefix":S,"content":S|"contentBase64":S}
          {"op":"commit","xid":N,"lsn":L,"commitLsn":L,"commitTime":T,"endLsn":L[,"gid":G],"changes":N}
        LSNs are "X/XXXXXXXX", times ISO 8601 in UTC to the microsecond. A value is a string in
        PostgreSQL's text format, null for NULL, {"unchanged":true} for a TOASTed value the server
        did not send because it did not change ('u'), or {"base64":"..."} in binary format (or text
        that is not UTF-8). "key" holds the replica identity's columns (the old key), "old" the
        whole old row (REPLICA IDENTITY FULL). Types are named from the catalogue (built-in) or the
        server's Type messages (others); "type" is null when neither named it.

        Transactions: a transaction is written whole once it has committed, in commit order: an
        ordinary one at its Commit, a streamed one at Stream Commit (its blocks are held until then;
        an aborted one, and the changes of aborted subtransactions, are dropped), a prepared one
        (--two-phase) at COMMIT PREPARED (one rolled back with ROLLBACK PREPARED is dropped). So the
        output holds committed changes only, each once. Transactions held take memory up to
        --buffer-memory (64MB) in all; beyond it the largest spill to files in --spill-dir
        (the temporary folder), deleted when the transaction ends.

        Acknowledgement: a standby status update every --status-interval seconds (10; 0: only when
        the server asks and at the end), when the server asks, and when stopping. The position it
        confirms is one before which every transaction was written out: the output is flushed
        first (and a --file fsynced), and it never passes the PREPARE of a prepared transaction
        not yet resolved (the server would not send it again). A restart from the slot goes on
        with the first transaction not written: nothing is lost, and nothing is written twice
        but the transactions that committed after a PREPARE still unresolved at the stop, or
        those written just before the tool died (replication is at-least-once). SIGHUP reopens
        the --file (log rotation).

        Physical replication (--physical, with replication=true): IDENTIFY_SYSTEM, then
        START_REPLICATION PHYSICAL from --startpos (or the slot's restart_lsn, or the server's WAL
        position) on the current timeline; each XLogData becomes
        {"op":"wal","walStart":L,"walEnd":L,"sendTime":T,"bytes":N}. The WAL itself is not kept.

        Bounds: --timeout (60 s; 0: none) bounds connecting, each command, and the server's silence
        while streaming (after half of it, a status update asks the server for an answer).

        Exit codes: 0 stopped by SIGINT/SIGTERM or at --endpos (or the slot dropped); 1 the server
        reported an error (the slot or a publication does not exist, wal_level is not logical,
        no REPLICATION attribute, the slot is in use...); 2 a usage error, or the output cannot be
        written; 3 the server broke the protocol; 5 the server cannot be reached, or the connection
        or stream ended; 6 authentication failed; 7 the server did not answer within --timeout.

        Examples:
          pgspec replicate -d shop --slot cdc --publication orders --create-slot --if-not-exists
          pgspec replicate -h db -U replicator -d shop --slot cdc --publication orders,customers --streaming -f changes.jsonl
          pgspec replicate -d "host=db dbname=shop user=replicator" --slot cdc --publication all_tables --two-phase --endpos 0/3000000
          pgspec replicate -h db -U replicator --physical --slot standby1 --create-slot
        """;

    /// <summary>The highest pgoutput protocol version of a server's major version.</summary>
    public static int HighestProtocolVersion(int major) => major switch
    {
        < 14 => 1,
        14 => 2,
        15 => 3,
        _ => 4,
    };

    public static Command Create(Stream stdout, TextWriter stderr, CancellationToken stop)
    {
        var host = new Option<string?>("--host", "-h") { Description = "The server's host name or address, or a Unix socket directory (starting with /). Default: PGHOST, else the Unix socket.", HelpName = "HOST" };
        var port = new Option<int?>("--port", "-p") { Description = "The server's port (default: PGPORT, else 5432).", HelpName = "PORT" };
        var user = new Option<string?>("--username", "-U", "--user") { Description = "The user name (default: PGUSER, else the operating system's user).", HelpName = "USER" };
        var database = new Option<string?>("--dbname", "-d", "--database") { Description = "The database, or a connection string (key=value ... or postgres://...). Default: PGDATABASE, else the user name.", HelpName = "DATABASE" };
        var noPassword = new Option<bool>("--no-password", "-w") { Description = "Never ask for a password." };
        var askPassword = new Option<bool>("--password", "-W") { Description = "Ask for the password before connecting." };
        var sslmode = new Option<string?>("--sslmode") { Description = "libpq's sslmode (default: PGSSLMODE, else prefer).", HelpName = "disable|allow|prefer|require|verify-ca|verify-full" };
        sslmode.AcceptOnlyFromAmong("disable", "allow", "prefer", "require", "verify-ca", "verify-full");
        var rootCert = new Option<string?>("--sslrootcert") { Description = "PEM file of the CA certificates that verify-ca and verify-full trust (default: PGSSLROOTCERT, else the system's).", HelpName = "FILE" };
        var slot = new Option<string?>("--slot", "-S") { Description = "The replication slot.", HelpName = "NAME" };
        var publication = new Option<string[]>("--publication") { Description = "The publications (comma-separated, or the option repeated).", HelpName = "NAME[,NAME...]" };
        var createSlot = new Option<bool>("--create-slot") { Description = "Create the slot first (logical with pgoutput; physical with --physical)." };
        var ifNotExists = new Option<bool>("--if-not-exists") { Description = "With --create-slot: use the slot if it exists already." };
        var dropSlot = new Option<bool>("--drop-slot") { Description = "Drop the slot, and stop." };
        var startPos = new Option<string?>("--startpos", "-I", "--start") { Description = "Start at this WAL position rather than where the slot is.", HelpName = "LSN" };
        var endPos = new Option<string?>("--endpos", "-E") { Description = "Stop at this WAL position: transactions ending after it are not written.", HelpName = "LSN" };
        var file = new Option<string?>("--file", "-f") { Description = "Append the lines to FILE ('-': standard output, the default).", HelpName = "FILE" };
        var statusInterval = new Option<double>("--status-interval", "-s") { Description = "Seconds between standby status updates (0: only when the server asks, and at the end).", HelpName = "SECONDS", DefaultValueFactory = _ => 10 };
        var timeout = new Option<double>("--timeout") { Description = "Seconds that connecting, each command, and the server's silence while streaming may last (0: no bound).", HelpName = "SECONDS", DefaultValueFactory = _ => 60 };
        var protoVersion = new Option<int?>("--proto-version") { Description = "pgoutput's protocol version, 1 to 4 (default: the highest the server has).", HelpName = "N" };
        var streaming = new Option<string?>("--streaming") { Description = "Have the server stream large transactions before they commit: on (the default value), parallel (version 4), off.", HelpName = "on|parallel|off", Arity = ArgumentArity.ZeroOrOne };
        streaming.AcceptOnlyFromAmong("on", "parallel", "off");
        var twoPhase = new Option<bool>("--two-phase", "-t") { Description = "Decode prepared transactions at PREPARE TRANSACTION (they are written at COMMIT PREPARED)." };
        var binary = new Option<bool>("--binary") { Description = "Ask for values in binary format (written as base64)." };
        var noMessages = new Option<bool>("--no-messages") { Description = "Leave out pg_logical_emit_message's messages." };
        var origin = new Option<string?>("--origin") { Description = "pgoutput's origin option: none leaves out changes that came from another origin.", HelpName = "any|none" };
        origin.AcceptOnlyFromAmong("any", "none");
        var format = new Option<string>("--format") { Description = "The output format.", HelpName = "json", DefaultValueFactory = _ => "json" };
        format.AcceptOnlyFromAmong("json");
        var bufferMemory = new Option<string>("--buffer-memory") { Description = "Memory that transactions held until they commit may take in all; beyond it they spill to files (bytes, or with kB, MB, GB).", HelpName = "SIZE", DefaultValueFactory = _ => "64MB" };
        var spillDir = new Option<string?>("--spill-dir") { Description = "Where held transactions spill to (default: the temporary folder).", HelpName = "DIR" };
        var physical = new Option<bool>("--physical") { Description = "Physical replication: a line per XLogData with its WAL position (the WAL is not kept)." };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Notes on standard error about the stream: commands, blocks, aborts, prepared transactions." };

        var command = new PgSpecCommand("replicate", Summary, Description)
        {
            host, port, user, database, noPassword, askPassword, sslmode, rootCert, slot, publication, createSlot, ifNotExists, dropSlot, startPos, endPos, file, statusInterval, timeout,
            protoVersion, streaming, twoPhase, binary, noMessages, origin, format, bufferMemory, spillDir, physical, verbose,
        };

        // As in pg_recvlogical, -h is the host: help is -? or --help.
        command.Options.Add(new HelpOption("--help", "-?"));

        command.Validators.Add(result =>
        {
            T? Value<T>(Option<T> option) => PgSpecCommandLine.ValueInValidator(result, option);
            bool Given(Option option) => result.GetResult(option) is { Implicit: false };

            bool isPhysical = Value(physical);
            if (Value(slot) is { } name && !ReplicationConnection.IsSlotName(name))
            {
                result.AddError($"--slot: '{name}' is not a replication slot name (lower-case letters, digits and underscores, at most 63).");
            }
            else if (Value(slot) is null && (!isPhysical || Value(createSlot) || Value(dropSlot)))
            {
                result.AddError(isPhysical ? "--create-slot and --drop-slot need --slot NAME." : "--slot NAME is required.");
            }

            if (!isPhysical && !Value(dropSlot) && Publications(Value(publication)).Count == 0)
            {
                result.AddError("--publication NAME is required (the publications whose changes to stream).");
            }

            if (Value(publication) is { } names && names.SelectMany(n => n.Split(',')).Any(n => n.Trim().Length == 0))
            {
                result.AddError("--publication: a publication name is empty.");
            }

            if (isPhysical)
            {
                foreach (Option option in new Option[] { publication, protoVersion, streaming, twoPhase, binary, noMessages, origin, bufferMemory, spillDir })
                {
                    if (Given(option))
                    {
                        result.AddError($"{option.Name} applies to logical replication, not to --physical.");
                    }
                }
            }

            if (Value(ifNotExists) && !Value(createSlot))
            {
                result.AddError("--if-not-exists goes with --create-slot.");
            }

            if (Value(dropSlot) && (Value(createSlot) || Given(startPos) || Given(endPos)))
            {
                result.AddError("--drop-slot only drops the slot: it goes with neither --create-slot, --startpos nor --endpos.");
            }

            if (Value(noPassword) && Value(askPassword))
            {
                result.AddError("-w (--no-password) and -W (--password) contradict each other.");
            }

            long start = 0;
            foreach (Option<string?> lsn in new[] { startPos, endPos })
            {
                if (Value(lsn) is { } text && !ReplicationValues.TryParseLsn(text, out long parsed))
                {
                    result.AddError($"{lsn.Name}: '{text}' is not a WAL position such as 0/16B3748.");
                }
                else if (Value(lsn) is { } valid && ReplicationValues.TryParseLsn(valid, out long position))
                {
                    if (lsn == startPos)
                    {
                        start = position;
                    }
                    else if (position < start)
                    {
                        result.AddError("--endpos is before --startpos.");
                    }
                }
            }

            foreach (Option<double> seconds in new[] { statusInterval, timeout })
            {
                double value = Value(seconds);
                if (Given(seconds) && (double.IsNaN(value) || value < 0 || value > ServerOptions.MaxSeconds))
                {
                    result.AddError($"{seconds.Name} is a number of seconds from 0 to {ServerOptions.MaxSeconds}.");
                }
            }

            if (Value(port) is int p && p is < 1 or > 65535)
            {
                result.AddError("--port: 1 to 65535.");
            }

            int? version = Value(protoVersion);
            if (version is < 1 or > 4)
            {
                result.AddError("--proto-version is 1 to 4.");
            }

            string? mode = Given(streaming) ? Value(streaming) ?? "on" : null;
            if (version is int v)
            {
                if (mode == "on" && v < 2)
                {
                    result.AddError("--streaming needs --proto-version 2 or later.");
                }

                if (mode == "parallel" && v < 4)
                {
                    result.AddError("--streaming parallel needs --proto-version 4.");
                }

                if (Value(twoPhase) && v < 3)
                {
                    result.AddError("--two-phase needs --proto-version 3 or later.");
                }
            }

            if (Value(spillDir) is { } directory && !Directory.Exists(directory))
            {
                result.AddError($"--spill-dir: {directory} is not a directory.");
            }

            if (Given(bufferMemory) && !ReplicationValues.TryParseSize(Value(bufferMemory), out _))
            {
                result.AddError($"--buffer-memory: '{Value(bufferMemory)}' is not a size (bytes, or a number with kB, MB or GB).");
            }
        });

        command.SetAction(result =>
        {
            var resolved = new ConnectionChoices(
                result.GetValue(host),
                result.GetValue(port),
                result.GetValue(user),
                result.GetValue(database),
                result.GetValue(sslmode),
                result.GetValue(rootCert));
            if (!TryConnectOptions(resolved, TimeSpanOf(result.GetValue(timeout)), out PgConnectOptions? connect, out string? error))
            {
                stderr.WriteLine("pgspec replicate: " + error);
                stderr.WriteLine("Run 'pgspec help replicate' for usage.");
                return PgSpecCommandLine.ExitUsage;
            }

            string? mode = result.GetResult(streaming) is { Implicit: false } ? result.GetValue(streaming) ?? "on" : null;
            ReplicationValues.TryParseLsn(result.GetValue(startPos), out long start);
            long? end = ReplicationValues.TryParseLsn(result.GetValue(endPos), out long parsedEnd) ? parsedEnd : null;
            ReplicationValues.TryParseSize(result.GetValue(bufferMemory), out long memory);
            var settings = new ReplicateSettings
            {
                Connect = connect!,
                PromptPassword = result.GetValue(askPassword),
                NeverPrompt = result.GetValue(noPassword),
                Slot = result.GetValue(slot),
                Publications = Publications(result.GetValue(publication)),
                CreateSlot = result.GetValue(createSlot),
                IfNotExists = result.GetValue(ifNotExists),
                DropSlot = result.GetValue(dropSlot),
                StartLsn = start,
                EndLsn = end,
                OutputFile = result.GetValue(file),
                StatusInterval = TimeSpan.FromSeconds(result.GetValue(statusInterval)),
                Timeout = TimeSpanOf(result.GetValue(timeout)),
                ProtocolVersion = result.GetValue(protoVersion),
                Streaming = mode switch
                {
                    "on" => PgOutputStreaming.On,
                    "parallel" => PgOutputStreaming.Parallel,
                    _ => PgOutputStreaming.Off,
                },
                TwoPhase = result.GetValue(twoPhase),
                Binary = result.GetValue(binary),
                Messages = !result.GetValue(noMessages),
                Origin = result.GetValue(origin),
                BufferMemory = memory,
                SpillDirectory = result.GetValue(spillDir) ?? Path.GetTempPath(),
                Physical = result.GetValue(physical),
                Verbose = result.GetValue(verbose),
            };
            return ReplicateRunner.Run(settings, stdout, stderr, stop);
        });

        return command;
    }

    /// <summary>Seconds as a bound: zero is none.</summary>
    private static TimeSpan TimeSpanOf(double seconds) => seconds <= 0 ? Timeout.InfiniteTimeSpan : TimeSpan.FromSeconds(seconds);

    /// <summary>The publication names given, split at commas, in order, without repeats.</summary>
    private static IReadOnlyList<string> Publications(string[]? given)
        => given is null ? [] : given.SelectMany(n => n.Split(',')).Select(n => n.Trim()).Where(n => n.Length > 0).Distinct(StringComparer.Ordinal).ToArray();

    /// <summary>The connection options given on the command line (null: not given).</summary>
    internal sealed record ConnectionChoices(string? Host, int? Port, string? User, string? Database, string? SslMode, string? RootCertificate);

    /// <summary>
    /// The connection: the command line's options, then -d's connection string, then the PG*
    /// environment variables, then libpq's defaults. False, with what is wrong, when they cannot be used.
    /// </summary>
    internal static bool TryConnectOptions(ConnectionChoices given, TimeSpan timeout, out PgConnectOptions? options, out string? error)
    {
        options = null;
        Dictionary<string, string> conninfo = [];
        string? databaseName = given.Database;
        if (given.Database is { } text && (text.Contains('=', StringComparison.Ordinal) || text.StartsWith("postgres://", StringComparison.Ordinal) || text.StartsWith("postgresql://", StringComparison.Ordinal)))
        {
            if (!ConnectionString.TryParse(text, conninfo, out error))
            {
                error = "-d: " + error;
                return false;
            }

            databaseName = conninfo.GetValueOrDefault("dbname");
        }

        string? portText = given.Port?.ToString(CultureInfo.InvariantCulture) ?? conninfo.GetValueOrDefault("port") ?? Env("PGPORT");
        int portNumber = 5432;
        if (portText is not null && !(int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out portNumber) && portNumber is >= 1 and <= 65535))
        {
            error = $"the port '{portText}' (PGPORT, or the connection string's) is not a port (1 to 65535)";
            return false;
        }

        string? mode = given.SslMode ?? conninfo.GetValueOrDefault("sslmode") ?? Env("PGSSLMODE");
        PgSslMode ssl;
        try
        {
            ssl = mode is null ? PgSslMode.Prefer : PgConnectOptions.ParseSslMode(mode);
        }
        catch (ArgumentException)
        {
            error = $"sslmode '{mode}' is not one of disable, allow, prefer, require, verify-ca, verify-full";
            return false;
        }

        X509Certificate2Collection? roots = null;
        if ((given.RootCertificate ?? conninfo.GetValueOrDefault("sslrootcert") ?? Env("PGSSLROOTCERT")) is { } rootFile)
        {
            try
            {
                roots = [];
                roots.ImportFromPemFile(rootFile);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException)
            {
                error = $"cannot read the CA certificates in {rootFile}: {e.Message}";
                return false;
            }
        }

        string userName = given.User ?? conninfo.GetValueOrDefault("user") ?? Env("PGUSER") ?? Environment.UserName;
        string hostName = given.Host ?? conninfo.GetValueOrDefault("host") ?? conninfo.GetValueOrDefault("hostaddr") ?? Env("PGHOST") ?? "";
        var connect = new PgConnectOptions
        {
            User = userName,
            Database = databaseName ?? Env("PGDATABASE") ?? userName,
            Password = conninfo.GetValueOrDefault("password") ?? Environment.GetEnvironmentVariable("PGPASSWORD"),
            Port = portNumber,
            SslMode = ssl,
            RootCertificates = roots,
            ConnectTimeout = timeout,
            CommandTimeout = timeout,
            Parameters = [new("application_name", conninfo.GetValueOrDefault("application_name") ?? Env("PGAPPNAME") ?? "pgspec replicate")],
        };
        options = hostName.Length == 0 || hostName.StartsWith('/')
            ? connect with { UnixSocketPath = ScriptCommand.SocketPath(hostName, portNumber), SslMode = PgSslMode.Disable }
            : connect with { Host = hostName };
        error = null;
        return true;
    }

    private static string? Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } value ? value : null;
}
