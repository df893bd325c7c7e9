using System.Net.Sockets;
using System.Text;
using PgSpec.Client;
using PgSpec.Protocol;

namespace PgSpec.Integration.Tests;

[Collection(ServerCollection.Name)]
/// <summary>The row reader where an answer goes wrong: COPY, failures while opening or reading, a session closed under it.</summary>
public class RowReaderEdgeTests(ServerFixture fixture)
{
    private async Task<PgFrontendSession> ConnectAsync(Action<PgTraffic>? traffic = null, TimeSpan? commandTimeout = null)
    {
        PgConnectOptions options = await fixture.OptionsAsync(15);
        return await PgFrontendSession.ConnectAsync(options with { CommandTimeout = commandTimeout ?? TimeSpan.FromSeconds(60) }, traffic);
    }

    [Fact]
    public async Task ExecuteReader_CopyFromStdin_IsRefusedAndTheSessionStaysUsable()
    {
        await using PgFrontendSession session = await ConnectAsync(commandTimeout: TimeSpan.FromSeconds(5));
        await session.QueryAsync("CREATE TEMP TABLE c (a int)");
        // The server ignores the Sync that came with Execute while in COPY IN; after CopyFail it waits for another Sync.
        PgServerException e = await Assert.ThrowsAsync<PgServerException>(() => session.ExecuteReaderAsync("COPY c FROM STDIN"));
        Assert.Equal("57014", e.SqlState);
        Assert.Equal("next", (await session.QueryAsync("SELECT 'next'"))[0].Text(0, 0));
    }

    [Fact]
    public async Task QueryReader_FirstResultNotUtf8_LeavesTheSessionInStep()
    {
        await using PgFrontendSession session = await ConnectAsync();
        await session.QueryAsync("SET client_encoding = 'LATIN1'");
        // The column name comes back as the single byte 0xE9: the owned RowDescription cannot hold
        // it, and the rest of the answer cannot be followed: the session is broken, never a step behind.
        await Assert.ThrowsAsync<PgProtocolException>(() => session.QueryReaderAsync("SELECT 'stale' AS U&\"\\00E9\""));
        await Assert.ThrowsAsync<PgConnectionException>(() => session.QueryAsync("SELECT 'next'"));
    }

    [Fact]
    public async Task SessionDisposedWithAReaderOpen_StillSendsTerminate()
    {
        var sent = new List<string>();
        PgFrontendSession session = await ConnectAsync(t =>
        {
            if (t.Direction == PgDirection.Frontend)
            {
                lock (sent)
                {
                    sent.Add(t.Name);
                }
            }
        });
        PgRowReader reader = await session.QueryReaderAsync("SELECT 1");
        await session.DisposeAsync();
        lock (sent)
        {
            Assert.Contains(Terminate.MessageName, sent);
        }

        await reader.DisposeAsync();
    }

    [Fact]
    public async Task ExecuteReader_BindThatCannotBeEncoded_LeavesNoParseQueued()
    {
        await using PgFrontendSession session = await ConnectAsync();
        await Assert.ThrowsAnyAsync<Exception>(() => session.ExecuteReaderAsync("SELECT 1", parameterFormats: new short[70_000]));
        Assert.Equal("next", (await session.QueryAsync("SELECT 'next'"))[0].Text(0, 0));
    }

    [Fact]
    public async Task QueryReader_CopyOutThenCopyIn_IsRefusedWithoutHanging()
    {
        await using PgFrontendSession session = await ConnectAsync(commandTimeout: TimeSpan.FromSeconds(5));
        await session.QueryAsync("CREATE TEMP TABLE c (a int)");
        await Assert.ThrowsAsync<NotSupportedException>(() => session.QueryReaderAsync("COPY (SELECT 1) TO STDOUT; COPY c FROM STDIN"));
        Assert.Equal("next", (await session.QueryAsync("SELECT 'next'"))[0].Text(0, 0));
    }

