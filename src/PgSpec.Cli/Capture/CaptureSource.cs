using System.Buffers.Binary;
using System.Net;
using PacketDotNet;
using PacketDotNet.Utils;
using SharpPcap;
using SharpPcap.LibPcap;

namespace PgSpec.Cli.Capture;

/// <summary>Receives each TCP segment of a capture, in capture order.</summary>
/// <param name="segment">The segment: its payload is only valid during the call.</param>
internal delegate void TcpSegmentHandler(TcpSegment segment);

/// <summary>A capture file or interface that cannot be opened or read as asked (exit code 2).</summary>
internal sealed class CaptureException : Exception
{
    public CaptureException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}

/// <summary>What a capture held, counted while it was read.</summary>
/// <param name="Packets">The packets read.</param>
/// <param name="Bytes">The bytes captured of them (not more than their snap length).</param>
/// <param name="TcpSegments">The TCP segments given to the handler.</param>
/// <param name="Skipped">The packets that are not TCP over IPv4 or IPv6 (ARP, UDP, ICMP, other link protocols).</param>
/// <param name="Fragments">The IP fragments, skipped: reassembly of IP fragments is not done (a TCP connection rarely sends any).</param>
/// <param name="Unparsed">The packets whose headers could not be read: malformed, or cut short by the capture's snap length before the end of the TCP header.</param>
/// <param name="ReadError">Why reading stopped before the end, if it did: libpcap's message, e.g. for a file cut short in the middle of a packet.</param>
internal sealed record CaptureCounts(long Packets, long Bytes, long TcpSegments, long Skipped, long Fragments, long Unparsed, string? ReadError);

/// <summary>
/// Reads packets from a capture file (pcap or pcapng, or standard input) or a live interface
/// through libpcap (SharpPcap), and gives the TCP segments they carry to a handler.
/// </summary>
/// <remarks>
/// <para>
/// The link header is read here, for each supported link type alike: Ethernet (with 802.1Q and
/// 802.1ad VLAN tags, also stacked), Linux cooked capture v1 and v2 (<c>tcpdump -i any</c>), BSD
/// loopback (<c>DLT_NULL</c> in the byte order of the machine that wrote it, and <c>DLT_LOOP</c>), and
/// raw IP (<c>LINKTYPE_RAW</c>, <c>LINKTYPE_IPV4</c>, <c>LINKTYPE_IPV6</c>). These are fixed small
/// headers; PacketDotNet reads <c>DLT_NULL</c> in little-endian order only and knows neither
/// <c>DLT_LOOP</c> nor the IPv4 and IPv6 link types. The IP and TCP headers are read by PacketDotNet.
/// </para>
/// <para>
/// IP fragments are counted (<see cref="CaptureCounts.Fragments"/>) and skipped, never put
/// together. A packet that cannot be read is counted and skipped, never thrown. Each packet's IP
/// bytes are copied into one buffer that is reused, so that captures of any size are read in flat
/// memory.
/// </para>
/// </remarks>
internal sealed class CaptureSource : IDisposable
{
    private const int SnapLength = 262144;

    private const int LinkTypeLoop = 108;

    private const int LinkTypeLinuxSll2 = 276;

    private const int LinkTypeIPv4 = 228;

    private const int LinkTypeIPv6 = 229;

    private readonly PcapDevice _device;

    private readonly string _name;

    private readonly int _linkType;

    private readonly EndpointCache _endpoints = new();

    private byte[] _buffer = new byte[2048];

    // The segment the last packet read carries (when it is one), in _buffer.
    private IPEndPoint? _source;

    private IPEndPoint? _destination;

    private uint _sequence;

    private TcpFlags _flags;

    private int _payloadStart;

    private int _payloadLength;

    private bool _truncated;
    private int _wireLength;
    private uint _acknowledgment;

    private CaptureSource(PcapDevice device, string name, int linkType)
    {
        _device = device;
        _name = name;
        _linkType = linkType;
        LinkType = LinkTypeName(linkType) ?? throw new CaptureException($"{name} has link type {linkType}, which is not supported: only Ethernet, Linux cooked capture (v1 and v2), BSD loopback and raw IP are");
    }

    /// <summary>The capture's link type in words, e.g. "Ethernet" or "Linux cooked (SLL2)".</summary>
    public string LinkType { get; }

