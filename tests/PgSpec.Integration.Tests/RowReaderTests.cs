using System.Buffers.Binary;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using PgSpec.Client;
using PgSpec.Protocol;

namespace PgSpec.Integration.Tests;

/// <summary>The streaming row reader against real servers: results as they arrive, memory independent of their size.</summary>
[Collection(ServerCollection.Name)]
public class RowReaderTests(ServerFixture fixture)
{
    private async Task<PgFrontendSession> ConnectAsync(int major, Action<PgTraffic>? traffic = null, TimeSpan? commandTimeout = null)
    {
        PgConnectOptions options = await fixture.OptionsAsync(major);
        return await PgFrontendSession.ConnectAsync(options with { CommandTimeout = commandTimeout ?? TimeSpan.FromSeconds(60) }, traffic);
    }

    [Theory]
    [InlineData(15)]
    [InlineData(18)]
    public async Task QueryReader_ManyRows_StreamsEveryRowWithoutAllocatingPerRow(int major)
    {
        const int rows = 200_000;
        await using PgFrontendSession session = await ConnectAsync(major);
        await using PgRowReader reader = await session.QueryReaderAsync($"SELECT g, g::text || 'x', NULL::int FROM generate_series(1, {rows}) g");
        Assert.Equal(3, reader.Description!.Fields.Length);

        long sum = 0;
        long expected = 0;
        int synchronous = 0;
        long allocatedWhenSynchronous = 0;
        while (true)
        {
            // A row already received is read on this thread: what that read allocates is exact.
            long before = GC.GetAllocatedBytesForCurrentThread();
            ValueTask<bool> read = reader.ReadAsync();
            if (read.IsCompletedSuccessfully)
            {
                bool more = await read;
                if (more)
                {
                    synchronous++;
                    sum += Touch(reader);
                    if (reader.RowCount > rows / 10)
                    {
                        // After the first tenth, which fills the pools (pipe segments, await boxes, the wait's timer).
                        allocatedWhenSynchronous += GC.GetAllocatedBytesForCurrentThread() - before;
                    }
                }
                else
                {
                    break;
                }
            }
            else if (await read)
            {
                sum += Touch(reader);
            }
            else
            {
                break;
            }

            long n = reader.RowCount;
            Assert.Equal(n.ToString(CultureInfo.InvariantCulture), Encoding.ASCII.GetString(reader.GetBytes(0)));
            Assert.True(reader.IsDBNull(2));
            expected += (2 * n.ToString(CultureInfo.InvariantCulture).Length) + 2;
        }

        Assert.Equal(rows, reader.RowCount);
        Assert.Equal($"SELECT {rows}", reader.CommandTag);
        Assert.Equal(expected, sum);
        
        // Nothing per row: what remains (a few hundred bytes per 64 KiB socket read, in the pipe) is less than a byte a row.
        Assert.True(allocatedWhenSynchronous < rows, $"{allocatedWhenSynchronous} bytes allocated while reading {rows} rows");

        // Most rows come from what one socket read delivered; only a read that waits allocates.
        Assert.True(synchronous > rows * 9 / 10, $"{synchronous} of {rows} rows were read without waiting");
        Assert.False(await reader.NextResultAsync());
        Assert.False(reader.HasResult);
        Assert.Equal(TransactionStatus.Idle, session.TransactionStatus);
    }

