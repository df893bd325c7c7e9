using System.Text;

namespace PgSpec.Cli.Serve;

/// <summary>
/// Reads COPY FROM STDIN data in PostgreSQL's text or CSV format from chunks split anywhere, and
/// hands over each row's fields (null = SQL NULL).
/// </summary>
internal sealed class CopyInParser
{
    /// <summary>The longest line (or CSV record) accepted.</summary>
    public const int MaxLineBytes = 64 * 1024 * 1024;

    private readonly CopyOptions options;
    private readonly byte[] nullBytes;
    private readonly List<byte> line = new(256);
    private bool inQuotes;
    private bool escapePending;
    private bool headerSkipped;
    private bool ended;

    public CopyInParser(CopyOptions options)
    {
        this.options = options;
        nullBytes = Encoding.UTF8.GetBytes(options.Null);
    }

    /// <summary>The number of the line being read (1-based), for CONTEXT.</summary>
    public long LineNumber { get; private set; }

    /// <summary>The text of the line last handed over, for CONTEXT.</summary>
    public string CurrentLine { get; private set; } = "";

    /// <summary>Whether the end marker \. was read.</summary>
    public bool Ended => ended;

    /// <summary>Reads a chunk; calls <paramref name="onRow"/> for each complete row.</summary>
    public void Feed(ReadOnlySpan<byte> data, Action<string?[]> onRow)
    {
        foreach (byte b in data)
        {
            if (ended) return;
            if (options.Csv)
            {
                if (inQuotes)
                {
                    if (escapePending) escapePending = false;
                    else if (b == options.Escape && options.Escape != options.Quote) escapePending = true;
                    else if (b == options.Quote) inQuotes = false;
                }
                else if (b == options.Quote)
                {
                    inQuotes = true;
                }
            }
            if (b == (byte)'\n' && !inQuotes)
            {
                EndLine(onRow);
                continue;
            }
            if (line.Count >= MaxLineBytes)
                throw SqlError.Error(SqlStates.ProgramLimitExceeded, "COPY line is too long", detail: $"A line may have at most {MaxLineBytes} bytes.");
            line.Add(b);
        }
    }

    /// <summary>The end of the data (CopyDone): a last line without a newline is a row too.</summary>
    public void Finish(Action<string?[]> onRow)
    {
        if (ended) return;
        if (inQuotes)
        {
            LineNumber++;
            CurrentLine = Decode(line.ToArray(), lenient: true);
            throw SqlError.Error(SqlStates.BadCopyFileFormat, "unterminated CSV quoted field");
        }
        if (line.Count > 0) EndLine(onRow);
    }

    private void EndLine(Action<string?[]> onRow)
    {
        LineNumber++;
        byte[] bytes = line.ToArray();
        line.Clear();
        int length = bytes.Length;
        if (length > 0 && bytes[length - 1] == (byte)'\r') length--;
        var span = bytes.AsSpan(0, length);
        CurrentLine = Decode(span.ToArray(), lenient: true);
        if (span.SequenceEqual("\\."u8))
        {
            ended = true;
            return;
        }
        if (options.Header && !headerSkipped)
        {
            headerSkipped = true;
            return;
        }
        onRow(options.Csv ? ParseCsv(span) : ParseText(span));
    }

    private static string Decode(byte[] bytes, bool lenient)
    {
        if (lenient) return Encoding.UTF8.GetString(bytes);
        return PgValues.DecodeUtf8(bytes);
    }

    private string?[] ParseText(ReadOnlySpan<byte> s)
    {
        var fields = new List<string?>();
        int start = 0;
        for (int i = 0; i <= s.Length; i++)
        {
            if (i < s.Length && s[i] == (byte)'\\' && i + 1 < s.Length)
            {
                i++;
                continue;
            }
            if (i == s.Length || s[i] == options.Delimiter)
            {
                fields.Add(TextField(s[start..i]));
                start = i + 1;
            }
        }
        return [.. fields];
    }

