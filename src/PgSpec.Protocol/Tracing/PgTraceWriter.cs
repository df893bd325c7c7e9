using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace PgSpec.Protocol;

/// <summary>How trace lines are written.</summary>
public sealed record PgTraceOptions
{
    /// <summary>libpq's PQTRACE_REGRESS_MODE: OIDs and process IDs as NNNN, error/notice lengths as NN, their F/L/R fields as "SSSS", secrets and COPY data as 'BBBB'.</summary>
    public bool Regress { get; init; }

    /// <summary>
    /// Start each line with a local timestamp, as libpq does unless PQTRACE_SUPPRESS_TIMESTAMPS is set
    /// (libpq does not stamp its "mismatched message length" lines; this writer does, with the time of their message).
    /// </summary>
    public bool Timestamps { get; init; }

    /// <summary>Text written (with a TAB) before everything else on each line, such as a connection id, "mismatched message length" and note lines included.</summary>
    public string? Prefix { get; init; }

    /// <summary>A clock for timestamps (tests set it).</summary>
    public Func<DateTime>? Clock { get; init; }
}

/// <summary>
/// Writes trace lines in the format of libpq 18's PQtrace (fe-trace.c): direction, length and name
/// separated by TABs, each field after one space, strings raw in double quotes, bytes in single
/// quotes with \xNN for bytes outside 0x20..0x7e, Int16 printed unsigned, and a
/// "mismatched message length" line when libpq's tracer would not consume the whole message.
/// With <see cref="PgTraceOptions.Prefix"/> or <see cref="PgTraceOptions.Timestamps"/>, every line
/// starts with them, the mismatch line too; <see cref="Note"/> adds comment lines ('#').
/// </summary>
/// <remarks>
/// A message is written by one call sequence, <see cref="BeginMessage"/> .. <see cref="EndMessage"/>.
/// Its bytes are escaped straight into a buffer of at most <see cref="MaxBufferSize"/> bytes, rented
/// for the message and given back at its end (one of 1 KiB or less is kept for the next message),
/// and the buffer is written to the output whenever it
/// fills: tracing a message of any size costs that buffer, not a multiple of the message. A small
/// message reaches the output in one write; a large one in several, so callers that share an
/// output between writers hold a lock around each message. Not thread-safe.
/// </remarks>
public sealed class PgTraceWriter
{
    /// <summary>The most a writer buffers before writing to its output.</summary>
    public const int MaxBufferSize = 64 * 1024;

    private const int MinBufferSize = 256;

    // A buffer this small is kept for the next message instead of going back to the pool each time.
    private const int KeptBufferSize = 1024;

    /// <summary>Room for the longest item written whole: an Int64, a timestamp, a \xNN escape.</summary>
    private const int MaxItemSize = 32;

    private const string TimestampFormat = "yyyy-MM-dd HH:mm:ss.ffffff";

    private const int MaxIndent = 8;

    private static readonly Func<DateTime> s_now = () => DateTime.Now;

    /// <summary>"\xNN" for every byte value, its four ASCII bytes little-endian in a UInt32.</summary>
    private static readonly uint[] s_escapes = CreateEscapes();

    /// <summary>The characters a note writes as \xNN: C0 controls and DEL.</summary>
    private static readonly SearchValues<char> s_controls = SearchValues.Create([.. Enumerable.Range(0, 0x20).Select(c => (char)c), '\u007f']);

    private readonly Stream _output;
    private byte[]? _buffer;
    private int _used;
    private DateTime _timestamp;
    private int _indent;

    /// <summary>Writes to <paramref name="output"/>.</summary>
    public PgTraceWriter(Stream output, PgTraceOptions? options = null)
    {
        _output = output ?? throw new ArgumentNullException(nameof(output));
        Options = options ?? new PgTraceOptions();
    }

    /// <summary>The options.</summary>
    public PgTraceOptions Options { get; }

