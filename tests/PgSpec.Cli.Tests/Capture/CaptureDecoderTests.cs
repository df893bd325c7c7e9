using System.Net;
using System.Text;
using PgSpec.Cli.Capture;
using PgSpec.Protocol;
using Xunit;

namespace PgSpec.Cli.Tests.Capture;

public class CaptureDecoderTests
{
    private static readonly IPEndPoint Client = IPEndPoint.Parse("10.0.0.7:40001");
    private static readonly IPEndPoint Server = IPEndPoint.Parse("10.0.0.1:5432");
    private static readonly DateTime Start = new(2026, 12, 3, 6, 0, 0, DateTimeKind.Utc);

    /// <summary>The SCRAM conversation of <see cref="Conversation"/>, as the two sides take turns.</summary>
    private static readonly (bool ToServer, byte[] Bytes)[] Turns =
    [
        (true, Conversation.Bytes(Conversation.Startup)),
        (false, Conversation.Bytes(Conversation.Sasl)),
        (true, Conversation.Bytes(Conversation.SaslInitial)),
        (false, Conversation.Bytes(Conversation.SaslContinue)),
        (true, Conversation.Bytes(Conversation.SaslResponse)),
        (false, Conversation.Bytes(Conversation.SaslFinal, new AuthenticationOk(), Conversation.ServerVersion, new BackendKeyData(4242, new byte[] { 0, 0, 0, 7 }), new ReadyForQuery(TransactionStatus.Idle))),
        (true, Conversation.Bytes(Conversation.Select)),
        (false, Conversation.Bytes(Conversation.Columns, Conversation.Row, new CommandComplete("SELECT 1"), new ReadyForQuery(TransactionStatus.Idle))),
        (true, Conversation.Bytes(new Terminate())),
    ];

    private static readonly string[] ConversationNames =
    [
        "F StartupMessage", "B AuthenticationSASL", "F SASLInitialResponse", "B AuthenticationSASLContinue", "F SASLResponse",
        "B AuthenticationSASLFinal", "B AuthenticationOk", "B ParameterStatus", "B BackendKeyData", "B ReadyForQuery",
        "F Query", "B RowDescription", "B DataRow", "B CommandComplete", "B ReadyForQuery", "F Terminate",
    ];

    [Fact]
    public void AWholeConnection_IsDecodedInOrder_WithOneContextForBothDirections()
    {
        // The 'p' messages are named by the requests before them: the server's direction teaches the client's.
        var output = new RecordingOutput();
        Feed(output, new Wire().Segments(Turns, segmentSize: 1460));

        Assert.Equal(["event seen", .. ConversationNames, "event ended"], output.Lines);
        Assert.Contains("closed", output.Texts.Last());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(7)]
    public void MessagesCutAcrossSegments_AreDecodedWhole(int segmentSize)
    {
        var output = new RecordingOutput();
        Feed(output, new Wire().Segments(Turns, segmentSize));

        Assert.Equal(["event seen", .. ConversationNames, "event ended"], output.Lines);
    }

    [Fact]
    public void SegmentsReorderedAndRepeated_AreDecodedOnceInOrder()
    {
        List<Segment> segments = new Wire().Segments(Turns, segmentSize: 5);
        var shuffled = new List<Segment>();
        for (int i = 0; i < segments.Count; i++)
        {
            // Within each direction the segments may come in any order; here pairs swap and some come twice.
            if (i + 1 < segments.Count && segments[i].ToServer == segments[i + 1].ToServer && i % 3 == 0 && !segments[i].Syn)
            {
                shuffled.Add(segments[i + 1]);
                shuffled.Add(segments[i]);
                shuffled.Add(segments[i + 1]);
                i++;
            }
            else
            {
                shuffled.Add(segments[i]);
            }
        }

        var output = new RecordingOutput();
        Feed(output, shuffled);

        Assert.Equal(["event seen", .. ConversationNames, "event ended"], output.Lines);
    }

