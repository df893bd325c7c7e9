using System.Globalization;
using System.Text.RegularExpressions;
using PgSpec.Cli.Tests.RealServer;
using PgSpec.Client;
using PgSpec.Protocol;
using PgSpec.Proxy.Tests;
using PgSpec.Servers;

namespace PgSpec.Cli.Tests.Capture;

/// <summary>The capture tests that share <see cref="ProxiedSessions"/>.</summary>
[CollectionDefinition(Name)]
public sealed class ProxiedSessionsCollection : ICollectionFixture<ProxiedSessions>
{
    public const string Name = "proxied sessions";
}

/// <summary>
/// Real sessions of real clients with PostgreSQL 15 and 18, each server behind a
/// <c>pgspec proxy</c> of its own (listening on IPv6 loopback, tracing every message), all
/// captured by tcpdump on every interface (<c>-i any</c>, Linux cooked v2): both the clients'
/// connections to the proxies (IPv6) and the proxies' connections to the servers (IPv4).
/// </summary>
/// <remarks>
/// The sessions, each named by its application_name (the proxy passes the startup packet on as
/// it is, so the server side carries the same name):
/// <list type="bullet">
/// <item>psql 15 with SCRAM against each server (<see cref="Psql15"/>, <see cref="Psql18"/>): an
/// SSLRequest the proxy answers 'N', simple queries, a notice, an error, a transaction, COPY FROM
/// STDIN and TO STDOUT, LISTEN/NOTIFY, and results of hundreds of kilobytes (messages over many
/// TCP segments).</item>
/// <item>psycopg 3 pipelines (<see cref="PipelineSession"/>): libpq 15 against both servers (MD5,
/// cleartext password), and libpq 18 asking for protocol 3.2 against both (PostgreSQL 15 answers
/// NegotiateProtocolVersion; 18 speaks 3.2 with its 32-byte cancel key).</item>
/// <item>pgbench (prepared statements, two clients) against PostgreSQL 15.</item>
/// <item>PgSpec's own client (<see cref="Protocol32"/>) against PostgreSQL 18: a GSSENCRequest
/// the proxy answers 'N', protocol 3.2, the extended protocol, a function call, COPY both ways and
/// a cancel (a connection of its own, with the 32-byte key), with every message it sent and
/// received recorded in <see cref="Protocol32Traffic"/>.</item>
/// <item>pg_recvlogical 15 (<see cref="Replication"/>): a slot created with pgoutput, then a stream
/// of inserts, an update and a delete, until the end position.</item>
/// </list>
/// </remarks>
public sealed class ProxiedSessions : IAsyncLifetime
{
    public const string Psql15 = "psql-pg15";
    public const string Psql18 = "psql-pg18";
    public const string Protocol32 = "pgspec-client-3.2";
    public const string Replication = "pg_recvlogical";
    public const string Pgbench = "pgbench";

    /// <summary>The psql script: every kind of simple-query traffic, and large results.</summary>
    private const string PsqlScript = """
        SELECT 1 AS a, 'x' AS b, NULL AS c;
        DO $$ BEGIN RAISE NOTICE 'a notice'; END $$;
        SELECT 1/0;
        BEGIN;
        CREATE TEMP TABLE t (a int, b text);
        COMMIT;
        COPY t FROM STDIN;
        1	one
        2	\N
        \.
        COPY t TO STDOUT;
        SELECT 1 \; SELECT 'two';
        LISTEN ch;
        NOTIFY ch, 'payload';
        \o /dev/null
        SELECT g, repeat('y', 300) FROM generate_series(1, 3000) g;
        SELECT repeat('z', 200000);
        COPY (SELECT g, repeat('w', 100) FROM generate_series(1, 2000) g) TO STDOUT;
        \o
        SELECT 'end';

        """;

    private readonly TempDirectory _dir = new();
    private readonly List<PgTraffic> _protocol32Traffic = [];
    private string _bin = "";

    public PgServer Pg15 { get; private set; } = null!;

