using System.Collections.Concurrent;
using System.Security.Cryptography;

namespace PgSpec.Proxy;

/// <summary>
/// The cancel keys the proxy shows clients, mapped to the keys of the server connections. The
/// process ID is passed through; the secret key is replaced by a random one of the same width, so
/// a client can only cancel through the proxy, and the proxy knows which server connection.
/// </summary>
internal sealed class CancelKeyMap
{
    private readonly ConcurrentDictionary<string, byte[]> _upstreamKeys = new(StringComparer.Ordinal);

    /// <summary>Issues a client key for a server key and remembers the pair; returns the client key.</summary>
    public byte[] Issue(int processId, ReadOnlySpan<byte> upstreamKey)
    {
        while (true)
        {
            byte[] key = RandomNumberGenerator.GetBytes(upstreamKey.Length);
            if (_upstreamKeys.TryAdd(Name(processId, key), upstreamKey.ToArray()))
            {
                return key;
            }
        }
    }

    /// <summary>The server key for a client's process ID and key, if the proxy issued it.</summary>
    public bool TryGetUpstreamKey(int processId, ReadOnlySpan<byte> clientKey, out byte[] upstreamKey)
        => _upstreamKeys.TryGetValue(Name(processId, clientKey), out upstreamKey!);

    /// <summary>Forgets a key when its connection ends.</summary>
    public void Remove(int processId, ReadOnlySpan<byte> clientKey) => _upstreamKeys.TryRemove(Name(processId, clientKey), out _);

    private static string Name(int processId, ReadOnlySpan<byte> key) => processId.ToString(System.Globalization.CultureInfo.InvariantCulture) + ":" + Convert.ToHexString(key);
}
