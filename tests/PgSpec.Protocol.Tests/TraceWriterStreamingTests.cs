using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using PgSpec.Protocol;

namespace PgSpec.Protocol.Tests;

/// <summary>
/// <see cref="PgTraceWriter"/> streams: a message of any size is escaped through a bounded buffer
/// into its output, so tracing it costs a bounded amount of memory beyond the message itself,
/// and the bytes written are those of libpq's format.
/// </summary>
public class TraceWriterStreamingTests
{
    private const long AllocationBudget = 2 * 1024 * 1024;

    [Theory]
    [InlineData(1, 64 * 1024 * 1024)]
    [InlineData(65535, 1024)]
    public void DataRow_ManyMegabytes_StreamsExactBytesWithBoundedAllocation(int columns, int columnSize)
    {
        byte[] block = Pattern(columnSize);
        byte[] body = new byte[2 + columns * (4L + columnSize)];
        BinaryPrimitives.WriteInt16BigEndian(body, (short)(ushort)columns);
        for (int i = 0, offset = 2; i < columns; i++, offset += 4 + columnSize)
        {
            BinaryPrimitives.WriteInt32BigEndian(body.AsSpan(offset), columnSize);
            block.CopyTo(body.AsSpan(offset + 4));
        }

        (byte[] escapedBlock, int repeats) = EscapedPattern(columnSize);
        byte[] columnHeader = Encoding.ASCII.GetBytes(" " + columnSize.ToString(CultureInfo.InvariantCulture) + " '");
        byte[] quote = "'"u8.ToArray();
        byte[] newline = "\n"u8.ToArray();
        var output = new VerifyingStream(Expected());
        var writer = new PgTraceWriter(output);
        Warm();

        long before = GC.GetAllocatedBytesForCurrentThread();
        bool traced = PgTrace.TryTrace(PgDirection.Backend, (byte)'D', body, null, writer, out PgDecodeError error);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.True(traced, error.ToString());
        output.AssertComplete();
        Assert.True(allocated < AllocationBudget, $"tracing a {body.Length:N0}-byte DataRow allocated {allocated:N0} bytes");
        Assert.True(output.LargestWrite <= PgTraceWriter.MaxBufferSize, $"a write of {output.LargestWrite:N0} bytes");

        IEnumerable<ReadOnlyMemory<byte>> Expected()
        {
            yield return Encoding.ASCII.GetBytes("B\t" + (body.Length + 4).ToString(CultureInfo.InvariantCulture) + "\tDataRow\t " + columns.ToString(CultureInfo.InvariantCulture));
            for (int i = 0; i < columns; i++)
            {
                yield return columnHeader;
                for (int j = 0; j < repeats; j++)
                {
                    yield return escapedBlock;
                }

                yield return quote;
            }

            yield return newline;
        }
    }

    [Fact]
    public void CopyData_LargeAndQueryString_StreamExactBytesWithBoundedAllocation()
    {
        // CopyData's bytes are escaped; a Query's string is written raw, whatever its bytes.
        byte[] data = Pattern(48 * 1024 * 1024);
        byte[] text = new byte[48 * 1024 * 1024 + 1];
        for (int i = 0; i < text.Length - 1; i++)
        {
            text[i] = (byte)(0x80 + (i % 0x7f)); // no NUL, mostly outside ASCII
        }

        (byte[] escapedBlock, int repeats) = EscapedPattern(data.Length);
        var copyOutput = new VerifyingStream([Encoding.ASCII.GetBytes($"F\t{data.Length + 4}\tCopyData\t '"), .. Enumerable.Repeat<ReadOnlyMemory<byte>>(escapedBlock, repeats), "'\n"u8.ToArray()]);
        var queryOutput = new VerifyingStream([Encoding.ASCII.GetBytes($"F\t{text.Length + 4}\tQuery\t \""), text.AsMemory(0, text.Length - 1), "\"\n"u8.ToArray()]);
        var copyWriter = new PgTraceWriter(copyOutput);
        var queryWriter = new PgTraceWriter(queryOutput);
        Warm();

        long before = GC.GetAllocatedBytesForCurrentThread();
        bool copied = PgTrace.TryTrace(PgDirection.Frontend, (byte)'d', data, null, copyWriter, out PgDecodeError copyError);
        bool queried = PgTrace.TryTrace(PgDirection.Frontend, (byte)'Q', text, null, queryWriter, out PgDecodeError queryError);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.True(copied, copyError.ToString());
        Assert.True(queried, queryError.ToString());
        copyOutput.AssertComplete();
        queryOutput.AssertComplete();
        Assert.True(allocated < AllocationBudget, $"tracing 96 MB allocated {allocated:N0} bytes");
        Assert.True(Math.Max(copyOutput.LargestWrite, queryOutput.LargestWrite) <= PgTraceWriter.MaxBufferSize);
    }