    public PgServer Pg18 { get; private set; } = null!;

    /// <summary>The port of the proxy in front of PostgreSQL 15 (on [::1]).</summary>
    public int Proxy15Port { get; private set; }

    /// <summary>The port of the proxy in front of PostgreSQL 18 (on [::1]).</summary>
    public int Proxy18Port { get; private set; }

    /// <summary>The pcap file (Linux cooked v2) of every connection to the proxies and to the servers.</summary>
    public string CaptureFile { get; private set; } = "";

    /// <summary>The trace (<c>--connection-ids --show-secrets</c>) of the proxy in front of PostgreSQL 15.</summary>
    public string Proxy15Trace { get; private set; } = "";

    /// <summary>The trace (<c>--connection-ids --show-secrets</c>) of the proxy in front of PostgreSQL 18.</summary>
    public string Proxy18Trace { get; private set; } = "";

    /// <summary>Every message the <see cref="Protocol32"/> session sent and received, in order.</summary>
    public IReadOnlyList<PgTraffic> Protocol32Traffic
    {
        get
        {
            lock (_protocol32Traffic)
            {
                return [.. _protocol32Traffic];
            }
        }
    }

    /// <summary>The four ports whose connections the capture holds: the proxies' and the servers'.</summary>
    public int[] Ports => [Proxy15Port, Proxy18Port, Pg15.Port, Pg18.Port];

    /// <summary>The application_name of a pipeline session: libpq's version, the protocol asked for, the server.</summary>
    public static string PipelineSession(int libpq, int server) => $"pipeline-libpq{libpq}{(libpq == 18 ? "-3.2" : "")}-pg{server}";

    public async Task InitializeAsync()
    {
        Task<PgServer> starting15 = new LocalPgServerProvider().StartAsync(new PgServerOptions { MajorVersion = 15 }, CancellationToken.None);
        Task<PgServer> starting18 = new LocalPgServerProvider().StartAsync(new PgServerOptions { MajorVersion = 18 }, CancellationToken.None);
        try
        {
            Pg15 = await starting15;
        }
        finally
        {
            Pg18 = await starting18;
        }

        // The client programs of the PostgreSQL 15 binaries that run the server (PostgreSQL 18's
        // package has no client programs).
        PgBinaries binaries = await PgBinaries.FindLocalAsync(15, CancellationToken.None) ?? throw new InvalidOperationException("the PostgreSQL 15 binaries that started the server are gone");
        _bin = binaries.BinDirectory;

        // Before the capture: pgbench's tables, and the table and publication of the replication stream.
        PgRole trust = Pg15.Role(PgAuthMethod.Trust);
        ExternalProcess.RunChecked(Path.Combine(_bin, "pgbench"), ["-i", "-q", "-s", "1", "-h", Pg15.Host, "-p", Port(Pg15.Port), "-U", trust.Name, "postgres"]);
        Psql(Pg15.Host, Pg15.Port, "postgres", "", "setup", $"CREATE TABLE repl (id int PRIMARY KEY, v text); CREATE PUBLICATION pub FOR TABLE repl; GRANT SELECT ON repl TO {Pg15.ReplicationRole.Name};");

        string trace15 = Path.Combine(_dir.Path, "proxy15.trace");
        string trace18 = Path.Combine(_dir.Path, "proxy18.trace");
        await using ProxyProcess proxy15 = await StartProxyAsync(Pg15, trace15);
        await using ProxyProcess proxy18 = await StartProxyAsync(Pg18, trace18);
        Proxy15Port = await proxy15.ListeningPortAsync();
        Proxy18Port = await proxy18.ListeningPortAsync();

        CaptureFile = Path.Combine(_dir.Path, "sessions.pcap");
        string filter = string.Join(" or ", Ports.Select(port => "tcp port " + Port(port)));
        // A kernel buffer of 128 MiB: on a busy machine tcpdump may be kept waiting while hundreds
        // of kilobytes go by twice (on both sides of the proxies).
        using (Tcpdump.Start(["-i", "any", "--immediate-mode", "-U", "-B", "131072", "-w", CaptureFile, filter]))
        {
            RunPsql();
            RunPipelines();
            RunPgbench();
            await RunProtocol32SessionAsync();
            RunReplication();
            Tcpdump.WaitForEnds(CaptureFile, TimeSpan.FromSeconds(30));
        }

        // SIGTERM: the proxies write out their traces and stop.
        foreach (ProxyProcess proxy in new[] { proxy15, proxy18 })
        {
            (int exitCode, _) = await proxy.StopAsync();
            Assert.True(exitCode == 0, "the proxy failed: " + proxy.Stderr);
        }

        Proxy15Trace = File.ReadAllText(trace15);
        Proxy18Trace = File.ReadAllText(trace18);
    }

