using System.Buffers.Binary;
using System.Collections.Immutable;
using System.Globalization;
using System.Text;
using PgSpec.Protocol;

namespace PgSpec.Cli.Script;

/// <summary>How a reading command reads.</summary>
internal enum ScriptRead
{
    /// <summary>'Y': every message until ReadyForQuery.</summary>
    UntilReady,

    /// <summary>'y': messages until ReadyForQuery, or until the server has been silent for a second.</summary>
    UntilSilent,

    /// <summary>'z': one message, if one comes within a second.</summary>
    One,
}

/// <summary>One line of a script, where it starts in its file.</summary>
internal abstract record ScriptStep(int Line);

/// <summary>A message to send; <paramref name="Display"/> is what pgproto prints after "FE=> ".</summary>
internal sealed record SendStep(int Line, IFrontendMessage Message, string Display) : ScriptStep(Line);

/// <summary>Bytes to send as they are (the '!' command).</summary>
internal sealed record RawStep(int Line, byte[] Bytes) : ScriptStep(Line);

/// <summary>A reading command ('Y', 'y', 'z').</summary>
internal sealed record ReadStep(int Line, ScriptRead Read) : ScriptStep(Line);

/// <summary>A script that could not be parsed: where and what was expected.</summary>
internal sealed class ScriptParseException(string file, int line, int column, string message)
    : Exception($"{file}:{line}:{column}: {message}")
{
    public string File { get; } = file;

    public int Line { get; } = line;

    public int Column { get; } = column;

    public string Reason { get; } = message;
}

/// <summary>
/// Reads pgproto's script format: one message per line, its kind as <c>'K'</c>, then its fields,
/// each after one or more TABs: <c>"strings"</c> (<c>\n</c> is a newline, a backslash takes the
/// next character as it is, and a line ending in a backslash goes on on the next line, a newline
/// in between), <c>'c'</c> characters and integers. Empty lines and lines starting with '#' are
/// skipped. The whole script is read, and every message built and validated, before anything is
/// sent; the first problem throws <see cref="ScriptParseException"/> with file:line:column.
/// </summary>
internal static class ScriptParser
{
    /// <summary>The most parameters, format codes or OIDs one message can carry (an Int16 count).</summary>
    private const int MaxCount = short.MaxValue;

    public static IReadOnlyList<ScriptStep> Parse(string text, string file)
    {
        ArgumentNullException.ThrowIfNull(text);
        var steps = new List<ScriptStep>();

        // Lines are cut out of the text one at a time (a long line is copied once, not for each pass).
        int at = 0;
        int number = 0;
        while (at < text.Length)
        {
            string physical = NextLine(text, ref at);
            number++;
            int first = number;
            string logical = physical;
            var starts = new List<int> { 0 };

            // A line ending in a backslash goes on on the next one (the newline is kept, escaped).
            if (logical.EndsWith('\\') && at < text.Length)
            {
                var joined = new StringBuilder(physical);
                while (joined.Length > 0 && joined[^1] == '\\' && at < text.Length)
                {
                    joined.Append('\n');
                    starts.Add(joined.Length);
                    joined.Append(NextLine(text, ref at));
                    number++;
                }

                logical = joined.ToString();
            }

            var line = new LineReader(logical, file, first, starts);
            if (line.Text.Length == 0 || line.Text[0] == '#')
            {
                continue;
            }

            steps.Add(ParseLine(line));
        }

        return steps;
    }

    /// <summary>The line that starts at <paramref name="at"/>, without its '\n' (or "\r\n"); <paramref name="at"/> moves past it.</summary>
    private static string NextLine(string text, ref int at)
    {
        int end = text.IndexOf('\n', at);
        int next = end < 0 ? text.Length : end + 1;
        end = end < 0 ? text.Length : end;
        if (end > at && text[end - 1] == '\r')
        {
            end--;
        }

        string line = text[at..end];
        at = next;
        return line;
    }

