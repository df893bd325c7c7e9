using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace PgSpec.Servers;

/// <summary>
/// Runs a throwaway cluster from local binaries (see <see cref="PgBinaries"/>): initdb into a
/// private folder (as the postgres user when running as root, since the server refuses root),
/// a CA-signed certificate with ssl=on, wal_level=logical, the standard roles with matching
/// pg_hba lines, a free loopback port and a private socket folder.
/// </summary>
public sealed class LocalPgServerProvider : IPgServerProvider
{
    /// <inheritdoc/>
    public string Name => "local";

    private static bool IsRoot => Environment.IsPrivilegedProcess;

    /// <inheritdoc/>
    public async Task<PgServer> StartAsync(PgServerOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        PgBinaries binaries = await PgBinaries.FindOrInstallAsync(options.MajorVersion, options.Progress, cancellationToken).ConfigureAwait(false);
        options.Progress?.Invoke($"PostgreSQL {binaries.Major} from {binaries.Source}: {binaries.BinDirectory}");

        string root = Directory.CreateTempSubdirectory("pgspec-pg" + binaries.Major.ToString(CultureInfo.InvariantCulture) + "-").FullName;
        try
        {
            return await StartInAsync(root, binaries, options, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await StopAsync(binaries, root, delete: true).ConfigureAwait(false);
            throw;
        }
    }

    private static async Task<PgServer> StartInAsync(string root, PgBinaries binaries, PgServerOptions options, CancellationToken cancellationToken)
    {
        string data = Path.Combine(root, "data");
        string sockets = Path.Combine(root, "sockets");
        string log = Path.Combine(root, "server.log");
        Directory.CreateDirectory(sockets);
        File.WriteAllText(log, "");
        if (IsRoot)
        {
            PgBinaries.MakeReadableByAll(Path.GetDirectoryName(binaries.BinDirectory)!);
            await RunAsync("chown", ["-R", "postgres:postgres", root], cancellationToken).ConfigureAwait(false);
        }

        await RunAsPostgresAsync(binaries, "initdb", ["-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"], cancellationToken).ConfigureAwait(false);

        (string caPem, string certPem, string keyPem) = CreateCertificates();
        WriteOwned(Path.Combine(data, "root.crt"), caPem);
        WriteOwned(Path.Combine(data, "server.crt"), certPem);
        WriteOwned(Path.Combine(data, "server.key"), keyPem, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        WriteOwned(Path.Combine(data, "pg_hba.conf"), HbaConf());

        await RunAsPostgresAsync(binaries, "postgres", ["--single", "-D", data, "-F", "-c", "exit_on_error=true", "postgres"], cancellationToken, RolesSql()).ConfigureAwait(false);

        for (int attempt = 1; ; attempt++)
        {
            int port = FreePort();
            var conf = new StringBuilder();
            conf.AppendLine("# Written by PgSpec for a throwaway server.");
            foreach ((string key, string value) in Settings(port, sockets).Concat(options.Settings.Select(p => (p.Key, p.Value))))
            {
                conf.Append(key).Append(" = '").Append(value.Replace("'", "''", StringComparison.Ordinal)).AppendLine("'");
            }

            WriteOwned(Path.Combine(data, "postgresql.auto.conf"), conf.ToString());
            ProcessRunner.Result start = await RunAsPostgresAsync(binaries, "pg_ctl", ["-D", data, "-l", log, "-w", "-t", ((int)options.StartTimeout.TotalSeconds).ToString(CultureInfo.InvariantCulture), "start"], cancellationToken, check: false).ConfigureAwait(false);
            if (start.ExitCode == 0)
            {
                options.Progress?.Invoke($"PostgreSQL {binaries.Major} listening on 127.0.0.1:{port}");
                return new PgServer("local", "127.0.0.1", port, sockets, binaries.Major, binaries.Version, caPem, PgRole.Standard, data, log, (server, delete) => StopAsync(binaries, root, delete));
            }

            string tail = File.Exists(log) ? string.Join('\n', File.ReadLines(log).TakeLast(20)) : "";
            if (attempt == 3 || !tail.Contains("could not bind", StringComparison.OrdinalIgnoreCase))
            {
                throw new PgProvisionException($"PostgreSQL {binaries.Major} did not start (pg_ctl exit {start.ExitCode}): {start.Output.Trim()}\n{tail}");
            }
        }
    }

    private static IEnumerable<(string Key, string Value)> Settings(int port, string sockets)
    {
        yield return ("listen_addresses", "127.0.0.1");
        yield return ("port", port.ToString(CultureInfo.InvariantCulture));
        yield return ("unix_socket_directories", sockets);
        yield return ("ssl", "on");
        yield return ("ssl_cert_file", "server.crt");
        yield return ("ssl_key_file", "server.key");
        yield return ("ssl_ca_file", "root.crt");
        yield return ("wal_level", "logical");
        yield return ("max_wal_senders", "10");
        yield return ("max_replication_slots", "10");
        yield return ("fsync", "off");
        yield return ("synchronous_commit", "off");
        yield return ("full_page_writes", "off");
        yield return ("password_encryption", "scram-sha-256");
        yield return ("max_connections", "100");
        yield return ("shared_buffers", "32MB");
    }

    private static string HbaConf()
    {
        var hba = new StringBuilder();
        hba.AppendLine("# Written by PgSpec: one role per authentication method.");
        hba.AppendLine("local all all trust");
        foreach (PgRole role in PgRole.Standard)
        {
            if (role.SslOnly)
            {
                hba.AppendLine($"hostssl all {role.Name} 127.0.0.1/32 {role.HbaMethod}");
                hba.AppendLine($"hostnossl all {role.Name} 127.0.0.1/32 reject");
                continue;
            }

            hba.AppendLine($"host all {role.Name} 127.0.0.1/32 {role.HbaMethod}");
            if (role.Replication)
            {
                hba.AppendLine($"host replication {role.Name} 127.0.0.1/32 {role.HbaMethod}");
            }
        }

        hba.AppendLine("host all postgres 127.0.0.1/32 trust");
        return hba.ToString();
    }

    private static string RolesSql()
    {
        var sql = new StringBuilder();
        foreach (PgRole role in PgRole.Standard)
        {
            // MD5 authentication needs the password stored as MD5; SCRAM otherwise.
            sql.AppendLine(role.Method == PgAuthMethod.Md5 ? "SET password_encryption = 'md5';" : "SET password_encryption = 'scram-sha-256';");
            string password = role.Password.Length == 0 ? "" : $" PASSWORD '{role.Password.Replace("'", "''", StringComparison.Ordinal)}'";
            sql.AppendLine($"CREATE ROLE {role.Name} LOGIN CREATEDB{(role.Replication ? " REPLICATION" : "")}{password};");
        }

        sql.AppendLine("GRANT ALL ON SCHEMA public TO PUBLIC;");
        sql.AppendLine("GRANT CREATE ON DATABASE postgres TO PUBLIC;");
        return sql.ToString();
    }

    private static (string Ca, string Certificate, string Key) CreateCertificates()
    {
        DateTimeOffset now = DateTimeOffset.UtcNow;
        using ECDsa caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=PgSpec throwaway CA", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        caRequest.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(caRequest.PublicKey, false));
        using X509Certificate2 ca = caRequest.CreateSelfSigned(now.AddDays(-1), now.AddDays(30));

        using ECDsa key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyAgreement, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        byte[] serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7F;
        using X509Certificate2 certificate = request.Create(ca, now.AddDays(-1), now.AddDays(29), serial);
        return (ca.ExportCertificatePem(), certificate.ExportCertificatePem(), key.ExportPkcs8PrivateKeyPem());
    }

    private static void WriteOwned(string path, string text, UnixFileMode? mode = null)
    {
        File.WriteAllText(path, text);
        if (mode is UnixFileMode m && !OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, m);
        }

        if (IsRoot)
        {
            RunAsync("chown", ["postgres:postgres", path], CancellationToken.None).GetAwaiter().GetResult();
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private static async Task StopAsync(PgBinaries binaries, string root, bool delete)
    {
        string data = Path.Combine(root, "data");
        if (File.Exists(Path.Combine(data, "postmaster.pid")))
        {
            try
            {
                await RunAsPostgresAsync(binaries, "pg_ctl", ["-D", data, "-m", delete ? "fast" : "immediate", "-w", "-t", "60", "stop"], CancellationToken.None, check: false).ConfigureAwait(false);
            }
            catch (PgProvisionException)
            {
                // Deleting the folder below is what matters.
            }
        }

        if (delete)
        {
            try
            {
                Directory.Delete(root, recursive: true);
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
    }

    private static async Task<ProcessRunner.Result> RunAsPostgresAsync(PgBinaries binaries, string program, IReadOnlyList<string> arguments, CancellationToken cancellationToken, string? input = null, bool check = true)
    {
        string path = Path.Combine(binaries.BinDirectory, program);
        ProcessRunner.Result result = IsRoot
            ? await ProcessRunner.RunAsync("runuser", ["-u", "postgres", "--", path, .. arguments], TimeSpan.FromMinutes(3), cancellationToken, input).ConfigureAwait(false)
            : await ProcessRunner.RunAsync(path, arguments, TimeSpan.FromMinutes(3), cancellationToken, input).ConfigureAwait(false);
        if (check && result.ExitCode != 0)
        {
            throw new PgProvisionException($"{program} failed (exit {result.ExitCode}): {result.Output.Trim()}");
        }

        return result;
    }

    private static async Task RunAsync(string program, IReadOnlyList<string> arguments, CancellationToken cancellationToken)
    {
        ProcessRunner.Result result = await ProcessRunner.RunAsync(program, arguments, TimeSpan.FromMinutes(1), cancellationToken).ConfigureAwait(false);
        if (result.ExitCode != 0)
        {
            throw new PgProvisionException($"{program} {string.Join(' ', arguments)} failed: {result.Output.Trim()}");
        }
    }
}
