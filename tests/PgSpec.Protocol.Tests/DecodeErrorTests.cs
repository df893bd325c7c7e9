using PgSpec.Protocol.Tests.Support;

namespace PgSpec.Protocol.Tests;

/// <summary>
/// One malformed body per decoding rule. Each must be rejected the same way by TryDecode, Decode,
/// TryValidate, View.TryRead and the dispatcher, with the message, the field and the offset from
/// the message's first byte (its type byte; for untyped packets, its length word).
/// </summary>
public class DecodeErrorTests
{
    private static byte[] Hex(string hex) => Convert.FromHexString(hex.Replace(" ", "", StringComparison.Ordinal));

    [Fact]
    public void AuthenticationOk_CodeOne_IsALiteralMismatch()
    {
        PgDecodeError error = AssertRejected<AuthenticationOk>(Hex("00000001"), null, "code", 5);
        Assert.Contains("expected 0, found 1", error.Reason, StringComparison.Ordinal);
        Assert.Throws<PgProtocolException>(() => AuthenticationOk.Decode(Hex("00000001")));
    }

    [Fact]
    public void DataRow_CountLargerThanTheBody_IsRejectedBeforeAllocating()
    {
        byte[] body = Hex("7530"); // 30000 columns, no bytes for them
        AssertRejected<DataRow>(body, null, "columns", 7);
        DataRow.TryDecode(body, null, out _, out _);
        long before = GC.GetAllocatedBytesForCurrentThread();
        Assert.False(DataRow.TryDecode(body, null, out _, out _));
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 1024);
    }

    [Fact]
    public void DataRow_NegativeValueLengthOtherThanMinusOne_IsRejected()
    {
        PgDecodeError error = AssertRejected<DataRow>(Hex("0002 ffffffff fffffffe"), null, "valueLength", 11);
        Assert.Contains("-2", error.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void DataRow_ValueLengthLargerThanWhatRemains_IsRejected()
        => AssertRejected<DataRow>(Hex("0001 00000005 41 42"), null, "valueLength", 7);

    [Theory]
    [InlineData("0002 00000001 41 000000", "Int32 needs 4 bytes but only 3 remain")]
    [InlineData("0002 ffffffff fffffffe", "negative length -2 (only -1, NULL, is allowed)")]
    [InlineData("0001 00000005 41 42", "length 5 is more than the 2 bytes that remain")]
    [InlineData("0003 00000000 ffffffff 00000002 4142 43", "1 bytes left over after the last field")]
    public void DataRow_ValidationLoop_GivesTheErrorsOfTheItemByItemDecode(string hex, string reason)
    {
        // TryValidate checks the columns in one loop (SkipValues); TryDecode reads them one by one.
        byte[] body = Hex(hex);
        Assert.False(DataRow.TryDecode(body, null, out _, out PgDecodeError decoded));
        Assert.False(DataRow.TryValidate(body, null, out PgDecodeError validated));
        Assert.Equal(decoded, validated);
        Assert.Equal(reason, validated.Reason);
    }

    [Fact]
    public void SpanReader_NegativeLengthNotNullable_IsRejectedEvenForMinusOne()
    {
        var reader = new PgSpanReader(Hex("ffffffff"), "Test", 5);
        Assert.False(reader.ReadValueLength("len", nullable: false, out _));
        Assert.Equal(("Test", "len", 5L), (reader.Error.MessageName, reader.Error.Field, reader.Error.Offset));

        var nullable = new PgSpanReader(Hex("ffffffff"), "Test", 5);
        Assert.True(nullable.ReadValueLength("len", nullable: true, out int length));
        Assert.Equal(-1, length);
    }

    [Fact]
    public void Query_StringWithoutNul_IsRejected()
    {
        AssertRejected<Query>("SELECT 1"u8.ToArray(), null, "queryString", 5);
        var e = Assert.Throws<PgProtocolException>(() => Query.Decode("SELECT 1"u8.ToArray()));
        Assert.Equal(("Query", "queryString", 5L), (e.MessageName, e.Field, e.Offset));
    }

    [Fact]
    public void Close_StringWithoutNulAfterTheTarget_IsRejectedAtTheString()
        => AssertRejected<Close>([(byte)'S', (byte)'a'], null, "name", 6);

    [Fact]
    public void ReadyForQuery_LeftoverByte_IsRejected()
    {
        PgDecodeError error = AssertRejected<ReadyForQuery>("II"u8.ToArray(), null, null, 6);
        Assert.Contains("left over", error.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Sync_AnyBody_IsLeftover()
        => AssertRejected<Sync>([0], null, null, 5);

    [Fact]
    public void ReadyForQuery_StatusX_IsNotAnEnumValue()
        => AssertRejected<ReadyForQuery>("X"u8.ToArray(), null, "transactionStatus", 5);

    [Fact]
    public void Close_TargetQ_IsNotAnEnumValue()
        => AssertRejected<Close>("Qname\0"u8.ToArray(), null, "target", 5);

    [Fact]
    public void CopyInResponse_FormatTwo_IsNotAnEnumValue()
        => AssertRejected<CopyInResponse>(Hex("02 0000"), null, "overallFormat", 5);

    [Fact]
    public void Query_InvalidUtf8_IsRejectedOwnedButReadByTheView()
    {
        byte[] body = Hex("53454c45435420c328 00"); // "SELECT " then C3 28: a lead byte without its continuation
        Assert.False(Query.TryDecode(body, null, out _, out PgDecodeError error));
        Assert.Equal(("Query", "queryString", 5L), (error.MessageName, error.Field, error.Offset));
        Assert.Contains("UTF-8", error.Reason, StringComparison.Ordinal);

        Assert.True(Query.View.TryRead(body, null, out Query.View view, out _));
        Assert.Equal(body[..^1], view.QueryString.ToArray());
        Assert.True(FrontendMessages.TryValidate(FrontendMessageKind.Query, body, null, out _));
        Assert.Throws<PgProtocolException>(() => Query.View.Read(body).ToMessage());
    }

    [Fact]
    public void BackendKeyData_FiveByteKeyUnder30_IsRejectedButAcceptedUnder32()
    {
        byte[] body = Hex("00001234 0102030405");
        var v30 = new DecodeContext { ProtocolVersion = PgProtocolVersion.V3_0 };
        PgDecodeError error = AssertRejected<BackendKeyData>(body, v30, "secretKey", 9);
        Assert.Contains("exactly 4", error.Reason, StringComparison.Ordinal);
        Assert.True(BackendKeyData.TryDecode(body, new DecodeContext { ProtocolVersion = PgProtocolVersion.V3_2 }, out BackendKeyData? key, out _));
        Assert.Equal(5, key.SecretKey.Length);
    }

    [Fact]
    public void BackendKeyData_300ByteKeyUnder32_IsRejected()
    {
        byte[] body = [.. Hex("00001234"), .. new byte[300]];
        AssertRejected<BackendKeyData>(body, new DecodeContext { ProtocolVersion = PgProtocolVersion.V3_2 }, "secretKey", 9);
        AssertRejected<BackendKeyData>([.. Hex("00001234"), .. new byte[257]], null, "secretKey", 9);
        Assert.True(BackendKeyData.TryDecode([.. Hex("00001234"), .. new byte[256]], null, out _, out _));
    }

    [Fact]
    public void CancelRequest_FiveByteKeyUnder30_IsRejected()
    {
        byte[] body = Hex("04d2162e 00001234 0102030405");
        AssertRejected<CancelRequest>(body, new DecodeContext { ProtocolVersion = PgProtocolVersion.V3_0 }, "secretKey", 12);
        Assert.True(CancelRequest.TryDecode(body, new DecodeContext { ProtocolVersion = PgProtocolVersion.V3_2 }, out _, out _));
    }

    [Fact]
    public void CancelRequest_300ByteKeyUnder32_IsRejected()
        => AssertRejected<CancelRequest>([.. Hex("04d2162e 00001234"), .. new byte[300]], new DecodeContext { ProtocolVersion = PgProtocolVersion.V3_2 }, "secretKey", 12);

    [Fact]
    public void CancelRequest_ThreeByteKey_IsRejectedUnderEveryVersion()
    {
        AssertRejected<CancelRequest>(Hex("04d2162e 00001234 010203"), new DecodeContext { ProtocolVersion = PgProtocolVersion.V3_0 }, "secretKey", 12);
        AssertRejected<CancelRequest>(Hex("04d2162e 00001234 010203"), new DecodeContext { ProtocolVersion = PgProtocolVersion.V3_2 }, "secretKey", 12);
    }

    [Theory]
    [InlineData("00020000")] // 2.0
    [InlineData("00040000")] // 4.0
    [InlineData("0002ffff")] // just below 3.0
    public void StartupMessage_VersionOutOfRange_IsRejected(string version)
        => AssertRejected<StartupMessage>(Hex(version + "00"), null, "protocolVersion", 4);

    [Fact]
    public void StartupMessage_ParametersWithoutTerminator_AreRejected()
        => AssertRejected<StartupMessage>([.. Hex("00030000"), .. "user\0bob\0"u8], null, "parameters", 17);

    [Fact]
    public void ErrorResponse_FieldsWithoutTerminator_AreRejected()
        => AssertRejected<ErrorResponse>("SERROR\0"u8.ToArray(), null, "fields", 12);

    [Fact]
    public void ErrorResponse_CodeWithoutValue_IsRejected()
        => AssertRejected<ErrorResponse>("S"u8.ToArray(), null, "value", 6);

    [Fact]
    public void AuthenticationSASL_MechanismsWithoutTerminator_AreRejected()
        => AssertRejected<AuthenticationSASL>([.. Hex("0000000a"), .. "SCRAM-SHA-256\0"u8], null, "mechanisms", 23);

    [Fact]
    public void NegotiateProtocolVersion_NegativeCount_IsRejected()
        => AssertRejected<NegotiateProtocolVersion>(Hex("00030000 ffffffff"), null, "unrecognizedOptionCount", 9);

    [Fact]
    public void Bind_TruncatedAfterParameters_IsRejectedAtTheMissingCount()
        => AssertRejected<Bind>(Hex("00 00 0000 0000"), null, "resultFormatCount", 11);

    [Fact]
    public void DecodeError_ShiftAndText_NameMessageFieldAndOffset()
    {
        var error = new PgDecodeError("DataRow", "columns", 7, "too many");
        Assert.Equal(107, error.Shift(100).Offset);
        Assert.Equal("DataRow.columns: too many (at offset 7)", error.ToString());
        Assert.Equal("frame: bad (at offset 0)", new PgDecodeError("frame", null, 0, "bad").ToString());
        var exception = new PgProtocolException(error);
        Assert.Equal(error, exception.Error);
        Assert.Contains(error.ToString(), exception.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// Asserts that every decoder of <typeparamref name="T"/> rejects <paramref name="body"/> with
    /// the same error, naming the message, <paramref name="field"/> and <paramref name="offset"/>.
    /// </summary>
    private static PgDecodeError AssertRejected<T>(byte[] body, DecodeContext? context, string? field, long offset)
        where T : IPgMessage
    {
        MessageCodec codec = MessageCodec.For(typeof(T));
        string name = typeof(T).Name;

        Assert.Null(codec.TryDecode(body, context, out PgDecodeError error));
        Assert.Equal(name, error.MessageName);
        Assert.Equal(field, error.Field);
        Assert.Equal(offset, error.Offset);
        Assert.False(string.IsNullOrEmpty(error.Reason));

        Assert.False(codec.TryValidate(body, context, out PgDecodeError validateError));
        Assert.Equal(error, validateError);
        Assert.Null(codec.ViewToMessage(body, context, out PgDecodeError viewError));
        Assert.Equal(error, viewError);

        PgMessageDescriptor descriptor = SpecGen.Descriptor(name);
        if (descriptor.Frontend)
        {
            Assert.False(FrontendMessages.TryDecode(Enum.Parse<FrontendMessageKind>(name), body, context, out _, out PgDecodeError dispatched));
            Assert.Equal(error, dispatched);
        }

        if (descriptor.Backend)
        {
            Assert.False(BackendMessages.TryDecode(Enum.Parse<BackendMessageKind>(name), body, context, out _, out PgDecodeError dispatched));
            Assert.Equal(error, dispatched);
        }

        // The tracer refuses it too, and writes nothing; bodies the dispatcher cannot name as this
        // message (an unknown sub-code or version) are traced as libpq traces unknown messages.
        var output = new MemoryStream();
        bool typed = descriptor.TypeByte >= 0;
        PgDirection direction = descriptor.Frontend ? PgDirection.Frontend : PgDirection.Backend;
        bool named = !typed
            ? FrontendMessages.ClassifyStartup(body).ToString() == name
            : direction == PgDirection.Frontend
                ? FrontendMessages.Classify((byte)descriptor.TypeByte, body, context).ToString() == name
                : BackendMessages.Classify((byte)descriptor.TypeByte, body, context).ToString() == name;
        bool traced = typed
            ? PgTrace.TryTrace(direction, (byte)descriptor.TypeByte, body, context, new PgTraceWriter(output), out PgDecodeError traceError)
            : PgTrace.TryTraceStartup(body, context, new PgTraceWriter(output), out traceError);
        Assert.Equal(!named, traced);
        if (named)
        {
            Assert.Equal(error, traceError);
            Assert.Equal(0, output.Length);
        }

        return error;
    }
}
