using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace PgSpec.Proxy.Tests;

/// <summary>
/// The messages the proxy writes itself (an SSLRequest and a CancelRequest to the server, a FATAL
/// to the client), byte for byte as PostgreSQL and libpq write them: the expected bytes are spelt
/// out here, not encoded by the codec under test.
/// </summary>
public class WireOutputTests
{
    private static readonly TimeSpan s_patience = TimeSpan.FromMinutes(2);

    [Fact]
    public async Task UpstreamTls_AsksTheServerWithAnSslRequest_AndARefusalGivesTheClientAFatal08001()
    {
        byte[] received = new byte[8];
        await using var fake = new FakeServerProxy(
            async socket =>
            {
                await ReceiveExactlyAsync(socket, received);
                await socket.SendAsync("N"u8.ToArray());
                await DrainAsync(socket);
            },
            options => options with { UpstreamTls = true });
        using RawClient client = await RawClient.ConnectAsync(fake.Port);

        await client.SendAsync(RawClient.Startup("anyone"));
        byte[] farewell = await client.ReadToEndAsync();

        Assert.Equal(new byte[] { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f }, received);
        Assert.Equal(
            ErrorResponse(
                ('S', "FATAL"),
                ('V', "FATAL"),
                ('C', "08001"),
                ('M', "the server behind pgspec proxy refused TLS (answered 'N' to SSLRequest), and the proxy was told to use TLS (--upstream-tls)")),
            farewell);
        await fake.StopAsync();
    }

    [Fact]
    public async Task AnInvalidStartupPacket_GetsPostgresqlsFatal08P01_ByteForByte()
    {
        // The proxy refuses the packet before it connects to any server.
        await using var proxy = new ProxyHarness(ProxyEndpoint.Parse("127.0.0.1:1"));
        using RawClient client = await RawClient.ConnectAsync(proxy.Port);

        await client.SendAsync([0, 0, 0, 3, 0, 0, 0, 0]);
        byte[] farewell = await client.ReadToEndAsync();

        Assert.Equal(ErrorResponse(('S', "FATAL"), ('V', "FATAL"), ('C', "08P01"), ('M', "invalid length of startup packet: 3")), farewell);
    }

    [Fact]
    public async Task BytesSentWithAnSslRequest_BeforeTheAnswer_GetPostgresqlsFatal08P01InsteadOfTheAnswer()
    {
        // CVE-2021-23222: bytes that came before the answer are no part of a TLS handshake started after it.
        using X509Certificate2 certificate = TlsTests.SelfSigned();
        await using var proxy = new ProxyHarness(ProxyEndpoint.Parse("127.0.0.1:1"), options => options with { TlsCertificate = certificate });
        using RawClient client = await RawClient.ConnectAsync(proxy.Port);

        await client.SendAsync([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f, .. RawClient.Startup("anyone")]);
        byte[] farewell = await client.ReadToEndAsync();

        Assert.Equal(
            ErrorResponse(
                ('S', "FATAL"),
                ('V', "FATAL"),
                ('C', "08P01"),
                ('M', "received unencrypted data after SSL request"),
                ('D', "This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.")),
            farewell);
    }

