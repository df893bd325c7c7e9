using System.Buffers.Binary;
using System.ComponentModel;
using System.Text;

namespace PgSpec.Protocol;

/// <summary>Writes big-endian fields into a span sized beforehand; used by generated encoders.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public ref struct PgSpanWriter
{
    private readonly Span<byte> _span;
    private int _position;

    /// <summary>Writes into <paramref name="span"/>.</summary>
    public PgSpanWriter(Span<byte> span)
    {
        _span = span;
        _position = 0;
    }

    /// <summary>Bytes written.</summary>
    public readonly int Position => _position;

    /// <summary>Writes a byte.</summary>
    public void WriteByte(byte value) => _span[_position++] = value;

    /// <summary>Writes an Int16.</summary>
    public void WriteInt16(short value)
    {
        BinaryPrimitives.WriteInt16BigEndian(_span.Slice(_position), value);
        _position += 2;
    }

    /// <summary>Writes an Int32.</summary>
    public void WriteInt32(int value)
    {
        BinaryPrimitives.WriteInt32BigEndian(_span.Slice(_position), value);
        _position += 4;
    }

    /// <summary>Writes an Int64.</summary>
    public void WriteInt64(long value)
    {
        BinaryPrimitives.WriteInt64BigEndian(_span.Slice(_position), value);
        _position += 8;
    }

    /// <summary>Writes bytes.</summary>
    public void WriteBytes(ReadOnlySpan<byte> value)
    {
        value.CopyTo(_span.Slice(_position));
        _position += value.Length;
    }

    /// <summary>Writes a string as UTF-8 and its terminating NUL.</summary>
    public void WriteString(string value)
    {
        _position += Encoding.UTF8.GetBytes(value, _span.Slice(_position));
        _span[_position++] = 0;
    }
}
