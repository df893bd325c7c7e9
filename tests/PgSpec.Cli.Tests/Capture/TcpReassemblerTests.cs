using System.Net;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using PgSpec.Cli.Capture;

namespace PgSpec.Cli.Tests.Capture;

public class TcpReassemblerTests
{
    private static readonly IPEndPoint Client = new(IPAddress.Loopback, 50000);
    private static readonly IPEndPoint Server = new(IPAddress.Loopback, 5432);
    private static readonly DateTime Start = new(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    [Fact]
    public void InOrder_DeliveredAtOnceStraightFromTheSegment()
    {
        byte[] stream = Bytes(300, seed: 1);
        var target = new Recorder();
        var direction = new TcpDirection(target);

        Add(direction, 1000, [], TcpFlags.Syn);
        Assert.Empty(target.Events);
        for (int at = 0; at < 300; at += 100)
        {
            byte[] payload = stream[at..(at + 100)];
            target.Payload = payload;
            Add(direction, 1001 + (uint)at, payload);
            Assert.Equal(at + 100, target.Stream.Count);
        }

        Assert.Equal(["data 100", "data 100", "data 100"], target.Events);
        Assert.Equal(3, target.DeliveredFromThePayload);
        Assert.Equal(stream, target.Stream);
        Assert.False(direction.StartedMidStream);
        Assert.Equal(300, direction.DeliveredBytes);
        Assert.Equal(0, direction.GapBytes);
        Assert.Equal(0, direction.HeldBytes);

        direction.Finish(Start);
        Assert.Equal("end CaptureEnded", target.Events[^1]);
    }

    [Fact]
    public void SynWithPayload_PayloadCountsFromAfterTheSyn()
    {
        byte[] stream = Bytes(20, seed: 2);
        var target = new Recorder();
        var direction = new TcpDirection(target);

        Add(direction, 500, stream[..10], TcpFlags.Syn);
        Add(direction, 511, stream[10..]);

        Assert.Equal(stream, target.Stream);
        Assert.Equal(["data 10", "data 10"], target.Events);
    }

    [Fact]
    public void Reordered_HeldUntilTheHoleIsFilled()
    {
        byte[] stream = Bytes(400, seed: 3);
        var target = new Recorder();
        var direction = new TcpDirection(target);
        Add(direction, 0, [], TcpFlags.Syn);

        Add(direction, 1 + 300, stream[300..400]);
        Add(direction, 1 + 100, stream[100..200]);
        Add(direction, 1 + 200, stream[200..300]);
        Assert.Empty(target.Events);
        Assert.Equal(300, direction.HeldBytes);

        Add(direction, 1, stream[0..100]);
        Assert.Equal(stream, target.Stream);
        Assert.Equal(0, direction.HeldBytes);
        Assert.Equal(400, direction.DeliveredBytes);
    }

    [Fact]
    public void AHoleTheReceiverAcknowledged_IsAGapAtOnce_AndWhatIsHeldAfterItIsDelivered()
    {
        // The receiver had bytes 100..200, the capture did not: its acknowledgment says so.
        byte[] stream = Bytes(400, seed: 40);
        var target = new Recorder();
        var direction = new TcpDirection(target);
        Add(direction, 0, [], TcpFlags.Syn);
        Add(direction, 1, stream[0..100]);
        Add(direction, 1 + 200, stream[200..300]);
        Assert.Equal(["data 100"], target.Events);

        // Acknowledged up to 150: those 50 bytes were lost; 150..200 may still be on their way.
        direction.Acknowledged(1 + 150, Start);
        Assert.Equal(["data 100", "gap 50"], target.Events);
        Assert.Equal(100, direction.HeldBytes);

        direction.Acknowledged(1 + 250, Start);
        Assert.Equal(["data 100", "gap 50", "gap 50", "data 100"], target.Events);
        Assert.Equal(0, direction.HeldBytes);

        // Acknowledging what was delivered, or going back, changes nothing; the tail's loss is a gap too.
        direction.Acknowledged(1 + 300, Start);
        direction.Acknowledged(1, Start);
        Assert.Equal(4, target.Events.Count);
        direction.Acknowledged(1 + 400, Start);
        Assert.Equal("gap 100", target.Events[^1]);
        Assert.Equal(200, direction.GapBytes);

        Add(direction, 1 + 400, stream[0..10]);
        Assert.Equal("data 10", target.Events[^1]);
    }

    [Fact]
    public void AnAcknowledgedFin_IsNoLostByte()
    {
        byte[] stream = Bytes(100, seed: 41);
        var target = new Recorder();
        var direction = new TcpDirection(target);
        Add(direction, 0, [], TcpFlags.Syn);
        Add(direction, 1, stream, TcpFlags.Fin);
        direction.Acknowledged(1 + 100 + 1, Start);

        Assert.Equal(["data 100", "end Fin"], target.Events);
        Assert.Equal(0, direction.GapBytes);
    }

    [Fact]
    public void AnAcknowledgmentBeforeTheStreamStarted_ChangesNothing()
    {
        var target = new Recorder();
        var direction = new TcpDirection(target);
        direction.Acknowledged(12345, Start);
        Add(direction, 12000, Bytes(10, seed: 42));

        Assert.Equal(["data 10"], target.Events);
        Assert.True(direction.StartedMidStream);
    }

    [Fact]
    public void Duplicated_DeliveredOnce()
    {
        byte[] stream = Bytes(300, seed: 4);
        var target = new Recorder();
        var direction = new TcpDirection(target);
        Add(direction, 41, [], TcpFlags.Syn);

        Add(direction, 42, stream[0..100]);
        Add(direction, 42, stream[0..100]);
        Add(direction, 242, stream[200..300]);
        Add(direction, 242, stream[200..300]);
        Assert.Equal(100, direction.HeldBytes);
        Add(direction, 142, stream[100..200]);
        Add(direction, 142, stream[100..200]);
        Add(direction, 242, stream[200..300]);

        Assert.Equal(stream, target.Stream);
        Assert.Equal(300, direction.DeliveredBytes);
        Assert.Equal(0, direction.GapBytes);
    }

    [Fact]
    public void Overlapping_TrimmedBothSides_FirstCopyOfHeldBytesKept()
    {
        byte[] stream = Bytes(100, seed: 5);
        var target = new Recorder();
        var direction = new TcpDirection(target);
        Add(direction, 9, [], TcpFlags.Syn);

        // Held: [40, 60). Then [30, 70) whose middle differs: the held copy wins, both sides are kept.
        Add(direction, 10 + 40, stream[40..60]);
        byte[] other = stream[30..70];
        other.AsSpan(10, 20).Fill(0xEE);
        Add(direction, 10 + 30, other);
        Assert.Equal(40, direction.HeldBytes);

        // In order, overlapping what was delivered on its left and what is held on its right.
        Add(direction, 10, stream[0..20]);
        Add(direction, 10 + 10, stream[10..35]);
        Assert.Equal(70, target.Stream.Count);
        Add(direction, 10 + 65, stream[65..100]);

        Assert.Equal(stream, target.Stream);
        Assert.Equal(100, direction.DeliveredBytes);
        Assert.Equal(0, direction.HeldBytes);
    }

    [Fact]
    public void LostSegment_HoldBoundReached_ExactGapThenTheDataAfterIt()
    {
        byte[] stream = Bytes(200, seed: 6);
        var target = new Recorder();
        var direction = new TcpDirection(target, maxHeldBytes: 100);
        Add(direction, 999, [], TcpFlags.Syn);

        Add(direction, 1000, stream[0..40]);
        // [40, 80) is lost.
        Add(direction, 1080, stream[80..120]);
        Add(direction, 1120, stream[120..160]);
        Assert.Equal(80, direction.HeldBytes);
        Assert.Equal(["data 40"], target.Events);

        // 120 bytes would be held: the hole is given up.
        Add(direction, 1160, stream[160..200]);
        Assert.Equal(["data 40", "gap 40", "data 40", "data 40", "data 40"], target.Events);
        Assert.Equal(stream[0..40].Concat(stream[80..200]), target.Stream);
        Assert.Equal(40, direction.GapBytes);
        Assert.Equal(160, direction.DeliveredBytes);
        Assert.Equal(0, direction.HeldBytes);

        // The lost segment arriving late is old.
        Add(direction, 1040, stream[40..80]);
        Assert.Equal(5, target.Events.Count);
    }

    [Fact]
    public void HoldBound_SegmentBeforeTheHeldOnes_GapEndsAtIt()
    {
        byte[] stream = Bytes(200, seed: 7);
        var target = new Recorder();
        var direction = new TcpDirection(target, maxHeldBytes: 60);
        Add(direction, 0, [], TcpFlags.Syn);

        Add(direction, 1 + 150, stream[150..200]);
        // [0, 100) lost; [100, 150) would be too much to hold and comes before what is held.
        Add(direction, 1 + 100, stream[100..150]);

        Assert.Equal(["gap 100", "data 50", "data 50"], target.Events);
        Assert.Equal(stream[100..200], target.Stream);
    }

    [Fact]
    public void Fin_BeforeMissingData_WaitsForIt_ThenEndsOnce()
    {
        byte[] stream = Bytes(60, seed: 8);
        var target = new Recorder();
        var direction = new TcpDirection(target);
        Add(direction, 99, [], TcpFlags.Syn);

        Add(direction, 100, stream[0..20]);
        Add(direction, 140, stream[40..60], TcpFlags.Fin | TcpFlags.Ack);
        Assert.Equal(["data 20"], target.Events);
        Assert.False(direction.Ended);

        // Data beyond the FIN (its sequence number counts one) is ignored.
        Add(direction, 161, Bytes(10, seed: 9));
        Add(direction, 120, stream[20..40]);
        Assert.Equal(["data 20", "data 20", "data 20", "end Fin"], target.Events);
        Assert.Equal(stream, target.Stream);

        Add(direction, 140, stream[40..60], TcpFlags.Fin | TcpFlags.Ack);
        Add(direction, 160, [1, 2, 3]);
        direction.Finish(Start);
        Assert.Equal(4, target.Events.Count);
    }

    [Fact]
    public void Fin_HeldDataBeyondItIsDropped()
    {
        byte[] stream = Bytes(30, seed: 10);
        var target = new Recorder();
        var direction = new TcpDirection(target);
        Add(direction, 0, [], TcpFlags.Syn);

        Add(direction, 1 + 20, Bytes(50, seed: 11));
        Assert.Equal(50, direction.HeldBytes);
        Add(direction, 1 + 10, [], TcpFlags.Fin);
        Assert.Equal(0, direction.HeldBytes);
        Add(direction, 1, stream[0..10]);

        Assert.Equal(["data 10", "end Fin"], target.Events);
    }

    [Fact]
    public void Finish_HoleBeforeAFin_IsAGapThenTheFinEnds()
    {
        byte[] stream = Bytes(30, seed: 12);
        var target = new Recorder();
        var direction = new TcpDirection(target);
        Add(direction, 0, [], TcpFlags.Syn);

        Add(direction, 1, stream[0..10]);
        Add(direction, 1 + 20, stream[20..30], TcpFlags.Fin);
        direction.Finish(Start.AddSeconds(5));

        Assert.Equal(["data 10", "gap 10", "data 10", "end Fin"], target.Events);
        Assert.Equal(Start.AddSeconds(5), target.LastTimestamp);
        Assert.Equal(0, direction.HeldBytes);
    }

    [Fact]
    public void Finish_HeldDataWithHoles_DeliveredWithGapsThenCaptureEnded()
    {
        byte[] stream = Bytes(100, seed: 13);
        var target = new Recorder();
        var direction = new TcpDirection(target);
        Add(direction, 0, [], TcpFlags.Syn);

        Add(direction, 1 + 20, stream[20..30]);
        Add(direction, 1 + 50, stream[50..100]);
        direction.Finish(Start);

        Assert.Equal(["gap 20", "data 10", "gap 20", "data 50", "end CaptureEnded"], target.Events);
        Assert.Equal(0, direction.HeldBytes);
        Assert.Equal(40, direction.GapBytes);
    }

    [Fact]
    public void Fin_BehindTheDeliveredBytes_IsStaleAndIgnored()
    {
        byte[] stream = Bytes(40, seed: 19);
        var target = new Recorder();
        var direction = new TcpDirection(target);
        Add(direction, 0, [], TcpFlags.Syn);

        Add(direction, 1, stream[0..20]);
        Add(direction, 1, stream[0..18], TcpFlags.Fin);
        Add(direction, 1 + 20, stream[20..40]);
        Assert.False(direction.Ended);
        Add(direction, 1 + 40, [], TcpFlags.Fin);

        Assert.Equal(["data 20", "data 20", "end Fin"], target.Events);
    }

    [Fact]
    public void ZeroHoldBound_OutOfOrderSegment_IsAGapThenDeliveredWithoutHolding()
    {
        byte[] stream = Bytes(30, seed: 20);
        var target = new Recorder();
        var direction = new TcpDirection(target, maxHeldBytes: 0);
        Add(direction, 0, [], TcpFlags.Syn);

        byte[] payload = stream[20..30];
        target.Payload = payload;
        Add(direction, 1 + 20, payload, at: Start.AddSeconds(3));

        Assert.Equal(["gap 20", "data 10"], target.Events);
        Assert.Equal(1, target.DeliveredFromThePayload);
        Assert.Equal(Start.AddSeconds(3), target.LastTimestamp);
        Assert.Equal(0, direction.HeldBytes);
    }

    [Fact]
    public void Gap_CarriesTheTimestampOfTheSegmentThatMadeItCertain()
    {
        var target = new Recorder();
        var direction = new TcpDirection(target, maxHeldBytes: 15);
        Add(direction, 0, [], TcpFlags.Syn, at: Start);

        Add(direction, 1 + 10, new byte[10], at: Start.AddSeconds(1));
        Assert.Empty(target.Events);
        Add(direction, 1 + 20, new byte[10], at: Start.AddSeconds(2));

        Assert.Equal(["gap 10", "data 10", "data 10"], target.Events);
        Assert.All(target.Timestamps, t => Assert.Equal(Start.AddSeconds(2), t));
    }

    [Fact]
    public void Reset_EndsAtOnce_HeldDropped_LaterSegmentsIgnored()
    {
        byte[] stream = Bytes(60, seed: 14);
        var target = new Recorder();
        var direction = new TcpDirection(target);
        Add(direction, 0, [], TcpFlags.Syn);

        Add(direction, 1, stream[0..20]);
        Add(direction, 1 + 40, stream[40..60]);
        Add(direction, 1 + 20, [], TcpFlags.Rst);

        Assert.Equal(["data 20", "end Reset"], target.Events);
        Assert.True(direction.Ended);
        Assert.Equal(0, direction.HeldBytes);

        Add(direction, 1 + 20, stream[20..40]);
        Add(direction, 1 + 20, [], TcpFlags.Fin);
        direction.Finish(Start);
        Assert.Equal(2, target.Events.Count);
    }

    [Fact]
    public void SequenceNumbers_WrapAround()
    {
        byte[] stream = Bytes(400, seed: 15);
        var target = new Recorder();
        var direction = new TcpDirection(target, maxHeldBytes: 1000);
        uint isn = uint.MaxValue - 150;
        Add(direction, isn, [], TcpFlags.Syn);

        // Segments of 100 bytes: the second one crosses 2^32, the last ones lie after it.
        uint At(int offset) => unchecked(isn + 1 + (uint)offset);
        Add(direction, At(300), stream[300..400], TcpFlags.Fin);
        Add(direction, At(100), stream[100..200]);
        Add(direction, At(200), stream[200..300]);
        Add(direction, At(100), stream[100..200]);
        Assert.Equal(300, direction.HeldBytes);
        Add(direction, At(0), stream[0..100]);
        Add(direction, At(50), stream[50..150]);

        Assert.Equal(stream, target.Stream);
        Assert.Equal("end Fin", target.Events[^1]);
        Assert.Equal(0, direction.GapBytes);
    }

    [Fact]
    public void SequenceNumbers_WrapAround_HoleDeclaredLostAcrossTheWrap()
    {
        byte[] stream = Bytes(300, seed: 16);
        var target = new Recorder();
        var direction = new TcpDirection(target, maxHeldBytes: 150);
        uint isn = uint.MaxValue - 50;
        Add(direction, isn, [], TcpFlags.Syn);

        uint At(int offset) => unchecked(isn + 1 + (uint)offset);
        Add(direction, At(100), stream[100..200]);
        Add(direction, At(200), stream[200..300]);

        Assert.Equal(["gap 100", "data 100", "data 100"], target.Events);
        Assert.Equal(stream[100..300], target.Stream);
    }

    [Fact]
    public void MidStream_FirstDataFixesTheStart_EarlierSegmentDropped()
    {
        byte[] stream = Bytes(100, seed: 17);
        var target = new Recorder();
        var direction = new TcpDirection(target);

        Add(direction, 4000, [], TcpFlags.Ack);
        Add(direction, 5000 + 50, stream[50..80]);
        Assert.True(direction.StartedMidStream);
        Assert.Equal(["data 30"], target.Events);

        Add(direction, 5000 + 80, stream[80..100]);
        Add(direction, 5000, stream[0..50]);
        Add(direction, 5000 + 40, stream[40..60]);

        Assert.Equal(stream[50..100], target.Stream);
        Assert.Equal(0, direction.GapBytes);
        Assert.Equal(0, direction.HeldBytes);
    }

    [Fact]
    public void Truncated_CapturedBytesThenAGapOfTheCutOffSize()
    {
        byte[] stream = Bytes(100, seed: 18);
        var target = new Recorder();
        var direction = new TcpDirection(target);
        Add(direction, 0, [], TcpFlags.Syn);

        Add(direction, 1, stream[0..10], truncated: true, wireLength: 40);
        Add(direction, 1 + 40, stream[40..60]);
        // A retransmission of the cut segment is old by now.
        Add(direction, 1, stream[0..40]);
        Assert.Equal(["data 10", "gap 30", "data 20"], target.Events);

        // Out of order: held with its cut-off part until the hole before it is filled.
        Add(direction, 1 + 80, stream[80..90], truncated: true, wireLength: 20);
        Assert.Equal(10, direction.HeldBytes);
        Add(direction, 1 + 60, stream[60..80]);
        Assert.Equal(["data 10", "gap 30", "data 20", "data 20", "data 10", "gap 10"], target.Events);
        Assert.Equal(60, direction.DeliveredBytes);
        Assert.Equal(40, direction.GapBytes);
        Assert.Equal(0, direction.HeldBytes);
    }

    [Fact]
    public void Truncated_WireLengthShorterThanThePayload_IsRejected()
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(
            () => new TcpSegment(Start, Client, Server, 1, TcpFlags.Ack, new byte[10], truncated: true, wireLength: 5));
        Assert.Equal("wireLength", error.ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => new TcpDirection(new Recorder(), maxHeldBytes: -1));
    }

