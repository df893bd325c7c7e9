using System.Reflection;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using PgSpec.Protocol;

namespace PgSpec.Cli.Tests.Support;

/// <summary>
/// The JSON line of a message as <c>pgspec decode</c> wrote it before its output streamed: the
/// owned message serialized by reflection into a JsonNode tree. The streaming writer must give
/// the same bytes; this one only exists to say what they are.
/// </summary>
public sealed class ReflectionJsonOutput
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

    private readonly long? _connection;
    private readonly bool _hideSecrets;
    private readonly bool _timestamps;

    public ReflectionJsonOutput(long? connection = null, bool hideSecrets = false, bool timestamps = false)
    {
        _connection = connection;
        _hideSecrets = hideSecrets;
        _timestamps = timestamps;
    }

    /// <summary>The line, with its newline, as UTF-8.</summary>
    public byte[] Line(PgReceivedMessage message, DecodeContext context)
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
                line["fields"] = null;
                line["undecoded"] = e.Field is null ? e.Reason : e.Field + ": " + e.Reason;
                line["body"] = BytesNode(message.Body);
            }
        }

        return Encoding.UTF8.GetBytes(line.ToJsonString(s_options) + "\n");
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

    private sealed class BytesJsonConverter : JsonConverter<ReadOnlyMemory<byte>>
    {
        public override ReadOnlyMemory<byte> Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
            => throw new NotSupportedException();

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

    private sealed class Byte1JsonConverter : JsonConverter<byte>
    {
        public override byte Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
            => throw new NotSupportedException();

        public override void Write(Utf8JsonWriter writer, byte value, JsonSerializerOptions options)
            => writer.WriteStringValue(PgTraceWriter.FormatByte(value));
    }
}