    /// <summary>Opens a pcap or pcapng file; "-" is standard input.</summary>
    /// <exception cref="CaptureException">The file cannot be read, is not a capture, or has a link type not supported.</exception>
    public static CaptureSource OpenFile(string path)
    {
        string name = path == "-" ? "standard input" : path;
        if (path != "-" && !File.Exists(path))
        {
            throw new CaptureException(Directory.Exists(path) ? $"{name} is a directory, not a capture file" : $"{name} does not exist");
        }

        // libpcap's pcap_open_offline reads standard input for "-", and SharpPcap gives it the name as it is.
        var device = new CaptureFileReaderDevice(path);
        try
        {
            device.Open(new DeviceConfiguration { TimestampResolution = TimestampResolution.Nanosecond });
        }
        catch (Exception e) when (e is PcapException or DllNotFoundException or EntryPointNotFoundException or PlatformNotSupportedException)
        {
            device.Dispose();
            string reason = Reason(e);

            // libpcap says "<path>: <strerror>" when the file cannot be opened, and other words when its content is not a capture.
            throw reason.StartsWith(path + ": ", StringComparison.Ordinal)
                ? new CaptureException($"cannot read {name}: {reason[(path.Length + 2)..]}", e)
                : new CaptureException($"{name} is not a pcap or pcapng file: {reason}", e);
        }

        return Create(device, name);
    }

    /// <summary>
    /// Opens a network interface for live capture (not promiscuous, snap length 262144, immediate
    /// mode, a kernel buffer of 32 MB), with a BPF filter if given; when the interface's link type
    /// cannot take <paramref name="bpfFilter"/> (VLAN tags on Linux cooked capture, say),
    /// <paramref name="fallbackFilter"/> if given, or none if that cannot be taken either.
    /// </summary>
    /// <exception cref="CaptureException">The interface does not exist, cannot be opened (permission), or the filter is not valid.</exception>
    public static CaptureSource OpenInterface(string name, string? bpfFilter, string? fallbackFilter = null)
    {
        PcapInterface? found = null;
        try
        {
            foreach (var candidate in PcapInterface.GetAllPcapInterfaces())
            {
                if (candidate.Name == name)
                {
                    found = candidate;
                    break;
                }
            }
        }
        catch (Exception e) when (e is PcapException or DllNotFoundException or EntryPointNotFoundException)
        {
            throw new CaptureException($"cannot list the network interfaces: {Reason(e)}", e);
        }

        if (found is null)
        {
            throw new CaptureException($"there is no network interface named '{name}'");
        }

        var device = new LibPcapLiveDevice(found);
        var configuration = new DeviceConfiguration
        {
            Mode = DeviceModes.None,
            Snaplen = SnapLength,
            Immediate = true,

            // In immediate mode libpcap's ring of the default 2 MB holds only 8 frames of the snap
            // length; on "any" each loopback packet takes two, and the kernel drops packets when
            // a few come at once.
            BufferSize = 32 * 1024 * 1024,
            ReadTimeout = 100,
            TimestampResolution = TimestampResolution.Nanosecond,
        };

        // Immediate mode and nanosecond time stamps are wishes: without them the capture still works.
        configuration.ConfigurationFailed += (_, _) => { };
        try
        {
            device.Open(configuration);
            if (!string.IsNullOrEmpty(bpfFilter))
            {
                try
                {
                    device.Filter = bpfFilter;
                }
                catch (PcapException) when (fallbackFilter is not null)
                {
                    try
                    {
                        device.Filter = fallbackFilter;
                    }
                    catch (PcapException)
                    {
                        // A link type libpcap cannot filter TCP on: every packet comes, and is
                        // sorted out after it is read.
                    }
                }
            }
        }
        catch (Exception e) when (e is PcapException or DllNotFoundException or EntryPointNotFoundException or PlatformNotSupportedException)
        {
            device.Dispose();
            string what = e is PcapException { Error: PcapError.PermissionDenied }
                ? "permission denied (capturing needs root or the CAP_NET_RAW capability)"
                : Reason(e);
            throw new CaptureException($"cannot capture on interface '{name}': {what}", e);
        }

        return Create(device, $"interface '{name}'");
    }

