namespace PgSpec.Cli.Tests.RealServer;

/// <summary>
/// One real session, recorded once per test class: a throwaway PostgreSQL 15 server, a
/// recording relay in front of it, and a libpq 18 client (psycopg 3 on its ctypes binding)
/// that runs Scripts/libpq_session.py through the relay with PQtrace in regress mode.
/// </summary>
public sealed class LibpqSession : IDisposable
{
    private readonly PostgresServer _server;

    public LibpqSession()
    {
        _server = new PostgresServer();
        try
        {
            string libpq = Libpq18.LibraryDirectory;
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
                ProcessOutput client = ExternalProcess.Run(Libpq18.Python, [script, "127.0.0.1", relay.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), PostgresServer.TestRole, trace], environment: environment);
                if (client.ExitCode != 0)
                {
                    throw new InvalidOperationException($"the libpq 18 client ({Libpq18.Python} {script}) failed: {client}\n--- server log\n{_server.Log}");
                }

                if (!relay.Completion.Wait(TimeSpan.FromMinutes(1)))
                {
                    throw new InvalidOperationException("the relay did not see the connection end after the client exited");
                }

                relay.Completion.GetAwaiter().GetResult();
                LibpqTrace = File.ReadAllText(trace);
                FrontendBytes = relay.FrontendBytes;
                BackendBytes = relay.BackendBytes;
            }
            finally
            {
                File.Delete(trace);
            }
        }
        catch
        {
            _server.Dispose();
            throw;
        }
    }

    /// <summary>libpq's PQtrace output (regress mode, no timestamps), both directions interleaved.</summary>
    public string LibpqTrace { get; } = "";

    /// <summary>The bytes the client sent.</summary>
    public byte[] FrontendBytes { get; } = [];

    /// <summary>The bytes the server sent.</summary>
    public byte[] BackendBytes { get; } = [];

    public void Dispose() => _server.Dispose();
}