    [Fact]
    public void FarAhead_IsAGapThenData_FarBehind_IsOld()
    {
        var target = new Recorder();
        var direction = new TcpDirection(target);
        Add(direction, 0, [], TcpFlags.Syn);
        Add(direction, 1, [1, 2, 3]);
        Add(direction, 1 + 50, [9, 9]);

        // 1.5 GiB behind, then ahead: neither held nor looped over.
        const uint far = 3u << 29;
        Add(direction, unchecked(4 - far), [7, 7, 7]);
        Assert.Equal(["data 3"], target.Events);
        Add(direction, 4 + far, [5, 6]);

        Assert.Equal(["data 3", "gap 47", "data 2", $"gap {far - 49}", "data 2"], target.Events);
        Assert.Equal(0, direction.HeldBytes);
        Assert.Equal(far - 2, direction.GapBytes);
    }

    [Fact]
    public void FinFarAhead_HeldDataThenAGapUpToIt()
    {
        var target = new Recorder();
        var direction = new TcpDirection(target);
        Add(direction, 0, [], TcpFlags.Syn);
        Add(direction, 1 + 10, [1, 2, 3, 4, 5]);

        const uint far = 3u << 29;
        Add(direction, 1 + far, [], TcpFlags.Fin);

        Assert.Equal(["gap 10", "data 5", $"gap {far - 15}", "end Fin"], target.Events);
        Assert.Equal(far - 5, direction.GapBytes);
    }

