using System.Security.Cryptography.X509Certificates;
using PgSpec.Protocol;
using PgSpec.Proxy.Sockets;

namespace PgSpec.Proxy;

/// <summary>How the proxy listens, connects and traces.</summary>
public sealed record PgProxyOptions
{
    /// <summary>Where clients connect.</summary>
    public required ProxyEndpoint Listen { get; init; }

    /// <summary>The server to forward to.</summary>
    public required ProxyEndpoint Upstream { get; init; }

    /// <summary>The certificate (with private key) for TLS towards clients; without one, SSLRequest is answered 'N' and direct TLS refused.</summary>
    public X509Certificate2? TlsCertificate { get; init; }

    /// <summary>Speak TLS to the server (SSLRequest; the server's certificate is not verified).</summary>
    public bool UpstreamTls { get; init; }

    /// <summary>
    /// Pass TLS through instead of terminating it: a client's SSLRequest goes to the server, and
    /// once the server says 'S' (or the client starts direct TLS) the connection's bytes are copied
    /// both ways without being read, so SCRAM-SHA-256-PLUS works and nothing after the startup is
    /// traced. Excludes <see cref="TlsCertificate"/> and <see cref="UpstreamTls"/>.
    /// </summary>
    public bool TlsPassthrough { get; init; }

    /// <summary>
    /// A DataRow or CopyData at least this long (its length word) is checked and forwarded piece by
    /// piece as it arrives, instead of being held whole, when nothing is traced. 64 KiB by default.
    /// </summary>
    public int StreamThreshold { get; init; } = 64 * 1024;

    /// <summary>Where message traces go; null traces nothing.</summary>
    public IProxyTraceSink? Trace { get; init; }

    /// <summary>The longest a client may take from connecting to sending its startup message.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>A connection with no traffic in either direction for this long is closed; infinite by default.</summary>
    public TimeSpan IdleTimeout { get; init; } = Timeout.InfiniteTimeSpan;

    /// <summary>How long connections may keep running after shutdown is requested.</summary>
    public TimeSpan ShutdownGrace { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Message size limits (both directions).</summary>
    public PgLimits Limits { get; init; } = PgLimits.Default;

    /// <summary>Which sockets to use: by default the proxy's own epoll loop on Linux, .NET's sockets elsewhere.</summary>
    public ProxySocketEngine SocketEngine { get; init; } = ProxySocketEngine.Auto;

    /// <summary>The epoll engine's event threads; 0 (the default) is one per four processors, at least one.</summary>
    public int IoThreads { get; init; }

    /// <summary>Notes about connections (failures, closes); null writes none.</summary>
    public Action<string>? Log { get; init; }
}
