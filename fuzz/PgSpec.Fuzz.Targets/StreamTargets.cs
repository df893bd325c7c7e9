using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using PgSpec.Protocol;

namespace PgSpec.Fuzz;

/// <summary>What reading a stream gave: each message, then how it ended.</summary>
internal sealed class StreamOutcome
{
    public List<(int Kind, int TypeByte, long Offset, byte[] Raw)> Messages { get; } = [];

    /// <summary>The error the stream ended with, if it was malformed.</summary>
    public PgDecodeError? Error { get; set; }

    /// <summary>Bytes left after the last whole message when the stream ended inside one.</summary>
    public long Pending { get; set; }

    /// <summary>The stream offset after the last whole message.</summary>
    public long Position { get; set; }

    public override string ToString()
        => $"{Messages.Count} messages, then {(Error is { } e ? "error " + e : Pending > 0 ? Pending + " bytes of an unfinished message" : "the end")}";
}

/// <summary>The decode contexts the stream targets start with.</summary>
public static class StreamContexts
{
    /// <summary>
    /// A frontend's stream starts in the Startup phase; a backend's once the frontend's StartupMessage
    /// has moved the connection on (the spec's 'enters').
    /// </summary>
    public static DecodeContext Create(bool backend, bool protocol32) => new()
    {
        ProtocolVersion = protocol32 ? PgProtocolVersion.V3_2 : PgProtocolVersion.V3_0,
        Phase = backend ? FrontendMessages.NextPhase(FrontendMessageKind.StartupMessage, PgSessionPhase.Startup) : PgSessionPhase.Startup,
    };

    /// <summary>Checks one message read from a stream: it decodes to an owned message that re-encodes to its raw bytes, and it traces.</summary>
    public static void CheckMessage(string what, PgReceivedMessage message, ReadOnlySpan<byte> raw, PgProtocolVersion version, DecodeContext context)
    {
        if (message.FrameKind == PgFrameKind.EncryptionAnswer)
        {
            return;
        }

        var snapshot = new DecodeContext { ProtocolVersion = version, Phase = context.Phase };
        IPgMessage owned;
        try
        {
            owned = message.ToMessage(snapshot);
        }
        catch (PgProtocolException e) when (Oracle.IsEncodingError(e.Error))
        {
            // The reader takes Strings in any encoding; the owned form needs UTF-8.
            message.Trace(new PgTraceWriter(Stream.Null), context);
            return;
        }
        catch (PgProtocolException e)
        {
            throw new FuzzFindingException($"{what}: the reader accepted {message.Name} at offset {message.Offset}, but decoding it fails: {e.Error}", e);
        }

        Oracle.CheckReencodes($"{what} at offset {message.Offset}", owned, raw, version, context.Limits);
        CheckValueList(what, message, owned);
        message.Trace(new PgTraceWriter(Stream.Null), context);
    }

    /// <summary>
    /// A message with a value list, as the reader validated it: its view reads the values from the
    /// places the reader recorded (or took from the last message of the same layout, or from its
    /// template), and must give the owned decode's values, by enumeration and by index.
    /// </summary>
    private static void CheckValueList(string what, PgReceivedMessage message, IPgMessage owned)
    {
        if (!message.IsValidated)
        {
            return;
        }

        switch (owned)
        {
            case DataRow row:
                CheckValues(what, message, DataRow.View.Read(message).Columns, row.Columns);
                break;
            case Bind bind:
                CheckValues(what, message, Bind.View.Read(message).Parameters, bind.Parameters);
                break;
            case FunctionCall call:
                CheckValues(what, message, FunctionCall.View.Read(message).Arguments, call.Arguments);
                break;
        }
    }

    private static void CheckValues(string what, PgReceivedMessage message, PgValueList view, PgValueArray expected)
    {
        if (view.Count != expected.Length)
        {
            throw new FuzzFindingException($"{what}: {message.Name} at offset {message.Offset}: its view has {view.Count} values, the owned message {expected.Length}");
        }

        int i = 0;
        foreach (PgValue value in view)
        {
            CheckValue(what, message, i, value, expected[i]);
            CheckValue(what, message, i, view[i], expected[i]);
            i++;
        }

        if (i != expected.Length)
        {
            throw new FuzzFindingException($"{what}: {message.Name} at offset {message.Offset}: its view enumerates {i} values, the owned message has {expected.Length}");
        }
    }

