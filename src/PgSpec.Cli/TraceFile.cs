namespace PgSpec.Cli;

/// <summary>A trace file that cannot be opened as asked (exit code 2).</summary>
internal sealed class TraceFileException : Exception
{
    public TraceFileException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}

/// <summary>
/// The proxy's trace file: written at its end, and opened again by name on <see cref="Reopen"/>
/// (SIGHUP), so that log rotation can move it away and the proxy goes on in a new file. A file
/// that exists and is not empty is only appended to when asked, never overwritten.
/// </summary>
internal sealed class TraceFile : Stream
{
    private readonly Lock _lock = new();
    private FileStream _file;

    private TraceFile(string path, FileStream file)
    {
        Path = path;
        _file = file;
    }

    /// <summary>The file's path as given.</summary>
    public string Path { get; }

    /// <summary>Opens the file; an existing non-empty one only with <paramref name="append"/>.</summary>
    public static TraceFile Open(string path, bool append)
    {
        if (Directory.Exists(path))
        {
            throw new TraceFileException($"cannot write the trace to '{path}': it is a directory");
        }

        if (!append && File.Exists(path) && new FileInfo(path).Length > 0)
        {
            throw new TraceFileException($"the trace file '{path}' exists ({new FileInfo(path).Length} bytes): give --trace-append to add to it, or remove it first");
        }

        return new TraceFile(path, OpenFile(path));
    }

    /// <summary>Opens the path again (after log rotation moved the file); the old file is closed once the new one is open.</summary>
    public void Reopen()
    {
        FileStream fresh = OpenFile(Path);
        FileStream old;
        lock (_lock)
        {
            old = _file;
            old.Flush();
            _file = fresh;
        }

        old.Dispose();
    }

    private static FileStream OpenFile(string path)
    {
        try
        {
            return new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read);
        }
        catch (DirectoryNotFoundException e)
        {
            throw new TraceFileException($"cannot write the trace to '{path}': the directory {System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))} does not exist", e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new TraceFileException($"cannot write the trace to '{path}': permission denied", e);
        }
        catch (IOException e)
        {
            throw new TraceFileException($"cannot write the trace to '{path}': {e.Message}", e);
        }
    }

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        lock (_lock)
        {
            _file.Write(buffer);
        }
    }

    public override void WriteByte(byte value)
    {
        lock (_lock)
        {
            _file.WriteByte(value);
        }
    }

    public override void Flush()
    {
        lock (_lock)
        {
            _file.Flush();
        }
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            lock (_lock)
            {
                _file.Dispose();
            }
        }

        base.Dispose(disposing);
    }
}
