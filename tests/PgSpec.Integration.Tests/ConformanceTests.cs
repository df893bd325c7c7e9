using PgSpec.Conformance;
using PgSpec.Protocol;
using PgSpec.Servers;

namespace PgSpec.Integration.Tests;

/// <summary>Every conformance scenario, as a test, against PostgreSQL 15 and 18.</summary>
[Collection(ServerCollection.Name)]
public class ConformanceTests(ServerFixture fixture)
{
    public static TheoryData<int, string> ScenarioRuns()
    {
        var data = new TheoryData<int, string>();
        foreach (int major in new[] { 15, 18 })
        {
            foreach ((string name, _) in Scenarios.All)
            {
                data.Add(major, name);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(ScenarioRuns))]
    public async Task Scenario_AgainstRealServer_Passes(int major, string scenario)
    {
        PgServer server = await fixture.Server(major);
        ConformanceReport report = await ConformanceRunner.RunAsync([Target.From(server)], null, [scenario]);
        ScenarioResult result = Assert.Single(report.Results);
        if (scenario == "ssl-direct" && major < 17)
        {
            Assert.Equal(ScenarioStatus.NotApplicable, result.Status);
            return;
        }

        Assert.True(result.Status == ScenarioStatus.Passed, $"{scenario} against {major}: {result.Status}: {result.Detail}");
        Assert.All(report.Coverage.All.Values, tally => Assert.True(tally.RoundTripped, string.Join("; ", tally.Failures)));
    }

    [Fact]
    public async Task AllScenarios_BothServers_EveryReachableMessageRoundTrips()
    {
        PgServer[] servers = [await fixture.Server(15), await fixture.Server(18)];
        ConformanceReport report = await ConformanceRunner.RunAsync(servers.Select(Target.From).ToList(), null);
        Assert.True(report.Passed, report.ToTable());
        foreach (PgServer server in servers)
        {
            foreach (PgMessageDescriptor message in PgProtocolSpec.Messages.Where(m => !Coverage.Unreachable.ContainsKey(m.Name)))
            {
                Assert.True(report.Coverage.All.TryGetValue((server.MajorVersion.ToString(System.Globalization.CultureInfo.InvariantCulture), message.Name), out MessageTally? tally) && tally.RoundTripped, $"{message.Name} on {server.MajorVersion}");
            }
        }

        Assert.Contains("\"passed\": true", report.ToJson(), StringComparison.Ordinal);
    }
}
