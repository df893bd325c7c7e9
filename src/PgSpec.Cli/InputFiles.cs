using System.Globalization;

namespace PgSpec.Cli;

/// <summary>An input that cannot be read or is not in the form asked for (exit code 2).</summary>
internal sealed class InputException : Exception
{
    public InputException(string message)
        : base(message)
    {
    }
}

/// <summary>Opens the byte streams to decode: files or standard input, raw or hex.</summary>
internal static class InputFiles
{
    /// <summary>Opens <paramref name="path"/> ('-' is <paramref name="stdin"/>, which stays open), decoding hex text as it is read if asked.</summary>
    public static InputBuffer Open(string path, Stream stdin, bool hex)
    {
        string name = path == "-" ? "standard input" : "'" + path + "'";
        Stream stream;
        if (path == "-")
        {
            stream = stdin;
        }
        else
        {
            try
            {
                // Unbuffered: the input buffer reads in large blocks of its own.
                stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 0, FileOptions.SequentialScan);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException or System.Security.SecurityException)
            {
                throw new InputException($"cannot read {name}: {Reason(path, e)}");
            }
        }

        return new InputBuffer(hex ? new HexDecodingStream(stream, name, ownsText: path != "-") : stream, name, ownsStream: path != "-" || hex);
    }

    /// <summary>Why a file cannot be opened, in the words of the system's tools rather than .NET's.</summary>
    private static string Reason(string path, Exception e) => e switch
    {
        // Opening a directory fails with "access denied" on Linux.
        UnauthorizedAccessException or IOException when Directory.Exists(path) => "it is a directory",
        FileNotFoundException or DirectoryNotFoundException => "no such file or directory",
        _ => e.Message,
    };
}

/// <summary>
/// A byte stream read into a buffer that holds the message being decoded: it grows to the size of
/// a message when its header says it is larger, and shrinks back when a much smaller one follows,
/// so memory is bounded by the largest message whatever the length of the stream.
/// </summary>
internal sealed class InputBuffer : IDisposable
{
    /// <summary>The usual size of the buffer, and of most reads.</summary>
    internal const int DefaultSize = 64 * 1024;

    /// <summary>Room kept past a large message, so that the read that completes it also says whether more bytes were waiting.</summary>
    private const int Slack = 4096;

    /// <summary>The longest header a frame is known by (type byte and length word); larger sizes are whole messages.</summary>
    private const int HeaderSize = 5;

    private readonly Stream _stream;
    private readonly bool _ownsStream;
    private byte[] _buffer = new byte[DefaultSize];
    private int _start;
    private int _end;

    public InputBuffer(Stream stream, string name, bool ownsStream)
    {
        _stream = stream;
        Name = name;
        _ownsStream = ownsStream;
    }

    /// <summary>How errors name the input ("standard input", or the file name in quotes).</summary>
    public string Name { get; }

    /// <summary>The bytes read and not consumed.</summary>
    public ReadOnlySpan<byte> Data => _buffer.AsSpan(_start, _end - _start);

    /// <summary>How many bytes <see cref="Data"/> holds.</summary>
    public int Count => _end - _start;

    /// <summary>The stream has ended: <see cref="Data"/> is all that is left.</summary>
    public bool Ended { get; private set; }

    /// <summary>The size of the buffer (for tests).</summary>
    internal int Capacity => _buffer.Length;

    /// <summary>
    /// The last read gave less than it was asked for, so the next one may have to wait for the
    /// writer (a pipe or a terminal); a file gives short reads only at its end.
    /// </summary>
    public bool Drained { get; private set; }

    /// <summary>Called before a read that may wait (after a short one): flushes the output, say, so that what is decoded so far is seen.</summary>
    public Action? BeforeWait { get; set; }

    /// <summary>Drops <paramref name="count"/> bytes from the start of <see cref="Data"/>.</summary>
    public void Consume(int count)
    {
        _start += count;
        if (_start == _end)
        {
            _start = 0;
            _end = 0;
        }
    }

