using PgSpec.Conformance;
using PgSpec.Servers;

namespace PgSpec.Integration.Tests;

/// <summary>
/// `pgspec conform --server`: a server that breaks the protocol is reported as the server's fault,
/// apart from PgSpec's own failures; against a server PgSpec started (PostgreSQL, the reference),
/// the same error is PgSpec's.
/// </summary>
public class ServerViolationTests
{
    [Fact]
    public async Task Conform_ServerGivenByUrlAnsweringWithGarbage_IsTheServersViolation()
    {
        await using var server = new ScriptedServer(ScriptedServer.Garbage);

        ConformanceReport report = await ConformanceRunner.RunAsync([Target.FromUrl(server.Url)], null, timeout: TimeSpan.FromSeconds(10));

        Assert.True(report.Outcome == ConformanceOutcome.ServerViolatedProtocol, report.ToTable());
        Assert.False(report.Passed);
        Assert.Empty(report.Problems);
        Assert.DoesNotContain(report.Results, r => r.Status is ScenarioStatus.Failed or ScenarioStatus.Passed);
        ScenarioResult[] violations = report.Results.Where(r => r.Status == ScenarioStatus.ServerViolation).ToArray();
        Assert.True(violations.Length >= 10, report.ToTable());
        Assert.All(violations, r => Assert.StartsWith("the server violated the protocol: ", r.Detail, StringComparison.Ordinal));
        Assert.Contains(violations, r => r.Scenario == "simple-query" && r.Detail.Contains("over the limit", StringComparison.Ordinal));
        Assert.Contains(violations, r => r.Scenario == "ssl-prefer" && r.Detail.Contains("SSLResponse", StringComparison.Ordinal));
        Assert.Contains(report.Results, r => r.Scenario == "ssl-direct" && r.Status == ScenarioStatus.Refused);
        Assert.Contains(report.Results, r => r.Scenario == "unix-socket" && r.Status == ScenarioStatus.NotApplicable);
        Assert.Equal(violations.Length, report.ServerViolations.Count);
        Assert.True(server.Connections >= violations.Length, $"{server.Connections} connections");
        string table = report.ToTable();
        Assert.Contains("SERVER VIOLATED THE PROTOCOL", table, StringComparison.Ordinal);
        Assert.DoesNotContain("FAILED", table, StringComparison.Ordinal);
        Assert.Contains("\"outcome\": \"server-violated-protocol\"", report.ToJson(), StringComparison.Ordinal);
        Assert.Contains("\"status\": \"serverviolation\"", report.ToJson(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Conform_ServerGivenByUrlSendingAnUnknownMessageType_IsTheServersViolation()
    {
        // AuthenticationOk, then a message of type 'Y', which no spec defines.
        await using var server = new ScriptedServer([(byte)'R', 0, 0, 0, 8, 0, 0, 0, 0, (byte)'Y', 0, 0, 0, 4]);

        ConformanceReport report = await ConformanceRunner.RunAsync([Target.FromUrl(server.Url)], null, ["auth-trust"], TimeSpan.FromSeconds(10));

        Assert.Equal(ConformanceOutcome.ServerViolatedProtocol, report.Outcome);
        Assert.Empty(report.Problems);
        Assert.Equal(ScenarioStatus.ServerViolation, Assert.Single(report.Results).Status);
        Assert.Contains(report.Coverage.All, p => p.Key == ("url", "Unknown"));
        Assert.Contains(report.ServerViolations, v => v.Contains("unknown message type Y", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Conform_ServerPgSpecStartedBreakingTheProtocol_IsPgSpecsFailure()
    {
        await using var server = new ScriptedServer(ScriptedServer.Garbage);
        var target = new Target
        {
            Key = "15",
            Description = "a managed server",
            Host = "127.0.0.1",
            Port = server.Port,
            Roles = PgRole.Standard,
            Managed = true,
        };

        ConformanceReport report = await ConformanceRunner.RunAsync([target], null, ["simple-query"], TimeSpan.FromSeconds(10));

        Assert.Equal(ConformanceOutcome.Failed, report.Outcome);
        Assert.Equal(ScenarioStatus.Failed, Assert.Single(report.Results).Status);
        Assert.Empty(report.ServerViolations);
    }

    [Fact]
    public void Outcome_PgSpecFailureAndServerViolation_IsPgSpecsFailure()
    {
        Target url = Target.FromUrl("postgres://u@127.0.0.1:5432/db");
        var report = new ConformanceReport
        {
            Targets = [url],
            Results =
            [
                new ScenarioResult("url", "simple-query", ScenarioStatus.ServerViolation, "the server violated the protocol: frame.length: too long (at offset 1)", TimeSpan.Zero),
                new ScenarioResult("url", "copy-in", ScenarioStatus.Failed, "ScenarioFailedException: COPY tag", TimeSpan.Zero),
            ],
            Coverage = new Coverage(),
            FullRun = false,
        };

        Assert.Equal(ConformanceOutcome.Failed, report.Outcome);
        Assert.Single(report.Problems);
        Assert.Single(report.ServerViolations);
        string table = report.ToTable();
        Assert.Contains("FAILED: 1 problem(s)", table, StringComparison.Ordinal);
        Assert.Contains("SERVER VIOLATED THE PROTOCOL", table, StringComparison.Ordinal);
    }
}
