using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using System.Security.Cryptography.X509Certificates;
using PgSpec.Cli.Serve;
using PgSpec.Protocol;
using PgSpec.Proxy;
using PgSpec.Server;

namespace PgSpec.Cli;

/// <summary><c>pgspec serve</c>: a PostgreSQL-protocol server over SQLite, on PgSpec.Server.</summary>
internal static class ServeCommand
{
    private const string Summary = "Serve a SQLite database over the PostgreSQL protocol.";

    private const string Description = """
        A PostgreSQL-protocol server over SQLite (PgSpec.Server's demonstration and test bed): psql,
        pgbench, Npgsql, node-postgres, postgres.js and psycopg connect to it as to PostgreSQL.

        The SQL is SQLite's, plus PostgreSQL's ::type casts, $n parameters, BEGIN/COMMIT/ROLLBACK,
        SET/SHOW, version(), pg_sleep(seconds) and COPY ... FROM STDIN / TO STDOUT (text and CSV).
        Values are int8, float8, text, bytea, bool and NULL, in text and binary format. Catalog
        queries (pg_catalog, information_schema) get an error: use Npgsql's
        Server Compatibility Mode=NoTypeLoading, postgres.js's fetch_types: false.

        By default it listens on 127.0.0.1:5432 with trust authentication, as a fresh PostgreSQL
        cluster does for local connections, and serves an in-memory database shared by all
        sessions. SIGINT or SIGTERM: new connections are refused, and open sessions end with FATAL
        57P01 after --shutdown-grace.

        Authentication: with --auth password, md5 or scram-sha-256 only --user logs in, with
        --password (or PGSPEC_SERVE_PASSWORD, which keeps it out of the process list); a wrong
        password gets PostgreSQL's FATAL 28P01. With TLS, SCRAM also offers SCRAM-SHA-256-PLUS.

        Exit codes: 0 stopped by a signal; 2 a usage error, or the database, the certificate or the
        listen address could not be used.

        Examples:
          pgspec serve
          pgspec serve --listen 127.0.0.1:5433 --db app.db --trace -
          pgspec serve --listen /tmp/pgspec/.s.PGSQL.5432 --auth scram-sha-256 --user app --password secret
          pgspec serve --tls-cert server.crt --tls-key server.key --auth md5 --user app --password secret
        """;


    /// <summary>The default --max-message-size: 16 MiB.</summary>
    private const int DefaultMaxMessage = 16 * 1024 * 1024;

