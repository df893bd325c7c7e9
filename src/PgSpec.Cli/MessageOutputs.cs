using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Frozen;
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Unicode;
using PgSpec.Protocol;
using PgSpec.Protocol.Replication;

namespace PgSpec.Cli;

/// <summary>Where decoded messages go.</summary>
internal interface IMessageOutput
{
    /// <summary>The connection's replication streams, when the output decodes them; fed by <see cref="Write"/>.</summary>
    ReplicationStreamContext? Replication { get; }

    /// <summary>Writes one message (read and validated by a <see cref="PgMessageReader"/>).</summary>
    void Write(PgReceivedMessage message, DecodeContext context);

    /// <summary>
    /// Only the frontend's side is decoded and it asked for a replication stream (START_REPLICATION):
    /// the stream is taken as started, as if the server had answered CopyBothResponse.
    /// </summary>
    void AssumeStreamStarted();
}

/// <summary>
/// libpq's PQtrace lines; passwords and authentication data hidden as the proxy's trace hides them,
/// unless shown. With replication decoding, the lines of the proxy's <c>--trace-replication</c> below
/// the CopyData of replication streams.
/// </summary>
internal sealed class TraceOutput : IMessageOutput
{
    private static readonly byte[] s_hiddenPassword = "********"u8.ToArray();

    private readonly PgTraceWriter _writer;

    /// <summary>The same output in regress mode, for the SASL and GSS data of secret messages; null when secrets are shown.</summary>
    private readonly PgTraceWriter? _masked;

    public TraceOutput(Stream output, PgTraceOptions options, bool showSecrets, bool replication = false)
    {
        _writer = new PgTraceWriter(output, options);
        _masked = showSecrets ? null : new PgTraceWriter(output, options with { Regress = true });
        Replication = replication ? new ReplicationStreamContext() : null;
    }

    public ReplicationStreamContext? Replication { get; }

    public void Write(PgReceivedMessage message, DecodeContext context)
    {
        WriteMessage(message, context);
        if (Replication is not { } replication)
        {
            return;
        }

        if (replication.Observe(message) is { } payload)
        {
            payload.Trace(_writer);
        }
        else if (message.BackendKind == BackendMessageKind.CopyBothResponse && replication.InStream)
        {
            NoteStream(replication);
        }
    }

    public void AssumeStreamStarted()
    {
        if (Replication is { StartRequested: true } replication)
        {
            replication.ObserveBackend(BackendMessageKind.CopyBothResponse, default);
            NoteStream(replication);
        }
    }

    /// <summary>What a stream that starts carries: a comment line below the line that started it.</summary>
    private void NoteStream(ReplicationStreamContext replication)
    {
        _writer.Indent = 1;
        _writer.Note(replication.Description);
        _writer.Indent = 0;
    }

    private void WriteMessage(PgReceivedMessage message, DecodeContext context)
    {
        if (_masked is not null && PgSpec.Proxy.ProxySecrets.IsSecret(message))
        {
            if (message.FrontendKind == FrontendMessageKind.PasswordMessage)
            {
                _writer.BeginMessage('F', message.Length, "PasswordMessage", maskLength: false, hasFields: true);
                _writer.String(s_hiddenPassword, masked: false);
                _writer.EndMessage(message.Length, message.Length, checkLength: false);
            }
            else
            {
                // Regress mode prints the SASL and GSS data as 'BBBB' and masks nothing else in these messages.
                Trace(message, _masked, context);
            }

            return;
        }

        Trace(message, _writer, context);
    }

    /// <summary>Traces a message as the kind the reader named it; the reader's validation is not repeated.</summary>
    private static void Trace(PgReceivedMessage message, PgTraceWriter writer, DecodeContext context) => message.Trace(writer, context);
}

/// <summary>
/// One JSON object per line: offset, direction, type, length, name and fields. The fields are
/// those of the owned message, as its public properties serialize (camelCase names, byte data as
/// {"hex", "text"}, SQL NULL as null, enums by name, Byte1 codes as one-character strings or \xNN,
/// groups as objects), but read from the validated body with the spec's descriptors and written as
/// they are read: values of any size go out in segments through a small buffer, so writing a
/// message takes a few tens of kilobytes whatever its size. The CopyData of replication streams
/// carry what they decode to (<see cref="ReplicationStreamContext"/>): "replication", the replication
/// message's object (name, type, fields; or its name and an "error"), and for pgoutput "pgoutput", the
/// pgoutput message's object (or its name and an "error"); a CopyBothResponse that starts a stream
/// whose START_REPLICATION was seen carries "replicationStream", what the stream is.
/// </summary>
internal sealed class JsonOutput : IMessageOutput
{
    /// <summary>A buffer grown past this for one line (a large pgoutput value) is given back after it.</summary>
    private const int KeptBufferSize = 256 * 1024;