    private static ScriptStep ParseLine(LineReader line)
    {
        char kind = line.Kind();
        int number = line.FirstLine;
        ScriptStep step = kind switch
        {
            'Y' => new ReadStep(number, ScriptRead.UntilReady),
            'y' => new ReadStep(number, ScriptRead.UntilSilent),
            'z' => new ReadStep(number, ScriptRead.One),
            'X' => new SendStep(number, new Terminate(), "Terminate"),
            'S' => new SendStep(number, new Sync(), "Sync"),
            'H' => new SendStep(number, new Flush(), "Flush"),
            'c' => new SendStep(number, new CopyDone(), "CopyDone"),
            'Q' => Query(line),
            'd' => CopyData(line),
            'f' => CopyFail(line),
            'P' => ParseMessage(line),
            'B' => Bind(line),
            'E' => Execute(line),
            'D' => DescribeOrClose(line, describe: true),
            'C' => DescribeOrClose(line, describe: false),
            'F' => FunctionCall(line),
            '!' => Raw(line),
            _ => throw line.ErrorAt(1, $"unknown message kind '{kind}': expected one of Q P B E D C S H F X d c f (messages), Y y z (reading) or ! (raw bytes)"),
        };
        line.End();
        if (step is SendStep send)
        {
            try
            {
                send.Message.Validate();
            }
            catch (Exception e) when (e is PgException or ArgumentException)
            {
                throw line.ErrorAt(0, $"the {((IPgMessage)send.Message).Name} message is not valid: {e.Message}");
            }
        }

        return step;
    }

    private static SendStep Query(LineReader line)
    {
        string query = line.String("the query");
        return new SendStep(line.FirstLine, new Query(query), $"Query (query=\"{query}\")");
    }

    private static SendStep CopyData(LineReader line)
    {
        string data = line.String("the copy data");
        return new SendStep(line.FirstLine, new CopyData(Encoding.UTF8.GetBytes(data)), $"CopyData (copy data=\"{data}\")");
    }

    private static SendStep CopyFail(LineReader line)
    {
        string message = line.String("the error message");
        return new SendStep(line.FirstLine, new CopyFail(message), $"CopyFail (error message=\"{message}\")");
    }

    private static SendStep ParseMessage(LineReader line)
    {
        string statement = line.String("the statement name");
        string query = line.String("the query");
        int count = line.AtEnd ? 0 : line.Integer("the number of parameter type OIDs", 0, MaxCount);
        var oids = ImmutableArray.CreateBuilder<uint>(count);
        for (int i = 0; i < count; i++)
        {
            oids.Add((uint)line.Integer($"parameter type OID {i + 1} of {count}", 0, uint.MaxValue));
        }

        string display = $"Parse(stmt=\"{statement}\", query=\"{query}\"";
        display += count == 0 ? ")" : $", oids={{{string.Join(',', oids.Select(o => o.ToString(CultureInfo.InvariantCulture)))}}})";
        return new SendStep(line.FirstLine, new Parse(statement, query, oids.MoveToImmutable()), display);
    }

    private static SendStep Bind(LineReader line)
    {
        string portal = line.String("the portal name");
        string statement = line.String("the statement name");
        ImmutableArray<short> formats = FormatCodes(line, "parameter format code");
        ImmutableArray<ReadOnlyMemory<byte>?> values = Values(line, formats, "parameter");
        ImmutableArray<short> results = line.AtEnd ? [] : FormatCodes(line, "result format code");
        return new SendStep(line.FirstLine, new Bind(portal, statement, formats, values, results), $"Bind(stmt=\"{statement}\", portal=\"{portal}\")");
    }

    /// <summary>A count, then that many values (Bind's parameters, FunctionCall's arguments), each in the format the codes give it.</summary>
    private static ImmutableArray<ReadOnlyMemory<byte>?> Values(LineReader line, ImmutableArray<short> formats, string what)
    {
        int count = line.Integer($"the number of {what}s", 0, MaxCount);
        var values = ImmutableArray.CreateBuilder<ReadOnlyMemory<byte>?>(count);
        for (int i = 0; i < count; i++)
        {
            short format = formats.Length == 0 ? (short)0 : formats.Length == 1 ? formats[0] : i < formats.Length ? formats[i] : (short)0;
            values.Add(Value(line, $"{what} {i + 1} of {count}", format));
        }

        return values.MoveToImmutable();
    }

    private static SendStep Execute(LineReader line)
    {
        string portal = line.String("the portal name");
        int maxRows = line.AtEnd ? 0 : (int)line.Integer("the maximum number of rows", int.MinValue, int.MaxValue);
        return new SendStep(line.FirstLine, new Execute(portal, maxRows), $"Execute(portal=\"{portal}\")");
    }

    private static SendStep DescribeOrClose(LineReader line, bool describe)
    {
        int column = line.NextField;
        char target = line.Char("'S' (a statement) or 'P' (a portal)");
        if (target is not ('S' or 'P'))
        {
            throw line.ErrorAt(column, $"expected 'S' (a statement) or 'P' (a portal), found '{target}'");
        }

        string name = line.String(target == 'S' ? "the statement name" : "the portal name");
        var which = target == 'S' ? StatementOrPortal.Statement : StatementOrPortal.Portal;
        string display = $"{(describe ? "Describe" : "Close")}({(target == 'S' ? "stmt" : "portal")}=\"{name}\")";
        return new SendStep(line.FirstLine, describe ? new Describe(which, name) : new Close(which, name), display);
    }

