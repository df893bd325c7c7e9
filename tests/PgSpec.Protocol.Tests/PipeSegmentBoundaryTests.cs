using System.Buffers;
using System.IO.Pipelines;
using PgSpec.Protocol;

namespace PgSpec.Protocol.Tests;

/// <summary>Messages that end exactly where a pipe segment ends: their bodies are their own, in place.</summary>
public class PipeSegmentBoundaryTests
{
    /// <summary>Writes each message into the pipe; a message flagged "newSegment" starts a new pipe segment, so the one before it ends exactly at a segment's end.</summary>
    private static async Task<Pipe> PipeWithAsync(params (byte[] Bytes, bool NewSegment)[] parts)
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0, minimumSegmentSize: 4096));
        foreach ((byte[] bytes, bool newSegment) in parts)
        {
            // A size hint over what is left in the current segment makes the pipe open a new one.
            Span<byte> span = pipe.Writer.GetSpan(newSegment ? 8192 : bytes.Length);
            bytes.CopyTo(span);
            pipe.Writer.Advance(bytes.Length);
        }

        await pipe.Writer.FlushAsync();
        await pipe.Writer.CompleteAsync();
        return pipe;
    }

    [Fact]
    public async Task MessageEndingExactlyAtTheFirstSegmentsEnd_HasItsOwnBody()
    {
        byte[] a = new CommandComplete("SELECT 1").ToArray();
        byte[] b = new ReadyForQuery(TransactionStatus.Idle).ToArray();
        Pipe pipe = await PipeWithAsync((a, false), (b, true));
        Assert.True(pipe.Reader.TryRead(out ReadResult peek));
        Assert.False(peek.Buffer.IsSingleSegment);
        Assert.Equal(a.Length, peek.Buffer.FirstSpan.Length);
        pipe.Reader.AdvanceTo(peek.Buffer.Start);

        var reader = new PgPipeMessageReader(pipe.Reader, PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal });
        Assert.True(await reader.ReadAsync());
        Assert.Equal(new CommandComplete("SELECT 1"), reader.Current.ToMessage());
        Assert.Equal(a.AsMemory(5).ToArray(), reader.CurrentBody.ToArray());
    }

    [Fact]
    public async Task MessageEndingExactlyAtASegmentsEnd_AfterASplitOne_IsNotTheSplitOnesCopy()
    {
        // 1: CommandComplete "SELECT 7" split across segments (copied into the scratch buffer);
        // 2: CommandComplete "SELECT 8" whole in the next segment, ending exactly at its end.
        byte[] first = new CommandComplete("SELECT 7").ToArray();
        byte[] second = new CommandComplete("SELECT 8").ToArray();
        byte[] third = new ReadyForQuery(TransactionStatus.Idle).ToArray();
        Pipe pipe = await PipeWithAsync((first[..7], false), ([.. first[7..], .. second], true), (third, true));

        var reader = new PgPipeMessageReader(pipe.Reader, PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal });
        Assert.True(await reader.ReadAsync());
        Assert.Equal(new CommandComplete("SELECT 7"), reader.Current.ToMessage());
        Assert.True(reader.TryRead());
        Assert.Equal(new CommandComplete("SELECT 8"), reader.Current.ToMessage());
        Assert.Equal(second.AsMemory(5).ToArray(), reader.CurrentBody.ToArray());
    }

    [Fact]
    public async Task ManyConversationsCutAtRandom_AreReadExactlyAsSent()
    {
        // Every cut: within a message, at its end, inside a header; several messages per segment or
        // one message over several; TryRead and ReadAsync mixed. Seeded, so a failure is repeatable.
        byte[][] messages = [.. Enumerable.Range(0, 40).SelectMany(i => PipeReaderTests.Conversation().Select(m => m.ToArray()))];
        byte[] stream = [.. messages.SelectMany(m => m)];
        for (int seed = 0; seed < 200; seed++)
        {
            var random = new Random(seed);
            var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0, minimumSegmentSize: 4096));
            for (int at = 0; at < stream.Length;)
            {
                int part = Math.Min(stream.Length - at, random.Next(1, 300));
                Span<byte> span = pipe.Writer.GetSpan(random.Next(4) == 0 ? 8192 : part);
                stream.AsSpan(at, part).CopyTo(span);
                pipe.Writer.Advance(part);
                at += part;
                if (random.Next(3) == 0)
                {
                    await pipe.Writer.FlushAsync();
                }
            }

            await pipe.Writer.CompleteAsync();
            var reader = new PgPipeMessageReader(pipe.Reader, PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Authentication });
            int read = 0;
            while (random.Next(2) == 0 && reader.TryRead() || await reader.ReadAsync())
            {
                Assert.True(read < messages.Length, $"seed {seed}: more messages than were sent");
                Assert.Equal(messages[read], reader.CurrentRaw.ToArray());
                Assert.Equal(messages[read].AsSpan(5).ToArray(), reader.Current.Body.ToArray());
                Assert.Equal(messages[read].AsSpan(5).ToArray(), reader.CurrentBody.ToArray());
                read++;
            }

            Assert.Equal(messages.Length, read);
        }
    }

    [Fact]
    public void SequenceOverload_MessageEndingAtTheFirstSegmentsEnd_LeavesTheRestAtTheNextMessage()
    {
        byte[] a = new CommandComplete("SELECT 1").ToArray();
        byte[] b = new ReadyForQuery(TransactionStatus.Idle).ToArray();
        var s1 = new Seg(a);
        Seg s2 = s1.Append(b);
        var seq = new ReadOnlySequence<byte>(s1, 0, s2, b.Length);
        var reader = new PgMessageReader(PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal });
        Assert.Equal(PgReadStatus.Message, reader.TryRead(ref seq, out PgReceivedMessage m, out _));
        Assert.Equal(a.AsSpan(5).ToArray(), m.Body.ToArray());
        Assert.Equal(b.Length, seq.Length);
    }

    private sealed class Seg : ReadOnlySequenceSegment<byte>
    {
        public Seg(byte[] bytes) => Memory = bytes;

        public Seg Append(byte[] bytes)
        {
            var next = new Seg(bytes) { RunningIndex = RunningIndex + Memory.Length };
            Next = next;
            return next;
        }
    }
}
