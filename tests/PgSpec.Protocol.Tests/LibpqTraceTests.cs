using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using PgSpec.Protocol;

namespace PgSpec.Protocol.Tests;

/// <summary>
/// Every line of libpq's own PQtrace output (PostgreSQL's libpq_pipeline expected traces) is
/// rebuilt as wire bytes from its fields, decoded strictly, and traced again: the line must come
/// out identical. The bytes are built from the spec's field list, so this checks the spec, the
/// decoder and the tracer together.
/// </summary>
public class LibpqTraceTests
{
    public static TheoryData<string> TraceFiles()
    {
        var data = new TheoryData<string>();
        foreach (string file in Directory.GetFiles(ReferenceFolder(), "*.trace").Order(StringComparer.Ordinal))
        {
            data.Add(Path.GetFileName(file));
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(TraceFiles))]
    public void EveryLine_RebuiltFromBytes_TracesIdentically(string file)
    {
        string[] lines = File.ReadAllLines(Path.Combine(ReferenceFolder(), file));
        Assert.NotEmpty(lines);
        int checkedLines = 0;
        foreach (string line in lines)
        {
            string expected = Libpq18(line, out int? declaredLength);
            (char direction, byte type, byte[] body) = Rebuild(line);
            // Masked strings stand for values of unknown length, so only unmasked lines pin the length.
            if (declaredLength is int length && !line.Contains("\"SSSS\"", StringComparison.Ordinal) && !line.Contains("'BBBB'", StringComparison.Ordinal))
            {
                Assert.True(length == body.Length + 4, $"{file}: rebuilt {body.Length + 4} bytes for a line that declares {length}: {line}");
            }

            string actual = TraceRegress(direction, type, body);
            Assert.True(expected + "\n" == actual, $"{file}:\n expected: {expected}\n actual:   {actual}");
            checkedLines++;
        }

        Assert.Equal(lines.Length, checkedLines);
    }

    [Fact]
    public void NoticeResponse_InRegressMode_PrintsLengthAsNN()
    {
        // transaction.trace predates libpq masking error/notice lengths; libpq 18 prints NN.
        string line = "B\t122\tNoticeResponse\t S \"NOTICE\" V \"NOTICE\" C \"42P07\" M \"relation \"pq_pipeline_tst\" already exists, skipping\" F \"SSSS\" L \"SSSS\" R \"SSSS\" \\x00";
        (char direction, byte type, byte[] body) = Rebuild(line);
        Assert.Equal('B', direction);
        Assert.Equal((byte)'N', type);
        string traced = TraceRegress(direction, type, body);
        Assert.StartsWith("B\tNN\tNoticeResponse\t S \"NOTICE\"", traced, StringComparison.Ordinal);
        Assert.DoesNotContain("\t122\t", traced, StringComparison.Ordinal);
    }

    internal static string ReferenceFolder()
    {
        string local = Path.Combine(AppContext.BaseDirectory, "reference");
        Assert.True(Directory.Exists(local), "the libpq reference traces were not copied next to the tests (shared/reference/libpq-traces beside the repository)");
        return local;
    }

    /// <summary>The line as libpq 18 prints it: backend E/N lengths are masked in regress mode.</summary>
    private static string Libpq18(string line, out int? declaredLength)
    {
        string[] parts = line.Split('\t');
        declaredLength = int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int n) ? n : null;
        if (parts[0] == "B" && (parts[2] == "ErrorResponse" || parts[2] == "NoticeResponse"))
        {
            parts[1] = "NN";
        }

