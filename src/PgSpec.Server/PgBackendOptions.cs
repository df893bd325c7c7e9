using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using PgSpec.Protocol;

namespace PgSpec.Server;

/// <summary>How a <see cref="PgBackendServer"/> listens, authenticates and limits its sessions.</summary>
public sealed class PgBackendOptions
{
    /// <summary>
    /// Where to listen: <see cref="IPEndPoint"/> (port 0 picks a free one, see
    /// <see cref="PgBackendServer.EndPoints"/>) or <see cref="System.Net.Sockets.UnixDomainSocketEndPoint"/>.
    /// Default: 127.0.0.1:5432.
    /// </summary>
    public IList<EndPoint> Listen { get; } = [];

    /// <summary>The certificate (with its private key) for TLS: SSLRequest is answered 'S' and direct TLS accepted when set, 'N' otherwise.</summary>
    public X509Certificate2? TlsCertificate { get; set; }

    /// <summary>How clients log in. Default: <see cref="PgAuthenticator.Trust"/>.</summary>
    public PgAuthenticator Authentication { get; set; } = PgAuthenticator.Trust;

    /// <summary>The newest protocol version offered (3.0 or 3.2). A client asking for a newer one gets NegotiateProtocolVersion.</summary>
    public PgProtocolVersion MaxProtocolVersion { get; set; } = PgProtocolVersion.V3_2;

    /// <summary>The cancel key's length under protocol 3.2 (4 to 256 bytes; 3.0 always has 4). Default 32, as PostgreSQL 18.</summary>
    public int CancelKeyLength { get; set; } = 32;

    /// <summary>
    /// The ParameterStatus values every session reports after authentication (the handler may add or
    /// change them with <see cref="PgBackendSession.SetParameter"/>). The defaults are PostgreSQL's for
    /// a UTF-8 database; application_name, client_encoding and DateStyle follow the client's startup
    /// parameters where given, and session_authorization is the user.
    /// </summary>
    public IDictionary<string, string> Parameters { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["server_version"] = "18.0",
        ["server_encoding"] = "UTF8",
        ["client_encoding"] = "UTF8",
        ["DateStyle"] = "ISO, MDY",
        ["integer_datetimes"] = "on",
        ["IntervalStyle"] = "postgres",
        ["is_superuser"] = "on",
        ["standard_conforming_strings"] = "on",
        ["TimeZone"] = "UTC",
        ["in_hot_standby"] = "off",
        ["default_transaction_read_only"] = "off",
        ["scram_iterations"] = "4096",
    };

    /// <summary>The most sessions served at once; the next client is refused with FATAL 53300. Default 100, as PostgreSQL's max_connections.</summary>
    public int MaxConnections { get; set; } = 100;

    /// <summary>How long a client has from connecting to being authenticated (PostgreSQL's authentication_timeout). Default 60 s.</summary>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>An idle session (outside a transaction) is ended after this long with FATAL 57P05 (idle_session_timeout). Default: never.</summary>
    public TimeSpan IdleTimeout { get; set; } = Timeout.InfiniteTimeSpan;

    /// <summary>A session idle inside a transaction is ended after this long with FATAL 25P03 (idle_in_transaction_session_timeout). Default: never.</summary>
    public TimeSpan IdleInTransactionTimeout { get; set; } = Timeout.InfiniteTimeSpan;

