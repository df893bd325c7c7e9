using System.Globalization;
using System.Net;
using System.Text.Json;

namespace PgSpec.Cli.Tests.Capture;

/// <summary>
/// Real captures made worse: the packets of busy connections of <see cref="ProxiedSessions"/>
/// (psql's with PostgreSQL 15, whose results run to hundreds of kilobytes, and pgbench's three)
/// written again by <see cref="PcapFile"/> with segments reordered, repeated, lost, or with the
/// start of a connection left out. Reordered and repeated segments decode exactly as the
/// original; a lost segment is a gap of its exact size, after which decoding resumes at the first
/// message boundary, and every message decoded is one of the original decode's, at its place in
/// the stream: nothing is invented.
/// </summary>
[Collection(ProxiedSessionsCollection.Name)]
public sealed class CaptureRewriteTests : IDisposable
{
    private readonly ProxiedSessions _sessions;
    private readonly TempDirectory _dir = new();
    private readonly PcapFile _file;
    private readonly List<PcapPacket> _packets;
    private readonly Dictionary<string, Decoded> _original;
    private readonly string _psql;
    private readonly string _pgbench;

    public CaptureRewriteTests(ProxiedSessions sessions)
    {
        _sessions = sessions;
        _file = PcapFile.Read(sessions.CaptureFile);

        // The connections (by client endpoint) of psql and pgbench to the proxy of PostgreSQL 15.
        Dictionary<string, Decoded> all = Decode(sessions.CaptureFile);
        string[] chosen = [.. all.Where(c => c.Value.Application is ProxiedSessions.Psql15 or ProxiedSessions.Pgbench).Select(c => c.Key)];
        Assert.Equal(4, chosen.Length);
        _psql = all.Single(c => c.Value.Application == ProxiedSessions.Psql15).Key;
        _pgbench = all.Where(c => c.Value.Application == ProxiedSessions.Pgbench).MaxBy(c => c.Value.Frontend.Count).Key;
        _packets = [.. _file.Packets.Where(p => p.Tcp is { } tcp && (chosen.Contains(tcp.Source.ToString()) || chosen.Contains(tcp.Destination.ToString())))];
        _original = Decode(Write("original.pcap", _packets));
        Assert.Equal(chosen.Order(), _original.Keys.Order());
        Assert.All(_original.Values, c => Assert.Equal(["seen", "ended"], c.Events.Select(e => e.Kind)));
    }

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void SegmentsReordered_DecodeExactlyAsTheOriginal()
    {
        // The capture missed the acknowledgments without data (they carry no stream byte), and
        // each data segment comes as late as it can: just before the first packet that
        // acknowledges it (no capture sees an acknowledgment of bytes before the bytes), the
        // segments that wait for the same packet in the opposite order: each burst of a server's
        // results, sent while the client only acknowledged, arrives backwards.
        PcapPacket[] packets = [.. _packets.Where(p => p.Tcp!.Payload.Length > 0 || (p.Tcp.Flags & 0x07) != 0)];
        var keys = new Dictionary<PcapPacket, double>();
        int moved = 0;
        for (int i = 0; i < packets.Length; i++)
        {
            TcpHeader tcp = packets[i].Tcp!;
            keys[packets[i]] = i;
            if (tcp.Payload.Length == 0)
            {
                continue;
            }

            int acknowledged = Array.FindIndex(packets, i + 1, p => p.Tcp!.Source.Equals(tcp.Destination) && p.Tcp.Destination.Equals(tcp.Source) && p.Tcp.Acknowledges(tcp.Sequence));
            int target = acknowledged < 0 ? packets.Length : acknowledged;
            if (packets[(i + 1)..target].Any(p => p.Tcp!.Source.Equals(tcp.Source) && p.Tcp.Destination.Equals(tcp.Destination) && p.Tcp.Payload.Length > 0))
            {
                // Segments of its own direction that were sent after it now come before it.
                moved++;
            }

            keys[packets[i]] = target - 0.5 - (i * 1e-7);
        }

        Assert.True(moved >= 20, $"only {moved} segments come after later ones");
        Dictionary<string, Decoded> reordered = Decode(Write("reordered.pcap", packets.OrderBy(p => keys[p])));

        AssertSame(_original, reordered);
    }