    [Fact]
    public void ALostSegment_IsAGapOfItsSize_AndDecodingResumesAtAProvedBoundary()
    {
        // The server sends ten rows in one go; a segment in the middle of them is lost.
        byte[] rows = Conversation.Bytes([.. Enumerable.Range(0, 10).Select(i => (IPgMessage)new DataRow([Encoding.ASCII.GetBytes($"row {i:D3}")]))]);
        (bool, byte[])[] turns =
        [
            .. Turns[..7],
            (false, Conversation.Concat(Conversation.Bytes(Conversation.Columns), rows, Conversation.Bytes(new CommandComplete("SELECT 10"), new ReadyForQuery(TransactionStatus.Idle)))),
            (true, Conversation.Bytes(new Terminate())),
        ];
        List<Segment> segments = new Wire().Segments(turns, segmentSize: 20);
        int lost = segments.FindIndex(s => !s.ToServer && s.Payload.AsSpan().IndexOf("row 003"u8) >= 0);
        int lostSize = segments[lost].Payload.Length;
        segments.RemoveAt(lost);

        var output = new RecordingOutput();
        Feed(output, segments);

        int gap = output.Lines.IndexOf("event gap");
        Assert.True(gap > 0, string.Join("\n", output.Lines));
        Assert.Equal(lostSize, output.Bytes[gap]);
        Assert.Equal("event resumed", output.Lines[gap + 1]);

        // Rows 0 to 2 before the gap; after it, only whole rows that were captured, then the end of the query.
        List<string> rowsSeen = output.Values.Where(v => v.StartsWith("row ", StringComparison.Ordinal)).ToList();
        Assert.DoesNotContain("row 003", rowsSeen);
        Assert.Equal(["row 000", "row 001", "row 002"], rowsSeen.Take(3));
        Assert.Equal(rowsSeen.Distinct().Order(), rowsSeen);
        Assert.Equal(["B CommandComplete", "B ReadyForQuery", "F Terminate", "event ended"], output.Lines[^4..]);
    }

    [Fact]
    public void AConnectionWhoseStartWasNotCaptured_IsPickedUpAtAProvedBoundary()
    {
        byte[] rows = Conversation.Bytes([.. Enumerable.Range(0, 6).Select(i => (IPgMessage)new DataRow([Encoding.ASCII.GetBytes($"row {i:D3}")]))]);
        (bool, byte[])[] turns =
        [
            (true, Conversation.Bytes(Conversation.Select)),
            (false, Conversation.Concat(Conversation.Bytes(Conversation.Columns), rows, Conversation.Bytes(new CommandComplete("SELECT 6"), new ReadyForQuery(TransactionStatus.Idle)))),
            (true, Conversation.Bytes(new Query("SELECT 2"))),
            (false, Conversation.Bytes(new CommandComplete("SELECT 0"), new ReadyForQuery(TransactionStatus.Idle))),
        ];

        // No SYN, and the server's first captured byte is inside its RowDescription.
        List<Segment> segments = new Wire().Segments(turns, segmentSize: 12, handshake: false);
        int firstServer = segments.FindIndex(s => !s.ToServer);
        segments.RemoveAt(firstServer);

        var output = new RecordingOutput();
        Feed(output, segments);

        Assert.Equal(["event seen", "event mid-stream"], output.Lines[..2]);
        Assert.Equal("F Query", output.Lines.First(line => !line.StartsWith("event", StringComparison.Ordinal)));
        Assert.Contains("event resumed", output.Lines);
        Assert.DoesNotContain("B RowDescription", output.Lines);
        Assert.Equal(["F Query", "B CommandComplete", "B ReadyForQuery"], output.Lines[^4..^1]);
    }

