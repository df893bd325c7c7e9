using System.Globalization;
using System.Security.Cryptography.X509Certificates;
using PgSpec.Protocol;

namespace PgSpec.Client;

/// <summary>libpq's sslmode.</summary>
public enum PgSslMode
{
    /// <summary>Never TLS.</summary>
    Disable,

    /// <summary>Plain first; TLS only if the server demands it (not attempted here: treated as Disable with a fallback).</summary>
    Allow,

    /// <summary>TLS if the server supports it, else plain.</summary>
    Prefer,

    /// <summary>TLS, without verifying the certificate.</summary>
    Require,

    /// <summary>TLS with a certificate signed by a trusted CA.</summary>
    VerifyCa,

    /// <summary>TLS with a trusted certificate whose name matches the host.</summary>
    VerifyFull,
}

/// <summary>libpq's sslnegotiation: SSLRequest first, or TLS at once (PostgreSQL 17+, ALPN "postgresql").</summary>
public enum PgSslNegotiation
{
    /// <summary>Send SSLRequest, read the one-byte answer, then the TLS handshake.</summary>
    Postgres,

    /// <summary>Start the TLS handshake at once with ALPN "postgresql" (requires sslmode require or stronger).</summary>
    Direct,
}

/// <summary>libpq's channel_binding.</summary>
public enum PgChannelBinding
{
    /// <summary>Never use SCRAM-SHA-256-PLUS.</summary>
    Disable,

    /// <summary>Use it when TLS is on and the server offers it.</summary>
    Prefer,

    /// <summary>Fail unless the server authenticates with SCRAM-SHA-256-PLUS.</summary>
    Require,
}

/// <summary>How to reach and authenticate to a server.</summary>
public sealed record PgConnectOptions
{
    /// <summary>The host name or address.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>The TCP port.</summary>
    public int Port { get; init; } = 5432;

    /// <summary>A Unix-domain socket path (.s.PGSQL.port) to use instead of TCP.</summary>
    public string? UnixSocketPath { get; init; }

    /// <summary>The user name.</summary>
    public string User { get; init; } = "postgres";

    /// <summary>The password, if the server asks for one.</summary>
    public string? Password { get; init; }

    /// <summary>The database; the user name when null.</summary>
    public string? Database { get; init; }

    /// <summary>TLS policy.</summary>
    public PgSslMode SslMode { get; init; } = PgSslMode.Prefer;

    /// <summary>How TLS starts.</summary>
    public PgSslNegotiation SslNegotiation { get; init; } = PgSslNegotiation.Postgres;

    /// <summary>Trusted CA certificates for verify-ca and verify-full.</summary>
    public X509Certificate2Collection? RootCertificates { get; init; }

    /// <summary>Channel binding policy for SCRAM.</summary>
    public PgChannelBinding ChannelBinding { get; init; } = PgChannelBinding.Prefer;

    /// <summary>Send a GSSENCRequest first (answered 'N' by servers without GSSAPI).</summary>
    public bool RequestGssEncryption { get; init; }

    /// <summary>The protocol version to ask for (3.0 or 3.2).</summary>
    public PgProtocolVersion ProtocolVersion { get; init; } = PgProtocolVersion.V3_0;

    /// <summary>Fail if the server offers less than <see cref="ProtocolVersion"/> in NegotiateProtocolVersion.</summary>
    public bool RequireProtocolVersion { get; init; }

    /// <summary>More startup parameters (application_name, options, _pq_.* protocol options...).</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Parameters { get; init; } = [];

