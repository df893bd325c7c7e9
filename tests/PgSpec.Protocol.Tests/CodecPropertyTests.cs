using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using PgSpec.Protocol.Tests.Support;

namespace PgSpec.Protocol.Tests;

/// <summary>
/// Properties of every message, with messages generated from the spec descriptors. Each test runs
/// once per message, so a failure names the message (and FsCheck prints the message and its seed).
/// </summary>
public class CodecPropertyTests
{
    private const int MaxTest = 150;

    public static TheoryData<string> MessageNames()
    {
        var names = new TheoryData<string>();
        foreach (PgMessageDescriptor message in PgProtocolSpec.Messages)
        {
            names.Add(message.Name);
        }

        return names;
    }

    [Fact]
    public void Spec_Descriptors_DescribeAll52MessagesOnce()
    {
        Assert.Equal(52, PgProtocolSpec.Messages.Count);
        Assert.Equal(52, PgProtocolSpec.Messages.Select(m => m.Name).Distinct().Count());
        Assert.All(PgProtocolSpec.Messages, m => Assert.Equal(m.Name, m.MessageType.Name));
    }

    [Fact]
    public void Spec_EnumFieldDescriptors_NameEachValueAsItsEnumMember()
    {
        PgFieldDescriptor[] enums = [.. PgProtocolSpec.Messages.SelectMany(m => m.Fields).Where(f => f.Kind == PgFieldKind.Enum)];

        Assert.NotEmpty(enums);
        Assert.All(enums, field =>
        {
            Type type = typeof(PgMessageDescriptor).Assembly.GetType("PgSpec.Protocol." + field.EnumName, throwOnError: true)!;
            Assert.Equal(field.EnumValues.Count, field.EnumNames.Count);
            Assert.Equal(Enum.GetValues(type).Length, field.EnumNames.Count);
            for (int i = 0; i < field.EnumValues.Count; i++)
            {
                Assert.Equal(Enum.GetName(type, Enum.ToObject(type, field.EnumValues[i])), field.EnumNames[i]);
            }
        });
    }

    [Theory]
    [MemberData(nameof(MessageNames))]
    public void Generator_AnyMessage_BuildsDistinctValidMessages(string name)
    {
        PgMessageDescriptor descriptor = SpecGen.Descriptor(name);
        GeneratedMessage[] sample = [.. SpecGen.Message(descriptor).Sample(40)];
        Assert.All(sample, g => g.Message.Validate(g.Version));
        bool hasFields = descriptor.Fields.Any(SpecGen.IsVisible);
        Assert.Equal(hasFields, sample.Select(g => Convert.ToHexString(g.Message.ToArray(g.Version))).Distinct().Count() > 1);
    }

    [Theory]
    [MemberData(nameof(MessageNames))]
    public void EncodeThenDecode_AnyMessage_GivesTheMessageBack(string name)
    {
        Verify(name, g =>
        {
            DecodeContext context = g.NewContext();
            MessageCodec codec = MessageCodec.For(g.Descriptor.MessageType);
            byte[] bytes = g.Message.ToArray(g.Version);
            ReadOnlySpan<byte> body = Body(g.Descriptor, bytes);

            object? decoded = codec.TryDecode(body, context, out PgDecodeError error);
            Assert.True(decoded is not null, error.ToString());
            Assert.Equal<object>(g.Message, decoded);
            Assert.Equal(g.Message.GetHashCode(), decoded.GetHashCode());

            Assert.True(codec.TryValidate(body, context, out error), error.ToString());

            object? fromView = codec.ViewToMessage(body, context, out error);
            Assert.True(fromView is not null, error.ToString());
            Assert.Equal<object>(g.Message, fromView);
        });
    }

    [Theory]
    [MemberData(nameof(MessageNames))]
    public void ViewAccessors_AnyMessage_ReadWhatTheOwnedMessageHolds(string name)
    {
        Verify(name, g =>
        {
            MessageCodec codec = MessageCodec.For(g.Descriptor.MessageType);
            byte[] bytes = g.Message.ToArray(g.Version);
            object?[]? accessors = codec.ViewAccessors(Body(g.Descriptor, bytes), g.NewContext());
            Assert.NotNull(accessors);
            object?[] owned = MessageCodec.Plain(g.Message);
            Assert.True(MessageCodec.PlainEqual(owned, accessors), $"owned {MessageCodec.Show(owned)}, view {MessageCodec.Show(accessors)}");
        });
    }