    /// <summary>Bytes the JSON writer may hold before they go to the output.</summary>
    private const int FlushThreshold = 32 * 1024;

    /// <summary>Bytes of a value written per string segment (its hex is twice as long).</summary>
    private const int SegmentSize = 8 * 1024;

    /// <summary>Values up to this size have their hex made on the stack.</summary>
    private const int SmallValue = 256;

    private static readonly JsonWriterOptions s_options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static readonly FrozenDictionary<string, FieldPlan[]> s_messages = PgProtocolSpec.Messages.ToFrozenDictionary(m => m.Name, m => FieldPlan.Of(m.Fields), StringComparer.Ordinal);

    private static readonly string[] s_byte1 = [.. Enumerable.Range(0, 256).Select(b => PgTraceWriter.FormatByte((byte)b))];

    /// <summary>Bytes that keep data from being shown as text: control characters but TAB, LF and CR, and 0xC2, which starts the C1 controls (U+0080 to U+009F).</summary>
    private static readonly SearchValues<byte> s_notText = SearchValues.Create([.. Enumerable.Range(0, 0x20).Where(b => b is not ('\t' or '\n' or '\r')).Select(b => (byte)b), 0x7F, 0xC2]);

    private static readonly JsonEncodedText s_hex = JsonEncodedText.Encode("hex");
    private static readonly JsonEncodedText s_text = JsonEncodedText.Encode("text");

    private readonly Stream _output;
    private readonly long? _connection;
    private readonly bool _hideSecrets;
    private readonly bool _timestamps;
    private readonly Func<DateTime> _clock;

    // Small to start with: the proxy keeps one output per traced connection. The buffer grows to
    // what the largest line needs before it is flushed (some tens of kilobytes at most).
    private ArrayBufferWriter<byte> _buffer = new(1024);
    private readonly Utf8JsonWriter _writer;
    private byte[]? _hex;

    public JsonOutput(Stream output, long? connection = null, bool hideSecrets = false, bool timestamps = false, Func<DateTime>? clock = null)
    {
        _clock = clock ?? (() => DateTime.Now);
        _output = output;
        _connection = connection;
        _hideSecrets = hideSecrets;
        _timestamps = timestamps;
        _writer = new Utf8JsonWriter(_buffer, s_options);
    }

    public ReplicationStreamContext? Replication { get; } = new();

    public void AssumeStreamStarted()
    {
        if (Replication!.StartRequested)
        {
            Replication.ObserveBackend(BackendMessageKind.CopyBothResponse, default);
        }
    }