    [Theory]
    [InlineData(15)]
    [InlineData(18)]
    public async Task QueryReader_SeveralStatements_GivesOneResultEach(int major)
    {
        await using PgFrontendSession session = await ConnectAsync(major);
        await using (PgRowReader reader = await session.QueryReaderAsync("CREATE TEMP TABLE t (a int); INSERT INTO t VALUES (1), (2); SELECT a, 'é' FROM t ORDER BY a; SELECT 42"))
        {
            Assert.True(reader.HasResult);
            Assert.Null(reader.Description);
            Assert.Equal("CREATE TABLE", reader.CommandTag);
            Assert.False(await reader.ReadAsync());

            Assert.True(await reader.NextResultAsync());
            Assert.Equal("INSERT 0 2", reader.CommandTag);

            Assert.True(await reader.NextResultAsync());
            Assert.Equal("a", reader.Description!.Fields[0].Name);
            Assert.Null(reader.CommandTag);
            Assert.True(await reader.ReadAsync());
            Assert.Equal("1", reader.GetString(0));
            Assert.Equal("é", reader.GetString(1));
            Assert.Equal(2, reader.FieldCount);
            Assert.True(await reader.ReadAsync());
            Assert.Equal("2", reader.GetString(0));
            Assert.False(await reader.ReadAsync());
            Assert.Equal("SELECT 2", reader.CommandTag);

            // The last result is left unread: disposing reads it.
            Assert.True(await reader.NextResultAsync());
            Assert.NotNull(reader.Description);
        }

        Assert.Equal("after", (await session.QueryAsync("SELECT 'after'"))[0].Text(0, 0));

        await using (PgRowReader empty = await session.QueryReaderAsync(""))
        {
            Assert.True(empty.EmptyQuery);
            Assert.False(await empty.ReadAsync());
            Assert.False(await empty.NextResultAsync());
        }
    }

    [Theory]
    [InlineData(15)]
    [InlineData(18)]
    public async Task QueryReader_SessionBusyWhileOpen_AndSkippedResultsDrainedOnDispose(int major)
    {
        await using PgFrontendSession session = await ConnectAsync(major);
        PgRowReader reader = await session.QueryReaderAsync("SELECT g FROM generate_series(1, 50000) g; SELECT 'last'");
        Assert.True(await reader.ReadAsync());
        await Assert.ThrowsAsync<InvalidOperationException>(() => session.QueryAsync("SELECT 1"));
        Assert.Throws<InvalidOperationException>(() => session.Send(new Sync()));
        await reader.DisposeAsync();
        Assert.Throws<InvalidOperationException>(() => reader.GetBytes(0));

        IReadOnlyList<PgResult> after = await session.QueryAsync("SELECT 'next'");
        Assert.Equal("next", after[0].Text(0, 0));
    }

    [Theory]
    [InlineData(15)]
    [InlineData(18)]
    public async Task QueryReader_ErrorAmongRows_ThrowsAfterReadyForQuery(int major)
    {
        await using PgFrontendSession session = await ConnectAsync(major);
        int read = 0;
        PgServerException e;
        await using (PgRowReader reader = await session.QueryReaderAsync("SELECT 1 / (g - 3000) FROM generate_series(1, 5000) g; SELECT 2"))
        {
            e = await Assert.ThrowsAsync<PgServerException>(async () =>
            {
                while (await reader.ReadAsync())
                {
                    read++;
                }
            });
            Assert.False(reader.HasResult);
            Assert.False(await reader.NextResultAsync());
        }

        Assert.Equal("22012", e.SqlState);
        Assert.InRange(read, 0, 2999);
        Assert.Equal(TransactionStatus.Idle, session.TransactionStatus);
        Assert.Equal("ok", (await session.QueryAsync("SELECT 'ok'"))[0].Text(0, 0));

        // An error before the first result is thrown when the reader is opened.
        PgServerException first = await Assert.ThrowsAsync<PgServerException>(() => session.QueryReaderAsync("SELECT * FROM no_such_table"));
        Assert.Equal("42P01", first.SqlState);
        Assert.Equal("ok", (await session.QueryAsync("SELECT 'ok'"))[0].Text(0, 0));
    }