    public static Command Create(Stream stdout, TextWriter stderr)
    {
        var listen = new Option<string>("--listen") { Description = "Where clients connect: HOST:PORT or a Unix socket path (PostgreSQL's clients look for PATH/.s.PGSQL.PORT).", HelpName = "HOST:PORT|PATH", DefaultValueFactory = _ => "127.0.0.1:5432" };
        var database = new Option<string>("--db") { Description = "The SQLite database file (created if missing), or :memory: for one in-memory database shared by all sessions.", HelpName = "FILE|:memory:", DefaultValueFactory = _ => ":memory:" };
        var tlsCert = new Option<string?>("--tls-cert") { Description = "PEM certificate for TLS (SSLRequest and direct TLS; needs --tls-key).", HelpName = "FILE" };
        var tlsKey = new Option<string?>("--tls-key") { Description = "PEM private key of --tls-cert.", HelpName = "FILE" };
        var auth = new Option<string>("--auth") { Description = "How clients log in: trust (any user, no password), password (cleartext), md5, or scram-sha-256 (with -PLUS under TLS).", HelpName = "trust|password|md5|scram-sha-256", DefaultValueFactory = _ => "trust" };
        auth.AcceptOnlyFromAmong("trust", "password", "md5", "scram-sha-256");
        var user = new Option<string?>("--user") { Description = "The user that may log in (required with a password method; with trust, only this user may log in when given).", HelpName = "NAME" };
        var password = new Option<string?>("--password") { Description = "The user's password (or set PGSPEC_SERVE_PASSWORD, which keeps it out of the process list).", HelpName = "PASSWORD" };
        var maxProtocol = new Option<string>("--max-protocol") { Description = "The newest protocol version offered; a client asking for more gets NegotiateProtocolVersion.", HelpName = "3.0|3.2", DefaultValueFactory = _ => "3.2" };
        maxProtocol.AcceptOnlyFromAmong("3.0", "3.2");
        var trace = new Option<string?>("--trace") { Description = "Write each message of each session as libpq's PQtrace prints it (each line starts with the session's process id and a TAB) to FILE, or to standard output with '-'.", HelpName = "FILE|-" };
        var traceAppend = new Option<bool>("--trace-append") { Description = "Append to an existing --trace FILE (without it, an existing non-empty file is refused, not overwritten)." };
        var maxConnections = new Option<int>("--max-connections") { Description = "Serve at most N sessions at once; the next client gets FATAL 53300.", HelpName = "N", DefaultValueFactory = _ => 100 };
        var handshakeTimeout = new Option<double>("--handshake-timeout") { Description = "Seconds a client has to start TLS, send its startup packet and log in.", HelpName = "SECONDS", DefaultValueFactory = _ => 60 };
        var idleTimeout = new Option<double>("--idle-timeout") { Description = "End a session idle outside a transaction for this many seconds with FATAL 57P05. 0: never.", HelpName = "SECONDS", DefaultValueFactory = _ => 0 };
        var shutdownGrace = new Option<double>("--shutdown-grace") { Description = "Seconds open sessions may go on after SIGINT/SIGTERM before FATAL 57P01.", HelpName = "SECONDS", DefaultValueFactory = _ => 5 };
        var maxMessage = new Option<int>("--max-message-size") { Description = "The largest message a client may send (Query, Bind, CopyData, ...), in bytes; PostgreSQL's own limit is 1 GiB, but SQLite's work on a statement takes many times its size.", HelpName = "BYTES", DefaultValueFactory = _ => DefaultMaxMessage };
        var quiet = new Option<bool>("--quiet") { Description = "No notes about sessions on standard error." };

        var command = new PgSpecCommand("serve", Summary, Description)
        {
            listen, database, tlsCert, tlsKey, auth, user, password, maxProtocol, maxMessage, trace, traceAppend, maxConnections, handshakeTimeout, idleTimeout, shutdownGrace, quiet,
        };

        command.Validators.Add(result =>
        {
            T? Value<T>(Option<T> option) => PgSpecCommandLine.ValueInValidator(result, option);

            if ((Value(tlsCert) is null) != (Value(tlsKey) is null))
            {
                result.AddError("--tls-cert and --tls-key go together.");
            }

            if (Value(listen) is { } text && !ProxyEndpoint.TryParse(text, out ProxyEndpoint? endpoint, out string error))
            {
                result.AddError("--listen: " + error);
            }
            else if (Value(listen) is { } host && ProxyEndpoint.Parse(host).EndPoint is DnsEndPoint)
            {
                result.AddError("--listen takes an IP address (127.0.0.1, [::1], 0.0.0.0) or a socket path, not a host name.");
            }

            if (Value(auth) is { } method && method != "trust" && (Value(user) is null || (Value(password) ?? Environment.GetEnvironmentVariable("PGSPEC_SERVE_PASSWORD")) is null))
            {
                result.AddError($"--auth {method} needs --user and --password (or PGSPEC_SERVE_PASSWORD).");
            }

            if ((Value(auth) ?? "trust") == "trust" && Value(password) is not null)
            {
                result.AddError("--password applies to --auth password, md5 or scram-sha-256.");
            }

            if (Value(traceAppend) && Value(trace) is null or "-")
            {
                result.AddError("--trace-append needs a --trace FILE.");
            }

            if (result.GetResult(maxMessage) is { Implicit: false } && Value(maxMessage) is < 1024 or > 0x40000002)
            {
                result.AddError("--max-message-size is 1024 to 1073741826 bytes.");
            }

            if (result.GetResult(database) is { Implicit: false } && string.IsNullOrWhiteSpace(Value(database)))
            {
                result.AddError("--db is a file name, or :memory:.");
            }

            if (result.GetResult(maxConnections) is { Implicit: false } && Value(maxConnections) < 1)
            {
                result.AddError("--max-connections is at least 1.");
            }

            ServerOptions.CheckSeconds(result, handshakeTimeout, idleTimeout, shutdownGrace);
        });

        command.SetAction(result =>
        {
            if (!ServerOptions.TryLoadCertificate(result.GetValue(tlsCert), result.GetValue(tlsKey), stderr, out X509Certificate2? certificate))
            {
                return PgSpecCommandLine.ExitUsage;
            }

            SqliteEngine engine;
            try
            {
                engine = new SqliteEngine(result.GetValue(database)!);
            }
            catch (Exception e) when (e is SqlError or IOException or UnauthorizedAccessException or Microsoft.Data.Sqlite.SqliteException)
            {
                stderr.WriteLine($"pgspec: cannot open --db {result.GetValue(database)}: {e.Message}");
                return PgSpecCommandLine.ExitUsage;
            }

            using (engine)
            {
                string? name = result.GetValue(user);
                string? secret = result.GetValue(password) ?? Environment.GetEnvironmentVariable("PGSPEC_SERVE_PASSWORD");
                var options = new PgBackendOptions
                {
                    TlsCertificate = certificate,
                    MaxProtocolVersion = result.GetValue(maxProtocol) == "3.0" ? PgProtocolVersion.V3_0 : PgProtocolVersion.V3_2,
                    MaxConnections = result.GetValue(maxConnections),
                    HandshakeTimeout = TimeSpan.FromSeconds(result.GetValue(handshakeTimeout)),
                    IdleTimeout = result.GetValue(idleTimeout) == 0 ? Timeout.InfiniteTimeSpan : TimeSpan.FromSeconds(result.GetValue(idleTimeout)),
                    ShutdownGracePeriod = TimeSpan.FromSeconds(result.GetValue(shutdownGrace)),
                    Limits = PgLimits.Default.WithAll(PgDirection.Frontend, result.GetValue(maxMessage)),
                    Authentication = result.GetValue(auth) switch
                    {
                        "password" => PgAuthenticator.Cleartext(u => u == name ? secret : null),
                        "md5" => PgAuthenticator.Md5(u => u == name ? secret : null),
                        "scram-sha-256" => ScramOf(name!, secret!),
                        _ => name is null ? PgAuthenticator.Trust : PgAuthenticator.TrustUsers(u => u == name),
                    },
                };
                options.Parameters["server_version"] = engine.ServerVersion;
                options.Listen.Add(ProxyEndpoint.Parse(result.GetValue(listen)!).EndPoint);
                bool notes = !result.GetValue(quiet);
                if (notes)
                {
                    options.SessionEnded = (session, failure) =>
                    {
                        if (failure is not null)
                        {
                            Note(stderr, $"session {session.ProcessId} ({session.RemoteEndPoint?.ToString() ?? "local"}): {failure}");
                        }
                    };
                }

                // The trace is written by a thread of its own, through a bounded buffer (the proxy's):
                // an output that is slow, stalled or broken drops trace lines, counted and told once,
                // and never holds up a session.
                ProxyTraceStream? traceStream = null;
                if (result.GetValue(trace) is { } tracePath)
                {
                    Action<string> traceLog = text => Note(stderr, text);
                    try
                    {
                        if (tracePath == "-")
                        {
                            traceStream = new ProxyTraceStream(stdout, traceLog, leaveOpen: true);
                        }
                        else
                        {
                            (Stream first, Func<Stream> reopen) = TraceFile.Open(tracePath, result.GetValue(traceAppend));
                            traceStream = new ProxyTraceStream(first, reopen, traceLog);
                        }
                    }
                    catch (TraceFileException e)
                    {
                        stderr.WriteLine("pgspec: " + e.Message);
                        return PgSpecCommandLine.ExitUsage;
                    }

                    var serveTrace = new ServeTrace(new PqTraceSink(traceStream, new PgTraceOptions(), connectionIds: true));
                    options.Traffic = serveTrace.OnTraffic;
                    Action<PgBackendSession, string?>? ended = options.SessionEnded;
                    options.SessionEnded = (session, failure) =>
                    {
                        serveTrace.End(session, failure);
                        ended?.Invoke(session, failure);
                    };
                }

                try
                {
                    return Run(options, engine, stderr, notes);
                }
                finally
                {
                    if (traceStream is not null)
                    {
                        // What the trace has not written within a few seconds of the stop is given up.
                        if (!traceStream.Drain(TimeSpan.FromSeconds(5)))
                        {
                            traceStream.Abandon();
                        }

                        if (traceStream.DroppedBytes > 0)
                        {
                            Note(stderr, $"{traceStream.DroppedBytes} bytes of trace dropped");
                        }

                        traceStream.Dispose();
                    }
                }
            }
        });

        return command;
    }

