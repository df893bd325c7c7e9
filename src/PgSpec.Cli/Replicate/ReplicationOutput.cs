namespace PgSpec.Cli.Replicate;

/// <summary>
/// Where <c>pgspec replicate</c> writes its lines: standard output, or a file opened for appending
/// (a restarted run goes on where the last one stopped). Lines are buffered; <see cref="Flush"/>
/// hands them to the operating system, <see cref="FlushDurable"/> also fsyncs a file: the tool
/// acknowledges a position to the server only after the lines before it went through that.
/// </summary>
internal sealed class ReplicationOutput : IDisposable
{
    private const int BufferSize = 64 * 1024;
    private readonly string? _path;
    private FileStream? _file;
    private BufferedStream _buffered;

    private ReplicationOutput(Stream target, string? path, FileStream? file)
    {
        _path = path;
        _file = file;
        _buffered = new BufferedStream(target, BufferSize);
        Stream = new CurrentStream(this);
    }

    /// <summary>The stream the lines are written to: buffered, and the same stream after <see cref="Reopen"/>.</summary>
    public Stream Stream { get; }

    /// <summary>What the output is, for messages.</summary>
    public string Name => _path ?? "standard output";

    /// <summary>Lines to standard output (<paramref name="stdout"/>, left open).</summary>
    public static ReplicationOutput ForStandardOutput(Stream stdout) => new(new NonClosingStream(stdout), null, null);

    /// <summary>Lines appended to <paramref name="path"/>, created if need be.</summary>
    /// <exception cref="IOException">The file cannot be opened.</exception>
    /// <exception cref="UnauthorizedAccessException">The file cannot be opened.</exception>
    public static ReplicationOutput ForFile(string path)
    {
        FileStream file = OpenFile(path);
        return new ReplicationOutput(file, path, file);
    }

    private static FileStream OpenFile(string path)
        => new(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.None);

    /// <summary>Hands the buffered lines to the operating system.</summary>
    public void Flush() => _buffered.Flush();

    /// <summary>Hands the buffered lines to the operating system and, for a file, waits until they are on disk (fsync).</summary>
    public void FlushDurable()
    {
        _buffered.Flush();
        _file?.Flush(flushToDisk: true);
    }

    /// <summary>Whether <see cref="Reopen"/> applies: the output is a file.</summary>
    public bool CanReopen => _path is not null;

    /// <summary>
    /// Makes what was written durable, then opens the file again by its name (log rotation: the file
    /// was moved away, and a new one starts).
    /// </summary>
    public void Reopen()
    {
        if (_path is null)
        {
            return;
        }

        FlushDurable();
        FileStream next = OpenFile(_path);
        _buffered.Dispose();
        _file = next;
        _buffered = new BufferedStream(next, BufferSize);
    }

    public void Dispose()
    {
        try
        {
            _buffered.Dispose();
        }
        catch (IOException)
        {
            // What could not be written was not acknowledged; the error, if it matters, was reported.
        }
    }

    /// <summary>Writes go to the output's buffer of the moment (a new one after <see cref="Reopen"/>).</summary>
    private sealed class CurrentStream(ReplicationOutput output) : Stream
    {
        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override void Write(byte[] buffer, int offset, int count) => output._buffered.Write(buffer, offset, count);

        public override void Write(ReadOnlySpan<byte> buffer) => output._buffered.Write(buffer);

        public override void WriteByte(byte value) => output._buffered.WriteByte(value);

        public override void Flush() => output._buffered.Flush();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }

    /// <summary>Standard output, which the tool's caller owns and closes.</summary>
    private sealed class NonClosingStream(Stream inner) : Stream
    {
        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);

        public override void Write(ReadOnlySpan<byte> buffer) => inner.Write(buffer);

        public override void Flush() => inner.Flush();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
