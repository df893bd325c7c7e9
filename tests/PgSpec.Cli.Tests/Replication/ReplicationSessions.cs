using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using PgSpec.Cli.Tests.Capture;
using PgSpec.Cli.Tests.RealServer;
using PgSpec.Client;
using PgSpec.Proxy.Tests;
using PgSpec.Servers;

namespace PgSpec.Cli.Tests.Replication;

/// <summary>The replication tests that share <see cref="ReplicationSessions"/>.</summary>
[CollectionDefinition(Name)]
public sealed class ReplicationSessionsCollection : ICollectionFixture<ReplicationSessions>
{
    public const string Name = "replication sessions";
}

/// <summary>
/// Replication sessions of PostgreSQL's own clients against PostgreSQL 15 and 18, each server behind
/// a <c>pgspec proxy --trace-replication</c> of its own (listening on IPv6 loopback), captured by
/// tcpdump; and one logical session through a relay that records both directions' bytes, for
/// <c>pgspec decode</c>.
/// </summary>
/// <remarks>
/// Each session is named by its application_name:
/// <list type="bullet">
/// <item><see cref="Pgoutput1"/>: pg_recvlogical 15 creates a pgoutput slot and starts it on the same
/// connection (the plugin is seen), proto_version 1, against PostgreSQL 15: three inserts, then an
/// update and a delete in one transaction, then a logical decoding message that ends the session.</item>
/// <item><see cref="Pgoutput2"/>: against PostgreSQL 15, a slot created on another connection (the
/// plugin is not seen: pgoutput's options decide), proto_version 2, streaming on, with
/// logical_decoding_work_mem at 64kB: a transaction of 400 kB is streamed.</item>
/// <item><see cref="Pgoutput4"/>: against PostgreSQL 18, proto_version 4, streaming parallel, binary:
/// a streamed transaction that commits, and one rolled back once a block of it was streamed (Stream
/// Abort with its LSN and time).</item>
/// <item><see cref="Physical"/>: pg_receivewal 15 against PostgreSQL 15 (wal_sender_timeout 2s, so
/// that keepalives come at once), until a keepalive was traced.</item>
/// <item><see cref="TestDecoding"/>: pg_recvlogical 15 with a test_decoding slot created and started
/// on the same connection, against PostgreSQL 15: an insert.</item>
/// <item><see cref="Recorded"/>: pg_recvlogical 15 (the slot created beforehand), proto_version 1,
/// through <see cref="RecordingRelay"/> to PostgreSQL 15 up to an end position.</item>
/// </list>
/// </remarks>
public sealed class ReplicationSessions : IAsyncLifetime
{
    public const string Pgoutput1 = "repl-pgoutput-v1";
    public const string Pgoutput2 = "repl-pgoutput-v2";
    public const string Pgoutput4 = "repl-pgoutput-v4";
    public const string Physical = "repl-physical";
    public const string TestDecoding = "repl-test-decoding";
    public const string Recorded = "repl-recorded";

    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    private readonly TempDirectory _dir = new();
    private string _bin = "";

    public PgServer Pg15 { get; private set; } = null!;

    public PgServer Pg18 { get; private set; } = null!;

    public int Proxy15Port { get; private set; }

    public int Proxy18Port { get; private set; }

    /// <summary>The pcap file (Linux cooked v2) of the clients' connections to the proxies.</summary>
    public string CaptureFile { get; private set; } = "";

    /// <summary>The trace (<c>--connection-ids --trace-replication</c>) of the proxy in front of PostgreSQL 15.</summary>
    public string Proxy15Trace { get; private set; } = "";

    /// <summary>The trace (<c>--connection-ids --trace-replication</c>) of the proxy in front of PostgreSQL 18.</summary>
    public string Proxy18Trace { get; private set; } = "";

    /// <summary>What the <see cref="Recorded"/> session's client sent.</summary>
    public string RecordedFrontend { get; private set; } = "";