    [Fact]
    public async Task SessionDisposedWhileAReadWaits_TheReadEndsWithAConnectionError()
    {
        await using var server = new StalledServer(new RowDescription([new RowDescription.Field("a", 0, 0, 25, -1, -1, 0)]));
        PgFrontendSession session = await PgFrontendSession.ConnectAsync(server.Options(TimeSpan.FromSeconds(60)));
        PgRowReader reader = await session.QueryReaderAsync("SELECT a");
        ValueTask<bool> read = reader.ReadAsync();
        Assert.False(read.IsCompleted);
        await session.DisposeAsync();
        Exception e = await Assert.ThrowsAnyAsync<Exception>(async () => await read.AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.True(e is PgConnectionException, e.ToString());
    }

    [Fact]
    public async Task QueryReader_TokenAlreadyCancelled_LeavesNoQueryQueued()
    {
        await using PgFrontendSession session = await ConnectAsync();
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => session.QueryReaderAsync("SELECT 'stale'", cancelled.Token));
        Assert.Equal("next", (await session.QueryAsync("SELECT 'next'"))[^1].Text(0, 0));
    }

    [Fact]
    public async Task QueryReader_NoticeHandlerThrowsWhileOpening_LeavesTheSessionInStep()
    {
        await using PgFrontendSession session = await ConnectAsync();
        Action<NoticeResponse> throwing = _ => throw new InvalidOperationException("handler");
        session.Notice += throwing;
        await Assert.ThrowsAsync<InvalidOperationException>(() => session.QueryReaderAsync("DO $$BEGIN RAISE NOTICE 'n'; END$$; SELECT 'stale'"));
        session.Notice -= throwing;

        // The answer was left unread: the session is broken, never a step behind.
        await Assert.ThrowsAsync<PgConnectionException>(() => session.QueryAsync("SELECT 'next'"));
    }

    [Fact]
    public async Task QueryReader_NoticeHandlerThrowsWhileDisposing_BreaksTheSession()
    {
        await using PgFrontendSession session = await ConnectAsync();
        Action<NoticeResponse> throwing = _ => throw new InvalidOperationException("handler");
        PgRowReader reader = await session.QueryReaderAsync("SELECT 'first'; DO $$BEGIN RAISE NOTICE 'n'; END$$; SELECT 'left'");
        Assert.True(await reader.ReadAsync());
        session.Notice += throwing;

        // Disposing reads what is left; the notice's handler throws in the middle of it.
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await reader.DisposeAsync());
        session.Notice -= throwing;