    public void Write(PgReceivedMessage message, DecodeContext context)
    {
        // After a failed write (the output closed, say) the writer may be inside an object.
        _writer.Reset();
        _buffer.ResetWrittenCount();

        Utf8JsonWriter json = _writer;
        json.WriteStartObject();
        if (_connection is { } connection)
        {
            json.WriteNumber("connection", connection);
        }

        if (_timestamps)
        {
            json.WriteString("time", _clock().ToString("yyyy-MM-dd HH:mm:ss.ffffff", CultureInfo.InvariantCulture));
        }

        json.WriteNumber("offset", message.Offset);
        json.WriteString("direction", message.Direction == PgDirection.Frontend ? "F" : "B");
        if (message.FrameKind == PgFrameKind.Typed)
        {
            json.WriteString("type", s_byte1[(byte)message.TypeByte]);
        }
        else
        {
            json.WriteNull("type");
        }

        json.WriteNumber("length", message.FrameKind == PgFrameKind.EncryptionAnswer ? 1 : message.Length);
        if (message.FrameKind == PgFrameKind.EncryptionAnswer)
        {
            bool gss = message.TypeByte == 'G' || context.LastEncryptionRequest == FrontendMessageKind.GSSENCRequest;
            json.WriteString("name", gss ? "GSSENCResponse" : "SSLResponse");
            json.WriteStartObject("fields");
            json.WriteString("answer", s_byte1[(byte)message.TypeByte]);
            json.WriteEndObject();
        }
        else if (message.IsUnknown)
        {
            // A 'p' that nothing names is still a password or authentication data.
            bool password = message.FrameKind == PgFrameKind.Typed && message.TypeByte == 'p';
            json.WriteString("name", password ? "p" : "Unknown");
            json.WriteStartObject("fields");
            if (password && message.Direction == PgDirection.Frontend && _hideSecrets)
            {
                json.WriteBoolean("redacted", true);
            }
            else
            {
                json.WritePropertyName("body");
                WriteBytes(message.Body);
            }

            json.WriteEndObject();
        }
        else if (_hideSecrets && PgSpec.Proxy.ProxySecrets.IsSecret(message))
        {
            json.WriteString("name", message.Name);
            json.WriteStartObject("fields");
            json.WriteBoolean("redacted", true);
            json.WriteEndObject();
        }
        else
        {
            json.WriteString("name", message.Name);
            FieldPlan[] fields = s_messages[message.Name];
            int position = 0;
            if (Walk(fields, message.Body, ref position, write: false) is { } notUtf8)
            {
                // Valid on the wire, but not representable as an owned message: its String is not
                // UTF-8 (the owned decoder's words, as this output has always given them).
                json.WriteNull("fields");
                json.WriteString("undecoded", notUtf8 + ": String is not valid UTF-8 (use the message's View for raw bytes in other encodings)");
                json.WritePropertyName("body");
                WriteBytes(message.Body);
            }
            else
            {
                json.WriteStartObject("fields");
                position = 0;
                Walk(fields, message.Body, ref position, write: true);
                json.WriteEndObject();
            }
        }

        WriteReplication(message);
        json.WriteEndObject();
        json.Flush();
        _buffer.Write("\n"u8);
        Drain();
        if (_buffer.Capacity > KeptBufferSize)
        {
            _buffer = new ArrayBufferWriter<byte>(1024);
            _writer.Reset(_buffer);
        }
    }

    /// <summary>What a message of a replication stream carries, as properties of its object.</summary>
    private void WriteReplication(PgReceivedMessage message)
    {
        ReplicationStreamContext replication = Replication!;
        Utf8JsonWriter json = _writer;
        if (replication.Observe(message) is not { } payload)
        {
            // What the START_REPLICATION asked for (nothing when it was not seen).
            if (message.BackendKind == BackendMessageKind.CopyBothResponse && replication.InStream && replication.Kind != ReplicationStreamKind.Unknown)
            {
                json.WriteStartObject("replicationStream");
                json.WriteString("kind", replication.Kind.ToString().ToLowerInvariant());
                WriteStringOrNull("slot", replication.SlotName);
                WriteStringOrNull("startLsn", replication.StartLsn);
                WriteStringOrNull("plugin", replication.Plugin);
                if (replication.PgOutput is { } pgoutput)
                {
                    json.WriteStartObject("pgoutput");
                    json.WriteNumber("protoVersion", pgoutput.ProtocolVersion);
                    json.WriteString("streaming", pgoutput.Streaming.ToString().ToLowerInvariant());
                    json.WriteEndObject();
                }
                else
                {
                    json.WriteNull("pgoutput");
                }

                json.WriteString("description", replication.Description);
                json.WriteEndObject();
            }

            return;
        }

        json.WritePropertyName("replication");
        switch (payload.Message)
        {
            case XLogData wal:
                // Its data as the CopyData's is written: in segments, whatever its size (WAL).
                json.WriteStartObject();
                json.WriteString("name", "XLogData");
                json.WriteString("type", "w");
                json.WriteStartObject("fields");
                json.WriteNumber("walStart", wal.WalStart);
                json.WriteNumber("walEnd", wal.WalEnd);
                json.WriteNumber("sendTime", wal.SendTime);
                json.WritePropertyName("data");
                WriteBytes(wal.Data.Span);
                json.WriteEndObject();
                json.WriteEndObject();
                break;
            case { } decoded:
                decoded.WriteJson(json);
                break;
            default:
                json.WriteStartObject();
                WriteStringOrNull("name", payload.Name);
                json.WriteString("error", payload.Error.ToString());
                json.WriteEndObject();
                break;
        }

        if (payload.PgOutput is { } inner)
        {
            json.WritePropertyName("pgoutput");
            inner.WriteJson(json);
        }
        else if (payload.PgOutputError is { } error)
        {
            json.WriteStartObject("pgoutput");
            WriteStringOrNull("name", payload.PgOutputName);
            json.WriteString("error", error.ToString() + "; pgoutput is not decoded in the rest of this stream");
            json.WriteEndObject();
        }
    }

