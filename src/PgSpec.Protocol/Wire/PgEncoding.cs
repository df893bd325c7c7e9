using System.ComponentModel;

namespace PgSpec.Protocol;

/// <summary>Encode-side guards used by generated encoders; each throws <see cref="PgEncodeException"/>.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static class PgEncoding
{
    /// <summary>
    /// A String must not contain NUL: it would end the string early and smuggle what follows as
    /// other fields. Nor an unpaired surrogate: UTF-8 cannot encode it, and writing U+FFFD in its
    /// place would send another string than the one given.
    /// </summary>
    public static void CheckString(string message, string field, string value)
    {
        ArgumentNullException.ThrowIfNull(value, field);
        int nul = value.IndexOf('\0');
        if (nul >= 0)
        {
            throw new PgEncodeException(message, field, $"contains a NUL character at index {nul}");
        }

        int first = value.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF');
        if (first >= 0)
        {
            CheckSurrogates(message, field, value, first);
        }
    }

    private static void CheckSurrogates(string message, string field, string value, int first)
    {
        for (int i = first; i < value.Length; i++)
        {
            if (char.IsHighSurrogate(value[i]) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1]))
            {
                i++;
            }
            else if (char.IsSurrogate(value[i]))
            {
                throw new PgEncodeException(message, field, $"contains an unpaired surrogate at index {i}, which UTF-8 cannot encode");
            }
        }
    }

    /// <summary>An item of a list that ends at a zero byte must not be empty.</summary>
    public static void CheckNotEmpty(string message, string field, string value)
    {
        if (value.Length == 0)
        {
            throw new PgEncodeException(message, field, "is empty, which would end the list");
        }
    }

    /// <summary>A code byte of a list that ends at a zero byte must not be zero.</summary>
    public static void CheckNotZero(string message, string field, byte value)
    {
        if (value == 0)
        {
            throw new PgEncodeException(message, field, "is zero, which would end the list");
        }
    }

    /// <summary>A count must fit its wire field.</summary>
    public static void CheckCount(string message, string field, int count, int max)
    {
        if (count > max)
        {
            throw new PgEncodeException(message, field, $"has {count} items; at most {max} can be counted");
        }
    }

    /// <summary>A value must lie in its range.</summary>
    public static void CheckRange(string message, string field, long value, long min, long max)
    {
        if (value < min || value > max)
        {
            throw new PgEncodeException(message, field, $"{value} is outside {min}..{max}");
        }
    }

    /// <summary>An enum value must be one the spec defines.</summary>
    public static void CheckEnum(string message, string field, bool defined, long value)
    {
        if (!defined)
        {
            throw new PgEncodeException(message, field, $"{value} is not a defined value");
        }
    }

    /// <summary>A ByteN field must have exactly N bytes.</summary>
    public static void CheckFixedSize(string message, string field, int size, int expected)
    {
        if (size != expected)
        {
            throw new PgEncodeException(message, field, $"has {size} bytes; it must have exactly {expected}");
        }
    }

    /// <summary>A field whose size depends on the protocol version (the cancel key) must fit that version.</summary>
    public static void CheckVersionSize(string message, string field, int size, PgProtocolVersion version, int min30, int max30, int min32, int max32)
    {
        (int min, int max) = version.HasVariableCancelKey ? (min32, max32) : (min30, max30);
        if (size < min || size > max)
        {
            string allowed = min == max ? $"exactly {min}" : $"{min} to {max}";
            throw new PgEncodeException(message, field, $"has {size} bytes; protocol {version} allows {allowed}");
        }
    }
}