        // The rest of the answer was left unread: the session is broken, never a step behind.
        await Assert.ThrowsAsync<PgConnectionException>(() => session.QueryAsync("SELECT 'next'"));
    }

    [Fact]
    public async Task QueryReader_ALaterStatementFails_DisposingThrowsItAndTheSessionIsReady()
    {
        await using PgFrontendSession session = await ConnectAsync();
        await session.QueryAsync("CREATE TEMP TABLE later (v int PRIMARY KEY)");
        PgRowReader reader = await session.QueryReaderAsync("INSERT INTO later VALUES (2) RETURNING v; SELECT 1/0");
        Assert.True(await reader.ReadAsync());
        Assert.Equal("2", reader.GetString(0));

        // The division failed, and with it the implicit transaction: the insert is gone, and the caller must hear of it.
        PgServerException e = await Assert.ThrowsAsync<PgServerException>(async () => await reader.DisposeAsync());
        Assert.Equal("22012", e.SqlState);
        Assert.Equal("0", (await session.QueryAsync("SELECT count(*) FROM later"))[0].Text(0, 0));
    }

    [Fact]
    public async Task QueryReader_CancelledThenDisposed_PassesOverTheCancelsError()
    {
        await using PgFrontendSession session = await ConnectAsync();
        // The server flushes its rows as its buffer fills, and sleeps at the last one: the first rows
        // arrive while it is still busy with the statement, which the cancel then ends.
        // A cancel that did not end it would leave disposing to the command timeout (a PgConnectionException).
        PgRowReader reader = await session.QueryReaderAsync("SELECT g, pg_sleep(CASE WHEN g = 5000 THEN 600 ELSE 0 END) FROM generate_series(1, 5000) g");
        Assert.True(await reader.ReadAsync());
        await session.CancelAsync();
        await reader.DisposeAsync();
        Assert.Equal("next", (await session.QueryAsync("SELECT 'next'"))[0].Text(0, 0));
    }

    [Fact]
    public async Task QueryReader_StatementTimeoutAfterTheFirstResult_DisposingThrowsIt()
    {
        // A 57014 the caller did not ask for (no CancelAsync): the statement timed out.
        await using PgFrontendSession session = await ConnectAsync();
        await session.QueryAsync("SET statement_timeout = '200ms'");
        PgRowReader reader = await session.QueryReaderAsync("SELECT 1; SELECT pg_sleep(30)");
        PgServerException e = await Assert.ThrowsAsync<PgServerException>(async () => await reader.DisposeAsync());
        Assert.Equal("57014", e.SqlState);
        Assert.Equal("next", (await session.QueryAsync("SELECT 'next'"))[0].Text(0, 0));
    }

    [Fact]
    public async Task QueryReader_CopyOutThenAFailure_DisposingThrowsTheFailure()
    {
        await using PgFrontendSession session = await ConnectAsync();
        await session.QueryAsync("CREATE TEMP TABLE lost (v int)");
        PgRowReader reader = await session.QueryReaderAsync("INSERT INTO lost VALUES (1); COPY (SELECT 1) TO STDOUT; SELECT 1/0");
        Assert.Equal("INSERT 0 1", reader.CommandTag);
        PgServerException e = await Assert.ThrowsAsync<PgServerException>(async () => await reader.DisposeAsync());
        Assert.Equal("22012", e.SqlState);
        Assert.Equal("0", (await session.QueryAsync("SELECT count(*) FROM lost"))[0].Text(0, 0));
    }

    [Fact]
    public async Task QueryReader_CopyFromStdinRefused_DisposingPassesOverTheAnswerToItsOwnCopyFail()
    {
        await using PgFrontendSession session = await ConnectAsync();
        await session.QueryAsync("CREATE TEMP TABLE cin (a int)");
        PgRowReader reader = await session.QueryReaderAsync("SELECT 1; COPY cin FROM STDIN");
        await reader.DisposeAsync();
        Assert.Equal("next", (await session.QueryAsync("SELECT 'next'"))[0].Text(0, 0));
    }

    [Fact]
    public async Task TrafficCallbackThrowingOnASentMessage_BreaksTheSession()
    {
        bool thrown = false;
        await using PgFrontendSession session = await ConnectAsync(t =>
        {
            if (t.Direction == PgDirection.Frontend && t.Name == Query.MessageName && !thrown)
            {
                thrown = true;
                throw new InvalidOperationException("callback");
            }
        });

        // The Query was written before the callback saw it: its answer would be taken for the next one's.
        await Assert.ThrowsAsync<InvalidOperationException>(() => session.QueryReaderAsync("SELECT 'stale'"));
        await Assert.ThrowsAsync<PgConnectionException>(() => session.QueryAsync("SELECT 'next'"));
    }

    [Fact]
    public async Task RoundTripUntilThrowing_BreaksTheSession()
    {
        await using PgFrontendSession session = await ConnectAsync();
        await Assert.ThrowsAsync<InvalidOperationException>(() => session.RoundTripAsync([new Query("SELECT 'stale'")], until: m => m is RowDescription ? throw new InvalidOperationException("until") : false));
        await Assert.ThrowsAsync<PgConnectionException>(() => session.QueryAsync("SELECT 'next'"));
    }
}

