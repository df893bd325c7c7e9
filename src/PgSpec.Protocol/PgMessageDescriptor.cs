namespace PgSpec.Protocol;

/// <summary>How a field is laid out, as the spec says.</summary>
public enum PgFieldKind
{
    /// <summary>An integer with a fixed value (a sub-code or request code).</summary>
    Literal,

    /// <summary>Byte1, Int8, Int16, Int32 or Int64 carrying a value.</summary>
    Scalar,

    /// <summary>An integer that counts the items of a later array (derived when encoding).</summary>
    Count,

    /// <summary>The Int32 length of the following Byten(len) (derived when encoding; -1 is NULL when nullable).</summary>
    ValueLength,

    /// <summary>A Byte1 or Int8 restricted to an enum's values.</summary>
    Enum,

    /// <summary>ByteN with a fixed N.</summary>
    FixedBytes,

    /// <summary>Byten: the rest of the message.</summary>
    RestBytes,

    /// <summary>Byten(len): bytes sized by the preceding ValueLength.</summary>
    SizedBytes,

    /// <summary>A NUL-terminated string.</summary>
    String,

    /// <summary>A repeated scalar, string or group: counted, or until a zero byte.</summary>
    Array,

    /// <summary>A part shared by the messages of a family (pgoutput's TupleData), embedded; see <see cref="PgFieldDescriptor.PartName"/>.</summary>
    Part,
}

/// <summary>One field of a message, as specified.</summary>
public sealed record PgFieldDescriptor
{
    /// <summary>The field name in the spec (camelCase; the property is PascalCase).</summary>
    public required string Name { get; init; }

    /// <summary>The layout.</summary>
    public required PgFieldKind Kind { get; init; }

    /// <summary>Byte1, Int8, Int16, Int32, Int64, String or Bytes (for arrays: the element's).</summary>
    public required string WireType { get; init; }

    /// <summary>The fixed value of a literal.</summary>
    public long? Literal { get; init; }

    /// <summary>N of ByteN.</summary>
    public int FixedSize { get; init; }

    /// <summary>Whether -1 (NULL) is allowed for a ValueLength / SizedBytes.</summary>
    public bool Nullable { get; init; }

    /// <summary>Whether an Int32 is an object ID.</summary>
    public bool Oid { get; init; }

    /// <summary>For arrays: the count field, or null when the list ends at a zero byte.</summary>
    public string? CountField { get; init; }

    /// <summary>For arrays: the list ends at a zero byte.</summary>
    public bool Terminated { get; init; }

    /// <summary>For enums: the enum's name and values.</summary>
    public string? EnumName { get; init; }

    /// <summary>For enums: the allowed values.</summary>
    public IReadOnlyList<long> EnumValues { get; init; } = [];

    /// <summary>For enums: the names of <see cref="EnumValues"/> (the enum's members), in the same order.</summary>
    public IReadOnlyList<string> EnumNames { get; init; } = [];

    /// <summary>For scalars with a range: the bounds.</summary>
    public (long Min, long Max)? Range { get; init; }

    /// <summary>For Byten whose size depends on the protocol version: (min, max) under 3.0 and 3.2.</summary>
    public (int Min30, int Max30, int Min32, int Max32)? VersionSizes { get; init; }

    /// <summary>For arrays of groups: the group's type name and its fields.</summary>
    public string? GroupName { get; init; }

    /// <summary>For arrays of groups: the fields of one item.</summary>
    public IReadOnlyList<PgFieldDescriptor> Children { get; init; } = [];

    /// <summary>For arrays: Scalar, String or Array (a group).</summary>
    public PgFieldKind ElementKind { get; init; }

    /// <summary>
    /// In a family's message: when the field is present, as the spec writes it ("if streaming",
    /// "since 4 if parallel", "optional", "if kind is Text, Binary"); null when it always is.
    /// </summary>
    public string? Condition { get; init; }

    /// <summary>For <see cref="PgFieldKind.Part"/>: the part's name (its descriptor is in the family's Parts).</summary>
    public string? PartName { get; init; }
}

/// <summary>One message, as specified.</summary>
public sealed record PgMessageDescriptor
{
    /// <summary>The documented name.</summary>
    public required string Name { get; init; }

    /// <summary>The frontend sends it.</summary>
    public required bool Frontend { get; init; }

    /// <summary>The backend sends it.</summary>
    public required bool Backend { get; init; }

    /// <summary>The type byte, or -1 for untyped startup packets.</summary>
    public required int TypeByte { get; init; }

    /// <summary>The default limit of the length word.</summary>
    public required int MaxLength { get; init; }

    /// <summary>Told apart from others with its type byte by the decode context.</summary>
    public bool ByContext { get; init; }

    /// <summary>libpq's tracer never prints it (AuthenticationOk): its trace is empty.</summary>
    public bool Untraced { get; init; }

    /// <summary>The owned message type.</summary>
    public required Type MessageType { get; init; }

    /// <summary>The spec file and line.</summary>
    public required string Source { get; init; }

    /// <summary>The fields after the type byte and the length word (in a family's message: after the type byte).</summary>
    public required IReadOnlyList<PgFieldDescriptor> Fields { get; init; }

    /// <summary>
    /// The family of a message carried inside another (such as "Replication" in CopyData, "PgOutput" in
    /// XLogData): it has a type byte but no length word, and no limit of its own (<see cref="MaxLength"/>
    /// is <see cref="int.MaxValue"/>). Null for the messages of the protocol itself.
    /// </summary>
    public string? Family { get; init; }

    /// <summary>In a family with versions: the first version that has the message (0: every version).</summary>
    public int SinceVersion { get; init; }
}
