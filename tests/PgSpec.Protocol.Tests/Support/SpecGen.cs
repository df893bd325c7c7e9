using System.Collections.Immutable;
using System.Reflection;
using FsCheck;
using FsCheck.Fluent;

namespace PgSpec.Protocol.Tests.Support;

/// <summary>A generated message and the protocol version it is valid under.</summary>
public sealed record GeneratedMessage(PgMessageDescriptor Descriptor, IPgMessage Message, PgProtocolVersion Version)
{
    /// <summary>The context a decoder needs for the message (its version, and the 'p' message it expects).</summary>
    public DecodeContext NewContext()
    {
        var context = new DecodeContext { ProtocolVersion = Version, Phase = PgSessionPhase.Normal };
        if (Descriptor.ByContext)
        {
            context.ExpectedPasswordMessage = Enum.Parse<FrontendMessageKind>(Descriptor.Name);
        }

        return context;
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Message} [protocol {Version}]";
}

/// <summary>
/// Builds FsCheck generators for any message from its spec descriptor: walks the fields, generates
/// a value for each visible one within the spec's constraints, and passes them to the message's
/// constructor by parameter name. Groups are built through their nested class's constructor.
/// </summary>
public static class SpecGen
{
    private const int MaxItems = 6;
    private const int MaxTerminatedItems = 4;
    private const int MaxBytes = 48;

    private static readonly string[] s_nonAscii = ["é", "ß", "ü", "ñ", "Ж", "щ", "中", "文", "€", "\u00A0", "😀", "𝄞", "ﬁ"];

    /// <summary>The descriptor of the message named <paramref name="name"/>.</summary>
    public static PgMessageDescriptor Descriptor(string name) => PgProtocolSpec.Messages.Single(m => m.Name == name);

    /// <summary>Whether a field is a constructor argument (literals, counts and value lengths are derived).</summary>
    public static bool IsVisible(PgFieldDescriptor field) => field.Kind is not (PgFieldKind.Literal or PgFieldKind.Count or PgFieldKind.ValueLength);

    /// <summary>The property name of a field.</summary>
    public static string PropertyName(string fieldName) => char.ToUpperInvariant(fieldName[0]) + fieldName.Substring(1);

    /// <summary>Messages valid under protocol 3.0 or 3.2 (picked at random).</summary>
    public static Gen<GeneratedMessage> Message(PgMessageDescriptor descriptor)
        => Gen.Elements(PgProtocolVersion.V3_0, PgProtocolVersion.V3_2).SelectMany(version => Message(descriptor, version));

    /// <summary>Messages valid under <paramref name="version"/>.</summary>
    public static Gen<GeneratedMessage> Message(PgMessageDescriptor descriptor, PgProtocolVersion version)
        => Instance(descriptor.MessageType, descriptor.Fields, version, terminatedItem: false)
            .Select(message => new GeneratedMessage(descriptor, (IPgMessage)message, version));

    /// <summary>Any of <paramref name="descriptors"/>, valid under <paramref name="version"/>.</summary>
    public static Gen<GeneratedMessage> OneOf(IEnumerable<PgMessageDescriptor> descriptors, PgProtocolVersion version)
        => Gen.OneOf(descriptors.Select(d => Message(d, version)));

    /// <summary>Text without NUL: mostly ASCII, some control characters, sometimes non-ASCII UTF-8 (2 to 4 bytes).</summary>
    public static Gen<string> Text(bool nonEmpty)
    {
        Gen<string> piece = Gen.Frequency(
            (8, Gen.Choose(0x20, 0x7E).Select(c => ((char)c).ToString())),
            (1, Gen.Choose(0x01, 0x1F).Select(c => ((char)c).ToString())),
            (3, Gen.Elements(s_nonAscii)));
        return Gen.Choose(nonEmpty ? 1 : 0, 20)
            .SelectMany(n => Gen.ArrayOf(piece, n))
            .Select(string.Concat);
    }