    [Fact]
    public void AnSslRequestAnsweredS_TurnsTheConnectionEncrypted_AndNothingAfterIsDecoded()
    {
        (bool, byte[])[] turns =
        [
            (true, Conversation.Bytes(new SSLRequest())),
            (false, "S"u8.ToArray()),
            (true, [0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]),
            (false, [0x16, 0x03, 0x03, 0x00, 0x02, 9, 9]),
        ];
        var output = new RecordingOutput();
        Feed(output, new Wire().Segments(turns, segmentSize: 1460));

        Assert.Equal(["event seen", "F SSLRequest", "B EncryptionAnswer", "event encrypted", "event ended"], output.Lines);
    }

    [Fact]
    public void AnSslRequestAnsweredN_GoesOnInPlainText()
    {
        (bool, byte[])[] turns =
        [
            (true, Conversation.Bytes(new SSLRequest())),
            (false, "N"u8.ToArray()),
            .. Turns,
        ];
        var output = new RecordingOutput();
        Feed(output, new Wire().Segments(turns, segmentSize: 1460));

        Assert.Equal(["event seen", "F SSLRequest", "B EncryptionAnswer", .. ConversationNames, "event ended"], output.Lines);
    }

    [Fact]
    public void DirectTls_IsReportedEncrypted()
    {
        (bool, byte[])[] turns = [(true, [0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])];
        var output = new RecordingOutput();
        Feed(output, new Wire().Segments(turns, segmentSize: 1460));

        Assert.Equal(["event seen", "event encrypted", "event ended"], output.Lines);
        Assert.Contains("direct TLS", output.Texts[1]);
    }

    [Fact]
    public void BytesThatBreakTheProtocol_AreReported_AndDecodingResumesAfterThem()
    {
        byte[] broken = [(byte)'Q', 0, 0, 0, 2];
        (bool, byte[])[] turns =
        [
            .. Turns[..6],
            (true, Conversation.Concat(broken, Conversation.Bytes(new Query("SELECT 1"), new Query("SELECT 2"), new Query("SELECT 3")))),
        ];
        var output = new RecordingOutput();
        Feed(output, new Wire().Segments(turns, segmentSize: 1460));

        int malformed = output.Lines.IndexOf("event malformed");
        Assert.True(malformed > 0);
        Assert.Equal(["event resumed", "F Query", "F Query", "F Query"], output.Lines[(malformed + 1)..^1]);
    }

    [Fact]
    public void AMessageLargerThanTheDecoderHolds_IsReportedAndPassedOver_AndTheNextAreDecoded()
    {
        // A 20 MB DataRow (the protocol allows a gigabyte) between two small messages.
        byte[] huge = new DataRow([new byte[20_000_000]]).ToArray();
        (bool, byte[])[] turns =
        [
            .. Turns[..7],
            (false, Conversation.Concat(Conversation.Bytes(Conversation.Columns), huge, Conversation.Bytes(new CommandComplete("SELECT 1"), new ReadyForQuery(TransactionStatus.Idle)))),
            (true, Conversation.Bytes(new Terminate())),
        ];
        var output = new RecordingOutput();
        Feed(output, new Wire().Segments(turns, segmentSize: 65_000));

        int skipped = output.Lines.IndexOf("event skipped");
        Assert.True(skipped > 0, string.Join("\n", output.Lines));
        Assert.Equal(huge.Length, output.Bytes[skipped]);
        Assert.Equal("B RowDescription", output.Lines[skipped - 1]);
        Assert.Equal(["B CommandComplete", "B ReadyForQuery", "F Terminate", "event ended"], output.Lines[(skipped + 1)..]);
        Assert.Contains("'D'", output.Texts[skipped]);
    }

