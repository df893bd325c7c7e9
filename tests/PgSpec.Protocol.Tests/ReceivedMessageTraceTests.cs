using System.Buffers;
using System.Text;
using PgSpec.Protocol;

namespace PgSpec.Protocol.Tests;

/// <summary>Tracing what <see cref="PgMessageReader"/> read, after its context has moved on.</summary>
public class ReceivedMessageTraceTests
{
    [Fact]
    public void Trace_PasswordMessageReadWithExpectedPassword_PrintsPasswordMessage()
    {
        var context = new DecodeContext { Phase = PgSessionPhase.Authentication, ExpectedPasswordMessage = FrontendMessageKind.PasswordMessage };
        var reader = new PgMessageReader(PgDirection.Frontend, context);
        var buffer = new ReadOnlySequence<byte>(new PasswordMessage("secret").ToArray());
        using var output = new MemoryStream();

        PgReadStatus status = reader.TryRead(ref buffer, out PgReceivedMessage message, out _);
        message.Trace(new PgTraceWriter(output), context);

        Assert.Equal(PgReadStatus.Message, status);
        Assert.Equal(FrontendMessageKind.Unknown, context.ExpectedPasswordMessage);
        Assert.Equal("F\t11\tPasswordMessage\t \"secret\"\n", Encoding.UTF8.GetString(output.ToArray()));
    }
}
