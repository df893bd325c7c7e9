using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace PgSpec.Proxy.Tests;

/// <summary>The bytes each side receives are the bytes the other side sent, unknown message types included.</summary>
public class ForwardingTests
{
    [Fact]
    public async Task Proxy_ForwardsBothDirectionsByteForByteIncludingUnknownMessages()
    {
        byte[] serverSends =
        [
            .. Message('R', [0, 0, 0, 0]),
            .. Message('S', Encoding.ASCII.GetBytes("client_encoding\0UTF8\0")),
            .. Message('Y', Encoding.ASCII.GetBytes("an unknown type")),
            .. Message('Z', [(byte)'I']),
            .. Message('T', [0, 0]),
            .. Message('C', Encoding.ASCII.GetBytes("SELECT 0\0")),
            .. Message('Z', [(byte)'I']),
        ];
        byte[] clientSendsAfterStartup =
        [
            .. Message('Q', Encoding.ASCII.GetBytes("SELECT\0")),
            .. Message('y', Encoding.ASCII.GetBytes("unknown too")),
            .. Message('X', []),
        ];
        byte[] startup = RawClient.Startup("someone");

        var serverReceived = new MemoryStream();
        await using var fake = new FakeServerProxy(async socket =>
        {
            using var stream = new NetworkStream(socket);
            await stream.WriteAsync(serverSends);
            await stream.CopyToAsync(serverReceived);
        });
        PgProxy proxy = fake.Proxy;

        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync((IPEndPoint)proxy.LocalEndPoint!);
        using var clientStream = new NetworkStream(client);
        await clientStream.WriteAsync(startup);
        byte[] first = new byte[serverSends.Length];
        await clientStream.ReadExactlyAsync(first);
        await clientStream.WriteAsync(clientSendsAfterStartup);
        client.Shutdown(SocketShutdown.Send);
        var rest = new MemoryStream();
        await clientStream.CopyToAsync(rest);
        await fake.Served;

        Assert.Equal(serverSends, first);
        Assert.Empty(rest.ToArray());
        Assert.Equal([.. startup, .. clientSendsAfterStartup], serverReceived.ToArray());
        await fake.StopAsync();
        Assert.Equal(1, proxy.Statistics.Closed);
        Assert.Equal(4, proxy.Statistics.FrontendMessages);
        Assert.Equal(7, proxy.Statistics.BackendMessages);
        Assert.Equal(startup.Length + clientSendsAfterStartup.Length, proxy.Statistics.FrontendBytes);
    }

    private static byte[] Message(char type, byte[] body)
    {
        byte[] message = new byte[5 + body.Length];
        message[0] = (byte)type;
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(message.AsSpan(1), 4 + body.Length);
        body.CopyTo(message, 5);
        return message;
    }
}