    [Fact]
    public void SegmentsRepeated_AsCopiesLateCopiesAndRepacketized_DecodeExactlyAsTheOriginal()
    {
        var packets = new List<PcapPacket>();
        int data = 0;
        for (int i = 0; i < _packets.Count; i++)
        {
            PcapPacket packet = _packets[i];
            TcpHeader tcp = packet.Tcp!;
            packets.Add(packet);
            if (tcp.Payload.Length == 0)
            {
                continue;
            }

            data++;
            if (data % 3 == 0)
            {
                // At once, as a retransmission after a lost acknowledgment.
                packets.Add(packet);
            }

            if (data % 5 == 0)
            {
                // The second half of this segment and the first of the next, in one segment sent
                // before the next: bytes delivered already, then bytes ahead of the stream.
                PcapPacket? next = _packets.Skip(i + 1).FirstOrDefault(p => p.Tcp!.Source.Equals(tcp.Source) && p.Tcp.Destination.Equals(tcp.Destination) && p.Tcp.Payload.Length > 0);
                if (next is not null && next.Tcp!.Sequence == tcp.Sequence + (uint)tcp.Payload.Length)
                {
                    int half = tcp.Payload.Length / 2;
                    packets.Add(_file.WithPayload(packet, tcp.Sequence + (uint)half, [.. tcp.Payload.AsSpan(half), .. next.Tcp.Payload.AsSpan(0, next.Tcp.Payload.Length / 2)]));
                }
            }
        }

        // Late copies: every seventh data segment again after the packet that acknowledged it.
        var late = new List<(int After, PcapPacket Copy)>();
        data = 0;
        foreach (PcapPacket packet in _packets.Where(p => p.Tcp!.Payload.Length > 0))
        {
            if (data++ % 7 == 0)
            {
                TcpHeader tcp = packet.Tcp!;
                int acknowledged = packets.FindIndex(packets.IndexOf(packet) + 1, p => p.Tcp!.Source.Equals(tcp.Destination) && p.Tcp.Destination.Equals(tcp.Source) && p.Tcp.Acknowledges(tcp.Sequence + (uint)tcp.Payload.Length - 1));
                if (acknowledged >= 0)
                {
                    late.Add((acknowledged, packet));
                }
            }
        }

        foreach ((int after, PcapPacket copy) in late.OrderByDescending(l => l.After))
        {
            packets.Insert(after + 1, copy);
        }

        Assert.True(packets.Count > _packets.Count + 500, $"{packets.Count - _packets.Count} packets added");
        Dictionary<string, Decoded> repeated = Decode(Write("repeated.pcap", packets));

        AssertSame(_original, repeated);
    }

    [Fact]
    public void SegmentsLost_AreGapsOfTheirExactSize_AndDecodingResumesAtTheFirstBoundary_InventingNothing()
    {
        Decoded psql = _original[_psql];
        Decoded pgbench = _original[_pgbench];

        // Lost: in psql's results, a segment inside the row of 200,000 bytes, one in the middle of
        // 3,000 rows and one in the middle of a COPY TO STDOUT of 2,000 lines; in pgbench's, one
        // segment each way in the middle of its transactions.
        Message big = psql.Backend.Single(m => m.Name == "DataRow" && m.Length > 200_000);
        Message[] rows = [.. psql.Backend.Where(m => m.Name == "DataRow" && m.Length > 300 && m.Length < 400)];
        Message[] copies = [.. psql.Backend.Where(m => m.Name == "CopyData" && m.Length > 100)];
        Assert.Equal((3000, 2000), (rows.Length, copies.Length));
        var lost = new List<(string Client, bool ToServer, PcapPacket Packet)>
        {
            (_psql, false, Segment(_psql, toServer: false, Inside(big))),
            (_psql, false, Segment(_psql, toServer: false, Starts(rows, 1500))),
            (_psql, false, Segment(_psql, toServer: false, Starts(copies, 1000))),
            (_pgbench, false, Segment(_pgbench, toServer: false, Starts(pgbench.Backend, pgbench.Backend.Count / 2))),
            (_pgbench, true, Segment(_pgbench, toServer: true, Starts(pgbench.Frontend, pgbench.Frontend.Count / 2))),
        };
        Assert.Equal(lost.Count, lost.Select(l => l.Packet).Distinct().Count());

        Dictionary<string, Decoded> decoded = Decode(Write("lost.pcap", _packets.Except(lost.Select(l => l.Packet))));

        foreach (string client in new[] { _psql, _pgbench })
        {
            Decoded original = _original[client];
            Decoded damaged = decoded[client];
            foreach (bool toServer in new[] { true, false })
            {
                List<Message> before = toServer ? original.Frontend : original.Backend;
                List<Message> after = toServer ? damaged.Frontend : damaged.Backend;
                string stream = toServer ? "client's" : "server's";

                // Nothing invented: each message decoded is the original's at the same place.
                var originals = before.ToDictionary(m => m.Offset);
                Assert.All(after, m => Assert.Equal(originals.GetValueOrDefault(m.Offset), m));

                // Each lost segment: a gap of its size, then decoding resumes at the first message
                // boundary after it; what is missing is exactly the messages from the end of the
                // last whole one before the gap to that boundary.
                long[] gaps = [.. lost.Where(l => l.Client == client && l.ToServer == toServer).Select(l => Offset(l.Packet)).Order()];
                Event[] gapEvents = [.. damaged.Events.Where(e => e.Kind == "gap" && e.Text.Contains(stream, StringComparison.Ordinal))];
                Assert.Equal(lost.Where(l => l.Client == client && l.ToServer == toServer).OrderBy(l => Offset(l.Packet)).Select(l => (long)l.Packet.Tcp!.Payload.Length), gapEvents.Select(e => e.Bytes));
                var missing = before.Except(after).ToHashSet();
                foreach (long gap in gaps)
                {
                    long gapEnd = gap + _packets.Single(p => Offset(p) == gap && lost.Any(l => l.Packet == p)).Tcp!.Payload.Length;
                    Message firstAfter = before.First(m => m.Offset >= gapEnd);
                    Assert.Contains(firstAfter, after);
                    long lastWholeEnd = before.Where(m => m.Offset + m.Wire <= gap).Select(m => m.Offset + m.Wire).DefaultIfEmpty(0).Max();
                    Message[] lostHere = [.. before.Where(m => m.Offset >= lastWholeEnd && m.Offset < firstAfter.Offset)];
                    Assert.NotEmpty(lostHere);
                    Assert.All(lostHere, m => Assert.Contains(m, missing));
                    missing.ExceptWith(lostHere);
                }

                Assert.Empty(missing);
            }

            // One resumption per gap; the connection still ends as it did.
            Assert.Equal(damaged.Events.Count(e => e.Kind == "gap"), damaged.Events.Count(e => e.Kind == "resumed"));
            Assert.Equal(("ended", "closed"), (damaged.Events[^1].Kind, damaged.Events[^1].Text));
        }
    }

