using System.Buffers.Binary;
using System.Text;
using System.Text.RegularExpressions;
using PgSpec.Protocol;

namespace PgSpec.Fuzz.Tests;

public sealed partial class DictionaryTests
{
    private static readonly HashSet<string> s_entries = FuzzDictionary.Entries().Select(e => Convert.ToHexString(FuzzDictionary.Bytes(e))).ToHashSet();

    private static bool Has(ReadOnlySpan<byte> bytes) => s_entries.Contains(Convert.ToHexString(bytes));

    private static byte[] Int32(int value)
    {
        byte[] bytes = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(bytes, value);
        return bytes;
    }

    [GeneratedRegex(@"^""(\\x[0-9A-F]{2})+""$")]
    private static partial Regex AflEntry();

    [Fact]
    public void Entries_AreAflQuotedStringsOfAtMost128Bytes()
    {
        Assert.NotEmpty(FuzzDictionary.Entries());
        foreach (string entry in FuzzDictionary.Entries())
        {
            Assert.Matches(AflEntry(), entry);
            Assert.InRange(FuzzDictionary.Bytes(entry).Length, 1, 128);
        }

        string[] lines = FuzzDictionary.Text().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("#", lines[0]);
        Assert.Equal(FuzzDictionary.Entries().Count, lines.Length - 1);
    }

    [Fact]
    public void Entries_HaveEveryTypeByteAndCodeOfTheSpecs()
    {
        foreach (PgMessageDescriptor message in PgProtocolSpec.Messages)
        {
            if (message.TypeByte >= 0)
            {
                Assert.True(Has([(byte)message.TypeByte]), $"no entry for {message.Name}'s type byte");
            }

            if (message.Fields.Count > 0 && message.Fields[0] is { Kind: PgFieldKind.Literal, WireType: "Int32" } first)
            {
                Assert.True(Has(Int32((int)first.Literal!.Value)), $"no entry for {message.Name}'s code {first.Literal}");
            }

            Assert.True(Has(Int32(message.MaxLength)), $"no entry for {message.Name}'s limit");
        }

        Assert.True(Has(Int32(196608)), "no entry for protocol 3.0");
        Assert.True(Has(Int32(-1)), "no entry for a NULL length");
        Assert.True(Has(Int32(int.MaxValue)), "no entry for a 2 GiB length");
    }

    [Fact]
    public void Entries_HaveTheReplicationAndPgOutputTypeBytesAndTags()
    {
        foreach (PgMessageDescriptor message in PgSpec.Protocol.Replication.ReplicationMessages.Descriptors.Concat(PgSpec.Protocol.PgOutput.PgOutputMessages.Descriptors))
        {
            Assert.True(Has([(byte)message.TypeByte]), $"no entry for {message.Name}'s type byte");
        }

        foreach (byte tag in "NKOnutb"u8.ToArray())
        {
            Assert.True(Has([tag]), $"no entry for the tag '{(char)tag}'");
        }
    }

    [Fact]
    public void Entries_HaveSaslMechanismsAndErrorFieldCodes()
    {
        Assert.Contains("SCRAM-SHA-256", SaslMechanism.All);
        foreach (string mechanism in SaslMechanism.All)
        {
            Assert.True(Has(Encoding.ASCII.GetBytes(mechanism)), $"no entry for {mechanism}");
            Assert.True(Has([.. Encoding.ASCII.GetBytes(mechanism), 0]), $"no entry for {mechanism} with its terminator");
        }

        Assert.Contains(ErrorFieldCode.SqlState, Enum.GetValues<ErrorFieldCode>());
        foreach (ErrorFieldCode code in Enum.GetValues<ErrorFieldCode>())
        {
            Assert.True(Has([(byte)code]), $"no entry for error field {code}");
        }
    }

    [Fact]
    public void Entries_ComeFromTheGeneratorsDictionaryAndTheDescriptors()
    {
        foreach (string entry in ProtocolDictionary.Entries)
        {
            Assert.Contains(entry, FuzzDictionary.Entries());
        }

        Assert.True(FuzzDictionary.Entries().Count > ProtocolDictionary.Entries.Count);
    }
}
