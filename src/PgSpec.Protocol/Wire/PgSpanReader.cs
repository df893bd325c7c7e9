using System.Buffers.Binary;
using System.ComponentModel;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Unicode;

namespace PgSpec.Protocol;

/// <summary>
/// Reads a message body for generated decoders. The checked methods (Read*, Expect*, Check*)
/// return false and record a <see cref="PgDecodeError"/> instead of throwing; the Next* methods
/// are for bodies already validated.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public ref struct PgSpanReader
{
    private readonly ReadOnlySpan<byte> _span;
    private readonly string _message;
    private readonly int _origin;
    private int _position;
    private PgDecodeError _error;

    /// <summary>Reads <paramref name="span"/>, reporting offsets as <paramref name="origin"/> + position.</summary>
    public PgSpanReader(ReadOnlySpan<byte> span, string message, int origin)
    {
        _span = span;
        _message = message;
        _origin = origin;
        _position = 0;
        _error = default;
    }

    /// <summary>Bytes read so far.</summary>
    public readonly int Position => _position;

    /// <summary>Bytes left.</summary>
    public readonly int Remaining => _span.Length - _position;

    /// <summary>The first error met.</summary>
    public readonly PgDecodeError Error => _error;

    /// <summary>Records an error at the current position and returns false.</summary>
    public bool Fail(string? field, string reason) => FailAt(field, _position, reason);

    private bool FailAt(string? field, int position, string reason)
    {
        _error = new PgDecodeError(_message, field, _origin + position, reason);
        return false;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Need(string field, int count, string what)
        => Remaining >= count || NeedFailure(field, _origin + _position, count, what, Remaining);

    // The failures are made out of line, and they record the error themselves: a check that
    // passes is a few instructions, and the caller's frame holds no error of its own to clear on
    // entry (each error built inline would be a temporary with references, zeroed at every call).

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool NeedFailure(string field, int offset, int count, string what, int remaining)
    {
        _error = new(_message, field, offset, $"{what} needs {count} bytes but only {remaining} remain");
        return false;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool ExpectFailure(string field, int offset, long expected, long found)
    {
        _error = new(_message, field, offset, $"expected {expected}, found {found}");
        return false;
    }

    // ---------------------------------------------------------------- checked reads

    /// <summary>Reads a Byte1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool ReadByte1(string field, out byte value)
    {
        value = 0;
        if (!Need(field, 1, "Byte1"))
        {
            return false;
        }

        value = _span[_position++];
        return true;
    }

    /// <summary>Reads an Int8.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool ReadInt8(string field, out sbyte value)
    {
        bool ok = ReadByte1(field, out byte b);
        value = unchecked((sbyte)b);
        return ok;
    }

    /// <summary>Reads an Int16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool ReadInt16(string field, out short value)
    {
        value = 0;
        if (!Need(field, 2, "Int16"))
        {
            return false;
        }

        value = BinaryPrimitives.ReadInt16BigEndian(_span.Slice(_position));
        _position += 2;
        return true;
    }

    /// <summary>Reads an Int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool ReadInt32(string field, out int value)
    {
        value = 0;
        if (!Need(field, 4, "Int32"))
        {
            return false;
        }

        value = BinaryPrimitives.ReadInt32BigEndian(_span.Slice(_position));
        _position += 4;
        return true;
    }

    /// <summary>Reads an Int64.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool ReadInt64(string field, out long value)
    {
        value = 0;
        if (!Need(field, 8, "Int64"))
        {
            return false;
        }

        value = BinaryPrimitives.ReadInt64BigEndian(_span.Slice(_position));
        _position += 8;
        return true;
    }

    /// <summary>Reads a Byte1 that must have a fixed value.</summary>
    public bool ExpectByte1(string field, byte expected)
        => ReadByte1(field, out byte v) && (v == expected || ExpectFailure(field, _origin + _position - 1, expected, v));

    /// <summary>Reads an Int8 that must have a fixed value.</summary>
    public bool ExpectInt8(string field, sbyte expected)
        => ReadInt8(field, out sbyte v) && (v == expected || ExpectFailure(field, _origin + _position - 1, expected, v));

    /// <summary>Reads an Int16 that must have a fixed value.</summary>
    public bool ExpectInt16(string field, short expected)
        => ReadInt16(field, out short v) && (v == expected || ExpectFailure(field, _origin + _position - 2, expected, v));

    /// <summary>Reads an Int32 that must have a fixed value.</summary>
    public bool ExpectInt32(string field, int expected)
        => ReadInt32(field, out int v) && (v == expected || ExpectFailure(field, _origin + _position - 4, expected, v));

    /// <summary>Reads an Int64 that must have a fixed value.</summary>
    public bool ExpectInt64(string field, long expected)
        => ReadInt64(field, out long v) && (v == expected || ExpectFailure(field, _origin + _position - 8, expected, v));

    /// <summary>Checks that a value just read (of <paramref name="size"/> bytes) lies in [min, max].</summary>
    public bool CheckRange(string field, long value, long min, long max, int size)
        => (value >= min && value <= max) || FailAt(field, _position - size, $"{value} is outside {min}..{max}");

    /// <summary>Reads an Int16 count. PostgreSQL reads these as unsigned, so 0..65535.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool ReadCount16(string field, out int count)
    {
        bool ok = ReadInt16(field, out short raw);
        count = (ushort)raw;
        return ok;
    }

    /// <summary>Reads an Int32 count, which must not be negative.</summary>
    public bool ReadCount32(string field, out int count)
        => ReadInt32(field, out count) && (count >= 0 || FailAt(field, _position - 4, $"negative count {count}"));

    /// <summary>Checks, before anything is allocated, that <paramref name="count"/> items of at least <paramref name="minItemSize"/> bytes fit in what remains.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool CheckItems(string field, int count, int minItemSize)
        => (long)count * minItemSize <= Remaining || ItemsFailure(field, _origin + _position, count, minItemSize, Remaining);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool ItemsFailure(string field, int offset, int count, int minItemSize, int remaining)
    {
        _error = new(_message, field, offset, $"count {count} needs at least {(long)count * minItemSize} bytes but only {remaining} remain");
        return false;
    }

    /// <summary>Reads the Int32 length of a value: -1 (NULL, if allowed) or 0..remaining.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool ReadValueLength(string field, bool nullable, out int length)
    {
        if (!ReadInt32(field, out length))
        {
            return false;
        }

        // 0..remaining, or -1 when NULL is allowed: one unsigned comparison for the usual case.
        return (uint)length <= (uint)Remaining || (length == -1 && nullable) || ValueLengthFailure(field, _origin + _position - 4, nullable, length, Remaining);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool ValueLengthFailure(string field, int offset, bool nullable, int length, int remaining)
    {
        _error = new(_message, field, offset, length < 0
            ? nullable ? $"negative length {length} (only -1, NULL, is allowed)" : $"negative length {length}"
            : $"length {length} is more than the {remaining} bytes that remain");
        return false;
    }

    /// <summary>
    /// Checks <paramref name="count"/> values, each an Int32 length (-1 for NULL when
    /// <paramref name="nullable"/>) and that many bytes, and moves past them: what
    /// <see cref="ReadValueLength"/> and <see cref="ReadValue"/> check, item by item, with the same
    /// errors, in one tight loop (a DataRow's columns, Bind's parameters).
    /// </summary>
    public bool SkipValues(string lengthField, int count, bool nullable)
        => WalkValues(lengthField, count, nullable, default);

    /// <summary>
    /// <see cref="SkipValues"/>, then the values as an owned <see cref="PgValueArray"/>: one array
    /// holding a copy of the list (each length word and its bytes) and where each value is (made
    /// once the check has found the list well formed).
    /// </summary>
    /// <param name="lengthField">The name of the values' length field, for errors.</param>
    /// <param name="count">The number of values.</param>
    /// <param name="nullable">Whether a length of -1 (NULL) is allowed.</param>
    /// <param name="values">The values, when they are well formed.</param>
    public bool ReadValueArray(string lengthField, int count, bool nullable, out PgValueArray values)
        => ReadValueArray(lengthField, count, nullable, default, out values);

    /// <summary>
    /// <see cref="ReadValueArray(string, int, bool, out PgValueArray)"/> of a list a reader's check
    /// may have found well formed already, at the places it recorded in <paramref name="recorded"/>
    /// (one per value, offsets from the start of this reader's span, a message body): the list is
    /// then copied with them, not walked. Without places for every value, it is checked here.
    /// </summary>
    internal bool ReadValueArray(string lengthField, int count, bool nullable, ReadOnlySpan<long> recorded, out PgValueArray values)
    {
        values = default;
        if (count <= 0)
        {
            return count == 0 || Fail(lengthField, $"negative count {count}");
        }

        int start = _position;
        int end;

        // The places are the reader's for this very message (a message or view kept past the
        // reader's next read is given none, PgValuePlaces.Current): then the list is copied with
        // them, not walked again.
        if (recorded.Length != count || !PlacesOf(_span, start, recorded, nullable, out end))
        {
            // The walk records the places in the thread's scratch when they fit (a row's columns),
            // so that the copy need not be walked again for them.
            Span<long> places = count <= MaxScratchPlaces ? (t_places ??= new long[MaxScratchPlaces]).AsSpan(0, count) : default;
            if (!WalkValues(lengthField, count, nullable, places))
            {
                return false;
            }

            recorded = places;
            end = _position;
        }

        if (!PgValueArray.Fits(count, end - start))
        {
            return Fail(lengthField, $"{count} values of {end - start} bytes do not fit in one array");
        }

        values = PgValueArray.FromChecked(_span.Slice(start, end - start), count, recorded, start);
        _position = end;
        return true;
    }

    // The places a walk of ReadValueArray records, before they are copied: a thread's own, reused.
    private const int MaxScratchPlaces = 256;

    [ThreadStatic]
    private static long[]? t_places;

    /// <summary>
    /// <see cref="SkipValues"/>, and when <paramref name="slots"/> has room for all
    /// <paramref name="count"/> values, records where each one is: the offset of its bytes from the
    /// start of the reader's span (a message body) in the high 32 bits, its length (-1 for NULL) in
    /// the low ones. A <see cref="PgValueList"/> given the slots reads every value without walking
    /// the ones before it. <paramref name="recorded"/> is the number of slots written
    /// (<paramref name="count"/>, with <see cref="SameLayoutFlag"/> set when the list had the last
    /// list's layout), or <c>~count</c> (below -1) when they do not fit.
    /// </summary>
    /// <param name="lengthField">The name of the values' length field, for errors.</param>
    /// <param name="count">The number of values.</param>
    /// <param name="nullable">Whether a length of -1 (NULL) is allowed.</param>
    /// <param name="slots">Where the places are written.</param>
    /// <param name="known">
    /// How many of <paramref name="slots"/> hold the places of the last list of the same message
    /// (-1: none). When this list has as many values, each length word is first looked for where the
    /// last list had it: rows of the same lengths (fixed-width columns, the binary format) are then
    /// checked with loads that do not wait for one another, instead of a walk in which each value's
    /// place waits for the length before it. Equal length words at equal places are what the walk
    /// would have found, so the checks and errors are the walk's.
    /// </param>
    /// <param name="recorded">The number of slots written (with <see cref="SameLayoutFlag"/> when they are the known ones), or <c>~count</c> when they do not fit.</param>
    internal bool RecordValues(string lengthField, int count, bool nullable, Span<long> slots, int known, out int recorded)
    {
        if (count > slots.Length)
        {
            recorded = ~count;
            return SkipValues(lengthField, count, nullable);
        }

        recorded = count;
        if (count == known && count > 0 && SameLayout(_span, _position, slots.Slice(0, count), out int end))
        {
            _position = end;
            recorded = count | SameLayoutFlag;
            return true;
        }

        return WalkValues(lengthField, count, nullable, slots[..count]);
    }

    /// <summary>
    /// Set in <see cref="RecordValues"/>'s count when the list had the known layout: the slots were
    /// not written, and the body is the last one's but for the values' bytes (and what lies outside
    /// the list). A value list has at most 65,535 values (an Int16 count), well below this bit.
    /// </summary>
    internal const int SameLayoutFlag = 1 << 30;

    /// <summary>
    /// The values' walk of <see cref="SkipValues"/> and <see cref="RecordValues"/>: each length
    /// checked, and its place written to <paramref name="slots"/> when they are given (one per value).
    /// </summary>
    private bool WalkValues(string lengthField, int count, bool nullable, scoped Span<long> slots)
    {
        ReadOnlySpan<byte> span = _span;
        int start = _position;
        int position = start;
        bool record = !slots.IsEmpty;
        for (int i = 0; i < count; i++)
        {
            if (span.Length - position < 4)
            {
                _position = position;
                return NeedFailure(lengthField, _origin + position, 4, "Int32", span.Length - position);
            }

            int length = BinaryPrimitives.ReadInt32BigEndian(span.Slice(position));
            position += 4;
            if (record)
            {
                slots[i] = ((long)position << 32) | (uint)length;
            }

            if ((uint)length <= (uint)(span.Length - position))
            {
                position += length;
            }
            else if (length != -1 || !nullable)
            {
                _position = position;
                return ValueLengthFailure(lengthField, _origin + position - 4, nullable, length, span.Length - position);
            }
        }

        _position = position;
        return true;
    }

    /// <summary>
    /// True when the list starting at <paramref name="start"/> of <paramref name="span"/> has each
    /// value's length word where <paramref name="slots"/> (a list walked before) had it, with the
    /// same length; <paramref name="end"/> is then where the list ends.
    /// </summary>
    private static bool SameLayout(ReadOnlySpan<byte> span, int start, ReadOnlySpan<long> slots, out int end)
    {
        long last = slots[^1];
        end = (int)(last >> 32) + Math.Max((int)last, 0);
        if ((int)(slots[0] >> 32) != start + 4 || end > span.Length)
        {
            return false;
        }

        // The slots were written by a walk of this reader's (WalkValues), from the same start: each
        // place is at least start + 4 (after its length word) and the places grow from one slot to
        // the next; the last value ends within the span: every read below is inside it, and is made
        // without a bounds check. Differences are gathered without a branch per value.
        ref byte origin = ref MemoryMarshal.GetReference(span);
        int differ = 0;
        foreach (long slot in slots)
        {
            int place = (int)(slot >> 32);
            Debug.Assert(place >= start + 4 && place <= span.Length, "slots come from a walk of a list from the same start, no longer than this one");
            int word = Unsafe.ReadUnaligned<int>(ref Unsafe.Add(ref origin, place - 4));
            differ |= (BitConverter.IsLittleEndian ? BinaryPrimitives.ReverseEndianness(word) : word) ^ (int)slot;
        }

        return differ == 0;
    }

    /// <summary>
    /// Where the list at <paramref name="start"/> of <paramref name="span"/> ends, by the places a
    /// reader's check recorded for it (<see cref="PgValuePlaces.Current"/>: this message's own, from
    /// its one walk): false, and the list is walked, when they cannot be this list's (the first
    /// value not right after the list's first length word, the last one not in the span or not
    /// after its length word). The places between are the walk's and are not checked again: only a
    /// caller that changed the bytes of a message it holds could make them wrong, which gives wrong
    /// values or an <see cref="InvalidOperationException"/> when they are read, never a read
    /// outside the row's array (<see cref="PgValueArray"/> checks every read).
    /// </summary>
    private static bool PlacesOf(ReadOnlySpan<byte> span, int start, ReadOnlySpan<long> places, bool nullable, out int end)
    {
        long last = places[^1];
        int place = (int)(last >> 32);
        int length = (int)last;
        end = 0;
        if ((int)(places[0] >> 32) != start + 4 || place < start + 4 || place > span.Length || length < (nullable ? -1 : 0) || length > span.Length - place
            || BinaryPrimitives.ReadInt32BigEndian(span.Slice(place - 4, 4)) != length)
        {
            return false;
        }

        end = place + Math.Max(length, 0);
        return true;
    }

    /// <summary>Reads the bytes of a value whose length was read by <see cref="ReadValueLength"/>; -1 gives an empty span.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool ReadValue(string field, int length, out ReadOnlySpan<byte> value)
    {
        if (length < 0)
        {
            value = default;
            return true;
        }

        return ReadBytes(field, length, out value);
    }

    /// <summary>Reads a Byte1 or Int8 that must be one of <paramref name="allowed"/>.</summary>
    public bool ReadEnum(string field, ReadOnlySpan<byte> allowed, out byte value)
    {
        if (!ReadByte1(field, out value))
        {
            return false;
        }

        if (allowed.IndexOf(value) >= 0)
        {
            return true;
        }

        var expected = new StringBuilder();
        foreach (byte b in allowed)
        {
            expected.Append(expected.Length == 0 ? "" : ", ").Append(Show(b));
        }

        return FailAt(field, _position - 1, $"{Show(value)} is not one of {expected}");
    }

    private static string Show(byte b) => b is >= 0x20 and < 0x7f ? $"'{(char)b}'" : $"0x{b:x2}";

    /// <summary>Reads <paramref name="count"/> bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool ReadBytes(string field, int count, out ReadOnlySpan<byte> value)
    {
        value = default;
        if (!Need(field, count, "the value"))
        {
            return false;
        }

        value = _span.Slice(_position, count);
        _position += count;
        return true;
    }

    /// <summary>Reads everything that is left.</summary>
    public ReadOnlySpan<byte> ReadRest()
    {
        ReadOnlySpan<byte> rest = _span.Slice(_position);
        _position = _span.Length;
        return rest;
    }

    /// <summary>Checks the size of a field whose allowed size depends on the protocol version.</summary>
    public bool CheckVersionSize(string field, int size, PgProtocolVersion version, int min30, int max30, int min32, int max32)
    {
        (int min, int max) = version.HasVariableCancelKey ? (min32, max32) : (min30, max30);
        if (size >= min && size <= max)
        {
            return true;
        }

        string allowed = min == max ? $"exactly {min}" : $"{min} to {max}";
        return FailAt(field, _position - size, $"is {size} bytes; protocol {version} allows {allowed}");
    }

    /// <summary>Reads a NUL-terminated string as bytes (without the NUL).</summary>
    public bool ReadStringSpan(string field, out ReadOnlySpan<byte> value)
    {
        int nul = _span.Slice(_position).IndexOf((byte)0);
        if (nul < 0)
        {
            value = default;
            return Fail(field, "String has no terminating NUL before the end of the message");
        }

        value = _span.Slice(_position, nul);
        _position += nul + 1;
        return true;
    }

    /// <summary>Reads a NUL-terminated string, which must be valid UTF-8.</summary>
    public bool ReadString(string field, out string value)
    {
        int start = _position;
        if (!ReadStringSpan(field, out ReadOnlySpan<byte> bytes))
        {
            value = "";
            return false;
        }

        if (!Utf8.IsValid(bytes))
        {
            value = "";
            return FailAt(field, start, "String is not valid UTF-8 (use the message's View for raw bytes in other encodings)");
        }

        value = Encoding.UTF8.GetString(bytes);
        return true;
    }

    /// <summary>For lists that end at a zero byte: true in <paramref name="end"/> (and the zero consumed) at the end.</summary>
    public bool ReadListEnd(string field, out bool end)
    {
        end = false;
        if (Remaining == 0)
        {
            return Fail(field, "the list has no terminating zero byte");
        }

        if (_span[_position] == 0)
        {
            _position++;
            end = true;
        }

        return true;
    }

    /// <summary>Checks that no bytes are left over.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool End()
        => Remaining == 0 || EndFailure(_origin + _position, Remaining);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool EndFailure(int offset, int remaining)
    {
        _error = new(_message, null, offset, $"{remaining} bytes left over after the last field");
        return false;
    }

    // ---------------------------------------------------------------- reads of validated bodies

    /// <summary>Reads a byte.</summary>
    public byte NextByte() => _span[_position++];

    /// <summary>Reads an Int16.</summary>
    public short NextInt16()
    {
        short v = BinaryPrimitives.ReadInt16BigEndian(_span.Slice(_position));
        _position += 2;
        return v;
    }

    /// <summary>Reads an Int32.</summary>
    public int NextInt32()
    {
        int v = BinaryPrimitives.ReadInt32BigEndian(_span.Slice(_position));
        _position += 4;
        return v;
    }

    /// <summary>Reads an Int64.</summary>
    public long NextInt64()
    {
        long v = BinaryPrimitives.ReadInt64BigEndian(_span.Slice(_position));
        _position += 8;
        return v;
    }

    /// <summary>Reads a NUL-terminated string as bytes.</summary>
    public ReadOnlySpan<byte> NextString()
    {
        int nul = _span.Slice(_position).IndexOf((byte)0);
        ReadOnlySpan<byte> s = _span.Slice(_position, nul);
        _position += nul + 1;
        return s;
    }

    /// <summary>Reads <paramref name="count"/> bytes.</summary>
    public ReadOnlySpan<byte> NextBytes(int count)
    {
        ReadOnlySpan<byte> s = _span.Slice(_position, count);
        _position += count;
        return s;
    }

    /// <summary>Skips <paramref name="count"/> bytes.</summary>
    public void Skip(int count) => _position += count;

    /// <summary>At a zero byte that ends a list: consumes it and returns true.</summary>
    public bool NextIsListEnd()
    {
        if (_position >= _span.Length || _span[_position] == 0)
        {
            _position = Math.Min(_position + 1, _span.Length);
            return true;
        }

        return false;
    }
}
