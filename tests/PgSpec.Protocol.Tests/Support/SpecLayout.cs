using System.Buffers.Binary;

namespace PgSpec.Protocol.Tests.Support;

/// <summary>A run of body bytes that may be changed without making the message invalid.</summary>
/// <param name="Field">The field.</param>
/// <param name="Offset">Its offset in the body.</param>
/// <param name="Size">Its size.</param>
/// <param name="Allowed">For enums: the allowed values; for the first byte of an item of an until-0 list: 1..255; else any bytes.</param>
/// <param name="Range">For integers with a range.</param>
public sealed record MutableRun(PgFieldDescriptor Field, int Offset, int Size, long[]? Allowed, (long Min, long Max)? Range);

/// <summary>
/// Walks a message body with the spec descriptor alone (an interpreter of the spec, independent of
/// the generated decoders): checks that the fields account for every byte, and lists the runs of
/// bytes whose value may change freely (integers, enums, byte data) without breaking the message.
/// </summary>
public static class SpecLayout
{
    /// <summary>The mutable runs of a valid body; throws if the body does not follow the spec.</summary>
    public static List<MutableRun> Walk(PgMessageDescriptor descriptor, ReadOnlySpan<byte> body)
    {
        var runs = new List<MutableRun>();
        int position = 0;
        WalkFields(descriptor.Fields, body, ref position, runs, terminatedItem: false);
        if (position != body.Length)
        {
            throw new InvalidOperationException($"{descriptor.Name}: the spec accounts for {position} of {body.Length} bytes");
        }

        return runs;
    }

    /// <summary>Changes some mutable runs of <paramref name="body"/> in place (each with probability 1/2).</summary>
    public static void Mutate(PgMessageDescriptor descriptor, Span<byte> body, Random random)
    {
        foreach (MutableRun run in Walk(descriptor, body))
        {
            if (random.Next(2) == 0)
            {
                continue;
            }

            Span<byte> bytes = body.Slice(run.Offset, run.Size);
            if (run.Allowed is { } allowed)
            {
                WriteInteger(bytes, allowed[random.Next(allowed.Length)]);
            }
            else if (run.Range is { } range)
            {
                WriteInteger(bytes, random.NextInt64(range.Min, range.Max + 1));
            }
            else
            {
                random.NextBytes(bytes);
            }
        }
    }

    private static void WalkFields(IReadOnlyList<PgFieldDescriptor> fields, ReadOnlySpan<byte> body, ref int position, List<MutableRun> runs, bool terminatedItem)
    {
        var counts = new Dictionary<string, long>();
        int lastValueLength = 0;
        for (int i = 0; i < fields.Count; i++)
        {
            PgFieldDescriptor field = fields[i];
            bool startsItem = terminatedItem && i == 0;
            switch (field.Kind)
            {
                case PgFieldKind.Literal:
                {
                    int size = SizeOf(field.WireType);
                    long value = ReadInteger(body.Slice(position, size));
                    if (value != field.Literal)
                    {
                        throw new InvalidOperationException($"{field.Name} is {value}, not the literal {field.Literal}");
                    }

                    position += size;
                    break;
                }

                case PgFieldKind.Scalar:
                {
                    int size = SizeOf(field.WireType);
                    runs.Add(new MutableRun(field, position, size, startsItem ? [.. Enumerable.Range(1, 255).Select(v => (long)v)] : null, field.Range));
                    position += size;
                    break;
                }

                case PgFieldKind.Count:
                {
                    int size = SizeOf(field.WireType);
                    long count = ReadInteger(body.Slice(position, size));
                    counts[field.Name] = size == 2 ? (ushort)count : count;
                    position += size;
                    break;
                }

                case PgFieldKind.ValueLength:
                    lastValueLength = BinaryPrimitives.ReadInt32BigEndian(body.Slice(position));
                    position += 4;
                    break;
                case PgFieldKind.Enum:
                    runs.Add(new MutableRun(field, position, 1, [.. field.EnumValues], null));
                    position += 1;
                    break;
                case PgFieldKind.FixedBytes:
                    runs.Add(new MutableRun(field, position, field.FixedSize, null, null));
                    position += field.FixedSize;
                    break;
                case PgFieldKind.RestBytes:
                    runs.Add(new MutableRun(field, position, body.Length - position, null, null));
                    position = body.Length;
                    break;
                case PgFieldKind.SizedBytes:
                {
                    int size = Math.Max(lastValueLength, 0);
                    runs.Add(new MutableRun(field, position, size, null, null));
                    position += size;
                    break;
                }

                case PgFieldKind.String:
                {
                    int nul = body.Slice(position).IndexOf((byte)0);
                    if (nul < 0)
                    {
                        throw new InvalidOperationException($"{field.Name} has no NUL");
                    }

                    position += nul + 1;
                    break;
                }

                case PgFieldKind.Array:
                    WalkArray(field, field.CountField is { } countField ? counts[countField] : -1, body, ref position, runs);
                    break;
                default:
                    throw new InvalidOperationException($"unknown field kind {field.Kind}");
            }
        }
    }

    private static void WalkArray(PgFieldDescriptor field, long count, ReadOnlySpan<byte> body, ref int position, List<MutableRun> runs)
    {
        for (long i = 0; field.Terminated || i < count; i++)
        {
            if (field.Terminated && body[position] == 0)
            {
                position++;
                return;
            }

            switch (field.ElementKind)
            {
                case PgFieldKind.Scalar:
                {
                    int size = SizeOf(field.WireType);
                    runs.Add(new MutableRun(field, position, size, null, null));
                    position += size;
                    break;
                }

                case PgFieldKind.String:
                    position += body.Slice(position).IndexOf((byte)0) + 1;
                    break;
                default:
                    WalkFields(field.Children, body, ref position, runs, field.Terminated);
                    break;
            }
        }
    }

    private static int SizeOf(string wireType) => wireType switch
    {
        "Byte1" or "Int8" => 1,
        "Int16" => 2,
        "Int32" => 4,
        "Int64" => 8,
        _ => throw new InvalidOperationException($"no integer wire type {wireType}"),
    };

    private static long ReadInteger(ReadOnlySpan<byte> bytes) => bytes.Length switch
    {
        1 => bytes[0],
        2 => BinaryPrimitives.ReadInt16BigEndian(bytes),
        4 => BinaryPrimitives.ReadInt32BigEndian(bytes),
        _ => BinaryPrimitives.ReadInt64BigEndian(bytes),
    };

    private static void WriteInteger(Span<byte> bytes, long value)
    {
        switch (bytes.Length)
        {
            case 1:
                bytes[0] = unchecked((byte)value);
                break;
            case 2:
                BinaryPrimitives.WriteInt16BigEndian(bytes, unchecked((short)value));
                break;
            case 4:
                BinaryPrimitives.WriteInt32BigEndian(bytes, unchecked((int)value));
                break;
            default:
                BinaryPrimitives.WriteInt64BigEndian(bytes, value);
                break;
        }
    }
}
