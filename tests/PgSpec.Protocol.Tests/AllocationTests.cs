using System.Buffers;

namespace PgSpec.Protocol.Tests;

/// <summary>Reading is allocation-free per message once warmed up.</summary>
public class AllocationTests
{
    private const int Rows = 10000;

    [Fact]
    public void Reader_10000DataRowsThroughTheView_AllocatesNothing()
    {
        byte[] stream = DataRows(Rows);

        // Warm up: JIT, static state, the reader's code paths.
        (long warmBytes, long warmNulls) = ReadAll(new PgMessageReader(PgDirection.Backend), stream);
        Assert.Equal(Expected(Rows), (warmBytes, warmNulls));

        var reader = new PgMessageReader(PgDirection.Backend);
        long before = GC.GetAllocatedBytesForCurrentThread();
        (long bytes, long nulls) = ReadAll(reader, stream);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(Expected(Rows), (bytes, nulls));
        Assert.Equal(0, allocated);
    }

    /// <summary>Rows of three columns: i as text, NULL every third row, and 0..7 bytes.</summary>
    private static byte[] DataRows(int count)
    {
        var writer = new ArrayBufferWriter<byte>();
        for (int i = 0; i < count; i++)
        {
            ReadOnlyMemory<byte>? middle = i % 3 == 0 ? (ReadOnlyMemory<byte>?)null : new byte[] { 1, 2 };
            new DataRow([System.Text.Encoding.ASCII.GetBytes(i.ToString(System.Globalization.CultureInfo.InvariantCulture)), middle, new byte[i % 8]]).Encode(writer);
        }

        return writer.WrittenSpan.ToArray();
    }

    private static (long Bytes, long Nulls) Expected(int count)
    {
        long bytes = 0;
        long nulls = 0;
        for (int i = 0; i < count; i++)
        {
            bytes += i.ToString(System.Globalization.CultureInfo.InvariantCulture).Length + (i % 3 == 0 ? 0 : 2) + (i % 8);
            nulls += i % 3 == 0 ? 1 : 0;
        }

        return (bytes, nulls);
    }

    private static (long Bytes, long Nulls) ReadAll(PgMessageReader reader, byte[] stream)
    {
        var buffer = new ReadOnlySequence<byte>(stream);
        long bytes = 0;
        long nulls = 0;
        int rows = 0;
        while (reader.TryRead(ref buffer, out PgReceivedMessage message, out _) == PgReadStatus.Message)
        {
            if (message.BackendKind != BackendMessageKind.DataRow || !DataRow.View.TryRead(message.Body, reader.Context, out DataRow.View row, out _))
            {
                return (-1, -1);
            }

            foreach (PgValue column in row.Columns)
            {
                bytes += column.Bytes.Length;
                nulls += column.IsNull ? 1 : 0;
            }

            rows++;
        }

        return rows == Rows && buffer.IsEmpty ? (bytes, nulls) : (-2, -2);
    }
}
