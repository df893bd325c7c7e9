using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using PgSpec.Protocol.Tests.Support;

namespace PgSpec.Protocol.Tests;

/// <summary>
/// Every public way in to the codec, given malformed bytes, gives the typed error and nothing else;
/// and the borrowed paths check a body once.
/// </summary>
public class PublicEntryPointTests
{
    [Fact]
    public void Trace_OfAShortReadyForQueryOrRowDescription_ThrowsTheTypedError()
    {
        var trace = new PgTraceWriter(Stream.Null);

        PgProtocolException ready = Assert.Throws<PgProtocolException>(() => ReadyForQuery.Trace([], trace, 'B'));
        PgProtocolException rows = Assert.Throws<PgProtocolException>(() => RowDescription.Trace([0, 1, (byte)'a'], trace, 'B'));
        PgProtocolException dispatched = Assert.Throws<PgProtocolException>(() => BackendMessages.Trace(BackendMessageKind.DataRow, [0, 1, 0, 0, 0, 9], trace));

        Assert.Equal("ReadyForQuery", ready.MessageName);
        Assert.Equal("RowDescription", rows.MessageName);
        Assert.Equal("DataRow", dispatched.MessageName);
    }

    [Theory]
    [MemberData(nameof(CodecPropertyTests.MessageNames), MemberType = typeof(CodecPropertyTests))]
    public void EveryEntryPoint_OnEveryCutAndCorruptionOfAValidBody_GivesThePgProtocolExceptionOrSucceeds(string name)
    {
        PgMessageDescriptor descriptor = SpecGen.Descriptor(name);
        MessageCodec codec = MessageCodec.For(descriptor.MessageType);
        char direction = descriptor.Frontend ? 'F' : 'B';
        Check.One(
            Config.QuickThrowOnFailure.WithMaxTest(40).WithName(name),
            Prop.ForAll(SpecGen.Message(descriptor).ToArbitrary(), Gen.Choose(0, 255).ToArbitrary(), (g, noise) =>
            {
                byte[] body = CodecPropertyTests.Body(descriptor, g.Message.ToArray(g.Version)).ToArray();
                for (int cut = 0; cut <= body.Length; cut++)
                {
                    byte[] prefix = body[..cut];
                    byte[] corrupted = [.. prefix];
                    if (cut > 0)
                    {
                        corrupted[cut - 1] ^= (byte)(noise | 1);
                    }

                    foreach (byte[] candidate in new[] { prefix, corrupted })
                    {
                        DecodeContext context = g.NewContext();
                        bool valid = codec.TryValidate(candidate, context, out _);
                        OnlyTyped(valid, () => codec.Trace(candidate, new PgTraceWriter(Stream.Null), direction, context));
                        _ = codec.TryDecode(candidate, context, out _);
                    }
                }
            }));
    }

    [Fact]
    public async Task PipeReader_CancelPendingRead_IsACancellationNotTheEndOfTheStream_AndReadingGoesOn()
    {
        var pipe = new Pipe();
        var reader = new PgPipeMessageReader(pipe.Reader, PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal });

        ValueTask<bool> pending = reader.ReadAsync();
        pipe.Reader.CancelPendingRead();
        await Assert.ThrowsAsync<OperationCanceledException>(async () => await pending);