    /// <summary>Bytes of any value, <paramref name="min"/> to <paramref name="max"/> long, sometimes a slice of a larger array.</summary>
    public static Gen<ReadOnlyMemory<byte>> Bytes(int min, int max)
        => from n in Gen.Choose(min, max)
           from data in Gen.ArrayOf(Gen.Choose(0, 255).Select(b => (byte)b), n + 4)
           from offset in Gen.Choose(0, 4)
           select new ReadOnlyMemory<byte>(data, offset, n);

    /// <summary>64 random bits.</summary>
    public static Gen<ulong> Random64 { get; } = Gen.ArrayOf(Gen.Choose(0, 0xFFFF).Select(p => (ulong)p), 4)
        .Select(parts => (parts[0] << 48) | (parts[1] << 32) | (parts[2] << 16) | parts[3]);

    /// <summary>A value of a wire integer type: edge cases, small numbers and anything in range.</summary>
    public static Gen<long> Integer(string wireType, (long Min, long Max)? range, bool nonZero)
    {
        (long min, long max) = range ?? wireType switch
        {
            "Byte1" => (0L, 255L),
            "Int8" => (sbyte.MinValue, sbyte.MaxValue),
            "Int16" => (short.MinValue, short.MaxValue),
            "Int32" => (int.MinValue, int.MaxValue),
            "Int64" => (long.MinValue, long.MaxValue),
            _ => throw new InvalidOperationException($"no integer wire type {wireType}"),
        };
        if (nonZero && min == 0)
        {
            min = 1;
        }

        ulong span = unchecked((ulong)(max - min));
        Gen<long> any = Random64.Select(r => span == ulong.MaxValue ? unchecked((long)r) : unchecked(min + (long)(r % (span + 1))));
        bool Allowed(long v) => v >= min && v <= max && !(nonZero && v == 0);
        long[] edges = [.. new[] { min, max, 0L, 1L, -1L, min + 1, max - 1 }.Where(Allowed).Distinct()];
        long[] small = [.. Enumerable.Range(0, 21).Select(v => (long)v).Where(Allowed)];
        return small.Length == 0
            ? Gen.Frequency((2, Gen.Elements(edges)), (5, any))
            : Gen.Frequency((2, Gen.Elements(edges)), (2, Gen.Elements(small)), (5, any));
    }

    private static Gen<object> Instance(Type type, IReadOnlyList<PgFieldDescriptor> fields, PgProtocolVersion version, bool terminatedItem)
    {
        ConstructorInfo constructor = type.GetConstructors().Single();
        ParameterInfo[] parameters = constructor.GetParameters();
        List<PgFieldDescriptor> visible = fields.Where(IsVisible).ToList();
        if (parameters.Length != visible.Count)
        {
            throw new InvalidOperationException($"{type.Name} takes {parameters.Length} arguments but its spec has {visible.Count} visible fields");
        }

        var arguments = new List<Gen<object?>>();
        foreach (ParameterInfo parameter in parameters)
        {
            PgFieldDescriptor field = visible.SingleOrDefault(f => f.Name == parameter.Name)
                ?? throw new InvalidOperationException($"{type.Name}({parameter.Name}) names no visible field of the spec");

            // In a list that ends at a zero byte, an item must not start with one.
            bool startsItem = terminatedItem && ReferenceEquals(field, fields[0]);
            arguments.Add(Field(type, field, parameter.ParameterType, version, startsItem));
        }

        return Gen.CollectToArray(arguments).Select(args => constructor.Invoke(args));
    }

    private static Gen<object?> Field(Type owner, PgFieldDescriptor field, Type type, PgProtocolVersion version, bool startsItem)
    {
        switch (field.Kind)
        {
            case PgFieldKind.Scalar:
                return Integer(field.WireType, field.Range, nonZero: startsItem).Select(v => (object?)Convert(v, type));
            case PgFieldKind.Enum:
                return Gen.Elements(field.EnumValues.ToArray()).Select(v => (object?)Convert(v, type));
            case PgFieldKind.FixedBytes:
                return Bytes(field.FixedSize, field.FixedSize).Select(b => (object?)b);
            case PgFieldKind.RestBytes:
                if (field.VersionSizes is { } sizes)
                {
                    (int min, int max) = version.HasVariableCancelKey ? (sizes.Min32, sizes.Max32) : (sizes.Min30, sizes.Max30);
                    return Gen.Frequency((3, Gen.Elements(min, max)), (2, Gen.Choose(min, max))).SelectMany(n => Bytes(n, n)).Select(b => (object?)b);
                }

                return Bytes(0, MaxBytes).Select(b => (object?)b);
            case PgFieldKind.SizedBytes:
                return Value(field.Nullable);
            case PgFieldKind.String:
                return Text(nonEmpty: startsItem).Select(s => (object?)s);
            case PgFieldKind.Array:
                return Array(owner, field, type, version);
            default:
                throw new InvalidOperationException($"{owner.Name}.{field.Name}: {field.Kind} is not a visible field");
        }
    }

