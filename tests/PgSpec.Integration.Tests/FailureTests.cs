using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using PgSpec.Protocol;
using PgSpec.Client;
using PgSpec.Server.Tests;
using PgSpec.Servers;

namespace PgSpec.Integration.Tests;

/// <summary>What goes wrong ends in a clear error within the timeout, never a hang.</summary>
[Collection(ServerCollection.Name)]
public class FailureTests(ServerFixture fixture)
{
    private static PgConnectOptions Options(PgServer server, PgAuthMethod method = PgAuthMethod.Trust)
    {
        PgRole role = server.Role(method);
        return new PgConnectOptions { Host = server.Host, Port = server.Port, User = role.Name, Password = role.Password, Database = "postgres", SslMode = PgSslMode.Disable };
    }

    [Fact]
    public async Task ServerKilledMidQuery_EndsInConnectionErrorWithoutHanging()
    {
        await using PgServer server = await new LocalPgServerProvider().StartAsync(new PgServerOptions { MajorVersion = 15 }, CancellationToken.None);
        await using PgFrontendSession session = await PgFrontendSession.ConnectAsync(Options(server) with { CommandTimeout = TimeSpan.FromSeconds(60) });
        Task<IReadOnlyList<PgResult>> sleeping = session.QueryAsync("SELECT pg_sleep(600)");
        await Activity.UntilRunningAsync(server, session, "SELECT pg_sleep(600)");
        await server.KillAsync();
        PgException e = await Assert.ThrowsAnyAsync<PgException>(() => sleeping);
        Assert.True(e is PgConnectionException or PgServerException, e.ToString());

        // The loss of the server was noticed, not waited out until the command timeout.
        Assert.DoesNotContain("did not answer within", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StalledServer_TimesOutWithClearError()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        Task<Socket> accepted = listener.AcceptSocketAsync();
        PgConnectionException e = await Assert.ThrowsAsync<PgConnectionException>(() => PgFrontendSession.ConnectAsync(new PgConnectOptions { Port = port, SslMode = PgSslMode.Disable, ConnectTimeout = TimeSpan.FromSeconds(2) }));
        Assert.Contains("timed out", e.Message, StringComparison.Ordinal);
        (await accepted).Dispose();
    }

    [Fact]
    public async Task ServerClosesAfterStartup_EndsInConnectionError()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        Task server = Task.Run(async () =>
        {
            using Socket socket = await listener.AcceptSocketAsync();
            byte[] buffer = new byte[1024];
            await socket.ReceiveAsync(buffer);
            await socket.SendAsync(new byte[] { (byte)'R', 0, 0, 0 });
            socket.Shutdown(SocketShutdown.Both);
        });
        PgException e = await Assert.ThrowsAnyAsync<PgException>(() => PgFrontendSession.ConnectAsync(new PgConnectOptions { Port = port, SslMode = PgSslMode.Disable, ConnectTimeout = TimeSpan.FromSeconds(10) }));
        Assert.Contains("inside a message", e.Message, StringComparison.Ordinal);
        await server;
    }

    [Fact]
    public async Task HostileServerLyingAboutLength_GetsProtocolErrorWithoutAllocatingIt()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        Task server = Task.Run(async () =>
        {
            using Socket socket = await listener.AcceptSocketAsync();
            byte[] buffer = new byte[1024];
            await socket.ReceiveAsync(buffer);
            await socket.SendAsync(new byte[] { (byte)'R', 0x7F, 0xFF, 0xFF, 0xF0 });

            // Open until the client gives up on the connection: what it fails on is the length, not the end of the stream.
            try
            {
                while (await socket.ReceiveAsync(buffer, SocketFlags.None, Wait.Token) > 0)
                {
                }
            }
            catch (SocketException)
            {
                // The client reset the connection.
            }
        });
        PgProtocolException e = await Assert.ThrowsAsync<PgProtocolException>(() => PgFrontendSession.ConnectAsync(new PgConnectOptions { Port = port, SslMode = PgSslMode.Disable, ConnectTimeout = TimeSpan.FromSeconds(10) }));
        Assert.Contains("over the limit", e.Reason, StringComparison.Ordinal);
        await server;
    }

    [Fact]
    public async Task SslRefusedByServer_RequireFailsClearly_PreferFallsBack()
    {
        await using PgServer server = await new LocalPgServerProvider().StartAsync(new PgServerOptions { MajorVersion = 15, Settings = new Dictionary<string, string> { ["ssl"] = "off" } }, CancellationToken.None);
        PgConnectionException e = await Assert.ThrowsAsync<PgConnectionException>(() => PgFrontendSession.ConnectAsync(Options(server) with { SslMode = PgSslMode.Require }));
        Assert.Contains("does not support SSL", e.Message, StringComparison.Ordinal);
        await using PgFrontendSession session = await PgFrontendSession.ConnectAsync(Options(server) with { SslMode = PgSslMode.Prefer });
        Assert.Null(session.Tls);
    }

    [Fact]
    public async Task WrongPassword_Md5_Surfaces28P01WithAllFields()
    {
        PgServer server = await fixture.Server(18);
        PgServerException e = await Assert.ThrowsAsync<PgServerException>(() => PgFrontendSession.ConnectAsync(Options(server, PgAuthMethod.Md5) with { Password = "nope" }));
        Assert.Equal("28P01", e.SqlState);
        Assert.Equal("FATAL", e.Fields.Severity);
        Assert.NotNull(e.Fields.File);
        Assert.NotNull(e.Fields.Routine);
        Assert.Contains("password authentication failed", e.Fields.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ServerError_CarriesEveryField()
    {
        PgServer server = await fixture.Server(15);
        await using PgFrontendSession session = await PgFrontendSession.ConnectAsync(Options(server));
        await session.QueryAsync("CREATE TEMP TABLE fe(a int CONSTRAINT fe_pos CHECK (a > 0))");
        PgServerException e = await Assert.ThrowsAsync<PgServerException>(() => session.QueryAsync("INSERT INTO fe VALUES (-1)"));
        Assert.Equal("23514", e.SqlState);
        Assert.Equal("fe", e.Fields.Table);
        Assert.Equal("fe_pos", e.Fields.Constraint);
        Assert.NotNull(e.Fields.Schema);
        Assert.NotNull(e.Fields.Detail);
        PgServerException syntax = await Assert.ThrowsAsync<PgServerException>(() => session.QueryAsync("SELEC 1"));
        Assert.Equal("1", syntax.Fields.Position);
        Assert.Equal(TransactionStatus.Idle, session.TransactionStatus);
    }
}

/// <summary>The Docker provider: a container where an engine runs, a clear error at once where none does.</summary>
public class DockerProviderTests
{
    [Fact]
    public async Task Docker_StartsAServerOrSaysClearlyThatDockerIsMissing()
    {
        try
        {
            await using PgServer server = await new DockerPgServerProvider().StartAsync(new PgServerOptions { MajorVersion = 16 }, CancellationToken.None);
            PgRole role = server.Roles[0];
            await using PgFrontendSession session = await PgFrontendSession.ConnectAsync(new PgConnectOptions { Host = server.Host, Port = server.Port, User = role.Name, Password = role.Password, Database = "postgres", SslMode = PgSslMode.Disable });
            Assert.StartsWith("16", session.Parameters["server_version"], StringComparison.Ordinal);
        }
        catch (PgProvisionException e)
        {
            Assert.Contains("Docker is not available", e.Message, StringComparison.Ordinal);
            Assert.Contains("local provider", e.Message, StringComparison.Ordinal);
        }
    }
}
