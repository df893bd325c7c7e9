using System.Collections.Immutable;
using PgSpec.Client;
using PgSpec.Protocol;

namespace PgSpec.Integration.Tests;

/// <summary>
/// The client session against a server whose answer to a query is wrong in ways the framing
/// cannot see: rows wider or narrower than their description, a connection closed inside a row,
/// notifications without end. Each server is a <see cref="ScriptedServer"/> whose fixed bytes
/// accept the connection and then answer the one query the test sends.
/// </summary>
public class HostileAnswerTests
{
    private static readonly PgProtocolVersion s_version = PgProtocolVersion.V3_0;

    private static byte[] Answer(params IBackendMessage[] query)
        => [.. new AuthenticationOk().ToArray(s_version), .. new ReadyForQuery(TransactionStatus.Idle).ToArray(s_version), .. query.SelectMany(m => m.ToArray(s_version))];

    private static RowDescription Columns(int count)
        => new([.. Enumerable.Range(0, count).Select(i => new RowDescription.Field($"c{i}", 0, 0, 25, -1, -1, 0))]);

    private static DataRow Row(int count)
        => new(PgValueArray.Create([.. Enumerable.Range(0, count).Select(i => (ReadOnlyMemory<byte>?)new byte[] { (byte)('0' + i) })]));

    private static Task<PgFrontendSession> ConnectAsync(ScriptedServer server)
        => PgFrontendSession.ConnectAsync(PgConnectOptions.FromUrl(server.Url + "?sslmode=disable") with { CommandTimeout = TimeSpan.FromSeconds(30) });

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(0)]
    public async Task QueryReader_RowOfAnotherWidthThanItsDescription_IsAViolationThatBreaksTheSession(int width)
    {
        await using var server = new ScriptedServer(Answer(Columns(2), Row(2), Row(width), new CommandComplete("SELECT 2"), new ReadyForQuery(TransactionStatus.Idle)));
        await using PgFrontendSession session = await ConnectAsync(server);
        PgRowReader reader = await session.QueryReaderAsync("SELECT a, b FROM t");
        Assert.True(await reader.ReadAsync());
        Assert.Equal("1", reader.GetString(1));
        PgProtocolException e = await Assert.ThrowsAsync<PgProtocolException>(async () => await reader.ReadAsync());
        Assert.Contains($"a DataRow of {width} columns in a result of 2", e.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => reader.GetString(0));
        await reader.DisposeAsync();
        await Assert.ThrowsAsync<PgConnectionException>(() => session.QueryAsync("SELECT 1"));
    }

    [Fact]
    public async Task QueryAsync_RowOfAnotherWidthThanItsDescription_IsAViolation()
    {
        await using var server = new ScriptedServer(Answer(Columns(2), Row(3), new CommandComplete("SELECT 1"), new ReadyForQuery(TransactionStatus.Idle)));
        await using PgFrontendSession session = await ConnectAsync(server);
        PgProtocolException e = await Assert.ThrowsAsync<PgProtocolException>(() => session.QueryAsync("SELECT a, b FROM t"));
        Assert.Contains("a DataRow of 3 columns in a result of 2", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ExecuteAsync_RowOfAnotherWidthThanItsDescription_IsAViolation()
    {
        await using var server = new ScriptedServer(Answer(new ParseComplete(), new BindComplete(), Columns(2), Row(1), new CommandComplete("SELECT 1"), new ReadyForQuery(TransactionStatus.Idle)));
        await using PgFrontendSession session = await ConnectAsync(server);
        PgProtocolException e = await Assert.ThrowsAsync<PgProtocolException>(() => session.ExecuteAsync("SELECT a, b FROM t"));
        Assert.Contains("a DataRow of 1 columns in a result of 2", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task QueryAsync_RowWithoutADescription_IsAViolation()
    {
        await using var server = new ScriptedServer(Answer(Row(1), new CommandComplete("SELECT 1"), new ReadyForQuery(TransactionStatus.Idle)));
        await using PgFrontendSession session = await ConnectAsync(server);
        PgProtocolException e = await Assert.ThrowsAsync<PgProtocolException>(() => session.QueryAsync("SELECT a FROM t"));
        Assert.Contains("DataRow without a RowDescription", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task QueryReader_ServerClosesInsideARow_IsAConnectionError()
    {
        byte[] answer = Answer(Columns(2), Row(2));
        byte[] row = Row(2).ToArray(s_version);
        await using var server = new ScriptedServer([.. answer, .. row.AsSpan(0, 8)]);
        await using PgFrontendSession session = await ConnectAsync(server);
        PgRowReader reader = await session.QueryReaderAsync("SELECT a, b FROM t");
        Assert.True(await reader.ReadAsync());
        PgConnectionException e = await Assert.ThrowsAsync<PgConnectionException>(async () => await reader.ReadAsync());
        Assert.Contains("closed the connection inside a message", e.Message, StringComparison.Ordinal);
        Assert.Contains("8 bytes of it received", e.InnerException!.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NotificationsNobodyTakes_AreKeptUpToTheLimit_TheOldestDroppedAndCounted()
    {
        int sent = PgFrontendSession.MaxQueuedNotifications + 50;
        var messages = new List<IBackendMessage>();
        for (int i = 0; i < sent; i++)
        {
            messages.Add(new NotificationResponse(7, "channel", i.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }

        messages.Add(new EmptyQueryResponse());
        messages.Add(new ReadyForQuery(TransactionStatus.Idle));
        await using var server = new ScriptedServer(Answer([.. messages]));
        await using PgFrontendSession session = await ConnectAsync(server);
        int handled = 0;
        session.Notification += _ => handled++;
        await session.QueryAsync("LISTEN channel");

        Assert.Equal(sent, handled);
        Assert.Equal(50, session.DroppedNotifications);
        Assert.Equal("50", (await session.WaitForNotificationAsync()).Payload);
    }
}
