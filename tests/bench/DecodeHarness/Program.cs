// PgSpec's side of decode-compare.sh: decodes the 64 MiB DataRow stream of the BenchmarkDotNet
// suite (tests/PgSpec.Benchmarks/DataRowStream.cs: 528,416 messages of 127 bytes, ten non-NULL
// 8-byte columns) one way per run, so that the Go and Node peers decode the very same bytes.
//
// Usage:
//   DecodeHarness --write FILE
//       writes the stream to FILE and prints what every decoder must find in it, computed from the
//       rows the stream was encoded from (not by decoding it): the message and value counts and
//       the checksums below.
//   DecodeHarness --write-varied FILE
//       the same for a stream of as many messages of the same size whose ten columns are 4 to 12
//       bytes long, in a layout that changes from each row to the next
//       (DataRowStream.CreateVariedRows: text values, whose lengths vary).
//   DecodeHarness --path NAME [--warmup N] [--warmup-seconds S] [--pipe-buffer BYTES] FILE
//       reads FILE into memory and warms up: short passes over the first 8,192 messages for S
//       seconds (1; at least 100 of them), so that the method of a pass reaches the JIT's last tier
//       by its calls (with a profile of the whole run), not only its loop by on-stack replacement
//       (compiled early, with a partial profile: slower and unsteady), then N whole passes (2).
//       Then one more whole pass, timed; it prints one line of key=value pairs: path, messages,
//       values, checksum, seconds, mbps (10^6 bytes a second) and alloc (bytes allocated per
//       message in the timed pass).
//
// Paths (the four decoding ones check that every message is a DataRow and that the stream ends
// between messages):
//   borrowed   PgMessageReader.TryRead over the whole buffer as one span (validating: the
//              frame, the length limit, the body as strictly as the owned decode), then
//              DataRow.View.Read(message), which trusts the reader's validation; every value touched.
//   sequence   the same through TryRead's ReadOnlySequence overload, over one segment.
//   pipe       the same through PgPipeMessageReader over PipeReader.Create(MemoryStream), as
//              PgSpec.Client's session reads its socket (PipeReader.Create(NetworkStream) with
//              64 KiB buffers, reads of 16 KiB at least): each pipe read copies the next bytes from
//              the stream into the pipe's buffers on the reading thread, as a socket read does when
//              the data is already there, and some messages straddle two buffers (--pipe-buffer
//              sets the buffer size; 4096 is StreamPipeReaderOptions' default). Messages already
//              held are taken with TryRead(out message), the pipe awaited only for more bytes.
//   pipe-inplace  the same reader over a PipeReader of the stream in place, in segments of the
//              pipe buffer's size, whose every read gives one segment more (as a socket's pipe
//              gives what has arrived; PipeReader.Create(ReadOnlySequence) would give it all at
//              once): what PgPipeMessageReader itself costs (a pipe read per segment, messages
//              straddling two segments), without the transport's copy into the pipe's buffers,
//              which the one-span path does not make either.
//   owned      the borrowed path's validating reader over the one span, then an owned DataRow
//              of each message (DataRow.View.ToMessage: a copy of the values with the places the
//              reader's check recorded, in one PgValueArray array; no second walk); every value
//              touched through PgValueArray.GetValue.
//   owned-decode  a framing reader (Validate = false), then DataRow.TryDecode on each body: the
//              owned decode of a body alone, which checks it (one walk, as strict as the reader's)
//              and builds the same DataRow; every value touched the same way.
//   owned-floor  the least that any owned row costs, with nothing checked and nothing read: a
//              framing reader (Validate = false), then for each body one new array the size of an
//              owned DataRow's (the values, then an offset for each) with the values copied into
//              it, and one object of DataRow's size holding it; the values are not touched.
//   frame      framing and naming only (Validate = false); the bodies are not read.
//   memcpy     copies the whole buffer into another one (Span.CopyTo): the ceiling.
//
// Touching a value: its length and first byte are added to the checksum (kind "values"), so the
// sum proves that each decoder saw every value's bytes where the others did. The framing path sums
// body lengths (kind "bodies") and counts no values, as does owned-floor; memcpy checks its copy against the source after the timed pass.
// The "text" checksum of --write is the one the Node peer can compute (pg-protocol only gives
// values as strings, decoded from UTF-8): UTF-16 length and first code unit of each value's string.
using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Text;
using PgSpec.Benchmarks;
using PgSpec.Protocol;

