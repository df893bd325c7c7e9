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
/// The proxy's trace file: written at its end, and opened again by name on SIGHUP, so that log
/// rotation can move it away and the proxy goes on in a new file. A regular file that exists and
/// is not empty is only appended to when asked, never overwritten by mistake; devices and pipes
/// (<c>/dev/stderr</c>, a named pipe) are written as they are.
/// </summary>
internal static class TraceFile
{
    /// <summary>Checks the path and opens it; the function returned opens it again (for SIGHUP).</summary>
    public static (Stream First, Func<Stream> Reopen) Open(string path, bool append)
    {
        if (Directory.Exists(path))
        {
            throw new TraceFileException($"cannot write the trace to '{path}': it is a directory");
        }

        if (!append && IsRegularFile(path) && new FileInfo(path).Length is > 0 and long size)
        {
            throw new TraceFileException($"the trace file '{path}' exists ({size} bytes): give --trace-append to add to it, or remove it first");
        }

        return (OpenFile(path), () => OpenFile(path));
    }

    /// <summary>
    /// A file that writing would add to: not a device or a descriptor (<c>/dev/stderr</c>,
    /// <c>/proc/self/fd/1</c>, <c>/dev/null</c>), which are written as they are.
    /// </summary>
    private static bool IsRegularFile(string path)
    {
        string full = Path.GetFullPath(path);
        return File.Exists(full)
            && !full.StartsWith("/dev/", StringComparison.Ordinal)
            && !full.StartsWith("/proc/", StringComparison.Ordinal);
    }

    private static FileStream OpenFile(string path)
    {
        try
        {
            return new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read);
        }
        catch (DirectoryNotFoundException e)
        {
            throw new TraceFileException($"cannot write the trace to '{path}': the directory {Path.GetDirectoryName(Path.GetFullPath(path))} does not exist", e);
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
}
