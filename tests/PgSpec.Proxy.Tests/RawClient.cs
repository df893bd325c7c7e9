using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace PgSpec.Proxy.Tests;

/// <summary>A client that writes whatever bytes a test gives it and reads typed messages back.</summary>
public sealed class RawClient : IDisposable
{
    /// <summary>How long a read may wait: a proxy that never answers fails the test instead of hanging it.</summary>
    private static readonly TimeSpan s_patience = TimeSpan.FromMinutes(2);

    private readonly Socket _socket;
    private readonly NetworkStream _stream;

    private RawClient(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
    }

    public static async Task<RawClient> ConnectAsync(int port)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
        return new RawClient(socket);
    }

    /// <summary>Connects to a Unix-domain socket.</summary>
    public static async Task<RawClient> ConnectAsync(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path));
        return new RawClient(socket);
    }

    /// <summary>A protocol 3.0 StartupMessage for a user and database postgres.</summary>
    public static byte[] Startup(string user)
    {
        var body = new MemoryStream();
        body.Write([0, 3, 0, 0]);
        foreach (string text in new[] { "user", user, "database", "postgres", "" })
        {
            body.Write(Encoding.UTF8.GetBytes(text));
            body.WriteByte(0);
        }

        byte[] packet = new byte[4 + body.Length];
        BinaryPrimitives.WriteInt32BigEndian(packet, packet.Length);
        body.ToArray().CopyTo(packet, 4);
        return packet;
    }

    /// <summary>A typed message.</summary>
    public static byte[] Message(char type, string body)
    {
        byte[] text = Encoding.UTF8.GetBytes(body);
        byte[] message = new byte[5 + text.Length];
        message[0] = (byte)type;
        BinaryPrimitives.WriteInt32BigEndian(message.AsSpan(1), 4 + text.Length);
        text.CopyTo(message, 5);
        return message;
    }

    public async Task SendAsync(byte[] bytes)
    {
        await _stream.WriteAsync(bytes);
        await _stream.FlushAsync();
    }

    /// <summary>Reads one byte (the answer to SSLRequest or GSSENCRequest); -1 at the end of the stream.</summary>
    public async Task<int> ReadByteAsync()
    {
        using var patience = new CancellationTokenSource(s_patience);
        byte[] one = new byte[1];
        return await _stream.ReadAsync(one, patience.Token) == 1 ? one[0] : -1;
    }

    /// <summary>Reads the next typed message; null at the end of the stream.</summary>
    public async Task<(char Type, byte[] Body)?> ReadAsync()
    {
        using var patience = new CancellationTokenSource(s_patience);
        byte[] header = new byte[5];
        int n = await _stream.ReadAtLeastAsync(header, 5, throwOnEndOfStream: false, patience.Token);
        if (n < 5)
        {
            return null;
        }

        byte[] body = new byte[BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(1)) - 4];
        await _stream.ReadExactlyAsync(body, patience.Token);
        return ((char)header[0], body);
    }

    /// <summary>Reads messages until one of <paramref name="type"/> (returned) or the end of the stream (null).</summary>
    public async Task<(char Type, byte[] Body)?> ReadUntilAsync(char type)
    {
        while (await ReadAsync() is { } message)
        {
            if (message.Type == type)
            {
                return message;
            }
        }

        return null;
    }

    /// <summary>Every byte until the peer closes.</summary>
    public async Task<byte[]> ReadToEndAsync()
    {
        var all = new MemoryStream();
        try
        {
            await _stream.CopyToAsync(all);
        }
        catch (IOException)
        {
        }

        return all.ToArray();
    }

    /// <summary>True once the peer has closed (everything left is drained).</summary>
    public async Task<bool> ClosedAsync()
    {
        using var patience = new CancellationTokenSource(s_patience);
        byte[] buffer = new byte[4096];
        try
        {
            while (await _stream.ReadAsync(buffer, patience.Token) > 0)
            {
            }
        }
        catch (IOException)
        {
        }

        return true;
    }

    public void Dispose() => _stream.Dispose();
}
