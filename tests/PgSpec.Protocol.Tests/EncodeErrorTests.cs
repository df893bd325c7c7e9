using System.Buffers;
using System.Collections.Immutable;

namespace PgSpec.Protocol.Tests;

/// <summary>
/// One message per encoding rule that cannot be encoded as it is. Each must throw
/// <see cref="PgEncodeException"/> naming the message and the field, from Validate, ToArray and both
/// Encode overloads, before anything is written.
/// </summary>
public class EncodeErrorTests
{
    [Fact]
    public void Query_NulInsideTheString_IsRejected()
    {
        PgEncodeException e = AssertRejected(new Query("SELECT 1;\0DROP TABLE t"), "Query", "queryString");
        Assert.Contains("index 9", e.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Query_UnpairedSurrogate_IsRejectedRatherThanReplaced()
    {
        // Encoding.UTF8 would write U+FFFD in their place, and the peer would read another string.
        // (Built here: theory data would be serialized, and lose the lone surrogates.)
        foreach (string text in new[] { "abc" + '\uD800', '\uDC00' + "abc", "a" + '\uD83D' + '\uD83D' + "b" })
        {
            PgEncodeException e = AssertRejected(new Query(text), "Query", "queryString");
            Assert.Contains("surrogate", e.Reason, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Query_PairedSurrogates_AreEncodedAsOneFourByteCharacter()
    {
        var query = new Query("\uD83D\uDE00");
        Assert.Equal([(byte)'Q', 0, 0, 0, 9, 0xF0, 0x9F, 0x98, 0x80, 0], query.ToArray());
        Assert.Equal(query, Query.Decode(query.ToArray().AsSpan(5)));
    }

    [Fact]
    public void StartupMessage_NulInsideAParameterValue_IsRejected()
        => AssertRejected(new StartupMessage(196608, [new StartupMessage.Parameter("user", "bob\0database")]), "StartupMessage", "parameters.value");

    [Fact]
    public void StartupMessage_NulInsideAParameterName_IsRejected()
        => AssertRejected(new StartupMessage(196608, [new StartupMessage.Parameter("us\0er", "bob")]), "StartupMessage", "parameters.name");

    [Fact]
    public void StartupMessage_EmptyParameterName_IsRejected()
        => AssertRejected(new StartupMessage(196608, [new StartupMessage.Parameter("", "bob")]), "StartupMessage", "parameters.name");

    [Fact]
    public void AuthenticationSASL_EmptyMechanism_IsRejected()
        => AssertRejected(new AuthenticationSASL(["SCRAM-SHA-256", ""]), "AuthenticationSASL", "mechanisms");

    [Fact]
    public void ErrorResponse_ZeroCode_IsRejected()
        => AssertRejected(new ErrorResponse([new ErrorResponse.Field((byte)'S', "ERROR"), new ErrorResponse.Field(0, "x")]), "ErrorResponse", "fields.code");

    [Fact]
    public void NoticeResponse_ZeroCode_IsRejected()
        => AssertRejected(new NoticeResponse([new NoticeResponse.Field(0, "x")]), "NoticeResponse", "fields.code");

    [Fact]
    public void DataRow_65536Columns_IsRejected()
        => AssertRejected(new DataRow(ImmutableArray.CreateRange(Enumerable.Repeat<ReadOnlyMemory<byte>?>(null, 65536))), "DataRow", "columns");

    [Fact]
    public void Bind_65536FormatCodes_IsRejected()
        => AssertRejected(new Bind("", "", ImmutableArray.CreateRange(new short[65536]), [], []), "Bind", "parameterFormatCodes");

    [Fact]
    public void ParameterDescription_65536Oids_IsRejected()
        => AssertRejected(new ParameterDescription(ImmutableArray.CreateRange(new uint[65536])), "ParameterDescription", "parameterTypeOids");

    [Fact]
    public void DataRow_65535Columns_RoundTripsWithTheCountReadUnsigned()
    {
        var row = new DataRow(ImmutableArray.CreateRange(Enumerable.Repeat<ReadOnlyMemory<byte>?>(null, 65535)));
        byte[] bytes = row.ToArray();
        Assert.Equal(0xFF, bytes[5]);
        Assert.Equal(0xFF, bytes[6]);
        DataRow decoded = DataRow.Decode(bytes.AsSpan(5));
        Assert.Equal(65535, decoded.Columns.Length);
        Assert.Equal(row, decoded);
        Assert.Equal(65535, DataRow.View.Read(bytes.AsSpan(5)).Columns.Count);
    }

    [Fact]
    public void AuthenticationMD5Password_ThreeByteSalt_IsRejected()
    {
        PgEncodeException e = AssertRejected(new AuthenticationMD5Password(new byte[] { 1, 2, 3 }), "AuthenticationMD5Password", "salt");
        Assert.Contains("exactly 4", e.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void BackendKeyData_FiveByteKeyUnder30_IsRejectedButAcceptedUnder32()
    {
        var message = new BackendKeyData(1234, new byte[] { 1, 2, 3, 4, 5 });
        AssertRejected(message, "BackendKeyData", "secretKey", PgProtocolVersion.V3_0);
        Assert.Equal(1 + 4 + 4 + 5, message.ToArray(PgProtocolVersion.V3_2).Length);
        Assert.Equal(message.ToArray(PgProtocolVersion.V3_2), message.ToArray());
    }

    [Fact]
    public void CancelRequest_FiveByteKeyUnder30_IsRejected()
        => AssertRejected(new CancelRequest(1234, new byte[] { 1, 2, 3, 4, 5 }), "CancelRequest", "secretKey", PgProtocolVersion.V3_0);

    [Fact]
    public void CancelRequest_257ByteKeyUnder32_IsRejected()
        => AssertRejected(new CancelRequest(1234, new byte[257]), "CancelRequest", "secretKey", PgProtocolVersion.V3_2);

    [Fact]
    public void Query_OverALoweredLimit_IsRejected()
    {
        PgLimits limits = PgLimits.Default.With(PgDirection.Frontend, (byte)'Q', 100);
        var query = new Query(new string('x', 200));
        PgEncodeException e = AssertRejected(query, "Query", null, limits: limits);
        Assert.Contains("100", e.Reason, StringComparison.Ordinal);
        Assert.Equal(206, query.ToArray().Length);
    }

    [Fact]
    public void StartupMessage_OverALoweredLimit_IsRejected()
        => AssertRejected(new StartupMessage(196608, [new StartupMessage.Parameter("user", new string('u', 100))]), "StartupMessage", null, limits: PgLimits.Default.WithStartupPacket(64));

    [Theory]
    [InlineData(196607)]
    [InlineData(262144)]
    [InlineData(0)]
    [InlineData(-1)]
    public void StartupMessage_ProtocolVersionOutsideRange_IsRejected(int version)
        => AssertRejected(new StartupMessage(version, []), "StartupMessage", "protocolVersion");

    private static PgEncodeException AssertRejected(IPgMessage message, string name, string? field, PgProtocolVersion version = default, PgLimits? limits = null)
    {
        var writer = new ArrayBufferWriter<byte>();
        PgEncodeException e = Assert.Throws<PgEncodeException>(() => message.Encode(writer, version, limits));
        Assert.Equal(name, e.MessageName);
        Assert.Equal(field, e.Field);
        Assert.False(string.IsNullOrEmpty(e.Reason));
        Assert.Contains(field is null ? name : name + "." + field, e.Message, StringComparison.Ordinal);
        Assert.Equal(0, writer.WrittenCount);

        byte[] destination = new byte[message.EncodedLength + 16];
        PgEncodeException spanError = Assert.Throws<PgEncodeException>(() => message.Encode(destination, version, limits));
        Assert.Equal((name, field), (spanError.MessageName, spanError.Field));
        Assert.All(destination, b => Assert.Equal(0, b));

        Assert.Throws<PgEncodeException>(() => message.ToArray(version, limits));
        Assert.Throws<PgEncodeException>(() => message.Validate(version, limits));
        return e;
    }
}
