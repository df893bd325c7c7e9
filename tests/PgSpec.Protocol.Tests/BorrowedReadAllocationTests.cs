using System.Buffers;
using System.Collections.Immutable;
using PgSpec.Protocol;

namespace PgSpec.Protocol.Tests;

/// <summary>Reading rows in place (reader, then <see cref="DataRow.View"/>) allocates nothing per message.</summary>
public class BorrowedReadAllocationTests
{
    private const int Rows = 1000;
    private const int Columns = 10;
    private const int ValueSize = 8;

    [Theory]
    [InlineData(0)]
    [InlineData(4096)]
    [InlineData(50)]
    public void ReaderAndDataRowView_AfterWarmUp_AllocateNothing(int segmentSize)
    {
        byte[] stream = CreateStream();
        ReadOnlySequence<byte> sequence = segmentSize == 0 ? new ReadOnlySequence<byte>(stream) : Split(stream, segmentSize);
        var context = new DecodeContext { Phase = PgSessionPhase.Normal };
        var reader = new PgMessageReader(PgDirection.Backend, context);

        // The first pass JIT-compiles the path and sizes the reader's scratch buffer.
        (int warmCount, long warmSum) = ReadAll(reader, context, sequence);
        long before = GC.GetAllocatedBytesForCurrentThread();
        (int count, long sum) = ReadAll(reader, context, sequence);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal((Rows, (long)Rows * Columns * ValueSize), (warmCount, warmSum));
        Assert.Equal((Rows, (long)Rows * Columns * ValueSize), (count, sum));
        Assert.Equal(0, allocated);
    }

    private static (int Count, long Sum) ReadAll(PgMessageReader reader, DecodeContext context, ReadOnlySequence<byte> buffer)
    {
        int count = 0;
        long sum = 0;
        while (reader.TryRead(ref buffer, out PgReceivedMessage message, out _) == PgReadStatus.Message)
        {
            if (message.BackendKind == BackendMessageKind.DataRow && DataRow.View.TryRead(message.Body, context, out DataRow.View row, out _))
            {
                foreach (PgValue value in row.Columns)
                {
                    sum += value.Bytes.Length;
                }

                count++;
            }
        }

        return (count, sum);
    }

    private static byte[] CreateStream()
    {
        var writer = new ArrayBufferWriter<byte>();
        for (int i = 0; i < Rows; i++)
        {
            var columns = ImmutableArray.CreateBuilder<ReadOnlyMemory<byte>?>(Columns);
            for (int c = 0; c < Columns; c++)
            {
                columns.Add(BitConverter.GetBytes((long)i * Columns + c));
            }

            new DataRow(columns.MoveToImmutable()).Encode(writer);
        }

        return writer.WrittenSpan.ToArray();
    }

    private static ReadOnlySequence<byte> Split(byte[] bytes, int segmentSize)
    {
        var first = new Segment(bytes.AsMemory(0, Math.Min(segmentSize, bytes.Length)), 0);
        Segment last = first;
        for (int start = segmentSize; start < bytes.Length; start += segmentSize)
        {
            last = last.Append(bytes.AsMemory(start, Math.Min(segmentSize, bytes.Length - start)));
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
