using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using PgSpec.Cli.Capture;
using PgSpec.Cli.Tests.RealServer;

namespace PgSpec.Cli.Tests.Capture;

public class CaptureSourceTests
{
    private static readonly byte[] s_clientBytes = Bytes("client says hello ", 150);

    private static readonly byte[] s_serverBytes = Bytes("server answers ", 300);

    [Fact]
    public void OpenFile_TcpdumpOnLoopback_GivesEthernetSegmentsOfBothDirections()
    {
        using var dir = new TempDirectory();
        var exchange = Exchange.Capture(dir, "lo.pcap", IPAddress.Loopback, "-i", "lo");

        using var source = CaptureSource.OpenFile(exchange.File);
        Assert.Equal("Ethernet", source.LinkType);
        var (segments, counts) = ReadAll(source);
        exchange.Check(segments);
        Assert.Equal(counts.Packets, counts.TcpSegments);
        Assert.Equal(0, counts.Unparsed);
        Assert.Null(counts.ReadError);
    }

    [Fact]
    public void OpenFile_TcpdumpOnAny_GivesLinuxCookedV2Segments()
    {
        using var dir = new TempDirectory();
        var exchange = Exchange.Capture(dir, "any.pcap", IPAddress.Loopback, "-i", "any");

        using var source = CaptureSource.OpenFile(exchange.File);
        Assert.Equal("Linux cooked (SLL2)", source.LinkType);
        var (segments, counts) = ReadAll(source);
        exchange.Check(segments);
        Assert.Equal(0, counts.Unparsed);
    }

    [Fact]
    public void OpenFile_TcpdumpOnAnyAsLinuxCookedV1_GivesSegments()
    {
        using var dir = new TempDirectory();
        var exchange = Exchange.Capture(dir, "sll.pcap", IPAddress.Loopback, "-i", "any", "-y", "LINUX_SLL");

        using var source = CaptureSource.OpenFile(exchange.File);
        Assert.Equal("Linux cooked (SLL)", source.LinkType);
        var (segments, counts) = ReadAll(source);
        exchange.Check(segments);
        Assert.Equal(0, counts.Unparsed);
    }

    [Fact]
    public void OpenFile_TcpdumpOfIPv6_GivesSegmentsWithIPv6Endpoints()
    {
        using var dir = new TempDirectory();
        var exchange = Exchange.Capture(dir, "v6.pcap", IPAddress.IPv6Loopback, "-i", "lo");

        using var source = CaptureSource.OpenFile(exchange.File);
        var (segments, _) = ReadAll(source);
        exchange.Check(segments);
        Assert.All(segments, s => Assert.Equal(AddressFamily.InterNetworkV6, s.Source.AddressFamily));
    }

    [Fact]
    public void OpenFile_Pcapng_GivesTheSameSegmentsAsPcap()
    {
        using var dir = new TempDirectory();
        var exchange = Exchange.Capture(dir, "lo.pcap", IPAddress.Loopback, "-i", "lo");
        string pcapng = Path.Combine(dir.Path, "lo.pcapng");
        var editcap = ExternalProcess.Run("editcap", ["-F", "pcapng", exchange.File, pcapng]);
        Assert.True(editcap.ExitCode == 0, editcap.ToString());
        Assert.NotEqual(0xA1B2C3D4u, BinaryPrimitives.ReadUInt32LittleEndian(File.ReadAllBytes(pcapng)));

        using var source = CaptureSource.OpenFile(pcapng);
        Assert.Equal("Ethernet", source.LinkType);
        var (segments, _) = ReadAll(source);
        exchange.Check(segments);
        using var pcap = CaptureSource.OpenFile(exchange.File);
        var (fromPcap, _) = ReadAll(pcap);
        Assert.Equal(fromPcap.Select(s => (s.Sequence, s.Flags, s.Payload.Length, s.Timestamp)), segments.Select(s => (s.Sequence, s.Flags, s.Payload.Length, s.Timestamp)));
    }

