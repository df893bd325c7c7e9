using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using FsCheck.Xunit;
using PgSpec.Cli.Tests.RealServer;
using PgSpec.Protocol;
using PgSpec.Client;
using PgSpec.Servers;

namespace PgSpec.Proxy.Tests;

/// <summary>Large DataRow and CopyData messages pass through piece by piece, checked as strictly as whole ones.</summary>
[Collection(ServerCollection.Name)]
public class StreamingTests
{
    private const int Megabyte = 1024 * 1024;

    private readonly ServerFixture _servers;

    public StreamingTests(ServerFixture servers) => _servers = servers;

    /// <summary>Any DataRow body, cut anywhere: the streamed check gives the codec's verdict on the whole body.</summary>
    [Property(MaxTest = 3000)]
    public bool StreamedDataRow_GetsTheCodecsVerdict(sbyte[] lengths, byte countShift, sbyte trim, int[] cuts)
    {
        var body = new List<byte>();
        int count = lengths.Length + (countShift % 4 == 0 ? (countShift % 5) - 2 : 0);
        body.AddRange(new[] { (byte)((count >> 8) & 0xff), (byte)(count & 0xff) });
        foreach (sbyte l in lengths)
        {
            int length = l < -100 ? l : (Math.Abs((int)l) % 30) - 1;
            byte[] word = new byte[4];
            BinaryPrimitives.WriteInt32BigEndian(word, length);
            body.AddRange(word);
            for (int i = 0; i < length; i++)
            {
                body.Add((byte)i);
            }
        }

        if (trim > 0)
        {
            body.AddRange(new byte[trim % 7]);
        }
        else if (trim < 0)
        {
            body.RemoveRange(Math.Max(0, body.Count + (trim % 7)), Math.Min(body.Count, -(trim % 7)));
        }

        byte[] bytes = body.ToArray();
        bool codec = BackendMessages.TryValidate(BackendMessageKind.DataRow, bytes, null, out _);

        var streamed = new StreamedMessage();
        streamed.Begin((byte)'D', bytes.Length + 4);
        int[] points = cuts.Select(c => bytes.Length == 0 ? 0 : (int)((uint)c % (uint)bytes.Length)).Append(bytes.Length).Order().ToArray();
        string? problem = null;
        int at = 0;
        foreach (int point in points)
        {
            problem ??= streamed.Feed(bytes.AsSpan(at, point - at));
            at = point;
        }

        problem ??= streamed.End();
        return codec == (problem is null);
    }

    [Theory]
    [InlineData(15)]
    [InlineData(18)]
    public async Task LargeDataRow_IsForwardedWithoutBeingHeld(int major)
    {
        PgServer server = await _servers.Server(major);
        await using var proxy = new ProxyHarness(server, options => options with { Trace = null });
        await using PgFrontendSession session = await ConnectAsync(proxy, server);

        IReadOnlyList<PgResult> results = await session.QueryAsync("SELECT repeat('abcdefgh', 4 * 1024 * 1024) AS big, 'after' AS small");

        string big = results[0].Text(0, 0)!;
        Assert.Equal(32 * Megabyte, big.Length);
        Assert.True(big.AsSpan().IndexOfAnyExcept("abcdefgh") < 0 && big.StartsWith("abcdefgh", StringComparison.Ordinal), "the value arrived altered");
        Assert.Equal("after", results[0].Text(0, 1));
        Assert.True(proxy.Proxy.Statistics.LargestBuffer < Megabyte, $"the proxy held {proxy.Proxy.Statistics.LargestBuffer} bytes");
    }

    [Fact]
    public async Task LargeDataRow_IsHeldWholeWhenTraced()
    {
        PgServer server = await _servers.Server(18);
        await using var proxy = new ProxyHarness(server);
        await using PgFrontendSession session = await ConnectAsync(proxy, server);

        IReadOnlyList<PgResult> results = await session.QueryAsync("SELECT repeat('x', 3 * 1024 * 1024)");

        Assert.Equal(3 * Megabyte, results[0].Text(0, 0)!.Length);
        Assert.True(proxy.Proxy.Statistics.LargestBuffer > 3 * Megabyte, $"the proxy held only {proxy.Proxy.Statistics.LargestBuffer} bytes");
        Assert.Contains("\tDataRow\t 1 3145728 'xxxx", proxy.Trace);
    }

