using System.Buffers;
using System.Text;
using PgSpec.Protocol;

namespace PgSpec.Proxy.Tests;

/// <summary>The PQtrace sink: prefixes, timestamps and hidden secrets.</summary>
public class TraceSinkTests
{
    [Fact]
    public void PqTraceSink_WithConnectionIdsAndTimestamps_PrefixesEachLine()
    {
        var output = new MemoryStream();
        var options = new PgTraceOptions { Timestamps = true, Clock = () => new DateTime(2025, 5, 1, 12, 34, 56).AddTicks(1230) };
        var sink = new PqTraceSink(output, options, connectionIds: true);

        Feed(sink, 7, PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal }, [(byte)'Z', 0, 0, 0, 5, (byte)'I']);

        Assert.Equal("7\t2025-05-01 12:34:56.000123\tB\t5\tReadyForQuery\t I\n", Encoding.UTF8.GetString(output.ToArray()));
    }

    [Theory]
    [InlineData(false, "F\t13\tPasswordMessage\t \"********\"\n")]
    [InlineData(true, "F\t13\tPasswordMessage\t \"secret!!\"\n")]
    public void PqTraceSink_PasswordMessage_IsHiddenUnlessSecretsAreShown(bool showSecrets, string expected)
    {
        var output = new MemoryStream();
        var sink = new PqTraceSink(output, showSecrets: showSecrets);
        var context = new DecodeContext { Phase = PgSessionPhase.Authentication, ExpectedPasswordMessage = FrontendMessageKind.PasswordMessage };

        Feed(sink, 1, PgDirection.Frontend, context, [(byte)'p', 0, 0, 0, 13, .. "secret!!\0"u8]);

        Assert.Equal(expected, Encoding.UTF8.GetString(output.ToArray()));
    }

    [Fact]
    public void PqTraceSink_SaslContinue_ShowsItsDataAsBbbbWhenHidden()
    {
        var output = new MemoryStream();
        var sink = new PqTraceSink(output);

        Feed(sink, 1, PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Authentication }, [(byte)'R', 0, 0, 0, 11, 0, 0, 0, 11, .. "r=x"u8]);

        Assert.Equal("B\t11\tAuthenticationSASLContinue\t 'BBBB'\n", Encoding.UTF8.GetString(output.ToArray()));
    }

    private static void Feed(PqTraceSink sink, long connection, PgDirection direction, DecodeContext context, byte[] bytes)
    {
        var reader = new PgMessageReader(direction, context);
        var buffer = new ReadOnlySequence<byte>(bytes);
        Assert.Equal(PgReadStatus.Message, reader.TryRead(ref buffer, out PgReceivedMessage message, out PgDecodeError error));
        sink.Write(connection, message, context);
        Assert.True(buffer.IsEmpty, error.ToString());
    }
}
