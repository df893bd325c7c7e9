using System.Buffers.Binary;
using System.Collections;
using System.Collections.Immutable;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace PgSpec.Protocol;

/// <summary>
/// An immutable list of values that may be NULL (DataRow's columns, Bind's parameters,
/// FunctionCall's arguments), owned: it holds no reference to the buffer it was decoded from.
/// </summary>
/// <remarks>
/// <para>
/// A decoded list is one array: a copy of the values as received (each length word, then its bytes)
/// followed by where each value is, as the check of the values found it. Reading a value reads its place;
/// no value walks the ones before it, and no value has an array or a <see cref="Nullable{T}"/> of its own.
/// </para>
/// <para>
/// A list built from values (<see cref="PgValueArray(ImmutableArray{ReadOnlyMemory{byte}?})"/>, or the
/// implicit conversion from <see cref="ImmutableArray{T}"/>) keeps them as given, without a copy.
/// </para>
/// <para>
/// <see cref="GetValue"/> gives a value as a span, without building a <see cref="ReadOnlyMemory{T}"/>;
/// the indexer and the enumerator give <see cref="ReadOnlyMemory{T}"/>s (null for NULL), slices of the list's
/// own array. The default value is the empty list.
/// </para>
/// </remarks>
[CollectionBuilder(typeof(PgValueArray), nameof(Create))]
public readonly struct PgValueArray : IReadOnlyList<ReadOnlyMemory<byte>?>, IEquatable<PgValueArray>
{
    // Built from values: the values as given (a list from an ImmutableArray shares its array).
    private readonly ReadOnlyMemory<byte>?[]? _items;

    // Decoded: the values as received (each length word, then its bytes), then from _slotsAt (a
    // multiple of 4) the offset of each value's bytes in _data; its length is the word before them.
    private readonly byte[]? _data;
    private readonly int _slotsAt;
    private readonly int _count;

    /// <summary>A list of <paramref name="values"/> (null items are NULLs), sharing their array.</summary>
    public PgValueArray(ImmutableArray<ReadOnlyMemory<byte>?> values)
    {
        _items = values.IsDefaultOrEmpty ? null : ImmutableCollectionsMarshal.AsArray(values);
        _count = _items?.Length ?? 0;
    }

    private PgValueArray(byte[] data, int slotsAt, int count)
    {
        _data = data;
        _slotsAt = slotsAt;
        _count = count;
    }

    /// <summary>The empty list.</summary>
    public static PgValueArray Empty => default;

    /// <summary>A list of <paramref name="values"/> (null items are NULLs), copied.</summary>
    public static PgValueArray Create(params ReadOnlySpan<ReadOnlyMemory<byte>?> values)
        => new(ImmutableArray.Create(values));

    /// <summary>A list of <paramref name="values"/>, sharing their array.</summary>
    public static implicit operator PgValueArray(ImmutableArray<ReadOnlyMemory<byte>?> values) => new(values);

    /// <summary>The number of values.</summary>
    public int Length => _count;

    /// <inheritdoc/>
    int IReadOnlyCollection<ReadOnlyMemory<byte>?>.Count => _count;

    /// <summary>True when the list has no values.</summary>
    public bool IsEmpty => _count == 0;

    /// <summary>The value at <paramref name="index"/>: a slice of the list's own bytes, or null for NULL.</summary>
    public ReadOnlyMemory<byte>? this[int index]
    {
        get
        {
            if ((uint)index >= (uint)_count)
            {
                ThrowIndex(index, _count);
            }

            if (_items is { } items)
            {
                return items[index];
            }

            return Decoded(_data, _slotsAt, index);
        }
    }

    /// <summary>Value <paramref name="index"/> (in range) of a decoded list: its offset from its slot, its length from the word before it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ReadOnlyMemory<byte>? Decoded(byte[]? data, int slotsAt, int index)
    {
        long place = Place(data, slotsAt, index);
        int length = (int)place;
        return length < 0 ? (ReadOnlyMemory<byte>?)null : new ReadOnlyMemory<byte>(data!, (int)(place >> 32), length);
    }

    /// <summary>
    /// Where a decoded value is: its offset in the high 32 bits, its length (-1 for NULL) in the low
    /// ones. Each of the three reads (the slot, the length word it points to, the value) is checked
    /// against the array's length, once: the fields may come from two lists (a list copied while
    /// another thread writes it), and a caller holding one of the values as memory can reach the
    /// array and change what it says.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long Place(byte[]? data, int slotsAt, int index)
    {
        if (data is null)
        {
            // A list read while another thread wrote it, with neither its values nor its array.
            ThrowChanged();
        }

        ref byte first = ref MemoryMarshal.GetArrayDataReference(data);
        nuint slot = (nuint)(uint)slotsAt + ((nuint)(uint)index * sizeof(int));
        if (slot + sizeof(int) > (nuint)data.Length)
        {
            ThrowChanged();
        }

        // From here the array has 4 bytes at least.
        int offset = Unsafe.ReadUnaligned<int>(ref Unsafe.Add(ref first, slot));
        if ((uint)offset - 4 > (uint)data.Length - 4)
        {
            ThrowChanged();
        }

        int word = Unsafe.ReadUnaligned<int>(ref Unsafe.Add(ref first, (nint)(uint)offset - 4));
        int length = BitConverter.IsLittleEndian ? BinaryPrimitives.ReverseEndianness(word) : word;

        // -1 (NULL) up to the bytes left after the offset.
        if ((uint)(length + 1) > (uint)(data.Length - offset + 1))
        {
            ThrowChanged();
        }

        return ((long)offset << 32) | (uint)length;
    }

    // Not NoInlining: the JIT then sees that the call never returns, and keeps the values of a
    // reading loop in registers instead of saving them for after it.
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void ThrowChanged()
        => throw new InvalidOperationException("the list's array is not as it was made: it was changed through one of its values' memory, or the list was read while another thread wrote it");

    /// <summary>The value at <paramref name="index"/> as a span (<see cref="PgValue.IsNull"/> for NULL), read in place.</summary>
    public PgValue GetValue(int index)
    {
        if ((uint)index >= (uint)_count)
        {
            ThrowIndex(index, _count);
        }

        if (_items is { } items)
        {
            return items[index] is { } value ? new PgValue(value.Span) : PgValue.Null;
        }

        byte[]? data = _data;
        long place = Place(data, _slotsAt, index);
        int length = (int)place;
        return length < 0
            ? PgValue.Null
            : new PgValue(MemoryMarshal.CreateReadOnlySpan(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(data!), (nint)(ulong)(place >>> 32)), length));
    }

    /// <summary>The values as an <see cref="ImmutableArray{T}"/> (slices of the list's bytes, not copies).</summary>
    public ImmutableArray<ReadOnlyMemory<byte>?> ToImmutableArray()
    {
        if (_items is { } items)
        {
            return ImmutableCollectionsMarshal.AsImmutableArray(items);
        }

        if (_count == 0)
        {
            return ImmutableArray<ReadOnlyMemory<byte>?>.Empty;
        }

        var values = new ReadOnlyMemory<byte>?[_count];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = this[i];
        }

        return ImmutableCollectionsMarshal.AsImmutableArray(values);
    }

    /// <summary>Enumerates the values (null for NULL).</summary>
    public Enumerator GetEnumerator() => new(this);

    IEnumerator<ReadOnlyMemory<byte>?> IEnumerable<ReadOnlyMemory<byte>?>.GetEnumerator() => GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Value equality: the same number of values, each NULL where the other's is, with the same bytes.</summary>
    public bool Equals(PgValueArray other)
    {
        if (_count != other._count)
        {
            return false;
        }

        for (int i = 0; i < _count; i++)
        {
            PgValue a = GetValue(i);
            PgValue b = other.GetValue(i);
            if (a.IsNull != b.IsNull || !a.Bytes.SequenceEqual(b.Bytes))
            {
                return false;
            }
        }

        return true;
    }

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is PgValueArray other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode()
    {
        var hash = new HashCode();
        hash.Add(_count);
        for (int i = 0; i < _count; i++)
        {
            PgValue value = GetValue(i);
            if (value.IsNull)
            {
                hash.Add(-1);
            }
            else
            {
                var bytes = new HashCode();
                bytes.AddBytes(value.Bytes);
                hash.Add(bytes.ToHashCode());
            }
        }

        return hash.ToHashCode();
    }

    /// <summary>Value equality.</summary>
    public static bool operator ==(PgValueArray left, PgValueArray right) => left.Equals(right);

    /// <summary>Value inequality.</summary>
    public static bool operator !=(PgValueArray left, PgValueArray right) => !left.Equals(right);

    /// <summary>The values in brackets, each as bytes are traced (NULL for NULL).</summary>
    public override string ToString()
    {
        var text = new StringBuilder("[");
        for (int i = 0; i < _count; i++)
        {
            if (i > 0)
            {
                text.Append(", ");
            }

            PgValue value = GetValue(i);
            text.Append(value.IsNull ? "NULL" : PgTraceWriter.FormatBytes(value.Bytes));
        }

        return text.Append(']').ToString();
    }

    /// <summary>
    /// A decoded list of <paramref name="count"/> values, <paramref name="values"/> (each length word
    /// and its bytes) as <see cref="PgSpanReader"/>'s walk has checked them: one new array, a copy of
    /// them and the offset of each value's bytes in it. <paramref name="recorded"/> has the places the
    /// walk recorded (offsets <paramref name="origin"/> bytes more than in the copy, high 32 bits;
    /// one per value), or is empty: the copy is then walked for them.
    /// </summary>
    internal static PgValueArray FromChecked(ReadOnlySpan<byte> values, int count, ReadOnlySpan<long> recorded, int origin)
    {
        int slotsAt = (values.Length + 3) & ~3;
        byte[] data = new byte[slotsAt + (count * sizeof(int))];
        values.CopyTo(data);
        Span<int> offsets = MemoryMarshal.Cast<byte, int>(data.AsSpan(slotsAt));
        if (recorded.Length == offsets.Length)
        {
            for (int i = 0; i < offsets.Length; i++)
            {
                offsets[i] = (int)(recorded[i] >> 32) - origin;
            }
        }
        else
        {
            int position = 0;
            for (int i = 0; i < offsets.Length; i++)
            {
                int length = BinaryPrimitives.ReadInt32BigEndian(values.Slice(position));
                position += 4;
                offsets[i] = position;
                position += Math.Max(length, 0);
            }
        }

        return new PgValueArray(data, slotsAt, count);
    }

    /// <summary>Whether a list of <paramref name="count"/> values in <paramref name="length"/> bytes fits in one array.</summary>
    internal static bool Fits(int count, int length) => (((long)length + 3) & ~3L) + ((long)count * sizeof(int)) <= Array.MaxLength;

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void ThrowIndex(int index, int count)
        => throw new ArgumentOutOfRangeException(nameof(index), index, $"the list has {count} values");

    /// <summary>Enumerates a <see cref="PgValueArray"/>.</summary>
    public struct Enumerator : IEnumerator<ReadOnlyMemory<byte>?>
    {
        private readonly PgValueArray _list;
        private int _index;

        internal Enumerator(PgValueArray list)
        {
            _list = list;
            _index = -1;
        }

        /// <summary>The current value (null for NULL).</summary>
        public readonly ReadOnlyMemory<byte>? Current
        {
            get
            {
                PgValueArray list = _list;
                if ((uint)_index >= (uint)list._count)
                {
                    ThrowIndex(_index, list._count);
                }

                return list._items is { } items ? items[_index] : Decoded(list._data, list._slotsAt, _index);
            }
        }

        readonly object? IEnumerator.Current => Current;

        /// <summary>Moves to the next value.</summary>
        public bool MoveNext() => ++_index < _list._count;

        /// <summary>Starts again.</summary>
        public void Reset() => _index = -1;

        /// <inheritdoc/>
        public readonly void Dispose()
        {
        }
    }
}