    /// <summary>What the <see cref="Recorded"/> session's server sent.</summary>
    public string RecordedBackend { get; private set; } = "";

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

        PgBinaries binaries = await PgBinaries.FindLocalAsync(15, CancellationToken.None) ?? throw new InvalidOperationException("the PostgreSQL 15 binaries that started the server are gone");
        _bin = binaries.BinDirectory;
        foreach (PgServer server in new[] { Pg15, Pg18 })
        {
            await AdminAsync(server, $"""
                CREATE TABLE repl (id int PRIMARY KEY, v text);
                CREATE TABLE big (a int, b text);
                CREATE PUBLICATION pub FOR TABLE repl, big;
                GRANT SELECT ON repl, big TO {server.ReplicationRole.Name};
                """);
        }

        await RunRecordedAsync();

        string trace15 = Path.Combine(_dir.Path, "proxy15.trace");
        string trace18 = Path.Combine(_dir.Path, "proxy18.trace");
        await using ProxyProcess proxy15 = await StartProxyAsync(Pg15, trace15);
        await using ProxyProcess proxy18 = await StartProxyAsync(Pg18, trace18);
        Proxy15Port = await proxy15.ListeningPortAsync();
        Proxy18Port = await proxy18.ListeningPortAsync();

        CaptureFile = Path.Combine(_dir.Path, "replication.pcap");
        using (Tcpdump.Start(["-i", "any", "--immediate-mode", "-U", "-B", "32768", "-w", CaptureFile, $"tcp port {Port(Proxy15Port)} or tcp port {Port(Proxy18Port)}"]))
        {
            await RunPgoutput1Async(trace15);
            await RunPgoutput2Async(trace15);
            await RunPgoutput4Async(trace18);
            await RunPhysicalAsync(trace15);
            await RunTestDecodingAsync(trace15);
            Tcpdump.WaitForEnds(CaptureFile, TimeSpan.FromSeconds(30));
        }

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

    /// <summary>Runs each Query as the superuser, in turn (each a transaction of its own, unless it says otherwise).</summary>
    private static async Task AdminAsync(PgServer server, params string[] queries)
    {
        await using PgFrontendSession admin = await PgFrontendSession.ConnectAsync(new PgConnectOptions { UnixSocketPath = server.SocketPath!, User = "postgres", Database = "postgres", CommandTimeout = Limit });
        foreach (string sql in queries)
        {
            await admin.QueryAsync(sql);
        }
    }

    private static async Task<ProxyProcess> StartProxyAsync(PgServer server, string trace)
        => await ProxyProcess.StartAsync("--listen", "[::1]:0", "--upstream", $"{server.Host}:{Port(server.Port)}", "--trace", trace, "--connection-ids", "--trace-replication", "--quiet");

    private Dictionary<string, string> Environment(PgServer server, string application, string? options = null)
    {
        var environment = new Dictionary<string, string>
        {
            ["PGPASSWORD"] = server.ReplicationRole.Password,
            ["PGAPPNAME"] = application,
            ["PGSSLMODE"] = "disable",
            ["PGCONNECT_TIMEOUT"] = "30",
        };
        if (options is not null)
        {
            environment["PGOPTIONS"] = options;
        }

        return environment;
    }

    private string[] Through(int port, PgServer server) => ["-h", "::1", "-p", Port(port), "-U", server.ReplicationRole.Name, "-d", "postgres"];