        return string.Join('\t', parts);
    }

    internal static string TraceRegress(char direction, byte type, byte[] body)
    {
        using var output = new MemoryStream();
        var writer = new PgTraceWriter(output, new PgTraceOptions { Regress = true });
        bool ok = PgTrace.TryTrace(direction == 'F' ? PgDirection.Frontend : PgDirection.Backend, type, body, new DecodeContext { ProtocolVersion = PgProtocolVersion.V3_0 }, writer, out PgDecodeError error);
        Assert.True(ok, $"the rebuilt bytes do not decode: {error}");
        return Encoding.UTF8.GetString(output.ToArray());
    }

    /// <summary>Builds the wire body of a trace line from the spec's field list.</summary>
    internal static (char Direction, byte Type, byte[] Body) Rebuild(string line)
    {
        string[] parts = line.Split('\t', 4);
        char direction = parts[0][0];
        string name = parts[2];
        PgMessageDescriptor descriptor = PgProtocolSpec.Messages.Single(m => m.Name == name && (direction == 'F' ? m.Frontend : m.Backend));
        var cursor = new Cursor(parts.Length > 3 ? parts[3] : "");
        var body = new List<byte>();
        var values = new Dictionary<string, long>(StringComparer.Ordinal);
        WriteFields(descriptor.Fields, cursor, body, values);
        Assert.True(cursor.AtEnd, $"fields left over in: {line}");
        return (direction, (byte)descriptor.TypeByte, body.ToArray());
    }

    private static void WriteFields(IReadOnlyList<PgFieldDescriptor> fields, Cursor cursor, List<byte> body, Dictionary<string, long> values)
    {
        foreach (PgFieldDescriptor field in fields)
        {
            switch (field.Kind)
            {
                case PgFieldKind.Literal:
                    AppendInteger(body, field.WireType, field.Literal!.Value);
                    break;
                case PgFieldKind.Scalar:
                case PgFieldKind.Count:
                case PgFieldKind.ValueLength:
                case PgFieldKind.Enum:
                    long value = field.WireType is "Byte1" || field.Kind == PgFieldKind.Enum ? cursor.Byte1() : cursor.Integer();
                    values[field.Name] = value;
                    AppendInteger(body, field.Kind == PgFieldKind.Enum ? "Byte1" : field.WireType, value);
                    break;
                case PgFieldKind.String:
                    body.AddRange(cursor.String());
                    body.Add(0);
                    break;
                case PgFieldKind.SizedBytes:
                    if (values[$"{field.Name}#length"] >= 0)
                    {
                        body.AddRange(cursor.Bytes());
                    }

                    break;
                case PgFieldKind.RestBytes:
                case PgFieldKind.FixedBytes:
                    body.AddRange(cursor.Bytes());
                    break;
                case PgFieldKind.Array:
                    WriteArray(field, cursor, body, values);
                    break;
            }

            if (field.Kind == PgFieldKind.ValueLength)
            {
                // The next field is the value this length sizes.
                values[$"{NextSized(fields, field)}#length"] = values[field.Name];
            }
        }
    }

    private static string NextSized(IReadOnlyList<PgFieldDescriptor> fields, PgFieldDescriptor length)
    {
        for (int i = 0; i < fields.Count - 1; i++)
        {
            if (ReferenceEquals(fields[i], length))
            {
                return fields[i + 1].Name;
            }
        }

        throw new InvalidOperationException("a value length sizes nothing");
    }

    private static void WriteArray(PgFieldDescriptor field, Cursor cursor, List<byte> body, Dictionary<string, long> values)
    {
        if (field.Terminated)
        {
            while (!cursor.AtEnd && !cursor.AtTerminator(field.ElementKind == PgFieldKind.String || field.Children[0].WireType == "String"))
            {
                WriteItem(field, cursor, body, values);
            }

            if (!cursor.AtEnd)
            {
                cursor.SkipTerminator();
            }

            body.Add(0);
            return;
        }

        long count = values[field.CountField!];
        for (long i = 0; i < count; i++)
        {
            WriteItem(field, cursor, body, values);
        }
    }

    private static void WriteItem(PgFieldDescriptor field, Cursor cursor, List<byte> body, Dictionary<string, long> values)
    {
        switch (field.ElementKind)
        {
            case PgFieldKind.String:
                body.AddRange(cursor.String());
                body.Add(0);
                break;
            case PgFieldKind.Scalar:
                AppendInteger(body, field.WireType, cursor.Integer());
                break;
            default:
                WriteFields(field.Children, cursor, body, values);
                break;
        }
    }

    private static void AppendInteger(List<byte> body, string wireType, long value)
    {
        Span<byte> buffer = stackalloc byte[8];
        switch (wireType)
        {
            case "Byte1":
            case "Int8":
                body.Add(unchecked((byte)value));
                break;
            case "Int16":
                BinaryPrimitives.WriteInt16BigEndian(buffer, unchecked((short)value));
                body.AddRange(buffer[..2].ToArray());
                break;
            case "Int32":
                BinaryPrimitives.WriteInt32BigEndian(buffer, unchecked((int)value));
                body.AddRange(buffer[..4].ToArray());
                break;
            default:
                BinaryPrimitives.WriteInt64BigEndian(buffer, value);
                body.AddRange(buffer.ToArray());
                break;
        }
    }

    /// <summary>Reads the fields of a trace line: each starts with one space.</summary>
    private sealed class Cursor(string text)
    {
        private int _position;

        public bool AtEnd => _position >= text.Length;

        public bool AtTerminator(bool stringItems)
            => stringItems ? Peek(" \"\"") && (_position + 3 == text.Length) : Peek(" \\x00");

        public void SkipTerminator() => _position += text[_position + 1] == '"' ? 3 : 5;

        private bool Peek(string s) => string.CompareOrdinal(text, _position, s, 0, s.Length) == 0;

        private string Token()
        {
            Assert.True(text[_position] == ' ', $"expected a field at {_position} in: {text}");
            int end = text.IndexOf(' ', _position + 1);
            end = end < 0 ? text.Length : end;
            string token = text[(_position + 1)..end];
            _position = end;
            return token;
        }

        public long Integer()
        {
            string token = Token();
            return token == "NNNN" ? 0 : long.Parse(token, CultureInfo.InvariantCulture);
        }

        public long Byte1()
        {
            string token = Token();
            return token.StartsWith("\\x", StringComparison.Ordinal) ? Convert.ToByte(token[2..], 16) : token[0];
        }

        /// <summary>Strings are printed raw, so the closing quote is the first one that is followed by the end or by another field.</summary>
        public byte[] String()
        {
            Assert.True(Peek(" \""), $"expected a string at {_position} in: {text}");
            int start = _position + 2;
            for (int i = start; i < text.Length; i++)
            {
                if (text[i] != '"')
                {
                    continue;
                }

                string rest = text[(i + 1)..];
                if (rest.Length == 0 || rest.StartsWith(" \"", StringComparison.Ordinal) || rest.StartsWith(" '", StringComparison.Ordinal)
                    || (rest.Length >= 2 && rest[0] == ' ' && (char.IsDigit(rest[1]) || rest[1] == '-' || rest.StartsWith(" NNNN", StringComparison.Ordinal) || rest.StartsWith(" \\x", StringComparison.Ordinal)))
                    || (rest.Length >= 2 && rest[0] == ' ' && (rest.Length == 2 || rest[2] == ' ')))
                {
                    _position = i + 1;
                    return Encoding.UTF8.GetBytes(text[start..i]);
                }
            }

            throw new InvalidOperationException("unterminated string in: " + text);
        }

        public byte[] Bytes()
        {
            Assert.True(Peek(" '"), $"expected byte data at {_position} in: {text}");
            int end = text.IndexOf('\'', _position + 2);
            string inner = text[(_position + 2)..end];
            _position = end + 1;
            var bytes = new List<byte>();
            for (int i = 0; i < inner.Length; i++)
            {
                if (inner[i] == '\\' && i + 3 < inner.Length + 0 && inner[i + 1] == 'x')
                {
                    bytes.Add(Convert.ToByte(inner.Substring(i + 2, 2), 16));
                    i += 3;
                }
                else
                {
                    bytes.Add((byte)inner[i]);
                }
            }

            return bytes.ToArray();
        }
    }
}