    public async Task DisposeAsync()
    {
        foreach (PgServer? server in new[] { Pg15, Pg18 })
        {
            if (server is not null)
            {
                await server.DisposeAsync();
            }
        }

        _dir.Dispose();
    }

    private static string Port(int port) => port.ToString(CultureInfo.InvariantCulture);

    private static async Task<ProxyProcess> StartProxyAsync(PgServer server, string trace)
        => await ProxyProcess.StartAsync("--listen", "[::1]:0", "--upstream", $"{server.Host}:{Port(server.Port)}", "--trace", trace, "--connection-ids", "--show-secrets", "--quiet");

    /// <summary>
    /// psql 15 runs <paramref name="sql"/> (a script file's text) and must exit 0: through a proxy
    /// (on [::1]) with psql's defaults, errors going on; to a server directly (preparing the
    /// sessions) without TLS, stopping at an error.
    /// </summary>
    private ProcessOutput Psql(string host, int port, string user, string password, string application, string sql)
    {
        bool direct = host != "::1";
        string script = Path.Combine(_dir.Path, application + ".sql");
        File.WriteAllText(script, sql);
        return ExternalProcess.RunChecked(
            Path.Combine(_bin, "psql"),
            ["-X", "-v", "ON_ERROR_STOP=" + (direct ? "1" : "0"), "-h", host, "-p", Port(port), "-U", user, "-d", "postgres", "-f", script],
            environment: new Dictionary<string, string> { ["PGPASSWORD"] = password, ["PGAPPNAME"] = application, ["PGCONNECT_TIMEOUT"] = "30", ["PGSSLMODE"] = direct ? "disable" : "prefer" });
    }

    private void RunPsql()
    {
        foreach ((PgServer server, int proxy, string name) in new[] { (Pg15, Proxy15Port, Psql15), (Pg18, Proxy18Port, Psql18) })
        {
            PgRole role = server.Role(PgAuthMethod.ScramSha256);
            ProcessOutput psql = Psql("::1", proxy, role.Name, role.Password, name, PsqlScript);
            Assert.Contains("division by zero", psql.Stderr, StringComparison.Ordinal);
            Assert.Contains("end", psql.Stdout, StringComparison.Ordinal);
        }
    }

    private void RunPipelines()
    {
        string script = Path.Combine(AppContext.BaseDirectory, "Scripts", "pipeline_session.py");
        foreach (int libpq in new[] { 15, 18 })
        {
            foreach ((PgServer server, int proxy) in new[] { (Pg15, Proxy15Port), (Pg18, Proxy18Port) })
            {
                // libpq 15 logs in with MD5 and with a cleartext password; libpq 18 as trust and with SCRAM.
                PgRole role = server.Role((libpq, server.MajorVersion) switch
                {
                    (15, 15) => PgAuthMethod.Md5,
                    (15, _) => PgAuthMethod.Password,
                    (_, 15) => PgAuthMethod.Trust,
                    _ => PgAuthMethod.ScramSha256,
                });
                string name = PipelineSession(libpq, server.MajorVersion);
                string conninfo = $"host=::1 port={Port(proxy)} user={role.Name} dbname=postgres application_name={name} sslmode=disable gssencmode=disable";
                if (role.Password.Length > 0)
                {
                    conninfo += " password=" + role.Password;
                }

                var environment = new Dictionary<string, string> { ["PSYCOPG_IMPL"] = "python", ["PGCONNECT_TIMEOUT"] = "30" };
                if (libpq == 18)
                {
                    conninfo += " max_protocol_version=3.2";
                    environment["LD_LIBRARY_PATH"] = Libpq18.LibraryDirectory;
                }

                ProcessOutput client = ExternalProcess.RunChecked(Libpq18.Python, [script, conninfo], environment: environment);
                Assert.Contains($"libpq {Port(libpq)}", client.Stdout, StringComparison.Ordinal);
                Assert.Contains("error 22012", client.Stdout, StringComparison.Ordinal);
            }
        }
    }