    /// <summary>
    /// TABs written after the line prefix and timestamp, before the rest of each line begun after it
    /// is set (0 to 8; 0 by default): for lines that belong to the line above, such as the replication
    /// message a CopyData carries. libpq never indents a line.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is below 0 or above 8.</exception>
    public int Indent
    {
        get => _indent;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, MaxIndent);
            _indent = value;
        }
    }

    private bool Regress => Options.Regress;

    /// <summary>Starts a line.</summary>
    public void BeginMessage(char direction, int length, string name, bool maskLength, bool hasFields)
    {
        ArgumentNullException.ThrowIfNull(name);

        // Fields print in a few times their wire size (a Byte1 in five, " \xNN"); a buffer of five
        // times the length, up to the limit, takes a small message and its mismatch line whole.
        long estimate = 192 + MaxIndent + (Options.Prefix?.Length ?? 0) * 6L + name.Length * 3L + Math.Max(length, 0) * 5L;
        Start(estimate);
        _timestamp = Options.Timestamps ? (Options.Clock ?? s_now)() : default;
        LinePrefix();
        Text(direction);
        Raw("\t"u8);
        if (maskLength && Regress)
        {
            Raw("NN"u8);
        }
        else
        {
            Number(length);
        }

        Raw("\t"u8);
        Text(name);
        if (hasFields)
        {
            Raw("\t"u8);
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
        Span<byte> span = Reserve(5);
        span[0] = (byte)' ';
        Escape(new ReadOnlySpan<byte>(in value), span[1..], out int written);
        _used += 1 + written;
    }

    /// <summary>An Int16, printed unsigned as libpq does.</summary>
    public void Int16(int value)
    {
        Raw(" "u8);
        Number(value & 0xFFFF);
    }

    /// <summary>An Int32; NNNN in regress mode when masked.</summary>
    public void Int32(int value, bool masked)
    {
        if (masked && Regress)
        {
            Raw(" NNNN"u8);
            return;
        }

        Raw(" "u8);
        Number(value);
    }

    /// <summary>An Int64.</summary>
    public void Int64(long value)
    {
        Raw(" "u8);
        Number(value);
    }

    /// <summary>A String, raw, in double quotes; "SSSS" in regress mode when masked.</summary>
    public void String(ReadOnlySpan<byte> value, bool masked)
    {
        if (masked && Regress)
        {
            Raw(" \"SSSS\""u8);
            return;
        }

        Raw(" \""u8);
        Raw(value);
        Raw("\""u8);
    }

    /// <summary>Byte data in single quotes with \xNN escapes; 'BBBB' in regress mode when masked.</summary>
    public void Bytes(ReadOnlySpan<byte> value, bool masked)
    {
        if (masked && Regress)
        {
            Raw(" 'BBBB'"u8);
            return;
        }

        Raw(" '"u8);
        while (!value.IsEmpty)
        {
            int read = Escape(value, Reserve(4), out int written);
            _used += written;
            value = value[read..];
        }

        Raw("'"u8);
    }

    /// <summary>
    /// Ends the line; adds libpq's mismatch line when the tracer would not have consumed exactly the
    /// length. With a <see cref="PgTraceOptions.Prefix"/> or <see cref="PgTraceOptions.Timestamps"/>,
    /// that line starts with the same prefix and timestamp as its message line, so that it can be
    /// told to which connection it belongs (libpq writes it bare, and so does this writer without them).
    /// </summary>
    public void EndMessage(int consumed, int length, bool checkLength)
    {
        Raw("\n"u8);
        if (checkLength && consumed != length)
        {
            LinePrefix();
            Raw("mismatched message length: consumed "u8);
            Number(consumed);
            Raw(", expected "u8);
            Number(length);
            Raw("\n"u8);
        }

        Finish();
    }

    /// <summary>The one-byte answer to SSLRequest or GSSENCRequest ("SSLResponse", "GSSENCResponse").</summary>
    public void CharResponse(string name, byte answer)
    {
        BeginMessage('B', 1, name, maskLength: false, hasFields: true);
        Span<byte> span = Reserve(2);
        span[0] = (byte)' ';
        span[1] = answer;
        _used += 2;
        EndMessage(0, 0, checkLength: false);
    }

    /// <summary>A line of its own (a decode error, say), written as is.</summary>
    public void RawLine(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        Start(text.Length * 3L + 1);
        Text(text);
        Raw("\n"u8);
        Finish();
    }

    /// <summary>
    /// Writes a comment line, <c>[prefix TAB][timestamp TAB]# text</c>, with the prefix and timestamp
    /// of message lines: for what a trace should record that is not a message, such as why a
    /// connection ended. libpq never prints a line that starts with '#' (after those prefixes), so
    /// tools that compare traces with libpq's can skip these lines. Control characters (U+0000 to
    /// U+001F and U+007F) are written as \xNN, so that a note is always one line.
    /// </summary>
    public void Note(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        Start(96 + MaxIndent + (Options.Prefix?.Length ?? 0) * 3L + text.Length * 4L);
        _timestamp = Options.Timestamps ? (Options.Clock ?? s_now)() : default;
        LinePrefix();
        Raw("# "u8);
        ReadOnlySpan<char> rest = text;
        while (!rest.IsEmpty)
        {
            int run = rest.IndexOfAny(s_controls);
            run = run < 0 ? rest.Length : run;
            Text(rest[..run]);
            rest = rest[run..];
            if (!rest.IsEmpty)
            {
                byte control = (byte)rest[0];
                Escape(new ReadOnlySpan<byte>(in control), Reserve(4), out int written);
                _used += written;
                rest = rest[1..];
            }
        }

        Raw("\n"u8);
        Finish();
    }

    /// <summary>A byte as libpq's Byte1 tracer prints it.</summary>
    public static string FormatByte(byte value)
        => value is >= 0x20 and < 0x7f ? ((char)value).ToString() : "\\x" + value.ToString("x2", CultureInfo.InvariantCulture);

    /// <summary>Bytes as libpq's tracer prints byte data, with the quotes.</summary>
    public static string FormatBytes(ReadOnlySpan<byte> value)
    {
        var text = new StringBuilder(value.Length + 2);
        text.Append('\'');
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

        return text.Append('\'').ToString();
    }

    /// <summary>
    /// Starts a line in a buffer of about <paramref name="estimate"/> bytes, up to the limit. What a
    /// line left unfinished by an exception (from the output) still had in its buffer is dropped.
    /// </summary>
    private void Start(long estimate)
    {
        int size = (int)Math.Clamp(estimate, MinBufferSize, MaxBufferSize);
        _used = 0;
        if (_buffer is not null && _buffer.Length < size)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = null;
        }

        _buffer ??= ArrayPool<byte>.Shared.Rent(size);
    }

    /// <summary>Writes what is buffered and gives the buffer back.</summary>
    private void Finish()
    {
        byte[]? buffer = _buffer;
        if (buffer is null)
        {
            return;
        }

        int used = _used;
        _used = 0;
        if (buffer.Length > KeptBufferSize)
        {
            _buffer = null;
        }

        try
        {
            _output.Write(buffer, 0, used);
        }
        finally
        {
            if (buffer.Length > KeptBufferSize)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    /// <summary>A span of at least <paramref name="size"/> (at most <see cref="MaxItemSize"/>) free bytes, writing out the buffer if it has less room.</summary>
    private Span<byte> Reserve(int size)
    {
        if (_buffer is null)
        {
            Start(MinBufferSize);
        }

        if (_buffer!.Length - _used < size)
        {
            Drain();
        }

        return _buffer.AsSpan(_used);
    }

    /// <summary>Writes the buffer out and empties it, keeping it for the rest of the line.</summary>
    private void Drain()
    {
        _output.Write(_buffer!, 0, _used);
        _used = 0;
    }

    /// <summary>The connection prefix and timestamp that start each line, each followed by a TAB.</summary>
    private void LinePrefix()
    {
        if (Options.Prefix is { } prefix)
        {
            Text(prefix);
            Raw("\t"u8);
        }

        if (Options.Timestamps)
        {
            Span<byte> span = Reserve(MaxItemSize);
            bool formatted = _timestamp.TryFormat(span, out int written, TimestampFormat, CultureInfo.InvariantCulture);
            Debug.Assert(formatted, "a timestamp fits in MaxItemSize bytes");
            _used += written;
            Raw("\t"u8);
        }

        if (_indent > 0)
        {
            Raw("\t\t\t\t\t\t\t\t"u8[.._indent]);
        }
    }

    private void Number(long value)
    {
        Span<byte> span = Reserve(MaxItemSize);
        bool formatted = value.TryFormat(span, out int written, default, CultureInfo.InvariantCulture);
        Debug.Assert(formatted, "a number fits in MaxItemSize bytes");
        _used += written;
    }

    /// <summary>Bytes as they are, in as many pieces as the buffer needs.</summary>
    private void Raw(ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            Span<byte> span = Reserve(1);
            int n = Math.Min(span.Length, bytes.Length);
            bytes[..n].CopyTo(span);
            _used += n;
            bytes = bytes[n..];
        }
    }

    private void Text(char c) => Text(new ReadOnlySpan<char>(in c));

    /// <summary>UTF-16 text as UTF-8, in as many pieces as the buffer needs.</summary>
    private void Text(ReadOnlySpan<char> text)
    {
        while (!text.IsEmpty)
        {
            Span<byte> span = Reserve(4);
            System.Text.Unicode.Utf8.FromUtf16(text, span, out int read, out int written, replaceInvalidSequences: true, isFinalBlock: true);
            _used += written;
            text = text[read..];
        }
    }

    /// <summary>
    /// Escapes as much of <paramref name="source"/> as fits into <paramref name="destination"/> (at
    /// least one byte when it has room for four): printable runs copied, other bytes as \xNN.
    /// Returns the bytes read; <paramref name="written"/>, the bytes written.
    /// </summary>
    private static int Escape(ReadOnlySpan<byte> source, Span<byte> destination, out int written)
    {
        int read = 0;
        written = 0;
        while (read < source.Length)
        {
            // Look no further than what the destination can take: a long value is escaped a buffer at a
            // time, and scanning all of the rest for each buffer would make it quadratic.
            ReadOnlySpan<byte> rest = source[read..];
            int room = destination.Length - written;
            ReadOnlySpan<byte> window = rest[..Math.Min(rest.Length, room)];
            int run = window.IndexOfAnyExceptInRange((byte)0x20, (byte)0x7e);
            if (run != 0)
            {
                int n = run < 0 ? window.Length : run;
                window[..n].CopyTo(destination[written..]);
                read += n;
                written += n;
                if (n == room)
                {
                    break;
                }

                continue;
            }

            ReadOnlySpan<byte> escapable = rest[..Math.Min(rest.Length, room / 4)];
            int escapes = escapable.IndexOfAnyInRange((byte)0x20, (byte)0x7e);
            escapes = escapes < 0 ? escapable.Length : escapes;
            if (escapes == 0)
            {
                break;
            }

            ReadOnlySpan<uint> table = s_escapes;
            Span<byte> target = destination.Slice(written, escapes * 4);
            for (int i = 0; i < escapes; i++)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(target[(i * 4)..], table[rest[i]]);
            }

            read += escapes;
            written += escapes * 4;
        }

        return read;
    }

    private static uint[] CreateEscapes()
    {
        var table = new uint[256];
        ReadOnlySpan<byte> hex = "0123456789abcdef"u8;
        for (int b = 0; b < table.Length; b++)
        {
            table[b] = (uint)'\\' | (uint)'x' << 8 | (uint)hex[b >> 4] << 16 | (uint)hex[b & 0xF] << 24;
        }

        return table;
    }
}
