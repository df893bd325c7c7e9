using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Json;
using PgSpec.Protocol;

namespace PgSpec.Cli.Script;

/// <summary>The output formats of <c>pgspec script</c>.</summary>
internal enum ScriptFormat
{
    /// <summary>pgproto's lines: <c>FE=> ...</c> for each message sent, <c>&lt;= BE ...</c> for each received.</summary>
    Pgproto,

    /// <summary>libpq's PQtrace lines.</summary>
    Trace,

    /// <summary>One JSON object per message and line.</summary>
    Json,
}

/// <summary>Where the messages of a script's run are written, as they are sent and received.</summary>
internal interface IScriptOutput
{
    /// <summary>A message of the script, as encoded.</summary>
    void Sent(SendStep step, ReadOnlySpan<byte> bytes);

    /// <summary>Raw bytes of the script.</summary>
    void SentRaw(ReadOnlySpan<byte> bytes);

    /// <summary>A message from the server: type byte, length and body.</summary>
    void Received(ReadOnlySpan<byte> raw);

    /// <summary>The connection ended while reading; <paramref name="pgprotoLine"/> is what pgproto prints then.</summary>
    void ConnectionLost(string pgprotoLine);

    void Flush();
}

/// <summary>pgproto's output, byte for byte (see pgpool's src/tools/pgproto/read.c for the backend lines).</summary>
internal sealed class PgprotoOutput(Stream output) : IScriptOutput
{
    private readonly MemoryStream _line = new();

    public void Sent(SendStep step, ReadOnlySpan<byte> bytes) => Line("FE=> " + step.Display);

    public void SentRaw(ReadOnlySpan<byte> bytes) => Line("FE=> Raw(" + Convert.ToHexStringLower(bytes) + ")");

    public void ConnectionLost(string pgprotoLine) => Line(pgprotoLine);

    public void Flush() => output.Flush();

    public void Received(ReadOnlySpan<byte> raw)
    {
        byte type = raw[0];
        ReadOnlySpan<byte> body = raw[5..];
        _line.SetLength(0);
        Text("<= BE ");
        switch ((char)type)
        {
            case '1': Text("ParseComplete"); break;
            case '2': Text("BindComplete"); break;
            case '3': Text("CloseComplete"); break;
            case 'C':
                Text("CommandComplete(");
                Bytes(CString(body, 0, out _));
                Text(")");
                break;
            case 'D': Text("DataRow"); break;
            case 'E':
            case 'N':
                Text(type == 'E' ? "ErrorResponse(" : "NoticeResponse(");
                for (int at = 0; at < body.Length && body[at] != 0;)
                {
                    _line.WriteByte(body[at]);
                    Text(" ");
                    Bytes(CString(body, at + 1, out at));
                    Text(" ");
                }

                Text(")");
                break;
            case 'G': Text("CopyInResponse"); break;
            case 'H': Text("CopyOutResponse"); break;
            case 'I': Text("EmptyQueryResponse"); break;
            case 'S':
                Text("ParameterStatus(name: \"");
                Bytes(CString(body, 0, out int value));
                Text("\" value: \"");
                Bytes(CString(body, value, out _));
                Text("\")");
                break;
            case 'T': Text("RowDescription"); break;
            case 'V': Text("FunctionCallResponse"); break;
            case 'W': Text("CopyBothResponse"); break;
            case 'Z':
                Text("ReadyForQuery(");
                if (body.Length > 0)
                {
                    _line.WriteByte(body[0]);
                }

                Text(")");
                break;
            case 'c': Text("CopyDone"); break;
            case 'd': Text("CopyData"); break;
            case 'n': Text("NoData"); break;
            case 's': Text("PortalSuspended"); break;
            case 't': Text("ParameterDescription"); break;
            case 'A':
                int pid = body.Length >= 4 ? BinaryPrimitives.ReadInt32BigEndian(body) : 0;
                Text("Notification response. pid: " + pid.ToString(CultureInfo.InvariantCulture) + " channel: ");
                Bytes(CString(body, 4, out int payload));
                Text(" payload: \"");
                Bytes(CString(body, payload, out _));
                Text("\"");
                break;
            default:
                Text("(");
                _line.WriteByte(type);
                Text(")");
                break;
        }

        Text("\n");
        output.Write(_line.GetBuffer().AsSpan(0, (int)_line.Length));
    }