    /// <summary>How long connecting (TCP, TLS, startup, authentication) may take.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>How long one command may wait for the server: a row reader waits at most this long for each message to arrive whole.</summary>
    public TimeSpan CommandTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Parses postgres://user:password@host:port/database?sslmode=...&amp;sslnegotiation=...&amp;channel_binding=...&amp;connect_timeout=...
    /// (other query parameters become startup parameters). A connect_timeout of zero or less waits
    /// indefinitely, as in libpq. Throws <see cref="ArgumentException"/>, saying what is wrong, for
    /// anything else it cannot use.
    /// </summary>
    public static PgConnectOptions FromUrl(string url)
    {
        ArgumentNullException.ThrowIfNull(url);
        if (!Uri.TryCreate(url, UriKind.Absolute, out Uri? uri) || (uri.Scheme != "postgres" && uri.Scheme != "postgresql"))
        {
            throw new ArgumentException($"'{url}' is not a postgres:// URL", nameof(url));
        }

        if (!uri.IsDefaultPort && uri.Port <= 0)
        {
            throw new ArgumentException($"'{url}': port {uri.Port} is not a TCP port (1 to 65535)", nameof(url));
        }

        string[] userInfo = uri.UserInfo.Split(':', 2);
        var options = new PgConnectOptions
        {
            Host = uri.Host.Length == 0 ? "127.0.0.1" : uri.Host.Trim('[', ']'),
            Port = uri.IsDefaultPort || uri.Port <= 0 ? 5432 : uri.Port,
            User = userInfo[0].Length == 0 ? "postgres" : Uri.UnescapeDataString(userInfo[0]),
            Password = userInfo.Length > 1 ? Uri.UnescapeDataString(userInfo[1]) : null,
            Database = uri.AbsolutePath.Trim('/').Length == 0 ? null : Uri.UnescapeDataString(uri.AbsolutePath.Trim('/')),
        };
        foreach (string pair in uri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] kv = pair.Split('=', 2);
            string key = Uri.UnescapeDataString(kv[0]);
            string value = kv.Length > 1 ? Uri.UnescapeDataString(kv[1]) : "";
            options = key switch
            {
                "sslmode" => options with { SslMode = ParseSslMode(value) },
                "sslnegotiation" => options with
                {
                    SslNegotiation = value switch
                    {
                        "postgres" => PgSslNegotiation.Postgres,
                        "direct" => PgSslNegotiation.Direct,
                        _ => throw new ArgumentException($"unknown sslnegotiation '{value}' (postgres or direct)", nameof(url)),
                    },
                },
                "channel_binding" => options with
                {
                    ChannelBinding = value switch
                    {
                        "disable" => PgChannelBinding.Disable,
                        "prefer" => PgChannelBinding.Prefer,
                        "require" => PgChannelBinding.Require,
                        _ => throw new ArgumentException($"unknown channel_binding '{value}' (disable, prefer or require)", nameof(url)),
                    },
                },
                "connect_timeout" => options with { ConnectTimeout = ParseConnectTimeout(value) },
                _ => options with { Parameters = [.. options.Parameters, new(key, value)] },
            };
        }

        return options;
    }

    /// <summary>libpq's connect_timeout: seconds; zero or less waits indefinitely.</summary>
    private static TimeSpan ParseConnectTimeout(string value)
    {
        // CancellationTokenSource takes up to int.MaxValue milliseconds (24.8 days).
        const double MaxSeconds = int.MaxValue / 1000.0;
        if (!double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds) || !double.IsFinite(seconds) || seconds > MaxSeconds)
        {
            throw new ArgumentException($"connect_timeout '{value}' is not a number of seconds up to {MaxSeconds:0}", nameof(value));
        }

        return seconds <= 0 ? Timeout.InfiniteTimeSpan : TimeSpan.FromSeconds(seconds);
    }

    /// <summary>Parses libpq's sslmode names.</summary>
    public static PgSslMode ParseSslMode(string value) => value switch
    {
        "disable" => PgSslMode.Disable,
        "allow" => PgSslMode.Allow,
        "prefer" => PgSslMode.Prefer,
        "require" => PgSslMode.Require,
        "verify-ca" => PgSslMode.VerifyCa,
        "verify-full" => PgSslMode.VerifyFull,
        _ => throw new ArgumentException($"unknown sslmode '{value}'", nameof(value)),
    };
}