    private void RunPgbench()
    {
        PgRole trust = Pg15.Role(PgAuthMethod.Trust);
        ProcessOutput pgbench = ExternalProcess.RunChecked(
            Path.Combine(_bin, "pgbench"),
            ["-n", "-M", "prepared", "-c", "2", "-t", "25", "-h", "::1", "-p", Port(Proxy15Port), "-U", trust.Name, "postgres"],
            environment: new Dictionary<string, string> { ["PGAPPNAME"] = Pgbench, ["PGSSLMODE"] = "disable" });
        Assert.Contains("number of transactions actually processed: 50/50", pgbench.Stdout, StringComparison.Ordinal);
    }

    /// <summary>
    /// PgSpec's client through the proxy to PostgreSQL 18: GSSENCRequest, protocol 3.2, queries,
    /// a function call, COPY both ways, and a cancel sent once the server runs the sleep (as
    /// pg_stat_activity shows it to a probe connected to the server directly).
    /// </summary>
    private async Task RunProtocol32SessionAsync()
    {
        var options = new PgConnectOptions
        {
            Host = "::1",
            Port = Proxy18Port,
            User = Pg18.Role(PgAuthMethod.Trust).Name,
            Database = "postgres",
            SslMode = PgSslMode.Disable,
            RequestGssEncryption = true,
            ProtocolVersion = PgProtocolVersion.V3_2,
            Parameters = [new("application_name", Protocol32)],
        };
        var probeOptions = options with { Host = Pg18.Host, Port = Pg18.Port, RequestGssEncryption = false, ProtocolVersion = PgProtocolVersion.V3_0, Parameters = [new("application_name", "probe")] };
        await using PgFrontendSession session = await PgFrontendSession.ConnectAsync(options, traffic => { lock (_protocol32Traffic) { _protocol32Traffic.Add(traffic with { Raw = traffic.Raw.ToArray() }); } });
        await using PgFrontendSession probe = await PgFrontendSession.ConnectAsync(probeOptions);
        Assert.Equal(PgProtocolVersion.V3_2, session.ProtocolVersion);
        Assert.Equal(32, session.SecretKey.Length);

        await session.QueryAsync("CREATE TEMP TABLE t (a int, b text); INSERT INTO t VALUES (1, 'one'), (2, NULL)");
        await session.ExecuteAsync("SELECT a, b FROM t WHERE a >= $1", [(ReadOnlyMemory<byte>?)"1"u8.ToArray()]);
        uint int4pl = uint.Parse((await probe.QueryAsync("SELECT 'int4pl(int4, int4)'::regprocedure::oid"))[0].Text(0, 0)!, CultureInfo.InvariantCulture);
        ReadOnlyMemory<byte>? sum = await session.CallFunctionAsync(int4pl, [(ReadOnlyMemory<byte>?)"40"u8.ToArray(), (ReadOnlyMemory<byte>?)"2"u8.ToArray()]);
        Assert.Equal("42", System.Text.Encoding.ASCII.GetString(sum!.Value.Span));
        await session.QueryAsync("COPY t FROM STDIN", [(ReadOnlyMemory<byte>)"3\tthree\n"u8.ToArray()]);
        await session.QueryAsync("COPY t TO STDOUT");

        // A statement described (ParameterDescription) and closed, answered on Flush before the
        // Sync; a COPY the client fails (CopyFail).
        IReadOnlyList<IBackendMessage> described = await session.RoundTripAsync(
            [new Parse("s1", "SELECT $1::int + 1", []), new Describe(StatementOrPortal.Statement, "s1"), new Flush()],
            until: reply => reply is RowDescription or ErrorResponse);
        Assert.Contains(described, reply => reply is ParameterDescription);
        IReadOnlyList<IBackendMessage> closed = await session.RoundTripAsync([new Close(StatementOrPortal.Statement, "s1"), new Sync()]);
        Assert.Contains(closed, reply => reply is CloseComplete);
        await session.RoundTripAsync([new Query("COPY t FROM STDIN")], until: reply => reply is CopyInResponse);
        IReadOnlyList<IBackendMessage> failed = await session.RoundTripAsync([new CopyFail("the client gives up")], until: reply => reply is ReadyForQuery);
        Assert.Contains(failed, reply => reply is ErrorResponse);

        Task sleeping = session.QueryAsync("SELECT pg_sleep(60)");
        string waiting = $"SELECT 1 FROM pg_stat_activity WHERE pid = {session.ProcessId.ToString(CultureInfo.InvariantCulture)} AND wait_event = 'PgSleep'";
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while ((await probe.QueryAsync(waiting))[0].Rows.Count == 0 && DateTime.UtcNow < deadline)
        {
        }

        await session.CancelAsync();
        PgServerException error = await Assert.ThrowsAsync<PgServerException>(() => sleeping);
        Assert.Equal("57014", error.SqlState);
    }

