using System.Globalization;
using PgSpec.Servers;

namespace PgSpec.Cli.Tests.RealServer;

/// <summary>One recorded connection: libpq's trace of it and the bytes of both directions.</summary>
public sealed record RecordedSession(string Name, string LibpqTrace, byte[] FrontendBytes, byte[] BackendBytes);

/// <summary>
/// Real sessions, recorded once per test class: a throwaway PostgreSQL 15 server, a recording
/// relay in front of it, and a libpq 18 client (psycopg 3 on its ctypes binding) running
/// Scripts/libpq_session.py through the relay with PQtrace in regress mode. One session runs
/// queries of every kind as the trust role; one more per password method only logs in.
/// </summary>
public sealed class LibpqSessions : IDisposable
{
    /// <summary>The name of the session that runs every kind of query.</summary>
    public const string Full = "trust, every kind of query";

    /// <summary>The role for each password authentication method, as pg_hba.conf names it.</summary>
    private static readonly IReadOnlyDictionary<string, PgAuthMethod> s_passwordMethods = new Dictionary<string, PgAuthMethod>
    {
        ["password"] = PgAuthMethod.Password,
        ["md5"] = PgAuthMethod.Md5,
        ["scram-sha-256"] = PgAuthMethod.ScramSha256,
    };

    private readonly PgServer _server;
    private readonly Dictionary<string, RecordedSession> _sessions = new(StringComparer.Ordinal);
    private readonly TempDirectory _captures = new();

    public LibpqSessions()
    {
        _server = new LocalPgServerProvider().StartAsync(new PgServerOptions { MajorVersion = 15 }, CancellationToken.None).GetAwaiter().GetResult();
        try
        {
            string libpq = Libpq18.LibraryDirectory;

            // tcpdump captures the relay's connections to the server, which carry the same bytes.
            CaptureFile = Path.Combine(_captures.Path, "sessions.pcap");
            using (Capture.Tcpdump.Start(["-i", "lo", "--immediate-mode", "-U", "-B", "32768", "-w", CaptureFile, $"tcp port {_server.Port}"]))
            {
                _sessions[Full] = Record(Full, libpq, _server.Role(PgAuthMethod.Trust).Name, "", "full");
                foreach ((string method, PgAuthMethod authentication) in s_passwordMethods)
                {
                    PgRole role = _server.Role(authentication);
                    _sessions[method] = Record(method, libpq, role.Name, role.Password, "login");
                }

                Capture.Tcpdump.WaitForEnds(CaptureFile, TimeSpan.FromSeconds(30));
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The names of the sessions: <see cref="Full"/> and the password methods.</summary>
    public static IEnumerable<string> Names => [Full, .. s_passwordMethods.Keys];

    public RecordedSession this[string name] => _sessions[name];

    /// <summary>A pcap file (tcpdump, loopback) of every session's connection to the server, in the order they ran.</summary>
    public string CaptureFile { get; } = "";

    /// <summary>The server's TCP port (the port of the captured connections).</summary>
    public int ServerPort => _server.Port;

    public void Dispose()
    {
        _server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _captures.Dispose();
    }

    private RecordedSession Record(string name, string libpq, string user, string password, string mode)
    {
        string trace = Path.Combine(Path.GetTempPath(), "pgspec-libpq-trace-" + Guid.NewGuid().ToString("N") + ".txt");
        string script = Path.Combine(AppContext.BaseDirectory, "Scripts", "libpq_session.py");
        using var relay = new RecordingRelay(_server.Host, _server.Port);
        try
        {
            var environment = new Dictionary<string, string>
            {
                ["PSYCOPG_IMPL"] = "python",
                ["LD_LIBRARY_PATH"] = libpq,
                ["PGCONNECT_TIMEOUT"] = "30",
            };
            string[] arguments = [script, "127.0.0.1", relay.Port.ToString(CultureInfo.InvariantCulture), user, password, mode, trace];
            ProcessOutput client = ExternalProcess.Run(Libpq18.Python, arguments, environment: environment);
            if (client.ExitCode != 0)
            {
                throw new InvalidOperationException($"the libpq 18 client ({Libpq18.Python} {script}, session '{name}') failed: {client}\n--- server log\n{_server.LogTail()}");
            }

            if (!relay.Completion.Wait(TimeSpan.FromMinutes(1)))
            {
                throw new InvalidOperationException($"the relay did not see the connection of session '{name}' end after the client exited");
            }

            relay.Completion.GetAwaiter().GetResult();
            return new RecordedSession(name, File.ReadAllText(trace), relay.FrontendBytes, relay.BackendBytes);
        }
        finally
        {
            File.Delete(trace);
        }
    }
}
