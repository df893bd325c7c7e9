using System.IO.Pipelines;
using PgSpec.Protocol;

namespace PgSpec.Protocol.Tests;

/// <summary>
/// A decode context that throws while a message is read: the message is not consumed, and reading
/// again reads it, whether it was the first message of a pipe read or one held after another.
/// </summary>
public class PipeReaderContextFailureTests
{
    private static readonly byte[] s_ready = new ReadyForQuery(TransactionStatus.Idle).ToArray();
    private static readonly byte[] s_complete = new CommandComplete("SELECT 1").ToArray();

    /// <summary>Throws once, on the first CommandComplete it is told of.</summary>
    private sealed class RefusingContext : DecodeContext
    {
        private bool _refused;

        public override void ObserveBackend(BackendMessageKind kind, ReadOnlySpan<byte> body)
        {
            if (kind == BackendMessageKind.CommandComplete && !_refused)
            {
                _refused = true;
                throw new InvalidOperationException("the context refuses the message");
            }

            base.ObserveBackend(kind, body);
        }
    }

    /// <summary>
    /// The pipe is left open, as a connection is while the peer waits for an answer: the message is
    /// whole in what the pipe already holds, so reading it again must not wait for more bytes.
    /// </summary>
    [Theory]
    [InlineData(false, 0)] // the refused message is the first of a pipe read
    [InlineData(true, 0)] // it is held after another message of the same read, taken by ReadAsync
    [InlineData(true, 1)] // the same, taken by TryRead()
    [InlineData(true, 2)] // the same, taken by TryRead(out message)
    public async Task ContextThrows_ReadingAgain_ReadsTheSameMessageWithoutNewBytes(bool afterAnother, int how)
    {
        bool tryRead = how != 0;
        var pipe = new Pipe();
        var reader = new PgPipeMessageReader(pipe.Reader, PgDirection.Backend, new RefusingContext { Phase = PgSessionPhase.Normal });
        await pipe.Writer.WriteAsync(afterAnother ? (byte[])[.. s_ready, .. s_complete, .. s_ready] : (byte[])[.. s_complete, .. s_ready]);
        if (afterAnother)
        {
            Assert.True(await reader.ReadAsync());
            Assert.Equal(BackendMessageKind.ReadyForQuery, reader.Current.BackendKind);
        }

        long position = reader.Reader.Position;
        if (tryRead)
        {
            Assert.Throws<InvalidOperationException>(() => how == 1 ? reader.TryRead() : reader.TryRead(out _));
        }
        else
        {
            await Assert.ThrowsAsync<InvalidOperationException>(async () => await reader.ReadAsync());
        }

        Assert.Equal(position, reader.Reader.Position);

        // Bounded, so that a reader that waits for bytes that never come fails instead of hanging.
        using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        Exception? waited = await Record.ExceptionAsync(async () => Assert.True(await reader.ReadAsync(bound.Token)));
        Assert.True(waited is null, "reading again waited for bytes the pipe already held: " + waited);
        Assert.Equal(new CommandComplete("SELECT 1"), reader.Current.ToMessage());
        Assert.Equal(position, reader.Current.Offset);
        Assert.True(await reader.ReadAsync(bound.Token));
        Assert.Equal(BackendMessageKind.ReadyForQuery, reader.Current.BackendKind);
    }
}
