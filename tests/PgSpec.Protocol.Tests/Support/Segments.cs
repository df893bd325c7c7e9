using System.Buffers;

namespace PgSpec.Protocol.Tests.Support;

/// <summary>Builds multi-segment <see cref="ReadOnlySequence{T}"/>s, as a pipe hands them out.</summary>
public static class Segments
{
    /// <summary>
    /// <paramref name="data"/> cut at <paramref name="cuts"/> (positions in 0..data.Length, any order,
    /// repeats give empty segments). Each segment is a copy, so no two share an array.
    /// </summary>
    public static ReadOnlySequence<byte> Split(byte[] data, IEnumerable<int> cuts)
    {
        int[] points = [0, .. cuts.Select(c => Math.Clamp(c, 0, data.Length)).Order(), data.Length];
        Segment first = new(data.AsSpan(points[0], points[1] - points[0]).ToArray(), 0);
        Segment last = first;
        for (int i = 1; i < points.Length - 1; i++)
        {
            last = last.Append(data.AsSpan(points[i], points[i + 1] - points[i]).ToArray());
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    /// <summary>The ends of each segment, as stream offsets.</summary>
    public static List<long> Ends(ReadOnlySequence<byte> sequence)
    {
        var ends = new List<long>();
        long end = 0;
        foreach (ReadOnlyMemory<byte> memory in sequence)
        {
            end += memory.Length;
            ends.Add(end);
        }

        return ends;
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