    [Fact]
    public void Truncated_OutOfOrder_CutOffBytesTakeNoRoomInTheHoldBound()
    {
        byte[] stream = Bytes(100, seed: 21);
        var target = new Recorder();
        var direction = new TcpDirection(target, maxHeldBytes: 20);
        Add(direction, 0, [], TcpFlags.Syn);

        Add(direction, 1 + 10, stream[10..20], truncated: true, wireLength: 80);
        Assert.Equal(10, direction.HeldBytes);
        Add(direction, 1 + 90, stream[90..100]);
        Assert.Equal(20, direction.HeldBytes);
        Assert.Empty(target.Events);

        Add(direction, 1, stream[0..10]);
        Assert.Equal(["data 10", "data 10", "gap 70", "data 10"], target.Events);
        Assert.Equal(0, direction.HeldBytes);
    }

    [Fact]
    public void RandomPermutationsAndDuplicates_NothingLost_TheStreamExactly()
    {
        for (int seed = 0; seed < 300; seed++)
        {
            var random = new Random(seed);
            byte[] stream = Bytes(random.Next(0, 3000), seed);
            uint isn = random.Next(3) == 0 ? uint.MaxValue - (uint)random.Next(0, 2000) : (uint)random.Next();
            var segments = Shuffle(random, Cut(random, stream.Length, duplicates: true));
            bool fin = random.Next(2) == 0;

            var target = new Recorder();
            var direction = new TcpDirection(target);
            Add(direction, isn, [], TcpFlags.Syn);
            foreach (var (from, to) in segments)
            {
                Add(direction, unchecked(isn + 1 + (uint)from), stream[from..to]);
            }

            if (fin)
            {
                Add(direction, unchecked(isn + 1 + (uint)stream.Length), [], TcpFlags.Fin);
            }

            direction.Finish(Start);
            Assert.True(stream.AsSpan().SequenceEqual(target.Stream.ToArray()), $"seed {seed}");
            Assert.Equal(0, direction.GapBytes);
            Assert.Equal(0, direction.HeldBytes);
            Assert.Equal(fin ? "end Fin" : "end CaptureEnded", target.Events[^1]);
        }
    }

