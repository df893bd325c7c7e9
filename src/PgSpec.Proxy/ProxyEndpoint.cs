using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace PgSpec.Proxy;

/// <summary>Where to listen or connect: HOST:PORT for TCP, or the path of a Unix-domain socket.</summary>
public sealed record ProxyEndpoint(EndPoint EndPoint, string Text)
{
    /// <summary>True for a Unix-domain socket.</summary>
    public bool IsUnix => EndPoint is UnixDomainSocketEndPoint;

    /// <summary>
    /// Parses HOST:PORT ([::1]:5432 for IPv6), or a socket path (anything starting with '/' or
    /// "unix:"). A host name is resolved when connecting.
    /// </summary>
    public static bool TryParse(string text, out ProxyEndpoint? endpoint, out string error)
    {
        endpoint = null;
        error = "";
        if (string.IsNullOrWhiteSpace(text))
        {
            error = "an endpoint is empty";
            return false;
        }

        if (text.StartsWith("unix:", StringComparison.Ordinal) || text.StartsWith('/'))
        {
            string path = text.StartsWith("unix:", StringComparison.Ordinal) ? text["unix:".Length..] : text;
            endpoint = new ProxyEndpoint(new UnixDomainSocketEndPoint(path), "unix:" + path);
            return true;
        }

        int colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port > 65535)
        {
            error = $"'{text}' is not HOST:PORT or a Unix socket path";
            return false;
        }

        string host = text[..colon].Trim('[', ']');
        endpoint = IPAddress.TryParse(host, out IPAddress? address)
            ? new ProxyEndpoint(new IPEndPoint(address, port), text)
            : new ProxyEndpoint(new DnsEndPoint(host, port), text);
        return true;
    }

    /// <summary>Parses or throws <see cref="FormatException"/>.</summary>
    public static ProxyEndpoint Parse(string text)
        => TryParse(text, out ProxyEndpoint? endpoint, out string error) ? endpoint! : throw new FormatException(error);

    /// <summary>A new stream socket of the endpoint's family.</summary>
    internal Socket CreateSocket()
    {
        if (IsUnix)
        {
            return new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        }

        var socket = EndPoint.AddressFamily == AddressFamily.Unspecified
            ? new Socket(SocketType.Stream, ProtocolType.Tcp)
            : new Socket(EndPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        socket.NoDelay = true;
        return socket;
    }

    /// <inheritdoc/>
    public override string ToString() => Text;
}
