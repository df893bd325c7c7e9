using System.Globalization;
using System.Text.Json;
using PgSpec.Cli.Tests.RealServer;

namespace PgSpec.Cli.Tests.ServeClients;

/// <summary>node-postgres and postgres.js against <c>pgspec serve</c>.</summary>
public sealed class NodeTests(ServeServers servers) : IClassFixture<ServeServers>
{
    [Theory]
    [InlineData(ClientMode.Plain)]
    [InlineData(ClientMode.TlsScram)]
    [InlineData(ClientMode.Md5)]
    [InlineData(ClientMode.Password)]
    public async Task NodePg_ParametersTransactionsErrorsAndCopy(ClientMode mode)
    {
        ServeServer server = await servers.For(mode);
        ProcessOutput run = NodePackages.Run("serve_node_pg.js", Arguments(server, "node_pg_" + mode.ToString().ToLowerInvariant()));

        Assert.True(run.ExitCode == 0, run + server.Diagnostics);
        JsonElement result = JsonDocument.Parse(run.Stdout).RootElement;
        Assert.Equal(mode == ClientMode.TlsScram, result.GetProperty("encrypted").GetBoolean());
        Assert.Equal("""[{"sum":"42","s":"hello","n":null}]""", result.GetProperty("params").GetRawText());
        Assert.Equal(1, result.GetProperty("inserted").GetInt32());
        Assert.Equal("42P01", result.GetProperty("error").GetString());
        Assert.Equal("42P01", result.GetProperty("errorInTransaction").GetString());
        Assert.Equal("25P02", result.GetProperty("afterErrorInTransaction").GetString());
        Assert.Equal("1,one\n2,two\n4,committed\n5,five\n6,\n", result.GetProperty("copyOut").GetString());
        Assert.Equal(
            """[["1","one","0001ff",true],["2","two",null,false],["4","committed",null,null],["5","five","0a0b",true],["6",null,null,null]]""",
            result.GetProperty("rows").GetRawText());
    }

    [Theory]
    [InlineData(ClientMode.Plain)]
    [InlineData(ClientMode.TlsScram)]
    [InlineData(ClientMode.Md5)]
    public async Task PostgresJs_ParametersTransactionsAndErrors(ClientMode mode)
    {
        ServeServer server = await servers.For(mode);
        ProcessOutput run = NodePackages.Run("serve_postgres_js.js", Arguments(server, "postgres_js_" + mode.ToString().ToLowerInvariant()));

        Assert.True(run.ExitCode == 0, run + server.Diagnostics);
        JsonElement result = JsonDocument.Parse(run.Stdout).RootElement;
        Assert.Equal("""[{"sum":"42","s":"hello","n":null}]""", result.GetProperty("params").GetRawText());
        Assert.Equal("roll back", result.GetProperty("rolledBack").GetString());
        Assert.Equal("42P01", result.GetProperty("error").GetString());
        Assert.Equal("""[{"twice":"42"}]""", result.GetProperty("unsafe").GetRawText());
        Assert.Equal("""[[{"protocol":"simple"}],[{"statements":"two"}]]""", result.GetProperty("simple").GetRawText());
        Assert.Equal("""[["1","one","0001ff",true],["2","committed",null,false]]""", result.GetProperty("rows").GetRawText());
    }

    private static string[] Arguments(ServeServer server, string table)
        => [server.Host, server.Port.ToString(CultureInfo.InvariantCulture), server.User, server.Password, server.Tls ? "1" : "0", table];
}