    private void WriteStringOrNull(string name, string? value)
    {
        if (value is null)
        {
            _writer.WriteNull(name);
        }
        else
        {
            _writer.WriteString(name, value);
        }
    }

    /// <summary>
    /// Walks fields of a validated body. With <paramref name="write"/>, writes them as properties;
    /// without, only checks that every String is UTF-8 and returns the name of the first that is not.
    /// </summary>
    private string? Walk(FieldPlan[] fields, ReadOnlySpan<byte> body, ref int position, bool write)
    {
        Span<long> counts = stackalloc long[fields.Length];
        int valueLength = 0;
        for (int i = 0; i < fields.Length; i++)
        {
            FieldPlan plan = fields[i];
            PgFieldDescriptor field = plan.Field;
            switch (field.Kind)
            {
                case PgFieldKind.Literal:
                    position += plan.Size;
                    break;
                case PgFieldKind.Count:
                    // Int16 counts are unsigned, as PostgreSQL reads them.
                    counts[i] = plan.Size == 2 ? BinaryPrimitives.ReadUInt16BigEndian(body.Slice(position)) : ReadInteger(body.Slice(position, plan.Size));
                    position += plan.Size;
                    break;
                case PgFieldKind.ValueLength:
                    valueLength = BinaryPrimitives.ReadInt32BigEndian(body.Slice(position));
                    position += 4;
                    break;
                case PgFieldKind.Scalar:
                    if (write)
                    {
                        _writer.WritePropertyName(plan.Name);
                        WriteScalar(plan, body.Slice(position, plan.Size));
                    }

                    position += plan.Size;
                    break;
                case PgFieldKind.Enum:
                    if (write)
                    {
                        long value = field.WireType == "Int8" ? (sbyte)body[position] : body[position];
                        int index = IndexOf(field.EnumValues, value);
                        _writer.WritePropertyName(plan.Name);
                        if (index >= 0)
                        {
                            _writer.WriteStringValue(field.EnumNames[index]);
                        }
                        else
                        {
                            // Not reached for validated bodies; the serializer writes such a value as a number.
                            _writer.WriteNumberValue(value);
                        }
                    }

                    position += plan.Size;
                    break;
                case PgFieldKind.FixedBytes:
                case PgFieldKind.RestBytes:
                case PgFieldKind.SizedBytes:
                {
                    int size = field.Kind switch
                    {
                        PgFieldKind.FixedBytes => field.FixedSize,
                        PgFieldKind.RestBytes => body.Length - position,
                        _ => valueLength,
                    };
                    if (write)
                    {
                        _writer.WritePropertyName(plan.Name);
                        if (size < 0)
                        {
                            _writer.WriteNullValue();
                        }
                        else
                        {
                            WriteBytes(body.Slice(position, size));
                        }
                    }

                    position += Math.Max(size, 0);
                    break;
                }

                case PgFieldKind.String:
                {
                    ReadOnlySpan<byte> text = NextString(body, ref position);
                    if (write)
                    {
                        _writer.WritePropertyName(plan.Name);
                        WriteText(text);
                    }
                    else if (!Utf8.IsValid(text))
                    {
                        return field.Name;
                    }

                    break;
                }

                case PgFieldKind.Array:
                    if (write)
                    {
                        _writer.WritePropertyName(plan.Name);
                        _writer.WriteStartArray();
                    }

                    if (WalkItems(plan, plan.CountIndex >= 0 ? counts[plan.CountIndex] : -1, body, ref position, write) is { } notUtf8)
                    {
                        return notUtf8;
                    }

                    if (write)
                    {
                        _writer.WriteEndArray();
                    }

                    break;
                default:
                    throw new InvalidOperationException($"no JSON form for a field of kind {field.Kind}");
            }
        }

        return null;
    }

