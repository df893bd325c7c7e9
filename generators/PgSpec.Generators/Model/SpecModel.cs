namespace PgSpec.Generators.Model
{
    /// <summary>Which side sends a message.</summary>
    internal enum Direction
    {
        Frontend,
        Backend,
        Both,
    }

    /// <summary>How a field is laid out on the wire.</summary>
    internal enum FieldKind
    {
        /// <summary>Byte1('X'): the type byte of a typed message.</summary>
        TypeByte,

        /// <summary>The Int32 length word, including itself; optionally a literal.</summary>
        Length,

        /// <summary>An integer with a fixed value (Int32(80877103), the 'R' sub-codes).</summary>
        Literal,

        /// <summary>Byte1, Int8, Int16, Int32 or Int64 carrying a value.</summary>
        Scalar,

        /// <summary>A Byte1 or Int8 restricted to the values of an enum.</summary>
        Enum,

        /// <summary>ByteN with a fixed N (Byte4).</summary>
        FixedBytes,

        /// <summary>Byten: the rest of the message.</summary>
        RestBytes,

        /// <summary>Byten(len): as many bytes as an earlier Int32 says; -1 is NULL when that field is nullable.</summary>
        SizedBytes,

        /// <summary>A NUL-terminated string.</summary>
        String,

        /// <summary>A repeated field or group: counted by an earlier field, or until a zero byte.</summary>
        Array,

        /// <summary>A shared message part of a family (TupleData), embedded.</summary>
        Part,
    }

    /// <summary>The primitive wire types of the docs' notation.</summary>
    internal enum WireType
    {
        None,
        Byte1,
        Int8,
        Int16,
        Int32,
        Int64,
        String,
        Bytes,
    }

    /// <summary>The role a scalar plays for other fields.</summary>
    internal enum FieldRole
    {
        Value,
        Count,
        ValueLength,
    }

    internal sealed record DiagnosticInfo(string Id, string Message, string Path, int Line, int Column, int Length);

    /// <summary>One value of an enum: a byte (Value, IsChar) or, for a String enum, Text.</summary>
    internal sealed record EnumMemberSpec(string Name, long Value, bool IsChar, string? Text = null);

    internal sealed record EnumSpec(string Name, WireType Type, EquatableArray<EnumMemberSpec> Members, string Path, int Line);

    internal sealed record FieldSpec
    {
        public string Name { get; init; } = "";
        public FieldKind Kind { get; init; }
        public WireType Type { get; init; }
        public FieldRole Role { get; init; }
        public long? Literal { get; init; }
        public int FixedSize { get; init; }
        public string? EnumName { get; init; }
        public WireType EnumType { get; init; }

        /// <summary>For enum fields: the values the enum allows, set when the enum is resolved.</summary>
        public EquatableArray<long> EnumValues { get; init; } = EquatableArray<long>.Empty;

        /// <summary>For enum fields: the names of <see cref="EnumValues"/>, in the same order.</summary>
        public EquatableArray<string> EnumNames { get; init; } = EquatableArray<string>.Empty;
        public string? CountField { get; init; }
        public bool Terminated { get; init; }
        public string? LengthField { get; init; }
        public bool Nullable { get; init; }
        public bool Oid { get; init; }
        public bool HasVersionSizes { get; init; }
        public int MinSize30 { get; init; }
        public int MaxSize30 { get; init; }
        public int MinSize32 { get; init; }
        public int MaxSize32 { get; init; }
        public bool HasRange { get; init; }

        /// <summary>Trace: libpq's regress mode masks the value (NNNN, "SSSS", 'BBBB').</summary>
        public bool TraceMasked { get; init; }

        /// <summary>Trace: masked in regress mode when the group's Byte1 code is one of these characters.</summary>
        public string MaskIfCodes { get; init; } = "";

        /// <summary>Trace: libpq does not print (nor count) this field.</summary>
        public bool Untraced { get; init; }

        /// <summary>Trace: libpq prints only the first four bytes, as an Int32.</summary>
        public bool TracedAsInt32 { get; init; }

        /// <summary>Trace: libpq prints the zero byte that ends this list.</summary>
        public bool TraceEnd { get; init; }
        public long RangeMin { get; init; }
        public long RangeMax { get; init; }

        /// <summary>For arrays: the element (a single field, or a group).</summary>
        public string? GroupName { get; init; }
        public EquatableArray<FieldSpec> Children { get; init; } = EquatableArray<FieldSpec>.Empty;

        /// <summary>For arrays of scalars, strings or enums: the element's wire type.</summary>
        public FieldKind ElementKind { get; init; }

        public int Line { get; init; }

        /// <summary>Family messages: the field is present only when the context says so ('if streaming', 'if parallel'), or empty.</summary>
        public string ConditionFlag { get; init; } = "";

        /// <summary>Family messages: the field is present only when this earlier field is ('if FIELD'), or has one of <see cref="ConditionValues"/> ('if FIELD is A, B').</summary>
        public string? ConditionField { get; init; }

        /// <summary>The enum members named by 'if FIELD is A, B' (empty: present whenever FIELD is).</summary>
        public EquatableArray<string> ConditionValues { get; init; } = EquatableArray<string>.Empty;

        /// <summary>The byte values of <see cref="ConditionValues"/>, set when the enum is resolved.</summary>
        public EquatableArray<long> ConditionBytes { get; init; } = EquatableArray<long>.Empty;

        /// <summary>Family messages: the field is present only since this protocol version of the family ('since N'); 0 when always.</summary>
        public int Since { get; init; }

        /// <summary>Family messages: an enum field that may be absent: present when the next byte is one of its values ('optional').</summary>
        public bool Optional { get; init; }

        /// <summary>For a field whose type is a part (a shared message part such as TupleData): the part's name.</summary>
        public string? PartName { get; init; }

        /// <summary>Whether the field's presence depends on anything (a condition, a version or 'optional').</summary>
        public bool IsConditional => ConditionFlag.Length > 0 || ConditionField is not null || Since > 0 || Optional;
    }

    /// <summary>
    /// A family of sub-messages carried in a field of another message ('family Replication in CopyData.data'):
    /// each starts with its type byte and has no length word; its body is the rest of the carrier's field.
    /// </summary>
    internal sealed record FamilySpec
    {
        public string Name { get; init; } = "";
        public string Carrier { get; init; } = "";
        public string CarrierField { get; init; } = "";

        /// <summary>The protocol versions of the family ('versions 1..4'); 0 when it has none.</summary>
        public int MinVersion { get; init; }
        public int MaxVersion { get; init; }
        public string Path { get; init; } = "";
        public int Line { get; init; }
        public string Comment { get; init; } = "";

        /// <summary>Whether decoding takes a <c>PgOutputContext</c> (the family has versions).</summary>
        public bool HasContext => MaxVersion > 0;
    }

    /// <summary>A phase change: when a message is sent in <see cref="From"/> (empty: in any phase), the phase becomes <see cref="To"/>.</summary>
    internal sealed record PhaseTransition(string From, string To);

    /// <summary>
    /// The flow of one side's message ('in', 'ignored-in', 'enters', 'extended', 'ends-error-skip'):
    /// phases are the names of PgSpec.Protocol's PgSessionPhase.
    /// </summary>
    internal sealed record FlowSpec
    {
        public static readonly FlowSpec Empty = new FlowSpec();

        /// <summary>The phases in which the side may send the message and the receiver acts on it ('in').</summary>
        public EquatableArray<string> In { get; init; } = EquatableArray<string>.Empty;

        /// <summary>The phases in which the side may send the message but the receiver drops it ('ignored-in').</summary>
        public EquatableArray<string> IgnoredIn { get; init; } = EquatableArray<string>.Empty;

        /// <summary>The phase changes the message makes ('enters TO', 'enters TO from A, B').</summary>
        public EquatableArray<PhaseTransition> Transitions { get; init; } = EquatableArray<PhaseTransition>.Empty;

        /// <summary>A frontend message of the extended query protocol ('extended').</summary>
        public bool Extended { get; init; }

        /// <summary>A frontend message the server acts on even while it skips messages after an error ('ends-error-skip').</summary>
        public bool EndsErrorSkip { get; init; }
    }

    internal sealed record MessageSpec
    {
        public string Name { get; init; } = "";
        public Direction Direction { get; init; }

        /// <summary>The type byte, or -1 for the untyped startup-phase packets.</summary>
        public int TypeByte { get; init; } = -1;
        public long MaxLength { get; init; }
        public bool ByContext { get; init; }

        /// <summary>Trace: libpq's regress mode prints the length as NN.</summary>
        public bool MaskedLength { get; init; }

        /// <summary>Trace: libpq never prints this message.</summary>
        public bool Untraced { get; init; }

        /// <summary>The message carries a password or authentication exchange data ('secret'): traces hide it unless asked.</summary>
        public bool Secret { get; init; }

        /// <summary>Flow: the frontend message that answers this one ('answered-by NAME'), or empty.</summary>
        public string AnsweredBy { get; init; } = "";

        /// <summary>Flow: the phases and phase changes of the message as the frontend sends it (empty for a backend message).</summary>
        public FlowSpec FrontendFlow { get; init; } = FlowSpec.Empty;

        /// <summary>Flow: the phases and phase changes of the message as the backend sends it (empty for a frontend message).</summary>
        public FlowSpec BackendFlow { get; init; } = FlowSpec.Empty;
        public EquatableArray<FieldSpec> Fields { get; init; } = EquatableArray<FieldSpec>.Empty;
        public string Path { get; init; } = "";
        public int Line { get; init; }
        public string Comment { get; init; } = "";

        /// <summary>The family of a sub-message ('of Replication'), or empty for a message of the protocol itself.</summary>
        public string Family { get; init; } = "";

        /// <summary>A shared message part ('part TupleData'): fields only, no type byte.</summary>
        public bool IsPart { get; init; }

        /// <summary>Family messages: the message exists since this version of the family ('since N'); 0 when always.</summary>
        public int Since { get; init; }

        /// <summary>Family messages: the message opens a streamed block, in which 'if streaming' fields are present ('starts-stream').</summary>
        public bool StartsStream { get; init; }

        /// <summary>Family messages: the message closes the streamed block ('ends-stream').</summary>
        public bool EndsStream { get; init; }
    }

    /// <summary>What one spec file says, before cross-file checks.</summary>
    internal sealed record SpecFile(
        string Path,
        EquatableArray<MessageSpec> Messages,
        EquatableArray<EnumSpec> Enums,
        EquatableArray<DiagnosticInfo> Diagnostics)
    {
        /// <summary>The families the file declares.</summary>
        public EquatableArray<FamilySpec> Families { get; init; } = EquatableArray<FamilySpec>.Empty;

        /// <summary>The sub-messages and parts of families the file declares.</summary>
        public EquatableArray<MessageSpec> FamilyMessages { get; init; } = EquatableArray<MessageSpec>.Empty;
    }

    /// <summary>
    /// One message resolved against every file: what the emitter needs, and nothing else,
    /// so that an unchanged message stays cached when another file changes.
    /// </summary>
    internal sealed record ResolvedMessage(
        MessageSpec Message,
        EquatableArray<EnumSpec> Enums,
        string Namespace,
        string? DiscriminatorKind);

    /// <summary>Everything at once: for the dispatchers, the limits table and the dictionary.</summary>
    internal sealed record ProtocolSpec(
        EquatableArray<MessageSpec> Messages,
        EquatableArray<EnumSpec> Enums,
        string Namespace,
        EquatableArray<DiagnosticInfo> Diagnostics)
    {
        /// <summary>The families of sub-messages carried in other messages.</summary>
        public EquatableArray<FamilySpec> Families { get; init; } = EquatableArray<FamilySpec>.Empty;

        /// <summary>The sub-messages and parts of the families, resolved, in name order.</summary>
        public EquatableArray<MessageSpec> FamilyMessages { get; init; } = EquatableArray<MessageSpec>.Empty;
    }
}