    [Fact]
    public async Task AGssEncRequestAfterTls_GetsPostgresqlsFatal0A000()
    {
        // As PostgreSQL: once TLS is up, only a StartupMessage or a CancelRequest may come.
        using X509Certificate2 certificate = TlsTests.SelfSigned();
        await using var proxy = new ProxyHarness(ProxyEndpoint.Parse("127.0.0.1:1"), options => options with { TlsCertificate = certificate });
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, proxy.Port));
        using var network = new NetworkStream(socket);
        using var timeout = new CancellationTokenSource(s_patience);
        await network.WriteAsync(new byte[] { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f }, timeout.Token);
        byte[] answer = new byte[1];
        await network.ReadExactlyAsync(answer, timeout.Token);
        Assert.Equal((byte)'S', answer[0]);
        using var tls = new System.Net.Security.SslStream(network, false, (_, _, _, _) => true);
        await tls.AuthenticateAsClientAsync(new System.Net.Security.SslClientAuthenticationOptions { TargetHost = "localhost" }, timeout.Token);

        await tls.WriteAsync(new byte[] { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30 }, timeout.Token);
        var farewell = new MemoryStream();
        try
        {
            await tls.CopyToAsync(farewell, timeout.Token);
        }
        catch (IOException)
        {
            // The proxy may close without TLS's close_notify.
        }

        Assert.Equal(
            ErrorResponse(('S', "FATAL"), ('V', "FATAL"), ('C', "0A000"), ('M', "unsupported frontend protocol 1234.5680: server supports 3.0 to 3.2")),
            farewell.ToArray());
    }

    [Theory]
    [InlineData(0, 4)]
    [InlineData(2, 32)]
    public async Task CancelRequest_GoesToTheServerWithTheServersKey_ByteForByte(int minor, int keyLength)
    {
        const int ProcessId = 0x01020304;
        byte[] serverKey = Enumerable.Range(0, keyLength).Select(i => (byte)(0xA0 + i)).ToArray();
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var cancelReceived = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        Task server = Task.Run(async () =>
        {
            using Socket session = await listener.AcceptSocketAsync();
            byte[] length = new byte[4];
            await ReceiveExactlyAsync(session, length);
            await ReceiveExactlyAsync(session, new byte[BinaryPrimitives.ReadInt32BigEndian(length) - 4]);
            byte[] key = new byte[9 + keyLength];
            key[0] = (byte)'K';
            BinaryPrimitives.WriteInt32BigEndian(key.AsSpan(1), 8 + keyLength);
            BinaryPrimitives.WriteInt32BigEndian(key.AsSpan(5), ProcessId);
            serverKey.CopyTo(key, 9);
            await session.SendAsync((byte[])[(byte)'R', 0, 0, 0, 8, 0, 0, 0, 0, .. key, (byte)'Z', 0, 0, 0, 5, (byte)'I']);

            using (Socket cancel = await listener.AcceptSocketAsync())
            {
                // PostgreSQL closes the connection once it has read the request.
                cancelReceived.SetResult(await ReadToEndAsync(cancel));
            }

            await DrainAsync(session);
        });
        await using var proxy = new ProxyHarness(ProxyEndpoint.Parse("127.0.0.1:" + ((IPEndPoint)listener.LocalEndpoint).Port.ToString(CultureInfo.InvariantCulture)));
        using RawClient client = await RawClient.ConnectAsync(proxy.Port);
        byte[] startup = RawClient.Startup("anyone");
        startup[7] = (byte)minor;

        await client.SendAsync(startup);
        (char Type, byte[] Body)? issued = await client.ReadUntilAsync('K');
        Assert.NotNull(issued);
        Assert.NotNull(await client.ReadUntilAsync('Z'));
        byte[] clientKey = issued.Value.Body[4..];
        Assert.Equal(ProcessId, BinaryPrimitives.ReadInt32BigEndian(issued.Value.Body));
        Assert.Equal(keyLength, clientKey.Length);
        Assert.NotEqual(serverKey, clientKey);

        using (RawClient canceller = await RawClient.ConnectAsync(proxy.Port))
        {
            await canceller.SendAsync(CancelRequest(ProcessId, clientKey));
            Assert.True(await canceller.ClosedAsync());
        }

        byte[] forwarded = await cancelReceived.Task.WaitAsync(s_patience);
        Assert.Equal(CancelRequest(ProcessId, serverKey), forwarded);
        await client.SendAsync(RawClient.Message('X', ""));
        client.Dispose();
        await server.WaitAsync(s_patience);
    }

    /// <summary>An ErrorResponse spelt out: 'E', the length, each field's code and text, a zero byte.</summary>
    private static byte[] ErrorResponse(params (char Code, string Value)[] fields)
    {
        var body = new List<byte>();
        foreach ((char code, string value) in fields)
        {
            body.Add((byte)code);
            body.AddRange(Encoding.UTF8.GetBytes(value));
            body.Add(0);
        }

        body.Add(0);
        byte[] message = new byte[5 + body.Count];
        message[0] = (byte)'E';
        BinaryPrimitives.WriteInt32BigEndian(message.AsSpan(1), 4 + body.Count);
        body.CopyTo(message, 5);
        return message;
    }

    /// <summary>A CancelRequest spelt out: the length, 1234.5678 (80877102), the process ID, the key.</summary>
    private static byte[] CancelRequest(int processId, byte[] key)
    {
        byte[] packet = new byte[12 + key.Length];
        BinaryPrimitives.WriteInt32BigEndian(packet, packet.Length);
        BinaryPrimitives.WriteInt32BigEndian(packet.AsSpan(4), (1234 << 16) | 5678);
        BinaryPrimitives.WriteInt32BigEndian(packet.AsSpan(8), processId);
        key.CopyTo(packet, 12);
        return packet;
    }

    private static async Task ReceiveExactlyAsync(Socket socket, byte[] buffer)
    {
        using var patience = new CancellationTokenSource(s_patience);
        int filled = 0;
        while (filled < buffer.Length)
        {
            int n = await socket.ReceiveAsync(buffer.AsMemory(filled), patience.Token);
            Assert.True(n > 0, $"the proxy closed after {filled} of {buffer.Length} bytes");
            filled += n;
        }
    }

    private static async Task<byte[]> ReadToEndAsync(Socket socket)
    {
        using var patience = new CancellationTokenSource(s_patience);
        var all = new MemoryStream();
        byte[] buffer = new byte[256];
        int n;
        while ((n = await socket.ReceiveAsync(buffer, patience.Token)) > 0)
        {
            all.Write(buffer, 0, n);
        }

        return all.ToArray();
    }

    /// <summary>Reads until the proxy closes its side (or resets it).</summary>
    private static async Task DrainAsync(Socket socket)
    {
        try
        {
            await ReadToEndAsync(socket);
        }
        catch (SocketException)
        {
        }
    }
}