    [Theory]
    [InlineData(15)]
    [InlineData(18)]
    public async Task LargeCopyData_BothWays_IsForwardedWithoutBeingHeld(int major)
    {
        PgServer server = await _servers.Server(major);
        await using var proxy = new ProxyHarness(server, options => options with { Trace = null });
        await using PgFrontendSession session = await ConnectAsync(proxy, server);
        string table = "streamed_" + Guid.NewGuid().ToString("N");
        byte[] row = Encoding.ASCII.GetBytes(new string('q', 24 * Megabyte) + "\n");

        await session.QueryAsync($"CREATE TEMP TABLE {table} (v text)");
        await session.QueryAsync($"COPY {table} FROM STDIN", [row]);
        IReadOnlyList<PgResult> length = await session.QueryAsync($"SELECT length(v) FROM {table}");
        IReadOnlyList<PgResult> copyOut = await session.QueryAsync($"COPY {table} TO STDOUT");

        Assert.Equal((24 * Megabyte).ToString(CultureInfo.InvariantCulture), length[0].Text(0, 0));
        ReadOnlyMemory<byte> data = Assert.Single(copyOut[0].CopyData);
        Assert.True(data.Span.SequenceEqual(row), "the copied row came back altered");
        Assert.True(proxy.Proxy.Statistics.LargestBuffer < Megabyte, $"the proxy held {proxy.Proxy.Statistics.LargestBuffer} bytes");
    }

    [Fact]
    public async Task StreamedDataRow_ThatOverrunsItsLength_EndsTheConnectionWithoutAnErrorInsideTheRow()
    {
        // A server that sends a 200 KiB DataRow whose single column claims more bytes than the message has.
        byte[] row = new byte[1 + 4 + 2 + 4 + (200 * 1024)];
        row[0] = (byte)'D';
        BinaryPrimitives.WriteInt32BigEndian(row.AsSpan(1), row.Length - 1);
        BinaryPrimitives.WriteUInt16BigEndian(row.AsSpan(5), 1);
        BinaryPrimitives.WriteInt32BigEndian(row.AsSpan(7), (200 * 1024) + 1);
        await using var fake = new FakeServerProxy(async socket =>
        {
            byte[] buffer = new byte[1024];
            await socket.ReceiveAsync(buffer);
            await socket.SendAsync(new byte[] { (byte)'R', 0, 0, 0, 8, 0, 0, 0, 0, (byte)'Z', 0, 0, 0, 5, (byte)'I' });
            await socket.ReceiveAsync(buffer);
            await socket.SendAsync(new byte[] { (byte)'T', 0, 0, 0, 6, 0, 0 });
            await socket.SendAsync(row);
            await socket.ReceiveAsync(buffer);
        }, options => options with { Trace = null });
        using RawClient client = await RawClient.ConnectAsync(fake.Port);

        await client.SendAsync(RawClient.Startup("anyone"));
        Assert.NotNull(await client.ReadUntilAsync('Z'));
        await client.SendAsync(RawClient.Message('Q', "SELECT\0"));
        byte[] received = await client.ReadToEndAsync();

        // The row's beginning went through before its end was known to be wrong; after it, nothing.
        Assert.True(received.Length > 7 && received.Length < 7 + row.Length, $"{received.Length} bytes received");
        Assert.Equal(row.AsSpan(0, received.Length - 7).ToArray(), received.AsSpan(7).ToArray());
        await fake.StopAsync();
        Assert.Contains("DataRow: the body ends 1 bytes inside a column value", fake.Log);
    }

    private static Task<PgFrontendSession> ConnectAsync(ProxyHarness proxy, PgServer server)
        => PgFrontendSession.ConnectAsync(new PgConnectOptions
        {
            Host = "127.0.0.1",
            Port = proxy.Port,
            User = server.Role(PgAuthMethod.Trust).Name,
            Database = "postgres",
            SslMode = PgSslMode.Disable,
        });
}
