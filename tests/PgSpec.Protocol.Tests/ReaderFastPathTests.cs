using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using PgSpec.Protocol;
using PgSpec.Protocol.Tests.Support;

namespace PgSpec.Protocol.Tests;

/// <summary>
/// <see cref="PgMessageReader"/> frames a typed message whole in a span inline, before the general
/// framer: for any bytes, in any phase and under any limits, the span overload answers as the
/// sequence overload does when the first segment is empty (the general framer): the same status,
/// error, consumed count, message, position and what the context learnt.
/// </summary>
public class ReaderFastPathTests
{
    /// <summary>
    /// The reader names a message by its type byte alone when the generated classifier, given no
    /// body and no context, names it: that must be the name whatever the body and the context are.
    /// </summary>
    [Fact]
    public void A_type_byte_named_without_body_or_context_is_named_the_same_with_any_body_and_context()
    {
        var random = new Random(20261203);
        List<byte[]> bodies = [[], [0], [0, 0, 0, 0], [0, 0, 0, 5], [0, 0, 0, 10], [0, 0, 0, 12], [0x04, 0xd2, 0x16, 0x2f]];
        for (int i = 0; i < 20; i++)
        {
            bodies.Add(RandomBytes(random, random.Next(1, 40)));
        }

        List<DecodeContext?> contexts = [null, .. Enum.GetValues<PgSessionPhase>().Select(p => new DecodeContext { Phase = p })];
        var expectingSasl = new DecodeContext { Phase = PgSessionPhase.Authentication };
        expectingSasl.ObserveBackend(BackendMessageKind.AuthenticationSASL, new AuthenticationSASL(["SCRAM-SHA-256"]).ToArray().AsSpan(5));
        contexts.Add(expectingSasl);

        int named = 0;
        for (int b = 0; b < 256; b++)
        {
            FrontendMessageKind frontend = FrontendMessages.Classify((byte)b, default, null);
            BackendMessageKind backend = BackendMessages.Classify((byte)b, default, null);
            named += (frontend != FrontendMessageKind.Unknown ? 1 : 0) + (backend != BackendMessageKind.Unknown ? 1 : 0);
            foreach (byte[] body in bodies)
            {
                foreach (DecodeContext? context in contexts)
                {
                    if (frontend != FrontendMessageKind.Unknown)
                    {
                        Assert.Equal(frontend, FrontendMessages.Classify((byte)b, body, context));
                    }

                    if (backend != BackendMessageKind.Unknown)
                    {
                        Assert.Equal(backend, BackendMessages.Classify((byte)b, body, context));
                    }
                }
            }
        }

        // Most type bytes name one message; 'R' (a code in the body) and 'p' (the context) do not.
        Assert.True(named > 30, $"{named} type bytes are named alone");
        Assert.Equal(BackendMessageKind.Unknown, BackendMessages.Classify((byte)'R', default, null));
        Assert.Equal(FrontendMessageKind.Unknown, FrontendMessages.Classify((byte)'p', default, null));
        Assert.Equal(BackendMessageKind.DataRow, BackendMessages.Classify((byte)'D', default, null));
    }

    private static byte[] RandomBytes(Random random, int length)
    {
        byte[] bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }

    private static readonly byte[][] s_samples =
    [
        .. PipeReaderTests.Conversation().Select(m => m.ToArray()),
        new Query("SELECT 1").ToArray(),
        new Sync().ToArray(),
        new Terminate().ToArray(),
        new PasswordMessage("secret").ToArray(),
        new Bind("", "", [], [(ReadOnlyMemory<byte>?)Encoding.ASCII.GetBytes("7"), null], []).ToArray(),
        new StartupMessage(PgProtocolVersion.Latest.Code, [new StartupMessage.Parameter("user", "u")]).ToArray(),
        new SSLRequest().ToArray(),
        [(byte)'S'],
        [(byte)'N'],
    ];

    private static readonly int[] s_lengths = [int.MinValue, -5, -1, 0, 1, 3, 4, 5, 6, 8, 9, 10, 12, 100, 30000, 1 << 20, int.MaxValue];

