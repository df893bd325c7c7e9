using System.Globalization;
using System.Net;
using System.Net.Sockets;
using PgSpec.Cli.Tests.RealServer;
using PgSpec.Client;
using PgSpec.Servers;

namespace PgSpec.Cli.Tests.Replicate;

/// <summary>
/// What goes wrong says what it is, with its exit code, and never hangs: the server's errors (a slot
/// or publication missing, a slot that exists, a role without REPLICATION, wal_level), versions the
/// server does not have, authentication, a server that cannot be reached, that never answers, that
/// stalls or ends the connection while streaming; and usage errors before anything is sent.
/// </summary>
[Collection(ReplicateCollection.Name)]
public class ReplicateErrorTests(ReplicateServers servers)
{
    private static async Task<(int ExitCode, string Stderr, string Stdout)> RunAsync(params string[] args)
    {
        using ReplicateRun run = ReplicateRun.Start(args);
        int exit = await run.Exit.WaitAsync(TimeSpan.FromMinutes(2));
        return (exit, run.Stderr.Text, run.Stdout.Text);
    }

    private async Task<(PgServer Server, PgFrontendSession Admin)> PrepareAsync()
    {
        PgServer server = await servers.Server(15);
        PgFrontendSession admin = await servers.AdminAsync(15);
        await admin.QueryAsync("""
            DROP PUBLICATION IF EXISTS er_pub;
            CREATE TABLE IF NOT EXISTS er_t (id int PRIMARY KEY);
            CREATE PUBLICATION er_pub FOR TABLE er_t;
            SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'er\_%' AND NOT active;
            """);
        return (server, admin);
    }

    [Fact]
    public async Task ServerErrors_AreSaidClearly_WithExitCode1()
    {
        (PgServer server, PgFrontendSession admin) = await PrepareAsync();
        await using PgFrontendSession _ = admin;
        string[] connect = ReplicateServers.Connect(server);

        var missingSlot = await RunAsync([.. connect, "--slot", "er_nosuch", "--publication", "er_pub"]);
        Assert.True(missingSlot.ExitCode == 1, missingSlot.Stderr);
        Assert.Contains("replication slot er_nosuch does not exist (--create-slot creates it)", missingSlot.Stderr, StringComparison.Ordinal);
        Assert.Equal("", missingSlot.Stdout);

        // A publication that does not exist is a warning (it may be created before the changes come);
        // PostgreSQL 15 ends the stream at the first change, with its error.
        await admin.QueryAsync("SELECT pg_create_logical_replication_slot('er_slot', 'pgoutput')");
        using (ReplicateRun missingPublication = ReplicateRun.Start([.. connect, "--slot", "er_slot", "--publication", "er_pub,er_nopub", "-v"]))
        {
            await missingPublication.WaitForNoteAsync("streaming from slot");
            Assert.Contains("warning: publication er_nopub does not exist (yet) in database postgres", missingPublication.Stderr.Text, StringComparison.Ordinal);
            await admin.QueryAsync("INSERT INTO er_t VALUES (1) ON CONFLICT DO NOTHING");
            Assert.True(await missingPublication.Exit.WaitAsync(TimeSpan.FromMinutes(1)) == 1, missingPublication.ToString());
            Assert.Contains("the server ended replication with an error: publication \"er_nopub\" does not exist (ERROR 42704)", missingPublication.Stderr.Text, StringComparison.Ordinal);
            Assert.Equal("", missingPublication.Stdout.Text);
        }

        await ReplicateOutput.SlotPositionAsync(admin, "er_slot");

        var exists = await RunAsync([.. connect, "--slot", "er_slot", "--publication", "er_pub", "--create-slot"]);
        Assert.True(exists.ExitCode == 1, exists.Stderr);
        Assert.Contains("replication slot er_slot exists already: leave out --create-slot to use it, or add --if-not-exists", exists.Stderr, StringComparison.Ordinal);

        // --if-not-exists uses it; --endpos at the start stops at once.
        var ifNotExists = await RunAsync([.. connect, "--slot", "er_slot", "--publication", "er_pub", "--create-slot", "--if-not-exists", "--endpos", "0/1"]);
        Assert.True(ifNotExists.ExitCode == 0, ifNotExists.Stderr);
        Assert.Contains("exists already (--if-not-exists): using it", ifNotExists.Stderr, StringComparison.Ordinal);

        // A physical slot, and the other way round.
        await admin.QueryAsync("SELECT pg_create_physical_replication_slot('er_physical')");
        var physicalSlot = await RunAsync([.. connect, "--slot", "er_physical", "--publication", "er_pub"]);
        Assert.True(physicalSlot.ExitCode == 1, physicalSlot.Stderr);
        Assert.Contains("replication slot er_physical is a physical slot; stream it with --physical", physicalSlot.Stderr, StringComparison.Ordinal);

        // A role without REPLICATION is refused by the server at the connection.
        PgRole plain = server.Role(PgAuthMethod.ScramSha256);
        var noReplication = await RunAsync("-h", server.Host, "-p", server.Port.ToString(CultureInfo.InvariantCulture), "-d", $"host={server.Host} dbname=postgres user={plain.Name} password={plain.Password} sslmode=disable", "--slot", "er_slot", "--publication", "er_pub");
        Assert.True(noReplication.ExitCode == 1, noReplication.Stderr);
        Assert.Contains("the server refused the connection: must be superuser or replication role to start walsender (FATAL 42501)", noReplication.Stderr, StringComparison.Ordinal);

        // The server's own error, as it says it, when it is the server that refuses: a slot in use.
        using ReplicateRun holder = ReplicateRun.Start([.. connect, "--slot", "er_slot", "--publication", "er_pub", "-v"]);
        await holder.WaitForNoteAsync("streaming from slot");
        var inUse = await RunAsync([.. connect, "--slot", "er_slot", "--publication", "er_pub"]);
        Assert.True(inUse.ExitCode == 1, inUse.Stderr);
        Assert.Matches(@"replication slot er_slot is in use by the server process \d+", inUse.Stderr);
        Assert.Equal(0, await holder.StopAsync());
    }

