using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using PgSpec.Cli;
using PgSpec.Cli.Tests;
using PgSpec.Cli.Tests.RealServer;
using PgSpec.Protocol;
using PgSpec.Server.Tests;
using PgSpec.Servers;

namespace PgSpec.Proxy.Tests;

/// <summary>What a hostile review of the proxy found, each attack repeated.</summary>
[Collection(ServerCollection.Name)]
public class HardeningTests
{
    /// <summary>A Query declared as almost 1 GiB: 0x3ffffff0 in its length word.</summary>
    private static readonly byte[] s_hugeQueryHeader = [(byte)'Q', 0x3f, 0xff, 0xff, 0xf0];

    private readonly ServerFixture _servers;

    public HardeningTests(ServerFixture servers) => _servers = servers;

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task BeforeAuthentication_AHugeQueryInsteadOfTheSaslAnswer_GetsPostgresqlsFatalBeforeItsBodyIsRead(bool traced)
    {
        PgServer server = await _servers.Server(15);
        await using var proxy = new ProxyHarness(server, options => traced ? options : options with { Trace = null });
        var clients = new List<RawClient>();
        try
        {
            for (int i = 0; i < 4; i++)
            {
                RawClient client = await RawClient.ConnectAsync(proxy.Port);
                clients.Add(client);
                await client.SendAsync(RawClient.Startup(server.Role(PgAuthMethod.ScramSha256).Name));
                (char Type, byte[] Body)? sasl = await client.ReadAsync();
                Assert.Equal('R', sasl?.Type);

                await client.SendAsync([.. s_hugeQueryHeader, .. new byte[64 * 1024]]);
                (char Type, byte[] Body)? error = await client.ReadUntilAsync('E');

                Assert.NotNull(error);
                string fields = Encoding.UTF8.GetString(error.Value.Body);
                Assert.Contains("08P01", fields);
                Assert.Contains("expected SASL response, got message type 81", fields);
                Assert.True(await client.ClosedAsync());
            }
        }
        finally
        {
            clients.ForEach(c => c.Dispose());
        }

        await proxy.WaitIdleAsync();
        Assert.True(proxy.Proxy.Statistics.LargestBuffer <= 64 * 1024, proxy.Proxy.Statistics.ToString());
        Assert.Equal(4, proxy.Proxy.Statistics.Failed);
    }

    [Fact]
    public async Task AfterLogin_AMessageThatOnlyDeclaresAGigabyte_CostsWhatArrivesNotWhatItDeclares()
    {
        PgServer server = await _servers.Server(15);
        await using var proxy = new ProxyHarness(server);
        using RawClient client = await RobustnessTests.LoggedInAsync(proxy, server);
        long before = proxy.Proxy.Statistics.FrontendBytes;

        await client.SendAsync([.. s_hugeQueryHeader, .. "SELECT 1"u8]);
        await Wait.UntilAsync(() => proxy.Proxy.Statistics.FrontendBytes >= before + 13, "the proxy read the 13 bytes");
        long afterTen = proxy.Proxy.Statistics.LargestBuffer;
        await client.SendAsync(new byte[3 * 1024 * 1024]);
        await Wait.UntilAsync(() => proxy.Proxy.Statistics.FrontendBytes >= before + 13 + (3 * 1024 * 1024), "the proxy read 3 MiB more");
        long afterThreeMegabytes = proxy.Proxy.Statistics.LargestBuffer;

        Assert.True(afterTen <= 64 * 1024, $"{afterTen} bytes of buffer for 13 bytes received");
        Assert.True(afterThreeMegabytes <= 8 * 1024 * 1024, $"{afterThreeMegabytes} bytes of buffer for 3 MiB received");
        client.Dispose();
        await proxy.WaitIdleAsync();
        Assert.Contains("the client closed the connection inside a message", proxy.Log);
    }

    [Fact]
    public async Task DuringLogin_AServerErrorLongerThanLibpqAllows_IsRefusedBeforeItsBodyIsRead()
    {
        await using var fake = new FakeServerProxy(async socket =>
        {
            byte[] buffer = new byte[1024];
            await socket.ReceiveAsync(buffer);
            await socket.SendAsync(new byte[] { (byte)'E', 0x3f, 0xff, 0xff, 0xf0, (byte)'S', (byte)'F' });
        });
        using RawClient client = await RawClient.ConnectAsync(fake.Port);
        long allocated = GC.GetTotalAllocatedBytes(precise: true);

        await client.SendAsync(RawClient.Startup("anyone"));
        (char Type, byte[] Body)? error = await client.ReadUntilAsync('E');

        Assert.NotNull(error);
        Assert.Contains("during login, where at most 30000 is allowed", Encoding.UTF8.GetString(error.Value.Body));
        Assert.True(GC.GetTotalAllocatedBytes(precise: true) - allocated < 256L * 1024 * 1024, "the proxy allocated what the server declared");
        await fake.StopAsync();
    }

    [Fact]
    public async Task IdleTimeout_LetsALongQueryFinish_ThenEndsTheIdleConnectionWithFatal57P05()
    {
        PgServer server = await _servers.Server(18);
        await using var proxy = new ProxyHarness(server, options => options with { IdleTimeout = TimeSpan.FromSeconds(1) });
        using RawClient client = await RobustnessTests.LoggedInAsync(proxy, server);

        await client.SendAsync(RawClient.Message('Q', "SELECT pg_sleep(2.5), 'finished'\0"));
        (char Type, byte[] Body)? row = await client.ReadUntilAsync('D');
        (char Type, byte[] Body)? ready = await client.ReadUntilAsync('Z');
        (char Type, byte[] Body)? farewell = await client.ReadUntilAsync('E');

        Assert.NotNull(row);
        Assert.Contains("finished", Encoding.UTF8.GetString(row.Value.Body));
        Assert.NotNull(ready);
        Assert.NotNull(farewell);
        string fields = Encoding.UTF8.GetString(farewell.Value.Body);
        Assert.Contains("FATAL", fields);
        Assert.Contains("57P05", fields);
        Assert.Contains("idle timeout", fields);
        Assert.True(await client.ClosedAsync());
        await proxy.WaitIdleAsync();
        Assert.Contains("# connection ended: closed by the idle timeout", proxy.Trace);
    }

