using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using PgSpec.Client;
using PgSpec.Protocol;
using PgSpec.Server;

namespace PgSpec.Server.Tests;

public sealed class BackendTests : IAsyncLifetime
{
    private readonly System.Collections.Concurrent.ConcurrentQueue<ScriptedHandler> _handlers = new();
    private PgBackendServer _server = null!;

    private int Port => ((IPEndPoint)_server.EndPoints[0]).Port;

    /// <summary>No test waits longer than this for anything.</summary>
    private static CancellationToken Timeout => new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token;

    public Task InitializeAsync()
    {
        var options = new PgBackendOptions();
        options.Listen.Add(new IPEndPoint(IPAddress.Loopback, 0));
        _server = PgBackendServer.Start(options, session =>
        {
            var handler = new ScriptedHandler(session);
            _handlers.Enqueue(handler);
            return handler;
        });
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private PgConnectOptions Connect(PgProtocolVersion? version = null) => new()
    {
        Port = Port,
        User = "alice",
        SslMode = PgSslMode.Disable,
        ProtocolVersion = version ?? PgProtocolVersion.V3_2,
        Parameters = [new("application_name", "backend-tests")],
    };

    [Fact]
    public async Task Startup_reports_parameters_and_a_32_byte_key_under_3_2()
    {
        await using PgFrontendSession client = await PgFrontendSession.ConnectAsync(Connect(), cancellationToken: Timeout);
        Assert.Equal(PgProtocolVersion.V3_2, client.ProtocolVersion);
        Assert.Equal(32, client.SecretKey.Length);
        Assert.Equal("backend-tests", client.Parameters["application_name"]);
        Assert.Equal("alice", client.Parameters["session_authorization"]);
        Assert.Equal("UTF8", client.Parameters["server_encoding"]);
        Assert.Equal("on", client.Parameters["standard_conforming_strings"]);
    }

    [Fact]
    public async Task Protocol_3_0_gets_a_4_byte_key()
    {
        await using PgFrontendSession client = await PgFrontendSession.ConnectAsync(Connect(PgProtocolVersion.V3_0), cancellationToken: Timeout);
        Assert.Equal(4, client.SecretKey.Length);
        Assert.Null(client.Negotiation);
    }

    [Fact]
    public async Task Simple_query_with_several_statements_stops_at_the_error()
    {
        await using PgFrontendSession client = await PgFrontendSession.ConnectAsync(Connect(), cancellationToken: Timeout);
        IReadOnlyList<IBackendMessage> messages = await client.RoundTripAsync([new Query("rows 2; fail; rows 1")], Timeout);
        Assert.Equal(
            ["RowDescription", "DataRow", "DataRow", "CommandComplete", "ErrorResponse", "ReadyForQuery"],
            messages.Select(m => m.Name));
        Assert.Equal("SELECT 2", ((CommandComplete)messages[3]).CommandTag);
    }

    [Fact]
    public async Task Empty_query_gets_EmptyQueryResponse()
    {
        await using PgFrontendSession client = await PgFrontendSession.ConnectAsync(Connect(), cancellationToken: Timeout);
        IReadOnlyList<IBackendMessage> messages = await client.RoundTripAsync([new Query("  ")], Timeout);
        Assert.Equal(["EmptyQueryResponse", "ReadyForQuery"], messages.Select(m => m.Name));
    }

    [Fact]
    public async Task Execute_with_a_row_limit_suspends_then_completes()
    {
        await using PgFrontendSession client = await PgFrontendSession.ConnectAsync(Connect(), cancellationToken: Timeout);
        IReadOnlyList<IBackendMessage> messages = await client.RoundTripAsync(
            [new Parse("", "rows 3", []), new Bind("", "", [], [], []), new Describe(StatementOrPortal.Portal, ""), new Execute("", 2), new Execute("", 2), new Sync()],
            Timeout);
        Assert.Equal(
            ["ParseComplete", "BindComplete", "RowDescription", "DataRow", "DataRow", "PortalSuspended", "DataRow", "CommandComplete", "ReadyForQuery"],
            messages.Select(m => m.Name));
        Assert.Equal("SELECT 1", ((CommandComplete)messages[7]).CommandTag);
    }

    [Fact]
    public async Task An_extended_query_error_skips_to_Sync()
    {
        await using PgFrontendSession client = await PgFrontendSession.ConnectAsync(Connect(), cancellationToken: Timeout);
        IReadOnlyList<IBackendMessage> messages = await client.RoundTripAsync(
            [new Parse("", "bad", []), new Bind("", "", [], [], []), new Execute("", 0), new Sync(), new Query("rows 1")],
            Timeout,
            until: m => m is CommandComplete);
        Assert.Equal(["ErrorResponse", "ReadyForQuery", "RowDescription", "DataRow", "CommandComplete"], messages.Select(m => m.Name));
    }

    [Fact]
    public async Task Binary_results_and_text_parameters()
    {
        await using PgFrontendSession client = await PgFrontendSession.ConnectAsync(Connect(), cancellationToken: Timeout);
        Client.PgResult rows = await client.ExecuteAsync("rows 2", resultFormats: [1], cancellationToken: Timeout);
        Assert.Equal(2, BinaryPrimitives.ReadInt64BigEndian(rows.Rows[1].Columns[0]!.Value.Span));
        Assert.Equal("row 2", Encoding.UTF8.GetString(rows.Rows[1].Columns[1]!.Value.Span));
        Client.PgResult echoed = await client.ExecuteAsync("param", [Encoding.UTF8.GetBytes("hello")], cancellationToken: Timeout);
        Assert.Equal("hello", echoed.Text(0, 0));
    }

    [Fact]
    public async Task Unknown_statements_and_portals_get_PostgreSQLs_errors()
    {
        await using PgFrontendSession client = await PgFrontendSession.ConnectAsync(Connect(), cancellationToken: Timeout);
        IReadOnlyList<IBackendMessage> messages = await client.RoundTripAsync(
            [new Bind("", "nope", [], [], []), new Sync(), new Execute("nope", 0), new Sync(), new Close(StatementOrPortal.Statement, "nope"), new Sync()],
            Timeout);
        Assert.Equal(["ErrorResponse", "ReadyForQuery", "ErrorResponse", "ReadyForQuery", "CloseComplete", "ReadyForQuery"], messages.Select(m => m.Name));
        Assert.Contains(((ErrorResponse)messages[0]).Fields, f => f.Code == 'C' && f.Value == "26000");
        Assert.Contains(((ErrorResponse)messages[2]).Fields, f => f.Code == 'M' && f.Value == "portal \"nope\" does not exist");
    }

    [Fact]
    public async Task Transaction_status_and_parameter_changes_reach_ReadyForQuery()
    {
        await using PgFrontendSession client = await PgFrontendSession.ConnectAsync(Connect(), cancellationToken: Timeout);
        await client.QueryAsync("begin; set DateStyle German", cancellationToken: Timeout);
        Assert.Equal(TransactionStatus.InTransaction, client.TransactionStatus);
        Assert.Equal("German", client.Parameters["DateStyle"]);
        await Assert.ThrowsAsync<PgServerException>(() => client.QueryAsync("fail", cancellationToken: Timeout));
        Assert.Equal(TransactionStatus.FailedTransaction, client.TransactionStatus);
        await client.QueryAsync("rollback", cancellationToken: Timeout);
        Assert.Equal(TransactionStatus.Idle, client.TransactionStatus);
    }

    [Fact]
    public async Task Copy_in_and_out()
    {
        await using PgFrontendSession client = await PgFrontendSession.ConnectAsync(Connect(), cancellationToken: Timeout);
        IReadOnlyList<Client.PgResult> copied = await client.QueryAsync("copy in", [Encoding.UTF8.GetBytes("a\nb"), Encoding.UTF8.GetBytes("c\nd\n")], Timeout);
        Assert.Equal("COPY 3", copied[0].CommandTag);
        IReadOnlyList<Client.PgResult> output = await client.QueryAsync("copy out 3", cancellationToken: Timeout);
        Assert.Equal(["line 1\n", "line 2\n", "line 3\n"], output[0].CopyData.Select(d => Encoding.UTF8.GetString(d.Span)));
        Assert.Equal("COPY 3", output[0].CommandTag);
    }

    [Fact]
    public async Task CopyFail_is_57014_and_later_copy_data_is_dropped()
    {
        await using PgFrontendSession client = await PgFrontendSession.ConnectAsync(Connect(), cancellationToken: Timeout);
        IReadOnlyList<IBackendMessage> messages = await client.RoundTripAsync(
            [new Query("copy in"), new CopyData(Encoding.UTF8.GetBytes("x\n")), new CopyFail("changed my mind"), new CopyData(Encoding.UTF8.GetBytes("late\n")), new Query("rows 1")],
            Timeout,
            until: m => m is CommandComplete);
        Assert.Equal(["CopyInResponse", "ErrorResponse", "ReadyForQuery", "RowDescription", "DataRow", "CommandComplete"], messages.Select(m => m.Name));
        Assert.Contains(((ErrorResponse)messages[1]).Fields, f => f.Code == 'M' && f.Value == "COPY from stdin failed: changed my mind");
    }

    [Fact]
    public async Task A_cancel_request_stops_the_running_statement_with_57014()
    {
        await using PgFrontendSession client = await PgFrontendSession.ConnectAsync(Connect(), cancellationToken: Timeout);
        Task<IReadOnlyList<Client.PgResult>> sleeping = client.QueryAsync("sleep", cancellationToken: Timeout);
        await _handlers.Single(h => h.Session.ProcessId == client.ProcessId).Sleeping.Task.WaitAsync(Timeout);
        await client.CancelAsync(Timeout);
        PgServerException error = await Assert.ThrowsAsync<PgServerException>(() => sleeping);
        Assert.Equal("57014", error.Fields.SqlState);
        Assert.Equal("canceling statement due to user request", error.Fields.Message);
        Assert.Single((await client.QueryAsync("rows 1", cancellationToken: Timeout))[0].Rows);
    }

    [Fact]
    public async Task A_newer_minor_version_and_unknown_options_get_one_NegotiateProtocolVersion()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, Port, Timeout);
        await using var stream = new NetworkStream(socket);
        var startup = new StartupMessage(PgProtocolVersion.From(3, 9999).Code, [new("user", "bob"), new("_pq_.test_protocol_negotiation", "x"), new("_pq_.other", "y")]);
        await stream.WriteAsync(startup.ToArray(), Timeout);
        var context = new DecodeContext();
        context.ObserveFrontend(FrontendMessageKind.StartupMessage, startup.ToArray().AsSpan(4));
        var reader = new PgMessageReader(PgDirection.Backend, context);
        var received = new List<IBackendMessage>();
        byte[] buffer = new byte[65536];
        int have = 0;
        while (received.Count == 0 || received[^1] is not ReadyForQuery)
        {
            int n = await stream.ReadAsync(buffer.AsMemory(have), Timeout);
            Assert.NotEqual(0, n);
            have += n;
            int offset = 0;
            while (reader.TryRead(buffer.AsSpan(offset, have - offset), out int consumed, out PgReceivedMessage message, out _) == PgReadStatus.Message)
            {
                received.Add((IBackendMessage)message.ToMessage(context));
                offset += consumed;
            }

            buffer.AsSpan(offset, have - offset).CopyTo(buffer);
            have -= offset;
        }