    /// <summary>pgoutput, proto_version 1, the slot created and started on one connection.</summary>
    private async Task RunPgoutput1Async(string trace)
    {
        using BackgroundProcess client = BackgroundProcess.Start(
            Path.Combine(_bin, "pg_recvlogical"),
            [.. Through(Proxy15Port, Pg15), "--slot", "s1", "--create-slot", "--start", "-P", "pgoutput", "-o", "proto_version=1", "-o", "publication_names=pub", "-o", "messages=true", "-s", "1", "-f", Path.Combine(_dir.Path, "s1.out")],
            Environment(Pg15, Pgoutput1));
        await WaitForSlotAsync(Pg15, "s1", client);
        await AdminAsync(
            Pg15,
            "INSERT INTO repl VALUES (1, 'one'), (2, 'two'), (3, 'three')",
            "BEGIN; UPDATE repl SET v = 'TWO' WHERE id = 2; DELETE FROM repl WHERE id = 3; COMMIT",
            "SELECT pg_logical_emit_message(false, 'pgspec', 'done-v1')");
        await WaitForTraceAsync(trace, text => text.Contains("'done-v1'", StringComparison.Ordinal), client);
        await client.InterruptAsync();
    }

    /// <summary>pgoutput, proto_version 2, streaming on; the slot created on a connection of its own.</summary>
    private async Task RunPgoutput2Async(string trace)
    {
        ExternalProcess.RunChecked(Path.Combine(_bin, "pg_recvlogical"), [.. Through(Proxy15Port, Pg15), "--slot", "s2", "--create-slot", "-P", "pgoutput"], environment: Environment(Pg15, Pgoutput2 + "-create"));
        using BackgroundProcess client = BackgroundProcess.Start(
            Path.Combine(_bin, "pg_recvlogical"),
            [.. Through(Proxy15Port, Pg15), "--slot", "s2", "--start", "-o", "proto_version=2", "-o", "publication_names=pub", "-o", "messages=true", "-o", "streaming=on", "-s", "1", "-f", Path.Combine(_dir.Path, "s2.out")],
            Environment(Pg15, Pgoutput2, "-c logical_decoding_work_mem=64kB"));
        await WaitForSlotAsync(Pg15, "s2", client);
        await AdminAsync(
            Pg15,
            "INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 2000) g",
            "SELECT pg_logical_emit_message(false, 'pgspec', 'done-v2')");
        await WaitForTraceAsync(trace, text => text.Contains("'done-v2'", StringComparison.Ordinal), client);
        await client.InterruptAsync();
    }

    /// <summary>pgoutput, proto_version 4, streaming parallel, binary: a streamed commit and a streamed abort.</summary>
    private async Task RunPgoutput4Async(string trace)
    {
        ExternalProcess.RunChecked(Path.Combine(_bin, "pg_recvlogical"), [.. Through(Proxy18Port, Pg18), "--slot", "s4", "--create-slot", "-P", "pgoutput"], environment: Environment(Pg18, Pgoutput4 + "-create"));
        using BackgroundProcess client = BackgroundProcess.Start(
            Path.Combine(_bin, "pg_recvlogical"),
            [.. Through(Proxy18Port, Pg18), "--slot", "s4", "--start", "-o", "proto_version=4", "-o", "publication_names=pub", "-o", "messages=true", "-o", "streaming=parallel", "-o", "binary=true", "-s", "1", "-f", Path.Combine(_dir.Path, "s4.out")],
            Environment(Pg18, Pgoutput4, "-c logical_decoding_work_mem=64kB"));
        await WaitForSlotAsync(Pg18, "s4", client);
        await AdminAsync(Pg18, "INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 2000) g");
        await WaitForTraceAsync(trace, text => text.Contains("\tStreamCommit\t", StringComparison.Ordinal), client);

        // A transaction rolled back once a block of it was streamed (PostgreSQL streams no
        // transaction already known to have aborted): Stream Abort, with its LSN and time.
        await using PgFrontendSession writer = await PgFrontendSession.ConnectAsync(new PgConnectOptions { UnixSocketPath = Pg18.SocketPath!, User = "postgres", Database = "postgres", CommandTimeout = Limit });
        int stops = Regex.Count(File.ReadAllText(trace), @"\tStreamStop\b");
        await writer.QueryAsync("BEGIN; INSERT INTO big SELECT g, repeat('y', 200) FROM generate_series(1, 2000) g");
        await WaitForTraceAsync(trace, text => Regex.Count(text, @"\tStreamStop\b") > stops, client);
        await writer.QueryAsync("ROLLBACK");
        await writer.QueryAsync("SELECT pg_logical_emit_message(false, 'pgspec', 'done-v4')");
        await WaitForTraceAsync(trace, text => text.Contains("'done-v4'", StringComparison.Ordinal), client);
        await client.InterruptAsync();
    }