    [Fact]
    public void AnyBytes_SpanOverload_AnswersAsTheGeneralFramer()
    {
        var random = new Random(20250611);
        for (int iteration = 0; iteration < 50000; iteration++)
        {
            byte[] data = RandomBytes(random);
            PgDirection direction = random.Next(2) == 0 ? PgDirection.Frontend : PgDirection.Backend;
            int variant = random.Next(8);
            bool validate = random.Next(4) != 0;
            var inline = new PgMessageReader(direction, Context(variant)) { Validate = validate };
            var general = new PgMessageReader(direction, Context(variant)) { Validate = validate };
            inline.Skip(7);
            general.Skip(7);

            PgReadStatus status = inline.TryRead(data, out int consumed, out PgReceivedMessage message, out PgDecodeError error);
            string fromSpan = Describe(inline, status, consumed, message, error);

            ReadOnlySequence<byte> whole = Segments.Split(data, [0]);
            ReadOnlySequence<byte> rest = whole;
            status = general.TryRead(ref rest, out PgReceivedMessage framed, out PgDecodeError framingError);
            string fromSequence = Describe(general, status, whole.Length - rest.Length, framed, framingError);

            Assert.True(fromSpan == fromSequence, $"{Convert.ToHexString(data)} {direction} variant {variant} validate {validate}\n  span:     {fromSpan}\n  sequence: {fromSequence}");
        }
    }

    /// <summary>A sample message, cut short, its length word or type byte replaced, or followed by more bytes; or random bytes.</summary>
    private static byte[] RandomBytes(Random random)
    {
        if (random.Next(4) == 0)
        {
            byte[] noise = new byte[random.Next(0, 20)];
            random.NextBytes(noise);
            return noise;
        }

        byte[] data = (byte[])s_samples[random.Next(s_samples.Length)].Clone();
        if (random.Next(2) == 0)
        {
            data = data[..random.Next(0, data.Length + 1)];
        }

        if (random.Next(3) == 0 && data.Length >= 5)
        {
            BinaryPrimitives.WriteInt32BigEndian(data.AsSpan(1), s_lengths[random.Next(s_lengths.Length)]);
        }

        if (random.Next(3) == 0 && data.Length >= 4)
        {
            BinaryPrimitives.WriteInt32BigEndian(data, s_lengths[random.Next(s_lengths.Length)]);
        }

        if (random.Next(4) == 0 && data.Length >= 1)
        {
            data[0] = (byte)random.Next(256);
        }

        return random.Next(4) == 0 ? [.. data, .. new byte[random.Next(1, 10)]] : data;
    }

    /// <summary>Startup, authentication and normal phases, an encryption answer awaited, tight and open limits.</summary>
    private static DecodeContext Context(int variant) => variant switch
    {
        0 => new DecodeContext { Phase = PgSessionPhase.Startup },
        1 => new DecodeContext { Phase = PgSessionPhase.Normal },
        2 => new DecodeContext { Phase = PgSessionPhase.Authentication },
        3 => new DecodeContext { Phase = PgSessionPhase.Normal, ExpectEncryptionAnswer = true },
        4 => new DecodeContext { Phase = PgSessionPhase.Startup, ExpectEncryptionAnswer = true, Limits = PgLimits.Default.WithStartupPacket(9) },
        5 => new DecodeContext { Phase = PgSessionPhase.Normal, Limits = PgLimits.Default.WithAll(PgDirection.Frontend, 9).WithAll(PgDirection.Backend, 9) },
        6 => new DecodeContext { Phase = PgSessionPhase.Normal, Limits = PgLimits.Create(static (_, _) => int.MaxValue, int.MaxValue) },
        _ => new DecodeContext { Phase = PgSessionPhase.Authentication, ExpectedPasswordMessage = FrontendMessageKind.PasswordMessage },
    };

    private static string Describe(PgMessageReader reader, PgReadStatus status, long consumed, PgReceivedMessage message, PgDecodeError error)
    {
        DecodeContext c = reader.Context;
        string read = status == PgReadStatus.Message
            ? $"{message.FrameKind} {message.TypeByte} {message.Length} {message.Name} {Convert.ToHexString(message.Body)} {message.Offset} {message.IsValidated}"
            : "";
        return $"{status} {consumed} [{error.MessageName}|{error.Field}|{error.Offset}|{error.Reason}] at {reader.Position}; "
            + $"{c.Phase} {c.ExpectEncryptionAnswer} {c.ExpectedPasswordMessage} {c.LastEncryptionRequest} {c.ProtocolVersion.Code}; {read}";
    }
}