    [Fact]
    public void RandomPermutationsWithLosses_DeliveredAndGapsCoverTheStream_EachByteInItsPlace()
    {
        for (int seed = 0; seed < 300; seed++)
        {
            var random = new Random(seed);
            byte[] stream = Bytes(random.Next(1, 4000), seed);
            uint isn = random.Next(3) == 0 ? uint.MaxValue - (uint)random.Next(0, 3000) : (uint)random.Next();
            var segments = Shuffle(random, Cut(random, stream.Length, duplicates: random.Next(2) == 0));
            int bound = random.Next(0, 800);

            // Some ranges are lost: every segment that overlaps one of them.
            var lost = new List<(int From, int To)>();
            for (int i = random.Next(0, 4); i > 0; i--)
            {
                int from = random.Next(0, stream.Length);
                lost.Add((from, Math.Min(stream.Length, from + random.Next(1, 200))));
            }

            var target = new Recorder();
            var direction = new TcpDirection(target, bound);
            Add(direction, isn, [], TcpFlags.Syn);
            foreach (var (from, to) in segments)
            {
                if (lost.Exists(l => l.From < to && from < l.To))
                {
                    continue;
                }

                Add(direction, unchecked(isn + 1 + (uint)from), stream[from..to]);
                Assert.InRange(direction.HeldBytes, 0, bound);
            }

            // The FIN tells where the stream ends, even when its last bytes are lost.
            Add(direction, unchecked(isn + 1 + (uint)stream.Length), [], TcpFlags.Fin);
            direction.Finish(Start);

            Assert.Equal(stream.Length, direction.DeliveredBytes + direction.GapBytes);
            Assert.Equal(stream.Length, target.Position);
            Assert.Equal(0, direction.HeldBytes);
            Assert.Equal("end Fin", target.Events[^1]);

            // Each delivered byte is the stream's byte at that place.
            foreach (var (offset, bytes) in target.Pieces)
            {
                Assert.True(stream.AsSpan(checked((int)offset), bytes.Length).SequenceEqual(bytes), $"seed {seed}, offset {offset}");
            }
        }
    }