    /// <summary>
    /// Reads to the end of the file, or until <paramref name="cancellationToken"/> is cancelled
    /// (a live capture notices it within half a second, packets or none), calling
    /// <paramref name="onSegment"/> for each TCP segment in capture order. Segments of one
    /// connection share their <see cref="IPEndPoint"/> objects: they are never to be changed.
    /// </summary>
    public CaptureCounts Run(TcpSegmentHandler onSegment, CancellationToken cancellationToken)
    {
        long packets = 0, bytes = 0, segments = 0, skipped = 0, fragments = 0, unparsed = 0;
        string? readError = null;

        // A live capture waits in libpcap for the next packet: pcap_breakloop wakes it (libpcap
        // 1.10 and later), so that a stop is seen at once even when no packet comes.
        using CancellationTokenRegistration wake = _device is LibPcapLiveDevice ? cancellationToken.Register(BreakLoop) : default;
        while (!cancellationToken.IsCancellationRequested)
        {
            GetPacketStatus status;
            PacketCapture capture;
            try
            {
                // On a live interface this waits at most half a second (SharpPcap polls the
                // descriptor first), so that cancellation is seen.
                status = _device.GetNextPacket(out capture);
            }
            catch (PcapException e)
            {
                readError = Reason(e);
                break;
            }

            if (status == GetPacketStatus.ReadTimeout)
            {
                continue;
            }

            if (status == GetPacketStatus.NoRemainingPackets)
            {
                break;
            }

            if (cancellationToken.IsCancellationRequested)
            {
                break;
            }

            if (status != GetPacketStatus.PacketRead)
            {
                // libpcap's message, e.g. "truncated dump file; tried to read 100 captured bytes, only got 40".
                readError = _device.LastError;
                if (string.IsNullOrEmpty(readError))
                {
                    readError = "libpcap could not read the next packet";
                }

                break;
            }

            packets++;
            var header = capture.Header;
            var data = capture.Data;
            bytes += data.Length;
            uint wireLength = header is PcapHeader pcapHeader ? pcapHeader.PacketLength : (uint)data.Length;
            switch (Read(data, wireLength > (uint)data.Length))
            {
                case Outcome.Segment:
                    segments++;

                    // Outside the reading of the packet, whose exceptions are the packet's: the handler's are the caller's.
                    onSegment(new TcpSegment(header.Timeval.Date, _source!, _destination!, _sequence, _flags, _buffer.AsSpan(_payloadStart, _payloadLength), _truncated, _wireLength, _acknowledgment));
                    break;
                case Outcome.Skipped:
                    skipped++;
                    break;
                case Outcome.Fragment:
                    fragments++;
                    break;
                default:
                    unparsed++;
                    break;
            }
        }

        return new CaptureCounts(packets, bytes, segments, skipped, fragments, unparsed, readError);
    }

    /// <summary>Closes the file or interface.</summary>
    public void Dispose() => _device.Dispose();

    private unsafe void BreakLoop()
    {
        if (s_breakLoop.Value is not 0 and var function)
        {
            bool added = false;
            try
            {
                _device.Handle.DangerousAddRef(ref added);
                ((delegate* unmanaged<nint, void>)function)(_device.Handle.DangerousGetHandle());
            }
            catch (ObjectDisposedException)
            {
                // The capture ended meanwhile.
            }
            finally
            {
                if (added)
                {
                    _device.Handle.DangerousRelease();
                }
            }
        }
    }

    /// <summary>libpcap's pcap_breakloop, from the library SharpPcap uses (0 when it cannot be found).</summary>
    private static readonly Lazy<nint> s_breakLoop = new(() =>
    {
        foreach (string name in new[] { "libpcap.so.1", "libpcap.so.0.8", "libpcap.so", "libpcap.dylib", "wpcap" })
        {
            if (System.Runtime.InteropServices.NativeLibrary.TryLoad(name, out nint library)
                && System.Runtime.InteropServices.NativeLibrary.TryGetExport(library, "pcap_breakloop", out nint function))
            {
                return function;
            }
        }

        return 0;
    });

    private static CaptureSource Create(PcapDevice device, string name)
    {
        try
        {
            return new CaptureSource(device, name, LibPcapDataLink(device));
        }
        catch
        {
            device.Dispose();
            throw;
        }
    }

    private static int LibPcapDataLink(PcapDevice device) => (int)device.LinkType;

    private static string? LinkTypeName(int linkType) => linkType switch
    {
        (int)LinkLayers.Ethernet => "Ethernet",
        (int)LinkLayers.LinuxSll => "Linux cooked (SLL)",
        LinkTypeLinuxSll2 => "Linux cooked (SLL2)",
        (int)LinkLayers.Null => "BSD loopback (null)",
        LinkTypeLoop => "BSD loopback (loop)",
        (int)LinkLayers.Raw or (int)LinkLayers.RawLegacy => "raw IP",
        LinkTypeIPv4 => "raw IPv4",
        LinkTypeIPv6 => "raw IPv6",
        _ => null,
    };

    private static string Reason(Exception e)
    {
        string message = e.Message;
        const string Prefix = "Unable to open offline adapter: ";
        if (message.StartsWith(Prefix, StringComparison.Ordinal))
        {
            message = message[Prefix.Length..];
        }

        return e is DllNotFoundException or EntryPointNotFoundException ? "libpcap is not installed (" + message + ")" : message;
    }