    [Theory]
    [MemberData(nameof(MessageNames))]
    public void DecodeThenEncode_ValidBytes_GivesTheBytesBack(string name)
    {
        PgMessageDescriptor descriptor = SpecGen.Descriptor(name);
        Gen<(GeneratedMessage, int)> gen = SpecGen.Message(descriptor).Zip(Gen.Choose(0, int.MaxValue));
        Check.One(Config(name), Prop.ForAll(gen.ToArbitrary(), ((GeneratedMessage g, int seed) input) =>
        {
            (GeneratedMessage g, int seed) = input;
            DecodeContext context = g.NewContext();
            MessageCodec codec = MessageCodec.For(descriptor.MessageType);
            byte[] original = g.Message.ToArray(g.Version);
            byte[] mutated = (byte[])original.Clone();
            int bodyStart = descriptor.TypeByte >= 0 ? 5 : 4;
            SpecLayout.Mutate(descriptor, mutated.AsSpan(bodyStart), new Random(seed));

            foreach (byte[] bytes in new[] { original, mutated })
            {
                object? decoded = codec.TryDecode(bytes.AsSpan(bodyStart), context, out PgDecodeError error);
                Assert.True(decoded is not null, $"{Convert.ToHexString(bytes)}: {error}");
                Assert.Equal(bytes, ((IPgMessage)decoded).ToArray(g.Version));
            }
        }));
    }