    [Fact]
    public void ConnectionsWhoseStartWasNotCaptured_ArePickedUpAtTheFirstBoundary_InventingNothing()
    {
        // psql's capture starts inside its row of 200,000 bytes; pgbench's in the middle of its transactions.
        Message big = _original[_psql].Backend.Single(m => m.Name == "DataRow" && m.Length > 200_000);
        var cuts = new Dictionary<string, int>
        {
            [_psql] = _packets.IndexOf(Segment(_psql, toServer: false, Inside(big))),
            [_pgbench] = _packets.IndexOf(Segment(_pgbench, toServer: false, Starts(_original[_pgbench].Backend, _original[_pgbench].Backend.Count / 2))),
        };
        PcapPacket[] kept = [.. _packets.Where((p, i) => !cuts.TryGetValue(Client(p), out int cut) || i >= cut)];

        Dictionary<string, Decoded> decoded = Decode(Write("midstream.pcap", kept));

        foreach ((string client, int cut) in cuts)
        {
            Decoded original = _original[client];
            Decoded picked = decoded[client];
            Assert.Equal(["seen", "mid-stream"], picked.Events.Take(2).Select(e => e.Kind));
            foreach (bool toServer in new[] { true, false })
            {
                // The stream begins at the first captured byte of each direction: offsets count from there.
                PcapPacket first = kept.First(p => Client(p) == client && p.Tcp!.Payload.Length > 0 && IsToServer(p) == toServer);
                long start = Offset(first);
                List<Message> before = toServer ? original.Frontend : original.Backend;
                List<Message> after = [.. (toServer ? picked.Frontend : picked.Backend).Select(m => m with { Offset = m.Offset + start })];

                // From the first message boundary after the start, every message, and only those.
                Assert.Equal(before.Where(m => m.Offset >= start), after);
                Assert.Contains(picked.Events, e => e.Kind == "resumed" && e.Text.Contains(toServer ? "client's" : "server's", StringComparison.Ordinal));
            }

            Assert.Equal(("ended", "closed"), (picked.Events[^1].Kind, picked.Events[^1].Text));
            Assert.DoesNotContain(picked.Events, e => e.Kind is "gap" or "malformed");
        }

        // The other connections are whole.
        Assert.All(decoded.Where(c => !cuts.ContainsKey(c.Key)), c => AssertSame(_original[c.Key], c.Value));
    }

    private static void AssertSame(Dictionary<string, Decoded> expected, Dictionary<string, Decoded> actual)
    {
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach ((string client, Decoded connection) in expected)
        {
            AssertSame(connection, actual[client]);
        }
    }

    /// <summary>The same messages each way, in the same order at the same offsets, and the same events.</summary>
    private static void AssertSame(Decoded expected, Decoded actual)
    {
        Assert.Equal(expected.Frontend, actual.Frontend);
        Assert.Equal(expected.Backend, actual.Backend);
        Assert.Equal(expected.Events, actual.Events);
    }

