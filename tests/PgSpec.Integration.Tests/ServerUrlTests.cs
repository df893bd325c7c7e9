using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using PgSpec.Conformance;
using PgSpec.Server.Tests;
using PgSpec.Servers;

namespace PgSpec.Integration.Tests;

/// <summary>`pgspec conform --server URL`: a server PgSpec did not start, and pgbouncer in front of one.</summary>
[Collection(ServerCollection.Name)]
public class ServerUrlTests(ServerFixture fixture)
{
    [Fact]
    public async Task Conform_ServerGivenByUrl_PassesWhatItAllows()
    {
        PgServer server = await fixture.Server(18);
        PgRole role = server.Role(PgAuthMethod.ScramSha256);
        ConformanceReport report = await ConformanceRunner.RunAsync([Target.FromUrl(server.Url(role))], null);
        Assert.True(report.Passed, report.ToTable());
        Assert.Contains(report.Results, r => r.Scenario == "copy-both" && r.Status is ScenarioStatus.Passed or ScenarioStatus.Refused);
        Assert.Contains(report.Results, r => r.Scenario == "extended-query" && r.Status == ScenarioStatus.Passed);
    }

    [Fact]
    public async Task Conform_PgBouncerInFront_PassesWhatItAllowsAndReportsTheRestAsRefused()
    {
        PgServer server = await fixture.Server(15);
        PgRole role = server.Role(PgAuthMethod.ScramSha256);
        await using PgBouncer bouncer = await PgBouncer.StartAsync(server, role);
        ConformanceReport report = await ConformanceRunner.RunAsync([Target.FromUrl($"postgres://{role.Name}:{role.Password}@127.0.0.1:{bouncer.Port}/postgres")], null);
        Assert.True(report.Passed, report.ToTable() + "\n" + bouncer.LogTail());
        Assert.Contains(report.Results, r => r.Scenario == "copy-both" && r.Status == ScenarioStatus.Refused);
        Assert.Contains(report.Results, r => r.Scenario == "cancel" && r.Status == ScenarioStatus.Passed);
        Assert.Contains(report.Results, r => r.Scenario == "pipeline-error" && r.Status == ScenarioStatus.Passed);
    }

    /// <summary>pgbouncer (Debian's package) in session mode in front of a server, as the postgres user.</summary>
    private sealed class PgBouncer : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly string _folder;

        private PgBouncer(Process process, string folder, int port)
        {
            _process = process;
            _folder = folder;
            Port = port;
        }

        public int Port { get; }

        public static async Task<PgBouncer> StartAsync(PgServer server, PgRole role)
        {
            string binary = File.Exists("/usr/sbin/pgbouncer") ? "/usr/sbin/pgbouncer" : "pgbouncer";
            string folder = Directory.CreateTempSubdirectory("pgspec-pgbouncer-").FullName;
            int port = FreePort();
            File.WriteAllText(Path.Combine(folder, "userlist.txt"), $"\"{role.Name}\" \"{role.Password}\"\n");
            File.WriteAllText(Path.Combine(folder, "pgbouncer.ini"), $"""
                [databases]
                postgres = host={server.Host} port={server.Port} dbname=postgres
                [pgbouncer]
                listen_addr = 127.0.0.1
                listen_port = {port}
                auth_type = scram-sha-256
                auth_file = {folder}/userlist.txt
                pool_mode = session
                unix_socket_dir =
                logfile = {folder}/pgbouncer.log
                pidfile = {folder}/pgbouncer.pid
                """);
            bool root = Environment.IsPrivilegedProcess;
            if (root)
            {
                using Process chown = Process.Start("chown", ["-R", "postgres", folder])!;
                await chown.WaitForExitAsync();
            }

            var info = new ProcessStartInfo(root ? "runuser" : binary) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (string argument in root ? ["-u", "postgres", "--", binary, Path.Combine(folder, "pgbouncer.ini")] : new[] { Path.Combine(folder, "pgbouncer.ini") })
            {
                info.ArgumentList.Add(argument);
            }

            Process process;
            try
            {
                process = Process.Start(info)!;
            }
            catch (System.ComponentModel.Win32Exception e)
            {
                throw new InvalidOperationException("pgbouncer is not installed (Debian package pgbouncer)", e);
            }

            var bouncer = new PgBouncer(process, folder, port);
            try
            {
                await Wait.UntilAsync(async () => process.HasExited || await ListensAsync(port), $"pgbouncer listens on port {port} or exits");
            }
            catch
            {
                await bouncer.DisposeAsync();
                throw;
            }

            if (!process.HasExited)
            {
                return bouncer;
            }

            string log = bouncer.LogTail();
            await bouncer.DisposeAsync();
            throw new InvalidOperationException("pgbouncer did not start: " + log);
        }

        private static async Task<bool> ListensAsync(int port)
        {
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, port);
                return true;
            }
            catch (SocketException)
            {
                return false;
            }
        }

        public string LogTail()
        {
            string log = Path.Combine(_folder, "pgbouncer.log");
            return File.Exists(log) ? string.Join('\n', File.ReadLines(log).TakeLast(20)) : "";
        }

        public async ValueTask DisposeAsync()
        {
            // runuser passes the signal on; pgbouncer exits on SIGTERM.
            using (Process kill = Process.Start("pkill", ["-TERM", "-f", Path.Combine(_folder, "pgbouncer.ini")])!)
            {
                await kill.WaitForExitAsync();
            }

            await _process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token).ContinueWith(_ => { });
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }

            _process.Dispose();
            Directory.Delete(_folder, recursive: true);
        }

        private static int FreePort()
        {
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            return ((IPEndPoint)listener.LocalEndpoint).Port;
        }
    }
}