    [Theory]
    [MemberData(nameof(MessageNames))]
    public void EncodedLength_AnyMessage_IsTheTypeByteAndTheLengthWord(string name)
    {
        Verify(name, g =>
        {
            IPgMessage m = g.Message;
            bool typed = g.Descriptor.TypeByte >= 0;
            byte[] bytes = m.ToArray(g.Version);
            int lengthWord = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(typed ? 1 : 0));

            Assert.Equal(m.EncodedLength, bytes.Length);
            Assert.Equal(m.Length, lengthWord);
            Assert.Equal((typed ? 1 : 0) + lengthWord, m.EncodedLength);
            Assert.Equal(g.Descriptor.TypeByte, m.TypeByte);
            if (typed)
            {
                Assert.Equal(g.Descriptor.TypeByte, bytes[0]);
            }

            Assert.InRange(lengthWord, typed ? 4 : 8, g.Descriptor.MaxLength);

            // Every way to encode writes the same bytes.
            var writer = new ArrayBufferWriter<byte>();
            m.Encode(writer, g.Version);
            Assert.Equal(bytes, writer.WrittenSpan.ToArray());
            byte[] destination = new byte[bytes.Length + 3];
            Assert.Equal(bytes.Length, m.Encode(destination, g.Version));
            Assert.Equal(bytes, destination.AsSpan(0, bytes.Length).ToArray());
            Assert.Throws<PgEncodeException>(() => m.Encode(new byte[bytes.Length - 1], g.Version));
        });
    }

    [Theory]
    [MemberData(nameof(MessageNames))]
    public void Dispatcher_AnyMessage_ClassifiesAndDecodesIt(string name)
    {
        Verify(name, g =>
        {
            PgMessageDescriptor d = g.Descriptor;
            DecodeContext context = g.NewContext();
            byte[] bytes = g.Message.ToArray(g.Version);
            ReadOnlySpan<byte> body = Body(d, bytes);

            if (d.Frontend)
            {
                var kind = Enum.Parse<FrontendMessageKind>(d.Name);
                Assert.Equal(kind, ((IFrontendMessage)g.Message).FrontendKind);
                Assert.Equal(kind, d.TypeByte >= 0 ? FrontendMessages.Classify((byte)d.TypeByte, body, context) : FrontendMessages.ClassifyStartup(body));
                Assert.True(FrontendMessages.TryDecode(kind, body, context, out IFrontendMessage? decoded, out PgDecodeError error), error.ToString());
                Assert.Equal<object>(g.Message, decoded);
                Assert.True(FrontendMessages.TryValidate(kind, body, context, out error), error.ToString());
                Assert.Equal(d.Name, FrontendMessages.NameOf(kind));
                Assert.Equal(d.TypeByte, FrontendMessages.TypeByteOf(kind));
                Assert.Contains(kind, FrontendMessages.All);
                if (d.ByContext)
                {
                    // Without the context, a 'p' message cannot be named.
                    Assert.Equal(FrontendMessageKind.Unknown, FrontendMessages.Classify((byte)d.TypeByte, body, new DecodeContext()));
                }
            }

            if (d.Backend)
            {
                var kind = Enum.Parse<BackendMessageKind>(d.Name);
                Assert.Equal(kind, ((IBackendMessage)g.Message).BackendKind);
                Assert.Equal(kind, BackendMessages.Classify((byte)d.TypeByte, body, context));
                Assert.True(BackendMessages.TryDecode(kind, body, context, out IBackendMessage? decoded, out PgDecodeError error), error.ToString());
                Assert.Equal<object>(g.Message, decoded);
                Assert.True(BackendMessages.TryValidate(kind, body, context, out error), error.ToString());
                Assert.Equal(d.Name, BackendMessages.NameOf(kind));
                Assert.Equal(d.TypeByte, BackendMessages.TypeByteOf(kind));
                Assert.Contains(kind, BackendMessages.All);
            }
        });
    }

    [Theory]
    [MemberData(nameof(MessageNames))]
    public void Trace_AnyMessage_WritesALineStartingWithDirectionAndLength(string name)
    {
        Verify(name, g =>
        {
            PgMessageDescriptor d = g.Descriptor;
            DecodeContext context = g.NewContext();
            byte[] bytes = g.Message.ToArray(g.Version);
            ReadOnlySpan<byte> body = Body(d, bytes);
            string prefix = "\t" + g.Message.Length + "\t";

            foreach (PgDirection direction in Directions(d))
            {
                char letter = direction == PgDirection.Frontend ? 'F' : 'B';
                foreach (bool regress in new[] { false, true })
                {
                    var output = new MemoryStream();
                    var trace = new PgTraceWriter(output, new PgTraceOptions { Regress = regress });
                    bool traced = d.TypeByte >= 0
                        ? PgTrace.TryTrace(direction, (byte)d.TypeByte, body, context, trace, out PgDecodeError error)
                        : PgTrace.TryTraceStartup(body, context, trace, out error);
                    Assert.True(traced, error.ToString());
                    string text = Encoding.UTF8.GetString(output.ToArray());
                    if (d.Untraced)
                    {
                        // libpq never traces it (AuthenticationOk).
                        Assert.Equal("", text);
                        return;
                    }

                    // Regress mode prints the length of errors and notices as NN.
                    bool maskedLength = regress && text.StartsWith(letter + "\tNN\t", StringComparison.Ordinal);
                    Assert.StartsWith(letter + (maskedLength ? "\tNN\t" : prefix), text);
                    Assert.EndsWith("\n", text, StringComparison.Ordinal);

                    // The message's own tracer writes the same.
                    var own = new MemoryStream();
                    MessageCodec.For(d.MessageType).Trace(body, new PgTraceWriter(own, new PgTraceOptions { Regress = regress }), letter, null);
                    Assert.Equal(text, Encoding.UTF8.GetString(own.ToArray()));
                }
            }

            Assert.StartsWith((d.Frontend ? "F" : "B") + prefix, g.Message.ToString());
        });
    }

    internal static ReadOnlySpan<byte> Body(PgMessageDescriptor descriptor, byte[] bytes) => bytes.AsSpan(descriptor.TypeByte >= 0 ? 5 : 4);

    private static IEnumerable<PgDirection> Directions(PgMessageDescriptor descriptor)
    {
        if (descriptor.Frontend)
        {
            yield return PgDirection.Frontend;
        }

        if (descriptor.Backend)
        {
            yield return PgDirection.Backend;
        }
    }

    private static Config Config(string name) => FsCheck.Config.QuickThrowOnFailure.WithMaxTest(MaxTest).WithQuietOnSuccess(true).WithName(name);

    private static void Verify(string name, Action<GeneratedMessage> property)
        => Check.One(Config(name), Prop.ForAll(SpecGen.Message(SpecGen.Descriptor(name)).ToArbitrary(), property));
}