    private static void Add(TcpDirection direction, uint sequence, byte[] payload, TcpFlags flags = TcpFlags.Ack, bool truncated = false, int wireLength = -1, DateTime? at = null)
        => direction.Add(new TcpSegment(at ?? Start, Client, Server, sequence, flags | TcpFlags.Ack, payload, truncated, wireLength));

    private static byte[] Bytes(int length, int seed)
    {
        byte[] bytes = new byte[length];
        new Random(seed + 1_000_000).NextBytes(bytes);
        return bytes;
    }

    // The stream cut into segments of random sizes; with duplicates, some are sent again, also cut
    // otherwise (retransmissions that overlap the original segments).
    private static List<(int From, int To)> Cut(Random random, int length, bool duplicates)
    {
        var segments = new List<(int, int)>();
        for (int at = 0; at < length;)
        {
            int size = Math.Min(length - at, random.Next(1, 300));
            segments.Add((at, at + size));
            at += size;
        }

        if (duplicates && length > 0)
        {
            for (int i = random.Next(0, 10); i > 0; i--)
            {
                int from = random.Next(0, length);
                segments.Add((from, Math.Min(length, from + random.Next(1, 400))));
            }
        }

        return segments;
    }

    private static List<(int From, int To)> Shuffle(Random random, List<(int From, int To)> segments)
    {
        var shuffled = segments.ToArray();
        random.Shuffle(shuffled);
        return [.. shuffled];
    }