    private enum Outcome
    {
        Segment,
        Skipped,
        Fragment,
        Unparsed,
    }

    /// <summary>The IP version a link header announces.</summary>
    private enum Network
    {
        None,
        IPv4,
        IPv6,
        ByVersion,
    }

    private Outcome Read(ReadOnlySpan<byte> frame, bool cutShort)
    {
        if (!LinkPayload(frame, out int offset, out var network))
        {
            return Outcome.Unparsed;
        }

        var ip = frame[offset..];
        if (ip.Length == 0)
        {
            return Outcome.Unparsed;
        }

        int version = ip[0] >> 4;
        if (network == Network.ByVersion)
        {
            network = version switch
            {
                4 => Network.IPv4,
                6 => Network.IPv6,
                _ => Network.None,
            };
        }

        if (network == Network.None)
        {
            return Outcome.Skipped;
        }

        if ((network == Network.IPv4 && version != 4) || (network == Network.IPv6 && version != 6))
        {
            return Outcome.Unparsed;
        }

        if (ip.Length > _buffer.Length)
        {
            _buffer = new byte[Math.Max(ip.Length, _buffer.Length * 2)];
        }

        ip.CopyTo(_buffer);
        try
        {
            return network == Network.IPv4 ? ReadIPv4(ip.Length, cutShort) : ReadIPv6(ip.Length, cutShort);
        }
        catch (Exception e) when (e is ArgumentException or IndexOutOfRangeException or InvalidOperationException or InvalidCastException or OverflowException)
        {
            // PacketDotNet throws these for headers it cannot read.
            return Outcome.Unparsed;
        }
    }

    private Outcome ReadIPv4(int length, bool cutShort)
    {
        if (length < 20 || (_buffer[0] & 0x0F) < 5 || length < (_buffer[0] & 0x0F) * 4)
        {
            return Outcome.Unparsed;
        }

        var packet = new IPv4Packet(new ByteArraySegment(_buffer, 0, length, length));
        if (packet.FragmentOffset != 0 || (packet.FragmentFlags & 1) != 0)
        {
            return Outcome.Fragment;
        }

        if (packet.Protocol != ProtocolType.Tcp)
        {
            return Outcome.Skipped;
        }

        // A total length of 0 is a segment that TCP segmentation offload had yet to cut: PacketDotNet takes what was captured.
        return Segment(packet, packet.HeaderLength * 4, packet.TotalLength, length, cutShort);
    }

    private Outcome ReadIPv6(int length, bool cutShort)
    {
        if (length < 40)
        {
            return Outcome.Unparsed;
        }

        var packet = new IPv6Packet(new ByteArraySegment(_buffer, 0, length, length));
        var extensions = packet.ExtensionHeaders;
        for (int i = 0; i < extensions.Count; i++)
        {
            if (extensions[i] is IPv6FragmentationExtensionHeader)
            {
                return Outcome.Fragment;
            }
        }

        if (packet.Protocol != ProtocolType.Tcp)
        {
            return Outcome.Skipped;
        }

        if (packet.PayloadLength == 0)
        {
            // A jumbogram (its length in a hop-by-hop option), or no TCP header at all.
            return Outcome.Unparsed;
        }

        return Segment(packet, 40 + packet.ExtensionHeadersLength, 40 + packet.PayloadLength, length, cutShort);
    }

    private Outcome Segment(IPPacket packet, int tcpStart, int ipLength, int captured, bool cutShort)
    {
        if (tcpStart + 20 > captured || tcpStart + 20 > ipLength || packet.PayloadPacket is not TcpPacket tcp)
        {
            return Outcome.Unparsed;
        }

        int payloadStart = tcpStart + (tcp.DataOffset * 4);
        if (tcp.DataOffset < 5 || payloadStart > captured || payloadStart > ipLength)
        {
            return Outcome.Unparsed;
        }

        // The IP length bounds the payload (Ethernet pads short frames); the capture may have kept less of it.
        int payloadEnd = Math.Min(ipLength, captured);
        var flags = TcpFlags.None;
        if (tcp.Finished)
        {
            flags |= TcpFlags.Fin;
        }

        if (tcp.Synchronize)
        {
            flags |= TcpFlags.Syn;
        }

        if (tcp.Reset)
        {
            flags |= TcpFlags.Rst;
        }

        if (tcp.Push)
        {
            flags |= TcpFlags.Psh;
        }

        if (tcp.Acknowledgment)
        {
            flags |= TcpFlags.Ack;
        }

        bool v4 = packet is IPv4Packet;
        var source = _endpoints.Get(_buffer.AsSpan(v4 ? 12 : 8, v4 ? 4 : 16), tcp.SourcePort);
        var destination = _endpoints.Get(_buffer.AsSpan(v4 ? 16 : 24, v4 ? 4 : 16), tcp.DestinationPort);
        _source = source;
        _destination = destination;
        _sequence = tcp.SequenceNumber;
        _flags = flags;
        _payloadStart = payloadStart;
        _payloadLength = payloadEnd - payloadStart;
        _truncated = cutShort || payloadEnd < ipLength;
        _wireLength = ipLength - payloadStart;
        _acknowledgment = tcp.AcknowledgmentNumber;
        return Outcome.Segment;
    }

