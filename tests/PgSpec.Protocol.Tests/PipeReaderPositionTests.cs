using System.Buffers;
using System.IO.Pipelines;
using PgSpec.Protocol;
using PgSpec.Protocol.Tests.Support;

namespace PgSpec.Protocol.Tests;

/// <summary>
/// Where <see cref="PgPipeMessageReader"/> advances its pipe, and what it reads, over bytes that arrive
/// cut at random (empty segments, messages over many segments, memory that is not an array's),
/// malformed or not: the pipe is advanced to exactly the messages taken, never past them and never
/// short of them, everything held is examined before waiting, and the messages, bodies and errors
/// are those of <see cref="PgMessageReader"/> over the whole stream at once.
/// </summary>
public class PipeReaderPositionTests
{
    private static readonly byte[][] s_messages =
    [
        .. PipeReaderTests.Conversation().Select(m => m.ToArray()),
        new DataRow([(ReadOnlyMemory<byte>?)new byte[700], null]).ToArray(),
        new BindComplete().ToArray(),
    ];

    [Fact]
    public async Task RandomStreams_AdvancedExactlyToTheMessagesTaken_AndReadAsFromOneSpan()
    {
        var outcomes = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int seed = 0; seed < 1500; seed++)
        {
            var random = new Random(seed);
            byte[] stream = RandomStream(random);
            List<string> expected = ReadAtOnce(stream);

            int[] cuts = [.. Enumerable.Range(0, random.Next(0, 40)).Select(_ => random.Next(0, stream.Length + 1))];
            var input = new RevealingPipeReader(Segments.Split(stream, cuts), random);
            var reader = new PgPipeMessageReader(input, PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Authentication });
            input.Reader = reader;
            List<string> actual = await ReadAllAsync(reader, random);