    /// <summary>Records what a direction gives, and where each piece of data lies in the stream.</summary>
    private sealed class Recorder : IReassemblyTarget
    {
        public List<string> Events { get; } = [];

        public List<byte> Stream { get; } = [];

        public List<(long Offset, byte[] Bytes)> Pieces { get; } = [];

        public long Position { get; private set; }

        public DateTime LastTimestamp => Timestamps[^1];

        public List<DateTime> Timestamps { get; } = [];

        /// <summary>When set, counts the deliveries whose span lies in this array.</summary>
        public byte[]? Payload { get; set; }

        public int DeliveredFromThePayload { get; private set; }

        public void OnData(ReadOnlySpan<byte> data, DateTime timestamp)
        {
            Assert.False(data.IsEmpty);
            Events.Add($"data {data.Length}");
            Stream.AddRange(data);
            Pieces.Add((Position, data.ToArray()));
            Position += data.Length;
            Timestamps.Add(timestamp);
            if (Payload is not null
                && Unsafe.AreSame(ref MemoryMarshal.GetReference(data), ref MemoryMarshal.GetArrayDataReference(Payload)))
            {
                DeliveredFromThePayload++;
            }
        }

        public void OnGap(long missingBytes, DateTime timestamp)
        {
            Assert.True(missingBytes > 0);
            Events.Add($"gap {missingBytes}");
            Position += missingBytes;
            Timestamps.Add(timestamp);
        }

        public void OnEnd(TcpEnd how, DateTime timestamp)
        {
            Events.Add($"end {how}");
            Timestamps.Add(timestamp);
        }
    }
}
