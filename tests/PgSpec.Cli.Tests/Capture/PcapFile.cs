using System.Buffers.Binary;
using System.Net;

namespace PgSpec.Cli.Tests.Capture;

/// <summary>
/// A classic pcap file (as tcpdump writes it), read whole, whose packets can be written again in
/// another order, some twice, some left out, some changed: captures that lost, repeated or
/// reordered TCP segments, made from real ones. Only what rewriting needs is read of each packet:
/// the TCP header of TCP over IPv4 or IPv6 on Ethernet or Linux cooked capture (v1, v2).
/// </summary>
internal sealed class PcapFile
{
    private const int LinkEthernet = 1;
    private const int LinkLinuxSll = 113;
    private const int LinkLinuxSll2 = 276;

    private readonly byte[] _header;
    private readonly bool _bigEndian;

    private PcapFile(byte[] header, bool bigEndian, int linkType, List<PcapPacket> packets)
    {
        _header = header;
        _bigEndian = bigEndian;
        LinkType = linkType;
        Packets = packets;
    }

    public int LinkType { get; }

    /// <summary>The packets in the file's order.</summary>
    public List<PcapPacket> Packets { get; }

    public static PcapFile Read(string path)
    {
        byte[] file = File.ReadAllBytes(path);
        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(file);
        bool bigEndian = magic is 0xD4C3B2A1 or 0x4D3CB2A1;
        Assert.True(bigEndian || magic is 0xA1B2C3D4 or 0xA1B23C4D, $"{path} is not a classic pcap file (magic {magic:x8})");
        uint Read32(int offset) => bigEndian ? BinaryPrimitives.ReadUInt32BigEndian(file.AsSpan(offset)) : BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(offset));

        int linkType = (int)(Read32(20) & 0xFFFF);
        Assert.True(linkType is LinkEthernet or LinkLinuxSll or LinkLinuxSll2, $"link type {linkType} is not one the rewriter reads");
        var packets = new List<PcapPacket>();
        for (int offset = 24; offset < file.Length;)
        {
            int length = (int)Read32(offset + 8);
            byte[] record = file[offset..(offset + 16 + length)];
            packets.Add(new PcapPacket(packets.Count, record, Tcp(record.AsSpan(16), linkType)));
            offset += 16 + length;
        }