    private static PgAuthenticator ScramOf(string user, string password)
    {
        PgScramVerifier verifier = PgScramVerifier.Create(password);
        return PgAuthenticator.ScramSha256(u => u == user ? verifier : null);
    }

    private static int Run(PgBackendOptions options, SqliteEngine engine, TextWriter stderr, bool notes)
    {
        using var stop = new CancellationTokenSource();
        int signals = 0;
        void OnStop(PosixSignalContext context)
        {
            if (Interlocked.Increment(ref signals) > 1)
            {
                // A second SIGINT/SIGTERM: no more grace, the process ends now (the default action).
                return;
            }

            context.Cancel = true;
            try
            {
                stop.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // A signal that arrives while the server has already stopped.
            }
        }

        void OnIgnored(PosixSignalContext context)
        {
            context.Cancel = true;
            if (notes)
            {
                Note(stderr, $"{context.Signal} ignored: {(context.Signal == PosixSignal.SIGHUP ? "there is nothing to reload" : "no action")} (SIGINT or SIGTERM stop the server)");
            }
        }

        using PosixSignalRegistration sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnStop);
        using PosixSignalRegistration sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnStop);
        using PosixSignalRegistration sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, OnIgnored);
        using PosixSignalRegistration? sigusr1 = OperatingSystem.IsLinux() ? PosixSignalRegistration.Create((PosixSignal)10, OnIgnored) : null;
        using PosixSignalRegistration? sigusr2 = OperatingSystem.IsLinux() ? PosixSignalRegistration.Create((PosixSignal)12, OnIgnored) : null;

        // SQLite blocks a thread while it works (and pg_sleep while it waits): enough threads from
        // the start that busy sessions do not hold up idle ones while the pool grows.
        ThreadPool.GetMinThreads(out int workers, out int completion);
        ThreadPool.SetMinThreads(Math.Max(workers, Math.Min(options.MaxConnections, 256) + Environment.ProcessorCount), completion);
        PgBackendServer server;
        try
        {
            server = PgBackendServer.Start(options, _ => new SqliteHandler(engine));
        }
        catch (Exception e) when (e is System.Net.Sockets.SocketException or IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"pgspec: cannot listen on {options.Listen[0]}: {e.Message}");
            return PgSpecCommandLine.ExitUsage;
        }

        Note(stderr, $"listening on {string.Join(", ", server.EndPoints)} ({options.Authentication.Method}, protocol up to {options.MaxProtocolVersion}, TLS {(options.TlsCertificate is null ? "off" : "on")}), database {engine.Database}; pid {Environment.ProcessId}");
        try
        {
            stop.Token.WaitHandle.WaitOne();
        }
        finally
        {
            if (notes)
            {
                Note(stderr, $"stopping: {server.ActiveSessions} open session(s) get {options.ShutdownGracePeriod.TotalSeconds.ToString(CultureInfo.InvariantCulture)} s");
            }

            // Sessions get the grace, then FATAL 57P01; a statement that does not stop within 10 s
            // more (SQLite working through a huge statement) does not keep the process alive.
            if (!server.DisposeAsync().AsTask().Wait(options.ShutdownGracePeriod + TimeSpan.FromSeconds(10)))
            {
                Note(stderr, "stopped without waiting for sessions that did not end");
                Environment.Exit(PgSpecCommandLine.ExitOk);
            }

            Note(stderr, "stopped");
        }

        return PgSpecCommandLine.ExitOk;
    }

    private static void Note(TextWriter stderr, string text)
    {
        lock (stderr)
        {
            stderr.WriteLine($"pgspec serve: {text}");
            stderr.Flush();
        }
    }
}

