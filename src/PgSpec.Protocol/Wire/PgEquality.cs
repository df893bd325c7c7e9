using System.Collections.Immutable;
using System.ComponentModel;
using System.Text;

namespace PgSpec.Protocol;

/// <summary>Value equality, hashing and display of field values, for generated message types.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static class PgEquality
{
    /// <summary>Byte-wise equality.</summary>
    public static bool Equal(ReadOnlyMemory<byte> a, ReadOnlyMemory<byte> b) => a.Span.SequenceEqual(b.Span);

    /// <summary>Byte-wise equality; NULL equals only NULL.</summary>
    public static bool Equal(ReadOnlyMemory<byte>? a, ReadOnlyMemory<byte>? b)
        => a.HasValue == b.HasValue && (!a.HasValue || a.GetValueOrDefault().Span.SequenceEqual(b.GetValueOrDefault().Span));

    /// <summary>Item-wise equality.</summary>
    public static bool Equal<T>(ImmutableArray<T> a, ImmutableArray<T> b)
    {
        if (a.Length != b.Length)
        {
            return false;
        }

        EqualityComparer<T> comparer = EqualityComparer<T>.Default;
        for (int i = 0; i < a.Length; i++)
        {
            if (!comparer.Equals(a[i], b[i]))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Item-wise equality of values that cannot be NULL, byte-wise (not by reference).</summary>
    public static bool Equal(ImmutableArray<ReadOnlyMemory<byte>> a, ImmutableArray<ReadOnlyMemory<byte>> b)
    {
        if (a.IsDefaultOrEmpty || b.IsDefaultOrEmpty)
        {
            return a.IsDefaultOrEmpty == b.IsDefaultOrEmpty;
        }

        if (a.Length != b.Length)
        {
            return false;
        }

        for (int i = 0; i < a.Length; i++)
        {
            if (!Equal(a[i], b[i]))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Item-wise equality of values (as <see cref="PgValueArray"/>'s).</summary>
    public static bool Equal(ImmutableArray<ReadOnlyMemory<byte>?> a, ImmutableArray<ReadOnlyMemory<byte>?> b)
        => new PgValueArray(a).Equals(new PgValueArray(b));

    /// <summary>Value-wise equality of owned value lists.</summary>
    public static bool Equal(PgValueArray a, PgValueArray b) => a.Equals(b);

    /// <summary>Hash of an owned value list.</summary>
    public static int Hash(PgValueArray values) => values.GetHashCode();

    /// <summary>Hash of a plain value.</summary>
    public static int Hash<T>(T value) => value is null ? 0 : EqualityComparer<T>.Default.GetHashCode(value);

    /// <summary>Hash of bytes.</summary>
    public static int Hash(ReadOnlyMemory<byte> value)
    {
        var hash = new HashCode();
        hash.AddBytes(value.Span);
        return hash.ToHashCode();
    }

    /// <summary>Hash of a value that may be NULL.</summary>
    public static int Hash(ReadOnlyMemory<byte>? value) => value.HasValue ? Hash(value.GetValueOrDefault()) : -1;

    /// <summary>Hash of a list.</summary>
    public static int Hash<T>(ImmutableArray<T> values)
    {
        var hash = new HashCode();
        hash.Add(values.Length);
        foreach (T v in values)
        {
            hash.Add(Hash(v));
        }

        return hash.ToHashCode();
    }

    /// <summary>Hash of a list of values that cannot be NULL, from their bytes.</summary>
    public static int Hash(ImmutableArray<ReadOnlyMemory<byte>> values)
    {
        var hash = new HashCode();
        hash.Add(values.IsDefault ? 0 : values.Length);
        if (!values.IsDefault)
        {
            foreach (ReadOnlyMemory<byte> v in values)
            {
                hash.Add(Hash(v));
            }
        }

        return hash.ToHashCode();
    }

    /// <summary>Hash of a list of values (as <see cref="PgValueArray"/>'s).</summary>
    public static int Hash(ImmutableArray<ReadOnlyMemory<byte>?> values) => new PgValueArray(values).GetHashCode();

    /// <summary>Text for a plain value.</summary>
    public static string Show<T>(T value) => value?.ToString() ?? "null";

    /// <summary>Text for a string.</summary>
    public static string Show(string value) => "\"" + value + "\"";

    /// <summary>Text for bytes.</summary>
    public static string Show(ReadOnlyMemory<byte> value) => PgTraceWriter.FormatBytes(value.Span);

    /// <summary>Text for a value that may be NULL.</summary>
    public static string Show(ReadOnlyMemory<byte>? value) => value.HasValue ? Show(value.GetValueOrDefault()) : "NULL";
}
