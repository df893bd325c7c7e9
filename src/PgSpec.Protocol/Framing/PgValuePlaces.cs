using System.Runtime.CompilerServices;

namespace PgSpec.Protocol;

/// <summary>
/// Where a reader's check found the values of a message's value list (see
/// <see cref="PgSpanReader.RecordValues"/>), and whether the reader still holds them for this
/// message. The reader keeps the places of one list at a time, after the stream offset of the
/// message it gave them with; a message or view kept past the reader's next read finds another
/// offset there, and then walks its own values instead of reading another list's places.
/// </summary>
internal readonly ref struct PgValuePlaces
{
    // The offset of the message the reader's places are for now, then the places (none when the span is empty).
    private readonly ReadOnlySpan<long> _offsetThenPlaces;

    // The offset of this message.
    private readonly long _offset;

    /// <summary>The places in <paramref name="offsetThenPlaces"/> (a reader's slots), for the message at <paramref name="offset"/>.</summary>
    internal PgValuePlaces(ReadOnlySpan<long> offsetThenPlaces, long offset)
    {
        _offsetThenPlaces = offsetThenPlaces;
        _offset = offset;
    }

    /// <summary>The number of places recorded (0: none).</summary>
    public int Count => Math.Max(_offsetThenPlaces.Length - 1, 0);

    /// <summary>True when there are places and the reader has not written over them since.</summary>
    public bool IsCurrent
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _offsetThenPlaces.Length > 1 && _offsetThenPlaces[0] == _offset;
    }

    /// <summary>The places, while the reader still holds them for this message; else empty (the values are walked).</summary>
    public ReadOnlySpan<long> Current
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => IsCurrent ? _offsetThenPlaces[1..] : default;
    }
}