    [Fact]
    public void WhatAllConnectionsHoldOutOfOrder_StaysWithinTheTotalBound()
    {
        // Fifty connections whose server lost a segment early: each would hold what follows (up
        // to 1 MiB a direction); together they may hold 64 KiB, and the ones holding most give up.
        const long Bound = 64 * 1024;
        var output = new RecordingOutput();
        var decoder = new CaptureDecoder([5432], server: null, output, maxHeldTotal: Bound);
        byte[] rows = Conversation.Bytes([.. Enumerable.Range(0, 200).Select(i => (IPgMessage)new DataRow([Encoding.ASCII.GetBytes($"row {i:D3}")]))]);
        var streams = new List<List<Segment>>();
        for (int c = 0; c < 50; c++)
        {
            List<Segment> segments = new Wire().Segments([.. Turns[..7], (false, rows)], segmentSize: 100);
            segments.RemoveAt(segments.FindIndex(s => !s.ToServer && s.Payload.AsSpan().IndexOf("row 001"u8) >= 0));

            // No acknowledgments: only the bound can end the wait.
            streams.Add([.. segments.Select(s => s with { Flags = s.Flags & ~TcpFlags.Ack })]);
        }

        long most = 0;
        for (int i = 0; streams.Any(s => i < s.Count); i++)
        {
            for (int c = 0; c < streams.Count; c++)
            {
                if (i < streams[c].Count)
                {
                    decoder.Add(streams[c][i] is var s ? s.ToTcp(IPEndPoint.Parse($"10.0.0.7:{41000 + c}")) : default);
                    most = Math.Max(most, decoder.HeldBytes);
                }
            }
        }

        // Some gave up while the capture went on; the others at its end; each hole once.
        Assert.InRange(most, Bound / 2, Bound);
        Assert.InRange(output.Lines.Count(l => l == "event gap"), 10, 49);
        decoder.Finish(Start);
        Assert.Equal(0, decoder.HeldBytes);
        Assert.Equal(50, output.Lines.Count(l => l == "event gap"));
    }

    [Fact]
    public void LookingForABoundaryInBytesThatHaveNone_TakesTimeLinearInThem()
    {
        // A connection picked up mid-stream whose server sends 1 MiB of bytes that are no
        // message, in 100-byte segments: each start is examined once, not again for every segment.
        byte[] noise = new byte[1 << 20];
        noise.AsSpan().Fill((byte)'x');
        var output = new RecordingOutput();
        var decoder = new CaptureDecoder([5432], server: null, output);
        DateTime last = Start;
        foreach (Segment segment in new Wire().Segments([(false, noise), (false, Conversation.Bytes(new ReadyForQuery(TransactionStatus.Idle)))], segmentSize: 100, handshake: false))
        {
            decoder.Add(segment.ToTcp());
            last = segment.Time;
        }

        decoder.Finish(last);

        // Each place once, and the few that wait again (a quadratic search: some 5 * 10^9).
        Assert.InRange(decoder.BoundaryAttempts, noise.Length, 2L * noise.Length);
        Assert.Equal(["event seen", "event mid-stream", "event resumed", "B ReadyForQuery", "event ended"], output.Lines);
        Assert.Equal(noise.Length, output.Bytes[2]);
    }

    [Fact]
    public void MessagesNotYetWholeOfManyConnections_CountInTheTotalBound()
    {
        // Thirty connections each in the middle of a 6 MB DataRow that never ends: held whole
        // they would take 180 MB; the bound of 32 MiB passes the largest over.
        const long Bound = 32L << 20;
        var output = new RecordingOutput();
        var decoder = new CaptureDecoder([5432], server: null, output, maxHeldTotal: Bound);
        byte[] partial = new DataRow([new byte[6_000_000]]).ToArray()[..3_000_000];
        long most = 0;
        for (int c = 0; c < 30; c++)
        {
            foreach (Segment segment in new Wire().Segments([.. Turns[..7], (false, partial)], segmentSize: 60_000).Where(s => (s.Flags & TcpFlags.Fin) == 0))
            {
                decoder.Add(segment.ToTcp(IPEndPoint.Parse($"10.0.0.7:{42000 + c}")));
                most = Math.Max(most, decoder.HeldBytes);
            }
        }

        // One direction's buffer may grow past the bound before the check that follows its segment.
        Assert.InRange(most, Bound / 2, Bound + (16L << 20));
        Assert.True(output.Lines.Count(l => l == "event skipped") >= 10, string.Join("\n", output.Lines.TakeLast(20)));
    }