    /// <summary>Finds where the link header ends and what network protocol follows it.</summary>
    /// <returns>False when the link header itself is cut short.</returns>
    private bool LinkPayload(ReadOnlySpan<byte> frame, out int offset, out Network network)
    {
        offset = 0;
        network = Network.None;
        switch (_linkType)
        {
            case (int)LinkLayers.Ethernet:
                offset = 14;
                return EtherType(frame, 12, ref offset, out network);
            case (int)LinkLayers.LinuxSll:
                offset = 16;
                return EtherType(frame, 14, ref offset, out network);
            case LinkTypeLinuxSll2:
                offset = 20;
                return EtherType(frame, 0, ref offset, out network);
            case (int)LinkLayers.Null:
            {
                offset = 4;
                if (frame.Length < 4)
                {
                    return false;
                }

                // The address family in the byte order of the machine that wrote the capture.
                uint family = BinaryPrimitives.ReadUInt32LittleEndian(frame);
                if (family > 0xFFFF)
                {
                    family = BinaryPrimitives.ReverseEndianness(family);
                }

                network = BsdFamily(family);
                return true;
            }

            case LinkTypeLoop:
                offset = 4;
                if (frame.Length < 4)
                {
                    return false;
                }

                network = BsdFamily(BinaryPrimitives.ReadUInt32BigEndian(frame));
                return true;
            case LinkTypeIPv4:
                network = Network.IPv4;
                return true;
            case LinkTypeIPv6:
                network = Network.IPv6;
                return true;
            default:
                // Raw IP: the version nibble tells.
                network = Network.ByVersion;
                return true;
        }
    }

    /// <summary>Reads an EtherType at <paramref name="position"/>, and the VLAN tags that follow it (802.1Q, 802.1ad, stacked).</summary>
    private static bool EtherType(ReadOnlySpan<byte> frame, int position, ref int offset, out Network network)
    {
        network = Network.None;
        if (frame.Length < offset)
        {
            return false;
        }

        ushort type = BinaryPrimitives.ReadUInt16BigEndian(frame[position..]);
        while (type is 0x8100 or 0x88A8 or 0x9100)
        {
            // A tag: two bytes of priority and VLAN id, then the next EtherType.
            if (frame.Length < offset + 4)
            {
                return false;
            }

            type = BinaryPrimitives.ReadUInt16BigEndian(frame[(offset + 2)..]);
            offset += 4;
        }

        network = type switch
        {
            0x0800 => Network.IPv4,
            0x86DD => Network.IPv6,
            _ => Network.None,
        };
        return true;
    }

    /// <summary>The BSD address families: AF_INET is 2 everywhere; AF_INET6 is 24 (NetBSD, OpenBSD), 28 (FreeBSD), 30 (macOS), 10 (Linux).</summary>
    private static Network BsdFamily(uint family) => family switch
    {
        2 => Network.IPv4,
        10 or 24 or 28 or 30 => Network.IPv6,
        _ => Network.None,
    };

    /// <summary>
    /// The endpoints of the last few segments, so that the segments of a connection share theirs
    /// instead of allocating two for each packet.
    /// </summary>
    private sealed class EndpointCache
    {
        private const int Size = 16;

        private readonly byte[][] _addresses = new byte[Size][];

        private readonly IPEndPoint[] _endpoints = new IPEndPoint[Size];

        private int _next;

        public IPEndPoint Get(ReadOnlySpan<byte> address, ushort port)
        {
            for (int i = 0; i < Size; i++)
            {
                var endpoint = _endpoints[i];
                if (endpoint is not null && endpoint.Port == port && address.SequenceEqual(_addresses[i]))
                {
                    return endpoint;
                }
            }

            byte[] bytes = address.ToArray();
            var created = new IPEndPoint(new IPAddress(bytes), port);
            _addresses[_next] = bytes;
            _endpoints[_next] = created;
            _next = (_next + 1) % Size;
            return created;
        }
    }
}