    private static SendStep FunctionCall(LineReader line)
    {
        uint oid = (uint)line.Integer("the function OID", 0, uint.MaxValue);
        ImmutableArray<short> formats = FormatCodes(line, "argument format code");
        ImmutableArray<ReadOnlyMemory<byte>?> values = Values(line, formats, "argument");

        short result = (short)line.Integer("the result format code", short.MinValue, short.MaxValue);
        return new SendStep(line.FirstLine, new FunctionCall(oid, formats, values, result), $"FunctionCall(oid={oid.ToString(CultureInfo.InvariantCulture)})");
    }

    private static RawStep Raw(LineReader line)
    {
        int column = line.NextField;
        string hex = line.String("the bytes in hex");
        string digits = string.Concat(hex.Where(c => !char.IsWhiteSpace(c)));
        if (digits.Length == 0 || digits.Length % 2 != 0 || !digits.All(char.IsAsciiHexDigit))
        {
            throw line.ErrorAt(column, "expected an even number of hex digits (spaces allowed) in the raw bytes");
        }

        return new RawStep(line.FirstLine, Convert.FromHexString(digits));
    }

    /// <summary>A count of Int16 format codes, then the codes.</summary>
    private static ImmutableArray<short> FormatCodes(LineReader line, string what)
    {
        int count = line.Integer($"the number of {what}s", 0, MaxCount);
        var codes = ImmutableArray.CreateBuilder<short>(count);
        for (int i = 0; i < count; i++)
        {
            codes.Add((short)line.Integer($"{what} {i + 1} of {count}", short.MinValue, short.MaxValue));
        }

        return codes.MoveToImmutable();
    }

    /// <summary>
    /// A value: its length, then (when the length is above 0) the value as a string. -1 is NULL.
    /// Text values are the string's UTF-8 bytes. Binary values: a decimal integer with length 2, 4
    /// or 8 is sent as a big-endian integer of that size (pgproto sends a 4-byte integer), "0x..."
    /// as the bytes its hex digits give, anything else as the string's UTF-8 bytes. The length must
    /// be the number of bytes the value gives.
    /// </summary>
    private static ReadOnlyMemory<byte>? Value(LineReader line, string what, short format)
    {
        int lengthColumn = line.NextField;
        int length = line.Integer($"the length of {what} (-1 for NULL)", -1, int.MaxValue);
        if (length == -1)
        {
            return null;
        }

        if (length == 0)
        {
            // pgproto reads no value after a length of 0; an empty string there is taken too.
            if (line.NextIs("\"\""))
            {
                line.String(what);
            }

            return ReadOnlyMemory<byte>.Empty;
        }

        int column = line.NextField;
        string text = line.String(what);
        byte[] bytes;
        if (format != 0 && length is 2 or 4 or 8 && long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long number))
        {
            bytes = new byte[length];
            switch (length)
            {
                case 2 when number is >= short.MinValue and <= short.MaxValue:
                    BinaryPrimitives.WriteInt16BigEndian(bytes, (short)number);
                    break;
                case 4 when number is >= int.MinValue and <= int.MaxValue:
                    BinaryPrimitives.WriteInt32BigEndian(bytes, (int)number);
                    break;
                case 8:
                    BinaryPrimitives.WriteInt64BigEndian(bytes, number);
                    break;
                default:
                    throw line.ErrorAt(column, $"{what}: {text} does not fit in {length} bytes");
            }
        }
        else if (format != 0 && text.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            string digits = text[2..];
            if (digits.Length % 2 != 0 || !digits.All(char.IsAsciiHexDigit))
            {
                throw line.ErrorAt(column, $"{what}: expected hex digits after 0x");
            }

            bytes = Convert.FromHexString(digits);
        }
        else
        {
            bytes = Encoding.UTF8.GetBytes(text);
        }

        if (bytes.Length != length)
        {
            throw line.ErrorAt(lengthColumn, $"{what}: the length says {length} bytes, but the value is {bytes.Length}");
        }