try
{
    return Harness.Run(args);
}
catch (Exception e) when (e is ArgumentException or IOException or InvalidOperationException or PgProtocolException)
{
    Console.Error.WriteLine($"DecodeHarness: {e.Message}");
    return 1;
}

/// <summary>What a decoder found: messages, values (-1: not counted) and the checksum of what it touched.</summary>
internal readonly record struct Tally(long Messages, long Values, long Checksum);

/// <summary>How a process warms up: short passes for <see cref="Seconds"/>, then <see cref="Passes"/> whole ones.</summary>
internal readonly record struct WarmUp(int Passes, double Seconds);

/// <summary>The harness's commands and decode paths.</summary>
internal static class Harness
{
    /// <summary>The messages of a short warm-up pass (about 1 MiB).</summary>
    private const int ShortPassMessages = 8192;

    /// <summary>Short warm-up passes at least, well over the JIT's 30 calls before a method is compiled again.</summary>
    private const int MinShortPasses = 100;

    private const string Usage = "usage: DecodeHarness --write FILE | --write-varied FILE | --path borrowed|sequence|pipe|pipe-inplace|owned|owned-decode|owned-floor|frame|memcpy [--warmup N] [--warmup-seconds S] [--pipe-buffer BYTES] FILE";

    /// <summary>Runs one command; the exit status.</summary>
    public static int Run(string[] args)
    {
        if (args.Length == 2 && args[0] is "--write" or "--write-varied")
        {
            Write(args[1], args[0] == "--write-varied" ? DataRowStream.CreateVariedRows() : DataRowStream.CreateRows());
            return 0;
        }

        string? path = null;
        string? file = null;
        int warmup = 2;
        double warmupSeconds = 1;
        int pipeBuffer = 65536;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--path" when i + 1 < args.Length:
                    path = args[++i];
                    break;
                case "--warmup" when i + 1 < args.Length:
                    warmup = int.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture);
                    break;
                case "--warmup-seconds" when i + 1 < args.Length:
                    warmupSeconds = double.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture);
                    break;
                case "--pipe-buffer" when i + 1 < args.Length:
                    pipeBuffer = int.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture);
                    break;
                default:
                    if (file is not null || args[i].StartsWith("--", StringComparison.Ordinal))
                    {
                        throw new ArgumentException(Usage);
                    }

                    file = args[i];
                    break;
            }
        }

        if (path is null || file is null || warmup < 0 || !(warmupSeconds >= 0) || pipeBuffer < 1)
        {
            throw new ArgumentException(Usage);
        }

        byte[] stream = File.ReadAllBytes(file);
        var warm = new WarmUp(warmup, warmupSeconds);
        // Built once, outside the timed pass: a pass reads the first bytes of it.
        ReadOnlySequence<byte> segments = path == "pipe-inplace" ? DataRowStream.MultiSegment(stream, pipeBuffer) : default;
        return path switch
        {
            "borrowed" => Measure(path, stream, warm, allThreads: false, length => BorrowedSpan(stream, length)),
            "sequence" => Measure(path, stream, warm, allThreads: false, length => Borrowed(stream, length)),
            "pipe" => Measure(path, stream, warm, allThreads: true, length => Piped(PipeReader.Create(new MemoryStream(stream, 0, length, writable: false), new StreamPipeReaderOptions(bufferSize: pipeBuffer, minimumReadSize: Math.Min(16384, pipeBuffer))), Context()).AsTask().GetAwaiter().GetResult()),
            "pipe-inplace" => Measure(path, stream, warm, allThreads: true, length => Piped(new SegmentPipeReader(segments.Slice(0, length), pipeBuffer), Context()).AsTask().GetAwaiter().GetResult()),
            "owned" => Measure(path, stream, warm, allThreads: false, length => Owned(stream, length)),
            "owned-decode" => Measure(path, stream, warm, allThreads: false, length => OwnedDecode(stream, length)),
            "owned-floor" => Measure(path, stream, warm, allThreads: false, length => OwnedFloor(stream, length)),
            "frame" => Measure(path, stream, warm, allThreads: false, length => Frame(stream, length)),
            "memcpy" => MeasureCopy(stream, warm),
            _ => throw new ArgumentException(Usage),
        };
    }

    /// <summary>Writes the stream and prints what decoding it must give, from the rows it was encoded from.</summary>
    private static void Write(string file, DataRow[] rows)
    {
        byte[] stream = DataRowStream.CreateStream(rows);
        File.WriteAllBytes(file, stream);

        long values = 0;
        long valueSum = 0;
        long bodySum = 0;
        long textSum = 0;
        for (int i = 0; i < DataRowStream.MessageCount; i++)
        {
            DataRow row = rows[i % rows.Length];
            bodySum += row.Length - 4;
            foreach (ReadOnlyMemory<byte>? column in row.Columns)
            {
                values++;
                if (column is { } value)
                {
                    valueSum += Touch(value.Span);
                    string text = Encoding.UTF8.GetString(value.Span);
                    textSum += text.Length + (text.Length > 0 ? text[0] : 0);
                }
            }
        }

        Console.WriteLine($"reference bytes={stream.Length} messages={DataRowStream.MessageCount} values={values} checksum=values:{valueSum} checksum=bodies:{bodySum} checksum=text:{textSum}");
    }

    /// <summary>Warms up, times one pass, and prints its line.</summary>
    private static int Measure(string path, byte[] stream, WarmUp warmup, bool allThreads, Func<int, Tally> pass)
    {
        int shortLength = Math.Min(stream.Length, ShortPassMessages * DataRowStream.MessageSize);
        long started = Stopwatch.GetTimestamp();
        for (int i = 0; i < MinShortPasses || Stopwatch.GetElapsedTime(started).TotalSeconds < warmup.Seconds; i++)
        {
            pass(shortLength);
        }

        for (int i = 0; i < warmup.Passes; i++)
        {
            pass(stream.Length);
        }

        long allocatedBefore = Allocated(allThreads);
        long start = Stopwatch.GetTimestamp();
        Tally tally = pass(stream.Length);
        TimeSpan elapsed = Stopwatch.GetElapsedTime(start);
        long allocated = Allocated(allThreads) - allocatedBefore;

        string kind = path is "frame" or "owned-floor" ? "bodies" : "values";
        double alloc = tally.Messages == 0 ? 0 : (double)allocated / tally.Messages;
        string values = tally.Values < 0 ? "-" : tally.Values.ToString(System.Globalization.CultureInfo.InvariantCulture);
        Print(path, stream.Length, elapsed, $"messages={tally.Messages} values={values} checksum={kind}:{tally.Checksum}", alloc);
        return 0;
    }

    /// <summary>The ceiling: the whole buffer copied into another (touched beforehand, so no page is faulted in while timed).</summary>
    private static int MeasureCopy(byte[] stream, WarmUp warmup)
    {
        byte[] destination = GC.AllocateUninitializedArray<byte>(stream.Length);
        long started = Stopwatch.GetTimestamp();
        for (int i = 0; i < Math.Max(warmup.Passes, 1) || Stopwatch.GetElapsedTime(started).TotalSeconds < warmup.Seconds; i++)
        {
            stream.AsSpan().CopyTo(destination);
        }

        Array.Clear(destination);
        long allocatedBefore = Allocated(allThreads: false);
        long start = Stopwatch.GetTimestamp();
        stream.AsSpan().CopyTo(destination);
        TimeSpan elapsed = Stopwatch.GetElapsedTime(start);
        long allocated = Allocated(allThreads: false) - allocatedBefore;
        if (!stream.AsSpan().SequenceEqual(destination))
        {
            throw new InvalidOperationException("the copy differs from the source");
        }

        Print("memcpy", stream.Length, elapsed, "messages=- values=- checksum=copy:equal", (double)allocated / DataRowStream.MessageCount);
        return 0;
    }

    private static void Print(string path, long bytes, TimeSpan elapsed, string found, double alloc)
        => Console.WriteLine(FormattableString.Invariant(
            $"path={path} {found} seconds={elapsed.TotalSeconds:F4} mbps={bytes / elapsed.TotalSeconds / 1e6:F1} alloc={alloc:F2}"));

    private static long Allocated(bool allThreads) => allThreads ? GC.GetTotalAllocatedBytes(precise: true) : GC.GetAllocatedBytesForCurrentThread();

    /// <summary>The context of a session past its startup, where DataRow is expected.</summary>
    private static DecodeContext Context() => new() { Phase = PgSessionPhase.Normal };

    /// <summary>Borrowed, one segment: the validating reader, then a view trusting its validation.</summary>
    private static Tally BorrowedSpan(byte[] stream, int length)
    {
        var reader = new PgMessageReader(PgDirection.Backend, Context());
        ReadOnlySpan<byte> buffer = stream.AsSpan(0, length);
        long messages = 0;
        long values = 0;
        long checksum = 0;
        PgReadStatus status;
        PgDecodeError error;
        while ((status = reader.TryRead(buffer, out int consumed, out PgReceivedMessage message, out error)) == PgReadStatus.Message)
        {
            buffer = buffer.Slice(consumed);
            DataRow.View row = DataRow.View.Read(message);
            checksum += TouchAll(row.Columns, ref values);
            messages++;
        }

        CheckEnd(status, error, buffer.Length);
        return new Tally(messages, values, checksum);
    }

    private static Tally Borrowed(byte[] stream, int length)
    {
        var reader = new PgMessageReader(PgDirection.Backend, Context());
        var buffer = new ReadOnlySequence<byte>(stream, 0, length);
        long messages = 0;
        long values = 0;
        long checksum = 0;
        PgReadStatus status;
        PgDecodeError error;
        while ((status = reader.TryRead(ref buffer, out PgReceivedMessage message, out error)) == PgReadStatus.Message)
        {
            DataRow.View row = DataRow.View.Read(message);
            checksum += TouchAll(row.Columns, ref values);
            messages++;
        }

        CheckEnd(status, error, buffer.Length);
        return new Tally(messages, values, checksum);
    }

    /// <summary>Borrowed through a pipe: <see cref="PgPipeMessageReader"/> over the pipe given.</summary>
    private static async ValueTask<Tally> Piped(PipeReader pipe, DecodeContext context)
    {
        var reader = new PgPipeMessageReader(pipe, PgDirection.Backend, context);
        long messages = 0;
        long values = 0;
        long checksum = 0;
        // What is already received is taken without awaiting (TryRead), in a loop of its own: the
        // locals of an async method live in its state machine, in memory, and a loop over them
        // there would measure the harness. The pipe is awaited only when the next message needs
        // more bytes.
        while (true)
        {
            Tally held = TakeHeld(reader);
            messages += held.Messages;
            values += held.Values;
            checksum += held.Checksum;
            if (!await reader.ReadAsync().ConfigureAwait(false))
            {
                break;
            }

            checksum += TouchRow(reader.Current, ref values);
            messages++;
        }

        await pipe.CompleteAsync().ConfigureAwait(false);
        return new Tally(messages, values, checksum);
    }

    /// <summary>The messages the pipe reader holds whole, each touched as the other paths touch theirs.</summary>
    private static Tally TakeHeld(PgPipeMessageReader reader)
    {
        long messages = 0;
        long values = 0;
        long checksum = 0;
        while (reader.TryRead(out PgReceivedMessage message))
        {
            checksum += TouchRow(message, ref values);
            messages++;
        }

        return new Tally(messages, values, checksum);
    }

    /// <summary>
    /// A pipe over bytes already in memory whose every read gives one segment more than the last
    /// (when the reader examined all it was given) and the bytes not yet consumed before it, in place.
    /// </summary>
    private sealed class SegmentPipeReader(ReadOnlySequence<byte> all, int segmentSize) : PipeReader
    {
        private SequencePosition _consumed = all.Start;
        private long _consumedOffset;
        private long _examinedOffset;
        private long _released;

        public override bool TryRead(out ReadResult result)
        {
            result = Next();
            return true;
        }

        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default) => new(Next());

        public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
        {
            _consumed = consumed;
            _consumedOffset = Offset(consumed);
            _examinedOffset = Math.Max(_examinedOffset, Offset(examined));
        }

        // ReadOnlySequence.GetOffset walks the segments from the first to check the position: a
        // walk as long as the stream, at every read. A segment's running index is its offset here.
        private static long Offset(SequencePosition position)
            => ((ReadOnlySequenceSegment<byte>)position.GetObject()!).RunningIndex + position.GetInteger();

        public override void CancelPendingRead()
        {
        }

        public override void Complete(Exception? exception = null)
        {
        }

        private ReadResult Next()
        {
            if (_examinedOffset >= _released && _released < all.Length)
            {
                _released = Math.Min(all.Length, _released + segmentSize);
            }

            return new ReadResult(all.Slice(_consumed).Slice(0, _released - _consumedOffset), isCanceled: false, isCompleted: _released == all.Length);
        }
    }

    /// <summary>Owned: the validating reader, then each message's owned <see cref="DataRow"/>, made with the places the reader's check recorded.</summary>
    private static Tally Owned(byte[] stream, int length)
    {
        var reader = new PgMessageReader(PgDirection.Backend, Context());
        ReadOnlySpan<byte> buffer = stream.AsSpan(0, length);
        long messages = 0;
        long values = 0;
        long checksum = 0;
        PgReadStatus status;
        PgDecodeError error;
        while ((status = reader.TryRead(buffer, out int consumed, out PgReceivedMessage message, out error)) == PgReadStatus.Message)
        {
            buffer = buffer.Slice(consumed);
            DataRow row = DataRow.View.Read(message).ToMessage();
            checksum += TouchAll(row.Columns, ref values);
            messages++;
        }

        CheckEnd(status, error, buffer.Length);
        return new Tally(messages, values, checksum);
    }

    /// <summary>Owned, from the body alone: the framing reader, then one strict decode into a <see cref="DataRow"/> per body.</summary>
    private static Tally OwnedDecode(byte[] stream, int length)
    {
        DecodeContext context = Context();
        var reader = new PgMessageReader(PgDirection.Backend, context) { Validate = false };
        ReadOnlySpan<byte> buffer = stream.AsSpan(0, length);
        long messages = 0;
        long values = 0;
        long checksum = 0;
        PgReadStatus status;
        PgDecodeError error;
        while ((status = reader.TryRead(buffer, out int consumed, out PgReceivedMessage message, out error)) == PgReadStatus.Message)
        {
            buffer = buffer.Slice(consumed);
            if (message.BackendKind != BackendMessageKind.DataRow)
            {
                throw new InvalidOperationException($"expected DataRow, read {message.Name} at offset {message.Offset}");
            }

            if (!DataRow.TryDecode(message.Body, context, out DataRow? row, out error))
            {
                throw new PgProtocolException(error);
            }

            checksum += TouchAll(row.Columns, ref values);
            messages++;
        }

        CheckEnd(status, error, buffer.Length);
        return new Tally(messages, values, checksum);
    }

    /// <summary>
    /// What an owned row costs at least: its memory (an array of the values and an offset for each,
    /// as <see cref="PgValueArray"/> holds them, and an object the size of <see cref="DataRow"/>)
    /// and the copy of its values, without checking the body or reading a value.
    /// </summary>
    private static Tally OwnedFloor(byte[] stream, int length)
    {
        var reader = new PgMessageReader(PgDirection.Backend, Context()) { Validate = false };
        ReadOnlySpan<byte> buffer = stream.AsSpan(0, length);
        long messages = 0;
        long checksum = 0;
        PgReadStatus status;
        PgDecodeError error;
        while ((status = reader.TryRead(buffer, out int consumed, out PgReceivedMessage message, out error)) == PgReadStatus.Message)
        {
            buffer = buffer.Slice(consumed);
            ReadOnlySpan<byte> values = message.Body[2..];
            int count = BinaryPrimitives.ReadUInt16BigEndian(message.Body);
            int slotsAt = (values.Length + 3) & ~3;
            byte[] data = new byte[slotsAt + (count * sizeof(int))];
            values.CopyTo(data);
            var row = new OwnedShape(data, slotsAt, count);
            checksum += row.SlotsAt - slotsAt + message.Body.Length;
            messages++;
        }

        CheckEnd(status, error, buffer.Length);
        return new Tally(messages, -1, checksum);
    }

    /// <summary>An object with DataRow's fields (its PgValueArray: a list, an array and two counts).</summary>
    private sealed class OwnedShape(byte[] data, int slotsAt, int count)
    {
        public readonly object? Items = null;
        public readonly byte[] Data = data;
        public readonly int SlotsAt = slotsAt;
        public readonly int Count = count;
    }

    /// <summary>Touches every value of an owned list, each read as a span (no Memory built).</summary>
    private static long TouchAll(PgValueArray columns, ref long values)
    {
        long checksum = 0;
        for (int i = 0; i < columns.Length; i++)
        {
            PgValue value = columns.GetValue(i);
            if (!value.IsNull)
            {
                checksum += Touch(value.Bytes);
            }
        }

        values += columns.Length;
        return checksum;
    }

    /// <summary>Framing and naming only; the body's length is all that is read of it.</summary>
    private static Tally Frame(byte[] stream, int length)
    {
        var reader = new PgMessageReader(PgDirection.Backend, Context()) { Validate = false };
        var buffer = new ReadOnlySequence<byte>(stream, 0, length);
        long messages = 0;
        long checksum = 0;
        PgReadStatus status;
        PgDecodeError error;
        while ((status = reader.TryRead(ref buffer, out PgReceivedMessage message, out error)) == PgReadStatus.Message)
        {
            if (message.BackendKind != BackendMessageKind.DataRow)
            {
                throw new InvalidOperationException($"expected DataRow, read {message.Name} at offset {message.Offset}");
            }

            checksum += message.Body.Length;
            messages++;
        }

        CheckEnd(status, error, buffer.Length);
        return new Tally(messages, -1, checksum);
    }

    /// <summary>A received message as a DataRow view (<see cref="DataRow.View.Read(in PgReceivedMessage, DecodeContext?)"/> throws for any other message), every value touched.</summary>
    private static long TouchRow(in PgReceivedMessage message, ref long values) => TouchAll(DataRow.View.Read(message).Columns, ref values);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long TouchAll(PgValueList columns, ref long values)
    {
        // Counted in a local: a count kept through the ref for each value would be a store and a
        // load per value in the harness's own loop.
        long sum = 0;
        long count = 0;
        foreach (PgValue value in columns)
        {
            count++;
            if (!value.IsNull)
            {
                sum += Touch(value.Bytes);
            }
        }

        values += count;
        return sum;
    }

    /// <summary>What touching a value adds to the checksum: its length and its first byte.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long Touch(ReadOnlySpan<byte> value) => value.Length + (value.IsEmpty ? 0 : value[0]);

    private static void CheckEnd(PgReadStatus status, PgDecodeError error, long left)
    {
        if (status == PgReadStatus.Malformed)
        {
            throw new PgProtocolException(error);
        }

        if (left != 0)
        {
            throw new InvalidOperationException($"the stream ends inside a message ({left} bytes left)");
        }
    }
}
