using System.Net;

namespace PgSpec.Cli.Capture;

/// <summary>The TCP header flags that matter to reassembly.</summary>
[Flags]
internal enum TcpFlags : byte
{
    /// <summary>No flag.</summary>
    None = 0,

    /// <summary>The sender has no more data.</summary>
    Fin = 1,

    /// <summary>Synchronize sequence numbers (the connection's first segment each way).</summary>
    Syn = 2,

    /// <summary>Reset: the connection is gone.</summary>
    Rst = 4,

    /// <summary>Push.</summary>
    Psh = 8,

    /// <summary>The acknowledgment number is valid.</summary>
    Ack = 16,
}

/// <summary>
/// One TCP segment taken from a captured packet. <see cref="Payload"/> is only valid during the
/// call it is given to: whoever keeps it copies it.
/// </summary>
/// <param name="timestamp">When the packet was captured (UTC).</param>
/// <param name="source">The sender's address and port.</param>
/// <param name="destination">The receiver's address and port.</param>
/// <param name="sequence">The sequence number of the first payload byte (of the SYN when <see cref="TcpFlags.Syn"/> is set).</param>
/// <param name="flags">The header's flags.</param>
/// <param name="payload">The segment's data, as captured (may be shorter than sent when the capture cut the packet: see <see cref="Truncated"/>).</param>
/// <param name="acknowledgment">The acknowledgment number (valid with <see cref="TcpFlags.Ack"/>).</param>
/// <param name="truncated">The capture kept less of the packet than was sent (a snap length): the payload is incomplete.</param>
/// <param name="wireLength">
/// How many payload bytes the packet carried as sent (from the IP header's total length), at least
/// <paramref name="payload"/>'s length; -1 (the default) when it is the captured payload's length.
/// </param>
internal readonly ref struct TcpSegment(DateTime timestamp, IPEndPoint source, IPEndPoint destination, uint sequence, TcpFlags flags, ReadOnlySpan<byte> payload, bool truncated, int wireLength = -1, uint acknowledgment = 0)
{
    public DateTime Timestamp { get; } = timestamp;

    public IPEndPoint Source { get; } = source;

    public IPEndPoint Destination { get; } = destination;

    public uint Sequence { get; } = sequence;

    public TcpFlags Flags { get; } = flags;

    public ReadOnlySpan<byte> Payload { get; } = payload;

    public bool Truncated { get; } = truncated;

    /// <summary>The next sequence number the sender expects from the other side (valid when <see cref="TcpFlags.Ack"/> is set).</summary>
    public uint Acknowledgment { get; } = acknowledgment;

    /// <summary>
    /// How many payload bytes the segment carried as sent: more than <see cref="Payload"/>'s length
    /// by what the capture cut off.
    /// </summary>
    public int WireLength { get; } = wireLength == -1 ? payload.Length
        : wireLength >= payload.Length ? wireLength
        : throw new ArgumentOutOfRangeException(nameof(wireLength), wireLength, $"A segment's length as sent is at least its captured payload's ({payload.Length} bytes), or -1 for that length.");
}