    /// <summary>
    /// The data segment of a connection's direction that carries the byte at the first of
    /// <paramref name="offsets"/> of its stream that only one packet of the capture carries (the
    /// capture may hold a retransmission: a segment sent twice is not lost when one copy is).
    /// </summary>
    private PcapPacket Segment(string client, bool toServer, IEnumerable<long> offsets)
    {
        foreach (long offset in offsets)
        {
            PcapPacket[] carriers = [.. _packets.Where(p => Client(p) == client && IsToServer(p) == toServer && p.Tcp!.Payload.Length > 0 && Offset(p) <= offset && offset < Offset(p) + p.Tcp.Payload.Length)];
            if (carriers.Length == 1)
            {
                return carriers[0];
            }
        }

        Assert.Fail($"every segment of {client}'s {(toServer ? "client" : "server")} stream looked at was captured twice");
        return null!;
    }

    /// <summary>Where messages start, from the <paramref name="index"/>th of <paramref name="messages"/> on.</summary>
    private static IEnumerable<long> Starts(IEnumerable<Message> messages, int index) => messages.Skip(index).Select(m => m.Offset);

    /// <summary>Bytes inside a message, from its middle on.</summary>
    private static IEnumerable<long> Inside(Message message) => Enumerable.Range(0, 8).Select(i => message.Offset + (message.Length / 2) + (i * (message.Length / 20)));

    private bool IsToServer(PcapPacket packet) => packet.Tcp!.Destination.Port == _sessions.Proxy15Port;

    private string Client(PcapPacket packet) => (IsToServer(packet) ? packet.Tcp!.Source : packet.Tcp!.Destination).ToString();

    /// <summary>Where a segment's data begins in its direction's stream: from the byte after that direction's SYN.</summary>
    private long Offset(PcapPacket packet)
    {
        TcpHeader tcp = packet.Tcp!;
        TcpHeader syn = _packets.First(p => p.Tcp!.Syn && p.Tcp.Source.Equals(tcp.Source) && p.Tcp.Destination.Equals(tcp.Destination)).Tcp!;
        return (uint)(tcp.Sequence - syn.Sequence - 1);
    }

    private string Write(string name, IEnumerable<PcapPacket> packets)
    {
        string path = Path.Combine(_dir.Path, name);
        _file.Write(path, packets);
        return path;
    }

    /// <summary>pgspec capture's JSON of a file, by connection (its client endpoint).</summary>
    private Dictionary<string, Decoded> Decode(string file)
    {
        CliResult result = CliRunner.Run("capture", "--port", _sessions.Proxy15Port.ToString(CultureInfo.InvariantCulture), "--format", "json", "--show-secrets", file);
        Assert.True(result.ExitCode == 0, result.Stderr);
        var byId = new Dictionary<long, Decoded>();
        var connections = new Dictionary<string, Decoded>();
        foreach (string line in result.Lines)
        {
            JsonElement o = JsonDocument.Parse(line).RootElement;
            long id = o.GetProperty("connection").GetInt64();
            if (o.TryGetProperty("event", out JsonElement kind))
            {
                string text = o.GetProperty("text").GetString()!;
                if (kind.GetString() == "seen")
                {
                    string client = IPEndPoint.Parse(text.Split(" -> ")[0]).ToString();
                    byId[id] = connections[client] = new Decoded([], [], []);
                }

                long bytes = o.TryGetProperty("bytes", out JsonElement count) ? count.GetInt64() : 0;
                byId[id].Events.Add(new Event(kind.GetString()!, bytes, kind.GetString() is "seen" or "mid-stream" ? "" : text));
                continue;
            }

            var message = new Message(
                o.GetProperty("offset").GetInt64(),
                o.GetProperty("name").GetString()!,
                o.GetProperty("length").GetInt32(),
                o.GetProperty("type").ValueKind != JsonValueKind.Null,
                o.GetProperty("fields").GetRawText());
            (o.GetProperty("direction").GetString() == "F" ? byId[id].Frontend : byId[id].Backend).Add(message);
        }

        return connections;
    }

    /// <summary>One connection's decode: its messages each way and its events.</summary>
    private sealed record Decoded(List<Message> Frontend, List<Message> Backend, List<Event> Events)
    {
        public string? Application => Frontend.FirstOrDefault(m => m.Name == "StartupMessage") is { } startup
            ? JsonDocument.Parse(startup.Fields).RootElement.GetProperty("parameters").EnumerateArray().First(p => p.GetProperty("name").GetString() == "application_name").GetProperty("value").GetString()
            : null;
    }

    /// <summary>A message: where it starts in its stream, its name, length (after the type byte) and fields.</summary>
    private sealed record Message(long Offset, string Name, int Length, bool Typed, string Fields)
    {
        /// <summary>Its bytes on the wire.</summary>
        public long Wire => Length + (Typed ? 1 : 0);
    }

    /// <summary>An event: its kind, its byte count and its text (none for those that name endpoints).</summary>
    private sealed record Event(string Kind, long Bytes, string Text);
}
