using System.Buffers;
using System.Globalization;
using System.Text;

namespace PgSpec.Protocol;

/// <summary>How trace lines are written.</summary>
public sealed record PgTraceOptions
{
    /// <summary>libpq's PQTRACE_REGRESS_MODE: OIDs and process IDs as NNNN, error/notice lengths as NN, their F/L/R fields as "SSSS", secrets and COPY data as 'BBBB'.</summary>
    public bool Regress { get; init; }

    /// <summary>Start each line with a local timestamp, as libpq does unless PQTRACE_SUPPRESS_TIMESTAMPS is set.</summary>
    public bool Timestamps { get; init; }

    /// <summary>Text written (with a TAB) before everything else on each line, such as a connection id.</summary>
    public string? Prefix { get; init; }

    /// <summary>A clock for timestamps (tests set it).</summary>
    public Func<DateTime>? Clock { get; init; }
}

/// <summary>
/// Writes trace lines in the format of libpq 18's PQtrace (fe-trace.c): direction, length and name
/// separated by TABs, each field after one space, strings raw in double quotes, bytes in single
/// quotes with \xNN for bytes outside 0x20..0x7e, Int16 printed unsigned, and a
/// "mismatched message length" line when libpq's tracer would not consume the whole message.
/// Lines are built as bytes (strings are written as received) and flushed per message; a line
/// that grows past 64 KiB (a long value) goes out in pieces as it is built, so tracing a message
/// takes a bounded buffer whatever its size.
/// </summary>
public sealed class PgTraceWriter
{
    /// <summary>The size past which a line being built is written out.</summary>
    private const int FlushThreshold = 64 * 1024;

    private readonly Stream _output;
    private readonly ArrayBufferWriter<byte> _line = new(256);

    /// <summary>Writes to <paramref name="output"/>.</summary>
    public PgTraceWriter(Stream output, PgTraceOptions? options = null)
    {
        _output = output ?? throw new ArgumentNullException(nameof(output));
        Options = options ?? new PgTraceOptions();
    }

    /// <summary>The options.</summary>
    public PgTraceOptions Options { get; }

    private bool Regress => Options.Regress;

    /// <summary>Starts a line.</summary>
    public void BeginMessage(char direction, int length, string name, bool maskLength, bool hasFields)
    {
        _line.Clear();
        if (Options.Prefix is { } prefix)
        {
            Ascii(prefix);
            Ascii("\t");
        }

        if (Options.Timestamps)
        {
            DateTime now = (Options.Clock ?? (() => DateTime.Now))();
            Ascii(now.ToString("yyyy-MM-dd HH:mm:ss.ffffff", CultureInfo.InvariantCulture));
            Ascii("\t");
        }

        Ascii(direction.ToString());
        Ascii("\t");
        Ascii(maskLength && Regress ? "NN" : length.ToString(CultureInfo.InvariantCulture));
        Ascii("\t");
        Ascii(name);
        if (hasFields)
        {
            Ascii("\t");
        }
    }

    /// <summary>The code of an untyped packet, printed as two Int16 (3 0, 1234 5679).</summary>
    public void PacketCode(int code)
    {
        Int16((code >> 16) & 0xFFFF);
        Int16(code & 0xFFFF);
    }

    /// <summary>A Byte1: the character, or \xNN outside 0x20..0x7e.</summary>
    public void Byte1(byte value)
    {
        Ascii(" ");
        Ascii(FormatByte(value));
    }

    /// <summary>An Int16, printed unsigned as libpq does.</summary>
    public void Int16(int value) => Ascii(" " + (value & 0xFFFF).ToString(CultureInfo.InvariantCulture));

    /// <summary>An Int32; NNNN in regress mode when masked.</summary>
    public void Int32(int value, bool masked) => Ascii(masked && Regress ? " NNNN" : " " + value.ToString(CultureInfo.InvariantCulture));

    /// <summary>An Int64.</summary>
    public void Int64(long value) => Ascii(" " + value.ToString(CultureInfo.InvariantCulture));

    /// <summary>A String, raw, in double quotes; "SSSS" in regress mode when masked.</summary>
    public void String(ReadOnlySpan<byte> value, bool masked)
    {
        if (masked && Regress)
        {
            Ascii(" \"SSSS\"");
            return;
        }

        Ascii(" \"");
        Raw(value);
        Ascii("\"");
    }