    [Fact]
    public async Task VersionsTheServerLacks_AreUsageErrors()
    {
        (PgServer server, PgFrontendSession admin) = await PrepareAsync();
        await using PgFrontendSession _ = admin;
        await admin.QueryAsync("SELECT pg_create_logical_replication_slot('er_versions', 'pgoutput')");
        string[] connect = ReplicateServers.Connect(server);

        var four = await RunAsync([.. connect, "--slot", "er_versions", "--publication", "er_pub", "--proto-version", "4"]);
        Assert.True(four.ExitCode == 2, four.Stderr);
        Assert.Contains("--proto-version 4: PostgreSQL 15 has pgoutput protocol versions 1 to 3", four.Stderr, StringComparison.Ordinal);

        var parallel = await RunAsync([.. connect, "--slot", "er_versions", "--publication", "er_pub", "--streaming", "parallel"]);
        Assert.True(parallel.ExitCode == 2, parallel.Stderr);
        Assert.Contains("--streaming parallel needs protocol version 4 (PostgreSQL 16 or later; --proto-version 3)", parallel.Stderr, StringComparison.Ordinal);

        var origin = await RunAsync([.. connect, "--slot", "er_versions", "--publication", "er_pub", "--origin", "none"]);
        Assert.True(origin.ExitCode == 2, origin.Stderr);
        Assert.Contains("--origin needs PostgreSQL 16 or later; the server is 15", origin.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Authentication_UnreachableAndSilentServers_HaveTheirExitCodes()
    {
        PgServer server = await servers.Server(15);
        PgRole role = server.ReplicationRole;
        string port = server.Port.ToString(CultureInfo.InvariantCulture);

        var wrong = await RunAsync("-d", $"host={server.Host} port={port} dbname=postgres user={role.Name} password=wrong sslmode=disable", "--slot", "er_any", "--publication", "er_pub");
        Assert.True(wrong.ExitCode == 6, wrong.Stderr);
        Assert.Contains("authentication failed: password authentication failed for user \"pgspec_repl\" (FATAL 28P01)", wrong.Stderr, StringComparison.Ordinal);

        // No password anywhere, and -w: nothing to ask; the error says where a password comes from.
        var none = await RunAsync("-h", server.Host, "-p", port, "-U", role.Name, "-d", "postgres", "-w", "--slot", "er_any", "--publication", "er_pub", "--sslmode", "disable");
        Assert.True(none.ExitCode == 6, none.Stderr);
        Assert.Contains("give PGPASSWORD, a password in -d's connection string, or -W", none.Stderr, StringComparison.Ordinal);

        var refused = await RunAsync("-h", "127.0.0.1", "-p", ProxyFreePort().ToString(CultureInfo.InvariantCulture), "-U", role.Name, "--slot", "er_any", "--publication", "er_pub");
        Assert.True(refused.ExitCode == 5, refused.Stderr);
        Assert.Contains("cannot connect to 127.0.0.1:", refused.Stderr, StringComparison.Ordinal);

        // A peer that accepts and never answers: --timeout, not a hang.
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        Task<Socket> accepted = silent.AcceptSocketAsync();
        var stalled = await RunAsync("-h", "127.0.0.1", "-p", ((IPEndPoint)silent.LocalEndpoint).Port.ToString(CultureInfo.InvariantCulture), "-U", role.Name, "--sslmode", "disable", "--slot", "er_any", "--publication", "er_pub", "--timeout", "1");
        Assert.True(stalled.ExitCode == 7, stalled.Stderr);
        Assert.Contains("timed out after 1 s (--timeout)", stalled.Stderr, StringComparison.Ordinal);
        (await accepted).Dispose();
    }

    [Fact]
    public async Task AServerThatStallsOrEndsTheStream_StopsTheRun_WithTheReason()
    {
        (PgServer server, PgFrontendSession admin) = await PrepareAsync();
        await using PgFrontendSession _ = admin;
        await admin.QueryAsync("SELECT pg_create_logical_replication_slot('er_stall', 'pgoutput')");
        string[] connect = ReplicateServers.Connect(server);

        // The walsender stopped (SIGSTOP): after half of --timeout a status update asks for an answer; none comes.
        using (ReplicateRun run = ReplicateRun.Start([.. connect, "--slot", "er_stall", "--publication", "er_pub", "--timeout", "2", "--status-interval", "0.5", "-v"]))
        {
            await run.WaitForNoteAsync("streaming from slot");
            string pid = (await admin.QueryAsync("SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'er_stall'"))[0].Text(0, 0)!;
            ExternalProcess.Run("/bin/kill", ["-STOP", pid]);
            try
            {
                int exit = await run.Exit.WaitAsync(TimeSpan.FromMinutes(1));
                Assert.True(exit == 7, run.ToString());
                Assert.Contains("the server sent nothing for 2 s, not even the answer to a status update that asked for one (--timeout)", run.Stderr.Text, StringComparison.Ordinal);
            }
            finally
            {
                ExternalProcess.Run("/bin/kill", ["-CONT", pid]);
            }
        }

        // The walsender terminated: its FATAL, exit 1.
        await admin.QueryAsync("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'er_stall' AND active");
        await ReplicateOutput.SlotPositionAsync(admin, "er_stall");
        using (ReplicateRun run = ReplicateRun.Start([.. connect, "--slot", "er_stall", "--publication", "er_pub", "-v"]))
        {
            await run.WaitForNoteAsync("streaming from slot");
            await admin.QueryAsync("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'er_stall'");
            int exit = await run.Exit.WaitAsync(TimeSpan.FromMinutes(1));
            Assert.True(exit == 1, run.ToString());
            Assert.Contains("the server ended replication with an error: terminating connection due to administrator command (FATAL 57P01)", run.Stderr.Text, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task WalLevelReplica_CreatingALogicalSlotSaysWhatIsMissing()
    {
        await using PgServer replica = await new LocalPgServerProvider().StartAsync(
            new PgServerOptions { MajorVersion = 15, Settings = new Dictionary<string, string> { ["wal_level"] = "replica" } },
            CancellationToken.None);
        var result = await RunAsync([.. ReplicateServers.Connect(replica), "--slot", "er_wal", "--publication", "er_pub", "--create-slot"]);
        Assert.True(result.ExitCode == 1, result.Stderr);
        Assert.Contains("CREATE_REPLICATION_SLOT: logical decoding requires wal_level >= logical (ERROR 55000)", result.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--slot NAME is required.", "--publication", "p")]
    [InlineData("--publication NAME is required", "--slot", "s")]
    [InlineData("--slot: 'Bad-Name' is not a replication slot name", "--slot", "Bad-Name", "--publication", "p")]
    [InlineData("--endpos: '12' is not a WAL position such as 0/16B3748.", "--slot", "s", "--publication", "p", "--endpos", "12")]
    [InlineData("--endpos is before --startpos.", "--slot", "s", "--publication", "p", "--startpos", "1/0", "--endpos", "0/FFFF")]
    [InlineData("--publication applies to logical replication, not to --physical.", "--physical", "--publication", "p")]
    [InlineData("--streaming needs --proto-version 2 or later.", "--slot", "s", "--publication", "p", "--proto-version", "1", "--streaming")]
    [InlineData("--two-phase needs --proto-version 3 or later.", "--slot", "s", "--publication", "p", "--proto-version", "2", "--two-phase")]
    [InlineData("--if-not-exists goes with --create-slot.", "--slot", "s", "--publication", "p", "--if-not-exists")]
    [InlineData("--buffer-memory: '12 parsecs' is not a size", "--slot", "s", "--publication", "p", "--buffer-memory", "12 parsecs")]
    [InlineData("--spill-dir: /nonexistent/pgspec is not a directory.", "--slot", "s", "--publication", "p", "--spill-dir", "/nonexistent/pgspec")]
    [InlineData("-d: the connection option 'nosuch' is unknown", "--slot", "s", "--publication", "p", "-d", "host=x nosuch=1")]
    [InlineData("-w (--no-password) and -W (--password) contradict each other.", "--slot", "s", "--publication", "p", "-w", "-W")]
    public void UsageErrors_ExitTwo_BeforeConnecting(string message, params string[] args)
    {
        CliResult result = CliRunner.Run(["replicate", .. args]);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains(message, result.Stderr, StringComparison.Ordinal);
        Assert.Equal("", result.Stdout);
    }

    private static int ProxyFreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