    [Fact]
    public async Task HandshakeTimeout_AClientThatStallsDuringLogin_GetsFatal57014NamingIt()
    {
        PgServer server = await _servers.Server(15);
        await using var proxy = new ProxyHarness(server, options => options with { HandshakeTimeout = TimeSpan.FromSeconds(1) });
        using RawClient client = await RawClient.ConnectAsync(proxy.Port);

        await client.SendAsync(RawClient.Startup(server.Role(PgAuthMethod.ScramSha256).Name));
        Assert.Equal('R', (await client.ReadAsync())?.Type);
        (char Type, byte[] Body)? farewell = await client.ReadUntilAsync('E');

        Assert.NotNull(farewell);
        string fields = Encoding.UTF8.GetString(farewell.Value.Body);
        Assert.Contains("57014", fields);
        Assert.Contains("canceling authentication due to timeout", fields);
        Assert.Contains("--handshake-timeout 1 s", fields);
        Assert.True(await client.ClosedAsync());
    }

    [Fact]
    public async Task Shutdown_ClosesAConnectionThatOutlivesTheGraceWithFatal57P01()
    {
        PgServer server = await _servers.Server(15);
        await using var proxy = new ProxyHarness(server, options => options with { ShutdownGrace = TimeSpan.FromMilliseconds(300) });
        using RawClient client = await RobustnessTests.LoggedInAsync(proxy, server);

        await proxy.StopAsync();
        (char Type, byte[] Body)? farewell = await client.ReadUntilAsync('E');

        Assert.NotNull(farewell);
        Assert.Contains("57P01", Encoding.UTF8.GetString(farewell.Value.Body));
        Assert.Contains("the proxy is shutting down", Encoding.UTF8.GetString(farewell.Value.Body));
        Assert.Contains("closed by shutdown", proxy.Log);
    }

    [Fact]
    public async Task ConnectionLimit_RefusesTheClientBeyondItWith53300_StillPassesCancelRequests_AndServesOnceAPlaceIsFree()
    {
        PgServer server = await _servers.Server(18);
        await using var proxy = new ProxyHarness(server, options => options with { MaxClientConnections = 2 });
        using RawClient sleeper = await RawClient.ConnectAsync(proxy.Port);
        await sleeper.SendAsync(RawClient.Startup(server.Role(PgAuthMethod.Trust).Name));
        (char Type, byte[] Body)? key = await sleeper.ReadUntilAsync('K');
        Assert.NotNull(await sleeper.ReadUntilAsync('Z'));
        RawClient second = await RobustnessTests.LoggedInAsync(proxy, server);

        using (RawClient third = await RawClient.ConnectAsync(proxy.Port))
        {
            await third.SendAsync(RawClient.Startup(server.Role(PgAuthMethod.Trust).Name));
            (char Type, byte[] Body)? refused = await third.ReadUntilAsync('E');
            Assert.NotNull(refused);
            Assert.Contains("53300", Encoding.UTF8.GetString(refused.Value.Body));
            Assert.Contains("sorry, too many clients already", Encoding.UTF8.GetString(refused.Value.Body));
            Assert.True(await third.ClosedAsync());
        }

        // At the limit, a cancel request still reaches the server.
        await sleeper.SendAsync(RawClient.Message('Q', "SELECT pg_sleep(60) /* cancel me */\0"));
        await WaitForActivityAsync(server, "cancel me");
        using (RawClient canceller = await RawClient.ConnectAsync(proxy.Port))
        {
            byte[] request = new byte[12 + key!.Value.Body.Length - 4];
            BinaryPrimitives.WriteInt32BigEndian(request, request.Length);
            BinaryPrimitives.WriteInt32BigEndian(request.AsSpan(4), 80877102);
            key.Value.Body.CopyTo(request, 8);
            await canceller.SendAsync(request);
            Assert.True(await canceller.ClosedAsync());
        }

        (char Type, byte[] Body)? cancelled = await sleeper.ReadUntilAsync('E');
        Assert.NotNull(cancelled);
        Assert.Contains("57014", Encoding.UTF8.GetString(cancelled.Value.Body));

        second.Dispose();
        await Wait.UntilAsync(() => proxy.Proxy.ActiveConnections == 1, "the second client's connection ended");
        using RawClient fourth = await RobustnessTests.LoggedInAsync(proxy, server);
        Assert.Equal(1, proxy.Proxy.Statistics.Refused);
    }

