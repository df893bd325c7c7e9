using System.Buffers.Binary;
using System.Text;

namespace PgSpec.Protocol.Tests;

/// <summary>The ErrorResponse factory: PostgreSQL's fields in PostgreSQL's order, byte for byte.</summary>
public class PgErrorsTests
{
    [Fact]
    public void Fatal_WritesSeverityTwiceThenCodeAndMessage_AsPostgresqlDoes()
    {
        byte[] bytes = PgErrors.Fatal("08P01", "invalid length of startup packet: 3").ToArray();

        Assert.Equal(Spelt(('S', "FATAL"), ('V', "FATAL"), ('C', "08P01"), ('M', "invalid length of startup packet: 3")), bytes);
    }

    [Fact]
    public void Error_WithDetailAndHint_AddsThemAfterTheMessage()
    {
        byte[] bytes = PgErrors.Error("42601", "syntax error", detail: "near x", hint: "quote it").ToArray(PgProtocolVersion.V3_0);

        Assert.Equal(Spelt(('S', "ERROR"), ('V', "ERROR"), ('C', "42601"), ('M', "syntax error"), ('D', "near x"), ('H', "quote it")), bytes);
        ErrorResponse decoded = ErrorResponse.Decode(bytes.AsSpan(5));
        Assert.Equal(PgErrors.Error("42601", "syntax error", "near x", "quote it"), decoded);
    }

    [Fact]
    public void Create_TakesAnySeverity_AndANulInATextBecomesASpace()
    {
        ErrorResponse error = PgErrors.Create("PANIC", "XX000", "a\0b", detail: "\0");

        Assert.Equal(
            [((byte)'S', "PANIC"), ((byte)'V', "PANIC"), ((byte)'C', "XX000"), ((byte)'M', "a b"), ((byte)'D', " ")],
            error.Fields.Select(field => (field.Code, field.Value)));
        Assert.Equal(Spelt(('S', "PANIC"), ('V', "PANIC"), ('C', "XX000"), ('M', "a b"), ('D', " ")), error.ToArray());
    }

    [Theory]
    [InlineData("08p01")]
    [InlineData("0800")]
    [InlineData("080001")]
    [InlineData("08 01")]
    [InlineData("")]
    public void Create_RefusesACodeThatIsNoSqlState(string code)
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => PgErrors.Fatal(code, "x"));
        Assert.Equal("sqlState", e.ParamName);
    }

    [Fact]
    public void Create_RefusesAnEmptySeverity()
        => Assert.Throws<ArgumentException>(() => PgErrors.Create("", "XX000", "x"));

    /// <summary>An ErrorResponse spelt out: 'E', the length, each field's code and text, a zero byte.</summary>
    private static byte[] Spelt(params (char Code, string Value)[] fields)
    {
        var body = new List<byte>();
        foreach ((char code, string value) in fields)
        {
            body.Add((byte)code);
            body.AddRange(Encoding.UTF8.GetBytes(value));
            body.Add(0);
        }

        body.Add(0);
        byte[] message = new byte[5 + body.Count];
        message[0] = (byte)'E';
        BinaryPrimitives.WriteInt32BigEndian(message.AsSpan(1), 4 + body.Count);
        body.CopyTo(message, 5);
        return message;
    }
}