    private static void CheckValue(string what, PgReceivedMessage message, int index, PgValue value, ReadOnlyMemory<byte>? expected)
    {
        if (value.IsNull != (expected is null) || (expected is { } bytes && !value.Bytes.SequenceEqual(bytes.Span)))
        {
            throw new FuzzFindingException($"{what}: {message.Name} at offset {message.Offset}: its view's value {index} differs from the owned message's");
        }
    }
}

/// <summary>
/// The framer and the message reader over a whole stream of one direction, as a peer sends it:
/// startup packets then typed messages from a frontend, typed messages from a backend.
/// </summary>
public sealed class StreamTarget : FuzzTarget
{
    private readonly bool _backend;
    private readonly bool _protocol32;

    /// <summary>Creates the target for one direction and protocol version.</summary>
    public StreamTarget(bool backend, bool protocol32)
    {
        _backend = backend;
        _protocol32 = protocol32;
    }

    /// <inheritdoc/>
    public override string Name => $"stream-{(_backend ? "backend" : "frontend")}-3.{(_protocol32 ? 2 : 0)}";

    /// <inheritdoc/>
    public override string Description => _backend
        ? $"everything a backend sends after the startup packet, under protocol 3.{(_protocol32 ? 2 : 0)}. Input: the bytes of the stream."
        : $"everything a frontend sends from its first packet on, the reader set for protocol 3.{(_protocol32 ? 2 : 0)} until the StartupMessage asks for a version. Input: the bytes of the stream.";

    /// <inheritdoc/>
    protected override void Warm()
    {
        Oracle.Initialise();
        Execute(_backend ? [(byte)'Z', 0, 0, 0, 5, (byte)'I'] : [0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x2F]);
    }

    /// <inheritdoc/>
    protected override void Execute(ReadOnlySpan<byte> input)
    {
        byte[] data = input.ToArray();
        StreamOutcome outcome = Read(Name, _backend, _protocol32, data, check: true, out long allocated);
        Oracle.CheckAllocation($"{Name}: reading {outcome}", allocated, Oracle.StreamBudget);
    }

    /// <summary>Reads a whole stream from one segment, checking each message; returns what it gave and the bytes the reader allocated.</summary>
    internal static StreamOutcome Read(string what, bool backend, bool protocol32, byte[] data, bool check, out long allocated)
    {
        DecodeContext context = StreamContexts.Create(backend, protocol32);
        var reader = new PgMessageReader(backend ? PgDirection.Backend : PgDirection.Frontend, context);
        var buffer = new ReadOnlySequence<byte>(data);
        var outcome = new StreamOutcome();
        allocated = 0;
        while (true)
        {
            PgProtocolVersion version = context.ProtocolVersion;
            long position = reader.Position;
            long remaining = buffer.Length;
            long before = Oracle.Allocated();
            PgReadStatus status = reader.TryRead(ref buffer, out PgReceivedMessage message, out PgDecodeError error);
            allocated += Oracle.Allocated() - before;
            if (status == PgReadStatus.Message)
            {
                long consumed = remaining - buffer.Length;
                if (message.Offset != position || reader.Position != position + consumed || consumed <= 0)
                {
                    throw new FuzzFindingException($"{what}: the reader's position went from {position} to {reader.Position} over a {consumed}-byte message at offset {message.Offset}");
                }

                byte[] raw = data.AsSpan((int)position, (int)consumed).ToArray();
                outcome.Messages.Add((message.Direction == PgDirection.Frontend ? (int)message.FrontendKind : (int)message.BackendKind, message.TypeByte, message.Offset, raw));
                if (check)
                {
                    StreamContexts.CheckMessage(what, message, raw, version, context);
                }

                continue;
            }

            outcome.Position = reader.Position;
            if (buffer.Length != remaining)
            {
                throw new FuzzFindingException($"{what}: the reader consumed bytes without reading a message ({status})");
            }

            if (status == PgReadStatus.Malformed)
            {
                Oracle.CheckError(what, error, position, data.Length);
                outcome.Error = error;
            }
            else
            {
                outcome.Pending = remaining;
            }

            return outcome;
        }
    }
}

