using System.Buffers.Binary;
using System.Text;
using System.Text.RegularExpressions;
using FsCheck;
using FsCheck.Fluent;
using PgSpec.Cli.Tests.Support;
using PgSpec.Protocol;
using PgSpec.Protocol.Tests.Support;

namespace PgSpec.Cli.Tests;

/// <summary>
/// The streaming JSON writer of <c>pgspec decode</c> (and the proxy's JSON trace) against the
/// reflection serializer it replaced: the same bytes for every message the spec allows, and
/// values of any size written in constant memory.
/// </summary>
public class JsonOutputTests
{
    private const int MaxTest = 120;

    /// <summary>Characters to fill byte data with, so that it reads as text (or, with a control character, does not).</summary>
    private static readonly string[] s_textPieces = ["a", "Z", "0", " ", "\"", "\\", "/", "<", "&", "'", "+", "\t", "\n", "\r", "é", "\u00A0", "ß", "€", "\u2028", "中", "😀", "𝄞", "\u0085", "\u0001", "\u007F", "\u001F"];

    public static TheoryData<string, PgDirection> MessagesAndDirections()
    {
        var data = new TheoryData<string, PgDirection>();
        foreach (PgMessageDescriptor message in PgProtocolSpec.Messages)
        {
            if (message.Frontend)
            {
                data.Add(message.Name, PgDirection.Frontend);
            }

            if (message.Backend)
            {
                data.Add(message.Name, PgDirection.Backend);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(MessagesAndDirections))]
    public void Write_AnyGeneratedMessage_GivesTheBytesOfTheReflectionSerializer(string name, PgDirection direction)
    {
        PgMessageDescriptor descriptor = SpecGen.Descriptor(name);
        Gen<(GeneratedMessage Message, int Seed)> gen = SpecGen.Message(descriptor).SelectMany(_ => Gen.Choose(0, int.MaxValue), (m, seed) => (m, seed));
        Config config = FsCheck.Config.QuickThrowOnFailure.WithMaxTest(MaxTest).WithQuietOnSuccess(true).WithName(name);
        Check.One(config, Prop.ForAll(gen.ToArbitrary(), ((GeneratedMessage Message, int Seed) input) =>
        {
            GeneratedMessage generated = input.Message;
            byte[] wire = generated.Message.ToArray(generated.Version);
            int header = descriptor.TypeByte >= 0 ? 5 : 4;
            var random = new Random(input.Seed);

            Assert.True(Compare(generated, direction, wire), "the generated message must be read");

            // Its byte data as text (UTF-8 with escapes, non-ASCII, sometimes a control character).
            byte[] text = (byte[])wire.Clone();
            foreach (MutableRun run in SpecLayout.Walk(descriptor, text.AsSpan(header)))
            {
                if (run.Allowed is null && run.Range is null && run.Field.Kind is PgFieldKind.FixedBytes or PgFieldKind.RestBytes or PgFieldKind.SizedBytes)
                {
                    FillWithText(text.AsSpan(header + run.Offset, run.Size), random);
                }
            }

            Assert.True(Compare(generated, direction, text), "byte data filled with text must be read");

            // A byte that no UTF-8 text has: in a String, the message cannot be owned, and its
            // line says so; elsewhere it changes data or an integer (if that breaks the message,
            // the reader says so and there is nothing to write).
            byte[] broken = (byte[])wire.Clone();
            int[] high = [.. Enumerable.Range(header, broken.Length - header).Where(i => broken[i] >= 0x80)];
            if (broken.Length > header)
            {
                broken[high.Length > 0 ? high[random.Next(high.Length)] : header + random.Next(broken.Length - header)] = 0xFF;
                Compare(generated, direction, broken);
            }
        }));
    }

    [Fact]
    public void Write_LongValuesAndStrings_GivesTheBytesOfTheReflectionSerializer()
    {
        var random = new Random(20251202);
        var messages = new List<(PgDirection, IPgMessage)>();
        foreach (int size in new[] { 8191, 8192, 8193, 20_000, 70_001 })
        {
            byte[] text = new byte[size];
            FillWithText(text, random);
            byte[] printable = new byte[size];
            FillWithText(printable, random, controls: false);
            byte[] binary = new byte[size];
            random.NextBytes(binary);
            string query = Encoding.UTF8.GetString(printable);
            messages.Add((PgDirection.Backend, new DataRow([text, printable, null, binary, new byte[0]])));
            messages.Add((PgDirection.Frontend, new Query(query)));
            messages.Add((PgDirection.Frontend, new Bind("", "s", [], [printable, null, text], [1])));
            messages.Add((PgDirection.Backend, new ErrorResponse([new ErrorResponse.Field((byte)'M', query), new ErrorResponse.Field(0xE9, "x")])));
            messages.Add((PgDirection.Backend, new CopyData(printable)));
            messages.Add((PgDirection.Frontend, new CopyData(binary)));
        }

        foreach ((PgDirection direction, IPgMessage message) in messages)
        {
            var generated = new GeneratedMessage(SpecGen.Descriptor(message.Name), message, PgProtocolVersion.Latest);
            Assert.True(Compare(generated, direction, message.ToArray()), message.GetType().Name);
        }
    }

    [Fact]
    public void Write_EncryptionAnswersUnknownMessagesAndPasswordPackets_GivesTheBytesOfTheReflectionSerializer()
    {
        foreach ((byte answer, FrontendMessageKind request) in new[] { ((byte)'N', FrontendMessageKind.SSLRequest), ((byte)'N', FrontendMessageKind.GSSENCRequest), ((byte)'S', FrontendMessageKind.SSLRequest), ((byte)'G', FrontendMessageKind.GSSENCRequest), ((byte)'N', FrontendMessageKind.Unknown) })
        {
            var context = new DecodeContext { ExpectEncryptionAnswer = true, LastEncryptionRequest = request };
            AssertSameLines(PgDirection.Backend, context, [answer]);
        }

        // Unknown type bytes, a password packet nothing names, an unknown startup packet.
        AssertSameLines(PgDirection.Backend, new DecodeContext(), Convert.FromHexString("5900000007616263"));
        AssertSameLines(PgDirection.Backend, new DecodeContext(), Convert.FromHexString("f000000004"));
        AssertSameLines(PgDirection.Frontend, new DecodeContext { Phase = PgSessionPhase.Normal }, new SASLResponse(Encoding.ASCII.GetBytes("c=biws,r=abc,p=xyz")).ToArray());
        AssertSameLines(PgDirection.Frontend, new DecodeContext { Phase = PgSessionPhase.Normal }, Convert.FromHexString("70000000080102e900"));
        AssertSameLines(PgDirection.Frontend, new DecodeContext { Phase = PgSessionPhase.Startup }, Convert.FromHexString("0000000c12345678e9000001"));

        // Secrets, named by the context: shown, or hidden.
        var password = new DecodeContext { Phase = PgSessionPhase.Normal, ExpectedPasswordMessage = FrontendMessageKind.PasswordMessage };
        AssertSameLines(PgDirection.Frontend, password, new PasswordMessage("hunter2").ToArray());
        var sasl = new DecodeContext { Phase = PgSessionPhase.Normal, ExpectedPasswordMessage = FrontendMessageKind.SASLInitialResponse };
        AssertSameLines(PgDirection.Frontend, sasl, new SASLInitialResponse("SCRAM-SHA-256", Encoding.ASCII.GetBytes("n,,n=,r=abc")).ToArray());
        AssertSameLines(PgDirection.Backend, new DecodeContext(), new AuthenticationSASLContinue(Encoding.ASCII.GetBytes("r=abc,s=c2FsdA==,i=4096")).ToArray());
    }

    [Fact]
    public void Write_WithTimestamps_GivesTheReflectionSerializersLineWithATimeSecond()
    {
        byte[] wire = new DataRow([Encoding.ASCII.GetBytes("1"), null]).ToArray();
        var reader = new PgMessageReader(PgDirection.Backend);
        Assert.Equal(PgReadStatus.Message, reader.TryRead(wire, out _, out PgReceivedMessage message, out _));
        using var output = new MemoryStream();

        new JsonOutput(output, connection: 3, timestamps: true).Write(message, reader.Context);
        string expected = Encoding.UTF8.GetString(new ReflectionJsonOutput(connection: 3, timestamps: true).Line(message, reader.Context));

        var time = new Regex("\"time\":\"\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\.\\d{6}\"");
        string actual = Encoding.UTF8.GetString(output.ToArray());
        Assert.Matches(time, actual);
        Assert.StartsWith("{\"connection\":3,\"time\":", actual, StringComparison.Ordinal);
        Assert.Equal(time.Replace(expected, "\"time\":\"T\""), time.Replace(actual, "\"time\":\"T\""));
    }

    [Fact]
    public void Write_DataRowWithA90MBColumn_WritesEveryByteInConstantMemory()
    {
        // The hex of 90 MB is 180 million characters: more than a JSON string written whole may have.
        const int size = 90_000_000;
        byte[] wire = new byte[11 + size];
        wire[0] = (byte)'D';
        BinaryPrimitives.WriteInt32BigEndian(wire.AsSpan(1), 10 + size);
        BinaryPrimitives.WriteInt16BigEndian(wire.AsSpan(5), 1);
        BinaryPrimitives.WriteInt32BigEndian(wire.AsSpan(7), size);
        wire.AsSpan(11).Fill((byte)'x');
        var reader = new PgMessageReader(PgDirection.Backend);
        Assert.Equal(PgReadStatus.Message, reader.TryRead(wire, out _, out PgReceivedMessage message, out _));
        (byte[], long)[] line =
        [
            ("{\"offset\":0,\"direction\":\"B\",\"type\":\"D\",\"length\":90000010,\"name\":\"DataRow\",\"fields\":{\"columns\":[{\"hex\":\""u8.ToArray(), 1),
            ("78"u8.ToArray(), size),
            ("\",\"text\":\""u8.ToArray(), 1),
            ("x"u8.ToArray(), size),
            ("\"}]}}\n"u8.ToArray(), 1),
        ];
        using var output = new ExpectedOutputStream([.. line, .. line]);
        var json = new JsonOutput(output);

        // What a first line allocates once in the process (the encoder's tables, say) is not
        // counted; the output's own buffers grow once, to a size that does not depend on the line's.
        WarmUp();
        long before = GC.GetAllocatedBytesForCurrentThread();
        json.Write(message, reader.Context);
        long first = GC.GetAllocatedBytesForCurrentThread() - before;
        int writes = output.Writes;
        before = GC.GetAllocatedBytesForCurrentThread();
        json.Write(message, reader.Context);
        long second = GC.GetAllocatedBytesForCurrentThread() - before;

        output.AssertComplete();
        Assert.True(writes > 100, $"the line was written in {writes} pieces; it should go out as it is made");
        Assert.True(first < 256 * 1024, $"writing the line allocated {first} bytes");
        Assert.True(second < 4 * 1024, $"writing the line again allocated {second} bytes");
    }

    private static void WarmUp()
    {
        byte[] wire = new DataRow([Encoding.ASCII.GetBytes(new string('x', 50_000))]).ToArray();
        var reader = new PgMessageReader(PgDirection.Backend);
        Assert.Equal(PgReadStatus.Message, reader.TryRead(wire, out _, out PgReceivedMessage message, out _));
        new JsonOutput(Stream.Null).Write(message, reader.Context);
    }

    /// <summary>Reads one message from <paramref name="wire"/> and compares the lines; false when the reader rejects the bytes.</summary>
    private static bool Compare(GeneratedMessage generated, PgDirection direction, byte[] wire)
    {
        DecodeContext context = generated.NewContext();
        if (direction == PgDirection.Frontend && generated.Descriptor.TypeByte < 0)
        {
            context.Phase = PgSessionPhase.Startup;
        }

        return TryAssertSameLines(direction, context, wire);
    }

    private static void AssertSameLines(PgDirection direction, DecodeContext context, byte[] wire)
        => Assert.True(TryAssertSameLines(direction, context, wire), "the reader must read " + Convert.ToHexString(wire));

    private static bool TryAssertSameLines(PgDirection direction, DecodeContext context, byte[] wire)
    {
        var reader = new PgMessageReader(direction, context);
        if (reader.TryRead(wire, out int consumed, out PgReceivedMessage message, out _) != PgReadStatus.Message)
        {
            return false;
        }

        Assert.Equal(wire.Length, consumed);
        foreach ((long? connection, bool hideSecrets) in new[] { ((long?)null, false), (12345678901L, true) })
        {
            string expected = Encoding.UTF8.GetString(new ReflectionJsonOutput(connection, hideSecrets).Line(message, context));
            if (hideSecrets && message.IsUnknown && message.Direction == PgDirection.Frontend && message.TypeByte == 'p')
            {
                // The one change: a password packet that nothing names keeps its body to itself.
                expected = Regex.Replace(expected, "\"fields\":\\{\"body\":\\{[^}]*\\}\\}", "\"fields\":{\"redacted\":true}");
            }

            using var output = new MemoryStream();
            new JsonOutput(output, connection, hideSecrets).Write(message, context);
            Assert.Equal(expected, Encoding.UTF8.GetString(output.ToArray()));
        }

        return true;
    }

    /// <summary>Fills <paramref name="bytes"/> with UTF-8 text of random characters (ASCII where a character would not fit).</summary>
    private static void FillWithText(Span<byte> bytes, Random random, bool controls = true)
    {
        Span<byte> piece = stackalloc byte[4];
        int position = 0;
        while (position < bytes.Length)
        {
            string text = s_textPieces[random.Next(controls ? s_textPieces.Length : s_textPieces.Length - 4)];
            int size = Encoding.UTF8.GetBytes(text, piece);
            if (size > bytes.Length - position || (!controls && random.Next(3) == 0))
            {
                bytes[position++] = (byte)random.Next(0x20, 0x7F);
                continue;
            }

            piece.Slice(0, size).CopyTo(bytes.Slice(position));
            position += size;
        }
    }

    /// <summary>A write-only stream that checks what is written against parts repeated a number of times, without holding it.</summary>
    private sealed class ExpectedOutputStream : Stream
    {
        private readonly (byte[] Block, int Pattern, long Total)[] _parts;
        private int _part;
        private long _inPart;
        private long _position;

        public ExpectedOutputStream(params (byte[] Bytes, long Repeat)[] parts)
        {
            // Each part as a block of whole repetitions of its bytes, to compare runs at a time.
            _parts = [.. parts.Select(p => (Enumerable.Repeat(p.Bytes, (int)Math.Min(p.Repeat, Math.Max(1, 65536 / p.Bytes.Length))).SelectMany(b => b).ToArray(), p.Bytes.Length, p.Bytes.Length * p.Repeat))];
        }

        public int Writes { get; private set; }

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => _position;

        public override long Position { get => _position; set => throw new NotSupportedException(); }

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            Writes++;
            while (!buffer.IsEmpty)
            {
                if (_part == _parts.Length)
                {
                    Assert.Fail($"more output than expected at byte {_position}");
                }

                (byte[] block, int pattern, long total) = _parts[_part];
                int start = (int)(_inPart % pattern);
                int count = (int)Math.Min(Math.Min(buffer.Length, total - _inPart), block.Length - start);
                ReadOnlySpan<byte> expected = block.AsSpan(start, count);
                int differ = buffer.Slice(0, count).CommonPrefixLength(expected);
                if (differ < count)
                {
                    Assert.Fail($"output byte {_position + differ} is 0x{buffer[differ]:x2}, not 0x{expected[differ]:x2} (part {_part})");
                }

                buffer = buffer.Slice(count);
                _position += count;
                _inPart += count;
                if (_inPart == total)
                {
                    _part++;
                    _inPart = 0;
                }
            }
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public void AssertComplete() => Assert.True(_part == _parts.Length, $"the output ended at byte {_position}, in part {_part}");

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
