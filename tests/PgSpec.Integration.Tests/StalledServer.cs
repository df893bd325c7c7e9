using System.Net;
using System.Net.Sockets;
using PgSpec.Client;
using PgSpec.Protocol;

namespace PgSpec.Integration.Tests;

/// <summary>
/// A fake server on a loopback port for one connection: it lets the client in (AuthenticationOk,
/// ReadyForQuery), answers the first query with fixed bytes and then says nothing more, holding
/// the connection open until the client closes it.
/// </summary>
public sealed class StalledServer : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly Task _serving;
    private readonly TaskCompletionSource _answered = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public StalledServer(params IBackendMessage[] answer)
    {
        _listener.Start();
        byte[] bytes = [.. answer.SelectMany(m => m.ToArray())];
        _serving = ServeAsync(bytes);
    }

    /// <summary>Completes once the answer has been sent.</summary>
    public Task Answered => _answered.Task;

    /// <summary>Options that reach this server, with the given command timeout.</summary>
    public PgConnectOptions Options(TimeSpan commandTimeout) => new()
    {
        Host = "127.0.0.1",
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port,
        User = "u",
        Database = "d",
        SslMode = PgSslMode.Disable,
        CommandTimeout = commandTimeout,
    };

    public async ValueTask DisposeAsync()
    {
        await _serving.WaitAsync(TimeSpan.FromSeconds(30));
        _listener.Dispose();
    }

    private async Task ServeAsync(byte[] answer)
    {
        using Socket socket = await _listener.AcceptSocketAsync();
        byte[] buffer = new byte[4096];
        try
        {
            await socket.ReceiveAsync(buffer);
            await socket.SendAsync((byte[])[.. new AuthenticationOk().ToArray(), .. new ReadyForQuery(TransactionStatus.Idle).ToArray()]);
            await socket.ReceiveAsync(buffer);
            await socket.SendAsync(answer);
            _answered.SetResult();
            while (await socket.ReceiveAsync(buffer) > 0)
            {
            }
        }
        catch (SocketException)
        {
            // The client reset the connection: what the test wanted to see has happened.
        }
    }
}
