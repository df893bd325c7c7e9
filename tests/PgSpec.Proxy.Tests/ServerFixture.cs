using PgSpec.Cli.Tests.RealServer;
using PgSpec.Servers;

namespace PgSpec.Proxy.Tests;

/// <summary>
/// Starts PostgreSQL 15 and 18 once for all tests, each initialised for pgbench, and stops them
/// at the end. A server that cannot be started fails the tests that need it, with the reason.
/// </summary>
public sealed class ServerFixture : IAsyncLifetime
{
    private readonly Dictionary<int, Task<PgServer>> _servers = new();

    public Task InitializeAsync()
    {
        foreach (int major in new[] { 15, 18 })
        {
            _servers[major] = StartAsync(major);
        }

        return Task.CompletedTask;
    }

    public Task<PgServer> Server(int major) => _servers[major];

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

    private static async Task<PgServer> StartAsync(int major)
    {
        PgServer server = await new LocalPgServerProvider().StartAsync(new PgServerOptions { MajorVersion = major }, CancellationToken.None);
        PgRole trust = server.Role(PgAuthMethod.Trust);
        ExternalProcess.RunChecked("/usr/bin/pgbench", ["-i", "-q", "-s", "1", "-h", server.Host, "-p", server.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-U", trust.Name, "postgres"]);
        return server;
    }
}

[CollectionDefinition(Name)]
public sealed class ServerCollection : ICollectionFixture<ServerFixture>
{
    public const string Name = "servers";
}
