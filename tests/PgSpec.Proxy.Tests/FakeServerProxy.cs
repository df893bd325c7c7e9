using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace PgSpec.Proxy.Tests;

/// <summary>An in-process proxy (tracing into memory) in front of a scripted fake server, which serves one connection.</summary>
public sealed class FakeServerProxy : IAsyncDisposable
{
    private readonly TcpListener _fake = new(IPAddress.Loopback, 0);
    private readonly ProxyHarness _harness;
    private bool _stopped;

    /// <summary>Starts both; <paramref name="script"/> gets the server side of the proxy's connection.</summary>
    public FakeServerProxy(Func<Socket, Task> script, Func<PgProxyOptions, PgProxyOptions>? configure = null)
    {
        _fake.Start();
        Served = Task.Run(async () =>
        {
            using Socket socket = await _fake.AcceptSocketAsync();
            await script(socket);
        });
        _harness = new ProxyHarness(ProxyEndpoint.Parse("127.0.0.1:" + ((IPEndPoint)_fake.LocalEndpoint).Port.ToString(CultureInfo.InvariantCulture)), configure);
    }

    public PgProxy Proxy => _harness.Proxy;

    /// <summary>The port clients connect to.</summary>
    public int Port => _harness.Port;

    /// <summary>The fake server's script, running or done.</summary>
    public Task Served { get; }

    /// <summary>The proxy's notes so far.</summary>
    public string Log => _harness.Log;

    /// <summary>Stops the proxy (its connections finish within the shutdown grace) and waits for the script.</summary>
    public async Task StopAsync()
    {
        if (_stopped)
        {
            return;
        }

        _stopped = true;
        await _harness.StopAsync();
        await Served;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await StopAsync();
        }
        finally
        {
            await _harness.DisposeAsync();
            _fake.Stop();
        }
    }
}
