using System.Collections.Immutable;
using System.Security.Cryptography;
using System.Text;
using PgSpec.Protocol;

namespace PgSpec.Protocol.Tests;

/// <summary>The seed examples, byte for byte.</summary>
public class GoldenBytesTests
{
    private static byte[] Hex(string hex) => Convert.FromHexString(hex.Replace(" ", "", StringComparison.Ordinal));

    [Fact]
    public void StartupMessage_UserVonngProtocol30_EncodesAsDocumented()
    {
        var message = new StartupMessage(196608, [new StartupMessage.Parameter("user", "vonng")]);
        byte[] expected = Hex("00000014 00030000 7573657200 766f6e6e6700 00");
        Assert.Equal(expected, message.ToArray());
        Assert.Equal(message, StartupMessage.Decode(expected.AsSpan(4)));
    }

    [Fact]
    public void Query_Select1_EncodesAsDocumented()
    {
        var message = new Query("SELECT 1 as a;");
        byte[] expected = [(byte)'Q', 0, 0, 0, 19, .. Encoding.ASCII.GetBytes("SELECT 1 as a;"), 0];
        Assert.Equal(expected, message.ToArray());
        Assert.Equal(message, Query.Decode(expected.AsSpan(5)));
    }

    [Fact]
    public void RowDescription_ColumnAInt4_EncodesAsDocumented()
    {
        var message = new RowDescription([new RowDescription.Field("a", 0, 0, 23, 4, -1, 0)]);
        byte[] expected = Hex("54 0000001a 0001 6100 00000000 0000 00000017 0004 ffffffff 0000");
        Assert.Equal(expected, message.ToArray());
        Assert.Equal(message, RowDescription.Decode(expected.AsSpan(5)));
    }

    [Fact]
    public void DataRow_One_EncodesAsDocumented()
    {
        var message = new DataRow([(ReadOnlyMemory<byte>?)Encoding.ASCII.GetBytes("1")]);
        byte[] expected = Hex("44 0000000b 0001 00000001 31");
        Assert.Equal(expected, message.ToArray());
        Assert.Equal(message, DataRow.Decode(expected.AsSpan(5)));
    }

    [Fact]
    public void CommandComplete_Select1_EncodesAsDocumented()
    {
        byte[] expected = Hex("43 0000000d 53454c454354203100");
        Assert.Equal(expected, new CommandComplete("SELECT 1").ToArray());
    }

    [Fact]
    public void ReadyForQuery_Idle_EncodesAsDocumented()
    {
        byte[] expected = Hex("5a 00000005 49");
        Assert.Equal(expected, new ReadyForQuery(TransactionStatus.Idle).ToArray());
        Assert.Equal(TransactionStatus.Idle, ReadyForQuery.Decode(expected.AsSpan(5)).TransactionStatus);
    }

    [Fact]
    public void AuthenticationMD5Password_Salt_EncodesAsDocumented()
    {
        byte[] expected = Hex("52 0000000c 00000005 6d416d41");
        Assert.Equal(expected, new AuthenticationMD5Password(new byte[] { 109, 65, 109, 65 }).ToArray());
        Assert.Equal(BackendMessageKind.AuthenticationMD5Password, BackendMessages.Classify((byte)'R', expected.AsSpan(5), null));
    }

    [Fact]
    public void PasswordMessage_Md5OfRootPassword_MatchesPostgresAlgorithm()
    {
        // md5(md5(password || user) || salt), as PostgreSQL documents it.
        string inner = Convert.ToHexStringLower(MD5.HashData(Encoding.UTF8.GetBytes("password" + "root")));
        byte[] salted = [.. Encoding.ASCII.GetBytes(inner), 109, 65, 109, 65];
        string password = "md5" + Convert.ToHexStringLower(MD5.HashData(salted));
        var message = new PasswordMessage(password);
        byte[] bytes = message.ToArray();
        Assert.Equal((byte)'p', bytes[0]);
        Assert.Equal(4 + 35 + 1, bytes[1] << 24 | bytes[2] << 16 | bytes[3] << 8 | bytes[4]);
        var context = new DecodeContext { ExpectedPasswordMessage = FrontendMessageKind.PasswordMessage };
        Assert.Equal(FrontendMessageKind.PasswordMessage, FrontendMessages.Classify((byte)'p', bytes.AsSpan(5), context));
        Assert.Equal(message, PasswordMessage.Decode(bytes.AsSpan(5)));
    }
}
