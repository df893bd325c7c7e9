using System.Text;
using PgSpec.Protocol;

namespace PgSpec.Protocol.Tests;

public class StreamReaderTests
{
    private static IBackendMessage[] Conversation() => PipeReaderTests.Conversation();

    private static DecodeContext AfterStartup() => new() { Phase = PgSessionPhase.Authentication };

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(7)]
    [InlineData(4096)]
    public async Task ReadAsync_MessagesArrivingInChunks_YieldsEachMessageOnce(int chunk)
    {
        IBackendMessage[] sent = Conversation();
        byte[] bytes = sent.SelectMany(m => m.ToArray()).ToArray();
        using var reader = new PgStreamMessageReader(new ChunkedStream(bytes, chunk), PgDirection.Backend, AfterStartup(), bufferSize: 16);
        var received = new List<IPgMessage>();
        var raw = new List<byte>();
        while (await reader.ReadAsync())
        {
            received.Add(reader.Current.ToMessage());
            raw.AddRange(reader.CurrentRaw.ToArray());
        }

        Assert.Equal(sent.Cast<IPgMessage>(), received);
        Assert.Equal(bytes, raw);
    }

    [Fact]
    public async Task ReadAsync_SeveralMessagesInOneReceive_ReadsTheStreamOnce()
    {
        IBackendMessage[] sent = Conversation();
        var stream = new ChunkedStream(sent.SelectMany(m => m.ToArray()).ToArray(), int.MaxValue);
        using var reader = new PgStreamMessageReader(stream, PgDirection.Backend, AfterStartup());
        foreach (IBackendMessage expected in sent)
        {
            Assert.True(await reader.ReadAsync());
            Assert.Equal<IPgMessage>(expected, reader.Current.ToMessage());
            Assert.Equal(1, stream.Reads);
        }

        Assert.Equal(0, reader.Buffered);
        Assert.False(reader.TryReadBuffered());
        Assert.Equal(1, stream.Reads);
    }

    [Fact]
    public async Task ReadAsync_StreamEndsInsideMessage_ThrowsProtocolException()
    {
        byte[] bytes = new CommandComplete("SELECT 1").ToArray();
        using var reader = new PgStreamMessageReader(new ChunkedStream(bytes[..^3], 4), PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal });
        PgProtocolException e = await Assert.ThrowsAsync<PgProtocolException>(async () => await reader.ReadAsync());
        Assert.Contains("closed inside a message", e.Reason, StringComparison.Ordinal);
        Assert.Contains($"{bytes.Length - 3} bytes of it received", e.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ReadAsync_MalformedBody_ThrowsWithStreamOffset()
    {
        byte[] first = new CommandComplete("SELECT 1").ToArray();
        // ReadyForQuery with a status byte that is not I, T or E.
        byte[] bad = [(byte)'Z', 0, 0, 0, 5, (byte)'?'];
        using var reader = new PgStreamMessageReader(new ChunkedStream([.. first, .. bad], int.MaxValue), PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal });
        Assert.True(await reader.ReadAsync());
        PgProtocolException e = await Assert.ThrowsAsync<PgProtocolException>(async () => await reader.ReadAsync());
        Assert.True(e.Error.Offset >= first.Length, $"offset {e.Error.Offset}");
    }

    [Fact]
    public async Task ReadAsync_LengthOverTheLimit_RefusedAtTheHeaderWithoutWaitingForTheBody()
    {
        var context = new DecodeContext { Phase = PgSessionPhase.Normal, Limits = PgLimits.Default.WithAll(PgDirection.Backend, 1024) };
        byte[] header = [(byte)'D', 0x40, 0, 0, 0];
        using var reader = new PgStreamMessageReader(new ChunkedStream(header, int.MaxValue, endless: true), PgDirection.Backend, context);
        await Assert.ThrowsAsync<PgProtocolException>(async () => await reader.ReadAsync());
    }

    [Fact]
    public async Task ReadAsync_LargeDeclaredLength_BufferGrowsOnlyWithWhatArrives()
    {
        // 64 MiB declared, 20 bytes sent, then the peer stalls: the buffer stays at its first size.
        byte[] header = [(byte)'d', 0x04, 0, 0, 4, .. new byte[15]];
        var stream = new ChunkedStream(header, int.MaxValue, endless: true);
        using var reader = new PgStreamMessageReader(stream, PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.CopyOut });
        using var stall = new CancellationTokenSource();
        Task<bool> read = reader.ReadAsync(stall.Token).AsTask();
        await stream.Stalled.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(16 * 1024, stream.LargestReadBuffer);
        stall.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => read);
    }

    [Fact]
    public async Task ReadAsync_AfterALargeMessage_BufferShrinksBack()
    {
        byte[] large = new CopyData(new byte[3 * 1024 * 1024]).ToArray();
        byte[] small = new CopyData(new byte[10]).ToArray();
        var stream = new ChunkedStream([.. large, .. small, .. small], 64 * 1024);
        using var reader = new PgStreamMessageReader(stream, PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.CopyOut });
        Assert.True(await reader.ReadAsync());
        Assert.Equal(large.Length, reader.CurrentRaw.Length);
        Assert.True(stream.LargestReadBuffer <= large.Length, $"buffer {stream.LargestReadBuffer}");
        Assert.True(await reader.ReadAsync());
        Assert.True(await reader.ReadAsync());
        Assert.Equal(small, reader.CurrentRaw.ToArray());
        Assert.True(stream.LastReadBuffer <= 16 * 1024, $"buffer {stream.LastReadBuffer} after the large message");
        Assert.False(await reader.ReadAsync());
    }

    [Fact]
    public Task ReadAsync_BorrowedPath_AllocatesNothingPerMessage() => Allocations.AssertNothingPerMessageAsync(MeasureAsync);

    /// <summary>Reads <paramref name="rows"/> rows received whole in one read; what the reads allocated.</summary>
    private static async Task<long> MeasureAsync(int rows)
    {
        byte[] bytes = Allocations.DataRows(rows);
        var context = new DecodeContext { Phase = PgSessionPhase.Normal };

        // A warm-up pass compiles the path; the measured pass reads the same bytes from a new stream.
        long expected = await ReadAllAsync(new ChunkedStream(bytes, int.MaxValue), context, bytes.Length);
        using var stream = new ChunkedStream(bytes, int.MaxValue);
        using var reader = new PgStreamMessageReader(stream, PgDirection.Backend, context, bufferSize: bytes.Length);
        long measured = 0;
        long before = GC.GetAllocatedBytesForCurrentThread();
        while (await reader.ReadAsync())
        {
            measured += reader.Current.Body.Length;
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(expected, measured);
        Assert.Equal(2, stream.Reads);
        return allocated;
    }

    private static async Task<long> ReadAllAsync(Stream stream, DecodeContext context, int bufferSize)
    {
        using var reader = new PgStreamMessageReader(stream, PgDirection.Backend, context, bufferSize);
        long sum = 0;
        while (await reader.ReadAsync())
        {
            sum += reader.Current.Body.Length;
        }

        return sum;
    }

    [Fact]
    public async Task ReadAsync_AfterDispose_Throws()
    {
        var reader = new PgStreamMessageReader(new ChunkedStream([], 1), PgDirection.Backend);
        reader.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await reader.ReadAsync());
    }

    /// <summary>A stream that gives its bytes at most <c>chunk</c> at a time (synchronously), then ends or stalls.</summary>
    private sealed class ChunkedStream(byte[] bytes, int chunk, bool endless = false) : Stream
    {
        private int _offset;

        public int Reads { get; private set; }

        public int LargestReadBuffer { get; private set; }

        public int LastReadBuffer { get; private set; }

        public TaskCompletionSource Stalled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Reads++;
            LargestReadBuffer = Math.Max(LargestReadBuffer, _offset + buffer.Length);
            LastReadBuffer = buffer.Length;
            int n = Math.Min(Math.Min(chunk, buffer.Length), bytes.Length - _offset);
            if (n == 0 && endless)
            {
                Stalled.TrySetResult();
                return new ValueTask<int>(Task.Delay(Timeout.Infinite, cancellationToken).ContinueWith(_ => 0, cancellationToken, TaskContinuationOptions.None, TaskScheduler.Default));
            }

            bytes.AsSpan(_offset, n).CopyTo(buffer.Span);
            _offset += n;
            return new ValueTask<int>(n);
        }

        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