    [Fact]
    public void SmallMessages_AfterWarmUp_AllocateNothing()
    {
        byte[] error = [(byte)'S', .. "ERROR\0"u8, (byte)'C', .. "42P01\0"u8, (byte)'M', .. "relation \"t\" does not exist\0"u8, 0];
        byte[] row = [0, 3, 0, 0, 0, 1, (byte)'1', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 3, 0, 1, 0xff];
        var writer = new PgTraceWriter(Stream.Null, new PgTraceOptions { Prefix = "17", Timestamps = true });
        TraceBoth();

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            TraceBoth();
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);

        void TraceBoth()
        {
            PgTrace.TryTrace(PgDirection.Backend, (byte)'E', error, null, writer, out _);
            PgTrace.TryTrace(PgDirection.Backend, (byte)'D', row, null, writer, out _);
        }
    }

    [Fact]
    public void Bytes_EveryByteValue_EscapedAsLibpqDoes()
    {
        using var output = new MemoryStream();
        var writer = new PgTraceWriter(output);
        byte[] all = Pattern(256);

        PgTrace.TryTrace(PgDirection.Backend, (byte)'d', all, null, writer, out _);

        string expected = "B\t260\tCopyData\t '" + Encoding.ASCII.GetString(Escape(all)) + "'\n";
        Assert.Equal(expected, Encoding.ASCII.GetString(output.ToArray()));
        Assert.Equal(PgTraceWriter.FormatBytes(all), "'" + Encoding.ASCII.GetString(Escape(all)) + "'");
    }

    /// <summary>Bytes 0, 1, ..., 255, 0, 1, ...: every byte value, printable and not.</summary>
    private static byte[] Pattern(int length)
    {
        byte[] bytes = new byte[length];
        for (int i = 0; i < length; i++)
        {
            bytes[i] = (byte)i;
        }

        return bytes;
    }

    /// <summary>The trace of <see cref="Pattern"/>(<paramref name="length"/>), a multiple of 256: a block of it, and how many times it repeats.</summary>
    private static (byte[] Block, int Repeats) EscapedPattern(int length)
    {
        Assert.Equal(0, length % 256);
        return (Escape(Pattern(256)), length / 256);
    }

    /// <summary>libpq's byte data: printable ASCII as is, every other byte as \xNN (lower-case hex).</summary>
    private static byte[] Escape(ReadOnlySpan<byte> bytes)
    {
        var text = new StringBuilder(bytes.Length * 2);
        foreach (byte b in bytes)
        {
            text.Append(b is >= 0x20 and <= 0x7e ? ((char)b).ToString() : "\\x" + b.ToString("x2", CultureInfo.InvariantCulture));
        }

        return Encoding.ASCII.GetBytes(text.ToString());
    }

    /// <summary>Runs the tracing path once so that JIT compilation and first-use pools do not count.</summary>
    private static void Warm()
    {
        var writer = new PgTraceWriter(Stream.Null);
        PgTrace.TryTrace(PgDirection.Backend, (byte)'D', [0, 1, 0, 0, 0, 2, 0x41, 0x00], null, writer, out _);
        PgTrace.TryTrace(PgDirection.Frontend, (byte)'Q', "SELECT 1\0"u8, null, writer, out _);
    }

    /// <summary>
    /// A stream that checks what is written against the expected bytes as they come, given as a
    /// lazy sequence of pieces, so that neither side holds the whole output. It runs on the tracing
    /// thread, so it allocates nothing per write (nor may the sequence per piece).
    /// </summary>
    private sealed class VerifyingStream(IEnumerable<ReadOnlyMemory<byte>> expected) : Stream
    {
        private readonly IEnumerator<ReadOnlyMemory<byte>> _expected = expected.GetEnumerator();
        private ReadOnlyMemory<byte> _piece;
        private long _position;
        private long _mismatch = -1;
        private bool _overrun;

        public int LargestWrite { get; private set; }

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => _position;

        public override long Position
        {
            get => _position;
            set => throw new NotSupportedException();
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            LargestWrite = Math.Max(LargestWrite, buffer.Length);
            while (buffer.Length > 0)
            {
                if (_piece.IsEmpty && !_expected.MoveNext())
                {
                    _overrun = true;
                    return;
                }

                if (_piece.IsEmpty)
                {
                    _piece = _expected.Current;
                    continue;
                }

                int n = Math.Min(_piece.Length, buffer.Length);
                if (_mismatch < 0 && !buffer[..n].SequenceEqual(_piece.Span[..n]))
                {
                    _mismatch = _position + CommonPrefix(buffer[..n], _piece.Span[..n]);
                }

                _piece = _piece[n..];
                buffer = buffer[n..];
                _position += n;
            }
        }

        public void AssertComplete()
        {
            Assert.True(_mismatch < 0, $"the output differs from libpq's format at byte {_mismatch:N0}");
            Assert.False(_overrun, $"more output than expected after byte {_position:N0}");
            while (_piece.IsEmpty && _expected.MoveNext())
            {
                _piece = _expected.Current;
            }

            Assert.True(_piece.IsEmpty, $"the output ends at byte {_position:N0}, before the expected end");
        }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        private static int CommonPrefix(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
        {
            int i = 0;
            while (i < a.Length && a[i] == b[i])
            {
                i++;
            }

            return i;
        }
    }
}
