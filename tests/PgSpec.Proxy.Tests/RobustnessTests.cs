using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using PgSpec.Cli.Tests.RealServer;
using PgSpec.Servers;

namespace PgSpec.Proxy.Tests;

/// <summary>A misbehaving client or server ends its own connection and nothing else.</summary>
[Collection(ServerCollection.Name)]
public class RobustnessTests
{
    private readonly ServerFixture _servers;

    public RobustnessTests(ServerFixture servers) => _servers = servers;

    [Theory]
    [InlineData(15, true)]
    [InlineData(15, false)]
    [InlineData(18, true)]
    [InlineData(18, false)]
    public async Task MalformedMessage_FromAnAuthenticatedClient_GetsFatal08P01AndLeavesOthersRunning(int major, bool traced)
    {
        PgServer server = await _servers.Server(major);
        await using var proxy = new ProxyHarness(server, options => Traced(options, traced));
        using RawClient good = await LoggedInAsync(proxy, server);
        using RawClient bad = await LoggedInAsync(proxy, server);

        await bad.SendAsync([(byte)'Q', 0, 0, 0, 2]); // a length below 4
        (char Type, byte[] Body)? error = await bad.ReadUntilAsync('E');

        Assert.NotNull(error);
        string fields = Encoding.UTF8.GetString(error.Value.Body);
        Assert.Contains("FATAL", fields);
        Assert.Contains("08P01", fields);
        Assert.True(await bad.ClosedAsync());
        await good.SendAsync(RawClient.Message('Q', "SELECT 'still here'\0"));
        (char Type, byte[] Body)? row = await good.ReadUntilAsync('D');
        Assert.NotNull(row);
        Assert.Contains("still here", Encoding.UTF8.GetString(row.Value.Body));
    }

    [Fact]
    public async Task GssencRequest_IsAnsweredNoAndTheStartupGoesOn()
    {
        PgServer server = await _servers.Server(18);
        await using var proxy = new ProxyHarness(server);
        using RawClient client = await RawClient.ConnectAsync(proxy.Port);

        await client.SendAsync([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]);
        int answer = await client.ReadByteAsync();
        await client.SendAsync(RawClient.Startup(server.Role(PgAuthMethod.Trust).Name));

        Assert.Equal('N', answer);
        Assert.NotNull(await client.ReadUntilAsync('Z'));
        await client.SendAsync(RawClient.Message('X', ""));
        Assert.True(await client.ClosedAsync());
        await proxy.WaitIdleAsync();
        Assert.StartsWith("F\t8\tGSSENCRequest\t 1234 5680\nB\t1\tGSSENCResponse\t N\nF\t", proxy.Trace, StringComparison.Ordinal);
    }

