using System.Text;
using System.Text.Json;
using PgSpec.Protocol;
using static PgSpec.Cli.Tests.Conversation;

namespace PgSpec.Cli.Tests;

public class DecodeCommandTests
{
    private static readonly byte[] s_readyForQuery = new ReadyForQuery(TransactionStatus.Idle).ToArray();

    [Fact]
    public void Decode_HexFrontendWithBackendPeer_NamesEachPasswordMessageByItsRequest()
    {
        using var dir = new TempDirectory();
        string frontend = dir.Write("frontend.hex", CliRunner.HexText(Frontend));
        string backend = dir.Write("backend.hex", CliRunner.HexText(Backend));

        CliResult result = CliRunner.Run("decode", "--hex", "--from", "frontend", "--peer", backend, "--show-secrets", frontend);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(
            [
                $"F\t{Startup.Length}\tStartupMessage\t 3 0 \"user\" \"alice\" \"database\" \"shop\"",
                $"F\t{SaslInitial.Length}\tSASLInitialResponse\t \"SCRAM-SHA-256\" 11 'n,,n=,r=abc'",
                $"F\t{SaslResponse.Length}\tSASLResponse\t 'c=biws,r=abc,p=xyz'",
                "F\t19\tQuery\t \"SELECT 1, NULL\"",
                "F\t4\tTerminate",
            ],
            result.Lines);
        Assert.Empty(result.Stderr);
    }

    [Fact]
    public void Decode_WithAPeerFromTheSameSide_IsAUsageError()
    {
        using var dir = new TempDirectory();
        string frontend = dir.Write("frontend.bin", Frontend);
        string backend = dir.Write("backend.bin", Backend);

        CliResult sameFrontend = CliRunner.Run("decode", "--from", "frontend", "--peer", frontend, frontend);
        CliResult sameBackend = CliRunner.Run("decode", "--from", "backend", "--peer", backend, backend);

        Assert.Equal(PgSpecCommandLine.ExitUsage, sameFrontend.ExitCode);
        Assert.Contains("the --peer stream looks like the frontend's too", sameFrontend.Stderr);
        Assert.Equal(PgSpecCommandLine.ExitUsage, sameBackend.ExitCode);
        Assert.Contains("the --peer stream looks like the backend's too", sameBackend.Stderr);
    }

    [Fact]
    public void Decode_WithAPeerThatBreaksTheProtocol_SaysHowFarItIsUsed()
    {
        using var dir = new TempDirectory();
        string frontend = dir.Write("frontend.bin", Frontend);
        string broken = dir.Write("backend.bin", [.. Sasl.ToArray(), (byte)'R', 0, 0, 0, 2]);

        CliResult result = CliRunner.Run("decode", "--from", "frontend", "--peer", broken, frontend);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("pgspec: note: the --peer stream breaks the protocol (frame.length: length 2", result.Stderr);
    }

    [Fact]
    public void Decode_HexBackendWithFrontendPeer_PrintsEveryMessageButAuthenticationOk()
    {
        using var dir = new TempDirectory();
        string frontend = dir.Write("frontend.hex", CliRunner.HexText(Frontend));
        string backend = dir.Write("backend.hex", CliRunner.HexText(Backend));

        CliResult result = CliRunner.Run("decode", "--hex", "--peer", frontend, "--show-secrets", backend);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(
            [
                $"B\t{Sasl.Length}\tAuthenticationSASL\t \"SCRAM-SHA-256\" \"\"",
                $"B\t{SaslContinue.Length}\tAuthenticationSASLContinue\t 'r=abc,s=c2FsdA==,i=4096'",
                $"B\t{SaslFinal.Length}\tAuthenticationSASLFinal\t 'v=c2ln'",
                $"B\t{ServerVersion.Length}\tParameterStatus\t \"server_version\" \"15.0\"",
                "B\t12\tBackendKeyData\t 4242 7",
                "B\t5\tReadyForQuery\t I",
                $"B\t{Columns.Length}\tRowDescription\t 2 \"?column?\" 0 0 23 4 -1 0 \"?column?\" 0 0 25 65535 -1 0",
                "B\t15\tDataRow\t 2 1 '1' -1",
                "B\t13\tCommandComplete\t \"SELECT 1\"",
                "B\t5\tReadyForQuery\t I",
            ],
            result.Lines);
    }