        return bytes;
    }

    /// <summary>Reads the fields of one logical line, knowing where each character came from.</summary>
    private sealed class LineReader(string text, string file, int firstLine, List<int> starts)
    {
        private int _position;

        public string Text { get; } = text;

        public int FirstLine { get; } = firstLine;

        /// <summary>Where the next field starts (after the TABs before it).</summary>
        public int NextField => SkipTabs(_position);

        public bool AtEnd => _position >= Text.Length;

        public bool NextIs(string token)
        {
            int at = SkipTabs(_position);
            if (at == _position || !Text.AsSpan(at).StartsWith(token, StringComparison.Ordinal))
            {
                return false;
            }

            int end = at + token.Length;
            return end == Text.Length || Text[end] == '\t';
        }

        /// <summary>The message kind, <c>'K'</c> at the start of the line.</summary>
        public char Kind()
        {
            if (Text[0] != '\'')
            {
                throw ErrorAt(0, $"expected a message kind in single quotes ('Q', 'P', ...), a '#' comment or an empty line, found {Describe(Text[0])}");
            }

            if (Text.Length < 3 || Text[2] != '\'')
            {
                throw ErrorAt(Text.Length < 2 ? 1 : 2, "expected one character between single quotes, as in 'Q'");
            }

            _position = 3;
            return Text[1];
        }

        public string String(string what)
        {
            (int start, int end) = Field(what, "a string in double quotes");
            if (Text[start] != '"')
            {
                throw ErrorAt(start, $"expected {what} as a string in double quotes, found {Describe(Text[start])}");
            }

            var value = new StringBuilder(end - start);
            int i = start + 1;
            bool closed = false;
            while (i < end)
            {
                char c = Text[i];
                if (c == '\\' && i + 1 < end)
                {
                    char next = Text[i + 1];
                    value.Append(next == 'n' ? '\n' : next);
                    i += 2;
                    continue;
                }

                if (c == '"' && i == end - 1)
                {
                    closed = true;
                    break;
                }

                value.Append(c);
                i++;
            }

            if (!closed)
            {
                throw ErrorAt(end, $"{what}: the string does not end with an unescaped '\"' before the next TAB or the end of the line");
            }

            _position = end;
            return value.ToString();
        }

        public char Char(string what)
        {
            (int start, int end) = Field(what, "a character in single quotes");
            if (end - start != 3 || Text[start] != '\'' || Text[start + 2] != '\'')
            {
                throw ErrorAt(start, $"expected {what} as one character in single quotes");
            }

            _position = end;
            return Text[start + 1];
        }

        public int Integer(string what, int min, int max) => (int)Integer(what, (long)min, max);

        public long Integer(string what, long min, long max)
        {
            (int start, int end) = Field(what, "an integer");
            string token = Text[start..end];
            if (!long.TryParse(token, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value))
            {
                throw ErrorAt(start, $"expected {what} as an integer, found {Quote(token)}");
            }

            if (value < min || value > max)
            {
                throw ErrorAt(start, $"{what}: {value} is out of range ({min} to {max})");
            }

            _position = end;
            return value;
        }

        /// <summary>Nothing may follow the last field.</summary>
        public void End()
        {
            int at = SkipTabs(_position);
            if (at < Text.Length)
            {
                throw ErrorAt(_position, $"unexpected {(at == _position ? Describe(Text[at]) : "field " + Quote(Text[at..FieldEnd(at)]))} after the last field of the message");
            }
        }

        /// <summary>An error at a position of the logical line (reported in its physical line and column).</summary>
        public ScriptParseException ErrorAt(int position, string message)
        {
            (int line, int column) = Locate(Math.Min(position, Text.Length));
            return new ScriptParseException(file, line, column, message);
        }

        private (int Start, int End) Field(string what, string shape)
        {
            int at = SkipTabs(_position);
            if (at == _position)
            {
                throw at >= Text.Length
                    ? ErrorAt(at, $"expected {what} ({shape}) after a TAB, found the end of the line")
                    : ErrorAt(at, $"expected a TAB before {what}, found {Describe(Text[at])}");
            }

            if (at >= Text.Length)
            {
                throw ErrorAt(at, $"expected {what} ({shape}) after the TAB, found the end of the line");
            }

            return (at, FieldEnd(at));
        }

        private int FieldEnd(int at)
        {
            int end = Text.IndexOf('\t', at);
            return end < 0 ? Text.Length : end;
        }

        private int SkipTabs(int at)
        {
            while (at < Text.Length && Text[at] == '\t')
            {
                at++;
            }

            return at;
        }

        private (int Line, int Column) Locate(int position)
        {
            int index = starts.Count - 1;
            while (index > 0 && starts[index] > position)
            {
                index--;
            }

            return (FirstLine + index, position - starts[index] + 1);
        }

        private static string Describe(char c) => c switch
        {
            ' ' => "a space",
            '\t' => "a TAB",
            '\n' => "a line break",
            _ when char.IsControl(c) => $"character U+{(int)c:X4}",
            _ => $"'{c}'",
        };

        private static string Quote(string token) => token.Length > 40 ? $"\"{token[..40]}...\"" : $"\"{token}\"";
    }
}
