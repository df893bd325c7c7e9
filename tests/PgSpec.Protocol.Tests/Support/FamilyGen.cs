using System.Collections;
using System.Collections.Immutable;
using System.Reflection;
using System.Text;
using PgSpec.Protocol.PgOutput;
using PgSpec.Protocol.Replication;

namespace PgSpec.Protocol.Tests.Support;

/// <summary>One message of a family and the context it is encoded and decoded in.</summary>
public sealed record FamilyCase(PgMessageDescriptor Descriptor, int Version, PgOutputStreaming Streaming, bool InStream)
{
    /// <summary>Whether the message is pgoutput's (decoded with a context).</summary>
    public bool IsPgOutput => Descriptor.Family == PgOutputMessages.FamilyName;

    /// <summary>A fresh context for the case (null for the Replication family, which needs none).</summary>
    public PgOutputContext? NewContext() => IsPgOutput ? new PgOutputContext(Version, Streaming) { InStreamedTransaction = InStream } : null;

    /// <summary>The side that sends the message.</summary>
    public PgDirection Direction => Descriptor.Frontend ? PgDirection.Frontend : PgDirection.Backend;

    /// <inheritdoc/>
    public override string ToString()
        => IsPgOutput ? $"{Descriptor.Name} v{Version} streaming={Streaming} inStream={InStream}" : Descriptor.Name;

    /// <summary>
    /// Every message of both families in every context it can appear in: pgoutput's from the version that
    /// has it to 4, with each streaming mode the version allows, inside and outside a streamed block.
    /// </summary>
    public static IEnumerable<FamilyCase> All()
    {
        foreach (PgMessageDescriptor d in ReplicationMessages.Descriptors)
        {
            yield return new FamilyCase(d, 0, PgOutputStreaming.Off, false);
        }

        foreach (PgMessageDescriptor d in PgOutputMessages.Descriptors)
        {
            for (int version = Math.Max(1, d.SinceVersion); version <= PgOutputMessages.MaxVersion; version++)
            {
                foreach (PgOutputStreaming streaming in Enum.GetValues<PgOutputStreaming>())
                {
                    if ((streaming == PgOutputStreaming.On && version < 2) || (streaming == PgOutputStreaming.Parallel && version < 4))
                    {
                        continue;
                    }

                    yield return new FamilyCase(d, version, streaming, false);
                    if (streaming != PgOutputStreaming.Off)
                    {
                        yield return new FamilyCase(d, version, streaming, true);
                    }
                }
            }
        }
    }
}

/// <summary>
/// Builds random messages of the families from their descriptors: each visible field gets a value
/// within the spec's constraints, and a field with a condition is present exactly when its
/// condition holds in the case's context (an 'optional' one at random). Values go to the
/// constructors by position, as the generated types take them.
/// </summary>
public static class FamilyGen
{
    private const int MaxItems = 5;
    private const int MaxBytes = 40;
    private static readonly Assembly s_protocol = typeof(PgOutputContext).Assembly;
    private static readonly string[] s_text = ["a", "public", "é", "中文", "😀", "x y", "", "t_1"];

    /// <summary>A random message of the case.</summary>
    public static IPgSubMessage Build(FamilyCase c, Random random)
        => (IPgSubMessage)Instance(c, c.Descriptor.MessageType, c.Descriptor.Fields, random);

    private static object Instance(FamilyCase c, Type type, IReadOnlyList<PgFieldDescriptor> fields, Random random)
    {
        var values = new Dictionary<string, object?>(StringComparer.Ordinal);
        var args = new List<object?>();
        foreach (PgFieldDescriptor field in fields)
        {
            if (field.Kind is PgFieldKind.Literal or PgFieldKind.Count or PgFieldKind.ValueLength)
            {
                continue;
            }

            object? value = Present(c, field, values, random) ? Value(c, type, field, random) : null;
            values[field.Name] = value;
            args.Add(value);
        }

        ConstructorInfo constructor = type.GetConstructors().Single();
        return constructor.Invoke([.. args]);
    }

