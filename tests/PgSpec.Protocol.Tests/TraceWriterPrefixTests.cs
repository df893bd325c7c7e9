using System.Text;
using PgSpec.Protocol;

namespace PgSpec.Protocol.Tests;

/// <summary>Every line a <see cref="PgTraceWriter"/> writes for a connection carries its prefix and timestamp.</summary>
public class TraceWriterPrefixTests
{
    private const string Time = "2025-05-01 12:34:56.000123";

    [Theory]
    [InlineData(null, false, "")]
    [InlineData("7", false, "7\t")]
    [InlineData(null, true, Time + "\t")]
    [InlineData("7", true, "7\t" + Time + "\t")]
    public void MismatchLine_WithPrefixOrTimestamps_StartsLikeItsMessageLine(string? prefix, bool timestamps, string start)
    {
        using var output = new MemoryStream();
        var writer = new PgTraceWriter(output, Options(prefix, timestamps));

        // libpq's tracer reads nothing of a type it does not know: 4 bytes consumed of 8.
        PgTrace.TryTrace(PgDirection.Backend, (byte)'Y', [1, 2, 3, 4], null, writer, out _);

        Assert.Equal(
            start + "B\t8\tUnknown message: 59\n" + start + "mismatched message length: consumed 4, expected 8\n",
            Encoding.UTF8.GetString(output.ToArray()));
    }

    [Theory]
    [InlineData(null, false, "")]
    [InlineData("7", false, "7\t")]
    [InlineData("7", true, "7\t" + Time + "\t")]
    public void Note_WithPrefixOrTimestamps_WritesACommentLineWithTheSamePrefixes(string? prefix, bool timestamps, string start)
    {
        using var output = new MemoryStream();
        var writer = new PgTraceWriter(output, Options(prefix, timestamps));

        writer.Note("the client closed the connection");

        Assert.Equal(start + "# the client closed the connection\n", Encoding.UTF8.GetString(output.ToArray()));
    }

    [Fact]
    public void Note_WithLineBreaksAndControlCharacters_StaysOneLine()
    {
        using var output = new MemoryStream();
        var writer = new PgTraceWriter(output, new PgTraceOptions { Prefix = "3" });

        writer.Note("server said:\r\nbye\tnow\u007f, café");

        Assert.Equal("3\t# server said:\\x0d\\x0abye\\x09now\\x7f, café\n", Encoding.UTF8.GetString(output.ToArray()));
    }

    [Theory]
    [InlineData(null, false, "")]
    [InlineData("7", true, "7\t" + Time + "\t")]
    public void Indent_ComesAfterThePrefixes_OnMessageAndNoteLines(string? prefix, bool timestamps, string start)
    {
        using var output = new MemoryStream();
        var time = new DateTime(2025, 5, 1, 12, 34, 56).AddTicks(1230);
        var writer = new PgTraceWriter(output, new PgTraceOptions { Prefix = prefix, Timestamps = timestamps, Clock = () => time }) { Indent = 2 };

        PgTrace.TryTrace(PgDirection.Backend, (byte)'Z', "I"u8, null, writer, out _);
        writer.Note("below");
        writer.Indent = 0;
        writer.Note("back");

        Assert.Equal(start + "\t\tB\t5\tReadyForQuery\t I\n" + start + "\t\t# below\n" + start + "# back\n", Encoding.UTF8.GetString(output.ToArray()));
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Indent = 9);
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Indent = -1);
    }

    /// <summary>A clock that moves on each time it is read: lines of one message must share one reading.</summary>
    private static PgTraceOptions Options(string? prefix, bool timestamps)
    {
        int readings = 0;
        var start = new DateTime(2025, 5, 1, 12, 34, 56).AddTicks(1230);
        return new PgTraceOptions { Prefix = prefix, Timestamps = timestamps, Clock = () => start.AddSeconds(readings++) };
    }
}