    [Fact]
    public void OpenFile_SnapLengthShorterThanPackets_MarksTheSegmentsTruncated()
    {
        using var dir = new TempDirectory();
        var exchange = Exchange.Capture(dir, "snap.pcap", IPAddress.Loopback, "-i", "lo", "-s", "200");

        using var source = CaptureSource.OpenFile(exchange.File);
        var (segments, counts) = ReadAll(source);
        var data = segments.Where(s => s.Payload.Length > 0).ToList();
        Assert.NotEmpty(data);
        Assert.All(data, s => Assert.True(s.Truncated));
        Assert.All(data, s => Assert.InRange(s.Payload.Length, 1, 200 - 14 - 20 - 20));
        Assert.All(segments.Where(s => s.Payload.Length == 0), s => Assert.False(s.Truncated));
        Assert.Equal(counts.Packets, counts.TcpSegments);
    }

    [Fact]
    public async Task OpenInterface_Loopback_GivesSegmentsUntilCancelled()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        using var source = CaptureSource.OpenInterface("lo", $"tcp port {port}");
        Assert.Equal("Ethernet", source.LinkType);
        using var cancel = new CancellationTokenSource();
        var segments = new List<Captured>();
        var run = Task.Factory.StartNew(() => source.Run(s => Record(segments, s), cancel.Token), TaskCreationOptions.LongRunning);