    [Theory]
    [InlineData(15)]
    [InlineData(18)]
    public async Task ExecuteReader_BinaryParametersAndResults_WithRowLimit(int major)
    {
        await using PgFrontendSession session = await ConnectAsync(major);
        byte[] offset = new byte[8];
        BinaryPrimitives.WriteInt64BigEndian(offset, 1_000_000_000_000);
        await using (PgRowReader reader = await session.ExecuteReaderAsync(
            "SELECT $1::int8 + g, NULL::int8 FROM generate_series(1, 3000) g",
            parameters: [offset],
            parameterFormats: [1],
            resultFormats: [1]))
        {
            Assert.Equal(20u, reader.Description!.Fields[0].DataTypeOid);
            long n = 0;
            while (await reader.ReadAsync())
            {
                n++;
                Assert.Equal(1_000_000_000_000 + n, BinaryPrimitives.ReadInt64BigEndian(reader.GetBytes(0)));
                Assert.True(reader.IsDBNull(1));
                int columns = 0;
                foreach (PgValue value in reader.Row.Columns)
                {
                    Assert.Equal(columns == 1, value.IsNull);
                    columns++;
                }

                Assert.Equal(2, columns);
            }

            Assert.Equal(3000, n);
            Assert.Equal("SELECT 3000", reader.CommandTag);
            Assert.False(await reader.NextResultAsync());
        }

        await using (PgRowReader limited = await session.ExecuteReaderAsync("SELECT g FROM generate_series(1, 10) g", maxRows: 4))
        {
            while (await limited.ReadAsync())
            {
            }

            Assert.Equal(4, limited.RowCount);
            Assert.True(limited.Suspended);
            Assert.Null(limited.CommandTag);
        }

        await using (PgRowReader none = await session.ExecuteReaderAsync("SET application_name = 'reader'"))
        {
            Assert.Null(none.Description);
            Assert.Equal("SET", none.CommandTag);
            Assert.False(await none.ReadAsync());
        }

        Assert.Equal("reader", session.Parameters["application_name"]);
    }

    [Fact]
    public async Task QueryReader_TrafficCallback_SeesEveryRowWithItsBytes()
    {
        var rows = new List<PgTraffic>();
        await using PgFrontendSession session = await ConnectAsync(15, t =>
        {
            if (t.Name == DataRow.MessageName)
            {
                rows.Add(t);
            }
        });
        await using (PgRowReader reader = await session.QueryReaderAsync("SELECT g FROM generate_series(1, 100) g"))
        {
            while (await reader.ReadAsync())
            {
                Assert.Equal(reader.GetString(0), Encoding.ASCII.GetString(((DataRow)rows[^1].Message!).Columns[0]!.Value.Span));
            }
        }

        Assert.Equal(100, rows.Count);
        Assert.Equal((byte)'D', rows[0].Raw.Span[0]);
    }

    [Fact]
    public async Task QueryReader_CopyOut_IsRefusedAndDrained()
    {
        await using PgFrontendSession session = await ConnectAsync(15);
        await Assert.ThrowsAsync<NotSupportedException>(() => session.QueryReaderAsync("COPY (SELECT g FROM generate_series(1, 1000) g) TO STDOUT"));
        Assert.Equal("1", (await session.QueryAsync("SELECT 1"))[0].Text(0, 0));
    }

    [Fact]
    public async Task QueryReader_ServerStallsAmongRows_TimesOutWithATypedErrorAndNoRowLeft()
    {
        // A server that answers the query with a row description and one row, then says nothing more.
        await using var server = new StalledServer(
            new RowDescription([new RowDescription.Field("a", 0, 0, 25, -1, -1, 0)]),
            new DataRow([Encoding.ASCII.GetBytes("one")]));
        PgFrontendSession session = await PgFrontendSession.ConnectAsync(server.Options(TimeSpan.FromSeconds(1)));
        PgRowReader reader = await session.QueryReaderAsync("SELECT a");
        Assert.True(await reader.ReadAsync());
        Assert.Equal("one", reader.GetString(0));
        PgConnectionException e = await Assert.ThrowsAsync<PgConnectionException>(async () => await reader.ReadAsync());
        Assert.Contains("no message from the server arrived whole within 1 s", e.Message, StringComparison.Ordinal);
        Assert.True(server.Answered.IsCompleted);

        // The row's bytes were released to the pipe by the failed read: no row may be read any more.
        Assert.Throws<InvalidOperationException>(() => reader.FieldCount);
        Assert.Throws<InvalidOperationException>(() => reader.GetString(0));
        await reader.DisposeAsync();
        await session.DisposeAsync();
    }

    /// <summary>Every column of the current row, in place: the sum of the non-NULL lengths.</summary>
    private static long Touch(PgRowReader reader)
    {
        long sum = 0;
        foreach (PgValue value in reader.Row.Columns)
        {
            sum += value.IsNull ? 1 : value.Bytes.Length;
        }

        return sum;
    }
}