    [Fact]
    public async Task MalformedMessage_TheTraceShowsTheFatalSentAndWhyTheConnectionEnded()
    {
        PgServer server = await _servers.Server(15);
        var trace = new MemoryStream();
        await using var proxy = new ProxyHarness(server, options => options with
        {
            Trace = new PqTraceSink(trace, new PgTraceOptions { Timestamps = true }, connectionIds: true),
        });
        using RawClient client = await RobustnessTests.LoggedInAsync(proxy, server);

        await client.SendAsync([(byte)'Q', 0, 0, 0, 2]);
        Assert.NotNull(await client.ReadUntilAsync('E'));
        await proxy.WaitIdleAsync();

        string[] lines = Encoding.UTF8.GetString(trace.ToArray()).TrimEnd('\n').Split('\n');
        Assert.Matches(@"connection 1 from 127\.0\.0\.1:\d+: the client sent a malformed message", proxy.Log);
        Assert.True(proxy.Proxy.Statistics.LargestBuffer >= 16 * 1024, proxy.Proxy.Statistics.ToString());
        Assert.Matches(@"^1\t\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\tB\t\d+\tErrorResponse\t S ""FATAL"" V ""FATAL"" C ""08P01"" M ""the client sent a malformed message: frame\.length", lines[^2]);
        Assert.Matches(@"^1\t\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\t# connection ended: the client sent a malformed message: frame\.length: length 2 of message type Q is less than 4 \(at offset \d+\)$", lines[^1]);
    }