        await pipe.Writer.WriteAsync(new ReadyForQuery(TransactionStatus.Idle).ToArray());
        Assert.True(await reader.ReadAsync());
        Assert.Equal(BackendMessageKind.ReadyForQuery, reader.Current.BackendKind);
        await pipe.Writer.CompleteAsync();
        Assert.False(await reader.ReadAsync());
    }

    [Fact]
    public async Task PipeReader_WhenTheDecodeContextThrows_LeavesThePipeReadable()
    {
        var pipe = new Pipe();
        var context = new ThrowingContext();
        var reader = new PgPipeMessageReader(pipe.Reader, PgDirection.Backend, context);
        await pipe.Writer.WriteAsync(new ReadyForQuery(TransactionStatus.Idle).ToArray());

        await Assert.ThrowsAsync<InvalidOperationException>(async () => await reader.ReadAsync());

        // The read was completed (AdvanceTo) despite the exception: the pipe can be read again.
        context.Throw = false;
        Assert.True(await reader.ReadAsync());
        Assert.Equal(BackendMessageKind.ReadyForQuery, reader.Current.BackendKind);
    }

    [Fact]
    public void View_OfAMessageTheReaderValidated_IsNotCheckedAgain_AndOfOneItDidNotIs()
    {
        byte[] row = new DataRow([Encoding.ASCII.GetBytes("x"), null]).ToArray();
        byte[] broken = [(byte)'D', 0, 0, 0, 10, 0, 1, 0, 0, 0, 9];

        var validating = new PgMessageReader(PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal });
        Assert.Equal(PgReadStatus.Message, validating.TryRead(row, out _, out PgReceivedMessage message, out _));
        Assert.True(message.IsValidated);
        DataRow.View view = DataRow.View.Read(message);
        Assert.Equal(2, view.Columns.Count);

        Assert.True(Throws<ArgumentException>(row, validate: true, static m => ReadyForQuery.View.Read(m)));
        Assert.True(Throws<PgProtocolException>(broken, validate: false, static m => DataRow.View.Read(m)));
        Assert.False(Throws<PgProtocolException>(row, validate: false, static m => DataRow.View.Read(m)));
    }

    private delegate void MessageAction(PgReceivedMessage message);

    /// <summary>Reads one backend message (validated or not) and tells whether the action throws <typeparamref name="T"/>.</summary>
    private static bool Throws<T>(byte[] bytes, bool validate, MessageAction action)
        where T : Exception
    {
        var reader = new PgMessageReader(PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal }) { Validate = validate };
        Assert.Equal(PgReadStatus.Message, reader.TryRead(bytes, out _, out PgReceivedMessage message, out _));
        Assert.Equal(validate, message.IsValidated);
        try
        {
            action(message);
            return false;
        }
        catch (T)
        {
            return true;
        }
    }

    [Fact]
    public async Task PipeReader_ABodySplitAcrossSegments_IsTheSameBytesAsInOneSegment()
    {
        byte[] row = new DataRow([new byte[3000], Encoding.ASCII.GetBytes("tail")]).ToArray();
        var pipe = new Pipe(new PipeOptions(minimumSegmentSize: 512, pauseWriterThreshold: 0));
        var reader = new PgPipeMessageReader(pipe.Reader, PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal });
        for (int i = 0; i < row.Length; i += 500)
        {
            pipe.Writer.Write(row.AsSpan(i, Math.Min(500, row.Length - i)));
            await pipe.Writer.FlushAsync();
        }

        Assert.True(await reader.ReadAsync());
        PgReceivedMessage message = reader.Current;
        Assert.Equal(row.AsSpan(5).ToArray(), message.Body.ToArray());
        string? last = null;
        foreach (PgValue column in DataRow.View.Read(message).Columns)
        {
            last = Encoding.ASCII.GetString(column.Bytes);
        }

        Assert.Equal("tail", last);
    }

    private static void OnlyTyped(bool valid, Action action)
    {
        try
        {
            action();
        }
        catch (PgProtocolException) when (!valid)
        {
        }
    }

    private sealed class ThrowingContext : DecodeContext
    {
        public ThrowingContext() => Phase = PgSessionPhase.Normal;

        public bool Throw { get; set; } = true;

        public override void ObserveBackend(BackendMessageKind kind, ReadOnlySpan<byte> body)
        {
            if (Throw)
            {
                throw new InvalidOperationException("a context of the caller's that throws");
            }

            base.ObserveBackend(kind, body);
        }
    }
}
