using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace PgSpec.Cli.Tests.ServeClients;

/// <summary>How a client logs in to <c>pgspec serve</c> in a test.</summary>
public enum ClientMode
{
    /// <summary>Trust authentication, no TLS (sslmode=disable; the server has none).</summary>
    Plain,

    /// <summary>SCRAM-SHA-256 through TLS (sslmode=require).</summary>
    TlsScram,

    /// <summary>MD5 password, no TLS.</summary>
    Md5,

    /// <summary>Cleartext password, no TLS.</summary>
    Password,
}

/// <summary>One running <c>pgspec serve</c> and how to log in to it.</summary>
public sealed record ServeServer(ServeProcess Process, string Host, int Port, string User, string Password, bool Tls, string TraceFile)
{
    /// <summary>The sslmode libpq-based clients use: require under TLS, else disable.</summary>
    public string SslMode => Tls ? "require" : "disable";

    /// <summary>A libpq connection string (keyword=value) for this server, plus more keywords.</summary>
    public string ConnInfo(string more = "")
    {
        var text = new StringBuilder().Append(CultureInfo.InvariantCulture, $"host={Host} port={Port} user={User} dbname=db sslmode={SslMode} connect_timeout=30");
        if (Password.Length > 0)
        {
            text.Append(CultureInfo.InvariantCulture, $" password={Password}");
        }

        return (more.Length > 0 ? text.Append(' ').Append(more) : text).ToString();
    }

    /// <summary>libpq's environment for this server (PGHOST, PGPORT, ...), for programs that take no connection string.</summary>
    public Dictionary<string, string> LibpqEnvironment() => new()
    {
        ["PGHOST"] = Host,
        ["PGPORT"] = Port.ToString(CultureInfo.InvariantCulture),
        ["PGUSER"] = User,
        ["PGDATABASE"] = "db",
        ["PGPASSWORD"] = Password,
        ["PGSSLMODE"] = SslMode,
        ["PGCONNECT_TIMEOUT"] = "30",
        ["PGAPPNAME"] = "pgspec-tests",
    };

    /// <summary>Server stderr to add to an assertion's message.</summary>
    public string Diagnostics => "\n--- pgspec serve stderr\n" + Process.Stderr;
}

/// <summary>
/// The <c>pgspec serve</c> processes of one test class, each started on first use: trust,
/// SCRAM-SHA-256 with TLS, MD5, cleartext password, trust on a Unix socket, and
/// trust limited to protocol 3.0. Each has its own in-memory database and a --trace file.
/// </summary>
public sealed class ServeServers : IAsyncLifetime
{
    public const string User = "u";
    public const string Secret = "p";

    private readonly Dictionary<string, Task<ServeServer>> _servers = new(StringComparer.Ordinal);
    private readonly TempDirectory _directory = new();
    private readonly Lazy<(string Cert, string Key)> _certificate;

    public ServeServers() => _certificate = new(WriteCertificate, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The folder of this fixture's files (certificate, traces, scripts the tests write).</summary>
    public string Directory => _directory.Path;

    /// <summary>The server a client in <paramref name="mode"/> logs in to.</summary>
    public Task<ServeServer> For(ClientMode mode) => mode switch
    {
        ClientMode.Plain => Get("trust", tls: false, ["--auth", "trust"]),
        ClientMode.TlsScram => Get("scram", tls: true, ["--auth", "scram-sha-256", "--user", User, "--password", Secret]),
        ClientMode.Md5 => Get("md5", tls: false, ["--auth", "md5", "--user", User, "--password", Secret]),
        ClientMode.Password => Get("password", tls: false, ["--auth", "password", "--user", User, "--password", Secret]),
        _ => throw new ArgumentOutOfRangeException(nameof(mode)),
    };

    /// <summary>A trust server on a Unix socket: DIR/.s.PGSQL.5432, which clients reach with host=DIR port=5432.</summary>
    public Task<ServeServer> UnixSocket() => Get("unix", tls: false, ["--auth", "trust"], unix: true);

    /// <summary>A trust server that offers protocol 3.0 at most.</summary>
    public Task<ServeServer> Protocol30() => Get("protocol-3.0", tls: false, ["--auth", "trust", "--max-protocol", "3.0"]);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        Task<ServeServer>[] started;
        lock (_servers)
        {
            started = [.. _servers.Values];
        }

        foreach (Task<ServeServer> server in started)
        {
            if (server.IsCompletedSuccessfully)
            {
                await server.Result.Process.DisposeAsync();
            }
        }

        _directory.Dispose();
    }

    /// <summary>Stops a server with SIGTERM and returns its exit code (its sessions get the shutdown grace).</summary>
    public static Task<int> StopAsync(ServeServer server) => server.Process.StopAsync();

    private Task<ServeServer> Get(string name, bool tls, string[] arguments, bool unix = false)
    {
        lock (_servers)
        {
            if (!_servers.TryGetValue(name, out Task<ServeServer>? server))
            {
                server = StartAsync(name, tls, arguments, unix);
                _servers[name] = server;
            }

            return server;
        }
    }

    private async Task<ServeServer> StartAsync(string name, bool tls, string[] arguments, bool unix)
    {
        string trace = Path.Combine(Directory, name + ".trace");
        bool password = arguments.Contains("--password");
        for (int attempt = 1; ; attempt++)
        {
            string host, listen;
            int port;
            if (unix)
            {
                host = Path.Combine(Directory, name);
                System.IO.Directory.CreateDirectory(host);
                port = 5432;
                listen = Path.Combine(host, ".s.PGSQL.5432");
            }
            else
            {
                host = "127.0.0.1";
                port = ServeProcess.FreePort();
                listen = "127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture);
            }

            List<string> all = ["--listen", listen, "--trace", trace, "--shutdown-grace", "1", .. arguments];
            if (tls)
            {
                all.AddRange(["--tls-cert", _certificate.Value.Cert, "--tls-key", _certificate.Value.Key]);
            }

            try
            {
                ServeProcess process = await ServeProcess.StartAsync(all);
                return new ServeServer(process, host, port, User, password ? Secret : "", tls, trace);
            }
            catch (InvalidOperationException e) when (!unix && attempt < 3 && e.Message.Contains("cannot listen", StringComparison.Ordinal))
            {
                // Another program took the free port first: take another.
            }
        }
    }

    /// <summary>A self-signed certificate for localhost and 127.0.0.1, as PEM files.</summary>
    private (string Cert, string Key) WriteCertificate()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(System.Net.IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        using X509Certificate2 certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        string cert = _directory.Write("server.crt", Encoding.ASCII.GetBytes(certificate.ExportCertificatePem()));
        string keyFile = _directory.Write("server.key", Encoding.ASCII.GetBytes(key.ExportPkcs8PrivateKeyPem()));
        return (cert, keyFile);
    }
}