/// <summary>
/// The differential target: the same stream read from one segment, from segments split at
/// points the fuzzer chooses (each arriving after the reader asked for more), and through a
/// <see cref="PgPipeMessageReader"/> fed the same chunks, must give the same messages and end
/// the same way.
/// </summary>
public sealed class SegmentationTarget : FuzzTarget
{
    /// <inheritdoc/>
    public override string Name => "segmentation";

    /// <inheritdoc/>
    public override string Description =>
        "one stream read three ways. Input: a mode byte (bit 0: backend, else frontend; bit 1: protocol 3.2), a count N (0-15, the low 4 bits of a byte), "
        + "N big-endian UInt16 split points (taken modulo the stream's length), then the stream.";

    /// <inheritdoc/>
    protected override void Warm()
    {
        Oracle.Initialise();
        Execute([1, 1, 0, 3, (byte)'Z', 0, 0, 0, 5, (byte)'I']);
    }

    /// <inheritdoc/>
    protected override void Execute(ReadOnlySpan<byte> input)
    {
        if (input.Length < 2)
        {
            return;
        }

        bool backend = (input[0] & 1) != 0;
        bool protocol32 = (input[0] & 2) != 0;
        int count = input[1] & 0x0F;
        if (input.Length < 2 + (2 * count))
        {
            return;
        }

        byte[] data = input[(2 + (2 * count))..].ToArray();
        var splits = new SortedSet<int>();
        for (int i = 0; i < count && data.Length > 1; i++)
        {
            int at = BinaryPrimitives.ReadUInt16BigEndian(input.Slice(2 + (2 * i))) % data.Length;
            if (at > 0)
            {
                splits.Add(at);
            }
        }

        string what = $"{Name} ({(backend ? "backend" : "frontend")} 3.{(protocol32 ? 2 : 0)}, splits at {string.Join(",", splits)})";
        StreamOutcome whole = StreamTarget.Read(what, backend, protocol32, data, check: false, out _);
        List<byte[]> chunks = Chunks(data, splits);

        StreamOutcome segmented = ReadSegmented(what, backend, protocol32, data, chunks, out long allocated);
        Compare(what + " from segments", whole, segmented);
        Oracle.CheckAllocation($"{what}: reading from segments", allocated, Oracle.StreamBudget + (4L * data.Length));

        StreamOutcome piped = ReadPiped(backend, protocol32, chunks);
        if (whole.Error is null && whole.Pending > 0)
        {
            // The pipe reader reports a stream that ends inside a message as an error at its end.
            if (piped.Error is not { } e || e.Offset != whole.Position + whole.Pending || piped.Messages.Count != whole.Messages.Count)
            {
                throw new FuzzFindingException($"{what}: through a pipe the stream gave {piped}; from one segment, {whole}");
            }

            piped.Error = null;
            piped.Pending = whole.Pending;
            piped.Position = whole.Position;
        }

        Compare(what + " through a pipe", whole, piped);
    }

    private static List<byte[]> Chunks(byte[] data, SortedSet<int> splits)
    {
        var chunks = new List<byte[]>();
        int start = 0;
        foreach (int at in splits.Append(data.Length))
        {
            if (at > start)
            {
                chunks.Add(data[start..at]);
                start = at;
            }
        }

        return chunks;
    }

    private static void Compare(string what, StreamOutcome expected, StreamOutcome actual)
    {
        bool same = expected.Messages.Count == actual.Messages.Count
            && expected.Error == actual.Error
            && expected.Pending == actual.Pending
            && expected.Position == actual.Position;
        for (int i = 0; same && i < expected.Messages.Count; i++)
        {
            (int kind, int type, long offset, byte[] raw) = expected.Messages[i];
            (int kind2, int type2, long offset2, byte[] raw2) = actual.Messages[i];
            same = kind == kind2 && type == type2 && offset == offset2 && raw.AsSpan().SequenceEqual(raw2);
        }

        if (!same)
        {
            throw new FuzzFindingException($"{what}: gave {actual}; from one segment, {expected}");
        }
    }

