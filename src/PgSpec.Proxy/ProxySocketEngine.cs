using System.Net.Sockets;

namespace PgSpec.Proxy;

/// <summary>Which sockets the proxy uses.</summary>
public enum ProxySocketEngine
{
    /// <summary>epoll on Linux, .NET's sockets elsewhere.</summary>
    Auto,

    /// <summary>
    /// The proxy's own epoll loop (Linux): sockets registered once, edge-triggered; a read that
    /// returns less than asked for means the socket is drained, so no read is made to learn that
    /// nothing is there (.NET's sockets make one before every wait), and the relay runs on the
    /// event thread. One receive and one send per message, as pgbouncer makes.
    /// </summary>
    Epoll,

    /// <summary>.NET's <see cref="Socket"/> (every platform).</summary>
    DotNet,
}
