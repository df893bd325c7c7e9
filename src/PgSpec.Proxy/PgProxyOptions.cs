using System.Security.Cryptography.X509Certificates;
using PgSpec.Protocol;

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

    /// <summary>Notes about connections (failures, closes); null writes none.</summary>
    public Action<string>? Log { get; init; }
}
