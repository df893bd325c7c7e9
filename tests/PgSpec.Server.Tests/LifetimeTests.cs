using System.Net;
using System.Net.Sockets;
using PgSpec.Client;
using PgSpec.Protocol;

namespace PgSpec.Server.Tests;

/// <summary>What a session holds and gives back, and what a server refuses to take over.</summary>
public sealed class LifetimeTests
{
    private static CancellationToken Timeout => new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token;

    [Fact]
    public async Task Statements_are_released_when_run_replaced_closed_and_at_the_sessions_end()
    {
        await using TestServer server = TestServer.Start();
        await using PgFrontendSession client = await server.ConnectAsync();
        ScriptedHandler handler = server.HandlerOf(client.ProcessId);

        await client.QueryAsync("rows 1; rows 2; other", cancellationToken: Timeout);
        Assert.Equal(0, handler.LiveStatements);

        await client.RoundTripAsync([new Parse("", "rows 1", []), new Parse("", "rows 2", []), new Parse("named", "rows 3", []), new Sync()], Timeout);
        Assert.Equal(2, handler.LiveStatements);

        await client.RoundTripAsync([new Close(StatementOrPortal.Statement, "named"), new Sync()], Timeout);
        Assert.Equal(1, handler.LiveStatements);

        await client.DisposeAsync();
        await Wait.UntilAsync(() => handler.LiveStatements == 0, "the session's end releases the unnamed statement");
    }

    [Fact]
    public async Task A_batch_that_cannot_commit_gets_the_error_and_ReadyForQuery()
    {
        await using TestServer server = TestServer.Start();
        await using PgFrontendSession client = await server.ConnectAsync();

        IReadOnlyList<IBackendMessage> simple = await client.RoundTripAsync([new Query("commitfail")], Timeout);
        Assert.Equal(["CommandComplete", "ErrorResponse", "ReadyForQuery"], simple.Select(m => m.Name));

        IReadOnlyList<IBackendMessage> extended = await client.RoundTripAsync(
            [new Parse("", "commitfail", []), new Bind("", "", [], [], []), new Execute("", 0), new Sync(), new Query("rows 1")],
            Timeout,
            until: m => m is CommandComplete { CommandTag: "SELECT 1" });
        Assert.Equal(["ParseComplete", "BindComplete", "CommandComplete", "ErrorResponse", "ReadyForQuery", "RowDescription", "DataRow", "CommandComplete"], extended.Select(m => m.Name));
    }

    [Fact]
    public async Task A_second_server_on_the_same_port_is_refused()
    {
        await using TestServer first = TestServer.Start();
        var options = new PgBackendOptions();
        options.Listen.Add(new IPEndPoint(IPAddress.Loopback, first.Port));

        SocketException refused = Assert.Throws<SocketException>(() => PgBackendServer.Start(options, session => new ScriptedHandler(session)));
        Assert.Equal(SocketError.AddressAlreadyInUse, refused.SocketErrorCode);
    }

    [Fact]
    public void A_file_at_the_socket_path_is_neither_used_nor_deleted()
    {
        string folder = Directory.CreateTempSubdirectory("pgspec-socket-").FullName;
        try
        {
            string path = Path.Combine(folder, ".s.PGSQL.5432");
            File.WriteAllText(path, "");
            var options = new PgBackendOptions();
            options.Listen.Add(new UnixDomainSocketEndPoint(path));

            IOException refused = Assert.Throws<IOException>(() => PgBackendServer.Start(options, session => new ScriptedHandler(session)));
            Assert.Contains("is not a socket", refused.Message, StringComparison.Ordinal);
            Assert.True(File.Exists(path));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public async Task A_parameter_too_long_for_ParameterStatus_is_refused_when_set()
    {
        await using TestServer server = TestServer.Start();
        await using PgFrontendSession client = await server.ConnectAsync();
        PgBackendSession session = server.HandlerOf(client.ProcessId).Session;

        Assert.Throws<ArgumentException>(() => session.SetParameter("application_name", new string('x', 40000)));
        Assert.Throws<ArgumentException>(() => session.SetParameter("application_name", "a\0b"));
        Assert.Single((await client.QueryAsync("rows 1", cancellationToken: Timeout))[0].Rows);
    }
}
