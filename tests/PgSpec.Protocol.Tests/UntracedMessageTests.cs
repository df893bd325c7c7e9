using System.Text;
using PgSpec.Protocol;

namespace PgSpec.Protocol.Tests;

/// <summary>Messages the spec marks 'untraced': libpq 18's PQtrace never prints them.</summary>
public class UntracedMessageTests
{
    [Fact]
    public void TryTrace_AuthenticationOk_WritesNothingAsLibpqDoes()
    {
        using var output = new MemoryStream();
        byte[] body = [0, 0, 0, 0];

        bool ok = PgTrace.TryTrace(PgDirection.Backend, (byte)'R', body, null, new PgTraceWriter(output), out _);

        Assert.True(ok);
        Assert.Empty(output.ToArray());
    }

    [Fact]
    public void TryTrace_AuthenticationCleartextPassword_IsStillTraced()
    {
        using var output = new MemoryStream();
        byte[] body = [0, 0, 0, 3];

        PgTrace.TryTrace(PgDirection.Backend, (byte)'R', body, null, new PgTraceWriter(output), out _);

        Assert.Equal("B\t8\tAuthenticationCleartextPassword\n", Encoding.UTF8.GetString(output.ToArray()));
    }

    [Fact]
    public void ToString_AuthenticationOk_IsItsName()
    {
        Assert.Equal("AuthenticationOk", new AuthenticationOk().ToString());
    }
}