    [Fact]
    public void Decode_WithoutShowSecrets_HidesPasswordsAndAuthenticationDataAsTheProxyDoes()
    {
        using var dir = new TempDirectory();
        string frontend = dir.Write("frontend.bin", Frontend);
        string backend = dir.Write("backend.bin", Backend);
        string passwordFrontend = dir.Write("password-frontend.bin", Bytes(Startup, new PasswordMessage("hunter2"), Select));
        string passwordBackend = dir.Write("password-backend.bin", Bytes(new AuthenticationCleartextPassword(), new AuthenticationOk()));

        CliResult client = CliRunner.Run("decode", "--peer", backend, frontend);
        CliResult server = CliRunner.Run("decode", "--peer", frontend, backend);
        CliResult password = CliRunner.Run("decode", "--peer", passwordBackend, passwordFrontend);
        CliResult regress = CliRunner.Run("decode", "--peer", passwordBackend, "--regress", passwordFrontend);

        Assert.True(client.ExitCode == 0, client.ToString());
        Assert.Equal($"F\t{SaslInitial.Length}\tSASLInitialResponse\t \"SCRAM-SHA-256\" 11 'BBBB'", client.Lines[1]);
        Assert.Equal($"F\t{SaslResponse.Length}\tSASLResponse\t 'BBBB'", client.Lines[2]);
        Assert.Equal($"B\t{SaslContinue.Length}\tAuthenticationSASLContinue\t 'BBBB'", server.Lines[1]);
        Assert.Equal($"B\t{SaslFinal.Length}\tAuthenticationSASLFinal\t 'BBBB'", server.Lines[2]);
        Assert.Equal("F\t12\tPasswordMessage\t \"********\"", password.Lines[1]);
        Assert.Equal("F\t12\tPasswordMessage\t \"********\"", regress.Lines[1]);
        foreach (CliResult result in new[] { client, server, password, regress })
        {
            Assert.DoesNotContain("p=xyz", result.Stdout, StringComparison.Ordinal);
            Assert.DoesNotContain("r=abc", result.Stdout, StringComparison.Ordinal);
            Assert.DoesNotContain("hunter2", result.Stdout, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Decode_JsonWithoutShowSecrets_RedactsPasswordsAndAuthenticationData()
    {
        using var dir = new TempDirectory();
        string frontend = dir.Write("frontend.bin", Frontend);
        string backend = dir.Write("backend.bin", Backend);

        CliResult client = CliRunner.Run("decode", "--format", "json", "--peer", backend, frontend);
        CliResult server = CliRunner.Run("decode", "--format", "json", "--peer", frontend, backend);
        CliResult shown = CliRunner.Run("decode", "--format", "json", "--show-secrets", "--peer", backend, frontend);

        JsonElement[] lines = [.. client.Lines.Concat(server.Lines).Select(line => JsonDocument.Parse(line).RootElement)];
        string[] redacted = [.. lines.Where(line => line.GetProperty("fields").TryGetProperty("redacted", out JsonElement r) && r.GetBoolean()).Select(line => line.GetProperty("name").GetString()!)];
        Assert.Equal(["SASLInitialResponse", "SASLResponse", "AuthenticationSASLContinue", "AuthenticationSASLFinal"], redacted);
        Assert.DoesNotContain("p=xyz", client.Stdout, StringComparison.Ordinal);
        Assert.Equal("n,,n=,r=abc", JsonDocument.Parse(shown.Lines[1]).RootElement.GetProperty("fields").GetProperty("data").GetProperty("text").GetString());
    }

    [Fact]
    public void Decode_JsonWithoutPeerOrShowSecrets_RedactsThePasswordPacketsItCannotName()
    {
        CliResult result = CliRunner.Run(Frontend, "decode", "--format", "json");

        JsonElement[] lines = [.. result.Lines.Select(line => JsonDocument.Parse(line).RootElement)];
        Assert.Equal(["p", "p"], lines.Where(line => line.GetProperty("type").GetString() == "p").Select(line => line.GetProperty("name").GetString()));
        Assert.All(lines.Where(line => line.GetProperty("type").GetString() == "p"), line => Assert.True(line.GetProperty("fields").GetProperty("redacted").GetBoolean()));
        Assert.DoesNotContain(Convert.ToHexStringLower(Encoding.ASCII.GetBytes("p=xyz")), result.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Decode_FrontendWithoutPeer_PrintsPasswordMessagesAsLibpqPrintsAnUnknownResponse()
    {
        CliResult result = CliRunner.Run(Frontend, "decode", "--from", "frontend");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(
            [
                $"F\t{Startup.Length}\tStartupMessage\t 3 0 \"user\" \"alice\" \"database\" \"shop\"",
                $"F\t{SaslInitial.Length}\tUnknownAuthenticationResponse",
                $"mismatched message length: consumed 4, expected {SaslInitial.Length}",
                $"F\t{SaslResponse.Length}\tUnknownAuthenticationResponse",
                $"mismatched message length: consumed 4, expected {SaslResponse.Length}",
                "F\t19\tQuery\t \"SELECT 1, NULL\"",
                "F\t4\tTerminate",
            ],
            result.Lines);
    }

    [Fact]
    public void Decode_Regress_MasksWhatLibpqRegressModeMasks()
    {
        byte[] backend = Bytes(
            Sasl,
            SaslContinue,
            new BackendKeyData(4242, new byte[] { 0, 0, 0, 7 }),
            Columns,
            new NoticeResponse([new NoticeResponse.Field((byte)'S', "NOTICE"), new NoticeResponse.Field((byte)'M', "hi"), new NoticeResponse.Field((byte)'F', "pl_exec.c")]),
            new ErrorResponse([new ErrorResponse.Field((byte)'S', "ERROR"), new ErrorResponse.Field((byte)'C', "42601"), new ErrorResponse.Field((byte)'L', "1180"), new ErrorResponse.Field((byte)'R', "scanner_yyerror")]),
            new NotificationResponse(77, "ch", "payload"),
            new CopyData(Encoding.ASCII.GetBytes("1\tx\n")));

        CliResult plain = CliRunner.Run(backend, "decode", "--from", "backend");
        CliResult regress = CliRunner.Run(backend, "decode", "--from", "backend", "--regress");

        Assert.True(regress.ExitCode == 0, regress.ToString());
        Assert.Equal(
            [
                $"B\t{Sasl.Length}\tAuthenticationSASL\t \"SCRAM-SHA-256\" \"\"",
                $"B\t{SaslContinue.Length}\tAuthenticationSASLContinue\t 'BBBB'",
                "B\t12\tBackendKeyData\t NNNN NNNN",
                $"B\t{Columns.Length}\tRowDescription\t 2 \"?column?\" NNNN 0 NNNN 4 -1 0 \"?column?\" NNNN 0 NNNN 65535 -1 0",
                "B\tNN\tNoticeResponse\t S \"NOTICE\" M \"hi\" F \"SSSS\" \\x00",
                "B\tNN\tErrorResponse\t S \"ERROR\" C \"42601\" L \"SSSS\" R \"SSSS\" \\x00",
                "B\t19\tNotificationResponse\t NNNN \"ch\" \"payload\"",
                "B\t8\tCopyData\t 'BBBB'",
            ],
            regress.Lines);
        Assert.Contains("B\t12\tBackendKeyData\t 4242 7", plain.Lines);
        Assert.Contains("B\t8\tCopyData\t '1\\x09x\\x0a'", plain.Lines);
        Assert.Contains(plain.Lines, line => line.StartsWith("B\t42\tErrorResponse\t S \"ERROR\" C \"42601\" L \"1180\" R \"scanner_yyerror\"", StringComparison.Ordinal));
    }

    [Fact]
    public void Decode_Json_WritesOneParseableObjectPerMessage()
    {
        using var dir = new TempDirectory();
        string frontend = dir.Write("frontend.bin", Frontend);
        string backend = dir.Write("backend.bin", Backend);

        CliResult result = CliRunner.Run("decode", "--format", "json", "--peer", frontend, backend);

        Assert.True(result.ExitCode == 0, result.ToString());
        JsonElement[] lines = result.Lines.Select(line => JsonDocument.Parse(line).RootElement).ToArray();
        Assert.Equal(11, lines.Length);

        JsonElement first = lines[0];
        Assert.Equal(0, first.GetProperty("offset").GetInt64());
        Assert.Equal("B", first.GetProperty("direction").GetString());
        Assert.Equal("R", first.GetProperty("type").GetString());
        Assert.Equal(Sasl.Length, first.GetProperty("length").GetInt32());
        Assert.Equal("AuthenticationSASL", first.GetProperty("name").GetString());
        Assert.Equal("SCRAM-SHA-256", first.GetProperty("fields").GetProperty("mechanisms")[0].GetString());

        JsonElement ok = lines[3];
        Assert.Equal("AuthenticationOk", ok.GetProperty("name").GetString());
        Assert.Equal(Sasl.EncodedLength + SaslContinue.EncodedLength + SaslFinal.EncodedLength, ok.GetProperty("offset").GetInt64());

        JsonElement ready = lines[6];
        Assert.Equal("Idle", ready.GetProperty("fields").GetProperty("transactionStatus").GetString());

        JsonElement rowDescription = lines[7].GetProperty("fields").GetProperty("fields");
        Assert.Equal(25u, rowDescription[1].GetProperty("dataTypeOid").GetUInt32());
        Assert.Equal(-1, rowDescription[1].GetProperty("dataTypeSize").GetInt16());

        JsonElement columns = lines[8].GetProperty("fields").GetProperty("columns");
        Assert.Equal("31", columns[0].GetProperty("hex").GetString());
        Assert.Equal("1", columns[0].GetProperty("text").GetString());
        Assert.Equal(JsonValueKind.Null, columns[1].ValueKind);
        Assert.False(lines[8].GetProperty("fields").TryGetProperty("length", out _));
    }

    [Fact]
    public void Decode_JsonFrontendWithoutPeer_GivesStartupPacketsNoTypeAndPasswordMessagesTheirRawBody()
    {
        CliResult result = CliRunner.Run(Frontend, "decode", "--format", "json", "--show-secrets");

        Assert.True(result.ExitCode == 0, result.ToString());
        JsonElement[] lines = result.Lines.Select(line => JsonDocument.Parse(line).RootElement).ToArray();
        Assert.Equal(JsonValueKind.Null, lines[0].GetProperty("type").ValueKind);
        Assert.Equal("StartupMessage", lines[0].GetProperty("name").GetString());
        Assert.Equal("alice", lines[0].GetProperty("fields").GetProperty("parameters")[0].GetProperty("value").GetString());
        Assert.Equal("p", lines[1].GetProperty("name").GetString());
        Assert.Equal("p", lines[1].GetProperty("type").GetString());
        Assert.Equal(Convert.ToHexStringLower(SaslInitial.ToArray().AsSpan(5)), lines[1].GetProperty("fields").GetProperty("body").GetProperty("hex").GetString());
    }

    [Fact]
    public void Decode_JsonErrorResponse_WritesFieldCodesAsCharacters()
    {
        byte[] backend = new ErrorResponse([new ErrorResponse.Field((byte)'S', "ERROR"), new ErrorResponse.Field((byte)'M', "boom")]).ToArray();

        CliResult result = CliRunner.Run(backend, "decode", "--from", "backend", "--format", "json");

        JsonElement fields = JsonDocument.Parse(result.Lines.Single()).RootElement.GetProperty("fields").GetProperty("fields");
        Assert.Equal("S", fields[0].GetProperty("code").GetString());
        Assert.Equal("boom", fields[1].GetProperty("value").GetString());
    }

    [Fact]
    public void Decode_JsonStringThatIsNotUtf8_KeepsTheRawBodyAndSaysWhy()
    {
        byte[] query = Convert.FromHexString("510000000841e94200");

        CliResult trace = CliRunner.Run(query, "decode", "--from", "frontend");
        CliResult json = CliRunner.Run(query, "decode", "--from", "frontend", "--format", "json");

        Assert.Equal(0, trace.ExitCode);
        Assert.Equal(0, json.ExitCode);
        JsonElement line = JsonDocument.Parse(json.Lines.Single()).RootElement;
        Assert.Equal("Query", line.GetProperty("name").GetString());
        Assert.Equal(JsonValueKind.Null, line.GetProperty("fields").ValueKind);
        Assert.StartsWith("queryString: String is not valid UTF-8", line.GetProperty("undecoded").GetString(), StringComparison.Ordinal);
        Assert.Equal("41e94200", line.GetProperty("body").GetProperty("hex").GetString());
    }

    public static TheoryData<string, string, long, string> HostileBackendMessages => new()
    {
        { "negative value length other than -1", "44 0000000a 0001 fffffffe", 13, "DataRow.valueLength: negative length -2" },
        { "value length past the end", "44 0000000d 0001 00000063 414243", 13, "DataRow.valueLength: length 99 is more than the 3 bytes that remain" },
        { "column count larger than the body", "44 0000000a 0003 00000001", 13, "DataRow.columns: count 3 needs at least 12 bytes" },
        { "field count larger than the body", "54 00000006 0001", 13, "RowDescription.fields: count 1 needs at least 19 bytes" },
        { "length prefix near 2 GiB", "44 7ffffffb 0001", 7, "frame.length: length 2147483643 of message type D is over the limit" },
        { "length below 4", "5a 00000003", 7, "frame.length: length 3 of message type Z is less than 4" },
        { "bytes left over", "5a 00000006 4949", 12, "ReadyForQuery: 1 bytes left over" },
        { "missing string terminator", "43 00000009 53454c4543", 11, "CommandComplete.commandTag: String has no terminating NUL" },
        { "missing list terminator", "52 00000016 0000000a 534352414d2d5348412d32353600", 29, "AuthenticationSASL.mechanisms" },
        { "invalid enum value", "5a 00000005 51", 11, "ReadyForQuery.transactionStatus" },
        { "truncated final message", "44 00000014 0001 0000", 6, "stream ends inside a message: 9 bytes of a 'D' (DataRow) message of 21 bytes" },
        { "truncated header", "44 0000", 6, "stream ends inside a message: 3 bytes of the 5-byte header of a 'D' (DataRow) message" },
    };

    [Theory]
    [MemberData(nameof(HostileBackendMessages))]
    public void Decode_HostileBackendMessage_PrintsTheLinesBeforeThenOneErrorLineWithTheOffset(string what, string hex, long offset, string reason)
    {
        byte[] input = Concat(s_readyForQuery, Convert.FromHexString(hex.Replace(" ", "", StringComparison.Ordinal)));

        CliResult result = CliRunner.Run(input, "decode", "--from", "backend");

        Assert.True(result.ExitCode == 1, what + ": " + result);
        Assert.Equal("B\t5\tReadyForQuery\t I\n", result.Stdout);
        string error = Assert.Single(result.Stderr.TrimEnd('\n').Split('\n'));
        Assert.StartsWith($"pgspec: malformed backend stream at offset {offset}: {reason}", error, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.Stderr, StringComparison.Ordinal);
    }

    public static TheoryData<string, string, long, string> HostileFrontendStreams => new()
    {
        { "startup packet shorter than 8", "00000004", 0, "frame.length: invalid length of startup packet: 4" },
        { "startup packet over the limit", "00ffffff 00030000", 0, "frame.length: invalid length of startup packet: 16777215" },
        { "startup parameter without terminator", "0000000d 00030000 7573657200", 13, "StartupMessage" },
        { "bind parameter length -5", "00000009 00030000 00 42 00000010 00 00 0000 0001 fffffffb 0000", 20, "Bind.valueLength: negative length -5" },
        { "bind parameter count larger than the body", "00000009 00030000 00 42 0000000c 00 00 0000 0009 0000", 20, "Bind.parameters: count 9" },
    };

    [Theory]
    [MemberData(nameof(HostileFrontendStreams))]
    public void Decode_HostileFrontendStream_ExitsWithOneErrorLineAndNoStackTrace(string what, string hex, long offset, string reason)
    {
        byte[] input = Convert.FromHexString(hex.Replace(" ", "", StringComparison.Ordinal));

        CliResult result = CliRunner.Run(input, "decode", "--from", "frontend");

        Assert.True(result.ExitCode == 1, what + ": " + result);
        string error = Assert.Single(result.Stderr.TrimEnd('\n').Split('\n'));
        Assert.StartsWith($"pgspec: malformed frontend stream at offset {offset}: {reason}", error, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Decode_UnknownTypeBytes_ArePrintedAsLibpqPrintsThemNotRejected()
    {
        byte[] input = Concat(s_readyForQuery, Convert.FromHexString("5900000007616263"), Convert.FromHexString("f000000004"), s_readyForQuery);

        CliResult result = CliRunner.Run(input, "decode", "--from", "backend");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(
            [
                "B\t5\tReadyForQuery\t I",
                "B\t7\tUnknown message: 59",
                "mismatched message length: consumed 4, expected 7",
                "B\t4\tUnknown message: fffffff0",
                "B\t5\tReadyForQuery\t I",
            ],
            result.Lines);
    }

    [Fact]
    public void Decode_BackendStartingWithSslRefusal_PrintsTheAnswerAndGoesOn()
    {
        byte[] input = Concat("N"u8.ToArray(), new AuthenticationOk().ToArray(), s_readyForQuery);

        CliResult result = CliRunner.Run(input, "decode");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(["B\t1\tSSLResponse\t N", "B\t5\tReadyForQuery\t I"], result.Lines);
    }

    [Fact]
    public void Decode_BackendAcceptingSsl_PrintsTheAnswerThenANoteAndStops()
    {
        byte[] input = Concat("S"u8.ToArray(), [0x16, 0x03, 0x01, 0x00, 0x7a, 0x02]);

        CliResult result = CliRunner.Run(input, "decode");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(["B\t1\tSSLResponse\t S"], result.Lines);
        Assert.Contains("the remaining 6 bytes are encrypted", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Decode_FrontendSslRequestFollowedByTls_StopsAfterTheRequest()
    {
        byte[] input = Concat(new SSLRequest().ToArray(), [0x16, 0x03, 0x01, 0x02, 0x00]);

        CliResult result = CliRunner.Run(input, "decode");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(["F\t8\tSSLRequest\t 1234 5679"], result.Lines);
        Assert.Contains("SSLRequest at offset 0 was accepted", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Decode_BackendWithPeerRequests_NamesEachAnswerAfterItsRequest()
    {
        using var dir = new TempDirectory();
        string frontend = dir.Write("frontend.bin", Concat(new GSSENCRequest().ToArray(), new SSLRequest().ToArray(), Startup.ToArray()));
        string backend = dir.Write("backend.bin", Concat("NN"u8.ToArray(), new AuthenticationOk().ToArray(), s_readyForQuery));

        CliResult result = CliRunner.Run("decode", "--peer", frontend, backend);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(["B\t1\tGSSENCResponse\t N", "B\t1\tSSLResponse\t N", "B\t5\tReadyForQuery\t I"], result.Lines);
    }

    [Fact]
    public void Decode_LongCancelKey_PrintsLibpq18sInt32AndMismatchUnderProtocol32()
    {
        byte[] key = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();
        byte[] input = new BackendKeyData(4242, key).ToArray();

        CliResult result = CliRunner.Run(input, "decode", "--from", "backend");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(["B\t40\tBackendKeyData\t 4242 16909060", "mismatched message length: consumed 12, expected 40"], result.Lines);
    }

    [Fact]
    public void Decode_LongCancelKeyUnderProtocol30_IsMalformed()
    {
        byte[] input = new BackendKeyData(4242, Enumerable.Range(1, 32).Select(i => (byte)i).ToArray()).ToArray();
        using var dir = new TempDirectory();
        string frontend = dir.Write("frontend.bin", Startup.ToArray());

        CliResult option = CliRunner.Run(input, "decode", "--from", "backend", "--protocol", "3.0");
        CliResult peer = CliRunner.Run(input, "decode", "--from", "backend", "--peer", frontend);

        Assert.True(option.ExitCode == 1, option.ToString());
        Assert.True(peer.ExitCode == 1, peer.ToString());
        Assert.StartsWith("pgspec: malformed backend stream at offset 9: BackendKeyData.secretKey", option.Stderr, StringComparison.Ordinal);
        Assert.Equal(option.Stderr, peer.Stderr);
    }

    [Fact]
    public void Decode_HexWithWhitespaceEverywhere_IsTheSameAsBinary()
    {
        byte[] hex = Encoding.ASCII.GetBytes(" 5a\t00\r\n00 0 0 0\n5 4 9\n");

        CliResult result = CliRunner.Run(hex, "decode", "--hex", "-");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(["B\t5\tReadyForQuery\t I"], result.Lines);
    }

    [Fact]
    public void Decode_HexThatGoesWrongAfterAMessage_PrintsTheMessageThenWhereTheTextIsWrong()
    {
        byte[] hex = Encoding.ASCII.GetBytes("5a00000005 49\n5a 00 zz\n");

        CliResult result = CliRunner.Run(hex, "decode", "--hex");

        Assert.Equal(2, result.ExitCode);
        Assert.Equal("B\t5\tReadyForQuery\t I\n", result.Stdout);
        Assert.Equal("pgspec: standard input is not hex: 'z' at line 2, column 7 is not a hex digit (only 0-9, a-f, A-F and whitespace are allowed)\n", result.Stderr);
    }

    [Fact]
    public void Decode_EmptyInput_PrintsNothingAndSucceeds()
    {
        CliResult result = CliRunner.Run([], "decode");

        Assert.Equal(0, result.ExitCode);
        Assert.Empty(result.Stdout);
        Assert.Empty(result.Stderr);
    }

    public static TheoryData<string[], string, string> UsageErrors => new()
    {
        { ["decode", "--from", "sideways"], "", "'sideways'" },
        { ["decode", "--format", "xml"], "", "'xml'" },
        { ["decode", "--protocol", "4.0"], "", "'4.0'" },
        { ["decode", "--bogus"], "", "--bogus" },
        { ["decode", "a", "b"], "", "'b'" },
        { ["frobnicate"], "", "frobnicate" },
        { [], "", "Required command" },
        { ["decode", "--regress", "--format", "json"], "", "--regress applies to --format trace only" },
        { ["decode", "--regress", "--format", "xml"], "", "'xml'" },
        { ["decode", "--hex"], "5a 0000 zz", "'z' at line 1, column 9 is not a hex digit" },
        { ["decode", "--hex"], "5a0", "odd number of hex digits" },
        { ["decode", "--peer", "-"], "", "cannot both be standard input" },
        { ["decode"], "C", "cannot tell which side sent the input" },
    };

    [Theory]
    [MemberData(nameof(UsageErrors))]
    public void Run_UsageError_ExitsWith2AndSaysWhy(string[] args, string stdin, string message)
    {
        CliResult result = CliRunner.Run(Encoding.ASCII.GetBytes(stdin), args);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains(message, result.Stderr, StringComparison.Ordinal);
        Assert.Empty(result.Stdout);
    }

    [Fact]
    public void Run_MissingFile_ExitsWith2AndNamesIt()
    {
        string missing = Path.Combine(Path.GetTempPath(), "pgspec-missing-" + Guid.NewGuid().ToString("N"), "stream.bin");

        CliResult result = CliRunner.Run("decode", missing);

        Assert.Equal(2, result.ExitCode);
        Assert.Equal($"pgspec: cannot read '{missing}': no such file or directory\n", result.Stderr);
    }

    [Fact]
    public void Run_MissingPeerFile_ExitsWith2AndNamesIt()
    {
        string missing = Path.Combine(Path.GetTempPath(), "pgspec-missing-" + Guid.NewGuid().ToString("N"));

        CliResult result = CliRunner.Run(s_readyForQuery, "decode", "--peer", missing, "-");

        Assert.Equal(2, result.ExitCode);
        Assert.Equal($"pgspec: cannot read '{missing}': no such file or directory\n", result.Stderr);
        Assert.Empty(result.Stdout);
    }

    [Fact]
    public void Run_Directory_ExitsWith2AndSaysItIsADirectory()
    {
        using var dir = new TempDirectory();

        CliResult input = CliRunner.Run("decode", dir.Path);
        CliResult peer = CliRunner.Run(s_readyForQuery, "decode", "--peer", dir.Path, "-");

        Assert.Equal(2, input.ExitCode);
        Assert.Equal($"pgspec: cannot read '{dir.Path}': it is a directory\n", input.Stderr);
        Assert.Equal(2, peer.ExitCode);
        Assert.Equal($"pgspec: cannot read '{dir.Path}': it is a directory\n", peer.Stderr);
    }

    [Fact]
    public void Run_DecodeHelp_DocumentsTheRulesAndExamples()
    {
        CliResult result = CliRunner.Run("decode", "--help");

        Assert.Equal(0, result.ExitCode);
        Assert.Contains("--peer", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("'S', 'N' or 'G'", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("UnknownAuthenticationResponse", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("--show-secrets", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("Examples:", result.Stdout, StringComparison.Ordinal);
    }
}