    /// <summary>The items of an array: <paramref name="count"/> of them, or up to a zero byte when the list is terminated.</summary>
    private string? WalkItems(FieldPlan plan, long count, ReadOnlySpan<byte> body, ref int position, bool write)
    {
        PgFieldDescriptor field = plan.Field;
        for (long i = 0; field.Terminated || i < count; i++)
        {
            if (field.Terminated && body[position] == 0)
            {
                position++;
                break;
            }

            switch (field.ElementKind)
            {
                case PgFieldKind.Scalar:
                    if (write)
                    {
                        WriteScalar(plan, body.Slice(position, plan.Size));
                    }

                    position += plan.Size;
                    break;
                case PgFieldKind.String:
                {
                    ReadOnlySpan<byte> text = NextString(body, ref position);
                    if (write)
                    {
                        WriteText(text);
                    }
                    else if (!Utf8.IsValid(text))
                    {
                        return field.Name;
                    }

                    break;
                }

                default:
                    if (plan.IsValueList)
                    {
                        // A list of values: null (SQL NULL) or the bytes.
                        int length = BinaryPrimitives.ReadInt32BigEndian(body.Slice(position));
                        position += 4;
                        if (write)
                        {
                            if (length < 0)
                            {
                                _writer.WriteNullValue();
                            }
                            else
                            {
                                WriteBytes(body.Slice(position, length));
                            }
                        }

                        position += Math.Max(length, 0);
                        break;
                    }

                    if (write)
                    {
                        _writer.WriteStartObject();
                    }

                    if (Walk(plan.Children, body, ref position, write) is { } notUtf8)
                    {
                        return notUtf8;
                    }

                    if (write)
                    {
                        _writer.WriteEndObject();
                    }

                    break;
            }
        }

        return null;
    }

    /// <summary>An integer as its owned property holds it: Byte1 as a character, Int16 signed, an OID unsigned.</summary>
    private void WriteScalar(FieldPlan plan, ReadOnlySpan<byte> bytes)
    {
        switch (plan.Size)
        {
            case 1 when plan.Field.WireType == "Byte1":
                _writer.WriteStringValue(s_byte1[bytes[0]]);
                break;
            case 1:
                _writer.WriteNumberValue((sbyte)bytes[0]);
                break;
            case 2:
                _writer.WriteNumberValue(BinaryPrimitives.ReadInt16BigEndian(bytes));
                break;
            case 4 when plan.Field.Oid:
                _writer.WriteNumberValue(BinaryPrimitives.ReadUInt32BigEndian(bytes));
                break;
            case 4:
                _writer.WriteNumberValue(BinaryPrimitives.ReadInt32BigEndian(bytes));
                break;
            default:
                _writer.WriteNumberValue(BinaryPrimitives.ReadInt64BigEndian(bytes));
                break;
        }
    }

    /// <summary>Byte data as {"hex": "...", "text": "..."}; text only when it is UTF-8 without control characters (TAB, CR and LF allowed).</summary>
    private void WriteBytes(ReadOnlySpan<byte> value)
    {
        _writer.WriteStartObject();
        _writer.WritePropertyName(s_hex);
        if (value.Length <= SmallValue)
        {
            Span<byte> small = stackalloc byte[2 * SmallValue];
            Convert.TryToHexStringLower(value, small, out int written);
            _writer.WriteStringValue(small.Slice(0, written));
        }
        else if (value.Length <= SegmentSize)
        {
            Span<byte> hex = _hex ??= new byte[2 * SegmentSize];
            Convert.TryToHexStringLower(value, hex, out int written);
            _writer.WriteStringValue(hex.Slice(0, written));
        }
        else
        {
            Span<byte> hex = _hex ??= new byte[2 * SegmentSize];
            for (int start = 0; start < value.Length; start += SegmentSize)
            {
                Convert.TryToHexStringLower(value.Slice(start, Math.Min(SegmentSize, value.Length - start)), hex, out int written);
                _writer.WriteStringValueSegment(hex.Slice(0, written), isFinalSegment: false);
                FlushIfFull();
            }

            _writer.WriteStringValueSegment(ReadOnlySpan<byte>.Empty, isFinalSegment: true);
        }

        if (IsText(value))
        {
            _writer.WritePropertyName(s_text);
            WriteText(value);
        }

        _writer.WriteEndObject();
    }