    /// <summary>
    /// pg_recvlogical 15 through the proxy: a slot with pgoutput, then the changes of two
    /// transactions (three inserts; an update and a delete) streamed up to the WAL position after
    /// them, where pg_recvlogical stops by itself.
    /// </summary>
    private void RunReplication()
    {
        PgRole role = Pg15.ReplicationRole;
        var environment = new Dictionary<string, string> { ["PGPASSWORD"] = role.Password, ["PGAPPNAME"] = Replication, ["PGSSLMODE"] = "disable", ["PGCONNECT_TIMEOUT"] = "30" };
        string[] connection = ["-h", "::1", "-p", Port(Proxy15Port), "-U", role.Name, "-d", "postgres", "--slot", "capture_slot"];
        ExternalProcess.RunChecked(Path.Combine(_bin, "pg_recvlogical"), [.. connection, "--create-slot", "-P", "pgoutput"], environment: environment);

        // The server streams only WAL that is flushed: the changes commit synchronously (the
        // servers' default is off), or the end position could be reached before they are sent.
        ProcessOutput changes = Psql(Pg15.Host, Pg15.Port, "postgres", "", "changes", """
            SET synchronous_commit = on;
            INSERT INTO repl VALUES (1, 'one'), (2, 'two'), (3, 'three');
            BEGIN; UPDATE repl SET v = 'TWO' WHERE id = 2; DELETE FROM repl WHERE id = 3; COMMIT;
            SELECT 'end ' || pg_current_wal_lsn();
            """);
        string end = Regex.Match(changes.Stdout, @"end ([0-9A-F]+/[0-9A-F]+)").Groups[1].Value;
        string output = Path.Combine(_dir.Path, "changes.bin");
        ProcessOutput received = ExternalProcess.RunChecked(
            Path.Combine(_bin, "pg_recvlogical"),
            [.. connection, "--start", "--verbose", "--no-loop", "--endpos", end, "-o", "proto_version=1", "-o", "publication_names=pub", "-f", output],
            environment: environment);

        // pgoutput's messages as written: a Delete ('D') of the relation follows the Update ('U').
        byte[] stream = File.ReadAllBytes(output);
        Assert.True(stream.Contains((byte)'U'), received.ToString());
        Assert.Contains((byte)'D', stream);
    }
}
