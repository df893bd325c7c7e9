using System.Globalization;
using System.Net;
using System.Text;
using PgSpec.Protocol;
using PgSpec.Server.Tests;
using PgSpec.Servers;

namespace PgSpec.Proxy.Tests;

/// <summary>An in-process proxy on 127.0.0.1 in front of a server, tracing into memory.</summary>
public sealed class ProxyHarness : IAsyncDisposable
{
    private readonly MemoryStream _trace = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _run;
    private readonly StringBuilder _log = new();

    public ProxyHarness(PgServer server, Func<PgProxyOptions, PgProxyOptions>? configure = null, bool regress = true, bool showSecrets = true)
        : this(ProxyEndpoint.Parse(server.Host + ":" + server.Port.ToString(CultureInfo.InvariantCulture)), configure, regress, showSecrets)
    {
    }

    public ProxyHarness(ProxyEndpoint upstream, Func<PgProxyOptions, PgProxyOptions>? configure = null, bool regress = true, bool showSecrets = true)
    {
        var options = new PgProxyOptions
        {
            Listen = ProxyEndpoint.Parse("127.0.0.1:0"),
            Upstream = upstream,
            Trace = new PqTraceSink(_trace, new PgTraceOptions { Regress = regress }, connectionIds: false, showSecrets: showSecrets),
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

    public int Port => ((IPEndPoint)Proxy.LocalEndPoint!).Port;

    public string PortText => Port.ToString(CultureInfo.InvariantCulture);

    /// <summary>The trace so far.</summary>
    public string Trace => Encoding.UTF8.GetString(_trace.ToArray());

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

    /// <summary>Waits until no connection is open (the proxy has seen every client leave); fails if one stays open.</summary>
    public Task WaitIdleAsync() => Wait.UntilAsync(() => Proxy.ActiveConnections == 0, "no connection is open");

    /// <summary>Stops accepting; open connections finish within the shutdown grace.</summary>
    public async Task StopAsync()
    {
        await _stop.CancelAsync();
        await _run;
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        await Proxy.DisposeAsync();
    }
}