    [Fact]
    public async Task ProxyProcess_JsonTraceOfAMalformedMessage_EndsWithAnEventSayingWhy()
    {
        PgServer server = await _servers.Server(15);
        using var directory = new TempDirectory();
        string trace = Path.Combine(directory.Path, "proxy.jsonl");
        int port = ProxyProcess.FreePort();
        await using ProxyProcess proxy = await ProxyProcess.StartAsync("--listen", "127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture), "--upstream", $"{server.Host}:{server.Port}", "--trace", trace, "--format", "json", "--timestamps");
        using (RawClient client = await LoggedInAsync(port, server.Role(PgAuthMethod.Trust)))
        {
            await client.SendAsync([(byte)'Q', 0, 0, 0, 2]);
            Assert.NotNull(await client.ReadUntilAsync('E'));
        }

        await proxy.WaitForLineAsync(line => line.Contains("the client sent a malformed message", StringComparison.Ordinal));
        (int exitCode, _) = await proxy.StopAsync();

        Assert.Equal(0, exitCode);
        System.Text.Json.JsonElement[] lines = File.ReadAllLines(trace).Select(line => System.Text.Json.JsonDocument.Parse(line).RootElement).ToArray();
        Assert.All(lines, line => Assert.Equal(1, line.GetProperty("connection").GetInt64()));
        System.Text.Json.JsonElement[] fromServer = lines.Where(line => line.TryGetProperty("direction", out var d) && d.GetString() == "B").ToArray();
        for (int i = 1; i < fromServer.Length; i++)
        {
            // Each message starts where the one before ended, the proxy's own BackendKeyData too.
            Assert.Equal(fromServer[i - 1].GetProperty("offset").GetInt64() + 1 + fromServer[i - 1].GetProperty("length").GetInt64(), fromServer[i].GetProperty("offset").GetInt64());
        }

        Assert.Equal("ErrorResponse", lines[^2].GetProperty("name").GetString());
        System.Text.Json.JsonElement ended = lines[^1];
        Assert.Equal(1, ended.GetProperty("connection").GetInt64());
        Assert.Equal("ended", ended.GetProperty("event").GetString());
        Assert.StartsWith("the client sent a malformed message: frame.length", ended.GetProperty("failure").GetString(), StringComparison.Ordinal);
        Assert.True(ended.TryGetProperty("time", out _));
    }

    [Fact]
    public async Task UpstreamTls_AServerThatSendsBytesAfterItsAnswer_IsNamedAsTheFault()
    {
        await using var fake = new FakeServerProxy(
            async socket =>
            {
                byte[] buffer = new byte[8];
                await socket.ReceiveAsync(buffer);
                await socket.SendAsync("Sgarbage"u8.ToArray());
                try
                {
                    await socket.ReceiveAsync(buffer);
                }
                catch (SocketException)
                {
                    // The proxy closes the connection.
                }
            },
            options => options with { UpstreamTls = true });
        using RawClient client = await RawClient.ConnectAsync(fake.Port);

        await client.SendAsync(RawClient.Startup("anyone"));
        (char Type, byte[] Body)? error = await client.ReadUntilAsync('E');

        Assert.NotNull(error);
        Assert.Contains("the server sent 7 bytes after its answer 'S' to SSLRequest", Encoding.UTF8.GetString(error.Value.Body));
        await fake.StopAsync();
    }

    [Fact]
    public async Task ClientThatRejectsTheProxysCertificate_IsLoggedWithTheReason()
    {
        PgServer server = await _servers.Server(18);
        using X509Certificate2 certificate = TlsTests.SelfSigned();
        await using var proxy = new ProxyHarness(server, options => options with { TlsCertificate = certificate });
        string rootCertificate = Path.Combine(Path.GetTempPath(), "pgspec-other-ca-" + Guid.NewGuid().ToString("N") + ".crt");
        await File.WriteAllTextAsync(rootCertificate, server.CaCertificatePem);
        try
        {
            ProcessOutput output = ClientTests.Psql("127.0.0.1", proxy.PortText, server.Role(PgAuthMethod.Trust), "/dev/null", $"sslmode=verify-full sslrootcert={rootCertificate}");
            Assert.NotEqual(0, output.ExitCode);
        }
        finally
        {
            File.Delete(rootCertificate);
        }

        await proxy.WaitIdleAsync();
        Assert.Contains("the TLS handshake with the client failed: ", proxy.Log);
        Assert.Contains("unknown ca", proxy.Log, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("see inner exception", proxy.Log);
    }

    [Fact]
    public void ProxyCommand_ListeningInADirectoryThatDoesNotExist_SaysSo()
    {
        using var output = new MemoryStream();
        using var error = new StringWriter();

        int exit = PgSpecCommandLine.Run(["proxy", "--listen", "/nonexistent-pgspec-directory/proxy.sock", "--upstream", "127.0.0.1:5432"], new MemoryStream(), output, error);

        Assert.Equal(PgSpecCommandLine.ExitUsage, exit);
        Assert.Contains("cannot listen on unix:/nonexistent-pgspec-directory/proxy.sock: the directory /nonexistent-pgspec-directory does not exist", error.ToString());
    }

    [Fact]
    public async Task UnixSocket_ASecondProxyIsRefusedAndTheFirstKeepsServing_AStaleSocketIsReplaced_AFileIsNeverRemoved()
    {
        PgServer server = await _servers.Server(18);
        using var directory = new TempDirectory();
        string path = Path.Combine(directory.Path, ".s.PGSQL.6432");
        ProxyEndpoint listen = ProxyEndpoint.Parse(path);
        var second = new PgProxy(new PgProxyOptions { Listen = listen, Upstream = ProxyEndpoint.Parse(server.Host + ":" + server.Port.ToString(CultureInfo.InvariantCulture)) });
        await using (var first = new ProxyHarness(server, options => options with { Listen = listen }))
        {
            PgProxyStartException refused = Assert.Throws<PgProxyStartException>(second.Start);
            Assert.Contains("another pgspec proxy", refused.Message);

            using RawClient client = await RawClient.ConnectAsync(path);
            await client.SendAsync(RawClient.Startup(server.Role(PgAuthMethod.Trust).Name));
            Assert.NotNull(await client.ReadUntilAsync('Z'));
        }

        Assert.False(File.Exists(path));
        Assert.False(File.Exists(path + ".lock"));

        // A socket left behind by a process that is gone (.NET removes its own sockets' files; Python does not).
        ExternalProcess.RunChecked("/usr/bin/python3", ["-c", "import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)", path]);

        Assert.True(File.Exists(path));
        await using (var replacing = new ProxyHarness(server, options => options with { Listen = listen }))
        {
            using RawClient client = await RawClient.ConnectAsync(path);
            await client.SendAsync(RawClient.Startup(server.Role(PgAuthMethod.Trust).Name));
            Assert.NotNull(await client.ReadUntilAsync('Z'));
        }

        await File.WriteAllTextAsync(path, "not a socket");
        await using var third = new PgProxy(new PgProxyOptions { Listen = listen, Upstream = listen });
        PgProxyStartException notSocket = Assert.Throws<PgProxyStartException>(third.Start);
        Assert.Contains("exists and is not a socket", notSocket.Message);
        Assert.Equal("not a socket", await File.ReadAllTextAsync(path));
        await second.DisposeAsync();
    }

    [Fact]
    public async Task TlsPassthrough_NormalSessions_AreCountedAsClosedNotFailed()
    {
        PgServer server = await _servers.Server(18);
        await using var proxy = new ProxyHarness(server, options => options with { TlsPassthrough = true });
        for (int i = 0; i < 3; i++)
        {
            ProcessOutput output = ClientTests.Psql("127.0.0.1", proxy.PortText, server.Role(PgAuthMethod.ScramSha256), "/dev/null", "sslmode=require");
            Assert.True(output.ExitCode == 0, output.ToString());
        }

        await proxy.WaitIdleAsync();
        Assert.True(proxy.Proxy.Statistics.Failed == 0, proxy.Log + proxy.Proxy.Statistics);
        Assert.Equal(3, proxy.Proxy.Statistics.Closed);
    }

    [Fact]
    public async Task ProxyProcess_SurvivesHupUsr1AndUsr2_AndReopensItsTraceOnHup()
    {
        PgServer server = await _servers.Server(15);
        PgRole role = server.Role(PgAuthMethod.Trust);
        using var directory = new TempDirectory();
        string trace = Path.Combine(directory.Path, "proxy.trace");
        int port = ProxyProcess.FreePort();
        await using ProxyProcess proxy = await ProxyProcess.StartAsync("--listen", "127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture), "--upstream", $"{server.Host}:{server.Port}", "--trace", trace);

        Assert.Equal(0, Query(port, role, "SELECT 'before rotation'").ExitCode);
        File.Move(trace, trace + ".1");
        proxy.Signal("HUP");
        await proxy.WaitForLineAsync(line => line.Contains("SIGHUP: reopened the trace file", StringComparison.Ordinal));
        proxy.Signal("USR1");
        await proxy.WaitForLineAsync(line => line.Contains("open; connections: 1 accepted", StringComparison.Ordinal));
        proxy.Signal("USR2");
        ProcessOutput after = Query(port, role, "SELECT 'after rotation'");
        (int exitCode, _) = await proxy.StopAsync();

        Assert.True(after.ExitCode == 0, after.ToString());
        Assert.Equal(0, exitCode);
        Assert.Contains("before rotation", await File.ReadAllTextAsync(trace + ".1"));
        Assert.DoesNotContain("after rotation", await File.ReadAllTextAsync(trace + ".1"));
        Assert.Contains("after rotation", await File.ReadAllTextAsync(trace));
        Assert.Contains("stopped; connections: 2 accepted, 2 closed, 0 failed", proxy.Stderr);
        Assert.Matches(@"(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} pgspec proxy: listening on ", proxy.Stderr);
    }

    [Fact]
    public async Task ProxyProcess_TracingA50MegabyteRow_PeaksBelowThreeTimesIt_AndGivesTheMemoryBack()
    {
        PgServer server = await _servers.Server(15);
        using var directory = new TempDirectory();
        int port = ProxyProcess.FreePort();
        await using ProxyProcess proxy = await ProxyProcess.StartAsync("--listen", "127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture), "--upstream", $"{server.Host}:{server.Port}", "--trace", Path.Combine(directory.Path, "proxy.trace"), "--quiet");
        using (RawClient warm = await LoggedInAsync(port, server.Role(PgAuthMethod.Trust)))
        {
            await warm.SendAsync(RawClient.Message('Q', "SELECT 'warm'\0"));
            Assert.NotNull(await warm.ReadUntilAsync('Z'));
        }

        long baseline = proxy.ResidentBytes;

        // Four unauthenticated clients declare 1 GiB each and send part of it: the proxy holds none of it.
        // (It answers at once and closes; more than it drops on closing would be reset, and the FATAL lost.)
        for (int i = 0; i < 4; i++)
        {
            using RawClient attacker = await RawClient.ConnectAsync(port);
            await attacker.SendAsync(RawClient.Startup(server.Role(PgAuthMethod.ScramSha256).Name));
            Assert.Equal('R', (await attacker.ReadAsync())?.Type);
            await attacker.SendAsync([.. s_hugeQueryHeader, .. new byte[64 * 1024]]);
            Assert.NotNull(await attacker.ReadUntilAsync('E'));
        }

        long afterAttack = proxy.PeakBytes;
        proxy.ResetPeak();
        using (RawClient client = await LoggedInAsync(port, server.Role(PgAuthMethod.Trust)))
        {
            await client.SendAsync(RawClient.Message('Q', "SELECT repeat('x', 50000000)\0"));
            (char Type, byte[] Body)? row = await client.ReadUntilAsync('D');
            Assert.Equal(2 + 4 + 50_000_000, row?.Body.Length);
            Assert.NotNull(await client.ReadUntilAsync('Z'));
        }

        long peak = proxy.PeakBytes;
        long after = await SettledResidentBytesAsync(proxy, baseline + (32L * 1024 * 1024));

        Assert.True(afterAttack - baseline < 32L * 1024 * 1024, $"the attack took the proxy from {baseline >> 20} MB to {afterAttack >> 20} MB");
        Assert.True(peak - baseline < 150L * 1000 * 1000, $"tracing a 50 MB row took the proxy from {baseline >> 20} MB to {peak >> 20} MB");
        Assert.True(after - baseline < 32L * 1024 * 1024, $"after the row the proxy stayed at {after >> 20} MB (from {baseline >> 20} MB)");
    }

    [Fact]
    public async Task ProxyProcess_WithATraceThatCannotBeWritten_GoesOnRelayingAndStopsCleanly()
    {
        PgServer server = await _servers.Server(15);
        int port = ProxyProcess.FreePort();
        await using ProxyProcess proxy = await ProxyProcess.StartAsync("--listen", "127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture), "--upstream", $"{server.Host}:{server.Port}", "--trace", "/dev/full");

        // /dev/full fails every write with "No space left on device", as a full disk does.
        for (int i = 0; i < 3; i++)
        {
            ProcessOutput query = Query(port, server.Role(PgAuthMethod.Trust), $"SELECT {i}, repeat('y', 100000)");
            Assert.True(query.ExitCode == 0, query.ToString());
        }

        await proxy.WaitForLineAsync(line => line.Contains("the trace cannot be written: No space left on device", StringComparison.Ordinal));
        (int exitCode, _) = await proxy.StopAsync();

        Assert.Equal(0, exitCode);
        Assert.Matches(@"stopped; connections: 3 accepted, 3 closed, 0 failed.*; \d+ bytes of trace dropped", proxy.Stderr);
    }

    [Fact]
    public async Task ProxyProcess_TracingToAPipeNobodyReads_StillStopsWithinTheGrace()
    {
        PgServer server = await _servers.Server(15);
        int port = ProxyProcess.FreePort();
        await using ProxyProcess proxy = await ProxyProcess.StartAsync(
            ["--listen", "127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture), "--upstream", $"{server.Host}:{server.Port}", "--trace", "-", "--shutdown-grace", "1"],
            readStdout: false,
            openFiles: null);
        using RawClient client = await LoggedInAsync(port, server.Role(PgAuthMethod.Trust));

        // 20 MB of trace: more than the pipe and the trace's queue hold, so the trace falls behind for good.
        await client.SendAsync(RawClient.Message('Q', "SELECT repeat('z', 1000000) FROM generate_series(1, 20)\0"));
        Assert.NotNull(await client.ReadUntilAsync('D'));

        // The stuck trace holds no one up for long: the query ends, and other clients are served.
        Assert.NotNull(await client.ReadUntilAsync('Z'));
        for (int i = 0; i < 3; i++)
        {
            ProcessOutput other = Query(port, server.Role(PgAuthMethod.Trust), $"SELECT {i}, repeat('w', 100000)");
            Assert.True(other.ExitCode == 0, other.ToString());
        }

        var stopping = System.Diagnostics.Stopwatch.StartNew();
        (int exitCode, _) = await proxy.StopAsync();

        Assert.Equal(0, exitCode);
        Assert.True(stopping.Elapsed < TimeSpan.FromSeconds(30), $"the proxy took {stopping.Elapsed} to stop with a grace of 1 s");
        Assert.True(System.Text.RegularExpressions.Regex.IsMatch(proxy.Stderr, @"stopped; connections: 4 accepted, 3 closed, 1 failed.*; \d+ bytes of trace dropped"), proxy.Stderr);
    }

    [Fact]
    public async Task ProxyProcess_OutOfFileDescriptors_KeepsServingWithinWhatTheLimitAllows()
    {
        PgServer server = await _servers.Server(15);
        int port = ProxyProcess.FreePort();
        await using ProxyProcess proxy = await ProxyProcess.StartAsync(
            ["--listen", "127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture), "--upstream", $"{server.Host}:{server.Port}"],
            readStdout: true,
            openFiles: 256);
        await proxy.WaitForLineAsync(line => line.Contains("the limit of open files (256) allows 56 client connections at once", StringComparison.Ordinal));

        // Far more idle connections than descriptors: the proxy serves what it can, refuses or closes the rest.
        var idle = new List<Socket>();
        try
        {
            for (int i = 0; i < 400; i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
                idle.Add(socket);
            }

            using RawClient refused = await RawClient.ConnectAsync(port);
            await refused.SendAsync(RawClient.Startup(server.Role(PgAuthMethod.Trust).Name));
            await refused.ClosedAsync();
        }
        finally
        {
            idle.ForEach(socket => socket.Dispose());
        }

        Assert.False(proxy.HasExited, proxy.Stderr);
        await Wait.UntilAsync(() => Query(port, server.Role(PgAuthMethod.Trust), "SELECT 'served again'").ExitCode == 0, "a client is served once the idle ones left");
        (int exitCode, _) = await proxy.StopAsync();
        Assert.Equal(0, exitCode);
        Assert.DoesNotContain("Out of memory", proxy.Stderr);
        Assert.DoesNotContain("unexpected error", proxy.Stderr);
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task UnixSocketLock_NeverFollowsALinkNorTouchesAFileItDidNotWrite_AndReplacesOneItLeftBehind()
    {
        PgServer server = await _servers.Server(18);
        using var directory = new TempDirectory();
        string path = Path.Combine(directory.Path, ".s.PGSQL.6433");
        string victim = Path.Combine(directory.Path, "victim.txt");
        await File.WriteAllTextAsync(victim, "IMPORTANT");
        ProxyEndpoint listen = ProxyEndpoint.Parse(path);
        var options = new PgProxyOptions { Listen = listen, Upstream = ProxyEndpoint.Parse(server.Host + ":" + server.Port.ToString(CultureInfo.InvariantCulture)) };

        File.CreateSymbolicLink(path + ".lock", victim);
        await using (var linked = new PgProxy(options))
        {
            PgProxyStartException refused = Assert.Throws<PgProxyStartException>(linked.Start);
            Assert.Contains("is not a lock file of pgspec proxy", refused.Message);
        }

        Assert.Equal("IMPORTANT", await File.ReadAllTextAsync(victim));
        File.Delete(path + ".lock");

        await File.WriteAllTextAsync(path + ".lock", "precious");
        await using (var foreign = new PgProxy(options))
        {
            PgProxyStartException refused = Assert.Throws<PgProxyStartException>(foreign.Start);
            Assert.Contains("was not written by pgspec proxy", refused.Message);
        }

        Assert.Equal("precious", await File.ReadAllTextAsync(path + ".lock"));

        // A lock file of a proxy that is gone: its format, and nobody holds it.
        await File.WriteAllTextAsync(path + ".lock", "999999\npgspec proxy\n");
        await using (var harness = new ProxyHarness(server, o => o with { Listen = listen }))
        {
            using RawClient client = await RawClient.ConnectAsync(path);
            await client.SendAsync(RawClient.Startup(server.Role(PgAuthMethod.Trust).Name));
            Assert.NotNull(await client.ReadUntilAsync('Z'));
            Assert.Equal((UnixFileMode)0x1FF, File.GetUnixFileMode(path) & (UnixFileMode)0x1FF);
        }

        Assert.False(File.Exists(path + ".lock"));
        await using (var restricted = new ProxyHarness(server, o => o with { Listen = listen, UnixSocketPermissions = (UnixFileMode)0x1F8 }))
        {
            Assert.Equal((UnixFileMode)0x1F8, File.GetUnixFileMode(path) & (UnixFileMode)0x1FF);
        }
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task UnixSocketLock_OfAProcessThatStillRuns_OrOfAnotherUser_IsLeftAlone()
    {
        PgServer server = await _servers.Server(18);
        using var directory = new TempDirectory();
        string path = Path.Combine(directory.Path, ".s.PGSQL.6434");
        var options = new PgProxyOptions { Listen = ProxyEndpoint.Parse(path), Upstream = ProxyEndpoint.Parse(server.Host + ":" + server.Port.ToString(CultureInfo.InvariantCulture)) };

        // The lock names a process that runs (as PostgreSQL's postmaster.pid does): it is not taken over,
        // even though nobody holds the file lock (file locks may be off, or the holder another kind of proxy).
        using (System.Diagnostics.Process running = System.Diagnostics.Process.Start("sleep", "600"))
        {
            try
            {
                string content = running.Id.ToString(CultureInfo.InvariantCulture) + "\npgspec proxy\n";
                await File.WriteAllTextAsync(path + ".lock", content);
                await using (var proxy = new PgProxy(options))
                {
                    PgProxyStartException refused = Assert.Throws<PgProxyStartException>(proxy.Start);
                    Assert.Contains($"process {running.Id}, which wrote {path}.lock, still runs", refused.Message);
                }

                Assert.Equal(content, await File.ReadAllTextAsync(path + ".lock"));
            }
            finally
            {
                running.Kill();
                await running.WaitForExitAsync();
            }
        }

        // A lock of a proxy that is gone, but another user's: left alone (the tests run as root, as CI does).
        await File.WriteAllTextAsync(path + ".lock", "999999\npgspec proxy\n");
        using (System.Diagnostics.Process chown = System.Diagnostics.Process.Start("chown", ["nobody", path + ".lock"]))
        {
            await chown.WaitForExitAsync();
            Assert.Equal(0, chown.ExitCode);
        }

        await using (var proxy = new PgProxy(options))
        {
            PgProxyStartException refused = Assert.Throws<PgProxyStartException>(proxy.Start);
            Assert.Contains("belongs to another user", refused.Message);
        }

        Assert.True(File.Exists(path + ".lock"));
    }

    [Fact]
    public async Task BeyondTheLimit_ManyIdleSockets_StillLeaveAClientItsFatal53300_AndAreClosedSoon()
    {
        PgServer server = await _servers.Server(18);
        await using var proxy = new ProxyHarness(server, options => options with { MaxClientConnections = 1, HandshakeTimeout = TimeSpan.FromMinutes(2) });
        using RawClient served = await RobustnessTests.LoggedInAsync(proxy, server);
        var idle = new List<RawClient>();
        try
        {
            for (int i = 0; i < 100; i++)
            {
                idle.Add(await RawClient.ConnectAsync(proxy.Port));
            }

            using RawClient refused = await RawClient.ConnectAsync(proxy.Port);
            await refused.SendAsync(RawClient.Startup(server.Role(PgAuthMethod.Trust).Name));
            (char Type, byte[] Body)? error = await refused.ReadUntilAsync('E');
            Assert.NotNull(error);
            Assert.Contains("53300", Encoding.UTF8.GetString(error.Value.Body));

            // Beyond the limit, a connection has a few seconds, not the handshake timeout, to say what it wants.
            var waited = System.Diagnostics.Stopwatch.StartNew();
            Assert.True(await idle[0].ClosedAsync());
            Assert.True(waited.Elapsed < TimeSpan.FromSeconds(60), $"an idle connection beyond the limit was held {waited.Elapsed}");
            Assert.Contains("sorry, too many clients already", Encoding.UTF8.GetString(error.Value.Body));

            // Refusals are counted as such, not as failed connections.
            await Wait.UntilAsync(() => proxy.Proxy.Statistics.Refused >= 2, "the refusals are counted");
            Assert.Equal(0, proxy.Proxy.Statistics.Failed);
        }
        finally
        {
            idle.ForEach(client => client.Dispose());
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task IdleTimeout_NeverCutsAnExtendedQuery_AndAppliesAgainAfterACopyFromStdin(bool copy)
    {
        PgServer server = await _servers.Server(15);
        await using var proxy = new ProxyHarness(server, options => options with { IdleTimeout = TimeSpan.FromSeconds(1) });
        using RawClient client = await RobustnessTests.LoggedInAsync(proxy, server);
        if (!copy)
        {
            // Parse, Bind, Execute and Flush, no Sync: the query runs, and its client waits for it.
            await client.SendAsync([.. Parse("SELECT pg_sleep(2.5), 'extended'"), .. Bind(), .. Execute(), .. RawClient.Message('H', "")]);
            (char Type, byte[] Body)? row = await client.ReadUntilAsync('D');
            Assert.NotNull(row);
            Assert.Contains("extended", Encoding.UTF8.GetString(row.Value.Body));
            await client.SendAsync(RawClient.Message('S', ""));
            Assert.NotNull(await client.ReadUntilAsync('Z'));
        }
        else
        {
            // As libpq's PQexecParams does COPY: Execute and Sync, then the data, CopyDone and Sync.
            await client.SendAsync(RawClient.Message('Q', "CREATE TEMP TABLE t (x int)\0"));
            Assert.NotNull(await client.ReadUntilAsync('Z'));
            await client.SendAsync([.. Parse("COPY t FROM STDIN"), .. Bind(), .. Execute(), .. RawClient.Message('S', "")]);
            Assert.NotNull(await client.ReadUntilAsync('G'));
            await client.SendAsync([.. RawClient.Message('d', "1\n"), .. RawClient.Message('c', ""), .. RawClient.Message('S', "")]);
            Assert.NotNull(await client.ReadUntilAsync('Z'));
        }

        (char Type, byte[] Body)? farewell = await client.ReadUntilAsync('E');
        Assert.NotNull(farewell);
        Assert.Contains("57P05", Encoding.UTF8.GetString(farewell.Value.Body));
    }

    [Fact]
    public async Task IdleTimeout_AfterManyQuickQueries_StillEndsTheIdleConnection()
    {
        // Answers that overtake the proxy's count of the queries they answer must not leave it
        // thinking a query still runs: after hundreds of quick ones, the idle connection ends.
        PgServer server = await _servers.Server(15);
        await using var proxy = new ProxyHarness(server, options => options with { IdleTimeout = TimeSpan.FromSeconds(1) });
        using RawClient client = await RobustnessTests.LoggedInAsync(proxy, server);
        for (int round = 0; round < 20; round++)
        {
            byte[] query = RawClient.Message('Q', ";\0");
            await client.SendAsync([.. Enumerable.Repeat(query, 50).SelectMany(bytes => bytes)]);
            for (int i = 0; i < 50; i++)
            {
                Assert.NotNull(await client.ReadUntilAsync('Z'));
            }
        }

        (char Type, byte[] Body)? farewell = await client.ReadUntilAsync('E');
        Assert.NotNull(farewell);
        Assert.Contains("57P05", Encoding.UTF8.GetString(farewell.Value.Body));
    }

    [Fact]
    public async Task IdleTimeout_APartOfAMessageHeader_DoesNotKeepTheConnectionOpen()
    {
        // Three bytes of a header, then nothing: PostgreSQL's idle timeout still ends the session.
        PgServer server = await _servers.Server(15);
        await using var proxy = new ProxyHarness(server, options => options with { IdleTimeout = TimeSpan.FromSeconds(1) });
        using RawClient client = await RobustnessTests.LoggedInAsync(proxy, server);
        await client.SendAsync([(byte)'Q', 0, 0]);

        (char Type, byte[] Body)? farewell = await client.ReadUntilAsync('E');
        Assert.NotNull(farewell);
        Assert.Contains("57P05", Encoding.UTF8.GetString(farewell.Value.Body));
        Assert.True(await client.ClosedAsync());
    }

    [Fact]
    public async Task AnSslRequestAfterAnSslRequest_IsRefusedAsPostgresqlRefusesIt()
    {
        PgServer server = await _servers.Server(18);
        await using var proxy = new ProxyHarness(server);
        using RawClient client = await RawClient.ConnectAsync(proxy.Port);
        byte[] sslRequest = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

        await client.SendAsync(sslRequest);
        Assert.Equal('N', await client.ReadByteAsync());
        await client.SendAsync(sslRequest);
        (char Type, byte[] Body)? error = await client.ReadUntilAsync('E');

        Assert.NotNull(error);
        Assert.Contains("unsupported frontend protocol 1234.5679", Encoding.UTF8.GetString(error.Value.Body));
    }

    [Fact]
    public async Task DirectTls_WithoutTheAlpnOfPostgresql_IsRefused()
    {
        PgServer server = await _servers.Server(18);
        using X509Certificate2 certificate = TlsTests.SelfSigned();
        await using var proxy = new ProxyHarness(server, options => options with { TlsCertificate = certificate });
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, proxy.Port));
        using var tls = new System.Net.Security.SslStream(new NetworkStream(socket), false, (_, _, _, _) => true);

        await tls.AuthenticateAsClientAsync(new System.Net.Security.SslClientAuthenticationOptions { TargetHost = "localhost" });
        int read;
        try
        {
            read = await tls.ReadAsync(new byte[16]);
        }
        catch (IOException)
        {
            read = 0;
        }

        Assert.Equal(0, read);
        await proxy.WaitIdleAsync();
        Assert.Contains("without the ALPN protocol 'postgresql'", proxy.Log);
    }

    [Fact]
    public async Task ConnectionsThatOpenAndCloseAtOnce_AllLeaveTheCountOfOpenOnes()
    {
        PgServer server = await _servers.Server(15);
        await using var proxy = new ProxyHarness(server, options => options with { Log = null });
        for (int i = 0; i < 2000; i++)
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, proxy.Port));
        }

        await Wait.UntilAsync(() => proxy.Proxy.Statistics.Closed + proxy.Proxy.Statistics.Failed == 2000, "every connection ended");
        await Wait.UntilAsync(() => proxy.Proxy.ActiveConnections == 0, "no connection counted as open");
    }

    [Fact]
    public async Task HandshakeTimeout_WhileTheServerIsSilent_NamesTheServer()
    {
        await using var fake = new FakeServerProxy(
            async socket =>
            {
                byte[] buffer = new byte[1024];
                await socket.ReceiveAsync(buffer);
                try
                {
                    await socket.ReceiveAsync(buffer);
                }
                catch (SocketException)
                {
                }
            },
            options => options with { HandshakeTimeout = TimeSpan.FromSeconds(1) });
        using RawClient client = await RawClient.ConnectAsync(fake.Port);

        await client.SendAsync(RawClient.Startup("anyone"));
        (char Type, byte[] Body)? error = await client.ReadUntilAsync('E');

        Assert.NotNull(error);
        Assert.Contains("the server did not complete authentication within --handshake-timeout", Encoding.UTF8.GetString(error.Value.Body));
        Assert.Contains("the server did not answer in time", fake.Log);
        await fake.StopAsync();
    }

    private static byte[] Parse(string sql) => RawClient.Message('P', "\0" + sql + "\0\0\0");

    private static byte[] Bind() => RawClient.Message('B', "\0\0\0\0\0\0\0\0");

    private static byte[] Execute() => RawClient.Message('E', "\0\0\0\0\0");

    /// <summary>Resident memory once it is at most <paramref name="target"/>, or after a minute of trying (then the test fails on it).</summary>
    private static async Task<long> SettledResidentBytesAsync(ProxyProcess proxy, long target)
    {
        long resident = proxy.ResidentBytes;
        for (int i = 0; i < 600 && resident > target; i++)
        {
            await Task.Delay(100);
            resident = proxy.ResidentBytes;
        }

        return resident;
    }

    private static async Task<RawClient> LoggedInAsync(int port, PgRole role)
    {
        RawClient client = await RawClient.ConnectAsync(port);
        await client.SendAsync(RawClient.Startup(role.Name));
        Assert.NotNull(await client.ReadUntilAsync('Z'));
        return client;
    }

    private static ProcessOutput Query(int port, PgRole role, string sql)
        => ExternalProcess.Run("/usr/bin/psql", ["-X", "-A", "-t", "-c", sql, $"host=127.0.0.1 port={port.ToString(CultureInfo.InvariantCulture)} user={role.Name} dbname=postgres sslmode=disable"], environment: ClientTests.Environment(role));

    /// <summary>Waits until a query whose text contains <paramref name="marker"/> runs on the server (pg_stat_activity, asked directly).</summary>
    private static Task WaitForActivityAsync(PgServer server, string marker)
    {
        PgRole role = server.Role(PgAuthMethod.Trust);
        return Wait.UntilAsync(
            () => ExternalProcess.Run("/usr/bin/psql", ["-X", "-A", "-t", "-c", $"SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%{marker}%' AND pid <> pg_backend_pid() AND state = 'active'", $"host={server.Host} port={server.Port.ToString(CultureInfo.InvariantCulture)} user={role.Name} dbname=postgres sslmode=disable"]).Stdout.Trim() == "1",
            $"a query with '{marker}' runs");
    }
}
