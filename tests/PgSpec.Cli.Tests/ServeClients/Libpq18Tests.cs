using System.Globalization;
using System.Text.Json;
using PgSpec.Cli.Tests.RealServer;

namespace PgSpec.Cli.Tests.ServeClients;

/// <summary>
/// libpq 18 (through ctypes) against <c>pgspec serve</c> asking for protocol 3.2: the version
/// agreed, the length of the cancel key, and a running pg_sleep cancelled.
/// </summary>
public sealed class Libpq18Tests(ServeServers servers) : IClassFixture<ServeServers>
{
    [Theory]
    [InlineData(ClientMode.Plain, "legacy")]
    [InlineData(ClientMode.Plain, "blocking")]
    [InlineData(ClientMode.TlsScram, "blocking")]
    public async Task Libpq18_Protocol32_LongCancelKeyCancelsPgSleep(ClientMode mode, string cancel)
    {
        ServeServer server = await servers.For(mode);

        JsonElement result = Run(server, cancel);

        Assert.Equal(30002, result.GetProperty("fullProtocol").GetInt32());
        Assert.Equal(mode == ClientMode.TlsScram ? 1 : 0, result.GetProperty("ssl").GetInt32());
        // BackendKeyData: Int32 length, Int32 process id, then the key: 32 bytes under 3.2.
        Assert.Equal(4 + 4 + 32, BackendKeyDataLength(server, result.GetProperty("pid").GetInt32()));
        AssertCancelled(result, server);
    }

    [Fact]
    public async Task Libpq18_AskingFor32FromA30Server_Gets30AndAShortKey()
    {
        ServeServer server = await servers.Protocol30();

        JsonElement result = Run(server, "legacy");

        Assert.Equal(30000, result.GetProperty("fullProtocol").GetInt32());
        Assert.Equal(4 + 4 + 4, BackendKeyDataLength(server, result.GetProperty("pid").GetInt32()));
        Assert.Contains(ServerTrace.Session(server, result.GetProperty("pid").GetInt32()), l => l.Contains("\tNegotiateProtocolVersion\t", StringComparison.Ordinal));
        AssertCancelled(result, server);
    }

    private static JsonElement Run(ServeServer server, string cancel)
    {
        string script = Path.Combine(AppContext.BaseDirectory, "Scripts", "serve_libpq18_cancel.py");
        ProcessOutput run = ExternalProcess.Run(
            Libpq18.Python,
            [script, Libpq18.LibraryDirectory, server.ConnInfo("max_protocol_version=3.2"), server.TraceFile, cancel]);
        Assert.True(run.ExitCode == 0, run + server.Diagnostics);
        return JsonDocument.Parse(run.Stdout).RootElement;
    }

    private static void AssertCancelled(JsonElement result, ServeServer server)
    {
        string context = result.GetRawText() + server.Diagnostics;
        Assert.True(result.GetProperty("cancelSent").GetInt32() == 1, context);
        Assert.Equal("""["57014"]""", result.GetProperty("results").GetRawText());

        // The sleep ended because of the cancel, long before its 60 seconds.
        Assert.True(result.GetProperty("secondsAfterCancel").GetDouble() < 30, context);
    }

    /// <summary>The length field of the BackendKeyData the server's trace shows for the session.</summary>
    private static int BackendKeyDataLength(ServeServer server, int processId)
    {
        string line = Assert.Single(ServerTrace.Session(server, processId), l => l.Contains("\tBackendKeyData\t", StringComparison.Ordinal));
        return int.Parse(line.Split('\t')[2], CultureInfo.InvariantCulture);
    }
}