/// <summary>Traces each session's messages as libpq's PQtrace does, naming each from the session's own flow.</summary>
internal sealed class ServeTrace(IProxyTraceSink sink)
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<PgBackendSession, State> _states = new();

    public void OnTraffic(PgBackendSession session, PgDirection direction, ReadOnlySpan<byte> raw)
    {
        State state = _states.GetOrAdd(session, _ => new State());
        lock (state)
        {
            PgMessageReader reader = direction == PgDirection.Frontend ? state.Frontend : state.Backend;
            if (reader.TryRead(raw, out _, out PgReceivedMessage message, out _) == PgReadStatus.Message)
            {
                sink.Write(session.ProcessId, message, state.Context);
            }
        }
    }

    public void End(PgBackendSession session, string? failure)
    {
        if (_states.TryRemove(session, out _))
        {
            sink.EndConnection(session.ProcessId, failure);
        }
    }

    private sealed class State
    {
        public State()
        {
            Frontend = new PgMessageReader(PgDirection.Frontend, Context) { Validate = false };
            Backend = new PgMessageReader(PgDirection.Backend, Context) { Validate = false };
        }

        public DecodeContext Context { get; } = new() { Limits = PgLimits.Default.WithAll(PgDirection.Frontend, int.MaxValue).WithAll(PgDirection.Backend, int.MaxValue) };

        public PgMessageReader Frontend { get; }

        public PgMessageReader Backend { get; }
    }
}
