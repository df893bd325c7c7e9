using PgSpec.Client;
using PgSpec.Servers;

namespace PgSpec.Server.Tests;

/// <summary>
/// A real PostgreSQL 15 for the tests to compare with: its stored password hashes and verifiers,
/// and the errors it sends for the same failures. Started once for the tests of its collection.
/// </summary>
public sealed class PostgresFixture : IAsyncLifetime
{
    private PgServer? _server;

    public PgServer Server => _server ?? throw new InvalidOperationException("PostgreSQL did not start");

    public async Task InitializeAsync()
        => _server = await new LocalPgServerProvider().StartAsync(new PgServerOptions { MajorVersion = 15 }, CancellationToken.None);

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }

    /// <summary>Options to log in to PostgreSQL over TCP without TLS.</summary>
    public PgConnectOptions Login(string user, string? password) => new()
    {
        Host = Server.Host,
        Port = Server.Port,
        User = user,
        Password = password,
        Database = "postgres",
        SslMode = PgSslMode.Disable,
        ConnectTimeout = TimeSpan.FromSeconds(30),
    };

    /// <summary>Runs SQL as the superuser and returns the first value of the last result.</summary>
    public async Task<string?> ScalarAsync(string sql)
    {
        await using PgFrontendSession session = await PgFrontendSession.ConnectAsync(Login("postgres", null), cancellationToken: Wait.Token);
        IReadOnlyList<Client.PgResult> results = await session.QueryAsync(sql, cancellationToken: Wait.Token);
        return results[^1].Rows.Count > 0 ? results[^1].Text(0, 0) : null;
    }

    /// <summary>The password hash or verifier PostgreSQL stores for a role (pg_authid.rolpassword).</summary>
    public Task<string?> StoredPasswordAsync(string role)
        => ScalarAsync($"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'");
}

[CollectionDefinition(Name)]
public sealed class PostgresCollection : ICollectionFixture<PostgresFixture>
{
    public const string Name = "postgres";
}
