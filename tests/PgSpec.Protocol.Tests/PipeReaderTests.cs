using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using PgSpec.Protocol;

namespace PgSpec.Protocol.Tests;

public class PipeReaderTests
{
    /// <summary>A short server conversation, from AuthenticationOk to a result (the stream reader's tests read it too).</summary>
    internal static IBackendMessage[] Conversation() =>
    [
        new AuthenticationOk(),
        new ParameterStatus("server_version", "18.4"),
        new BackendKeyData(4242, new byte[32]),
        new ReadyForQuery(TransactionStatus.Idle),
        new RowDescription([new RowDescription.Field("a", 0, 0, 23, 4, -1, 0)]),
        new DataRow([(ReadOnlyMemory<byte>?)Encoding.ASCII.GetBytes("1"), null]),
        new CommandComplete("SELECT 1"),
        new ReadyForQuery(TransactionStatus.Idle),
    ];

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(7)]
    [InlineData(4096)]
    public async Task ReadAsync_MessagesArrivingInChunks_YieldsEachMessageOnce(int chunk)
    {
        IBackendMessage[] sent = Conversation();
        byte[] bytes = sent.SelectMany(m => m.ToArray()).ToArray();
        var pipe = new Pipe();
        Task writer = Task.Run(async () =>
        {
            for (int i = 0; i < bytes.Length; i += chunk)
            {
                await pipe.Writer.WriteAsync(bytes.AsMemory(i, Math.Min(chunk, bytes.Length - i)));
            }

            await pipe.Writer.CompleteAsync();
        });

        var reader = new PgPipeMessageReader(pipe.Reader, PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Authentication });
        var received = new List<IPgMessage>();
        var raw = new List<byte>();
        while (await reader.ReadAsync())
        {
            received.Add(reader.Current.ToMessage());
            raw.AddRange(reader.CurrentRaw.ToArray());
        }

        await writer;
        Assert.Equal(sent.Cast<IPgMessage>(), received);
        Assert.Equal(bytes, raw);
    }

    [Fact]
    public async Task TryRead_TakesOnlyWhatTheLastReadHoldsWhole()
    {
        byte[] first = new ReadyForQuery(TransactionStatus.Idle).ToArray();
        byte[] second = new CommandComplete("SELECT 1").ToArray();
        byte[] third = new CommandComplete("SELECT 2").ToArray();
        var pipe = new Pipe();
        var reader = new PgPipeMessageReader(pipe.Reader, PgDirection.Backend);
        Assert.False(reader.TryRead());

        await pipe.Writer.WriteAsync((byte[])[.. first, .. second, .. third.AsSpan(0, 6)]);
        Assert.True(await reader.ReadAsync());
        Assert.Equal(BackendMessageKind.ReadyForQuery, reader.Current.BackendKind);
        Assert.True(reader.TryRead());
        Assert.Equal(new CommandComplete("SELECT 1"), reader.Current.ToMessage());

        // The third is not whole: TryRead says so without waiting, and leaves it for ReadAsync.
        Assert.False(reader.TryRead());
        Assert.Throws<InvalidOperationException>(() => reader.Current.Length);
        Assert.False(reader.TryRead());
        await pipe.Writer.WriteAsync(third.AsMemory(6));
        Assert.True(await reader.ReadAsync());
        Assert.Equal(new CommandComplete("SELECT 2"), reader.Current.ToMessage());

        // A malformed message in what is held is an error, as from ReadAsync.
        await pipe.Writer.WriteAsync((byte[])[.. first, (byte)'Z', 0, 0, 0, 9, 0, 0, 0, 0, 0]);
        Assert.True(await reader.ReadAsync());
        Assert.Throws<PgProtocolException>(() => reader.TryRead());
    }

    [Fact]
    public async Task TryReadOut_GivesWhatTheLastReadHoldsWhole_AsCurrent()
    {
        byte[] first = new ReadyForQuery(TransactionStatus.Idle).ToArray();
        byte[] second = new CommandComplete("SELECT 1").ToArray();
        byte[] third = new CommandComplete("SELECT 2").ToArray();
        var pipe = new Pipe();
        var reader = new PgPipeMessageReader(pipe.Reader, PgDirection.Backend);
        Assert.False(reader.TryRead(out _));

        await pipe.Writer.WriteAsync((byte[])[.. first, .. second, .. third.AsSpan(0, 6)]);
        Assert.True(await reader.ReadAsync());
        Assert.True(reader.TryRead(out PgReceivedMessage message));
        Assert.Equal(new CommandComplete("SELECT 1"), message.ToMessage());
        Assert.Equal(new CommandComplete("SELECT 1"), reader.Current.ToMessage());
        Assert.Equal(first.Length, message.Offset);

        Assert.False(reader.TryRead(out _));
        Assert.Throws<InvalidOperationException>(() => reader.Current.Length);
        await pipe.Writer.WriteAsync(third.AsMemory(6));
        Assert.True(await reader.ReadAsync());
        Assert.Equal(new CommandComplete("SELECT 2"), reader.Current.ToMessage());

        // A malformed message in what is held is an error, and the pipe is not left mid-read.
        await pipe.Writer.WriteAsync((byte[])[.. first, (byte)'Z', 0, 0, 0, 9, 0, 0, 0, 0, 0]);
        Assert.True(await reader.ReadAsync());
        PgProtocolException error = Assert.Throws<PgProtocolException>(() => reader.TryRead(out _));
        int start = first.Length + second.Length + third.Length + first.Length;
        Assert.InRange(error.Offset, start, start + 9);
    }

    [Fact]
    public async Task ReadAsync_SeveralMessagesInOneWriteWithPipeStillOpen_YieldsAllWithoutWaiting()
    {
        IBackendMessage[] sent = Conversation();
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(sent.SelectMany(m => m.ToArray()).ToArray());
        var reader = new PgPipeMessageReader(pipe.Reader, PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Authentication });
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        foreach (IBackendMessage expected in sent)
        {
            Assert.True(await reader.ReadAsync(timeout.Token));
            Assert.Equal<IPgMessage>(expected, reader.Current.ToMessage());
        }
    }

    [Fact]
    public async Task ReadAsync_StreamEndsInsideMessage_ThrowsProtocolException()
    {
        byte[] bytes = new CommandComplete("SELECT 1").ToArray();
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(bytes.AsMemory(0, bytes.Length - 3));
        await pipe.Writer.CompleteAsync();
        var reader = new PgPipeMessageReader(pipe.Reader, PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal });
        PgProtocolException e = await Assert.ThrowsAsync<PgProtocolException>(async () => await reader.ReadAsync());
        Assert.Contains("closed inside a message", e.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ReadAsync_MalformedBody_ThrowsWithStreamOffset()
    {
        byte[] good = new ReadyForQuery(TransactionStatus.Idle).ToArray();
        byte[] bad = [(byte)'Z', 0, 0, 0, 5, (byte)'X'];
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(good.Concat(bad).ToArray());
        await pipe.Writer.CompleteAsync();
        var reader = new PgPipeMessageReader(pipe.Reader, PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal });
        Assert.True(await reader.ReadAsync());
        PgProtocolException e = await Assert.ThrowsAsync<PgProtocolException>(async () => await reader.ReadAsync());
        Assert.Equal("ReadyForQuery", e.MessageName);
        Assert.Equal("transactionStatus", e.Field);
        Assert.Equal(good.Length + 5, e.Offset);
    }

    [Fact]
    public async Task PipeMessageWriter_BatchesUntilFlush_ThenReaderSeesAll()
    {
        var pipe = new Pipe();
        var writer = new PgPipeMessageWriter(pipe.Writer);
        writer.Write(new Parse("", "SELECT $1", [23]));
        writer.Write(new Bind("", "", [], [(ReadOnlyMemory<byte>?)Encoding.ASCII.GetBytes("7")], []));
        writer.Write(new Execute("", 0));
        writer.Write(new Sync());
        Assert.True(writer.UnflushedBytes > 0);
        Assert.False(pipe.Reader.TryRead(out _));
        await writer.FlushAsync();
        await pipe.Writer.CompleteAsync();

        var reader = new PgPipeMessageReader(pipe.Reader, PgDirection.Frontend, new DecodeContext { Phase = PgSessionPhase.Normal });
        var kinds = new List<FrontendMessageKind>();
        while (await reader.ReadAsync())
        {
            kinds.Add(reader.Current.FrontendKind);
        }

        Assert.Equal([FrontendMessageKind.Parse, FrontendMessageKind.Bind, FrontendMessageKind.Execute, FrontendMessageKind.Sync], kinds);
    }

    [Fact]
    public async Task ReadAsync_MessagesOfOneRead_AreTakenWithoutGoingBackToThePipe()
    {
        IBackendMessage[] sent = Conversation();
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(sent.SelectMany(m => m.ToArray()).ToArray());
        await pipe.Writer.CompleteAsync();
        var counting = new CountingPipeReader(pipe.Reader);
        var reader = new PgPipeMessageReader(counting, PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Authentication });
        var received = new List<IPgMessage>();
        while (await reader.ReadAsync())
        {
            received.Add(reader.Current.ToMessage());
        }

        Assert.Equal(sent.Cast<IPgMessage>(), received);
        Assert.Equal(1, counting.Reads);
    }

    [Fact]
    public Task ReadAsync_BorrowedPath_AllocatesNothingPerMessage() => Allocations.AssertNothingPerMessageAsync(MeasureAsync);

    /// <summary>Reads <paramref name="rows"/> rows from one pipe segment; what the reads allocated.</summary>
    private static async Task<long> MeasureAsync(int rows)
    {
        byte[] bytes = Allocations.DataRows(rows);
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0, minimumSegmentSize: bytes.Length));
        await pipe.Writer.WriteAsync(bytes);
        await pipe.Writer.CompleteAsync();
        var reader = new PgPipeMessageReader(pipe.Reader, PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal });
        long sum = 0;
        long before = GC.GetAllocatedBytesForCurrentThread();
        while (await reader.ReadAsync())
        {
            sum += reader.Current.Body.Length;
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(sum > rows, "the rows were read");
        return allocated;
    }

    /// <summary>A pipe reader that counts its reads.</summary>
    private sealed class CountingPipeReader(PipeReader inner) : PipeReader
    {
        public int Reads { get; private set; }

        public override void AdvanceTo(SequencePosition consumed) => inner.AdvanceTo(consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined) => inner.AdvanceTo(consumed, examined);

        public override void CancelPendingRead() => inner.CancelPendingRead();

        public override void Complete(Exception? exception = null) => inner.Complete(exception);

        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
        {
            Reads++;
            return inner.ReadAsync(cancellationToken);
        }

        public override bool TryRead(out ReadResult result) => inner.TryRead(out result);
    }
}