    /// <summary>pg_receivewal, from a fresh WAL segment, until a keepalive has been traced.</summary>
    private async Task RunPhysicalAsync(string trace)
    {
        await AdminAsync(Pg15, "SELECT pg_switch_wal()", "INSERT INTO repl VALUES (10, 'wal')");
        string wal = Path.Combine(_dir.Path, "wal");
        Directory.CreateDirectory(wal);
        if (System.Environment.IsPrivilegedProcess)
        {
            ExternalProcess.RunChecked("/bin/chmod", ["777", wal]);
        }

        using BackgroundProcess client = BackgroundProcess.Start(
            Path.Combine(_bin, "pg_receivewal"),
            ["-h", "::1", "-p", Port(Proxy15Port), "-U", Pg15.ReplicationRole.Name, "-D", wal, "-n", "--no-sync", "-s", "1"],
            Environment(Pg15, Physical, "-c wal_sender_timeout=2s"));
        await WaitForTraceAsync(trace, text => TraceLines.Connections(text).Any(c => c.Application == Physical && c.Backend.Any(m => m.Below.Any(b => b.Contains("\tPrimaryKeepalive\t", StringComparison.Ordinal)))), client);
        await client.InterruptAsync();
    }

    /// <summary>A test_decoding slot, created and started on one connection.</summary>
    private async Task RunTestDecodingAsync(string trace)
    {
        using BackgroundProcess client = BackgroundProcess.Start(
            Path.Combine(_bin, "pg_recvlogical"),
            [.. Through(Proxy15Port, Pg15), "--slot", "td", "--create-slot", "--start", "-P", "test_decoding", "-s", "1", "-f", Path.Combine(_dir.Path, "td.out")],
            Environment(Pg15, TestDecoding));
        await WaitForSlotAsync(Pg15, "td", client);
        await AdminAsync(Pg15, "INSERT INTO repl VALUES (20, 'decoded as text')");
        await WaitForTraceAsync(trace, text => text.Contains("decoded as text", StringComparison.Ordinal) && text.Contains("COMMIT", StringComparison.Ordinal), client);
        await client.InterruptAsync();
    }

    /// <summary>pgoutput, proto_version 1, through a relay that records both directions, up to an end position.</summary>
    private async Task RunRecordedAsync()
    {
        string[] direct = ["-h", Pg15.Host, "-p", Port(Pg15.Port), "-U", Pg15.ReplicationRole.Name, "-d", "postgres", "--slot", "rec"];
        ExternalProcess.RunChecked(Path.Combine(_bin, "pg_recvlogical"), [.. direct, "--create-slot", "-P", "pgoutput"], environment: Environment(Pg15, Recorded + "-create"));
        await using (PgFrontendSession admin = await PgFrontendSession.ConnectAsync(new PgConnectOptions { UnixSocketPath = Pg15.SocketPath!, User = "postgres", Database = "postgres", CommandTimeout = Limit }))
        {
            // The server streams only WAL that is flushed: the changes commit synchronously.
            await admin.QueryAsync("SET synchronous_commit = on");
            await admin.QueryAsync("INSERT INTO repl VALUES (101, 'one hundred one'), (102, NULL)");
            await admin.QueryAsync("UPDATE repl SET v = 'changed' WHERE id = 102");
            string end = (await admin.QueryAsync("SELECT pg_current_wal_lsn()::text"))[0].Text(0, 0)!;
            using var relay = new RecordingRelay(Pg15.Host, Pg15.Port);
            ExternalProcess.RunChecked(
                Path.Combine(_bin, "pg_recvlogical"),
                ["-h", "127.0.0.1", "-p", Port(relay.Port), "-U", Pg15.ReplicationRole.Name, "-d", "postgres", "--slot", "rec", "--start", "--no-loop", "--endpos", end, "-o", "proto_version=1", "-o", "publication_names=pub", "-f", Path.Combine(_dir.Path, "rec.out")],
                environment: Environment(Pg15, Recorded));
            await relay.Completion.WaitAsync(Limit);
            RecordedFrontend = Path.Combine(_dir.Path, "recorded-frontend.bin");
            RecordedBackend = Path.Combine(_dir.Path, "recorded-backend.bin");
            File.WriteAllBytes(RecordedFrontend, relay.FrontendBytes);
            File.WriteAllBytes(RecordedBackend, relay.BackendBytes);
        }
    }