    /// <summary>UTF-8 text as a JSON string, in segments cut between characters when it is long.</summary>
    private void WriteText(ReadOnlySpan<byte> text)
    {
        if (text.Length <= SegmentSize)
        {
            _writer.WriteStringValue(text);
            return;
        }

        while (!text.IsEmpty)
        {
            int size = Math.Min(SegmentSize, text.Length);
            while (size < text.Length && (text[size] & 0xC0) == 0x80)
            {
                // Not inside a character: back up to the start of the one the cut would split.
                size--;
            }

            _writer.WriteStringValueSegment(text.Slice(0, size), isFinalSegment: false);
            text = text.Slice(size);
            FlushIfFull();
        }

        _writer.WriteStringValueSegment(ReadOnlySpan<byte>.Empty, isFinalSegment: true);
    }

    private void FlushIfFull()
    {
        if (_writer.BytesPending >= FlushThreshold)
        {
            _writer.Flush();
            Drain();
        }
    }

    private void Drain()
    {
        _output.Write(_buffer.WrittenSpan);
        _buffer.ResetWrittenCount();
    }

    /// <summary>Whether bytes read as text: valid UTF-8 without control characters (TAB, CR and LF allowed).</summary>
    private static bool IsText(ReadOnlySpan<byte> bytes)
    {
        if (!Utf8.IsValid(bytes))
        {
            return false;
        }

        int start = 0;
        while (bytes.Slice(start).IndexOfAny(s_notText) is var found and >= 0)
        {
            int at = start + found;

            // In valid UTF-8, 0xC2 leads a two-byte character; U+0080 to U+009F are controls.
            if (bytes[at] != 0xC2 || bytes[at + 1] < 0xA0)
            {
                return false;
            }

            start = at + 2;
        }

        return true;
    }

    private static ReadOnlySpan<byte> NextString(ReadOnlySpan<byte> body, ref int position)
    {
        int nul = body.Slice(position).IndexOf((byte)0);
        ReadOnlySpan<byte> text = body.Slice(position, nul);
        position += nul + 1;
        return text;
    }

    private static long ReadInteger(ReadOnlySpan<byte> bytes) => bytes.Length switch
    {
        1 => bytes[0],
        2 => BinaryPrimitives.ReadInt16BigEndian(bytes),
        4 => BinaryPrimitives.ReadInt32BigEndian(bytes),
        _ => BinaryPrimitives.ReadInt64BigEndian(bytes),
    };

    private static int IndexOf(IReadOnlyList<long> values, long value)
    {
        for (int i = 0; i < values.Count; i++)
        {
            if (values[i] == value)
            {
                return i;
            }
        }

        return -1;
    }

    /// <summary>A field of the spec with what writing it needs: its JSON name, integer size, count field and items.</summary>
    private sealed class FieldPlan
    {
        private FieldPlan(PgFieldDescriptor field, IReadOnlyList<PgFieldDescriptor> siblings)
        {
            Field = field;

            // The owned property is the field's name in PascalCase; the serializer wrote it in camelCase.
            Name = JsonEncodedText.Encode(JsonNamingPolicy.CamelCase.ConvertName(char.ToUpperInvariant(field.Name[0]) + field.Name.Substring(1)), s_options.Encoder);
            Size = field.WireType switch
            {
                "Byte1" or "Int8" => 1,
                "Int16" => 2,
                "Int32" => 4,
                "Int64" => 8,
                _ => 0,
            };
            CountIndex = field.CountField is { } count ? siblings.ToList().FindIndex(f => f.Name == count) : -1;
            Children = Of(field.Children);
            IsValueList = field.Children.Count == 2 && field.Children[0].Kind == PgFieldKind.ValueLength && field.Children[1].Kind == PgFieldKind.SizedBytes;
        }

        public PgFieldDescriptor Field { get; }

        public JsonEncodedText Name { get; }

        /// <summary>The size of an integer field (or of an array's integer items).</summary>
        public int Size { get; }

        /// <summary>For counted arrays: the index of the count among the sibling fields.</summary>
        public int CountIndex { get; }

        public FieldPlan[] Children { get; }

        /// <summary>A group of just a nullable length and its bytes: a list of values (DataRow columns, Bind parameters).</summary>
        public bool IsValueList { get; }

        public static FieldPlan[] Of(IReadOnlyList<PgFieldDescriptor> fields) => [.. fields.Select(f => new FieldPlan(f, fields))];
    }
}
