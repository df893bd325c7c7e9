using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace PgSpec.Cli.Tests.RealServer;

/// <summary>
/// A throwaway PostgreSQL server: a fresh cluster in a temporary folder (no fsync, listening on
/// a free loopback port and its own socket folder), started on construction, stopped and
/// deleted on dispose. <see cref="TestRole"/> logs in by trust; one role per password method
/// (<see cref="PasswordRoles"/>) logs in with <see cref="Password"/>. As root the server tools run as the
/// 'postgres' user (PostgreSQL refuses to run as root). The binaries come from
/// PGSPEC_PG_BIN, or from the Debian package postgresql-15. Missing binaries are an error,
/// never a reason to skip.
/// </summary>
public sealed class PostgresServer : IDisposable
{
    /// <summary>A login role that trust authentication lets in without a password.</summary>
    public const string TestRole = "pgspec_test";

    /// <summary>The password of the <see cref="PasswordRoles"/>.</summary>
    public const string Password = "pgspec-secret";

    /// <summary>The role for each password authentication method (password, md5, scram-sha-256).</summary>
    public static readonly IReadOnlyDictionary<string, string> PasswordRoles = new Dictionary<string, string>
    {
        ["password"] = "pgspec_password",
        ["md5"] = "pgspec_md5",
        ["scram-sha-256"] = "pgspec_scram",
    };

    private const string DefaultBinDirectory = "/usr/lib/postgresql/15/bin";
    private const string ServiceUser = "postgres";

    private readonly string _root;
    private readonly string _data;
    private readonly bool _asServiceUser;
    private bool _running;

    public PostgresServer()
    {
        BinDirectory = Environment.GetEnvironmentVariable("PGSPEC_PG_BIN") is { Length: > 0 } bin ? bin : DefaultBinDirectory;
        foreach (string tool in new[] { "initdb", "pg_ctl", "psql" })
        {
            if (!File.Exists(Path.Combine(BinDirectory, tool)))
            {
                throw new InvalidOperationException(
                    $"PostgreSQL server binaries are missing: no '{tool}' in '{BinDirectory}'. Install them (Debian: apt-get install -y postgresql-15) or point PGSPEC_PG_BIN at a folder holding initdb, pg_ctl and psql.");
            }
        }

        _asServiceUser = GetEffectiveUserId() == 0;
        if (_asServiceUser && ExternalProcess.FindOnPath("runuser") is null)
        {
            throw new InvalidOperationException("running as root, the server must be started as 'postgres', but 'runuser' is not on PATH");
        }

        _root = Path.Combine(Path.GetTempPath(), "pgspec-pg-" + Guid.NewGuid().ToString("N"));
        _data = Path.Combine(_root, "data");
        string sockets = Path.Combine(_root, "sockets");
        Directory.CreateDirectory(sockets);
        try
        {
            if (_asServiceUser)
            {
                ExternalProcess.RunChecked("chown", ["-R", ServiceUser + ":", _root]);
            }

            RunTool("initdb", ["-D", _data, "--no-sync", "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"]);

            // The first matching line wins: the password roles' lines go before initdb's trust lines.
            string hba = Path.Combine(_data, "pg_hba.conf");
            string methods = string.Concat(PasswordRoles.Select(r => $"host all {r.Value} {Host}/32 {r.Key}\n"));
            File.WriteAllText(hba, methods + File.ReadAllText(hba));
            Start(sockets);

            // md5 needs an MD5-hashed password; the others work with the default SCRAM hash.
            string sql = $"CREATE ROLE {TestRole} LOGIN; "
                + string.Concat(PasswordRoles.Select(r => $"SET password_encryption = '{(r.Key == "md5" ? "md5" : "scram-sha-256")}'; CREATE ROLE {r.Value} LOGIN PASSWORD '{Password}'; "));
            RunTool("psql", ["-h", Host, "-p", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The folder of initdb, pg_ctl and psql.</summary>
    public string BinDirectory { get; }

    /// <summary>The loopback address the server listens on.</summary>
    public string Host => "127.0.0.1";

    /// <summary>The server's TCP port.</summary>
    public int Port { get; private set; }

    /// <summary>The server's log so far (for failure messages).</summary>
    public string Log
    {
        get
        {
            string path = Path.Combine(_root, "server.log");
            try
            {
                return File.Exists(path) ? File.ReadAllText(path) : "(no server log)";
            }
            catch (IOException e)
            {
                return "(server log unreadable: " + e.Message + ")";
            }
        }
    }

    public void Dispose()
    {
        if (_running)
        {
            _running = false;
            ProcessOutput stop = RunToolUnchecked("pg_ctl", ["-D", _data, "-m", "fast", "-w", "-t", "60", "stop"]);
            if (stop.ExitCode != 0)
            {
                RunToolUnchecked("pg_ctl", ["-D", _data, "-m", "immediate", "-w", "stop"]);
            }
        }

        try
        {
            if (Directory.Exists(_root))
            {
                Directory.Delete(_root, recursive: true);
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private void Start(string sockets)
    {
        // A port found free can be taken before the server binds it: try a few.
        string log = Path.Combine(_root, "server.log");
        for (int attempt = 1; ; attempt++)
        {
            Port = FreeLoopbackPort();
            string options = $"-c fsync=off -c listen_addresses={Host} -p {Port} -c unix_socket_directories={sockets}";
            ProcessOutput output = RunToolUnchecked("pg_ctl", ["-D", _data, "-l", log, "-w", "-t", "60", "-o", options, "start"]);
            if (output.ExitCode == 0)
            {
                _running = true;
                return;
            }

            if (attempt == 3)
            {
                throw new InvalidOperationException($"the PostgreSQL server did not start: {output}\n--- server log\n{Log}");
            }
        }
    }

    private void RunTool(string tool, string[] arguments)
    {
        ProcessOutput output = RunToolUnchecked(tool, arguments);
        if (output.ExitCode != 0)
        {
            throw new InvalidOperationException($"'{tool} {string.Join(' ', arguments)}' failed: {output}\n--- server log\n{Log}");
        }
    }

    private ProcessOutput RunToolUnchecked(string tool, string[] arguments)
    {
        string path = Path.Combine(BinDirectory, tool);
        return _asServiceUser
            ? ExternalProcess.Run("runuser", ["-u", ServiceUser, "--", path, .. arguments], _root)
            : ExternalProcess.Run(path, arguments, _root);
    }

    private static int FreeLoopbackPort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    [DllImport("libc", EntryPoint = "geteuid")]
    private static extern uint GetEffectiveUserId();
}
