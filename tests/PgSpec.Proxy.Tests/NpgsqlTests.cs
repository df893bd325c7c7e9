using System.Globalization;
using System.Text;
using Npgsql;
using PgSpec.Server.Tests;
using PgSpec.Servers;

namespace PgSpec.Proxy.Tests;

/// <summary>Npgsql through the proxy reads what it reads directly.</summary>
[Collection(ServerCollection.Name)]
public class NpgsqlTests
{
    private readonly ServerFixture _servers;

    public NpgsqlTests(ServerFixture servers) => _servers = servers;

    [Theory]
    [InlineData(15, PgAuthMethod.ScramSha256)]
    [InlineData(18, PgAuthMethod.ScramSha256)]
    [InlineData(18, PgAuthMethod.Md5)]
    public async Task Npgsql_ThroughTheProxy_ReadsWhatItReadsDirectly(int major, PgAuthMethod method)
    {
        PgServer server = await _servers.Server(major);
        PgRole role = server.Role(method);
        await using var proxy = new ProxyHarness(server);

        string direct = await WorkloadAsync(ConnectionString(server.Host, server.Port, role));
        string proxied = await WorkloadAsync(ConnectionString("127.0.0.1", proxy.Port, role));

        Assert.Contains("22012", direct);
        Assert.Contains("copied 1000", direct);
        Assert.Equal(direct, proxied);
        await proxy.WaitIdleAsync();
        Assert.Equal(0, proxy.Proxy.Statistics.Failed);
        Assert.Contains("\tBind\t", proxy.Trace);
    }

    [Fact]
    public async Task NpgsqlCancel_ThroughTheProxy_CancelsTheQuery()
    {
        PgServer server = await _servers.Server(18);
        await using var proxy = new ProxyHarness(server);
        await using var connection = new NpgsqlConnection(ConnectionString("127.0.0.1", proxy.Port, server.Role(PgAuthMethod.Trust)));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT pg_sleep(60)", connection);
        await using var probe = new NpgsqlConnection(ConnectionString(server.Host, server.Port, server.Role(PgAuthMethod.Trust)));
        await probe.OpenAsync();

        Task<object?> running = command.ExecuteScalarAsync();

        // The proxy passes the server's process id on (only the key is its own): the backend is the session's.
        await using var check = new NpgsqlCommand($"SELECT count(*) FROM pg_stat_activity WHERE pid = {connection.ProcessID.ToString(CultureInfo.InvariantCulture)} AND query = 'SELECT pg_sleep(60)' AND state = 'active'", probe);
        await Wait.UntilAsync(async () => (long)(await check.ExecuteScalarAsync())! > 0, "the query runs on the server");
        command.Cancel();
        OperationCanceledException cancelled = await Assert.ThrowsAsync<OperationCanceledException>(() => running);

        Assert.Equal("57014", Assert.IsType<PostgresException>(cancelled.InnerException).SqlState);
        Assert.Equal(1, proxy.Proxy.Statistics.CancelRequests);
    }

    private static string ConnectionString(string host, int port, PgRole role) => new NpgsqlConnectionStringBuilder
    {
        Host = host,
        Port = port,
        Username = role.Name,
        Password = role.Password.Length > 0 ? role.Password : null,
        Database = "postgres",
        SslMode = SslMode.Disable,
        Pooling = false,
        Timeout = 30,
    }.ConnectionString;

    private static async Task<string> WorkloadAsync(string connectionString)
    {
        var result = new StringBuilder();
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();

        async Task Rows(NpgsqlCommand command)
        {
            await using NpgsqlDataReader reader = await command.ExecuteReaderAsync();
            do
            {
                while (await reader.ReadAsync())
                {
                    for (int i = 0; i < reader.FieldCount; i++)
                    {
                        object value = reader.GetValue(i);
                        result.Append(reader.GetName(i)).Append('=').Append(value switch
                        {
                            DBNull => "NULL",
                            byte[] bytes => Convert.ToHexString(bytes),
                            Array array => string.Join(",", array.Cast<object>()),
                            IFormattable formattable => formattable.ToString(null, CultureInfo.InvariantCulture),
                            _ => value.ToString(),
                        }).Append(';');
                    }

                    result.Append('\n');
                }
            }
            while (await reader.NextResultAsync());
        }

        await Rows(new NpgsqlCommand("SELECT 1 AS i, 'text' AS t, NULL::int AS n, '\\x00ff'::bytea AS b, 1.25::numeric AS d, ARRAY[1,2,3] AS a, '{\"k\": [1, null]}'::jsonb AS j, '2024-01-02 03:04:05'::timestamp AS ts", connection));
        await using (var prepared = new NpgsqlCommand("SELECT $1::int * 2 AS doubled, length($2::text) AS len", connection))
        {
            prepared.Parameters.Add(new NpgsqlParameter { Value = 21 });
            prepared.Parameters.Add(new NpgsqlParameter { Value = new string('x', 1_000_000) });
            await prepared.PrepareAsync();
            await Rows(prepared);
            prepared.Parameters[0].Value = 50;
            await Rows(prepared);
        }

        await using (var batch = new NpgsqlBatch(connection))
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT 'first' AS s"));
            batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT g AS n FROM generate_series(1, 3) g"));
            await using NpgsqlDataReader reader = await batch.ExecuteReaderAsync();
            do
            {
                while (await reader.ReadAsync())
                {
                    result.Append(reader.GetValue(0)).Append('\n');
                }
            }
            while (await reader.NextResultAsync());
        }

        try
        {
            await new NpgsqlCommand("SELECT 1/0", connection).ExecuteScalarAsync();
        }
        catch (PostgresException e)
        {
            result.Append("error ").Append(e.SqlState).Append(' ').Append(e.MessageText).Append('\n');
        }

        await new NpgsqlCommand("CREATE TEMP TABLE c (a int, b text)", connection).ExecuteNonQueryAsync();
        await using (NpgsqlBinaryImporter importer = await connection.BeginBinaryImportAsync("COPY c FROM STDIN (FORMAT BINARY)"))
        {
            for (int i = 0; i < 1000; i++)
            {
                await importer.StartRowAsync();
                await importer.WriteAsync(i);
                await importer.WriteAsync("row " + i.ToString(CultureInfo.InvariantCulture));
            }

            result.Append("copied ").Append(await importer.CompleteAsync()).Append('\n');
        }

        using (TextReader reader = await connection.BeginTextExportAsync("COPY (SELECT * FROM c ORDER BY a LIMIT 5) TO STDOUT"))
        {
            result.Append(await reader.ReadToEndAsync());
        }

        await Rows(new NpgsqlCommand("SELECT count(*) AS n, sum(a) AS s FROM c", connection));
        return result.ToString();
    }
}
