using System.Buffers;
using BenchmarkDotNet.Attributes;
using PgSpec.Protocol;

namespace PgSpec.Benchmarks;

/// <summary>
/// Frames and decodes the 64 MiB DataRow stream with <see cref="PgMessageReader"/>, reading each
/// row either in place (<see cref="DataRow.View"/>) or into an owned <see cref="DataRow"/>.
/// Times and allocations are per message.
/// </summary>
[MemoryDiagnoser]
[Config(typeof(BenchmarkConfig))]
public class DecodeBenchmarks
{
    private byte[] _stream = [];
    private byte[] _varied = [];
    private ReadOnlySequence<byte> _singleSegment;
    private ReadOnlySequence<byte> _multiSegment;
    private DecodeContext _context = new();
    private PgMessageReader _reader = null!;
    private PgMessageReader _framingOnlyReader = null!;

    [GlobalSetup]
    public void Setup()
    {
        _stream = DataRowStream.CreateStream(DataRowStream.CreateRows());
        _varied = DataRowStream.CreateStream(DataRowStream.CreateVariedRows());
        _singleSegment = DataRowStream.SingleSegment(_stream);
        _multiSegment = DataRowStream.MultiSegment(_stream, DataRowStream.SegmentSize);
        _context = new DecodeContext { Phase = PgSessionPhase.Normal };
        _reader = new PgMessageReader(PgDirection.Backend, _context);
        _framingOnlyReader = new PgMessageReader(PgDirection.Backend, _context) { Validate = false };
    }

    /// <summary>The reader over the stream as one span (validating), then a view that trusts its validation.</summary>
    [Benchmark(OperationsPerInvoke = DataRowStream.MessageCount)]
    public long BorrowedSpan() => ReadBorrowedSpan(_stream);

    /// <summary>As <see cref="BorrowedSpan"/>, on rows whose layout changes from each row to the next (<see cref="DataRowStream.CreateVariedRows"/>): every row walked.</summary>
    [Benchmark(OperationsPerInvoke = DataRowStream.MessageCount)]
    public long BorrowedSpanChangingLayouts() => ReadBorrowedSpan(_varied);

    /// <summary>As <see cref="BorrowedSpan"/>, through the reader's <see cref="ReadOnlySequence{T}"/> overload, one segment.</summary>
    [Benchmark(OperationsPerInvoke = DataRowStream.MessageCount)]
    public long BorrowedSingleSegment() => ReadBorrowed(_reader, _singleSegment);

    /// <summary>As <see cref="BorrowedSingleSegment"/>, over 4 KiB segments: straddling bodies go through the reader's scratch buffer.</summary>
    [Benchmark(OperationsPerInvoke = DataRowStream.MessageCount)]
    public long BorrowedMultiSegment() => ReadBorrowed(_reader, _multiSegment);

    /// <summary>Framing and naming only, for comparison: the body is neither validated nor read.</summary>
    [Benchmark(OperationsPerInvoke = DataRowStream.MessageCount)]
    public long FrameOnlySingleSegment()
    {
        ReadOnlySequence<byte> buffer = _singleSegment;
        long sum = 0;
        int count = 0;
        PgReadStatus status;
        PgDecodeError error;
        while ((status = _framingOnlyReader.TryRead(ref buffer, out PgReceivedMessage message, out error)) == PgReadStatus.Message)
        {
            sum += message.Body.Length;
            count++;
        }

        CheckEnd(status, error, count, buffer.Length);
        return sum;
    }

    /// <summary>A framing reader, then each body decoded (and validated, once) into an owned <see cref="DataRow"/>.</summary>
    [Benchmark(OperationsPerInvoke = DataRowStream.MessageCount)]
    public long OwnedSingleSegment() => ReadOwned(_framingOnlyReader, _singleSegment);

    private long ReadBorrowedSpan(byte[] stream)
    {
        PgMessageReader reader = _reader;
        ReadOnlySpan<byte> buffer = stream;
        long sum = 0;
        int count = 0;
        PgReadStatus status;
        PgDecodeError error;
        while ((status = reader.TryRead(buffer, out int consumed, out PgReceivedMessage message, out error)) == PgReadStatus.Message)
        {
            buffer = buffer.Slice(consumed);

            // Read throws for any other message than a DataRow.
            foreach (PgValue value in DataRow.View.Read(message).Columns)
            {
                sum += value.Bytes.Length;
            }

            count++;
        }

        CheckEnd(status, error, count, buffer.Length);
        return sum;
    }

    private static long ReadBorrowed(PgMessageReader reader, ReadOnlySequence<byte> buffer)
    {
        long sum = 0;
        int count = 0;
        PgReadStatus status;
        PgDecodeError error;
        while ((status = reader.TryRead(ref buffer, out PgReceivedMessage message, out error)) == PgReadStatus.Message)
        {
            foreach (PgValue value in DataRow.View.Read(message).Columns)
            {
                sum += value.Bytes.Length;
            }

            count++;
        }

        CheckEnd(status, error, count, buffer.Length);
        return sum;
    }

    private long ReadOwned(PgMessageReader reader, ReadOnlySequence<byte> buffer)
    {
        long sum = 0;
        int count = 0;
        PgReadStatus status;
        PgDecodeError error;
        while ((status = reader.TryRead(ref buffer, out PgReceivedMessage message, out error)) == PgReadStatus.Message)
        {
            if (message.BackendKind != BackendMessageKind.DataRow)
            {
                throw Unexpected(message.BackendKind);
            }

            if (!DataRow.TryDecode(message.Body, _context, out DataRow? row, out error))
            {
                throw new PgProtocolException(error);
            }

            foreach (ReadOnlyMemory<byte>? value in row.Columns)
            {
                sum += value?.Length ?? 0;
            }

            count++;
        }

        CheckEnd(status, error, count, buffer.Length);
        return sum;
    }

    private static void CheckEnd(PgReadStatus status, PgDecodeError error, int count, long left)
    {
        if (status == PgReadStatus.Malformed)
        {
            throw new PgProtocolException(error);
        }

        if (count != DataRowStream.MessageCount || left != 0)
        {
            throw new InvalidOperationException($"read {count} of {DataRowStream.MessageCount} messages; {left} bytes left");
        }
    }

    private static InvalidOperationException Unexpected(BackendMessageKind kind) => new($"expected DataRow, read {kind}");
}
