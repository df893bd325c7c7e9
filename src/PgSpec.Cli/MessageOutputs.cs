using System.Reflection;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using PgSpec.Protocol;

namespace PgSpec.Cli;

/// <summary>Where decoded messages go.</summary>
internal interface IMessageOutput
{
    /// <summary>Writes one message (read and validated by a <see cref="PgMessageReader"/>).</summary>
    void Write(PgReceivedMessage message, DecodeContext context);
}

/// <summary>libpq's PQtrace lines.</summary>
internal sealed class TraceOutput : IMessageOutput
{
    private readonly PgTraceWriter _writer;

    public TraceOutput(PgTraceWriter writer) => _writer = writer;

    public void Write(PgReceivedMessage message, DecodeContext context)
    {
        // The reader has validated known messages; trace them as the kind it named them.
        if (message.FrameKind == PgFrameKind.EncryptionAnswer || message.IsUnknown)
        {
            message.Trace(_writer, context);
        }
        else if (message.Direction == PgDirection.Frontend)
        {
            FrontendMessages.Trace(message.FrontendKind, message.Body, _writer);
        }
        else
        {
            BackendMessages.Trace(message.BackendKind, message.Body, _writer);
        }
    }
}

/// <summary>
/// One JSON object per line: offset, direction, type, length, name and fields (the public
/// properties of the owned message: byte data as {"hex", "text"}, SQL NULL as null, enums by
/// name, Byte1 codes as one-character strings, groups as objects).
/// </summary>
internal sealed class JsonOutput : IMessageOutput
{
    private static readonly HashSet<string> s_envelope = new(StringComparer.Ordinal)
    {
        nameof(IPgMessage.Length),
        nameof(IPgMessage.EncodedLength),
        nameof(IPgMessage.TypeByte),
        nameof(IFrontendMessage.FrontendKind),
        nameof(IBackendMessage.BackendKind),
    };

    private static readonly JsonSerializerOptions s_options = CreateOptions();

    private readonly Stream _output;
    private readonly long? _connection;
    private readonly bool _hideSecrets;
    private readonly bool _timestamps;

    public JsonOutput(Stream output, long? connection = null, bool hideSecrets = false, bool timestamps = false)
    {
        _output = output;
        _connection = connection;
        _hideSecrets = hideSecrets;
        _timestamps = timestamps;
    }

    public void Write(PgReceivedMessage message, DecodeContext context)
    {
        var line = new JsonObject();
        if (_connection is { } connection)
        {
            line["connection"] = connection;
        }

        if (_timestamps)
        {
            line["time"] = DateTime.Now.ToString("yyyy-MM-dd HH:mm:ss.ffffff", System.Globalization.CultureInfo.InvariantCulture);
        }

        foreach ((string key, JsonNode? value) in new JsonObject
        {
            ["offset"] = message.Offset,
            ["direction"] = message.Direction == PgDirection.Frontend ? "F" : "B",
            ["type"] = message.FrameKind == PgFrameKind.Typed ? PgTraceWriter.FormatByte((byte)message.TypeByte) : null,
            ["length"] = message.FrameKind == PgFrameKind.EncryptionAnswer ? 1 : message.Length,
        })
        {
            line[key] = value?.DeepClone();
        }

        if (message.FrameKind == PgFrameKind.EncryptionAnswer)
        {
            bool gss = message.TypeByte == 'G' || context.LastEncryptionRequest == FrontendMessageKind.GSSENCRequest;
            line["name"] = gss ? "GSSENCResponse" : "SSLResponse";
            line["fields"] = new JsonObject { ["answer"] = ((char)message.TypeByte).ToString() };
        }
        else if (message.IsUnknown)
        {
            line["name"] = message.FrameKind == PgFrameKind.Typed && message.TypeByte == 'p' ? "p" : "Unknown";
            line["fields"] = new JsonObject { ["body"] = BytesNode(message.Body) };
        }
        else if (_hideSecrets && PgSpec.Proxy.ProxySecrets.IsSecret(message))
        {
            line["name"] = message.Name;
            line["fields"] = new JsonObject { ["redacted"] = true };
        }
        else
        {
            line["name"] = message.Name;
            try
            {
                IPgMessage owned = message.ToMessage(context);
                line["fields"] = JsonSerializer.SerializeToNode(owned, owned.GetType(), s_options);
            }
            catch (PgProtocolException e)
            {
                // Valid on the wire, but not representable as an owned message (a String that is not UTF-8).
                line["fields"] = null;
                line["undecoded"] = e.Field is null ? e.Reason : e.Field + ": " + e.Reason;
                line["body"] = BytesNode(message.Body);
            }
        }

        _output.Write(Encoding.UTF8.GetBytes(line.ToJsonString(s_options) + "\n"));
    }

    private static JsonObject BytesNode(ReadOnlySpan<byte> bytes)
    {
        var node = new JsonObject { ["hex"] = Convert.ToHexStringLower(bytes) };
        if (BytesJsonConverter.TryText(bytes, out string? text))
        {
            node["text"] = text;
        }

        return node;
    }

    private static JsonSerializerOptions CreateOptions()
    {
        var resolver = new DefaultJsonTypeInfoResolver();
        resolver.Modifiers.Add(info =>
        {
            if (info.Kind != JsonTypeInfoKind.Object || !typeof(IPgMessage).IsAssignableFrom(info.Type))
            {
                return;
            }

            for (int i = info.Properties.Count - 1; i >= 0; i--)
            {
                if (info.Properties[i].AttributeProvider is PropertyInfo property && s_envelope.Contains(property.Name))
                {
                    info.Properties.RemoveAt(i);
                }
            }
        });

        var options = new JsonSerializerOptions
        {
            TypeInfoResolver = resolver,
            PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
            Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
            WriteIndented = false,
        };
        options.Converters.Add(new BytesJsonConverter());
        options.Converters.Add(new Byte1JsonConverter());
        options.Converters.Add(new JsonStringEnumConverter());
        options.MakeReadOnly();
        return options;
    }

    /// <summary>Byte data as {"hex": "...", "text": "..."}; text only when it is UTF-8 without control characters (TAB, CR and LF allowed).</summary>
    private sealed class BytesJsonConverter : JsonConverter<ReadOnlyMemory<byte>>
    {
        public override ReadOnlyMemory<byte> Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
            => throw new NotSupportedException("pgspec only writes JSON");

        public override void Write(Utf8JsonWriter writer, ReadOnlyMemory<byte> value, JsonSerializerOptions options)
        {
            writer.WriteStartObject();
            writer.WriteString("hex", Convert.ToHexStringLower(value.Span));
            if (TryText(value.Span, out string? text))
            {
                writer.WriteString("text", text);
            }

            writer.WriteEndObject();
        }

        public static bool TryText(ReadOnlySpan<byte> bytes, out string? text)
        {
            text = null;
            if (!System.Text.Unicode.Utf8.IsValid(bytes))
            {
                return false;
            }

            string decoded = Encoding.UTF8.GetString(bytes);
            foreach (char c in decoded)
            {
                if (char.IsControl(c) && c is not ('\t' or '\n' or '\r'))
                {
                    return false;
                }
            }

            text = decoded;
            return true;
        }
    }

    /// <summary>A Byte1 field (an error field code, say) as a one-character string, or \xNN.</summary>
    private sealed class Byte1JsonConverter : JsonConverter<byte>
    {
        public override byte Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
            => throw new NotSupportedException("pgspec only writes JSON");

        public override void Write(Utf8JsonWriter writer, byte value, JsonSerializerOptions options)
            => writer.WriteStringValue(PgTraceWriter.FormatByte(value));
    }
}
