using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace PgSpec.Proxy.Tests;

/// <summary>An in-process proxy in front of a scripted fake server, which serves one connection.</summary>
public sealed class FakeServerProxy : IAsyncDisposable
{
    private readonly TcpListener _fake = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly StringBuilder _log = new();
    private readonly Task _run;
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
        var options = new PgProxyOptions
        {
            Listen = ProxyEndpoint.Parse("127.0.0.1:0"),
            Upstream = ProxyEndpoint.Parse("127.0.0.1:" + ((IPEndPoint)_fake.LocalEndpoint).Port.ToString(CultureInfo.InvariantCulture)),
            Log = text =>
            {
                lock (_log)
                {
                    _log.AppendLine(text);
                }
            },
        };
        Proxy = new PgProxy(configure is null ? options : configure(options));
        Proxy.Start();
        _run = Proxy.RunAsync(_stop.Token);
    }

    public PgProxy Proxy { get; }

    /// <summary>The port clients connect to.</summary>
    public int Port => ((IPEndPoint)Proxy.LocalEndPoint!).Port;

    /// <summary>The fake server's script, running or done.</summary>
    public Task Served { get; }

    /// <summary>The proxy's notes so far.</summary>
    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    /// <summary>Stops the proxy (its connections finish within the shutdown grace) and waits for the script.</summary>
    public async Task StopAsync()
    {
        if (_stopped)
        {
            return;
        }

        _stopped = true;
        await _stop.CancelAsync();
        await _run;
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
            await Proxy.DisposeAsync();
            _fake.Stop();
            _stop.Dispose();
        }
    }
}
