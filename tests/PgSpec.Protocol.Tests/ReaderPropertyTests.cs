using System.Buffers;
using FsCheck;
using FsCheck.Fluent;
using PgSpec.Protocol.Tests.Support;

namespace PgSpec.Protocol.Tests;

/// <summary>
/// Streams of generated messages read by <see cref="PgMessageReader"/>: from one segment, from a
/// sequence cut at random points, and fed in pieces as they would arrive from a socket.
/// </summary>
public class ReaderPropertyTests
{
    private const int MaxTest = 100;

    private static readonly PgMessageDescriptor[] s_backend = [.. PgProtocolSpec.Messages.Where(m => m.Backend)];
    private static readonly PgMessageDescriptor[] s_frontendTyped = [.. PgProtocolSpec.Messages.Where(m => m.Frontend && m.TypeByte >= 0)];
    private static readonly PgMessageDescriptor[] s_frontendUntyped = [.. PgProtocolSpec.Messages.Where(m => m.Frontend && m.TypeByte < 0 && m.Name != nameof(StartupMessage))];

    [Fact]
    public void BackendStream_OneSegmentOrSplit_GivesTheMessagesAndConsumesEverything()
    {
        Gen<IPgMessage[]> messages = Messages(s_backend, 0, 20).Select(AfterDowngrade);
        Verify(messages, () => new PgMessageReader(PgDirection.Backend));
    }

    [Fact]
    public void FrontendTypedStream_NormalPhase_GivesTheMessagesAndConsumesEverything()
    {
        Verify(Messages(s_frontendTyped, 0, 20), () => new PgMessageReader(PgDirection.Frontend, new DecodeContext { Phase = PgSessionPhase.Normal }));
    }

    [Fact]
    public void FrontendStream_FromStartupPackets_GivesTheMessagesAndConsumesEverything()
    {
        Gen<IPgMessage[]> messages =
            from before in Messages(s_frontendUntyped, 0, 3)
            from startup in SpecGen.Message(SpecGen.Descriptor(nameof(StartupMessage)), PgProtocolVersion.Latest)
            from after in Messages(s_frontendTyped, 0, 12)
            select (IPgMessage[])[.. before, startup.Message, .. after];
        Verify(messages, () => new PgMessageReader(PgDirection.Frontend));
    }

    /// <summary>Generated messages, valid under the newest protocol.</summary>
    private static Gen<IPgMessage[]> Messages(PgMessageDescriptor[] descriptors, int min, int max)
        => Gen.Choose(min, max)
            .SelectMany(n => Gen.ArrayOf(SpecGen.OneOf(descriptors, PgProtocolVersion.Latest), n))
            .Select(messages => messages.Select(g => g.Message).ToArray());

    /// <summary>
    /// A NegotiateProtocolVersion that offers an older version than the one in force lowers it, so
    /// a later BackendKeyData must carry a 4-byte key.
    /// </summary>
    private static IPgMessage[] AfterDowngrade(IPgMessage[] messages)
    {
        int version = PgProtocolVersion.Latest.Code;
        for (int i = 0; i < messages.Length; i++)
        {
            if (messages[i] is NegotiateProtocolVersion negotiate && negotiate.NewestProtocolVersion < version)
            {
                version = negotiate.NewestProtocolVersion;
            }
            else if (messages[i] is BackendKeyData key && !new PgProtocolVersion(version).HasVariableCancelKey && key.SecretKey.Length != 4)
            {
                messages[i] = new BackendKeyData(key.ProcessId, key.SecretKey[..4]);
            }
        }

        return messages;
    }

    private static void Verify(Gen<IPgMessage[]> messages, Func<PgMessageReader> newReader)
    {
        Gen<(IPgMessage[], int[])> gen = messages.SelectMany(m => Gen.Choose(0, 12).SelectMany(n => Gen.ArrayOf(Gen.Choose(0, 1_000_000), n)), (m, cuts) => (m, cuts));
        Config config = FsCheck.Config.QuickThrowOnFailure.WithMaxTest(MaxTest).WithQuietOnSuccess(true);
        Check.One(config, Prop.ForAll(gen.ToArbitrary(), ((IPgMessage[] Messages, int[] Cuts) input) =>
        {
            IPgMessage[] expected = input.Messages;
            byte[] data = [.. expected.SelectMany(m => m.ToArray())];
            int[] cuts = [.. input.Cuts.Select(c => (int)((long)c * data.Length / 1_000_000))];

            // All at once, from one segment.
            ReadAll(newReader(), new ReadOnlySequence<byte>(data), expected, incremental: false);

            // All at once, from many segments.
            ReadOnlySequence<byte> split = Segments.Split(data, cuts);
            ReadAll(newReader(), split, expected, incremental: false);

            // Segment by segment, as they arrive.
            ReadAll(newReader(), split, expected, incremental: true);

            // From contiguous bytes, growing as they arrive, through the span overload.
            ReadAllFromSpan(newReader(), data, cuts, expected);
        }));
    }