    /// <summary>Waits until the slot is in use (the client streams from it), or the client exits.</summary>
    private static async Task WaitForSlotAsync(PgServer server, string slot, BackgroundProcess client)
    {
        await using PgFrontendSession admin = await PgFrontendSession.ConnectAsync(new PgConnectOptions { UnixSocketPath = server.SocketPath!, User = "postgres", Database = "postgres", CommandTimeout = Limit });
        var waiting = Stopwatch.StartNew();
        while ((await admin.QueryAsync($"SELECT 1 FROM pg_replication_slots WHERE slot_name = '{slot}' AND active"))[0].Rows.Count == 0)
        {
            Assert.False(client.HasExited, $"the client exited before streaming from {slot}: {client.Output}");
            Assert.True(waiting.Elapsed < Limit, $"slot {slot} was not streamed from within {Limit}: {client.Output}");
            await Task.Delay(20);
        }
    }

    /// <summary>Waits until the proxy's trace file says what <paramref name="done"/> looks for.</summary>
    private static async Task WaitForTraceAsync(string trace, Func<string, bool> done, BackgroundProcess client)
    {
        var waiting = Stopwatch.StartNew();
        while (!done(File.Exists(trace) ? File.ReadAllText(trace) : ""))
        {
            Assert.False(client.HasExited, "the client exited early: " + client.Output);
            Assert.True(waiting.Elapsed < Limit, $"the trace did not show what was waited for within {Limit}; the client: {client.Output}");
            await Task.Delay(20);
        }
    }
}

/// <summary>A client program run in the background, stopped with SIGINT as a person stops it.</summary>
internal sealed class BackgroundProcess : IDisposable
{
    private readonly Process _process;
    private readonly System.Text.StringBuilder _output = new();

    private BackgroundProcess(Process process)
    {
        _process = process;
    }

    public bool HasExited => _process.HasExited;

    /// <summary>What it wrote to standard output and error so far.</summary>
    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public static BackgroundProcess Start(string fileName, IEnumerable<string> arguments, IReadOnlyDictionary<string, string> environment)
    {
        var start = new ProcessStartInfo(fileName) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        foreach ((string key, string value) in environment)
        {
            start.Environment[key] = value;
        }

        var background = new BackgroundProcess(new Process { StartInfo = start });
        background._process.OutputDataReceived += (_, e) => background.Append(e.Data);
        background._process.ErrorDataReceived += (_, e) => background.Append(e.Data);
        background._process.Start();
        background._process.BeginOutputReadLine();
        background._process.BeginErrorReadLine();
        return background;
    }

    /// <summary>SIGINT, then waits for the exit (a minute at most).</summary>
    public async Task InterruptAsync()
    {
        if (!_process.HasExited)
        {
            ExternalProcess.RunChecked("/bin/kill", ["-INT", _process.Id.ToString(CultureInfo.InvariantCulture)]);
        }

        await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(1));
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }

        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }
}