        var exchange = Exchange.Run(listener);
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(10))
        {
            lock (segments)
            {
                if (segments.Count(s => (s.Flags & TcpFlags.Fin) != 0) >= 2)
                {
                    break;
                }
            }

            await Task.Delay(20);
        }

        // Cancelled, it stops without waiting for another packet (none comes): within a bound far
        // above what it takes, so that a wait for a packet fails the test instead of hanging it.
        cancel.Cancel();
        var counts = await run.WaitAsync(TimeSpan.FromSeconds(20));
        lock (segments)
        {
            exchange.Check(segments);
        }

        Assert.Equal(counts.TcpSegments, segments.Count);
    }

    [Fact]
    public async Task Run_LiveCaptureWithoutPackets_StopsPromptlyWhenCancelled()
    {
        using var source = CaptureSource.OpenInterface("lo", "tcp port 1");
        using var cancel = new CancellationTokenSource();
        var run = Task.Factory.StartNew(() => source.Run(_ => { }, cancel.Token), TaskCreationOptions.LongRunning);
        await Task.Delay(300);
        Assert.False(run.IsCompleted);
        cancel.Cancel();
        var counts = await run.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(0, counts.Packets);
    }

    [Fact]
    public void OpenInterface_NoSuchInterface_ThrowsCaptureExceptionNamingIt()
    {
        var e = Assert.Throws<CaptureException>(() => CaptureSource.OpenInterface("nosuchif0", null));
        Assert.Contains("nosuchif0", e.Message);
    }

    [Fact]
    public void OpenInterface_BadFilter_ThrowsCaptureException()
    {
        var e = Assert.Throws<CaptureException>(() => CaptureSource.OpenInterface("lo", "tcp port"));
        Assert.Contains("'lo'", e.Message);
    }

    [Fact]
    public void OpenFile_MissingFile_ThrowsCaptureExceptionNamingIt()
    {
        using var dir = new TempDirectory();
        string path = Path.Combine(dir.Path, "missing.pcap");
        var e = Assert.Throws<CaptureException>(() => CaptureSource.OpenFile(path));
        Assert.Equal(path + " does not exist", e.Message);

        e = Assert.Throws<CaptureException>(() => CaptureSource.OpenFile(dir.Path));
        Assert.Equal(dir.Path + " is a directory, not a capture file", e.Message);
    }

    [Fact]
    public void OpenFile_NotACapture_ThrowsCaptureExceptionNamingIt()
    {
        using var dir = new TempDirectory();
        string path = dir.Write("notes.pcap", Encoding.ASCII.GetBytes("these are notes, not packets\n"));
        var e = Assert.Throws<CaptureException>(() => CaptureSource.OpenFile(path));
        Assert.StartsWith(path + " is not a pcap or pcapng file: ", e.Message);

        string empty = dir.Write("empty.pcap", []);
        e = Assert.Throws<CaptureException>(() => CaptureSource.OpenFile(empty));
        Assert.Contains(empty, e.Message);
    }

    [Fact]
    public void OpenFile_UnsupportedLinkType_ThrowsCaptureExceptionNamingIt()
    {
        using var dir = new TempDirectory();
        string path = dir.Write("wifi.pcap", PcapFile(105, []));
        var e = Assert.Throws<CaptureException>(() => CaptureSource.OpenFile(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("105", e.Message);
    }

    [Fact]
    public void Run_FileCutShortInARecord_GivesTheWholePacketsAndSaysWhy()
    {
        byte[] ip = Ipv4Tcp(1000, "abc"u8);
        byte[] file = PcapFile(101, [ip, ip, ip]);
        using var dir = new TempDirectory();
        string path = dir.Write("cut.pcap", file[..^10]);

        using var source = CaptureSource.OpenFile(path);
        var (segments, counts) = ReadAll(source);
        Assert.Equal(2, segments.Count);
        Assert.Equal(2, counts.Packets);
        Assert.NotNull(counts.ReadError);
        Assert.Contains("truncated", counts.ReadError);
    }

    [Theory]
    [InlineData(0, false, 4)]
    [InlineData(0, true, 4)]
    [InlineData(0, false, 6)]
    [InlineData(0, true, 6)]
    [InlineData(108, true, 4)]
    [InlineData(108, true, 6)]
    [InlineData(101, false, 4)]
    [InlineData(101, false, 6)]
    [InlineData(228, false, 4)]
    [InlineData(229, false, 6)]
    public void Run_BsdLoopbackAndRawIP_GiveTheSegment(int linkType, bool bigEndian, int version)
    {
        byte[] ip = version == 4 ? Ipv4Tcp(77, "payload"u8) : Ipv6Tcp(77, "payload"u8);
        byte[] link = [];
        if (linkType is 0 or 108)
        {
            uint family = version == 4 ? 2u : 30u;
            link = new byte[4];
            if (bigEndian)
            {
                BinaryPrimitives.WriteUInt32BigEndian(link, family);
            }
            else
            {
                BinaryPrimitives.WriteUInt32LittleEndian(link, family);
            }
        }

        var (segments, counts) = ReadFile(linkType, [[.. link, .. ip]]);
        var segment = Assert.Single(segments);
        Assert.Equal(1, counts.TcpSegments);
        Assert.Equal("payload", Encoding.ASCII.GetString(segment.Payload));
        Assert.Equal(77u, segment.Sequence);
        Assert.Equal(TcpFlags.Psh | TcpFlags.Ack, segment.Flags);
        Assert.Equal(version == 4 ? IPAddress.Parse("10.0.0.1") : IPAddress.Parse("fd00::1"), segment.Source.Address);
        Assert.Equal(40000, segment.Source.Port);
        Assert.Equal(version == 4 ? IPAddress.Parse("10.0.0.2") : IPAddress.Parse("fd00::2"), segment.Destination.Address);
        Assert.Equal(5432, segment.Destination.Port);
        Assert.False(segment.Truncated);
        Assert.Equal(new DateTime(2024, 5, 6, 7, 8, 9, DateTimeKind.Utc).AddTicks(1234560), segment.Timestamp);
    }

    [Fact]
    public void Run_EthernetWithVlanTags_StackedOrNot_GivesTheSegments()
    {
        byte[] macs = new byte[12];
        byte[] ip = Ipv4Tcp(5, "vlan"u8);
        byte[] oneTag = [.. macs, 0x81, 0x00, 0x00, 0x2A, 0x08, 0x00, .. ip];
        byte[] twoTags = [.. macs, 0x88, 0xA8, 0x00, 0x64, 0x81, 0x00, 0x00, 0x2A, 0x08, 0x00, .. ip];
        byte[] v6 = [.. macs, 0x81, 0x00, 0x00, 0x2A, 0x86, 0xDD, .. Ipv6Tcp(5, "vlan"u8)];
        byte[] padded = [.. macs, 0x08, 0x00, .. Ipv4Tcp(9, ""u8), 0, 0, 0, 0, 0, 0];

        var (segments, counts) = ReadFile(1, [oneTag, twoTags, v6, padded]);
        Assert.Equal(4, counts.TcpSegments);
        Assert.Equal(["vlan", "vlan", "vlan", ""], segments.Select(s => Encoding.ASCII.GetString(s.Payload)));
    }

    [Fact]
    public void Run_FragmentsOtherProtocolsAndBrokenPackets_AreCountedAndSkipped()
    {
        byte[] macs = new byte[12];
        byte[] firstFragment = Ipv4Tcp(1, "more follows"u8);
        firstFragment[6] = 0x20; // more fragments
        byte[] laterFragment = Ipv4Tcp(1, "the rest"u8);
        laterFragment[7] = 0x10; // offset 128
        byte[] udp = Ipv4Tcp(1, "udp"u8);
        udp[9] = 17;
        byte[] cutTcpHeader = Ipv4Tcp(1, "x"u8)[..30];
        byte[] arp = [.. macs, 0x08, 0x06, .. new byte[28]];
        byte[] good = [.. macs, 0x08, 0x00, .. Ipv4Tcp(1, "ok"u8)];

        var (segments, counts) = ReadFile(1,
        [
            [.. macs, 0x08, 0x00, .. firstFragment],
            [.. macs, 0x08, 0x00, .. laterFragment],
            [.. macs, 0x08, 0x00, .. udp],
            [.. macs, 0x08, 0x00, .. cutTcpHeader],
            [.. macs, 0x08],
            [.. macs, 0x08, 0x00, 0x45],
            [.. macs, 0x08, 0x00, 0x65, .. new byte[40]],
            arp,
            good,
        ]);
        Assert.Equal("ok", Encoding.ASCII.GetString(Assert.Single(segments).Payload));
        Assert.Equal(new CaptureCounts(9, counts.Bytes, 1, 2, 2, 4, null), counts);
    }

    [Fact]
    public void Run_HandlerThrows_TheExceptionIsTheCallers()
    {
        using var dir = new TempDirectory();
        string path = dir.Write("one.pcap", PcapFile(101, [Ipv4Tcp(1, "x"u8)]));
        using var source = CaptureSource.OpenFile(path);
        var e = Assert.Throws<InvalidOperationException>(() => source.Run(_ => throw new InvalidOperationException("from the handler"), CancellationToken.None));
        Assert.Equal("from the handler", e.Message);
    }

    [Fact]
    public void Run_PacketsCutByTheSnapLength_AreTruncatedOrUnparsed()
    {
        byte[] ip = Ipv4Tcp(1, "0123456789"u8);
        using var dir = new TempDirectory();
        string path = dir.Write("snap.pcap", PcapFile(101, [ip[..45], ip[..30]], wireLength: ip.Length));

        using var source = CaptureSource.OpenFile(path);
        var (segments, counts) = ReadAll(source);
        var segment = Assert.Single(segments);
        Assert.True(segment.Truncated);
        Assert.Equal("01234", Encoding.ASCII.GetString(segment.Payload));
        Assert.Equal(1, counts.Unparsed);
    }

    [Fact]
    public void OpenFile_Dash_ReadsStandardInputAsItComes()
    {
        // Two hundred packets: more than a pipe holds, so that the capture is read while written.
        byte[][] packets = [.. Enumerable.Range(0, 200).Select(i => Ipv4Tcp((uint)(i * 1000), new byte[1000]))];
        byte[] capture = PcapFile(101, packets);
        var (segments, counts) = WithStandardInput(capture, () =>
        {
            using var source = CaptureSource.OpenFile("-");
            Assert.Equal("raw IP", source.LinkType);
            return ReadAll(source);
        });
        Assert.Equal(200, segments.Count);
        Assert.Equal(Enumerable.Range(0, 200).Select(i => (uint)(i * 1000)), segments.Select(s => s.Sequence));
        Assert.Null(counts.ReadError);

        var e = Assert.Throws<CaptureException>(() => WithStandardInput("not a capture at all"u8.ToArray(), () => CaptureSource.OpenFile("-")));
        Assert.StartsWith("standard input is not a pcap or pcapng file: ", e.Message);
    }

    /// <summary>
    /// Runs <paramref name="read"/> with a pipe that <paramref name="content"/> is written into as
    /// the process's standard input (descriptor 0, which libpcap reads through C's <c>stdin</c> for
    /// "-"), then puts the standard input back as it was.
    /// </summary>
    private static T WithStandardInput<T>(byte[] content, Func<T> read)
    {
        int[] pipe = new int[2];
        Assert.Equal(0, Native.Pipe(pipe));
        int saved = Native.Dup(0);
        Assert.True(saved >= 0);
        var writer = Task.Run(() =>
        {
            using var stream = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(pipe[1], ownsHandle: true), FileAccess.Write, 1);
            stream.Write(content);
        });
        try
        {
            Assert.Equal(0, Native.Dup2(pipe[0], 0));
            return read();
        }
        finally
        {
            Native.Dup2(saved, 0);
            Native.Close(saved);
            Native.Close(pipe[0]);

            // C's stdin keeps the end of the pipe it met: forget it, for the next reader.
            Native.ClearErr(Marshal.ReadIntPtr(NativeLibrary.GetExport(NativeLibrary.Load("libc.so.6"), "stdin")));
            try
            {
                writer.GetAwaiter().GetResult();
            }
            catch (IOException)
            {
                // The reader stopped before the end (the content that is not a capture).
            }
        }
    }

    private static (List<Captured> Segments, CaptureCounts Counts) ReadFile(int linkType, byte[][] packets)
    {
        using var dir = new TempDirectory();
        string path = dir.Write("built.pcap", PcapFile(linkType, packets));
        using var source = CaptureSource.OpenFile(path);
        return ReadAll(source);
    }

    private static (List<Captured> Segments, CaptureCounts Counts) ReadAll(CaptureSource source)
    {
        var segments = new List<Captured>();
        var counts = source.Run(s => Record(segments, s), CancellationToken.None);
        Assert.Equal(counts.TcpSegments, segments.Count);
        return (segments, counts);
    }

    private static void Record(List<Captured> segments, TcpSegment segment)
    {
        lock (segments)
        {
            segments.Add(new Captured(segment.Timestamp, segment.Source, segment.Destination, segment.Sequence, segment.Flags, segment.Payload.ToArray(), segment.Truncated));
        }
    }

    private static byte[] Bytes(string text, int times)
    {
        var builder = new StringBuilder();
        for (int i = 0; i < times; i++)
        {
            builder.Append(text).Append(i).Append('\n');
        }

        return Encoding.ASCII.GetBytes(builder.ToString());
    }

    /// <summary>A pcap file (microsecond time stamps, little-endian) of the packets, all at 2024-05-06 07:08:09.123456 UTC.</summary>
    private static byte[] PcapFile(int linkType, byte[][] packets, int? wireLength = null)
    {
        var file = new MemoryStream();
        Span<byte> header = stackalloc byte[24];
        BinaryPrimitives.WriteUInt32LittleEndian(header, 0xA1B2C3D4);
        BinaryPrimitives.WriteUInt16LittleEndian(header[4..], 2);
        BinaryPrimitives.WriteUInt16LittleEndian(header[6..], 4);
        BinaryPrimitives.WriteUInt32LittleEndian(header[16..], 65535);
        BinaryPrimitives.WriteUInt32LittleEndian(header[20..], (uint)linkType);
        file.Write(header);
        uint seconds = (uint)new DateTimeOffset(2024, 5, 6, 7, 8, 9, TimeSpan.Zero).ToUnixTimeSeconds();
        Span<byte> record = stackalloc byte[16];
        foreach (byte[] packet in packets)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(record, seconds);
            BinaryPrimitives.WriteUInt32LittleEndian(record[4..], 123456);
            BinaryPrimitives.WriteUInt32LittleEndian(record[8..], (uint)packet.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(record[12..], (uint)(wireLength ?? packet.Length));
            file.Write(record);
            file.Write(packet);
        }

        return file.ToArray();
    }

    /// <summary>An IPv4 packet from 10.0.0.1:40000 to 10.0.0.2:5432 carrying a TCP segment (PSH, ACK).</summary>
    private static byte[] Ipv4Tcp(uint sequence, ReadOnlySpan<byte> payload)
    {
        byte[] packet = new byte[20 + 20 + payload.Length];
        packet[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)packet.Length);
        packet[8] = 64;
        packet[9] = 6;
        byte[] addresses = [10, 0, 0, 1, 10, 0, 0, 2];
        addresses.CopyTo(packet, 12);
        WriteTcp(packet.AsSpan(20), sequence, payload);
        return packet;
    }

    /// <summary>An IPv6 packet from [fd00::1]:40000 to [fd00::2]:5432 carrying a TCP segment (PSH, ACK).</summary>
    private static byte[] Ipv6Tcp(uint sequence, ReadOnlySpan<byte> payload)
    {
        byte[] packet = new byte[40 + 20 + payload.Length];
        packet[0] = 0x60;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), (ushort)(20 + payload.Length));
        packet[6] = 6;
        packet[7] = 64;
        IPAddress.Parse("fd00::1").GetAddressBytes().CopyTo(packet, 8);
        IPAddress.Parse("fd00::2").GetAddressBytes().CopyTo(packet, 24);
        WriteTcp(packet.AsSpan(40), sequence, payload);
        return packet;
    }

    private static void WriteTcp(Span<byte> tcp, uint sequence, ReadOnlySpan<byte> payload)
    {
        BinaryPrimitives.WriteUInt16BigEndian(tcp, 40000);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], 5432);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], sequence);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[8..], 1);
        tcp[12] = 0x50;
        tcp[13] = 0x18;
        BinaryPrimitives.WriteUInt16BigEndian(tcp[14..], 65535);
        payload.CopyTo(tcp[20..]);
    }

    private static class Native
    {
        [DllImport("libc", EntryPoint = "pipe", SetLastError = true)]
        public static extern int Pipe(int[] fds);

        [DllImport("libc", EntryPoint = "dup", SetLastError = true)]
        public static extern int Dup(int fd);

        [DllImport("libc", EntryPoint = "dup2", SetLastError = true)]
        public static extern int Dup2(int fd, int to);

        [DllImport("libc", EntryPoint = "close", SetLastError = true)]
        public static extern int Close(int fd);

        [DllImport("libc", EntryPoint = "clearerr")]
        public static extern void ClearErr(IntPtr file);
    }

    /// <summary>A TCP segment as captured, copied.</summary>
    private sealed record Captured(DateTime Timestamp, IPEndPoint Source, IPEndPoint Destination, uint Sequence, TcpFlags Flags, byte[] Payload, bool Truncated);

    /// <summary>One TCP connection over loopback: known bytes each way, then both ends close.</summary>
    private sealed class Exchange
    {
        private DateTime _start;

        private DateTime _end;

        public string File { get; private set; } = "";

        public IPEndPoint Client { get; private set; } = null!;

        public IPEndPoint Server { get; private set; } = null!;

        /// <summary>
        /// Makes the connection while tcpdump (with <paramref name="tcpdumpArguments"/>) writes it to
        /// a file. Its buffer is large: in immediate mode, libpcap's ring of the default 2 MB holds
        /// only a few frames of 262144 bytes, and on "any" the kernel drops loopback packets (each is
        /// seen twice, going out and coming in) as soon as a few are on their way.
        /// </summary>
        public static Exchange Capture(TempDirectory dir, string name, IPAddress address, params string[] tcpdumpArguments)
        {
            using var listener = new TcpListener(address, 0);
            listener.Start();
            int port = ((IPEndPoint)listener.LocalEndpoint).Port;
            string file = Path.Combine(dir.Path, name);
            using (Tcpdump.Start(["--immediate-mode", "-U", "-B", "32768", .. tcpdumpArguments, "-w", file, $"tcp port {port}"]))
            {
                var exchange = Run(listener);
                exchange.File = file;

                // tcpdump stops on SIGTERM without reading what the kernel still holds for it: it
                // is stopped once the file has both FINs.
                var waiting = Stopwatch.StartNew();
                while (Tcpdump.CountFins(file) < 2 && waiting.Elapsed < TimeSpan.FromSeconds(10))
                {
                    Thread.Sleep(10);
                }

                return exchange;
            }
        }

        /// <summary>Connects to <paramref name="listener"/> and exchanges the bytes.</summary>
        public static Exchange Run(TcpListener listener)
        {
            var exchange = new Exchange { _start = DateTime.UtcNow };
            var serverEnd = Task.Run(() =>
            {
                using var accepted = listener.AcceptSocket();
                byte[] received = ReceiveAll(accepted);
                Assert.Equal(s_clientBytes, received);
                accepted.Send(s_serverBytes);
                accepted.Shutdown(SocketShutdown.Both);
            });
            using (var client = new Socket(listener.LocalEndpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp))
            {
                client.Connect(listener.LocalEndpoint);
                exchange.Client = (IPEndPoint)client.LocalEndPoint!;
                exchange.Server = (IPEndPoint)client.RemoteEndPoint!;
                client.Send(s_clientBytes);
                client.Shutdown(SocketShutdown.Send);
                Assert.Equal(s_serverBytes, ReceiveAll(client));
            }

            Assert.True(serverEnd.Wait(TimeSpan.FromSeconds(10)));
            exchange._end = DateTime.UtcNow;
            return exchange;
        }

        /// <summary>
        /// Checks the segments of the connection: the SYNs, each direction's bytes in order from
        /// the sequence number after its SYN, and both FINs.
        /// </summary>
        public void Check(List<Captured> segments)
        {
            Assert.NotEmpty(segments);
            Assert.All(segments, s => Assert.True((s.Source.Equals(Client) && s.Destination.Equals(Server)) || (s.Source.Equals(Server) && s.Destination.Equals(Client)), $"{s.Source} -> {s.Destination}"));
            Assert.All(segments, s => Assert.InRange(s.Timestamp, _start.AddSeconds(-1), _end.AddSeconds(1)));
            Assert.All(segments, s => Assert.Equal(DateTimeKind.Utc, s.Timestamp.Kind));
            Assert.All(segments, s => Assert.False(s.Truncated));
            var syn = segments.First(s => (s.Flags & TcpFlags.Syn) != 0);
            Assert.Equal(TcpFlags.Syn, syn.Flags);
            Assert.Equal(Client, syn.Source);
            var synAck = segments.First(s => s.Flags == (TcpFlags.Syn | TcpFlags.Ack));
            Assert.Equal(Server, synAck.Source);
            Assert.True(segments.IndexOf(syn) < segments.IndexOf(synAck));
            Assert.Equal(s_clientBytes, Stream(segments, Client, syn.Sequence));
            Assert.Equal(s_serverBytes, Stream(segments, Server, synAck.Sequence));
        }

        /// <summary>The bytes one side sent, put in order by sequence number (a capture on "any" may hold each packet twice).</summary>
        private static byte[] Stream(List<Captured> segments, IPEndPoint sender, uint initialSequence)
        {
            var data = new MemoryStream();
            uint next = initialSequence + 1;
            bool fin = false;
            foreach (var segment in segments.Where(s => s.Source.Equals(sender) && (s.Flags & TcpFlags.Syn) == 0))
            {
                if (segment.Sequence == next && segment.Payload.Length > 0)
                {
                    data.Write(segment.Payload);
                    next += (uint)segment.Payload.Length;
                }
                else
                {
                    // A repeat of what was taken, or a segment without data.
                    Assert.True(segment.Sequence + (uint)segment.Payload.Length <= next, $"a gap before sequence {segment.Sequence} (expected {next}): " + string.Join("\n", segments.Select(s => $"{s.Source} {s.Sequence} {s.Flags} {s.Payload.Length}")));
                }

                if ((segment.Flags & TcpFlags.Fin) != 0 && !fin)
                {
                    // The FIN takes a sequence number of its own, after the data.
                    Assert.Equal(next, segment.Sequence + (uint)segment.Payload.Length);
                    fin = true;
                    next++;
                }
            }

            Assert.True(fin, $"no FIN from {sender}");
            return data.ToArray();
        }

        private static byte[] ReceiveAll(Socket socket)
        {
            var received = new MemoryStream();
            byte[] buffer = new byte[8192];
            int n;
            while ((n = socket.Receive(buffer)) > 0)
            {
                received.Write(buffer, 0, n);
            }

            return received.ToArray();
        }
    }

}
