using System.Runtime.InteropServices;

namespace PgSpec.Cli;

/// <summary>
/// Standard output as a stream of its own, written with write(2) on descriptor 1. .NET's console
/// streams take one lock for standard output and standard error, so a write blocked on a pipe
/// nobody reads (the proxy's trace) would block every note on standard error too; a FileStream on
/// descriptor 1 writes at offsets of its own, so output redirected to a file shared with other
/// programs (<c>(echo a; pgspec ...) &gt; f</c>, a loop's redirection) would overwrite theirs.
/// write(2) does neither: it moves the descriptor's shared offset and honours O_APPEND.
/// </summary>
internal sealed partial class StandardOutputStream : Stream
{
    private const int EINTR = 4;
    private const int EAGAIN = 11;
    private const int EPIPE = 32;

    /// <summary>The exit code of a program whose reader went away (killed by SIGPIPE, as a shell reports it).</summary>
    public const int BrokenPipeExitCode = 141;

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    /// <summary>Whether an exception says the reader of standard output has gone (EPIPE).</summary>
    public static bool IsBrokenPipe(Exception e)
    {
        for (Exception? inner = e; inner is not null; inner = inner.InnerException)
        {
            if (inner is BrokenPipeException || (inner is IOException io && io.HResult == EPIPE))
            {
                return true;
            }
        }

        return false;
    }

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            nint written = WriteSystem(1, buffer, buffer.Length);
            if (written >= 0)
            {
                buffer = buffer[(int)written..];
                continue;
            }

            int errno = Marshal.GetLastPInvokeError();
            if (errno == EINTR)
            {
                continue;
            }

            if (errno == EAGAIN)
            {
                // A descriptor left non-blocking by whoever started us: wait a little for room.
                Thread.Sleep(1);
                continue;
            }

            if (errno == EPIPE)
            {
                throw new BrokenPipeException();
            }

            throw new IOException($"cannot write to standard output: {Marshal.GetPInvokeErrorMessage(errno)}", errno);
        }
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void WriteByte(byte value) => Write([value]);

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Write(buffer.Span);
        return ValueTask.CompletedTask;
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Flush()
    {
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static partial nint WriteSystem(int descriptor, ReadOnlySpan<byte> buffer, nint count);

    /// <summary>The reader of standard output has gone (EPIPE): there is nobody left to tell anything.</summary>
    public sealed class BrokenPipeException : IOException
    {
        public BrokenPipeException()
            : base("standard output is a pipe whose reader has gone", EPIPE)
        {
        }
    }
}
