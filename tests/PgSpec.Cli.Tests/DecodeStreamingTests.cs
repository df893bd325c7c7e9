using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using PgSpec.Protocol;
using Xunit.Abstractions;

namespace PgSpec.Cli.Tests;

/// <summary>
/// <c>pgspec decode</c> as a stream filter: each message is printed as soon as it is whole, and
/// memory is bounded by the largest message, not by the input.
/// </summary>
public class DecodeStreamingTests
{
    /// <summary>How long a condition may take before the test gives up (a bound on failure, not a wait).</summary>
    private static readonly TimeSpan s_patience = TimeSpan.FromSeconds(60);

    private static readonly byte[] s_ready = new ReadyForQuery(TransactionStatus.Idle).ToArray();
    private static readonly byte[] s_complete = new CommandComplete("SELECT 1").ToArray();

    private readonly ITestOutputHelper _log;

    public DecodeStreamingTests(ITestOutputHelper log) => _log = log;

    public static TheoryData<string[], bool, string> SlowInputs => new()
    {
        { ["--from", "backend"], false, "B\t5\tReadyForQuery\t I\n" },
        { [], false, "B\t5\tReadyForQuery\t I\n" },
        { ["--hex"], true, "B\t5\tReadyForQuery\t I\n" },
        { ["--format", "json"], false, "{\"offset\":0,\"direction\":\"B\",\"type\":\"Z\",\"length\":5,\"name\":\"ReadyForQuery\",\"fields\":{\"transactionStatus\":\"Idle\"}}\n" },
    };

    [Theory]
    [MemberData(nameof(SlowInputs))]
    public async Task Decode_InputArrivingSlowly_PrintsEachMessageBeforeTheNextArrives(string[] options, bool hex, string firstLine)
    {
        using var input = new GatedStream();
        using var output = new WatchedStream();
        using var error = new StringWriter();
        byte[] Encode(byte[] bytes) => hex ? Encoding.ASCII.GetBytes(Convert.ToHexString(bytes) + "\n") : bytes;
        Task<int> run = Task.Run(() => PgSpecCommandLine.Run(["decode", .. options], input, output, error));
        try
        {
            input.Release(Encode(s_ready));
            Assert.True(await output.WaitForAsync(text => text.Length > 0, s_patience), "nothing was printed while the input waited for more bytes");
            Assert.Equal(firstLine, output.Text);

            // The second message in two pieces: nothing until it is whole.
            byte[] second = Encode(s_complete);
            input.Release(second[..3]);
            input.Release(second[3..]);
            Assert.True(await output.WaitForAsync(text => text.Count(c => c == '\n') == 2, s_patience), "the second message was not printed: " + output.Text);
        }
        finally
        {
            input.End();
        }

        Assert.Equal(0, await run.WaitAsync(s_patience));
        Assert.Equal(2, output.Text.Count(c => c == '\n'));
        Assert.Empty(error.ToString());
    }

    [Fact]
    public async Task Decode_PeerThatDoesNotEnd_IsReadOnlyAsFarAsItsAuthentication()
    {
        // The backend asks for a password and accepts it, then its stream goes on without an end:
        // the frontend's password message is named all the same.
        using var dir = new TempDirectory();
        string frontend = dir.Write("frontend.bin", Conversation.Bytes(Conversation.Startup, new PasswordMessage("secret"), Conversation.Select));
        using var peer = new GatedStream();
        peer.Release(Conversation.Bytes(new AuthenticationCleartextPassword(), new AuthenticationOk(), new ReadyForQuery(TransactionStatus.Idle)));
        using var output = new MemoryStream();
        using var error = new StringWriter();
        Task<int> run = Task.Run(() => PgSpecCommandLine.Run(["decode", "--peer", "-", frontend], peer, output, error));
        try
        {
            await run.WaitAsync(s_patience);
        }
        catch (TimeoutException)
        {
            Assert.Fail("the decoder waited for the end of the peer stream");
        }
        finally
        {
            peer.End();
        }

        Assert.True(await run == 0, error.ToString());
        Assert.Contains("F\t11\tPasswordMessage\t ", Encoding.UTF8.GetString(output.ToArray()), StringComparison.Ordinal);
    }

