using System.Collections.Concurrent;
using System.Security.Cryptography.X509Certificates;

namespace PgSpec.Servers;

/// <summary>What kind of server to provide.</summary>
public sealed record PgServerOptions
{
    /// <summary>The major version; null for the highest available.</summary>
    public int? MajorVersion { get; init; }

    /// <summary>Extra postgresql.conf settings.</summary>
    public IReadOnlyDictionary<string, string> Settings { get; init; } = new Dictionary<string, string>();

    /// <summary>Progress messages (binaries found or installed, server started).</summary>
    public Action<string>? Progress { get; init; }

    /// <summary>How long starting may take.</summary>
    public TimeSpan StartTimeout { get; init; } = TimeSpan.FromMinutes(2);
}

/// <summary>Provides throwaway servers.</summary>
public interface IPgServerProvider
{
    /// <summary>The provider's name ("local", "docker").</summary>
    string Name { get; }

    /// <summary>Starts a server with the standard roles; dispose it to stop and delete it.</summary>
    Task<PgServer> StartAsync(PgServerOptions options, CancellationToken cancellationToken);
}

/// <summary>
/// A running throwaway PostgreSQL server with one role per authentication method, TLS with a
/// certificate signed by its own CA, and logical replication enabled. Disposing stops it and
/// deletes its files; servers still running when the process exits are stopped too.
/// </summary>
public sealed class PgServer : IAsyncDisposable
{
    private static readonly ConcurrentDictionary<PgServer, byte> s_running = new();
    private readonly Func<PgServer, bool, Task> _stop;
    private int _disposed;

    static PgServer()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) => StopAllNow();
    }

    internal PgServer(string provider, string host, int port, string? socketDirectory, int major, string version, string? caCertificatePem, IReadOnlyList<PgRole> roles, string? dataDirectory, string? logFile, Func<PgServer, bool, Task> stop)
    {
        Provider = provider;
        Host = host;
        Port = port;
        SocketDirectory = socketDirectory;
        MajorVersion = major;
        Version = version;
        CaCertificatePem = caCertificatePem;
        Roles = roles;
        DataDirectory = dataDirectory;
        LogFile = logFile;
        _stop = stop;
        s_running.TryAdd(this, 0);
    }

    /// <summary>"local" or "docker".</summary>
    public string Provider { get; }

    /// <summary>The TCP host (a loopback address).</summary>
    public string Host { get; }

    /// <summary>The TCP port.</summary>
    public int Port { get; }

    /// <summary>The Unix-domain socket folder, if the server listens on one.</summary>
    public string? SocketDirectory { get; }

    /// <summary>The Unix-domain socket path (.s.PGSQL.port), if any.</summary>
    public string? SocketPath => SocketDirectory is null ? null : Path.Combine(SocketDirectory, ".s.PGSQL." + Port);

    /// <summary>The major version.</summary>
    public int MajorVersion { get; }

    /// <summary>The version as the server prints it.</summary>
    public string Version { get; }

    /// <summary>The CA certificate (PEM) that signed the server's certificate, for verify-ca and verify-full.</summary>
    public string? CaCertificatePem { get; }

    /// <summary>The CA certificate, for verify-ca and verify-full.</summary>
    public X509Certificate2? CaCertificate => CaCertificatePem is null ? null : X509Certificate2.CreateFromPem(CaCertificatePem);

    /// <summary>The login roles, one per authentication method.</summary>
    public IReadOnlyList<PgRole> Roles { get; }

    /// <summary>The data folder (local servers).</summary>
    public string? DataDirectory { get; }

    /// <summary>The server log (local servers).</summary>
    public string? LogFile { get; }

    /// <summary>The role that authenticates with <paramref name="method"/> (not the TLS-only or replication one).</summary>
    public PgRole Role(PgAuthMethod method) => Roles.First(r => r.Method == method && !r.SslOnly && !r.Replication);

    /// <summary>The TLS-only role.</summary>
    public PgRole SslRole => Roles.First(r => r.SslOnly);

    /// <summary>The replication role.</summary>
    public PgRole ReplicationRole => Roles.First(r => r.Replication);

    /// <summary>A postgres:// URL for a role.</summary>
    public string Url(PgRole role, string database = "postgres")
        => $"postgres://{Uri.EscapeDataString(role.Name)}{(role.Password.Length > 0 ? ":" + Uri.EscapeDataString(role.Password) : "")}@{Host}:{Port}/{database}";

    /// <summary>The last lines of the server log, for error messages.</summary>
    public string LogTail(int lines = 30)
    {
        try
        {
            return LogFile is not null && File.Exists(LogFile) ? string.Join('\n', File.ReadLines(LogFile).TakeLast(lines)) : "";
        }
        catch (IOException)
        {
            return "";
        }
    }

    /// <summary>Stops the server at once, as a crash would (kills connections mid-query); keeps the files until disposal.</summary>
    public Task KillAsync() => _stop(this, false);

    /// <summary>Stops the server and deletes its files.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            s_running.TryRemove(this, out _);
            await _stop(this, true).ConfigureAwait(false);
        }
    }

    /// <summary>Stops every server of this process (on Ctrl+C and at exit).</summary>
    public static void StopAllNow()
    {
        foreach (PgServer server in s_running.Keys.ToArray())
        {
            try
            {
                server.DisposeAsync().AsTask().Wait(TimeSpan.FromSeconds(30));
            }
            catch (AggregateException)
            {
                // Best effort at exit.
            }
        }
    }
}