    /// <summary>Reads until <see cref="Data"/> holds at least <paramref name="count"/> bytes; false if the stream ends first.</summary>
    public bool Ensure(int count)
    {
        while (Count < count)
        {
            if (!ReadMore(count))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// Makes room for <paramref name="count"/> bytes in all (the whole message when its size is
    /// known) and reads once, as much as the stream gives. False when the stream has ended.
    /// </summary>
    public bool ReadMore(int count)
    {
        if (Ended)
        {
            return false;
        }

        MakeRoom(count);
        if (Drained)
        {
            BeforeWait?.Invoke();
        }

        Span<byte> free = _buffer.AsSpan(_end);
        int read;
        try
        {
            read = _stream.Read(free);
        }
        catch (IOException e)
        {
            throw new InputException($"cannot read {Name}: {e.Message}");
        }

        _end += read;
        Ended = read == 0;
        Drained = _stream is HexDecodingStream hex ? hex.Drained : read < free.Length;
        return read > 0;
    }

    /// <summary>Consumes everything left, reading the stream to its end; how many bytes that was.</summary>
    public long SkipToEnd()
    {
        long count = Count;
        Consume(Count);
        while (ReadMore(1))
        {
            count += Count;
            Consume(Count);
        }

        return count;
    }

    public void Dispose()
    {
        if (_ownsStream)
        {
            _stream.Dispose();
        }
    }

    private void MakeRoom(int count)
    {
        int capacity = _buffer.Length;
        int target = (int)Math.Min(Math.Max(DefaultSize, (long)Math.Max(count, Count) + Slack), Array.MaxLength);
        if (count > capacity || (count > HeaderSize && capacity > DefaultSize && target < capacity / 4))
        {
            // Grow to the message; or, after a large message, shrink back for a much smaller one.
            byte[] resized = GC.AllocateUninitializedArray<byte>(target);
            Data.CopyTo(resized);
            _end = Count;
            _start = 0;
            _buffer = resized;
        }
        else if (_start > 0 && (_start + count > capacity || capacity - _end < DefaultSize / 2))
        {
            Data.CopyTo(_buffer);
            _end = Count;
            _start = 0;
        }
    }
}

/// <summary>
/// Hex text decoded as it is read: whitespace anywhere is ignored, anything else that is not a hex
/// digit is an error that names its line and column.
/// </summary>
internal sealed class HexDecodingStream : Stream
{
    private readonly Stream _text;
    private readonly string _name;
    private readonly bool _ownsText;
    private readonly byte[] _chunk = new byte[InputBuffer.DefaultSize];
    private int _chunkStart;
    private int _chunkEnd;
    private bool _ended;
    private bool _shortRead;
    private int _high = -1;
    private long _count;
    private long _line = 1;
    private long _column;

    public HexDecodingStream(Stream text, string name, bool ownsText)
    {
        _text = text;
        _name = name;
        _ownsText = ownsText;
    }

    /// <summary>No text is left from the last read of the text, which was short: the next may wait.</summary>
    public bool Drained => _chunkStart == _chunkEnd && _shortRead;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override int Read(Span<byte> buffer)
    {
        int written = 0;
        while (written == 0 && !buffer.IsEmpty)
        {
            if (_chunkStart == _chunkEnd)
            {
                if (_ended)
                {
                    return 0;
                }

                int read = _text.Read(_chunk);
                _chunkStart = 0;
                _chunkEnd = read;
                _shortRead = read < _chunk.Length;
                if (read == 0)
                {
                    _ended = true;
                    if (_high >= 0)
                    {
                        throw new InputException($"{_name} is not hex: it has an odd number of hex digits ({((2 * _count) + 1).ToString(CultureInfo.InvariantCulture)})");
                    }

                    return 0;
                }
            }

            written = Decode(buffer);
        }

        return written;
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing && _ownsText)
        {
            _text.Dispose();
        }

        base.Dispose(disposing);
    }

    /// <summary>Decodes text from the chunk into <paramref name="buffer"/> until one is full or the other empty.</summary>
    private int Decode(Span<byte> buffer)
    {
        int written = 0;
        while (_chunkStart < _chunkEnd && written < buffer.Length)
        {
            byte c = _chunk[_chunkStart++];
            _column++;
            if (c == (byte)'\n')
            {
                _line++;
                _column = 0;
                continue;
            }

            if (c is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\v' or (byte)'\f')
            {
                continue;
            }

            int digit = c switch
            {
                >= (byte)'0' and <= (byte)'9' => c - '0',
                >= (byte)'a' and <= (byte)'f' => c - 'a' + 10,
                >= (byte)'A' and <= (byte)'F' => c - 'A' + 10,
                _ => -1,
            };
            if (digit < 0 && written > 0)
            {
                // The bytes before it first: the error comes with the next read.
                _chunkStart--;
                _column--;
                break;
            }

            if (digit < 0)
            {
                string shown = c is >= 0x21 and < 0x7f ? "'" + (char)c + "'" : "byte 0x" + c.ToString("x2", CultureInfo.InvariantCulture);
                throw new InputException($"{_name} is not hex: {shown} at line {_line.ToString(CultureInfo.InvariantCulture)}, column {_column.ToString(CultureInfo.InvariantCulture)} is not a hex digit (only 0-9, a-f, A-F and whitespace are allowed)");
            }

            if (_high < 0)
            {
                _high = digit;
            }
            else
            {
                buffer[written++] = (byte)((_high << 4) | digit);
                _count++;
                _high = -1;
            }
        }

        return written;
    }
}