    /// <summary>When the server stops, how long open sessions may go on before they are ended with FATAL 57P01. Default 5 s.</summary>
    public TimeSpan ShutdownGracePeriod { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The size limits of client messages, checked before a message is buffered.</summary>
    public PgLimits Limits { get; set; } = PgLimits.Default;

    /// <summary>Unsent output above which the session waits for the client to read before it produces more rows (backpressure). Default 64 KiB.</summary>
    public int OutputBufferSize { get; set; } = 64 * 1024;

    /// <summary>Where the server logs connections, refusals and failures. Default: nowhere.</summary>
    public ILoggerFactory? LoggerFactory { get; set; }

    /// <summary>
    /// Called with the bytes of every message of every session, both directions, as they cross the
    /// wire (type byte, length and body; a startup packet; a one-byte answer), for tracing. It runs
    /// on the session's task: keep it quick.
    /// </summary>
    public PgBackendTraffic? Traffic { get; set; }

    /// <summary>Called when a session has ended, with why when it ended abnormally (null: the client left as the protocol foresees).</summary>
    public Action<PgBackendSession, string?>? SessionEnded { get; set; }

    /// <summary>
    /// How many event threads serve the sockets (Linux, where the server's own epoll engine does):
    /// 0, the default, is one per two processors (at least one), leaving the others to handlers on
    /// the thread pool and to the kernel's network work. The threads wait on one epoll set, and a
    /// connection with something to read is served by whichever thread is free, so that a thread
    /// the scheduler preempts holds up no other connection. A handler that <see
    /// cref="PgSessionHandler.RunsInline"/> runs on these threads; others run on the thread pool.
    /// </summary>
    public int IoThreads { get; set; }

    /// <summary>
    /// How long an event thread keeps polling for the next event before it sleeps (Linux, the
    /// server's epoll engine): 300 microseconds by default, <see cref="TimeSpan.Zero"/> never, up to
    /// 10 milliseconds. A client that sends its next message within that time is served without the
    /// thread going to sleep and being woken, which on a busy connection is a large part of a round
    /// trip's cost; a thread whose polls keep finding nothing stops polling (one try in 16 waits), so
    /// an idle server does not spin. Polling takes processor time from other processes: where the
    /// server shares few processors with the work it waits for (a pooler in front of a database
    /// on the same machine), set it to zero.
    /// </summary>
    public TimeSpan EventSpin { get; set; } = TimeSpan.FromMicroseconds(300);

    /// <summary>The event threads when <see cref="IoThreads"/> is 0: one per two processors, at least one.</summary>
    internal static int DefaultIoThreads => Math.Max(1, Environment.ProcessorCount / 2);

    /// <summary>
    /// Which sockets serve accepted connections: null (the default) PgSpec's epoll engine on Linux
    /// and .NET's sockets elsewhere; false .NET's sockets everywhere; true epoll (Linux only).
    /// </summary>
    internal bool? EpollSockets { get; set; }

    internal void Validate()
    {
        if (MaxProtocolVersion.Code != PgProtocolVersion.V3_0.Code && MaxProtocolVersion.Code != PgProtocolVersion.V3_2.Code)
        {
            throw new ArgumentException($"MaxProtocolVersion must be 3.0 or 3.2, not {MaxProtocolVersion}");
        }

        if (CancelKeyLength is < 4 or > 256)
        {
            throw new ArgumentException($"CancelKeyLength must be 4 to 256 bytes, not {CancelKeyLength}");
        }

        if (MaxConnections < 1)
        {
            throw new ArgumentException("MaxConnections must be at least 1");
        }

        if (IoThreads is < 0 or > 256)
        {
            throw new ArgumentException($"IoThreads must be 0 (one per two processors) to 256, not {IoThreads}");
        }

        if (EventSpin < TimeSpan.Zero || EventSpin > TimeSpan.FromMilliseconds(10))
        {
            throw new ArgumentException($"EventSpin must be 0 to 10 milliseconds, not {EventSpin}");
        }

        if (OutputBufferSize < 1024)
        {
            throw new ArgumentException("OutputBufferSize must be at least 1024 bytes");
        }

        ArgumentNullException.ThrowIfNull(Authentication);
        ArgumentNullException.ThrowIfNull(Limits);
    }
}

/// <summary>Receives the bytes of one message that crossed a session (see <see cref="PgBackendOptions.Traffic"/>).</summary>
/// <param name="session">The session.</param>
/// <param name="direction">Frontend: the client sent it; Backend: the server did.</param>
/// <param name="raw">The message's bytes, valid only during the call.</param>
public delegate void PgBackendTraffic(PgBackendSession session, PgDirection direction, ReadOnlySpan<byte> raw);
