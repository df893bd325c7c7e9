using System.Buffers;
using BenchmarkDotNet.Attributes;
using PgSpec.Protocol;

namespace PgSpec.Benchmarks;

/// <summary>
/// Encodes as many owned DataRow messages as the decode stream holds (a few distinct rows,
/// reused), into a reused <see cref="ArrayBufferWriter{T}"/> or a preallocated span.
/// Times and allocations are per message.
/// </summary>
[MemoryDiagnoser]
[Config(typeof(BenchmarkConfig))]
public class EncodeBenchmarks
{
    private DataRow[] _rows = [];
    private ArrayBufferWriter<byte> _writer = new();
    private byte[] _destination = [];

    [GlobalSetup]
    public void Setup()
    {
        _rows = DataRowStream.CreateRows();
        _writer = new ArrayBufferWriter<byte>(DataRowStream.StreamSize);
        _destination = new byte[DataRowStream.StreamSize];
    }

    [Benchmark(OperationsPerInvoke = DataRowStream.MessageCount)]
    public int EncodeBufferWriter()
    {
        ArrayBufferWriter<byte> writer = _writer;
        writer.ResetWrittenCount();
        DataRow[] rows = _rows;
        for (int i = 0; i < DataRowStream.MessageCount; i++)
        {
            rows[i % DataRowStream.DistinctRows].Encode(writer);
        }

        return Check(writer.WrittenCount);
    }

    [Benchmark(OperationsPerInvoke = DataRowStream.MessageCount)]
    public int EncodeSpan()
    {
        Span<byte> destination = _destination;
        DataRow[] rows = _rows;
        int position = 0;
        for (int i = 0; i < DataRowStream.MessageCount; i++)
        {
            position += rows[i % DataRowStream.DistinctRows].Encode(destination.Slice(position));
        }

        return Check(position);
    }

    private static int Check(int written)
        => written == DataRowStream.StreamSize
            ? written
            : throw new InvalidOperationException($"wrote {written} bytes, expected {DataRowStream.StreamSize}");
}