    [Fact]
    public void Decode_LargeMessagesThenSmallOnes_PrintsThemAllInOrder()
    {
        // The receive buffer grows for the large ones and shrinks back for the small ones.
        var random = new Random(7);
        var messages = new List<IPgMessage>();
        foreach (int size in new[] { 10, 200_000, 3, 70_000, 1_000_000, 5, 5, 65_536, 0, 300_000, 12 })
        {
            byte[] value = new byte[size];
            random.NextBytes(value);
            messages.Add(new DataRow([value, null]));
            messages.Add(new CommandComplete("SELECT " + size.ToString(CultureInfo.InvariantCulture)));
        }

        byte[] input = Conversation.Bytes([.. messages]);
        using var trickle = new GatedStream(maxRead: 40_000);
        trickle.Release(input);
        trickle.End();
        using var output = new MemoryStream();
        using var error = new StringWriter();

        int exit = PgSpecCommandLine.Run(["decode", "--from", "backend"], trickle, output, error);
        CliResult whole = CliRunner.Run(input, "decode", "--from", "backend");

        Assert.True(exit == 0, error.ToString());
        Assert.Equal(0, whole.ExitCode);
        Assert.Equal(2 * 11, whole.Lines.Length);
        Assert.Equal(whole.Stdout, Encoding.UTF8.GetString(output.ToArray()));
    }

    [Fact]
    public async Task Decode_ThreeGiBOfDataRowsOnStandardInput_KeepsItsPeakMemoryUnder300MBAndCountsOffsetsPast2GiB()
    {
        // 3 GiB of 1 MiB rows, made as they are written: more than a byte[] or a MemoryStream holds.
        const int rows = 3 * 1024;
        byte[] row = DataRow(1024 * 1024, (byte)'a');
        long total = (long)rows * row.Length;
        var clock = Stopwatch.StartNew();
        using var decoder = new DecoderProcess("decode", "--from", "backend");

        await decoder.WriteAsync(row, rows);
        long lines = await decoder.WaitForLinesAsync(rows);
        long peak = decoder.PeakMemory();

        // A truncated message at the end: the error gives its offset, past 2 GiB.
        await decoder.WriteAsync("D\0\0"u8.ToArray(), 1);
        ProcessResult result = await decoder.EndAsync();
        _log.WriteLine($"{total} bytes in {clock.Elapsed.TotalSeconds:F1} s, peak resident memory {peak / (1024 * 1024)} MB");

        Assert.Equal(rows, lines);
        Assert.True(peak < 300L * 1024 * 1024, $"peak resident memory {peak / (1024 * 1024)} MB");
        Assert.Equal(1, result.ExitCode);
        Assert.Equal($"pgspec: malformed backend stream at offset {total}: stream ends inside a message: 3 bytes of the 5-byte header of a 'D' (DataRow) message\n", result.Stderr);
    }

    [Theory]
    [InlineData("trace")]
    [InlineData("json")]
    public async Task Decode_One200MBDataRowOnStandardInput_KeepsItsPeakMemoryUnderTwoAndAHalfTimesItsSize(string format)
    {
        const int size = 200_000_000;
        byte[] row = DataRow(size, (byte)'y');
        using var decoder = new DecoderProcess("decode", "--from", "backend", "--format", format);

        await decoder.WriteAsync(row, 1);
        long lines = await decoder.WaitForLinesAsync(1);
        long peak = decoder.PeakMemory();
        ProcessResult result = await decoder.EndAsync();
        _log.WriteLine($"{format}: peak resident memory {peak / (1024 * 1024)} MB");

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(1, lines);
        long expected = format == "json"
            ? $"{{\"offset\":0,\"direction\":\"B\",\"type\":\"D\",\"length\":{size + 10},\"name\":\"DataRow\",\"fields\":{{\"columns\":[{{\"hex\":\"".Length + (2L * size) + "\",\"text\":\"".Length + size + "\"}]}}\n".Length
            : $"B\t{size + 10}\tDataRow\t 1 {size} '".Length + size + "'\n".Length;
        Assert.Equal(expected, decoder.OutputBytes);
        Assert.True(peak < 5L * size / 2, $"peak resident memory {peak / (1024 * 1024)} MB for a {size / (1024 * 1024)} MB message");
    }

    /// <summary>A DataRow of one column of <paramref name="size"/> bytes.</summary>
    private static byte[] DataRow(int size, byte fill)
    {
        byte[] row = new byte[11 + size];
        row[0] = (byte)'D';
        BinaryPrimitives.WriteInt32BigEndian(row.AsSpan(1), 10 + size);
        BinaryPrimitives.WriteInt16BigEndian(row.AsSpan(5), 1);
        BinaryPrimitives.WriteInt32BigEndian(row.AsSpan(7), size);
        row.AsSpan(11).Fill(fill);
        return row;
    }

    private sealed record ProcessResult(int ExitCode, string Stderr);

    /// <summary>The built <c>pgspec</c> in a process of its own, fed through its standard input.</summary>
    private sealed class DecoderProcess : IDisposable
    {
        private readonly Process _process;
        private readonly Task _stdout;
        private readonly Task<string> _stderr;
        private readonly Lock _lock = new();
        private long _lines;
        private long _bytes;
        private TaskCompletionSource _change = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public DecoderProcess(params string[] arguments)
        {
            var start = new ProcessStartInfo("dotnet")
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "pgspec.dll"));
            foreach (string argument in arguments)
            {
                start.ArgumentList.Add(argument);
            }

