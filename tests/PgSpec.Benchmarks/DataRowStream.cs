using System.Buffers;
using System.Collections.Immutable;
using PgSpec.Protocol;

namespace PgSpec.Benchmarks;

/// <summary>
/// The benchmark input: a 64 MiB stream of DataRow messages, each with ten non-NULL columns of
/// eight bytes, so every message is 5 + 2 + 10 * (4 + 8) = 127 bytes on the wire.
/// </summary>
public static class DataRowStream
{
    /// <summary>Columns per row.</summary>
    public const int ColumnCount = 10;

    /// <summary>Bytes per column value.</summary>
    public const int ColumnSize = 8;

    /// <summary>The size of one message on the wire: type byte, length word, column count, columns.</summary>
    public const int MessageSize = 1 + 4 + 2 + (ColumnCount * (4 + ColumnSize));

    /// <summary>How many messages fit in 64 MiB.</summary>
    public const int MessageCount = 64 * 1024 * 1024 / MessageSize;

    /// <summary>The stream's size in bytes.</summary>
    public const int StreamSize = MessageCount * MessageSize;

    /// <summary>How many distinct rows the stream cycles through.</summary>
    public const int DistinctRows = 16;

    /// <summary>The segment size of the multi-segment sequence, as a socket read might deliver it.</summary>
    public const int SegmentSize = 4096;

    /// <summary>Builds <see cref="DistinctRows"/> different owned rows from a fixed seed.</summary>
    public static DataRow[] CreateRows()
    {
        var random = new Random(20240611);
        int[] lengths = [.. Enumerable.Repeat(ColumnSize, ColumnCount)];
        var rows = new DataRow[DistinctRows];
        for (int i = 0; i < rows.Length; i++)
        {
            rows[i] = Row(random, lengths);
        }

        return rows;
    }

    /// <summary>A row of non-NULL columns of <paramref name="lengths"/> bytes from <paramref name="random"/>, <see cref="MessageSize"/> bytes on the wire.</summary>
    private static DataRow Row(Random random, int[] lengths)
    {
        var columns = ImmutableArray.CreateBuilder<ReadOnlyMemory<byte>?>(lengths.Length);
        foreach (int length in lengths)
        {
            byte[] value = new byte[length];
            random.NextBytes(value);
            columns.Add(value);
        }

        var row = new DataRow(columns.MoveToImmutable());
        return row.EncodedLength == MessageSize
            ? row
            : throw new InvalidOperationException($"a row encodes to {row.EncodedLength} bytes, not {MessageSize}");
    }

    /// <summary>
    /// <see cref="DistinctRows"/> rows of the same size as <see cref="CreateRows"/>'s (ten non-NULL
    /// columns, <see cref="MessageSize"/> bytes a message) whose columns are 4 to 12 bytes long, in
    /// a layout that changes from each row to the next: rows of text values, whose lengths vary, where
    /// a reader cannot take a row's layout from the row before it.
    /// </summary>
    public static DataRow[] CreateVariedRows()
    {
        var random = new Random(20261203);
        var rows = new DataRow[DistinctRows];
        int[]? previous = null;
        for (int i = 0; i < rows.Length; i++)
        {
            int[] lengths;
            do
            {
                // Nine lengths drawn, the tenth makes up the row's 80 bytes of values.
                lengths = new int[ColumnCount];
                for (int c = 0; c < ColumnCount - 1; c++)
                {
                    lengths[c] = random.Next(4, 13);
                }

                lengths[^1] = (ColumnCount * ColumnSize) - lengths[..^1].Sum();
            }
            while (lengths[^1] is < 4 or > 12 || (previous is not null && lengths.SequenceEqual(previous)) || (i == rows.Length - 1 && lengths.SequenceEqual(LengthsOf(rows[0]))));

            previous = lengths;
            rows[i] = Row(random, lengths);
        }

        return rows;

        static int[] LengthsOf(DataRow row) => [.. row.Columns.Select(c => c!.Value.Length)];
    }

    /// <summary>Encodes <see cref="MessageCount"/> messages, cycling through <paramref name="rows"/>.</summary>
    public static byte[] CreateStream(DataRow[] rows)
    {
        byte[] stream = new byte[StreamSize];
        Span<byte> rest = stream;
        for (int i = 0; i < MessageCount; i++)
        {
            int written = rows[i % rows.Length].Encode(rest);
            rest = rest.Slice(written);
        }

        if (!rest.IsEmpty)
        {
            throw new InvalidOperationException($"{rest.Length} bytes of the stream were not written");
        }

        return stream;
    }

    /// <summary>The stream as one segment.</summary>
    public static ReadOnlySequence<byte> SingleSegment(byte[] stream) => new(stream);

    /// <summary>
    /// The stream cut into <paramref name="segmentSize"/>-byte segments (without copying), so
    /// that some messages straddle two segments, as they do when read from a socket.
    /// </summary>
    public static ReadOnlySequence<byte> MultiSegment(byte[] stream, int segmentSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(segmentSize, 1);
        var first = new Segment(stream.AsMemory(0, Math.Min(segmentSize, stream.Length)), 0);
        Segment last = first;
        for (int start = segmentSize; start < stream.Length; start += segmentSize)
        {
            last = last.Append(stream.AsMemory(start, Math.Min(segmentSize, stream.Length - start)));
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