    private void Line(string text)
    {
        output.Write(Encoding.UTF8.GetBytes(text + "\n"));
    }

    private void Text(string text) => _line.Write(Encoding.UTF8.GetBytes(text));

    private void Bytes(ReadOnlySpan<byte> bytes) => _line.Write(bytes);

    /// <summary>The NUL-terminated string at <paramref name="start"/> (to the end of the body if unterminated); <paramref name="next"/> is after its NUL.</summary>
    private static ReadOnlySpan<byte> CString(ReadOnlySpan<byte> body, int start, out int next)
    {
        if (start >= body.Length)
        {
            next = body.Length;
            return [];
        }

        int length = body[start..].IndexOf((byte)0);
        if (length < 0)
        {
            next = body.Length;
            return body[start..];
        }

        next = start + length + 1;
        return body.Slice(start, length);
    }
}

/// <summary>PQtrace lines or JSON objects, written by the decoder's outputs from the messages' bytes.</summary>
internal sealed class DecodedOutput : IScriptOutput
{
    private readonly Stream _output;
    private readonly IMessageOutput _messages;
    private readonly bool _json;
    private readonly DecodeContext _context;
    private readonly PgMessageReader _frontend;
    private readonly PgMessageReader _backend;

    public DecodedOutput(Stream output, ScriptFormat format, bool regress, PgProtocolVersion version)
    {
        _output = output;
        _json = format == ScriptFormat.Json;
        _messages = _json
            ? new JsonOutput(output)
            : new TraceOutput(output, new PgTraceOptions { Regress = regress }, showSecrets: true);
        _context = new DecodeContext { Phase = PgSessionPhase.Normal, ProtocolVersion = version };
        _frontend = new PgMessageReader(PgDirection.Frontend, _context);
        _backend = new PgMessageReader(PgDirection.Backend, _context);
    }

    public void Sent(SendStep step, ReadOnlySpan<byte> bytes) => Write(_frontend, bytes, 'F');

    public void SentRaw(ReadOnlySpan<byte> bytes) => Write(_frontend, bytes, 'F');

    public void Received(ReadOnlySpan<byte> raw) => Write(_backend, raw, 'B');

    public void ConnectionLost(string pgprotoLine)
    {
    }

    public void Flush() => _output.Flush();

    /// <summary>Each whole, valid message of <paramref name="bytes"/> as the decoder prints it; what is left (raw bytes that are no message) as a Raw line.</summary>
    private void Write(PgMessageReader reader, ReadOnlySpan<byte> bytes, char direction)
    {
        while (bytes.Length > 0)
        {
            PgReadStatus status = reader.TryRead(bytes, out int consumed, out PgReceivedMessage message, out _);
            if (status != PgReadStatus.Message)
            {
                RawLine(direction, bytes);
                return;
            }

            _messages.Write(message, _context);
            bytes = bytes[consumed..];
        }
    }

    private void RawLine(char direction, ReadOnlySpan<byte> bytes)
    {
        string hex = Convert.ToHexStringLower(bytes);
        if (!_json)
        {
            _output.Write(Encoding.UTF8.GetBytes($"{direction}\t{bytes.Length.ToString(CultureInfo.InvariantCulture)}\tRaw\t {hex}\n"));
            return;
        }

        using (var json = new Utf8JsonWriter(_output))
        {
            json.WriteStartObject();
            json.WriteString("direction", direction.ToString());
            json.WriteNumber("length", bytes.Length);
            json.WriteString("name", "Raw");
            json.WriteStartObject("fields");
            json.WriteStartObject("bytes");
            json.WriteString("hex", hex);
            json.WriteEndObject();
            json.WriteEndObject();
            json.WriteEndObject();
        }

        _output.Write("\n"u8);
    }
}
