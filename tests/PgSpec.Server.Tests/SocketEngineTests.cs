using System.Text;
using PgSpec.Client;
using PgSpec.Protocol;
using PgSpec.Server;

namespace PgSpec.Server.Tests;

/// <summary>
/// The same sessions over each way the server can serve its sockets: its own epoll engine with
/// continuations on the event thread (the default on Linux), the epoll engine with continuations on
/// the thread pool (a traffic callback is set), and .NET's sockets (other platforms).
/// </summary>
public sealed class SocketEngineTests
{
    public static TheoryData<string> Engines => ["epoll", "epoll, thread pool", ".NET sockets"];

    private static TestServer Start(string engine) => TestServer.Start(options =>
    {
        options.EpollSockets = engine != ".NET sockets";
        if (engine == "epoll, thread pool")
        {
            options.Traffic = (_, _, _) => { };
        }
    });

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task Queries_pipelined_messages_and_a_cancel_work(string engine)
    {
        await using TestServer server = Start(engine);
        await using PgFrontendSession client = await server.ConnectAsync();

        PgServerException failed = await Assert.ThrowsAsync<PgServerException>(() => client.QueryAsync("rows 3; fail", cancellationToken: Wait.Token));
        Assert.Equal("22012", failed.Fields.SqlState);

        // Twenty Bind/Execute/Sync rounds sent in one write: many messages per receive.
        var messages = new List<IFrontendMessage> { new Parse("", "rows 1", []) };
        for (int i = 0; i < 20; i++)
        {
            messages.AddRange([new Bind("", "", [], [], []), new Execute("", 0), new Sync()]);
        }

        foreach (IFrontendMessage message in messages)
        {
            client.Send(message);
        }

        await client.FlushAsync(Wait.Token);
        int ready = 0;
        int rows = 0;
        while (ready < 20)
        {
            switch (await client.ReceiveAsync(Wait.Token))
            {
                case ReadyForQuery:
                    ready++;
                    break;
                case DataRow:
                    rows++;
                    break;
                case ErrorResponse error:
                    Assert.Fail(string.Join(", ", error.Fields.Select(f => $"{f.Code}={f.Value}")));
                    break;
            }
        }

        Assert.Equal(20, rows);

        Task<IReadOnlyList<Client.PgResult>> sleeping = client.QueryAsync("sleep", cancellationToken: Wait.Token);
        await server.HandlerOf(client.ProcessId).Sleeping.Task.WaitAsync(Wait.Limit);
        await client.CancelAsync(Wait.Token);
        PgServerException cancelled = await Assert.ThrowsAsync<PgServerException>(() => sleeping);
        Assert.Equal("57014", cancelled.Fields.SqlState);
        Assert.Single((await client.QueryAsync("rows 1", cancellationToken: Wait.Token))[0].Rows);
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task A_parameter_of_several_megabytes_arrives_whole(string engine)
    {
        await using TestServer server = Start(engine);
        await using PgFrontendSession client = await server.ConnectAsync();
        byte[] value = Encoding.ASCII.GetBytes(new string('x', 3 * 1024 * 1024 + 17));
        Client.PgResult result = await client.ExecuteAsync("param", [value], cancellationToken: Wait.Token);
        Assert.Equal(value.Length, result.Rows[0].Columns[0]!.Value.Length);
        Assert.Single((await client.QueryAsync("rows 1", cancellationToken: Wait.Token))[0].Rows);
    }

    [Fact]
    public async Task Sessions_spread_over_several_event_threads_are_each_served()
    {
        await using TestServer server = TestServer.Start(options => options.IoThreads = 3);
        var clients = new List<PgFrontendSession>();
        try
        {
            for (int i = 0; i < 7; i++)
            {
                clients.Add(await server.ConnectAsync());
            }

            IReadOnlyList<Client.PgResult>[] results = await Task.WhenAll(clients.Select(c => c.QueryAsync("rows 2", cancellationToken: Wait.Token)));
            Assert.All(results, r => Assert.Equal(2, r[0].Rows.Count));
        }
        finally
        {
            foreach (PgFrontendSession client in clients)
            {
                await client.DisposeAsync();
            }
        }
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(257)]
    public void IoThreads_out_of_range_is_refused(int threads)
    {
        var options = new PgBackendOptions { IoThreads = threads };
        ArgumentException e = Assert.Throws<ArgumentException>(() => PgBackendServer.Create(options, _ => throw new InvalidOperationException("no session expected")));
        Assert.Contains("IoThreads", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(10_001)]
    public void EventSpin_out_of_range_is_refused(int microseconds)
    {
        var options = new PgBackendOptions { EventSpin = TimeSpan.FromMicroseconds(microseconds) };
        ArgumentException e = Assert.Throws<ArgumentException>(() => PgBackendServer.Create(options, _ => throw new InvalidOperationException("no session expected")));
        Assert.Contains("EventSpin", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sessions_on_threads_that_never_poll_before_sleeping_are_served()
    {
        await using TestServer server = TestServer.Start(options =>
        {
            options.IoThreads = 2;
            options.EventSpin = TimeSpan.Zero;
        });
        await using PgFrontendSession first = await server.ConnectAsync();
        await using PgFrontendSession second = await server.ConnectAsync();
        for (int i = 0; i < 20; i++)
        {
            Assert.Equal(2, (await first.QueryAsync("rows 2", cancellationToken: Wait.Token))[0].Rows.Count);
            Assert.Single((await second.QueryAsync("rows 1", cancellationToken: Wait.Token))[0].Rows);
        }
    }
}