    /// <summary>Whether a field is present, as its condition ("since 4 if parallel", "if kind is Text, Binary", "optional") says.</summary>
    public static bool Present(FamilyCase c, PgFieldDescriptor field, IReadOnlyDictionary<string, object?> values, Random random)
    {
        if (field.Condition is null)
        {
            return true;
        }

        string[] tokens = field.Condition.Replace(",", "", StringComparison.Ordinal).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        bool present = true;
        for (int i = 0; i < tokens.Length; i++)
        {
            switch (tokens[i])
            {
                case "optional":
                    present &= random.Next(2) == 0;
                    break;
                case "since":
                    present &= c.Version >= int.Parse(tokens[++i], System.Globalization.CultureInfo.InvariantCulture);
                    break;
                case "if":
                    string subject = tokens[++i];
                    if (subject == "streaming")
                    {
                        present &= c.InStream;
                    }
                    else if (subject == "parallel")
                    {
                        present &= c.Streaming == PgOutputStreaming.Parallel;
                    }
                    else if (i + 1 < tokens.Length && tokens[i + 1] == "is")
                    {
                        object? tag = values[subject];
                        var names = tokens.Skip(i + 2).ToHashSet(StringComparer.Ordinal);
                        present &= tag is not null && names.Contains(Enum.GetName(tag.GetType(), tag)!);
                        i = tokens.Length;
                    }
                    else
                    {
                        present &= values[subject] is not null;
                    }

                    break;
                default:
                    throw new InvalidOperationException("unknown condition " + field.Condition);
            }
        }

        return present;
    }

    private static object Value(FamilyCase c, Type owner, PgFieldDescriptor field, Random random)
    {
        switch (field.Kind)
        {
            case PgFieldKind.Scalar:
                return Scalar(field.WireType, field.Oid, field.Range, random);
            case PgFieldKind.Enum:
                Type enumType = s_protocol.GetType("PgSpec.Protocol." + field.EnumName, throwOnError: true)!;
                return Enum.ToObject(enumType, field.EnumValues[random.Next(field.EnumValues.Count)]);
            case PgFieldKind.String:
                return Text(random);
            case PgFieldKind.FixedBytes:
                return new ReadOnlyMemory<byte>(Bytes(random, field.FixedSize));
            case PgFieldKind.RestBytes:
            case PgFieldKind.SizedBytes:
                return new ReadOnlyMemory<byte>(Bytes(random, random.Next(MaxBytes)));
            case PgFieldKind.Part:
                PgMessageDescriptor part = PgOutputMessages.Parts.Concat(ReplicationMessages.Parts).Single(p => p.Name == field.PartName);
                return Instance(c, part.MessageType, part.Fields, random);
            case PgFieldKind.Array:
                int count = random.Next(MaxItems + 1);
                Type element;
                var items = new List<object>();
                if (field.GroupName is not null)
                {
                    element = owner.GetNestedType(field.GroupName)!;
                    for (int i = 0; i < count; i++)
                    {
                        items.Add(Instance(c, element, field.Children, random));
                    }
                }
                else
                {
                    element = Scalar(field.WireType, field.Oid, null, random).GetType();
                    for (int i = 0; i < count; i++)
                    {
                        items.Add(Scalar(field.WireType, field.Oid, null, random));
                    }
                }

                return ToImmutableArray(element, items);
            default:
                throw new InvalidOperationException("no value for " + field.Kind);
        }
    }

    private static object Scalar(string wireType, bool oid, (long Min, long Max)? range, Random random)
    {
        long v = range is { } r ? random.NextInt64(r.Min, r.Max + 1) : random.Next(4) switch
        {
            0 => 0,
            1 => -1,
            2 => long.MaxValue,
            _ => random.NextInt64(),
        };

        return wireType switch
        {
            "Byte1" => (object)unchecked((byte)v),
            "Int8" => unchecked((sbyte)v),
            "Int16" => unchecked((short)v),
            "Int32" => oid ? unchecked((uint)v) : unchecked((int)v),
            _ => v,
        };
    }

    private static string Text(Random random)
    {
        var text = new StringBuilder();
        int parts = random.Next(4);
        for (int i = 0; i < parts; i++)
        {
            text.Append(s_text[random.Next(s_text.Length)]);
        }

        return text.ToString();
    }

    private static byte[] Bytes(Random random, int size)
    {
        byte[] bytes = new byte[size];
        random.NextBytes(bytes);
        return bytes;
    }

    private static object ToImmutableArray(Type element, List<object> items)
    {
        Array array = Array.CreateInstance(element, items.Count);
        for (int i = 0; i < items.Count; i++)
        {
            array.SetValue(items[i], i);
        }

        MethodInfo create = typeof(ImmutableArray).GetMethods()
            .Single(m => m.Name == nameof(ImmutableArray.Create) && m.GetParameters() is [{ ParameterType.IsArray: true }])
            .MakeGenericMethod(element);
        return create.Invoke(null, [array])!;
    }

    /// <summary>Enumerates the items of an ImmutableArray held as object.</summary>
    public static IEnumerable<object?> Items(object array) => ((IEnumerable)array).Cast<object?>();
}