    [Fact]
    public void AResetAfterTheSendersOwnFin_EndsTheConnectionBothWays()
    {
        // The client closes its side; the server still sends (a TLS alert, a notice), and the
        // client, which reads no more, answers with a reset: the connection is over there, not
        // at the end of the capture.
        List<Segment> segments = new Wire().Segments(Turns, segmentSize: 1460);
        Segment serverFin = segments[^1];
        Segment clientFin = segments[^2];
        segments.RemoveAt(segments.Count - 1);
        segments.Add(serverFin with { Flags = TcpFlags.Ack | TcpFlags.Psh, Payload = Conversation.Bytes(new NoticeResponse([new NoticeResponse.Field((byte)'S', "NOTICE"), new NoticeResponse.Field((byte)'M', "closing")])), Time = serverFin.Time });
        segments.Add(clientFin with { Sequence = clientFin.Sequence + 1, Flags = TcpFlags.Rst, Time = serverFin.Time.AddMilliseconds(1) });

        var output = new RecordingOutput();
        var decoder = new CaptureDecoder([5432], server: null, output);
        foreach (Segment segment in segments)
        {
            decoder.Add(segment.ToTcp());
        }

        Assert.Equal(["event seen", .. ConversationNames, "B NoticeResponse", "event ended"], output.Lines);
        Assert.Equal("reset", output.Texts[^1]);
        Assert.Equal(0, decoder.HeldBytes);

        // Nothing is left to end at the end of the capture.
        decoder.Finish(Start.AddMinutes(1));
        Assert.Equal(1, output.Lines.Count(line => line == "event ended"));
    }

    [Fact]
    public void ALateRetransmission_AfterTheConnectionEnded_StartsNoConnection()
    {
        // The copies of the client's Query and of the server's last segment come after both FINs
        // (a retransmission the capture saw late); then the ports are used again without a SYN
        // in the capture, at a sequence number far from the bytes the old connection carried:
        // that is a connection of its own.
        List<Segment> segments = new Wire().Segments(Turns, segmentSize: 1460);
        Segment query = segments.Single(s => s.ToServer && s.Payload.Length > 0 && s.Payload[0] == (byte)'Q');
        Segment rows = segments.Last(s => !s.ToServer && s.Payload.Length > 0);
        Segment serverFin = segments[^1];
        segments.Add(query with { Time = serverFin.Time.AddMilliseconds(1) });
        segments.Add(rows with { Time = serverFin.Time.AddMilliseconds(2) });

        var output = new RecordingOutput();
        var decoder = new CaptureDecoder([5432], server: null, output);
        foreach (Segment segment in segments)
        {
            decoder.Add(segment.ToTcp());
        }

        Assert.Equal(["event seen", .. ConversationNames, "event ended"], output.Lines);
        Assert.Equal(1, decoder.Connections);

        decoder.Add((query with { Sequence = query.Sequence - (100u << 20), Time = serverFin.Time.AddSeconds(1) }).ToTcp());
        decoder.Finish(serverFin.Time.AddSeconds(2));
        Assert.Equal(2, decoder.Connections);
        Assert.Equal(["event seen", "event mid-stream", "event resumed", "F Query", "event ended"], output.Lines[^5..]);
    }

    [Fact]
    public void SegmentsOfOtherPorts_AreIgnored()
    {
        var output = new RecordingOutput();
        var decoder = new CaptureDecoder([6432], server: null, output);
        foreach (Segment segment in new Wire().Segments(Turns, segmentSize: 1460))
        {
            decoder.Add(segment.ToTcp());
        }

        decoder.Finish(Start);
        Assert.Empty(output.Lines);
        Assert.Equal(0, decoder.Connections);
        Assert.True(decoder.Ignored > 0);
    }