            _process = Process.Start(start)!;
            _stderr = _process.StandardError.ReadToEndAsync();
            _stdout = Task.Run(CountOutputAsync);
        }

        public long OutputBytes
        {
            get
            {
                lock (_lock)
                {
                    return _bytes;
                }
            }
        }

        public async Task WriteAsync(byte[] bytes, int times)
        {
            Stream input = _process.StandardInput.BaseStream;
            for (int i = 0; i < times; i++)
            {
                await input.WriteAsync(bytes);
            }

            await input.FlushAsync();
        }

        /// <summary>Waits until <paramref name="count"/> lines are out, the output ends, or patience runs out; the lines so far.</summary>
        public async Task<long> WaitForLinesAsync(long count)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
            while (true)
            {
                Task change;
                lock (_lock)
                {
                    if (_lines >= count || _stdout.IsCompleted || timeout.IsCancellationRequested)
                    {
                        return _lines;
                    }

                    change = _change.Task;
                }

                await change.WaitAsync(timeout.Token).ContinueWith(_ => { }, TaskScheduler.Default);
            }
        }

        /// <summary>The process's peak resident memory so far (VmHWM).</summary>
        public long PeakMemory()
        {
            string line = File.ReadAllLines($"/proc/{_process.Id}/status").Single(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
            return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        }

        public async Task<ProcessResult> EndAsync()
        {
            _process.StandardInput.Close();
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(1));
            await _stdout;
            return new ProcessResult(_process.ExitCode, await _stderr);
        }

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }

            _process.Dispose();
        }

        private async Task CountOutputAsync()
        {
            byte[] buffer = new byte[256 * 1024];
            Stream output = _process.StandardOutput.BaseStream;
            int read;
            do
            {
                read = await output.ReadAsync(buffer);
                lock (_lock)
                {
                    _lines += buffer.AsSpan(0, read).Count((byte)'\n');
                    _bytes += read;
                    _change.TrySetResult();
                    _change = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                }
            }
            while (read > 0);
        }
    }
}

/// <summary>A read-only stream that gives only the bytes released so far, and blocks for more until released or ended.</summary>
public sealed class GatedStream : Stream
{
    private readonly Queue<byte[]> _chunks = new();
    private readonly int _maxRead;
    private int _offset;
    private bool _ended;

    public GatedStream(int maxRead = int.MaxValue) => _maxRead = maxRead;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public void Release(byte[] bytes)
    {
        lock (_chunks)
        {
            _chunks.Enqueue(bytes);
            Monitor.PulseAll(_chunks);
        }
    }

    public void End()
    {
        lock (_chunks)
        {
            _ended = true;
            Monitor.PulseAll(_chunks);
        }
    }

    public override int Read(Span<byte> buffer)
    {
        lock (_chunks)
        {
            while (true)
            {
                while (_chunks.TryPeek(out byte[]? chunk) && _offset == chunk.Length)
                {
                    _chunks.Dequeue();
                    _offset = 0;
                }

                if (_chunks.TryPeek(out byte[]? next))
                {
                    int count = Math.Min(Math.Min(buffer.Length, next.Length - _offset), _maxRead);
                    next.AsSpan(_offset, count).CopyTo(buffer);
                    _offset += count;
                    return count;
                }

                if (_ended || buffer.IsEmpty)
                {
                    return 0;
                }

                Monitor.Wait(_chunks);
            }
        }
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>A write-only stream whose text can be waited on.</summary>
public sealed class WatchedStream : Stream
{
    private readonly MemoryStream _bytes = new();
    private TaskCompletionSource _change = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public string Text
    {
        get
        {
            lock (_bytes)
            {
                return Encoding.UTF8.GetString(_bytes.ToArray());
            }
        }
    }

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    /// <summary>Waits until the text satisfies <paramref name="condition"/>; false if it does not within <paramref name="patience"/>.</summary>
    public async Task<bool> WaitForAsync(Func<string, bool> condition, TimeSpan patience)
    {
        using var timeout = new CancellationTokenSource(patience);
        while (true)
        {
            Task change;
            lock (_bytes)
            {
                if (condition(Encoding.UTF8.GetString(_bytes.ToArray())))
                {
                    return true;
                }

                change = _change.Task;
            }

            try
            {
                await change.WaitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }
    }

    public override void Write(byte[] buffer, int offset, int count)
    {
        lock (_bytes)
        {
            _bytes.Write(buffer, offset, count);
            _change.TrySetResult();
            _change = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
    }

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();
}