    [Fact]
    public async Task InvalidStartupPacket_GetsFatal08P01()
    {
        PgServer server = await _servers.Server(18);
        await using var proxy = new ProxyHarness(server);
        using RawClient bad = await RawClient.ConnectAsync(proxy.Port);

        await bad.SendAsync([0, 0, 0, 3, 0, 0, 0, 0]);
        (char Type, byte[] Body)? error = await bad.ReadUntilAsync('E');

        Assert.NotNull(error);
        Assert.Contains("08P01", Encoding.UTF8.GetString(error.Value.Body));
        Assert.Contains("invalid length of startup packet", proxy.Log);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task StallingClient_IsClosedByTheHandshakeTimeoutWhileOthersWork(bool traced)
    {
        PgServer server = await _servers.Server(15);
        await using var proxy = new ProxyHarness(server, options => Traced(options, traced) with { HandshakeTimeout = TimeSpan.FromSeconds(1) });
        using RawClient staller = await RawClient.ConnectAsync(proxy.Port);
        await staller.SendAsync([0, 0, 0, 40]); // the start of a startup packet, and then nothing

        using RawClient good = await LoggedInAsync(proxy, server);
        await good.SendAsync(RawClient.Message('Q', "SELECT 1\0"));
        Assert.NotNull(await good.ReadUntilAsync('Z'));

        Assert.True(await staller.ClosedAsync());
        Assert.Contains("timeout", proxy.Log);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task IdleConnection_IsClosedByTheIdleTimeout(bool traced)
    {
        PgServer server = await _servers.Server(18);
        await using var proxy = new ProxyHarness(server, options => Traced(options, traced) with { IdleTimeout = TimeSpan.FromSeconds(1) });
        using RawClient idle = await LoggedInAsync(proxy, server);

        Assert.True(await idle.ClosedAsync());
        await proxy.WaitIdleAsync();
        Assert.Equal(1, proxy.Proxy.Statistics.Failed);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task VanishingClient_InsideAMessage_EndsOnlyItsConnection(bool traced)
    {
        PgServer server = await _servers.Server(18);
        await using var proxy = new ProxyHarness(server, options => Traced(options, traced));
        using RawClient good = await LoggedInAsync(proxy, server);
        using (RawClient vanishing = await LoggedInAsync(proxy, server))
        {
            await vanishing.SendAsync([(byte)'Q', 0, 0, 0, 100, (byte)'S']);
        }

        await good.SendAsync(RawClient.Message('Q', "SELECT 2\0"));
        Assert.NotNull(await good.ReadUntilAsync('Z'));
        await good.SendAsync(RawClient.Message('X', ""));
        Assert.True(await good.ClosedAsync());
        await proxy.WaitIdleAsync();
        Assert.Equal(1, proxy.Proxy.Statistics.Failed);
        Assert.Equal(1, proxy.Proxy.Statistics.Closed);
        Assert.Contains("inside a message", proxy.Log);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task ClientThatStopsReading_HoldsBackOnlyItsOwnConnectionAndIsNotIdle(bool traced)
    {
        PgServer server = await _servers.Server(15);
        await using var proxy = new ProxyHarness(server, options => Traced(options, traced) with { IdleTimeout = TimeSpan.FromSeconds(1) });
        using RawClient stuck = await LoggedInAsync(proxy, server);
        using RawClient good = await LoggedInAsync(proxy, server);

        // About 50 MB of rows that the client never reads: the proxy waits for room to send, without
        // holding them. Its query is running, so the idle timeout does not apply to it.
        await stuck.SendAsync(RawClient.Message('Q', "SELECT repeat('x', 1000000) FROM generate_series(1, 50)\0"));
        for (int i = 0; i < 5; i++)
        {
            await good.SendAsync(RawClient.Message('Q', "SELECT 'still here'\0"));
            (char Type, byte[] Body)? row = await good.ReadUntilAsync('D');
            Assert.NotNull(row);
            Assert.NotNull(await good.ReadUntilAsync('Z'));
        }

        Assert.Equal(2, proxy.Proxy.ActiveConnections);
        await good.SendAsync(RawClient.Message('X', ""));
        Assert.True(await good.ClosedAsync());
        stuck.Dispose();
        await proxy.WaitIdleAsync();
        Assert.Equal(0, proxy.Proxy.ActiveConnections);
        Assert.DoesNotContain("idle timeout", proxy.Log);
        Assert.True(proxy.Proxy.Statistics.LargestBuffer <= 2 * 1024 * 1024, proxy.Proxy.Statistics.ToString());
    }

    [Fact]
    public async Task MalformedServer_ClientGetsFatal08P01()
    {
        await using var fake = new FakeServerProxy(async socket =>
        {
            byte[] buffer = new byte[1024];
            await socket.ReceiveAsync(buffer);
            await socket.SendAsync(new byte[] { (byte)'R', 0, 0, 0, 1 }); // a length below 4
            await socket.ReceiveAsync(buffer);
        });
        using RawClient client = await RawClient.ConnectAsync(fake.Port);

        await client.SendAsync(RawClient.Startup("anyone"));
        (char Type, byte[] Body)? error = await client.ReadUntilAsync('E');

        Assert.NotNull(error);
        string fields = Encoding.UTF8.GetString(error.Value.Body);
        Assert.Contains("08P01", fields);
        Assert.Contains("server sent a malformed message", fields);
        await fake.StopAsync();
    }

    [Theory]
    [InlineData(15)]
    [InlineData(18)]
    public async Task CancelRequest_ThroughTheProxy_CancelsTheRightQuery(int major)
    {
        PgServer server = await _servers.Server(major);
        await using var proxy = new ProxyHarness(server);
        string script = Path.Combine(AppContext.BaseDirectory, "Scripts", "cancel_session.py");
        PgRole role = server.Role(PgAuthMethod.Trust);

        ProcessOutput client = ExternalProcess.Run(Libpq18.Python, [script, $"host=127.0.0.1 port={proxy.PortText} user={role.Name} dbname=postgres sslmode=disable"]);

        Assert.True(client.ExitCode == 0, client.ToString());
        Assert.Contains("cancelled", client.Stdout);
        await proxy.WaitIdleAsync();
        Assert.Equal(1, proxy.Proxy.Statistics.CancelRequests);
        Assert.Contains("cancel request forwarded", proxy.Log);
    }

    [Theory]
    [InlineData(15, "NegotiateProtocolVersion")]
    [InlineData(18, "BackendKeyData")]
    public async Task Libpq18_AskingForProtocol32_QueriesAndCancelsThroughTheProxy(int major, string expectedLine)
    {
        PgServer server = await _servers.Server(major);
        await using var proxy = new ProxyHarness(server);
        string script = Path.Combine(AppContext.BaseDirectory, "Scripts", "cancel_session.py");
        PgRole role = server.Role(PgAuthMethod.Trust);
        var environment = new Dictionary<string, string> { ["PSYCOPG_IMPL"] = "python", ["LD_LIBRARY_PATH"] = Libpq18.LibraryDirectory };

        ProcessOutput client = ExternalProcess.Run(Libpq18.Python, [script, $"host=127.0.0.1 port={proxy.PortText} user={role.Name} dbname=postgres sslmode=disable max_protocol_version=3.2"], environment: environment);

        Assert.True(client.ExitCode == 0, client.ToString());
        Assert.Contains("cancelled", client.Stdout);
        await proxy.WaitIdleAsync();
        Assert.Equal(1, proxy.Proxy.Statistics.CancelRequests);
        Assert.Contains("\tStartupMessage\t 3 2 ", proxy.Trace);
        Assert.Contains("\t" + expectedLine + "\t", proxy.Trace);
        if (major == 18)
        {
            // A 3.2 key is 32 bytes: libpq 18's tracer prints the first 4 and a length mismatch.
            Assert.Contains("B\t40\tBackendKeyData\t NNNN NNNN\nmismatched message length: consumed 12, expected 40\n", proxy.Trace);
            Assert.Contains("F\t44\tCancelRequest\t 1234 5678 NNNN NNNN\n", proxy.Trace);
        }
    }

    [Fact]
    public async Task Trace_ShowsTheCancelKeyTheClientGot_NotTheServers()
    {
        PgServer server = await _servers.Server(15);
        await using var proxy = new ProxyHarness(server, regress: false);
        using RawClient client = await RawClient.ConnectAsync(proxy.Port);

        await client.SendAsync(RawClient.Startup(server.Role(PgAuthMethod.Trust).Name));
        (char Type, byte[] Body)? key = await client.ReadUntilAsync('K');
        Assert.NotNull(await client.ReadUntilAsync('Z'));
        await client.SendAsync(RawClient.Message('X', ""));
        Assert.True(await client.ClosedAsync());
        await proxy.WaitIdleAsync();

        Assert.NotNull(key);
        int processId = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(key.Value.Body);
        int secret = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(key.Value.Body.AsSpan(4));
        Assert.Contains(string.Create(CultureInfo.InvariantCulture, $"B\t12\tBackendKeyData\t {processId} {secret}\n"), proxy.Trace);
    }

    [Fact]
    public async Task CancelRequest_WithAKeyTheProxyDidNotIssue_IsNotForwarded()
    {
        PgServer server = await _servers.Server(18);
        await using var proxy = new ProxyHarness(server);
        using RawClient client = await RawClient.ConnectAsync(proxy.Port);

        await client.SendAsync([0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2]);

        Assert.True(await client.ClosedAsync());
        await proxy.WaitIdleAsync();
        Assert.Contains("did not issue", proxy.Log);
    }

    /// <summary>Without a trace, the epoll engine runs the relay on its event thread; with one, on the thread pool.</summary>
    private static PgProxyOptions Traced(PgProxyOptions options, bool traced) => traced ? options : options with { Trace = null };

    internal static async Task<RawClient> LoggedInAsync(ProxyHarness proxy, PgServer server)
    {
        RawClient client = await RawClient.ConnectAsync(proxy.Port);
        await client.SendAsync(RawClient.Startup(server.Role(PgAuthMethod.Trust).Name));
        Assert.NotNull(await client.ReadUntilAsync('Z'));
        return client;
    }
}
