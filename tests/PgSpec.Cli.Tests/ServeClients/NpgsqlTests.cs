using System.Globalization;
using Npgsql;

namespace PgSpec.Cli.Tests.ServeClients;

/// <summary>Npgsql against <c>pgspec serve</c>: parameters, transactions, binary values, many rows, text COPY, cancel.</summary>
public sealed class NpgsqlTests(ServeServers servers) : IClassFixture<ServeServers>
{
    [Theory]
    [InlineData(ClientMode.Plain)]
    [InlineData(ClientMode.TlsScram)]
    [InlineData(ClientMode.Md5)]
    public async Task Npgsql_ParametersTransactionsAndBinaryValues(ClientMode mode)
    {
        ServeServer server = await servers.For(mode);
        string table = "npgsql_" + mode.ToString().ToLowerInvariant();
        await using NpgsqlDataSource source = DataSource(server);
        await using NpgsqlConnection connection = await source.OpenConnectionAsync();
        await Execute(connection, $"CREATE TABLE {table} (id int8, name text, score float8, data bytea, flag bool)");

        // $1 positional parameters, prepared and run twice. A prepared statement is described
        // before it runs: an expression's column needs a cast to have a type other than text.
        await using (var positional = new NpgsqlCommand("SELECT ($1::int8 + 1)::int8, $2::text || '!'", connection))
        {
            positional.Parameters.Add(new NpgsqlParameter { Value = 41L });
            positional.Parameters.Add(new NpgsqlParameter { Value = "hello" });
            await positional.PrepareAsync();
            for (long i = 41; i < 43; i++)
            {
                positional.Parameters[0].Value = i;
                await using NpgsqlDataReader reader = await positional.ExecuteReaderAsync();
                Assert.True(await reader.ReadAsync());
                Assert.Equal(i + 1, reader.GetInt64(0));
                Assert.Equal("hello!", reader.GetString(1));
            }
        }

        // @named parameters (Npgsql rewrites them to $n) of every type the server has, NULL among them.
        await using (var insert = new NpgsqlCommand($"INSERT INTO {table} VALUES (@id, @name, @score, @data, @flag)", connection))
        {
            insert.Parameters.AddWithValue("id", 1L);
            insert.Parameters.AddWithValue("name", "one");
            insert.Parameters.AddWithValue("score", 2.5);
            insert.Parameters.AddWithValue("data", new byte[] { 0, 1, 0xff });
            insert.Parameters.AddWithValue("flag", true);
            Assert.Equal(1, await insert.ExecuteNonQueryAsync());
            insert.Parameters["id"].Value = 2L;
            insert.Parameters["name"].Value = DBNull.Value;
            insert.Parameters["score"].Value = DBNull.Value;
            insert.Parameters["data"].Value = Array.Empty<byte>();
            insert.Parameters["flag"].Value = false;
            Assert.Equal(1, await insert.ExecuteNonQueryAsync());
        }

        // A transaction committed, one rolled back.
        await using (NpgsqlTransaction commit = await connection.BeginTransactionAsync())
        {
            await Execute(connection, $"INSERT INTO {table} (id, name) VALUES (3, 'committed')");
            await commit.CommitAsync();
        }

        await using (NpgsqlTransaction rollback = await connection.BeginTransactionAsync())
        {
            await Execute(connection, $"INSERT INTO {table} (id, name) VALUES (4, 'rolled back')");
            await rollback.RollbackAsync();
        }

        // Binary results: Npgsql asks for every column in binary format.
        await using (var select = new NpgsqlCommand($"SELECT id, name, score, data, flag FROM {table} ORDER BY id", connection))
        await using (NpgsqlDataReader reader = await select.ExecuteReaderAsync())
        {
            Assert.Equal(["bigint", "text", "double precision", "bytea", "boolean"], Enumerable.Range(0, 5).Select(reader.GetDataTypeName));
            Assert.True(await reader.ReadAsync());
            Assert.Equal(1L, reader.GetInt64(0));
            Assert.Equal("one", reader.GetString(1));
            Assert.Equal(2.5, reader.GetDouble(2));
            Assert.Equal(new byte[] { 0, 1, 0xff }, reader.GetFieldValue<byte[]>(3));
            Assert.True(reader.GetBoolean(4));
            Assert.True(await reader.ReadAsync());
            Assert.Equal(2L, reader.GetInt64(0));
            Assert.True(reader.IsDBNull(1));
            Assert.True(reader.IsDBNull(2));
            Assert.Empty(reader.GetFieldValue<byte[]>(3));
            Assert.False(reader.GetBoolean(4));
            Assert.True(await reader.ReadAsync());
            Assert.Equal(3L, reader.GetInt64(0));
            Assert.Equal("committed", reader.GetString(1));
            Assert.True(reader.IsDBNull(4));
            Assert.False(await reader.ReadAsync());
        }

        // The rows came in binary format (the last field of each column of RowDescription).
        Assert.Contains(
            ServerTrace.Session(server, connection.ProcessID),
            l => l.Contains("\tRowDescription\t 5 \"id\" 0 0 20 8 -1 1 \"name\" 0 0 25 65535 -1 1 \"score\" 0 0 701 8 -1 1 \"data\" 0 0 17 65535 -1 1 \"flag\" 0 0 16 1 -1 1", StringComparison.Ordinal));

        // An error: the SQLSTATE, and the connection goes on.
        PostgresException error = await Assert.ThrowsAsync<PostgresException>(() => Execute(connection, "SELECT * FROM no_such_table"));
        Assert.Equal("42P01", error.SqlState);
        Assert.Equal(3L, await Scalar(connection, $"SELECT count(*) FROM {table}"));
    }

