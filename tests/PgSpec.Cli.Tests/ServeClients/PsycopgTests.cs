using System.Text.Json;
using PgSpec.Cli.Tests.RealServer;

namespace PgSpec.Cli.Tests.ServeClients;

/// <summary>psycopg 3 (on the system's libpq) against <c>pgspec serve</c>: pipeline mode, binary values, COPY, transactions.</summary>
public sealed class PsycopgTests(ServeServers servers) : IClassFixture<ServeServers>
{
    [Theory]
    [InlineData(ClientMode.Plain)]
    [InlineData(ClientMode.TlsScram)]
    public async Task Psycopg_PipelineBinaryCopyAndTransactions(ClientMode mode)
    {
        ServeServer server = await servers.For(mode);
        string script = Path.Combine(AppContext.BaseDirectory, "Scripts", "serve_psycopg.py");

        ProcessOutput run = ExternalProcess.Run(Libpq18.Python, [script, server.ConnInfo(), "psycopg_" + mode.ToString().ToLowerInvariant()]);

        Assert.True(run.ExitCode == 0, run + server.Diagnostics);
        JsonElement result = JsonDocument.Parse(run.Stdout).RootElement;
        Assert.Equal(mode == ClientMode.TlsScram, result.GetProperty("ssl").GetBoolean());
        Assert.Equal(2, result.GetProperty("pipelineCount").GetInt32());
        Assert.Equal("[1,1,1,1,1]", result.GetProperty("binaryFormats").GetRawText().Replace(" ", "", StringComparison.Ordinal));
        Assert.Equal(
            """[[1,"one","0001",1.5,true],[2,"two",null,null,false],[3,"three","",-2.25,null]]""",
            result.GetProperty("binary").GetRawText().Replace(" ", "", StringComparison.Ordinal));
        Assert.Equal("42P01", result.GetProperty("error").GetString());
        Assert.Equal(
            """[[1,"one"],[2,"two"],[3,"three"],[4,"four\ttab"],[5,null],[6,"committed"]]""",
            result.GetProperty("copyOut").GetRawText().Replace(" ", "", StringComparison.Ordinal));
    }
}
