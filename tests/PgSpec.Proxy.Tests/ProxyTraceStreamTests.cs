using System.Text;
using System.Text.RegularExpressions;
using PgSpec.Proxy;
using Xunit;

namespace PgSpec.Proxy.Tests;

/// <summary>
/// The trace's queue: messages are kept or dropped whole, a stuck output never holds up the
/// writers for long, a failed output resumes after a reopening with a line saying what was
/// dropped, and a reopening under load splits the trace between files at message boundaries.
/// </summary>
public sealed class ProxyTraceStreamTests
{
    private static readonly Regex s_message = new(@"^message (\d+) [a-z]+ end$", RegexOptions.CultureInvariant);

    [Fact]
    public void AnOutputThatStopsTakingBytes_HoldsWritersUpForTheStallLimitOnly_ThenTheTraceResumesWithAGapLine()
    {
        var output = new GatedStream();
        using var trace = new ProxyTraceStream(output, log: null, leaveOpen: true) { Capacity = 4096, StallLimit = TimeSpan.FromMilliseconds(200) };

        // The output takes nothing: far more than the capacity is written, and every write returns.
        for (int i = 0; i < 2000; i++)
        {
            WriteMessage(trace, i);
        }

        Assert.True(trace.DroppedBytes > 0);
        output.Open();
        Assert.True(trace.Drain(TimeSpan.FromMinutes(1)));

        // Once it caught up, later messages are written again, after a line that says what was dropped.
        for (int i = 2000; i < 2010; i++)
        {
            WriteMessage(trace, i);
        }

        Assert.True(trace.Drain(TimeSpan.FromMinutes(1)));
        string[] lines = Lines(output.Written);
        string gap = Assert.Single(lines, line => line.StartsWith("# pgspec: ", StringComparison.Ordinal));
        Assert.Contains("bytes of trace dropped here (the trace output fell", gap);
        Assert.Equal("message 2009 " + Words(2009) + " end", lines[^1]);
        AssertWholeMessagesInOrder(lines.Where(line => !line.StartsWith('#')));
        Assert.Contains(lines, line => line == "message 2000 " + Words(2000) + " end");
    }

    [Fact]
    public void AFailedOutput_DropsWholeMessagesUntilReopened_ThenResumesInTheNewFileWithTheCountDropped()
    {
        var failing = new FailingStream(failAfter: 300);
        var reopened = new MemoryStream();
        var logged = new List<string>();
        using var trace = new ProxyTraceStream(failing, () => reopened, message => { lock (logged) { logged.Add(message); } });

        for (int i = 0; i < 50; i++)
        {
            WriteMessage(trace, i);
            trace.Drain(TimeSpan.FromMinutes(1));
        }

        trace.Reopen();
        for (int i = 50; i < 60; i++)
        {
            WriteMessage(trace, i);
        }

        Assert.True(trace.Drain(TimeSpan.FromMinutes(1)));
        string[] before = Lines(failing.Written);
        string[] after = Lines(reopened.ToArray());

        // The failed file holds whole messages, then perhaps part of one; the new one starts with the gap line.
        AssertWholeMessagesInOrder(before.Take(before.Length - 1));
        Assert.StartsWith("# pgspec: ", after[0], StringComparison.Ordinal);
        Assert.Contains("bytes of trace dropped here (the trace output failed: No space left on device)", after[0]);
        long dropped = long.Parse(after[0].Split(' ')[2], System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(trace.DroppedBytes, dropped);
        Assert.Equal(Enumerable.Range(50, 10).Select(i => "message " + i + " " + Words(i) + " end"), after.Skip(1));
        Assert.Contains(logged, line => line.Contains("the trace cannot be written: No space left on device", StringComparison.Ordinal));
        Assert.Contains(logged, line => line.Contains("the trace resumes in the reopened file", StringComparison.Ordinal));
    }

    [Fact]
    public async Task ReopeningWhileMessagesAreWritten_SplitsTheTraceBetweenFilesAtMessageBoundaries_AndLosesNothing()
    {
        var outputs = new List<MemoryStream> { new() };
        using var trace = new ProxyTraceStream(outputs[0], () => { lock (outputs) { outputs.Add(new MemoryStream()); return outputs[^1]; } });
        const int Count = 20000;
        var writing = Task.Run(() =>
        {
            for (int i = 0; i < Count; i++)
            {
                WriteMessage(trace, i);
            }
        });

        while (!writing.IsCompleted)
        {
            trace.Reopen();
            await Task.Yield();
        }

        await writing;
        Assert.True(trace.Drain(TimeSpan.FromMinutes(1)));
        Assert.Equal(0, trace.DroppedBytes);
        List<string> all = [];
        lock (outputs)
        {
            foreach (MemoryStream output in outputs)
            {
                byte[] bytes = output.ToArray();
                Assert.True(bytes.Length == 0 || bytes[^1] == (byte)'\n', "a file ends inside a message");
                all.AddRange(Lines(bytes));
            }
        }

        Assert.Equal(Count, all.Count);
        AssertWholeMessagesInOrder(all);
    }

    /// <summary>A message in several writes, as the trace sinks write one, then Flush (the message boundary).</summary>
    private static void WriteMessage(Stream trace, int number)
    {
        trace.Write(Encoding.ASCII.GetBytes("message "));
        trace.Write(Encoding.ASCII.GetBytes(number.ToString(System.Globalization.CultureInfo.InvariantCulture) + " "));
        trace.Write(Encoding.ASCII.GetBytes(Words(number)));
        trace.Write(Encoding.ASCII.GetBytes(" end\n"));
        trace.Flush();
    }

    private static string Words(int number) => new((char)('a' + (number % 26)), 20 + (number % 50));

    private static string[] Lines(byte[] bytes)
    {
        string text = Encoding.ASCII.GetString(bytes);
        return text.Length == 0 ? [] : text.TrimEnd('\n').Split('\n');
    }

    private static void AssertWholeMessagesInOrder(IEnumerable<string> lines)
    {
        int last = -1;
        foreach (string line in lines)
        {
            Match match = s_message.Match(line);
            Assert.True(match.Success, $"not a whole message: '{line}'");
            int number = int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(number > last, $"message {number} after {last}");
            Assert.Equal("message " + number + " " + Words(number) + " end", line);
            last = number;
        }
    }

    /// <summary>An output that blocks every write until opened, as a pipe nobody reads does.</summary>
    private sealed class GatedStream : Stream
    {
        private readonly ManualResetEventSlim _open = new(false);
        private readonly MemoryStream _written = new();

        public byte[] Written
        {
            get
            {
                lock (_written)
                {
                    return _written.ToArray();
                }
            }
        }

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public void Open() => _open.Set();

        public override void Write(byte[] buffer, int offset, int count)
        {
            _open.Wait();
            lock (_written)
            {
                _written.Write(buffer, offset, count);
            }
        }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }

    /// <summary>An output that takes some bytes, part of a write, then fails every write as a full disk does.</summary>
    private sealed class FailingStream(int failAfter) : Stream
    {
        private readonly MemoryStream _written = new();

        public byte[] Written => _written.ToArray();

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Write(byte[] buffer, int offset, int count)
        {
            int room = (int)Math.Max(0, failAfter - _written.Length);
            _written.Write(buffer, offset, Math.Min(room, count));
            if (count > room)
            {
                throw new IOException("No space left on device");
            }
        }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
