using System.Net;
using System.Net.Sockets;

namespace PgSpec.Integration.Tests;

/// <summary>
/// A fake server on a loopback port: for each connection it waits for the client's first bytes,
/// answers with fixed bytes, ends its side and reads until the client closes (so that the client
/// reads every byte, without a reset).
/// </summary>
public sealed class ScriptedServer : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly byte[] _answer;
    private readonly Task _accepting;
    private int _connections;

    public ScriptedServer(byte[] answer)
    {
        _answer = answer;
        _listener.Start();
        _accepting = AcceptAsync();
    }

    /// <summary>An HTTP server's answer: not the protocol at all.</summary>
    public static byte[] Garbage { get; } = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"u8.ToArray();

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public int Connections => Volatile.Read(ref _connections);

    public string Url => $"postgres://fake:secret@127.0.0.1:{Port}/db";

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        await _accepting;
        _stop.Dispose();
    }

    private async Task AcceptAsync()
    {
        var connections = new List<Task>();
        while (true)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptSocketAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                break;
            }

            Interlocked.Increment(ref _connections);
            connections.Add(ServeAsync(socket));
        }

        await Task.WhenAll(connections);
    }

    private async Task ServeAsync(Socket socket)
    {
        using (socket)
        {
            try
            {
                // Whatever the client sends first (a startup packet, SSLRequest, a TLS ClientHello),
                // the answer is the same; what the client sends afterwards is read and dropped.
                byte[] buffer = new byte[16 * 1024];
                if (await socket.ReceiveAsync(buffer, SocketFlags.None, _stop.Token) > 0)
                {
                    await socket.SendAsync(_answer, SocketFlags.None, _stop.Token);
                    socket.Shutdown(SocketShutdown.Send);
                    while (await socket.ReceiveAsync(buffer, SocketFlags.None, _stop.Token) > 0)
                    {
                    }
                }
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException)
            {
            }
        }
    }
}