    private static Gen<object?> Value(bool nullable)
    {
        Gen<object?> bytes = Bytes(0, MaxBytes).Select(b => (object?)b);
        return nullable ? Gen.Frequency((1, Gen.Constant<object?>(null)), (4, bytes)) : bytes;
    }

    private static Gen<object?> Array(Type owner, PgFieldDescriptor field, Type type, PgProtocolVersion version)
    {
        if (type == typeof(PgValueArray))
        {
            // A list of values (a group of one length-prefixed value): PgValueArray.
            if (field.Children.Count != 2 || field.Children[0].Kind != PgFieldKind.ValueLength || field.Children[1].Kind != PgFieldKind.SizedBytes)
            {
                throw new InvalidOperationException($"{owner.Name}.{field.Name} is a PgValueArray but not a list of values in the spec");
            }

            return Gen.Choose(0, field.Terminated ? MaxTerminatedItems : MaxItems)
                .SelectMany(n => Gen.ArrayOf(Value(field.Children[1].Nullable), n))
                .Select(items => (object?)new PgValueArray([.. items.Select(i => (ReadOnlyMemory<byte>?)i)]));
        }

        if (!type.IsGenericType || type.GetGenericTypeDefinition() != typeof(ImmutableArray<>))
        {
            throw new InvalidOperationException($"{owner.Name}.{field.Name} is an array in the spec but {type} in C#");
        }

        Type element = type.GetGenericArguments()[0];
        Gen<object?> item;
        switch (field.ElementKind)
        {
            case PgFieldKind.Scalar:
                item = Integer(field.WireType, null, nonZero: false).Select(v => (object?)Convert(v, element));
                break;
            case PgFieldKind.String:
                item = Text(nonEmpty: field.Terminated).Select(s => (object?)s);
                break;
            default:
                Type group = owner.GetNestedType(field.GroupName!) ?? throw new InvalidOperationException($"{owner.Name} has no nested class {field.GroupName}");
                if (group != element)
                {
                    throw new InvalidOperationException($"{owner.Name}.{field.Name} holds {element.Name}, not {group.Name}");
                }

                item = Instance(group, field.Children, version, field.Terminated).Select(g => (object?)g);
                break;
        }

        MethodInfo create = typeof(SpecGen).GetMethod(nameof(CreateImmutable), BindingFlags.NonPublic | BindingFlags.Static)!.MakeGenericMethod(element);
        return Gen.Choose(0, field.Terminated ? MaxTerminatedItems : MaxItems)
            .SelectMany(n => Gen.ArrayOf(item, n))
            .Select(items => create.Invoke(null, [items]));
    }

    private static object CreateImmutable<T>(object?[] items) => items.Select(i => (T)i!).ToImmutableArray();

    private static object Convert(long value, Type type)
    {
        if (type.IsEnum)
        {
            return Enum.ToObject(type, value);
        }

        return Type.GetTypeCode(type) switch
        {
            TypeCode.Byte => unchecked((byte)value),
            TypeCode.SByte => unchecked((sbyte)value),
            TypeCode.Int16 => unchecked((short)value),
            TypeCode.UInt16 => unchecked((ushort)value),
            TypeCode.Int32 => unchecked((int)value),
            TypeCode.UInt32 => unchecked((uint)value),
            TypeCode.Int64 => value,
            TypeCode.UInt64 => unchecked((ulong)value),
            _ => throw new InvalidOperationException($"no integer type {type}"),
        };
    }
}