    [Fact]
    public async Task Npgsql_ReadsManyRows()
    {
        const int Rows = 100_000;
        ServeServer server = await servers.For(ClientMode.Plain);
        await using NpgsqlDataSource source = DataSource(server);
        await using NpgsqlConnection connection = await source.OpenConnectionAsync();
        await using var command = new NpgsqlCommand(
            $"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {Rows}) SELECT i, 'row ' || i, i * 0.5 FROM s",
            connection);

        long count = 0, sum = 0;
        await using (NpgsqlDataReader reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                long i = reader.GetInt64(0);
                Assert.Equal("row " + i.ToString(CultureInfo.InvariantCulture), reader.GetString(1));
                Assert.Equal(i * 0.5, reader.GetDouble(2));
                count++;
                sum += i;
            }
        }

        Assert.Equal(Rows, count);
        Assert.Equal((long)Rows * (Rows + 1) / 2, sum);
    }

    [Fact]
    public async Task Npgsql_TextCopyBothWays_AndBinaryCopyIsRefused()
    {
        ServeServer server = await servers.For(ClientMode.Plain);
        await using NpgsqlDataSource source = DataSource(server);
        await using NpgsqlConnection connection = await source.OpenConnectionAsync();
        await Execute(connection, "CREATE TABLE npgsql_copy (id int8, name text)");

        await using (TextWriter import = await connection.BeginTextImportAsync("COPY npgsql_copy (id, name) FROM STDIN"))
        {
            for (int i = 1; i <= 1000; i++)
            {
                await import.WriteAsync(string.Create(CultureInfo.InvariantCulture, $"{i}\tname {i}\n"));
            }

            await import.WriteAsync("1001\t\\N\n");
        }

        string exported;
        using (TextReader export = await connection.BeginTextExportAsync("COPY (SELECT id, name FROM npgsql_copy WHERE id > 998 ORDER BY id) TO STDOUT"))
        {
            exported = await export.ReadToEndAsync();
        }

        Assert.Equal("999\tname 999\n1000\tname 1000\n1001\t\\N\n", exported);
        Assert.Equal(1001L, await Scalar(connection, "SELECT count(*) FROM npgsql_copy"));

        // Binary COPY is not there: a clear error, and the connection goes on.
        PostgresException binary = await Assert.ThrowsAsync<PostgresException>(async () =>
        {
            await using NpgsqlBinaryImporter importer = await connection.BeginBinaryImportAsync("COPY npgsql_copy FROM STDIN (FORMAT BINARY)");
        });
        Assert.Equal("0A000", binary.SqlState);
        Assert.Equal(1001L, await Scalar(connection, "SELECT count(*) FROM npgsql_copy"));
    }

    [Fact]
    public async Task Npgsql_ConnectionStringCompatibilityMode_PooledConnectionIsResetAndReused()
    {
        ServeServer server = await servers.For(ClientMode.Plain);

        // The connection string's keyword (obsolete in Npgsql 9 but honoured) instead of the data source builder.
        string pooled = ConnectionString(server) + ";Server Compatibility Mode=NoTypeLoading;Pooling=true;Maximum Pool Size=1";
        int firstProcess;
        await using (var connection = new NpgsqlConnection(pooled))
        {
            await connection.OpenAsync();
            firstProcess = connection.ProcessID;
            await Execute(connection, "SET application_name = 'changed'");
            await using var prepared = new NpgsqlCommand("SELECT $1::int8", connection);
            prepared.Parameters.Add(new NpgsqlParameter { Value = 1L });
            await prepared.PrepareAsync();
            Assert.Equal(1L, await prepared.ExecuteScalarAsync());
        }

        // Back from the pool: the same session, reset to the connection's settings (Npgsql sends the
        // reset before the first command, and fails that command if the reset fails).
        await using (var connection = new NpgsqlConnection(pooled))
        {
            await connection.OpenAsync();
            Assert.Equal(firstProcess, connection.ProcessID);
            Assert.Equal("pgspec-tests", await Scalar(connection, "SHOW application_name"));
        }

        NpgsqlConnection.ClearPool(new NpgsqlConnection(pooled));

        // Npgsql resets with DISCARD ALL, or statement by statement (RESET ALL; CLOSE ALL; UNLISTEN *;
        // SELECT pg_advisory_unlock_all(); ...) when it keeps prepared statements.
        Assert.Contains(ServerTrace.Session(server, firstProcess), l => l.Contains("\tQuery\t", StringComparison.Ordinal) && l.Contains("RESET ALL;CLOSE ALL;", StringComparison.Ordinal));
    }

    [Fact]
    public async Task NpgsqlCancel_StopsARunningQuery()
    {
        ServeServer server = await servers.For(ClientMode.Plain);
        await using NpgsqlDataSource source = DataSource(server);
        await using NpgsqlConnection connection = await source.OpenConnectionAsync();
        await using var command = new NpgsqlCommand("SELECT pg_sleep(60) -- npgsql cancel", connection);

        Task<object?> running = command.ExecuteScalarAsync();
        await ServerTrace.WaitForQueryAsync(server, connection.ProcessID, "npgsql cancel");
        command.Cancel();

        OperationCanceledException cancelled = await Assert.ThrowsAsync<OperationCanceledException>(() => running);
        Assert.Equal("57014", Assert.IsType<PostgresException>(cancelled.InnerException).SqlState);
        Assert.Equal(1L, await Scalar(connection, "SELECT 1"));
    }

    /// <summary>
    /// What Npgsql needs to talk to a server without PostgreSQL's catalog: no type loading (it
    /// would query pg_type when it opens the first connection); the rest is as for PostgreSQL.
    /// </summary>
    private static NpgsqlDataSource DataSource(ServeServer server)
    {
        var builder = new NpgsqlDataSourceBuilder(ConnectionString(server));
        builder.ConfigureTypeLoading(types => types.EnableTypeLoading(false));
        return builder.Build();
    }

    private static string ConnectionString(ServeServer server) => new NpgsqlConnectionStringBuilder
    {
        Host = server.Host,
        Port = server.Port,
        Username = server.User,
        Password = server.Password.Length > 0 ? server.Password : null,
        Database = "db",
        SslMode = server.Tls ? SslMode.Require : SslMode.Disable,
        ApplicationName = "pgspec-tests",
        Pooling = false,
        Timeout = 30,
        CommandTimeout = 120,
    }.ConnectionString;

    private static async Task Execute(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    private static async Task<object?> Scalar(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        return await command.ExecuteScalarAsync();
    }
}