    private static void ReadAllFromSpan(PgMessageReader reader, byte[] data, int[] cuts, IPgMessage[] expected)
    {
        int[] ends = [.. cuts.Where(c => c > 0).Order(), data.Length];
        int end = 0;
        int start = 0;
        int count = 0;
        while (true)
        {
            reader.Context.ExpectedPasswordMessage = count < expected.Length && expected[count] is IFrontendMessage { TypeByte: 'p' } p ? p.FrontendKind : FrontendMessageKind.Unknown;
            PgReadStatus status = reader.TryRead(data.AsSpan(start, ends[end] - start), out int consumed, out PgReceivedMessage message, out PgDecodeError error);
            Assert.True(status != PgReadStatus.Malformed, $"message {count} at {start}: {error}");
            if (status == PgReadStatus.Incomplete)
            {
                Assert.Equal(0, consumed);
                if (++end == ends.Length)
                {
                    break;
                }

                continue;
            }

            Assert.Equal(expected[count].Length + (expected[count].TypeByte >= 0 ? 1 : 0), consumed);
            Assert.Equal<object>(expected[count], message.ToMessage(reader.Context));
            start += consumed;
            count++;
        }

        Assert.Equal(expected.Length, count);
        Assert.Equal(data.Length, start);
        Assert.Equal(data.Length, reader.Position);
    }

    private static void ReadAll(PgMessageReader reader, ReadOnlySequence<byte> all, IPgMessage[] expected, bool incremental)
    {
        List<long> ends = incremental ? Segments.Ends(all) : [all.Length];
        int nextEnd = 0;
        long available = ends.Count > 0 ? ends[nextEnd++] : 0;
        long consumed = 0;
        int count = 0;
        var trace = new PgTraceWriter(Stream.Null);
        while (true)
        {
            // The 'p' messages are named by the authentication request the backend sent before.
            reader.Context.ExpectedPasswordMessage = count < expected.Length && expected[count] is IFrontendMessage { TypeByte: 'p' } p ? p.FrontendKind : FrontendMessageKind.Unknown;

            ReadOnlySequence<byte> buffer = all.Slice(consumed, available - consumed);
            PgReadStatus status = reader.TryRead(ref buffer, out PgReceivedMessage message, out PgDecodeError error);
            if (status == PgReadStatus.Malformed)
            {
                Assert.Fail($"message {count} ({expected.ElementAtOrDefault(count)?.Name}) at {consumed}: {error}");
            }

            if (status == PgReadStatus.Incomplete)
            {
                Assert.Equal(available - consumed, buffer.Length);
                if (nextEnd >= ends.Count)
                {
                    break;
                }

                available = ends[nextEnd++];
                continue;
            }

            Assert.True(count < expected.Length, $"read a message past the {expected.Length} written");
            IPgMessage want = expected[count];
            Assert.Equal(consumed, message.Offset);
            Assert.False(message.IsUnknown);
            Assert.Equal(want.Name, message.Name);
            Assert.Equal(want.TypeByte, message.TypeByte);
            Assert.Equal(want.Length, message.Length);
            Assert.Equal(want.TypeByte >= 0 ? PgFrameKind.Typed : PgFrameKind.StartupPacket, message.FrameKind);
            Assert.Equal(want.Length - 4, message.Body.Length);
            Assert.Equal<object>(want, message.ToMessage(reader.Context));
            message.Trace(trace, reader.Context);

            consumed = available - buffer.Length;
            Assert.Equal(consumed, reader.Position);
            count++;
        }

        Assert.Equal(expected.Length, count);
        Assert.Equal(all.Length, consumed);
        Assert.Equal(all.Length, reader.Position);
    }
}