    private string? TextField(ReadOnlySpan<byte> raw)
    {
        if (raw.SequenceEqual(nullBytes)) return null;
        if (raw.IndexOf((byte)'\\') < 0) return PgValues.DecodeUtf8(raw);
        var bytes = new List<byte>(raw.Length);
        for (int i = 0; i < raw.Length; i++)
        {
            byte b = raw[i];
            if (b != (byte)'\\' || i + 1 >= raw.Length)
            {
                bytes.Add(b);
                continue;
            }
            byte e = raw[++i];
            switch (e)
            {
                case (byte)'b': bytes.Add(8); break;
                case (byte)'f': bytes.Add(12); break;
                case (byte)'n': bytes.Add(10); break;
                case (byte)'r': bytes.Add(13); break;
                case (byte)'t': bytes.Add(9); break;
                case (byte)'v': bytes.Add(11); break;
                case >= (byte)'0' and <= (byte)'7':
                {
                    int v = 0, k = 0;
                    while (k < 3 && i < raw.Length && raw[i] is >= (byte)'0' and <= (byte)'7') { v = v * 8 + (raw[i] - '0'); i++; k++; }
                    i--;
                    bytes.Add((byte)(v & 0xff));
                    break;
                }
                case (byte)'x' when i + 1 < raw.Length && PgValues.HexValue((char)raw[i + 1]) >= 0:
                {
                    int v = 0, k = 0;
                    i++;
                    while (k < 2 && i < raw.Length && PgValues.HexValue((char)raw[i]) >= 0) { v = v * 16 + PgValues.HexValue((char)raw[i]); i++; k++; }
                    i--;
                    bytes.Add((byte)v);
                    break;
                }
                default: bytes.Add(e); break;
            }
        }
        return PgValues.DecodeUtf8(bytes.ToArray());
    }

    private string?[] ParseCsv(ReadOnlySpan<byte> s)
    {
        var fields = new List<string?>();
        var field = new List<byte>();
        bool quoted = false, inQuote = false;
        int i = 0;
        while (true)
        {
            if (i >= s.Length)
            {
                if (inQuote) throw SqlError.Error(SqlStates.BadCopyFileFormat, "unterminated CSV quoted field");
                fields.Add(CsvField(field, quoted));
                break;
            }
            byte b = s[i];
            if (inQuote)
            {
                if (b == options.Escape && i + 1 < s.Length && (s[i + 1] == options.Quote || (s[i + 1] == options.Escape && options.Escape != options.Quote)))
                {
                    field.Add(s[i + 1]);
                    i += 2;
                    continue;
                }
                if (b == options.Quote)
                {
                    inQuote = false;
                    i++;
                    continue;
                }
                field.Add(b);
                i++;
                continue;
            }
            if (b == options.Delimiter)
            {
                fields.Add(CsvField(field, quoted));
                field.Clear();
                quoted = false;
                i++;
                continue;
            }
            if (b == options.Quote)
            {
                inQuote = true;
                quoted = true;
                i++;
                continue;
            }
            field.Add(b);
            i++;
        }
        return [.. fields];
    }

    private string? CsvField(List<byte> field, bool quoted)
    {
        byte[] bytes = field.ToArray();
        if (!quoted && bytes.AsSpan().SequenceEqual(nullBytes)) return null;
        return PgValues.DecodeUtf8(bytes);
    }
}

/// <summary>Writes rows in PostgreSQL's COPY TO text or CSV format.</summary>
internal static class CopyOutFormatter
{
    /// <summary>One line (with its newline) of <paramref name="fields"/> (null = SQL NULL).</summary>
    public static byte[] Line(CopyOptions options, IReadOnlyList<string?> fields, IReadOnlyList<string>? names = null)
    {
        var sb = new StringBuilder();
        char delimiter = (char)options.Delimiter;
        for (int i = 0; i < fields.Count; i++)
        {
            if (i > 0) sb.Append(delimiter);
            string? v = fields[i];
            if (v is null)
            {
                sb.Append(options.Null);
                continue;
            }
            if (options.Csv)
            {
                bool force = options.ForceQuoteAll || (names is not null && i < names.Count && options.ForceQuote.Contains(names[i]));
                AppendCsv(sb, options, v, force);
            }
            else
            {
                AppendText(sb, v, delimiter);
            }
        }
        sb.Append('\n');
        return Encoding.UTF8.GetBytes(sb.ToString());
    }

    private static void AppendText(StringBuilder sb, string v, char delimiter)
    {
        foreach (char c in v)
        {
            switch (c)
            {
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t' when delimiter == '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                case '\v': sb.Append("\\v"); break;
                default:
                    if (c == delimiter) sb.Append('\\');
                    sb.Append(c);
                    break;
            }
        }
    }

    private static void AppendCsv(StringBuilder sb, CopyOptions options, string v, bool force)
    {
        char quote = (char)options.Quote, escape = (char)options.Escape, delimiter = (char)options.Delimiter;
        bool needsQuotes = force || v == options.Null || v == "\\." || v.Length == 0 && options.Null.Length == 0
                           || v.IndexOfAny([delimiter, quote, '\r', '\n']) >= 0 || (escape != quote && v.Contains(escape, StringComparison.Ordinal));
        if (!needsQuotes)
        {
            sb.Append(v);
            return;
        }
        sb.Append(quote);
        foreach (char c in v)
        {
            if (c == quote || (c == escape && escape != quote)) sb.Append(escape);
            sb.Append(c);
        }
        sb.Append(quote);
    }
}