        return new PcapFile(file[..24], bigEndian, linkType, packets);
    }

    /// <summary>Writes a pcap file of these packets, in this order, with this file's header.</summary>
    public void Write(string path, IEnumerable<PcapPacket> packets)
    {
        using var output = File.Create(path);
        output.Write(_header);
        foreach (PcapPacket packet in packets)
        {
            output.Write(packet.Record);
        }
    }

    /// <summary>
    /// A copy of a TCP packet that carries <paramref name="payload"/> from sequence number
    /// <paramref name="sequence"/> instead of its own data (as a sender that repacketizes a
    /// retransmission): the lengths of the record and of the IP header follow; the checksums are
    /// not recomputed (no reader here checks them).
    /// </summary>
    public PcapPacket WithPayload(PcapPacket packet, uint sequence, ReadOnlySpan<byte> payload)
    {
        TcpHeader tcp = packet.Tcp ?? throw new ArgumentException("not a TCP packet", nameof(packet));
        int headers = tcp.PayloadStart;
        byte[] record = new byte[16 + headers + payload.Length];
        packet.Record.AsSpan(0, 16 + headers).CopyTo(record);
        payload.CopyTo(record.AsSpan(16 + headers));
        void Write32(int offset, uint value)
        {
            if (_bigEndian)
            {
                BinaryPrimitives.WriteUInt32BigEndian(record.AsSpan(offset), value);
            }
            else
            {
                BinaryPrimitives.WriteUInt32LittleEndian(record.AsSpan(offset), value);
            }
        }

        Write32(8, (uint)(headers + payload.Length));
        Write32(12, (uint)(headers + payload.Length));
        Span<byte> ip = record.AsSpan(16 + tcp.IPStart);
        if (ip[0] >> 4 == 4)
        {
            BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(headers - tcp.IPStart + payload.Length));
        }
        else
        {
            BinaryPrimitives.WriteUInt16BigEndian(ip[4..], (ushort)(headers - tcp.IPStart - 40 + payload.Length));
        }

        BinaryPrimitives.WriteUInt32BigEndian(record.AsSpan(16 + tcp.TcpStart + 4), sequence);
        return new PcapPacket(-1, record, Tcp(record.AsSpan(16), LinkType));
    }

    private static TcpHeader? Tcp(ReadOnlySpan<byte> frame, int linkType)
    {
        (int ipStart, int etherType) = linkType switch
        {
            LinkEthernet => (14, BinaryPrimitives.ReadUInt16BigEndian(frame[12..])),
            LinkLinuxSll => (16, BinaryPrimitives.ReadUInt16BigEndian(frame[14..])),
            _ => (20, BinaryPrimitives.ReadUInt16BigEndian(frame)),
        };
        ReadOnlySpan<byte> ip = frame[ipStart..];
        int tcpStart;
        int end;
        IPAddress source, destination;
        if (etherType == 0x0800 && ip[9] == 6)
        {
            tcpStart = ipStart + ((ip[0] & 0x0F) * 4);
            end = ipStart + BinaryPrimitives.ReadUInt16BigEndian(ip[2..]);
            source = new IPAddress(ip[12..16]);
            destination = new IPAddress(ip[16..20]);
        }
        else if (etherType == 0x86DD && ip[6] == 6)
        {
            tcpStart = ipStart + 40;
            end = tcpStart + BinaryPrimitives.ReadUInt16BigEndian(ip[4..]);
            source = new IPAddress(ip[8..24]);
            destination = new IPAddress(ip[24..40]);
        }
        else
        {
            return null;
        }

        ReadOnlySpan<byte> tcp = frame[tcpStart..];
        int payloadStart = tcpStart + ((tcp[12] >> 4) * 4);
        return new TcpHeader(
            new IPEndPoint(source, BinaryPrimitives.ReadUInt16BigEndian(tcp)),
            new IPEndPoint(destination, BinaryPrimitives.ReadUInt16BigEndian(tcp[2..])),
            BinaryPrimitives.ReadUInt32BigEndian(tcp[4..]),
            BinaryPrimitives.ReadUInt32BigEndian(tcp[8..]),
            tcp[13],
            ipStart,
            tcpStart,
            payloadStart,
            frame[payloadStart..Math.Min(end, frame.Length)].ToArray());
    }
}

/// <summary>One packet: its pcap record (header and bytes) and its TCP header, if it is TCP.</summary>
/// <param name="Index">Its place in the file it was read from (-1: made by the rewriter).</param>
internal sealed record PcapPacket(int Index, byte[] Record, TcpHeader? Tcp);

/// <summary>What the rewriter reads of a TCP packet; offsets are from the start of the frame.</summary>
internal sealed record TcpHeader(IPEndPoint Source, IPEndPoint Destination, uint Sequence, uint Acknowledgment, byte Flags, int IPStart, int TcpStart, int PayloadStart, byte[] Payload)
{
    public bool Syn => (Flags & 0x02) != 0;

    public bool Fin => (Flags & 0x01) != 0;

    public bool Ack => (Flags & 0x10) != 0;

    /// <summary>The connection, the same both ways: its two endpoints in a fixed order.</summary>
    public string Connection => string.CompareOrdinal(Source.ToString(), Destination.ToString()) < 0 ? $"{Source} {Destination}" : $"{Destination} {Source}";

    /// <summary>Whether this packet acknowledges a byte at or after <paramref name="sequence"/> of the other direction.</summary>
    public bool Acknowledges(uint sequence) => Ack && (int)(Acknowledgment - sequence) > 0;
}