    /// <summary>A read-only segment of a multi-segment sequence.</summary>
    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, Segment? previous)
        {
            Memory = memory;
            if (previous is not null)
            {
                RunningIndex = previous.RunningIndex + previous.Memory.Length;
                previous.Next = this;
            }
        }
    }

    /// <summary>Reads with more of the stream visible each time the reader needs more, every chunk its own segment.</summary>
    private static StreamOutcome ReadSegmented(string what, bool backend, bool protocol32, byte[] data, List<byte[]> chunks, out long allocated)
    {
        allocated = 0;
        var outcome = new StreamOutcome();
        if (chunks.Count == 0)
        {
            return outcome;
        }

        Segment first = new(chunks[0], null);
        Segment last = first;
        var ends = new List<Segment> { first };
        for (int i = 1; i < chunks.Count; i++)
        {
            last = new Segment(chunks[i], last);
            ends.Add(last);
        }

        var all = new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
        DecodeContext context = StreamContexts.Create(backend, protocol32);
        var reader = new PgMessageReader(backend ? PgDirection.Backend : PgDirection.Frontend, context);
        int visible = 0;
        long consumed = 0;
        while (true)
        {
            Segment end = ends[visible];
            long visibleEnd = end.RunningIndex + end.Memory.Length;
            ReadOnlySequence<byte> buffer = all.Slice(consumed, visibleEnd - consumed);
            long remaining = buffer.Length;
            long before = Oracle.Allocated();
            PgReadStatus status = reader.TryRead(ref buffer, out PgReceivedMessage message, out PgDecodeError error);
            allocated += Oracle.Allocated() - before;
            switch (status)
            {
                case PgReadStatus.Message:
                    long length = remaining - buffer.Length;
                    outcome.Messages.Add((message.Direction == PgDirection.Frontend ? (int)message.FrontendKind : (int)message.BackendKind, message.TypeByte, message.Offset, data.AsSpan((int)consumed, (int)length).ToArray()));
                    if (!message.Body.SequenceEqual(data.AsSpan((int)(consumed + length - message.Body.Length), message.Body.Length)))
                    {
                        throw new FuzzFindingException($"{what}: the body of the message at offset {message.Offset} is not the bytes it was read from");
                    }

                    consumed += length;
                    break;
                case PgReadStatus.Incomplete when visible + 1 < ends.Count:
                    visible++;
                    break;
                case PgReadStatus.Incomplete:
                    outcome.Position = reader.Position;
                    outcome.Pending = remaining;
                    return outcome;
                default:
                    outcome.Position = reader.Position;
                    outcome.Error = error;
                    return outcome;
            }
        }
    }

    /// <summary>A stream that hands out one chunk per read, synchronously.</summary>
    private sealed class ChunkedStream(List<byte[]> chunks) : Stream
    {
        private int _chunk;
        private int _offset;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (_chunk >= chunks.Count || buffer.Length == 0)
            {
                return 0;
            }

            byte[] chunk = chunks[_chunk];
            int n = Math.Min(buffer.Length, chunk.Length - _offset);
            chunk.AsSpan(_offset, n).CopyTo(buffer);
            _offset += n;
            if (_offset == chunk.Length)
            {
                _chunk++;
                _offset = 0;
            }

            return n;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
            => ValueTask.FromResult(Read(buffer.Span));

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
            => Task.FromResult(Read(buffer.AsSpan(offset, count)));

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    /// <summary>Reads through a <see cref="PgPipeMessageReader"/> over a stream that delivers the chunks one read at a time.</summary>
    private static StreamOutcome ReadPiped(bool backend, bool protocol32, List<byte[]> chunks)
    {
        var outcome = new StreamOutcome();
        PipeReader pipe = PipeReader.Create(new ChunkedStream(chunks), new StreamPipeReaderOptions(bufferSize: 512, minimumReadSize: 128));
        DecodeContext context = StreamContexts.Create(backend, protocol32);
        var reader = new PgPipeMessageReader(pipe, backend ? PgDirection.Backend : PgDirection.Frontend, context);
        try
        {
            while (true)
            {
                ValueTask<bool> read = reader.ReadAsync();
                if (!read.IsCompleted)
                {
                    throw new FuzzFindingException("reading from a stream that always has data did not complete at once");
                }

                if (!read.Result)
                {
                    break;
                }

                PgReceivedMessage message = reader.Current;
                outcome.Messages.Add((message.Direction == PgDirection.Frontend ? (int)message.FrontendKind : (int)message.BackendKind, message.TypeByte, message.Offset, reader.CurrentRaw.ToArray()));
            }
        }
        catch (PgProtocolException e)
        {
            outcome.Error = e.Error;
        }

        outcome.Position = reader.Reader.Position;
        return outcome;
    }
}
