using System.Security.Cryptography.X509Certificates;
using PgSpec.Protocol;
using PgSpec.Sockets;

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

    /// <summary>
    /// At most this many client connections at once (0: no limit); a client beyond it gets
    /// PostgreSQL's FATAL 53300 "sorry, too many clients already" once it has sent its startup
    /// packet. Cancel requests are served whatever the count. 1000 by default.
    /// </summary>
    public int MaxClientConnections { get; init; } = 1000;

    /// <summary>
    /// What a client connected with TLS gets when the server offers SCRAM-SHA-256-PLUS (it does
    /// over <see cref="UpstreamTls"/>) and the proxy cannot carry channel binding through: its
    /// channel ends at the proxy's certificate, not the server's (it can when the proxy has the
    /// server's own certificate). Clients without TLS are offered SCRAM-SHA-256 alone in any case.
    /// </summary>
    public ProxyChannelBindingFallback ChannelBindingFallback { get; init; } = ProxyChannelBindingFallback.RelayPassword;

    /// <summary>
    /// The permissions of a Unix socket the proxy listens on; as PostgreSQL's default
    /// (unix_socket_permissions 0777), anyone may connect, and the server's own authentication decides.
    /// </summary>
    public UnixFileMode UnixSocketPermissions { get; init; } = (UnixFileMode)0x1FF;

    /// <summary>Notes about connections (failures, closes); null writes none.</summary>
    public Action<string>? Log { get; init; }
}

/// <summary>How the proxy serves a TLS client that SCRAM channel binding cannot reach the server through.</summary>
public enum ProxyChannelBindingFallback
{
    /// <summary>
    /// Ask the client for its password (AuthenticationCleartextPassword, over its TLS connection)
    /// and authenticate to the server with it by SCRAM-SHA-256-PLUS: libpq's defaults
    /// (channel_binding=prefer) work. The proxy sees the password (never traced unless secrets are shown).
    /// </summary>
    RelayPassword,

    /// <summary>
    /// Offer SCRAM-SHA-256 without -PLUS: clients with channel_binding=disable succeed; a client that
    /// could bind answers "y", which the server would take for a downgrade attack, so it gets FATAL
    /// 28000 from the proxy saying what would work.
    /// </summary>
    Refuse,
}
