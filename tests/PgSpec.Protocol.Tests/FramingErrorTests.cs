using System.Buffers;
using System.Text;

namespace PgSpec.Protocol.Tests;

/// <summary>One malformed stream per framing rule, through <see cref="PgFramer"/> and <see cref="PgMessageReader"/>.</summary>
public class FramingErrorTests
{
    private static byte[] Hex(string hex) => Convert.FromHexString(hex.Replace(" ", "", StringComparison.Ordinal));

    [Fact]
    public void Framer_LengthBelowFour_IsMalformed()
    {
        var buffer = new ReadOnlySequence<byte>(Hex("51 00000003"));
        Assert.Equal(PgFrameStatus.Malformed, PgFramer.TryReadMessage(ref buffer, PgDirection.Frontend, null, out _, out PgDecodeError error));
        AssertError(error, "frame", "length", 1);
        Assert.Equal(5, buffer.Length);
    }

    [Fact]
    public void Reader_LengthBelowFourAfterAMessage_ReportsTheStreamOffset()
    {
        var reader = new PgMessageReader(PgDirection.Frontend, new DecodeContext { Phase = PgSessionPhase.Normal });
        var buffer = new ReadOnlySequence<byte>([.. new Sync().ToArray(), .. Hex("51 00000000")]);
        Assert.Equal(PgReadStatus.Message, reader.TryRead(ref buffer, out PgReceivedMessage sync, out _));
        Assert.Equal(FrontendMessageKind.Sync, sync.FrontendKind);
        Assert.Equal(PgReadStatus.Malformed, reader.TryRead(ref buffer, out _, out PgDecodeError error));
        AssertError(error, "frame", "length", 6);
    }

