using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace PgSpec.Protocol;

/// <summary>A received value that may be NULL (length -1), read in place.</summary>
public readonly ref struct PgValue
{
    private readonly ReadOnlySpan<byte> _bytes;

    /// <summary>A non-NULL value.</summary>
    public PgValue(ReadOnlySpan<byte> bytes)
    {
        _bytes = bytes;
        IsNull = false;
    }

    private PgValue(bool isNull)
    {
        _bytes = default;
        IsNull = isNull;
    }

    /// <summary>The NULL value.</summary>
    public static PgValue Null => new(isNull: true);

    /// <summary>True for NULL.</summary>
    public bool IsNull { get; }

    /// <summary>The value's bytes (empty for NULL).</summary>
    public ReadOnlySpan<byte> Bytes => _bytes;

    /// <summary>A copy, or null for NULL.</summary>
    public ReadOnlyMemory<byte>? ToMemory() => IsNull ? (ReadOnlyMemory<byte>?)null : _bytes.ToArray();
}

/// <summary>
/// Length-prefixed values (DataRow columns, Bind parameters), read in place. A list taken from the
/// view of a message a <see cref="PgMessageReader"/> read reads the places the reader recorded for
/// its values: use it (and its enumerator) before the reader's next read, and take it again from
/// the view after that (a view may be kept as long as its bytes are: it then walks its values).
/// </summary>
public readonly ref struct PgValueList
{
    private readonly ReadOnlySpan<byte> _items;

    // Where each value is, when the reader's check recorded it (PgSpanReader.RecordValues): its
    // offset from the message body's start (high 32 bits) and its length (low 32 bits, -1 for
    // NULL); _items is then the whole body. Empty when not recorded: _items is the list, and the
    // values are found by walking it. The places are the reader's until it checks another list:
    // a view gives a list with them only while they are its own (PgValuePlaces.IsCurrent).
    private readonly ReadOnlySpan<long> _slots;

    /// <summary>Wraps <paramref name="count"/> validated items.</summary>
    public PgValueList(ReadOnlySpan<byte> items, int count)
    {
        _items = items;
        Count = count;
    }

    /// <summary>
    /// Wraps the validated list at <paramref name="start"/> of <paramref name="body"/>, whose
    /// values' places a reader recorded (one per item, or none): they are read while the reader
    /// still holds them for this message, else the list is walked.
    /// </summary>
    internal PgValueList(ReadOnlySpan<byte> body, int start, int count, PgValuePlaces places)
    {
        Count = count;
        ReadOnlySpan<long> slots = places.Current;
        if (slots.Length == count && count > 0)
        {
            _items = body;
            _slots = slots;
        }
        else
        {
            _items = ListOf(body, start, count);
        }
    }

    /// <summary>The <paramref name="count"/> values at <paramref name="start"/> of a checked body (a list may have fields after it).</summary>
    private static ReadOnlySpan<byte> ListOf(ReadOnlySpan<byte> body, int start, int count)
    {
        int end = start;
        for (int i = 0; i < count; i++)
        {
            end += 4 + Math.Max(BinaryPrimitives.ReadInt32BigEndian(body.Slice(end)), 0);
        }

        return body[start..end];
    }

    /// <summary>The number of values.</summary>
    public int Count { get; }

    /// <summary>
    /// The value at <paramref name="index"/>: read at once when the reader recorded where the
    /// values are (a list from the view of a message read by <see cref="PgMessageReader"/>, valid
    /// until the reader's next read), else found by walking the values before it.
    /// </summary>
    public PgValue this[int index]
    {
        get
        {
            if ((uint)index >= (uint)Count)
            {
                ThrowIndex(index, Count);
            }

            if (!_slots.IsEmpty)
            {
                return At(_items, _slots[index]);
            }

            Enumerator values = GetEnumerator();
            for (int i = 0; i <= index; i++)
            {
                values.MoveNext();
            }

            return values.Current;
        }
    }

    /// <summary>Enumerates the values (with a reader's places, before the reader's next read).</summary>
    public Enumerator GetEnumerator() => new(_items, _slots);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static PgValue At(ReadOnlySpan<byte> items, long slot)
    {
        int length = (int)slot;
        return length < 0 ? PgValue.Null : new PgValue(items.Slice((int)(slot >> 32), length));
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowIndex(int index, int count)
        => throw new ArgumentOutOfRangeException(nameof(index), index, $"the list has {count} values");

    /// <summary>Enumerates a <see cref="PgValueList"/>.</summary>
    public ref struct Enumerator
    {
        // What is left to read: without slots, the enumerator moves through the items by slicing,
        // so that its state is two spans the JIT keeps in registers; with slots, each value is
        // read from its slot (no value waits for the length of the one before it).
        private ReadOnlySpan<byte> _rest;
        private readonly ReadOnlySpan<long> _slots;
        private int _index;
        private PgValue _current;

        internal Enumerator(ReadOnlySpan<byte> items, ReadOnlySpan<long> slots)
        {
            _rest = items;
            _slots = slots;
            _index = -1;
            _current = default;
        }

        /// <summary>The current value.</summary>
        public readonly PgValue Current => _current;

        /// <summary>Moves to the next value.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public bool MoveNext()
        {
            if (!_slots.IsEmpty)
            {
                int next = _index + 1;
                if ((uint)next >= (uint)_slots.Length)
                {
                    return false;
                }

                _index = next;
                _current = At(_rest, _slots[next]);
                return true;
            }

            ReadOnlySpan<byte> rest = _rest;
            if (rest.Length < 4)
            {
                return false;
            }

            int length = BinaryPrimitives.ReadInt32BigEndian(rest);
            if (length < 0)
            {
                _current = PgValue.Null;
                _rest = rest.Slice(4);
            }
            else
            {
                _current = new PgValue(rest.Slice(4, length));
                _rest = rest.Slice(4 + length);
            }

            return true;
        }
    }
}

/// <summary>NUL-terminated strings, read in place (without their NULs).</summary>
public readonly ref struct PgStringList
{
    private readonly ReadOnlySpan<byte> _items;
    private readonly int _count;

    /// <summary>Wraps validated strings; <paramref name="count"/> is -1 when not known.</summary>
    public PgStringList(ReadOnlySpan<byte> items, int count)
    {
        _items = items;
        _count = count;
    }

    /// <summary>The number of strings.</summary>
    public int Count
    {
        get
        {
            if (_count >= 0)
            {
                return _count;
            }

            int n = 0;
            foreach (ReadOnlySpan<byte> _ in this)
            {
                n++;
            }

            return n;
        }
    }

    /// <summary>Enumerates the strings.</summary>
    public Enumerator GetEnumerator() => new(_items);

    /// <summary>Enumerates a <see cref="PgStringList"/>.</summary>
    public ref struct Enumerator
    {
        private readonly ReadOnlySpan<byte> _items;
        private int _position;
        private ReadOnlySpan<byte> _current;

        internal Enumerator(ReadOnlySpan<byte> items)
        {
            _items = items;
            _position = 0;
            _current = default;
        }

        /// <summary>The current string's bytes.</summary>
        public readonly ReadOnlySpan<byte> Current => _current;

        /// <summary>Moves to the next string.</summary>
        public bool MoveNext()
        {
            if (_position >= _items.Length)
            {
                return false;
            }

            int nul = _items.Slice(_position).IndexOf((byte)0);
            _current = _items.Slice(_position, nul);
            _position += nul + 1;
            return true;
        }
    }
}

/// <summary>Int16 values, read in place.</summary>
public readonly ref struct PgInt16List
{
    private readonly ReadOnlySpan<byte> _bytes;

    /// <summary>Wraps validated bytes.</summary>
    public PgInt16List(ReadOnlySpan<byte> bytes) => _bytes = bytes;

    /// <summary>The number of values.</summary>
    public int Count => _bytes.Length / 2;

    /// <summary>The value at <paramref name="index"/>.</summary>
    public short this[int index] => BinaryPrimitives.ReadInt16BigEndian(_bytes.Slice(checked(index * 2), 2));

    /// <summary>Copies the values.</summary>
    public short[] ToArray()
    {
        var values = new short[Count];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = this[i];
        }

        return values;
    }
}

/// <summary>Int32 values, read in place.</summary>
public readonly ref struct PgInt32List
{
    private readonly ReadOnlySpan<byte> _bytes;

    /// <summary>Wraps validated bytes.</summary>
    public PgInt32List(ReadOnlySpan<byte> bytes) => _bytes = bytes;

    /// <summary>The number of values.</summary>
    public int Count => _bytes.Length / 4;

    /// <summary>The value at <paramref name="index"/>.</summary>
    public int this[int index] => BinaryPrimitives.ReadInt32BigEndian(_bytes.Slice(checked(index * 4), 4));
}

/// <summary>OIDs (unsigned Int32), read in place.</summary>
public readonly ref struct PgOidList
{
    private readonly ReadOnlySpan<byte> _bytes;

    /// <summary>Wraps validated bytes.</summary>
    public PgOidList(ReadOnlySpan<byte> bytes) => _bytes = bytes;

    /// <summary>The number of OIDs.</summary>
    public int Count => _bytes.Length / 4;

    /// <summary>The OID at <paramref name="index"/>.</summary>
    public uint this[int index] => BinaryPrimitives.ReadUInt32BigEndian(_bytes.Slice(checked(index * 4), 4));
}