    private static void Feed(RecordingOutput output, IEnumerable<Segment> segments)
    {
        var decoder = new CaptureDecoder([5432], server: null, output);
        DateTime last = Start;
        foreach (Segment segment in segments)
        {
            decoder.Add(segment.ToTcp());
            last = segment.Time;
        }

        decoder.Finish(last);
    }

    /// <summary>A captured segment, kept as data (a <see cref="TcpSegment"/> lives only during a call).</summary>
    private sealed record Segment(bool ToServer, uint Sequence, TcpFlags Flags, byte[] Payload, DateTime Time, uint Acknowledgment = 0)
    {
        public bool Syn => (Flags & TcpFlags.Syn) != 0;

        public TcpSegment ToTcp() => ToTcp(Client);

        public TcpSegment ToTcp(IPEndPoint client) => new(Time, ToServer ? client : Server, ToServer ? Server : client, Sequence, Flags, Payload, truncated: false, acknowledgment: Acknowledgment);
    }

    /// <summary>Cuts the turns of a conversation into segments with sequence numbers, as a capture shows them.</summary>
    private sealed class Wire
    {
        private uint _client = 0xFFFF_FF00; // wraps around during the conversation
        private uint _server = 1_000_000;
        private DateTime _time = Start;

        public List<Segment> Segments(IEnumerable<(bool ToServer, byte[] Bytes)> turns, int segmentSize, bool handshake = true)
        {
            var segments = new List<Segment>();
            if (handshake)
            {
                segments.Add(new Segment(true, _client++, TcpFlags.Syn, [], Tick()));
                segments.Add(new Segment(false, _server++, TcpFlags.Syn | TcpFlags.Ack, [], Tick(), _client));
            }

            foreach ((bool toServer, byte[] bytes) in turns)
            {
                for (int offset = 0; offset < bytes.Length; offset += segmentSize)
                {
                    byte[] payload = bytes.AsSpan(offset, Math.Min(segmentSize, bytes.Length - offset)).ToArray();
                    ref uint sequence = ref toServer ? ref _client : ref _server;
                    // Each side acknowledges all the other has sent (it received it, captured or not).
                    segments.Add(new Segment(toServer, sequence, TcpFlags.Ack | TcpFlags.Psh, payload, Tick(), toServer ? _server : _client));
                    sequence += (uint)payload.Length;
                }
            }

            segments.Add(new Segment(true, _client++, TcpFlags.Fin | TcpFlags.Ack, [], Tick(), _server));
            segments.Add(new Segment(false, _server++, TcpFlags.Fin | TcpFlags.Ack, [], Tick(), _client));
            return segments;
        }

        private DateTime Tick() => _time = _time.AddMilliseconds(1);
    }

    /// <summary>Lines such as "F Query" and "event gap", with the texts, sizes and DataRow values seen.</summary>
    private sealed class RecordingOutput : ICaptureOutput
    {
        public List<string> Lines { get; } = [];

        public List<string> Texts { get; } = [];

        public List<long> Bytes { get; } = [];

        public List<string> Values { get; } = [];

        public void Message(long connection, DateTime time, PgReceivedMessage message, DecodeContext context)
        {
            Lines.Add($"{(message.Direction == PgDirection.Frontend ? 'F' : 'B')} {message.Name}");
            Texts.Add("");
            Bytes.Add(message.Length);
            if (message.BackendKind == BackendMessageKind.DataRow)
            {
                foreach (ReadOnlyMemory<byte>? value in ((DataRow)message.ToMessage(context)).Columns)
                {
                    Values.Add(value is { } bytes ? Encoding.ASCII.GetString(bytes.Span) : "NULL");
                }
            }
        }

        public void Event(long connection, DateTime time, CaptureEvent kind, string text, long bytes = 0)
        {
            Lines.Add("event " + TraceCaptureOutput.Name(kind));
            Texts.Add(text);
            Bytes.Add(bytes);
        }
    }
}