    [Fact]
    public void Reader_SyncFromFrontendOverItsLimit_IsMalformedBeforeTheBodyArrives()
    {
        var reader = new PgMessageReader(PgDirection.Frontend, new DecodeContext { Phase = PgSessionPhase.Normal });
        var buffer = new ReadOnlySequence<byte>(Hex("53 000186a0")); // 'S', 100000: only the header has arrived
        Assert.Equal(PgReadStatus.Malformed, reader.TryRead(ref buffer, out _, out PgDecodeError error));
        AssertError(error, "frame", "length", 1);
        Assert.Contains("10004", error.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Reader_SyncFromBackendWithSameLength_IsMalformedToo()
    {
        // 'S' from the backend is ParameterStatus, limited to 30000.
        var reader = new PgMessageReader(PgDirection.Backend);
        var buffer = new ReadOnlySequence<byte>(Hex("53 000186a0"));
        Assert.Equal(PgReadStatus.Malformed, reader.TryRead(ref buffer, out _, out PgDecodeError error));
        Assert.Contains("30000", error.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Reader_RaisedLimit_WaitsForTheBody()
    {
        DecodeContext context = new() { Phase = PgSessionPhase.Normal, Limits = PgLimits.Default.With(PgDirection.Frontend, (byte)'S', 200000) };
        var reader = new PgMessageReader(PgDirection.Frontend, context);
        var buffer = new ReadOnlySequence<byte>(Hex("53 000186a0"));
        Assert.Equal(PgReadStatus.Incomplete, reader.TryRead(ref buffer, out _, out _));
        Assert.Equal(5, buffer.Length);
    }

    [Fact]
    public void Reader_LengthNear2GiB_IsMalformedAtOnceWithoutAllocating()
    {
        byte[] header = Hex("64 7ffffff0"); // CopyData declaring almost 2 GiB
        Malformed(header); // warm up
        long before = GC.GetAllocatedBytesForCurrentThread();
        PgDecodeError error = Malformed(header);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.InRange(allocated, 0, 1024);
        AssertError(error, "frame", "length", 1);

        static PgDecodeError Malformed(byte[] header)
        {
            var reader = new PgMessageReader(PgDirection.Backend);
            var buffer = new ReadOnlySequence<byte>(header);
            Assert.Equal(PgReadStatus.Malformed, reader.TryRead(ref buffer, out _, out PgDecodeError error));
            return error;
        }
    }

    [Fact]
    public void Framer_LengthNear2GiBUnderNoLimit_IsIncompleteWithoutAllocating()
    {
        PgLimits limits = PgLimits.Default.WithAll(PgDirection.Backend, int.MaxValue);
        byte[] header = Hex("64 7ffffff0 00000000");
        var buffer = new ReadOnlySequence<byte>(header);
        PgFramer.TryReadMessage(ref buffer, PgDirection.Backend, limits, out _, out _);
        long before = GC.GetAllocatedBytesForCurrentThread();
        buffer = new ReadOnlySequence<byte>(header);
        PgFrameStatus status = PgFramer.TryReadMessage(ref buffer, PgDirection.Backend, limits, out _, out _);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(PgFrameStatus.Incomplete, status);
        Assert.InRange(allocated, 0, 1024);
        Assert.Equal(header.Length, buffer.Length);
    }

    [Theory]
    [InlineData(7)]
    [InlineData(4)]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(10001)]
    [InlineData(int.MaxValue)]
    public void StartupPacket_LengthOutside8To10000_IsMalformed(int length)
    {
        byte[] bytes = new byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(bytes, length);
        var buffer = new ReadOnlySequence<byte>(bytes);
        Assert.Equal(PgFrameStatus.Malformed, PgFramer.TryReadStartupPacket(ref buffer, null, out _, out PgDecodeError error));
        AssertError(error, "frame", "length", 0);

        var reader = new PgMessageReader(PgDirection.Frontend);
        buffer = new ReadOnlySequence<byte>(bytes);
        Assert.Equal(PgReadStatus.Malformed, reader.TryRead(ref buffer, out _, out error));
        AssertError(error, "frame", "length", 0);
    }

    [Fact]
    public void StartupPacket_Length8And10000_AreFramed()
    {
        var buffer = new ReadOnlySequence<byte>(new SSLRequest().ToArray());
        Assert.Equal(PgFrameStatus.Complete, PgFramer.TryReadStartupPacket(ref buffer, null, out PgFrame frame, out _));
        Assert.Equal((PgFrameKind.StartupPacket, 8, 4L), (frame.Kind, frame.Length, frame.Body.Length));

        byte[] big = new byte[10000];
        big[2] = 0x27;
        big[3] = 0x10;
        buffer = new ReadOnlySequence<byte>(big);
        Assert.Equal(PgFrameStatus.Complete, PgFramer.TryReadStartupPacket(ref buffer, null, out frame, out _));
        Assert.Equal(10000, frame.WireLength);
        Assert.True(buffer.IsEmpty);
    }

    [Theory]
    [InlineData((byte)'X')]
    [InlineData((byte)'E')]
    [InlineData((byte)0)]
    public void EncryptionAnswer_OtherThanSNG_IsMalformed(byte answer)
    {
        var buffer = new ReadOnlySequence<byte>([answer]);
        Assert.Equal(PgFrameStatus.Malformed, PgFramer.TryReadEncryptionAnswer(ref buffer, out _, out PgDecodeError error));
        AssertError(error, "frame", "answer", 0);

        var reader = new PgMessageReader(PgDirection.Backend, new DecodeContext { ExpectEncryptionAnswer = true });
        buffer = new ReadOnlySequence<byte>([answer]);
        Assert.Equal(PgReadStatus.Malformed, reader.TryRead(ref buffer, out _, out error));
        AssertError(error, "frame", "answer", 0);
    }

    [Theory]
    [InlineData('S')]
    [InlineData('N')]
    [InlineData('G')]
    public void EncryptionAnswer_SNG_IsReadAsOneByte(char answer)
    {
        var context = new DecodeContext { ExpectEncryptionAnswer = true };
        var reader = new PgMessageReader(PgDirection.Backend, context);
        var buffer = new ReadOnlySequence<byte>([(byte)answer, .. new ReadyForQuery(TransactionStatus.Idle).ToArray()]);
        Assert.Equal(PgReadStatus.Message, reader.TryRead(ref buffer, out PgReceivedMessage message, out _));
        Assert.Equal(PgFrameKind.EncryptionAnswer, message.FrameKind);
        Assert.Equal(answer, message.TypeByte);
        Assert.False(message.IsUnknown);
        Assert.False(context.ExpectEncryptionAnswer);
        Assert.Equal(PgReadStatus.Message, reader.TryRead(ref buffer, out message, out _));
        Assert.Equal(BackendMessageKind.ReadyForQuery, message.BackendKind);
        Assert.Equal(1, message.Offset);
    }

    [Fact]
    public void UnknownTypeByte_IsReadAsUnknownAndTracedAsLibpqDoes()
    {
        byte[] bytes = Hex("59 00000008 01020304");
        var reader = new PgMessageReader(PgDirection.Backend);
        var buffer = new ReadOnlySequence<byte>(bytes);
        Assert.Equal(PgReadStatus.Message, reader.TryRead(ref buffer, out PgReceivedMessage message, out _));
        Assert.True(message.IsUnknown);
        Assert.Equal(BackendMessageKind.Unknown, message.BackendKind);
        Assert.Equal("Unknown", message.Name);
        Assert.Equal((int)'Y', message.TypeByte);
        Assert.True(buffer.IsEmpty);

        IPgMessage owned = message.ToMessage(reader.Context);
        UnknownMessage unknown = Assert.IsType<UnknownMessage>(owned);
        Assert.Equal((byte)'Y', unknown.TypeCode);
        Assert.Equal(Hex("01020304"), unknown.Body.ToArray());
        Assert.Equal(bytes, unknown.ToArray());

        var output = new MemoryStream();
        message.Trace(new PgTraceWriter(output), reader.Context);
        Assert.Equal("B\t8\tUnknown message: 59\nmismatched message length: consumed 4, expected 8\n", Encoding.UTF8.GetString(output.ToArray()));
    }

    [Fact]
    public void UnknownAuthenticationCode_IsReadAsUnknown()
    {
        byte[] bytes = Hex("52 00000008 00000063"); // 'R' with code 99
        var reader = new PgMessageReader(PgDirection.Backend);
        var buffer = new ReadOnlySequence<byte>(bytes);
        Assert.Equal(PgReadStatus.Message, reader.TryRead(ref buffer, out PgReceivedMessage message, out _));
        Assert.True(message.IsUnknown);
        Assert.Equal(new UnknownMessage((byte)'R', Hex("00000063")), message.ToMessage());
        var output = new MemoryStream();
        message.Trace(new PgTraceWriter(output), reader.Context);
        Assert.StartsWith("B\t8\tUnknown authentication message 99\n", Encoding.UTF8.GetString(output.ToArray()), StringComparison.Ordinal);
    }

    [Fact]
    public void Reader_MalformedBody_ConsumesNothingAndReportsTheStreamOffset()
    {
        // A ReadyForQuery with status 'X', after a valid one.
        byte[] bytes = [.. new ReadyForQuery(TransactionStatus.Idle).ToArray(), .. Hex("5a 00000005 58")];
        var reader = new PgMessageReader(PgDirection.Backend);
        var buffer = new ReadOnlySequence<byte>(bytes);
        Assert.Equal(PgReadStatus.Message, reader.TryRead(ref buffer, out _, out _));
        Assert.Equal(PgReadStatus.Malformed, reader.TryRead(ref buffer, out _, out PgDecodeError error));
        AssertError(error, "ReadyForQuery", "transactionStatus", 11);
        Assert.Equal(6, buffer.Length);
        Assert.Equal(6, reader.Position);
    }

    [Fact]
    public void Reader_ValidateOff_NamesAMalformedBodyWithoutCheckingIt()
    {
        var reader = new PgMessageReader(PgDirection.Backend) { Validate = false };
        var buffer = new ReadOnlySequence<byte>(Hex("5a 00000005 58"));
        Assert.Equal(PgReadStatus.Message, reader.TryRead(ref buffer, out PgReceivedMessage message, out _));
        Assert.Equal(BackendMessageKind.ReadyForQuery, message.BackendKind);
        try
        {
            message.ToMessage();
            Assert.Fail("ToMessage accepted a malformed body");
        }
        catch (PgProtocolException e)
        {
            AssertError(e.Error, "ReadyForQuery", "transactionStatus", 5);
        }
    }

    private static void AssertError(PgDecodeError error, string message, string? field, long offset)
    {
        Assert.Equal(message, error.MessageName);
        Assert.Equal(field, error.Field);
        Assert.Equal(offset, error.Offset);
        Assert.False(string.IsNullOrEmpty(error.Reason));
    }
}
