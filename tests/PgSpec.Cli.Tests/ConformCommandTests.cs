using System.Text.Json;
using PgSpec.Integration.Tests;

namespace PgSpec.Cli.Tests;

/// <summary>`pgspec conform` end to end: it starts its own servers, runs, prints and exits as documented.</summary>
public class ConformCommandTests
{
    [Fact]
    public void Conform_Default_StartsPostgres15And18AndExitsZeroWithEveryReachableMessageRoundTripped()
    {
        CliResult result = CliRunner.Run("conform");
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("PASSED", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("starting PostgreSQL 15", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("starting PostgreSQL 18", result.Stderr, StringComparison.Ordinal);
        foreach (string message in new[] { "Bind", "CopyBothResponse", "NegotiateProtocolVersion", "FunctionCall", "CancelRequest", "AuthenticationMD5Password" })
        {
            string row = result.Lines.Single(l => l.TrimStart().StartsWith(message + " ", StringComparison.Ordinal));
            Assert.DoesNotContain("NOT SEEN", row, StringComparison.Ordinal);
            Assert.DoesNotContain("FAIL", row, StringComparison.Ordinal);
        }

        Assert.Contains("unreachable", result.Lines.Single(l => l.TrimStart().StartsWith("AuthenticationSSPI ", StringComparison.Ordinal)), StringComparison.Ordinal);

        // The messages carried in CopyData and XLogData: each seen, decoded and re-encoded against both servers.
        foreach (PgSpec.Protocol.PgMessageDescriptor message in PgSpec.Conformance.ConformanceReport.SubMessages)
        {
            string key = PgSpec.Conformance.ConformanceReport.KeyOf(message);
            string row = result.Lines.Single(l => l.TrimStart().StartsWith(key + " ", StringComparison.Ordinal));
            if (PgSpec.Conformance.Coverage.UnreachableSubMessages.ContainsKey(key))
            {
                Assert.Contains("unreachable", row, StringComparison.Ordinal);
                continue;
            }

            Assert.Equal(2, System.Text.RegularExpressions.Regex.Count(row, @" ok (\d+)/\1/\1 "));
        }
    }

    [Fact]
    public void Conform_LogicalReplicationScenario_ListsEachCarriedMessage_SeenDecodedReencoded()
    {
        CliResult result = CliRunner.Run("conform", "--pg", "15", "--scenario", "logical-replication", "--format", "json");
        Assert.True(result.ExitCode == 0, result.ToString());
        using JsonDocument json = JsonDocument.Parse(result.Stdout);
        JsonElement[] carried = [.. json.RootElement.GetProperty("subMessages").EnumerateArray()];
        Assert.Equal(PgSpec.Conformance.ConformanceReport.SubMessages.Count, carried.Length);
        foreach (JsonElement message in carried)
        {
            string key = message.GetProperty("key").GetString()!;
            JsonElement server = message.GetProperty("servers").GetProperty("15");
            if (message.GetProperty("unreachable").ValueKind == JsonValueKind.String)
            {
                Assert.Equal(JsonValueKind.Null, server.ValueKind);
                continue;
            }

            Assert.True(server.ValueKind == JsonValueKind.Object, key + " was not seen");
            Assert.True(server.GetProperty("roundTripped").GetBoolean(), key);
            Assert.True(server.GetProperty("seen").GetInt32() > 0, key);
            Assert.Equal(server.GetProperty("seen").GetInt32(), server.GetProperty("reencoded").GetInt32());
            Assert.Contains("logical-replication", server.GetProperty("scenarios").EnumerateArray().Select(s => s.GetString()));
        }
    }

    [Fact]
    public void Report_CarriedMessagesNeverSeen_AreProblems_SaveTheUnreachable()
    {
        var target = new PgSpec.Conformance.Target { Key = "15", Description = "test", Host = "127.0.0.1", Port = 1, Roles = PgSpec.Servers.PgRole.Standard, Managed = true, Major = 15, PreparedTransactions = false };
        var report = new PgSpec.Conformance.ConformanceReport { Targets = [target], Results = [], Coverage = new PgSpec.Conformance.Coverage() };
        IReadOnlyList<string> problems = report.Problems;
        Assert.Contains("15: PgOutput.Insert was never seen", problems);
        Assert.Contains("15: PgOutput.StreamAbort was never seen", problems);
        Assert.Contains("15: Replication.HotStandbyFeedback was never seen", problems);
        Assert.DoesNotContain(problems, p => p.Contains("Prepare", StringComparison.Ordinal) || p.Contains("PrimaryStatusUpdate", StringComparison.Ordinal));

        // PostgreSQL 13 has pgoutput's version 1 only: no streamed transactions.
        target.Major = 13;
        Assert.DoesNotContain(report.Problems, p => p.Contains("Stream", StringComparison.Ordinal));
        Assert.Contains("NOT SEEN", report.ToTable().Split('\n').Single(l => l.TrimStart().StartsWith("PgOutput.Origin ", StringComparison.Ordinal)), StringComparison.Ordinal);
    }

    [Fact]
    public void Conform_JsonFormatWithChosenScenarios_PrintsMachineReadableReport()
    {
        CliResult result = CliRunner.Run("conform", "--pg", "15", "--scenario", "simple-query", "--scenario", "copy-out", "--format", "json");
        Assert.True(result.ExitCode == 0, result.ToString());
        using JsonDocument json = JsonDocument.Parse(result.Stdout);
        Assert.True(json.RootElement.GetProperty("passed").GetBoolean());
        Assert.Equal(2, json.RootElement.GetProperty("scenarios").GetArrayLength());
        JsonElement query = json.RootElement.GetProperty("messages").EnumerateArray().Single(m => m.GetProperty("name").GetString() == "Query");
        Assert.True(query.GetProperty("servers").GetProperty("15").GetProperty("roundTripped").GetBoolean());
        Assert.Equal(52, json.RootElement.GetProperty("messages").GetArrayLength());
    }

    [Fact]
    public void Conform_UnreachableServer_FailsWithExitOneAndSaysWhy()
    {
        CliResult result = CliRunner.Run("conform", "--server", "postgres://nobody:x@127.0.0.1:1/db", "--scenario", "simple-query", "--timeout", "5");
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("cannot connect to 127.0.0.1:1", result.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Conform_ServerBreakingTheProtocol_ExitsThreeAndBlamesTheServer()
    {
        await using var server = new ScriptedServer(ScriptedServer.Garbage);

        CliResult result = CliRunner.Run("conform", "--server", server.Url, "--timeout", "10");

        Assert.True(result.ExitCode == 3, result.ToString());
        Assert.Contains("url:violation", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("the server violated the protocol: ", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("SERVER VIOLATED THE PROTOCOL", result.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("FAILED", result.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void ConformHelp_DocumentsEveryExitCode()
    {
        CliResult result = CliRunner.Run("conform", "--help");

        Assert.Equal(0, result.ExitCode);
        foreach (string code in new[] { "0 when", "1 when", "2 for", "3 when" })
        {
            Assert.Contains(code, result.Stdout, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("--timeout", "-5", "--timeout")]
    [InlineData("--timeout", "0", "--timeout")]
    [InlineData("--timeout", "86401", "--timeout")]
    [InlineData("--timeout", "3000000", "--timeout")]
    [InlineData("--timeout", "99999999999", "--timeout")]
    [InlineData("--pg", "0", "--pg")]
    [InlineData("--pg", "15,100", "--pg")]
    [InlineData("--pg", "99999999999", "--pg")]
    [InlineData("--pg", ",", "--pg")]
    [InlineData("--pg", "", "--pg")]
    [InlineData("--pg", "15;18", "--pg")]
    [InlineData("--server", "postgres://u@127.0.0.1/db?connect_timeout=soon", "connect_timeout")]
    [InlineData("--server", "postgres://u@127.0.0.1/db?connect_timeout=1e300", "connect_timeout")]
    [InlineData("--server", "postgres://u@127.0.0.1:0/db", "port")]
    [InlineData("--server", "postgres://u@127.0.0.1/db?channel_binding=maybe", "channel_binding")]
    [InlineData("--server", "postgres://u@127.0.0.1/db?sslnegotiation=eventually", "sslnegotiation")]
    [InlineData("--scenario", "", "scenario")]
    public void Conform_OutOfRangeOrMalformedOption_ExitsTwoBeforeStartingAnything(string option, string value, string named)
    {
        CliResult result = CliRunner.Run("conform", option, value);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.StartsWith("pgspec: ", result.Stderr, StringComparison.Ordinal);
        Assert.Contains(named, result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("starting", result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.Stderr, StringComparison.Ordinal);
        Assert.Equal("", result.Stdout);
    }

    [Theory]
    [InlineData("--pg", "fifteen")]
    [InlineData("--scenario", "no-such-scenario")]
    [InlineData("--server", "http://example")]
    [InlineData("--format", "xml")]
    public void Conform_BadArguments_ExitTwoWithMessage(string option, string value)
    {
        CliResult result = CliRunner.Run("conform", option, value);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("pgspec", result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.Stderr, StringComparison.Ordinal);
    }
}