    /// <summary>Byte data in single quotes with \xNN escapes; 'BBBB' in regress mode when masked.</summary>
    public void Bytes(ReadOnlySpan<byte> value, bool masked)
    {
        if (masked && Regress)
        {
            Ascii(" 'BBBB'");
            return;
        }

        Ascii(" '");
        Escaped(value);
        Ascii("'");
    }

    /// <summary>Ends the line; adds libpq's mismatch line when the tracer would not have consumed exactly the length.</summary>
    public void EndMessage(int consumed, int length, bool checkLength)
    {
        Ascii("\n");
        if (checkLength && consumed != length)
        {
            Ascii($"mismatched message length: consumed {consumed}, expected {length}\n");
        }

        Flush();
    }

    /// <summary>The one-byte answer to SSLRequest or GSSENCRequest ("SSLResponse", "GSSENCResponse").</summary>
    public void CharResponse(string name, byte answer)
    {
        BeginMessage('B', 1, name, maskLength: false, hasFields: true);
        Ascii(" ");
        _line.Write([answer]);
        EndMessage(0, 0, checkLength: false);
    }

    /// <summary>A line of its own (a decode error, say), written as is.</summary>
    public void RawLine(string text)
    {
        _line.Clear();
        Ascii(text);
        Ascii("\n");
        Flush();
    }

    private void Flush()
    {
        _output.Write(_line.WrittenSpan);
        _line.ResetWrittenCount();
    }

    /// <summary>Writes out the line built so far once it is long (the rest of it follows).</summary>
    private void FlushIfLong()
    {
        if (_line.WrittenCount >= FlushThreshold)
        {
            Flush();
        }
    }

    /// <summary>Bytes as they are, in pieces.</summary>
    private void Raw(ReadOnlySpan<byte> value)
    {
        while (!value.IsEmpty)
        {
            int size = Math.Min(value.Length, FlushThreshold);
            _line.Write(value.Slice(0, size));
            value = value.Slice(size);
            FlushIfLong();
        }
    }

    /// <summary>Byte data as libpq prints it: runs of 0x20..0x7e as they are, other bytes as \xNN.</summary>
    private void Escaped(ReadOnlySpan<byte> value)
    {
        while (!value.IsEmpty)
        {
            int printable = value.IndexOfAnyExceptInRange((byte)0x20, (byte)0x7e);
            if (printable < 0)
            {
                printable = value.Length;
            }

            Raw(value.Slice(0, printable));
            value = value.Slice(printable);

            int other = value.IndexOfAnyInRange((byte)0x20, (byte)0x7e);
            if (other < 0)
            {
                other = value.Length;
            }

            while (other > 0)
            {
                int size = Math.Min(other, FlushThreshold / 4);
                Span<byte> escaped = _line.GetSpan(4 * size);
                for (int i = 0; i < size; i++)
                {
                    byte b = value[i];
                    escaped[4 * i] = (byte)'\\';
                    escaped[(4 * i) + 1] = (byte)'x';
                    escaped[(4 * i) + 2] = "0123456789abcdef"u8[b >> 4];
                    escaped[(4 * i) + 3] = "0123456789abcdef"u8[b & 0xF];
                }

                _line.Advance(4 * size);
                value = value.Slice(size);
                other -= size;
                FlushIfLong();
            }
        }
    }

    private void Ascii(string text)
    {
        Span<byte> span = _line.GetSpan(Encoding.UTF8.GetMaxByteCount(text.Length));
        int n = Encoding.UTF8.GetBytes(text, span);
        _line.Advance(n);
    }

    /// <summary>A byte as libpq's Byte1 tracer prints it.</summary>
    public static string FormatByte(byte value)
        => value is >= 0x20 and < 0x7f ? ((char)value).ToString() : "\\x" + value.ToString("x2", CultureInfo.InvariantCulture);

    /// <summary>Bytes as libpq's tracer prints byte data, with the quotes.</summary>
    public static string FormatBytes(ReadOnlySpan<byte> value) => "'" + FormatBytesInner(value) + "'";

    private static string FormatBytesInner(ReadOnlySpan<byte> value)
    {
        var text = new StringBuilder(value.Length);
        foreach (byte b in value)
        {
            if (b is >= 0x20 and < 0x7f)
            {
                text.Append((char)b);
            }
            else
            {
                text.Append("\\x").Append(b.ToString("x2", CultureInfo.InvariantCulture));
            }
        }

        return text.ToString();
    }
}