        NegotiateProtocolVersion negotiation = Assert.IsType<NegotiateProtocolVersion>(received[0]);
        Assert.Equal(PgProtocolVersion.V3_2.Code, negotiation.NewestProtocolVersion);
        Assert.Equal(["_pq_.test_protocol_negotiation", "_pq_.other"], negotiation.UnrecognizedOptions.AsEnumerable());
        Assert.Single(received, m => m is NegotiateProtocolVersion);
        Assert.IsType<AuthenticationOk>(received[1]);
        Assert.Equal(32, Assert.Single(received.OfType<BackendKeyData>()).SecretKey.Length);
    }

    [Fact]
    public async Task Notifications_reach_an_idle_session_at_once_and_a_busy_one_before_ReadyForQuery()
    {
        await using PgFrontendSession listener = await PgFrontendSession.ConnectAsync(Connect() with { User = "listener" }, cancellationToken: Timeout);
        await using PgFrontendSession sender = await PgFrontendSession.ConnectAsync(Connect() with { User = "listener" }, cancellationToken: Timeout);
        IReadOnlyList<IBackendMessage> own = await sender.RoundTripAsync([new Query("notify jobs ready")], Timeout);
        Assert.Equal(["CommandComplete", "NotificationResponse", "ReadyForQuery"], own.Select(m => m.Name));

        // The listener sent nothing since: the notification came while it was idle.
        NotificationResponse received = await listener.WaitForNotificationAsync(Timeout);
        Assert.Equal("jobs", received.Channel);
        Assert.Equal("ready", received.Payload);
        Assert.Equal(sender.ProcessId, received.ProcessId);
    }

    [Fact]
    public async Task FunctionCall_is_answered_by_the_handler_or_refused_with_0A000()
    {
        await using PgFrontendSession client = await PgFrontendSession.ConnectAsync(Connect(), cancellationToken: Timeout);
        ReadOnlyMemory<byte>? joined = await client.CallFunctionAsync(42, [Encoding.UTF8.GetBytes("ab"), Encoding.UTF8.GetBytes("cd")], cancellationToken: Timeout);
        Assert.Equal("abcd", Encoding.UTF8.GetString(joined!.Value.Span));
        PgServerException refused = await Assert.ThrowsAsync<PgServerException>(() => client.CallFunctionAsync(7, [], cancellationToken: Timeout));
        Assert.Equal("0A000", refused.Fields.SqlState);
        Assert.Single((await client.QueryAsync("rows 1", cancellationToken: Timeout))[0].Rows);
    }
}
