using System.Net;
using System.Net.Sockets;

namespace PgSpec.Cli.Tests.RealServer;

/// <summary>
/// A TCP relay on 127.0.0.1 for one connection: passes bytes between a client and a server
/// and keeps a copy of each direction.
/// </summary>
public sealed class RecordingRelay : IDisposable
{
    private readonly TcpListener _listener;
    private readonly IPEndPoint _server;
    private readonly MemoryStream _frontend = new();
    private readonly MemoryStream _backend = new();

    public RecordingRelay(string serverHost, int serverPort)
    {
        _server = new IPEndPoint(IPAddress.Parse(serverHost), serverPort);
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        Completion = RelayAsync();
    }

    /// <summary>The port clients connect to.</summary>
    public int Port { get; }

    /// <summary>Completes when both directions have ended.</summary>
    public Task Completion { get; }

    /// <summary>What the client sent (valid after <see cref="Completion"/>).</summary>
    public byte[] FrontendBytes => _frontend.ToArray();

    /// <summary>What the server sent (valid after <see cref="Completion"/>).</summary>
    public byte[] BackendBytes => _backend.ToArray();

    public void Dispose()
    {
        _listener.Stop();
    }

    private async Task RelayAsync()
    {
        using Socket client = await _listener.AcceptSocketAsync().ConfigureAwait(false);
        _listener.Stop();
        using var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await server.ConnectAsync(_server).ConfigureAwait(false);
        await Task.WhenAll(PumpAsync(client, server, _frontend), PumpAsync(server, client, _backend)).ConfigureAwait(false);
    }

    private static async Task PumpAsync(Socket from, Socket to, MemoryStream record)
    {
        byte[] buffer = new byte[16384];
        try
        {
            while (true)
            {
                int n = await from.ReceiveAsync(buffer, SocketFlags.None).ConfigureAwait(false);
                if (n == 0)
                {
                    break;
                }

                record.Write(buffer, 0, n);
                int sent = 0;
                while (sent < n)
                {
                    sent += await to.SendAsync(buffer.AsMemory(sent, n - sent), SocketFlags.None).ConfigureAwait(false);
                }
            }
        }
        catch (SocketException)
        {
            // A reset ends the direction like a close does.
        }

        try
        {
            to.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException)
        {
        }
    }
}
