using System.Text;

namespace PgSpec.Protocol.Tests;

/// <summary>Trace lines of long values: the same text, written out as it is built.</summary>
public class TraceWriterTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(70_000)]
    [InlineData(300_001)]
    public void Bytes_AnyLength_PrintsWhatFormatBytesGivesInPiecesOfBoundedSize(int size)
    {
        var random = new Random(size);
        byte[] value = new byte[size];
        for (int i = 0; i < size; i++)
        {
            // Runs of printable bytes and of others, of any length.
            value[i] = random.Next(4) == 0 ? (byte)random.Next(256) : (byte)random.Next(0x20, 0x7f);
        }

        using var output = new WriteCountingStream();
        var writer = new PgTraceWriter(output);

        writer.BeginMessage('B', size + 4, "CopyData", maskLength: false, hasFields: true);
        writer.Bytes(value, masked: false);
        writer.EndMessage(size + 4, size + 4, checkLength: true);

        Assert.Equal($"B\t{size + 4}\tCopyData\t {PgTraceWriter.FormatBytes(value)}\n", Encoding.Latin1.GetString(output.ToArray()));
        Assert.True(output.LargestWrite < 80 * 1024, $"a write of {output.LargestWrite} bytes");
    }

    [Fact]
    public void String_LongValue_PrintsItAsReceivedInPiecesOfBoundedSize()
    {
        byte[] value = Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat("SELECT 'é€😀';\n", 20_000)));
        using var output = new WriteCountingStream();
        var writer = new PgTraceWriter(output);

        writer.BeginMessage('F', value.Length + 5, "Query", maskLength: false, hasFields: true);
        writer.String(value, masked: false);
        writer.EndMessage(value.Length + 5, value.Length + 5, checkLength: true);

        byte[] expected = [.. Encoding.ASCII.GetBytes($"F\t{value.Length + 5}\tQuery\t \""), .. value, .. "\"\n"u8];
        Assert.Equal(expected, output.ToArray());
        Assert.True(output.Writes > 1 && output.LargestWrite < 80 * 1024, $"{output.Writes} writes, the largest of {output.LargestWrite} bytes");
    }

    private sealed class WriteCountingStream : MemoryStream
    {
        public int Writes { get; private set; }

        public int LargestWrite { get; private set; }

        public override void Write(ReadOnlySpan<byte> buffer) => Write(buffer.ToArray(), 0, buffer.Length);

        public override void Write(byte[] buffer, int offset, int count)
        {
            Writes++;
            LargestWrite = Math.Max(LargestWrite, count);
            base.Write(buffer, offset, count);
        }
    }
}