            Assert.True(expected.SequenceEqual(actual), $"seed {seed}:\n  {string.Join("\n  ", expected)}\n--\n  {string.Join("\n  ", actual)}");
            outcomes[actual[^1].Split(' ')[0]] = outcomes.GetValueOrDefault(actual[^1].Split(' ')[0]) + 1;
        }

        // Every ending was met, often.
        Assert.All(["end", "closed", "malformed"], ending => Assert.True(outcomes.GetValueOrDefault(ending) > 100, string.Join(", ", outcomes)));
    }

    [Fact]
    public async Task MemoryNotAnArrays_MessagesOverManySegments_AreReadExactlyAsSent()
    {
        byte[] stream = [.. Enumerable.Range(0, 10).SelectMany(_ => s_messages).SelectMany(m => m)];
        List<string> expected = ReadAtOnce(stream);
        for (int seed = 0; seed < 100; seed++)
        {
            var random = new Random(seed);
            var pipe = new Pipe(new PipeOptions(pool: new UnmanagedLikePool(), pauseWriterThreshold: 0, minimumSegmentSize: random.Next(16, 300)));
            for (int at = 0; at < stream.Length;)
            {
                Span<byte> span = pipe.Writer.GetSpan(random.Next(4) == 0 ? 4000 : 1);
                int part = Math.Min(Math.Min(stream.Length - at, random.Next(1, 300)), span.Length);
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
            Assert.Equal(expected, await ReadAllAsync(reader, random));
        }
    }

    /// <summary>Messages of a conversation, now and then a byte changed or the last bytes missing.</summary>
    private static byte[] RandomStream(Random random)
    {
        var bytes = new List<byte>();
        for (int i = random.Next(1, 12); i > 0; i--)
        {
            byte[] message = (byte[])s_messages[random.Next(s_messages.Length)].Clone();
            if (random.Next(8) == 0)
            {
                message[random.Next(message.Length)] = (byte)random.Next(256);
            }

            bytes.AddRange(message);
        }

        if (random.Next(3) == 0)
        {
            bytes.RemoveRange(bytes.Count - random.Next(1, 4), 1);
        }

        return [.. bytes];
    }

    /// <summary>What <see cref="PgMessageReader"/> reads from the whole stream in one span.</summary>
    private static List<string> ReadAtOnce(byte[] stream)
    {
        var reader = new PgMessageReader(PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Authentication });
        var read = new List<string>();
        for (int at = 0; ; )
        {
            switch (reader.TryRead(stream.AsSpan(at), out int consumed, out PgReceivedMessage message, out PgDecodeError error))
            {
                case PgReadStatus.Message:
                    read.Add($"{message.Offset} {Convert.ToHexString(stream.AsSpan(at, consumed))}");
                    at += consumed;
                    continue;
                case PgReadStatus.Malformed:
                    read.Add($"malformed {error.MessageName}|{error.Field}|{error.Offset}|{error.Reason}");
                    return read;
                default:
                    read.Add(at == stream.Length ? "end" : $"closed {reader.Position + stream.Length - at}");
                    return read;
            }
        }
    }

    /// <summary>
    /// Sometimes nothing (the caller goes to ReadAsync), sometimes TryRead(), sometimes TryRead(out
    /// message), whose message must be Current.
    /// </summary>
    private static bool TryReadEitherWay(PgPipeMessageReader reader, Random random)
    {
        switch (random.Next(3))
        {
            case 0:
                return false;
            case 1:
                return reader.TryRead();
            default:
                if (!reader.TryRead(out PgReceivedMessage message))
                {
                    return false;
                }

                PgReceivedMessage current = reader.Current;
                Assert.Equal(current.Body.ToArray(), message.Body.ToArray());
                Assert.Equal((current.Offset, current.Length, current.BackendKind, current.IsValidated), (message.Offset, message.Length, message.BackendKind, message.IsValidated));
                return true;
        }
    }

    /// <summary>What the pipe reader reads, TryRead and ReadAsync mixed; its raw bytes, body and Current agree.</summary>
    private static async Task<List<string>> ReadAllAsync(PgPipeMessageReader reader, Random random)
    {
        var read = new List<string>();
        try
        {
            while (TryReadEitherWay(reader, random) || await reader.ReadAsync())
            {
                byte[] raw = reader.CurrentRaw.ToArray();
                Assert.Equal(raw.AsSpan(5).ToArray(), reader.CurrentBody.ToArray());
                Assert.Equal(raw.AsSpan(5).ToArray(), reader.Current.Body.ToArray());
                Assert.Equal(raw.Length - 1, reader.Current.Length);
                read.Add($"{reader.Current.Offset} {Convert.ToHexString(raw)}");
            }

            read.Add("end");
        }
        catch (PgProtocolException e) when (e.Reason.Contains("closed inside a message", StringComparison.Ordinal))
        {
            read.Add($"closed {e.Offset}");
        }
        catch (PgProtocolException e)
        {
            read.Add($"malformed {e.MessageName}|{e.Field}|{e.Offset}|{e.Reason}");
        }

        return read;
    }

    /// <summary>
    /// Hands out a fixed sequence a little more at each read, as bytes arrive, and checks every
    /// AdvanceTo: consumed is where the reader's next message starts (every message taken, none
    /// lost) unless the stream has ended, examined is at least consumed and within the buffer.
    /// </summary>
    private sealed class RevealingPipeReader(ReadOnlySequence<byte> all, Random random) : PipeReader
    {
        private SequencePosition _consumed = all.Start;
        private long _consumedOffset;
        private long _revealed;
        private long _lastEnd = -1;
        private bool _examinedAll = true;

        public PgPipeMessageReader? Reader { get; set; }

        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
        {
            Assert.True(_lastEnd < 0, "read again before advancing");

            // A reader that examined everything waits for more: reveal at least one more byte, if any.
            long more = random.Next(0, 3) == 0 ? all.Length : random.Next(0, 200);
            _revealed = Math.Min(all.Length, Math.Max(_revealed + more, _examinedAll ? _revealed + 1 : _revealed));
            _lastEnd = _revealed;
            ReadOnlySequence<byte> buffer = all.Slice(_consumed, all.GetPosition(_revealed));
            return new ValueTask<ReadResult>(new ReadResult(buffer, isCanceled: false, isCompleted: _revealed == all.Length));
        }

        public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
        {
            Assert.True(_lastEnd >= 0, "advanced without a read");
            long consumedAt = all.Slice(all.Start, consumed).Length;
            long examinedAt = all.Slice(all.Start, examined).Length;
            Assert.InRange(consumedAt, _consumedOffset, _lastEnd);
            Assert.InRange(examinedAt, consumedAt, _lastEnd);
            if (!(_lastEnd == all.Length && consumedAt == _lastEnd))
            {
                // (A stream that ended is let go of whole, a message cut short by its end with it.)
                Assert.Equal(Reader!.Reader.Position, consumedAt);
            }

            _examinedAll = examinedAt == _lastEnd;
            _consumed = consumed;
            _consumedOffset = consumedAt;
            _lastEnd = -1;
        }

        public override bool TryRead(out ReadResult result) => throw new NotSupportedException();

        public override void CancelPendingRead() => throw new NotSupportedException();

        public override void Complete(Exception? exception = null)
        {
        }
    }

    /// <summary>A pool of memory that is not an array's (<see cref="System.Runtime.InteropServices.MemoryMarshal.TryGetArray{T}"/> says no).</summary>
    private sealed class UnmanagedLikePool : MemoryPool<byte>
    {
        public override int MaxBufferSize => 4096;

        public override IMemoryOwner<byte> Rent(int minBufferSize = -1) => new Manager(Math.Max(minBufferSize, 16));

        protected override void Dispose(bool disposing)
        {
        }

        private sealed class Manager(int size) : MemoryManager<byte>
        {
            private byte[]? _bytes = new byte[size];

            public override Span<byte> GetSpan() => _bytes ?? throw new ObjectDisposedException(nameof(Manager));

            public override MemoryHandle Pin(int elementIndex = 0) => throw new NotSupportedException();

            public override void Unpin()
            {
            }

            protected override void Dispose(bool disposing)
            {
                // Returned memory is poisoned, so a body read after its segment went back shows.
                if (_bytes is not null)
                {
                    Array.Fill(_bytes, (byte)0xEE);
                    _bytes = null;
                }
            }
        }
    }
}
