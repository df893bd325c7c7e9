using System.Globalization;
using System.Text;
using PgSpec.Protocol;
using PgSpec.Protocol.PgOutput;
using PgSpec.Protocol.Replication;

namespace PgSpec.Fuzz;

/// <summary>
/// The AFL++ dictionary, derived from the specs and never written by hand: the generator's
/// <see cref="ProtocolDictionary.Entries"/> (type bytes, sub-codes and packet codes, enum values:
/// error field codes, SASL mechanism names...) and what the message descriptors add (every
/// message's size limit and one past it, range bounds, NULL lengths, the largest counts, the
/// lengths a cancel key's sizes give), the type bytes and tags of the replication and pgoutput
/// sub-messages, and the framing edges (a 2 GiB length, a negative one).
/// A new spec file extends it.
/// </summary>
public static class FuzzDictionary
{
    /// <summary>Every entry, AFL++'s quoted form, without duplicates, in a stable order.</summary>
    public static IReadOnlyList<string> Entries()
    {
        var entries = new SortedSet<string>(StringComparer.Ordinal);
        foreach (string entry in ProtocolDictionary.Entries)
        {
            entries.Add(entry);
        }

        foreach (PgMessageDescriptor message in PgProtocolSpec.Messages)
        {
            Int32(entries, message.MaxLength);
            if (message.MaxLength < int.MaxValue)
            {
                Int32(entries, message.MaxLength + 1);
            }

            int fixedPart = 4; // the length word counts itself
            bool fixedSoFar = true;
            foreach (PgFieldDescriptor field in message.Fields)
            {
                Field(entries, field);
                if (field.VersionSizes is { } sizes && fixedSoFar)
                {
                    foreach (int size in new[] { sizes.Min30, sizes.Max30, sizes.Min32, sizes.Max32 })
                    {
                        Int32(entries, fixedPart + size);
                    }
                }

                int width = Width(field);
                fixedSoFar &= width > 0;
                fixedPart += Math.Max(width, 0);
            }
        }

        // The sub-messages of the replication families: their type bytes, tags and field edges.
        foreach (PgMessageDescriptor message in ReplicationMessages.Descriptors.Concat(PgOutputMessages.Descriptors).Concat(PgOutputMessages.Parts))
        {
            if (message.TypeByte >= 0)
            {
                entries.Add(Quote([(byte)message.TypeByte]));
            }

            foreach (PgFieldDescriptor field in message.Fields)
            {
                Field(entries, field);
                if (field is { Kind: PgFieldKind.Literal, WireType: "Byte1", Literal: long tag })
                {
                    entries.Add(Quote([(byte)tag]));
                }
            }
        }

        // The framing edges: a length of 2 GiB - 1, and a negative one.
        Int32(entries, int.MaxValue);
        Int32(entries, int.MinValue);
        return entries.ToArray();
    }

    /// <summary>The dictionary file's text: a comment, then one entry a line.</summary>
    public static string Text()
    {
        var text = new StringBuilder();
        text.Append("# PgSpec's AFL++ dictionary, written by `PgSpec.Fuzz dictionary` from spec/*.txt. Do not edit.\n");
        foreach (string entry in Entries())
        {
            text.Append(entry).Append('\n');
        }

        return text.ToString();
    }

    /// <summary>The bytes of an entry (the inverse of AFL++'s quoting).</summary>
    public static byte[] Bytes(string entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        if (entry.Length < 2 || entry[0] != '"' || entry[^1] != '"')
        {
            throw new FormatException($"not a quoted dictionary entry: {entry}");
        }

        var bytes = new List<byte>();
        for (int i = 1; i < entry.Length - 1; i++)
        {
            if (entry[i] == '\\' && i + 3 < entry.Length && entry[i + 1] == 'x')
            {
                bytes.Add(byte.Parse(entry.AsSpan(i + 2, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                i += 3;
            }
            else if (entry[i] == '\\' && i + 1 < entry.Length - 1)
            {
                bytes.Add((byte)entry[++i]);
            }
            else
            {
                bytes.Add((byte)entry[i]);
            }
        }

        return bytes.ToArray();
    }

    private static void Field(SortedSet<string> entries, PgFieldDescriptor field)
    {
        if (field.Range is { } range)
        {
            Int32(entries, (int)range.Min);
            Int32(entries, (int)range.Max);
        }

        if (field.Nullable)
        {
            Int32(entries, -1);
        }

        if (field.Kind == PgFieldKind.Count)
        {
            if (field.WireType == "Int16")
            {
                entries.Add(Quote([0xFF, 0xFF]));
            }
            else
            {
                Int32(entries, int.MaxValue);
            }
        }

        foreach (PgFieldDescriptor child in field.Children)
        {
            Field(entries, child);
        }
    }

    /// <summary>The fixed size of a field, or -1 when it varies.</summary>
    private static int Width(PgFieldDescriptor field) => field.Kind switch
    {
        PgFieldKind.Literal or PgFieldKind.Scalar or PgFieldKind.Count or PgFieldKind.ValueLength or PgFieldKind.Enum => field.WireType switch
        {
            "Byte1" or "Int8" => 1,
            "Int16" => 2,
            "Int32" => 4,
            "Int64" => 8,
            _ => -1,
        },
        PgFieldKind.FixedBytes => field.FixedSize,
        _ => -1,
    };

    private static void Int32(SortedSet<string> entries, int value)
        => entries.Add(Quote([(byte)(value >> 24), (byte)(value >> 16), (byte)(value >> 8), (byte)value]));

    private static string Quote(ReadOnlySpan<byte> bytes)
    {
        var text = new StringBuilder("\"");
        foreach (byte b in bytes)
        {
            text.Append("\\x").Append(b.ToString("X2", CultureInfo.InvariantCulture));
        }

        return text.Append('"').ToString();
    }
}
