using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using PgSpec.Client;
using PgSpec.Protocol;

namespace PgSpec.Server.Tests;

/// <summary>Hostile and careless clients: each ends its own session only, and the server goes on serving the others.</summary>
public sealed class RobustnessTests
{
    /// <summary>A message header: type byte and length word, with no body.</summary>
    internal static byte[] Header(byte type, int length)
    {
        byte[] header = new byte[5];
        header[0] = type;
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(1), length);
        return header;
    }

    private static async Task AssertServedAsync(TestServer server)
    {
        await using PgFrontendSession other = await server.ConnectAsync("bystander");
        IReadOnlyList<Client.PgResult> results = await other.QueryAsync("rows 3", cancellationToken: Wait.Token);
        Assert.Equal("SELECT 3", results[0].CommandTag);
    }

    [Theory]
    [InlineData(1)]
    [InlineData((byte)'?')]
    [InlineData((byte)'T')]
    [InlineData((byte)'p')]
    public async Task An_unknown_message_type_after_startup_is_FATAL_08P01_and_nothing_follows(byte type)
    {
        await using var server = TestServer.Start();
        await using RawConnection raw = await RawConnection.OpenAsync(server.Port);
        await raw.LoginAsync();
        await raw.SendAsync([.. Header(type, 8), 0, 0, 0, 0, .. new Query("rows 1").ToArray()]);

        IReadOnlyList<IBackendMessage> messages = await raw.ReceiveToEndAsync();
        ErrorResponse error = Assert.IsType<ErrorResponse>(Assert.Single(messages));
        Assert.Equal(("FATAL", "FATAL", "08P01", $"invalid frontend message type {type}"), error.Fields().Core());
        await Wait.UntilAsync(() => server.Server.ActiveSessions == 0, "the session has ended");
        await AssertServedAsync(server);
    }

    [Fact]
    public async Task A_message_whose_fields_overrun_its_length_is_FATAL_08P01_and_nothing_follows()
    {
        await using var server = TestServer.Start();
        await using RawConnection raw = await RawConnection.OpenAsync(server.Port);
        await raw.LoginAsync();

        // Parse: a statement name, a query without its terminator, and no parameter count.
        byte[] body = [.. "s1\0SELECT 1"u8];
        await raw.SendAsync([.. Header((byte)'P', 4 + body.Length), .. body, .. new Sync().ToArray(), .. new Query("rows 1").ToArray()]);

        ErrorResponse error = Assert.IsType<ErrorResponse>(Assert.Single(await raw.ReceiveToEndAsync()));
        Assert.Equal(("FATAL", "FATAL", "08P01"), (error.Fields().Severity, error.Fields().SeverityNonLocalized, error.Fields().SqlState));
        await AssertServedAsync(server);
    }

    [Fact]
    public async Task A_huge_length_for_a_message_the_spec_limits_is_refused_at_the_header()
    {
        await using var server = TestServer.Start();
        await using RawConnection raw = await RawConnection.OpenAsync(server.Port);
        await raw.LoginAsync();

        // Execute is at most 10004 bytes long; only the header is sent.
        await raw.SendAsync(Header((byte)'E', 1 << 30));
        ErrorResponse error = Assert.IsType<ErrorResponse>(Assert.Single(await raw.ReceiveToEndAsync()));
        Assert.Equal(("FATAL", "FATAL", "08P01"), (error.Fields().Severity, error.Fields().SeverityNonLocalized, error.Fields().SqlState));
        await AssertServedAsync(server);
    }

    [Fact]
    public async Task A_client_that_leaves_in_the_middle_of_a_message_ends_its_session_only()
    {
        await using var server = TestServer.Start();
        await using PgFrontendSession bystander = await server.ConnectAsync("bystander");

        await using (RawConnection raw = await RawConnection.OpenAsync(server.Port))
        {
            await raw.LoginAsync();
            byte[] query = new Query("rows 5").ToArray();
            await raw.SendAsync(query[..8]);
        }

        await using (RawConnection raw = await RawConnection.OpenAsync(server.Port))
        {
            byte[] startup = new StartupMessage(PgProtocolVersion.V3_0.Code, [new("user", "alice")]).ToArray();
            await raw.SendAsync(startup[..6]);
        }

        await Wait.UntilAsync(() => server.Server.ActiveSessions == 1, "only the bystander's session is left");
        Assert.Equal(5, (await bystander.QueryAsync("rows 5", cancellationToken: Wait.Token))[0].Rows.Count);
    }

    [Fact]
    public async Task A_client_that_never_sends_its_startup_packet_is_closed_after_the_handshake_timeout()
    {
        await using var server = TestServer.Start(o => o.HandshakeTimeout = TimeSpan.FromSeconds(1));
        var clock = Stopwatch.StartNew();
        await using RawConnection silent = await RawConnection.OpenAsync(server.Port);

        // Served meanwhile.
        await AssertServedAsync(server);

        // PostgreSQL closes such a connection without a word: there is no protocol to say it in yet.
        Assert.Empty(await silent.ReceiveToEndAsync());
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(0.9), $"closed after {clock.Elapsed}");
        await Wait.UntilAsync(() => server.Server.ActiveSessions == 0, "the silent session has ended");
    }

    [Fact]
    public async Task A_client_that_never_answers_the_password_request_gets_57014_after_the_handshake_timeout()
    {
        await using var server = TestServer.Start(o =>
        {
            o.HandshakeTimeout = TimeSpan.FromSeconds(1);
            o.Authentication = PgAuthenticator.Cleartext(_ => "secret");
        });
        await using RawConnection raw = await RawConnection.OpenAsync(server.Port);
        await raw.StartupAsync(("user", "alice"));
        IReadOnlyList<IBackendMessage> messages = await raw.ReceiveToEndAsync();
        Assert.Equal(["AuthenticationCleartextPassword", "ErrorResponse"], messages.Select(m => m.Name));
        Assert.Equal(("FATAL", "FATAL", "57014", "canceling authentication due to timeout"), ((ErrorResponse)messages[1]).Fields().Core());
    }

    [Fact]
    public async Task Three_hundred_idle_connections_do_not_hold_up_another_client()
    {
        await using var server = TestServer.Start(o => o.MaxConnections = 400);
        PgFrontendSession[] idle = await Task.WhenAll(Enumerable.Range(0, 300).Select(i => server.ConnectAsync("idle" + i)));
        try
        {
            Assert.Equal(300, server.Server.ActiveSessions);
            await using PgFrontendSession busy = await server.ConnectAsync("busy");
            for (int i = 1; i <= 50; i++)
            {
                Assert.Equal(i, (await busy.QueryAsync("rows " + i, cancellationToken: Wait.Token))[0].Rows.Count);
            }

            Assert.Equal(301, server.Server.ActiveSessions);

            // The idle ones still answer.
            Assert.Single((await idle[150].QueryAsync("rows 1", cancellationToken: Wait.Token))[0].Rows);
        }
        finally
        {
            await Task.WhenAll(idle.Select(c => c.DisposeAsync().AsTask()));
        }

        await Wait.UntilAsync(() => server.Server.ActiveSessions == 0, "every session has ended");
    }

    [Fact]
    public async Task Beyond_MaxConnections_a_client_gets_53300()
    {
        await using var server = TestServer.Start(o => o.MaxConnections = 2);
        await using PgFrontendSession first = await server.ConnectAsync();
        PgFrontendSession second = await server.ConnectAsync();

        PgServerException refused = await Assert.ThrowsAsync<PgServerException>(() => server.ConnectAsync());
        Assert.Equal(("FATAL", "FATAL", "53300", "sorry, too many clients already"), refused.Fields.Core());
        Assert.Equal(2, server.Handlers.Count);

        await second.DisposeAsync();
        await Wait.UntilAsync(() => server.Server.ActiveSessions == 1, "the second session has ended");
        await using PgFrontendSession third = await server.ConnectAsync();
        Assert.Single((await third.QueryAsync("rows 1", cancellationToken: Wait.Token))[0].Rows);
    }

    [Fact]
    public async Task An_idle_session_is_ended_with_57P05_after_IdleTimeout()
    {
        await using var server = TestServer.Start(o => o.IdleTimeout = TimeSpan.FromSeconds(1));
        await using PgFrontendSession client = await server.ConnectAsync();
        Assert.Single((await client.QueryAsync("rows 1", cancellationToken: Wait.Token))[0].Rows);

        ErrorResponse error = Assert.IsType<ErrorResponse>(await client.ReceiveAsync(Wait.Token));
        Assert.Equal(("FATAL", "FATAL", "57P05", "terminating connection due to idle-session timeout"), error.Fields().Core());
        await Assert.ThrowsAsync<PgConnectionException>(() => client.ReceiveAsync(Wait.Token));
    }

    [Fact]
    public async Task A_session_idle_in_a_transaction_is_ended_with_25P03()
    {
        await using var server = TestServer.Start(o => o.IdleInTransactionTimeout = TimeSpan.FromSeconds(1));
        await using PgFrontendSession client = await server.ConnectAsync();
        await client.QueryAsync("begin", cancellationToken: Wait.Token);
        Assert.Equal(TransactionStatus.InTransaction, client.TransactionStatus);

        ErrorResponse error = Assert.IsType<ErrorResponse>(await client.ReceiveAsync(Wait.Token));
        Assert.Equal(("FATAL", "FATAL", "25P03", "terminating connection due to idle-in-transaction timeout"), error.Fields().Core());
    }

    [Fact]
    public async Task Stopping_ends_idle_and_busy_sessions_with_57P01_and_refuses_new_connections()
    {
        await using var server = TestServer.Start(o => o.ShutdownGracePeriod = TimeSpan.FromMilliseconds(200));
        await using PgFrontendSession idle = await server.ConnectAsync("idle");
        await using PgFrontendSession busy = await server.ConnectAsync("busy");
        busy.Send(new Query("sleep"));
        await busy.FlushAsync(Wait.Token);
        await server.HandlerOf(busy.ProcessId).Sleeping.Task.WaitAsync(Wait.Token);

        Task stopping = server.Server.StopAsync();
        PgConnectionException refused = await Assert.ThrowsAsync<PgConnectionException>(() => server.ConnectAsync("late"));
        Assert.Contains("cannot connect", refused.Message, StringComparison.Ordinal);

        ErrorResponse error = Assert.IsType<ErrorResponse>(await idle.ReceiveAsync(Wait.Token));
        Assert.Equal(("FATAL", "FATAL", "57P01", "terminating connection due to administrator command"), error.Fields().Core());

        // The statement running stops; no ReadyForQuery follows the error.
        ErrorResponse busyError = Assert.IsType<ErrorResponse>(await busy.ReceiveAsync(Wait.Token));
        Assert.Equal(("FATAL", "FATAL", "57P01", "terminating connection due to administrator command"), busyError.Fields().Core());
        await Assert.ThrowsAsync<PgConnectionException>(() => busy.ReceiveAsync(Wait.Token));
        await stopping.WaitAsync(Wait.Token);
        Assert.Equal(0, server.Server.ActiveSessions);
    }

    [Fact]
    public async Task A_cancel_request_with_a_wrong_key_or_process_does_nothing()
    {
        await using var server = TestServer.Start();
        await using PgFrontendSession client = await server.ConnectAsync();
        Task<IReadOnlyList<Client.PgResult>> sleeping = client.QueryAsync("sleep", cancellationToken: Wait.Token);
        CancellationToken statement = await server.HandlerOf(client.ProcessId).Sleeping.Task.WaitAsync(Wait.Token);

        byte[] wrongKey = client.SecretKey.ToArray();
        wrongKey[0] ^= 1;
        foreach (byte[] request in (byte[][])[RawConnection.CancelRequest(client.ProcessId, wrongKey), RawConnection.CancelRequest(client.ProcessId + 1, client.SecretKey.Span)])
        {
            await using RawConnection cancel = await RawConnection.OpenAsync(server.Port);
            await cancel.SendAsync(request);

            // The server closes the connection once it has dealt with the request, without a word.
            Assert.Empty(await cancel.ReceiveToEndAsync());
            Assert.False(statement.IsCancellationRequested);
            Assert.False(sleeping.IsCompleted);
        }

        await client.CancelAsync(Wait.Token);
        Assert.Equal("57014", (await Assert.ThrowsAsync<PgServerException>(() => sleeping)).SqlState);
    }

    [Fact]
    public async Task A_cancel_request_while_idle_does_not_cancel_the_next_statement()
    {
        await using var server = TestServer.Start();
        await using PgFrontendSession client = await server.ConnectAsync();
        await client.CancelAsync(Wait.Token);

        Task<IReadOnlyList<Client.PgResult>> sleeping = client.QueryAsync("sleep", cancellationToken: Wait.Token);
        CancellationToken statement = await server.HandlerOf(client.ProcessId).Sleeping.Task.WaitAsync(Wait.Token);
        Assert.False(statement.IsCancellationRequested);
        Assert.False(sleeping.IsCompleted);

        await client.CancelAsync(Wait.Token);
        Assert.Equal("57014", (await Assert.ThrowsAsync<PgServerException>(() => sleeping)).SqlState);
        Assert.Single((await client.QueryAsync("rows 1", cancellationToken: Wait.Token))[0].Rows);
    }
    /// <summary>Starts "rows N" on a connection that reads nothing, and waits until the session is held back.</summary>
    private static async Task<(RawConnection Slow, ScriptedHandler Handler, BackendKeyData Key)> StallAsync(TestServer server, int rows)
    {
        RawConnection slow = await RawConnection.OpenAsync(server.Port, receiveBufferSize: 4096);
        IReadOnlyList<IBackendMessage> login = await slow.LoginAsync();
        BackendKeyData key = login.OfType<BackendKeyData>().Single();
        ScriptedHandler handler = server.HandlerOf(key.ProcessId);
        await slow.SendAsync(new Query("rows " + rows));
        await Wait.UntilAsync(() => handler.RowsProduced > 0, "the rows have started");
        long produced = await Wait.UntilSteadyAsync(() => handler.RowsProduced, polls: 10, interval: TimeSpan.FromMilliseconds(50));
        Assert.True(produced < rows, $"all {produced} rows were produced for a client that reads nothing");
        return (slow, handler, key);
    }

    [Fact]
    public async Task A_cancel_request_while_the_client_does_not_read_ends_the_statement_between_rows()
    {
        await using var server = TestServer.Start();
        (RawConnection slow, _, BackendKeyData key) = await StallAsync(server, 1_000_000);
        await using (slow)
        {
            await using (RawConnection cancel = await RawConnection.OpenAsync(server.Port))
            {
                await cancel.SendAsync(RawConnection.CancelRequest(key.ProcessId, key.SecretKey.Span));
                Assert.Empty(await cancel.ReceiveToEndAsync());
            }

            // Whatever was sent before the cancel arrives whole; then the error, and the session goes on.
            var names = new List<string>();
            IBackendMessage? message;
            while ((message = await slow.ReceiveAsync()) is not ReadyForQuery)
            {
                if (message is null)
                {
                    Assert.Fail($"the connection closed after {names.Count} messages ({string.Join(", ", names.Distinct())})");
                }

                names.Add(message.Name);
                if (message is ErrorResponse error)
                {
                    Assert.Equal(("ERROR", "ERROR", "57014", "canceling statement due to user request"), error.Fields().Core());
                }
            }

            Assert.Equal("ErrorResponse", names[^1]);
            Assert.Equal(["RowDescription", "DataRow", "ErrorResponse"], names.Distinct());
            Assert.True(names.Count - 2 < 1_000_000, "every row was sent: the statement was not cancelled");

            await slow.SendAsync(new Query("rows 2"));
            IReadOnlyList<IBackendMessage> after = await slow.ReceiveUntilAsync(m => m is ReadyForQuery);
            Assert.Equal(["RowDescription", "DataRow", "DataRow", "CommandComplete", "ReadyForQuery"], after.Select(m => m.Name));
        }
    }

    [Fact]
    public async Task Stopping_ends_a_session_whose_client_does_not_read()
    {
        await using var server = TestServer.Start(o => o.ShutdownGracePeriod = TimeSpan.FromMilliseconds(200));
        (RawConnection slow, _, _) = await StallAsync(server, 1_000_000);
        await using (slow)
        {
            await server.Server.StopAsync().WaitAsync(Wait.Token);
            Assert.Equal(0, server.Server.ActiveSessions);
        }
    }

    [Fact]
    public async Task A_client_that_stalls_in_the_TLS_handshake_is_closed_after_the_handshake_timeout()
    {
        using System.Security.Cryptography.X509Certificates.X509Certificate2 certificate = Certificates.SelfSigned();
        await using var server = TestServer.Start(o =>
        {
            o.TlsCertificate = certificate;
            o.HandshakeTimeout = TimeSpan.FromSeconds(1);
        });
        await using RawConnection stalled = await RawConnection.OpenAsync(server.Port);

        // The first bytes of a TLS record, and no more.
        await stalled.SendAsync([0x16, 0x03, 0x01]);
        await AssertServedAsync(server);
        byte[] rest = new byte[16];
        try
        {
            Assert.Equal(0, await stalled.Stream.ReadAsync(rest, Wait.Token));
        }
        catch (IOException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionReset })
        {
            // Closed before the TLS layer had read the client's last bytes: a reset, as closing with
            // unread input gives. Closed all the same.
        }

        await Wait.UntilAsync(() => server.Server.ActiveSessions == 0, "the stalled session has ended");
    }
}

/// <summary>How sessions end, compared with PostgreSQL 15.</summary>
[Collection(PostgresCollection.Name)]
public sealed class SessionEndTests(PostgresFixture postgres)
{
    [Theory]
    [InlineData("idle_session_timeout", "rows 1")]
    [InlineData("idle_in_transaction_session_timeout", "begin")]
    public async Task A_timed_out_session_ends_with_PostgreSQLs_error(string setting, string statement)
    {
        await using var server = TestServer.Start(o =>
        {
            o.IdleTimeout = setting == "idle_session_timeout" ? TimeSpan.FromSeconds(1) : Timeout.InfiniteTimeSpan;
            o.IdleInTransactionTimeout = setting == "idle_in_transaction_session_timeout" ? TimeSpan.FromSeconds(1) : Timeout.InfiniteTimeSpan;
        });

        await using PgFrontendSession theirs = await PgFrontendSession.ConnectAsync(postgres.Login("postgres", null), cancellationToken: Wait.Token);
        await theirs.QueryAsync($"SET {setting} = '1s'; {(statement == "begin" ? "BEGIN" : "SELECT 1")}", cancellationToken: Wait.Token);
        await using PgFrontendSession ours = await server.ConnectAsync();
        await ours.QueryAsync(statement, cancellationToken: Wait.Token);

        ErrorResponse expected = Assert.IsType<ErrorResponse>(await theirs.ReceiveAsync(Wait.Token));
        ErrorResponse actual = Assert.IsType<ErrorResponse>(await ours.ReceiveAsync(Wait.Token));
        Assert.Equal(expected.Fields().Core(), actual.Fields().Core());
        await Assert.ThrowsAsync<PgConnectionException>(() => ours.ReceiveAsync(Wait.Token));
    }

    [Fact]
    public async Task A_cancel_request_of_the_wrong_length_is_dropped_as_PostgreSQL_drops_it()
    {
        await using var server = TestServer.Start();
        foreach (int port in (int[])[postgres.Server.Port, server.Port])
        {
            await using RawConnection raw = await RawConnection.OpenAsync(port);
            await raw.SendAsync(RawConnection.CancelRequest(1234, [1, 2, 3]));
            Assert.Empty(await raw.ReceiveToEndAsync());
        }
    }

    [Fact]
    public async Task A_cancel_request_is_delivered_when_every_connection_slot_is_taken()
    {
        await using var server = TestServer.Start(o => o.MaxConnections = 1);
        await using PgFrontendSession client = await server.ConnectAsync();
        Task<IReadOnlyList<Client.PgResult>> sleeping = client.QueryAsync("sleep", cancellationToken: Wait.Token);
        await server.HandlerOf(client.ProcessId).Sleeping.Task.WaitAsync(Wait.Token);

        await client.CancelAsync(Wait.Token);
        Assert.Equal("57014", (await Assert.ThrowsAsync<PgServerException>(() => sleeping)).SqlState);
    }
}

/// <summary>Run alone, so that the memory the process holds is the server's.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MemoryCollection
{
    public const string Name = "memory";
}

/// <summary>Declared lengths and slow readers do not make the server allocate or buffer without bound.</summary>
[Collection(MemoryCollection.Name)]
public sealed class BoundedMemoryTests
{
    private const int OneGiB = 1 << 30;

    /// <summary>Far below what a buffer of the declared length would take.</summary>
    private const long AllocationBound = 64L << 20;

    [Fact]
    public async Task A_startup_packet_of_1_GiB_is_closed_without_allocating_it()
    {
        await using var server = TestServer.Start();
        await using RawConnection raw = await RawConnection.OpenAsync(server.Port);
        long before = GC.GetTotalAllocatedBytes(precise: true);
        byte[] header = new byte[8];
        BinaryPrimitives.WriteInt32BigEndian(header, OneGiB);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), PgProtocolVersion.V3_0.Code);
        await raw.SendAsync(header);

        // As PostgreSQL: "invalid length of startup packet" is only logged.
        Assert.Empty(await raw.ReceiveToEndAsync());
        Assert.InRange(GC.GetTotalAllocatedBytes(precise: true) - before, 0, AllocationBound);
    }

    [Fact]
    public async Task A_password_message_of_1_GiB_before_authentication_is_refused_at_the_header()
    {
        await using var server = TestServer.Start(o => o.Authentication = PgAuthenticator.Cleartext(_ => "secret"));
        await using RawConnection raw = await RawConnection.OpenAsync(server.Port);
        await raw.StartupAsync(("user", "alice"));
        Assert.IsType<AuthenticationCleartextPassword>(await raw.ReceiveAsync());

        long before = GC.GetTotalAllocatedBytes(precise: true);
        long heldBefore = GC.GetTotalMemory(forceFullCollection: true);
        await raw.SendAsync(RobustnessTests.Header((byte)'p', OneGiB));
        IReadOnlyList<IBackendMessage> messages = await raw.ReceiveToEndAsync();

        ErrorResponse error = Assert.IsType<ErrorResponse>(Assert.Single(messages));
        Assert.Equal(("FATAL", "FATAL", "08P01"), (error.Fields().Severity, error.Fields().SeverityNonLocalized, error.Fields().SqlState));
        Assert.InRange(GC.GetTotalAllocatedBytes(precise: true) - before, 0, AllocationBound);
        Assert.InRange(GC.GetTotalMemory(forceFullCollection: true) - heldBefore, long.MinValue, 4L << 20);
    }

    [Fact]
    public async Task A_limited_message_of_1_GiB_after_authentication_is_refused_at_the_header()
    {
        await using var server = TestServer.Start();
        await using RawConnection raw = await RawConnection.OpenAsync(server.Port);
        await raw.LoginAsync();

        long before = GC.GetTotalAllocatedBytes(precise: true);
        await raw.SendAsync(RobustnessTests.Header((byte)'D', OneGiB));
        ErrorResponse error = Assert.IsType<ErrorResponse>(Assert.Single(await raw.ReceiveToEndAsync()));
        Assert.Equal("08P01", error.Fields().SqlState);
        Assert.Equal("FATAL", error.Fields().Severity);
        Assert.InRange(GC.GetTotalAllocatedBytes(precise: true) - before, 0, AllocationBound);
    }

    [Fact]
    public async Task A_client_that_stops_reading_holds_back_its_own_session_only()
    {
        const int Rows = 1_000_000;
        await using var server = TestServer.Start();

        // A small receive buffer keeps the kernel from taking most of the result off the server's hands.
        await using RawConnection slow = await RawConnection.OpenAsync(server.Port, receiveBufferSize: 4096);
        await slow.LoginAsync();
        ScriptedHandler handler = Assert.Single(server.Handlers);
        long heldBefore = GC.GetTotalMemory(forceFullCollection: true);

        await slow.SendAsync(new Query("rows " + Rows));
        await Wait.UntilAsync(() => handler.RowsProduced > 0, "the rows have started");
        long produced = await Wait.UntilSteadyAsync(() => handler.RowsProduced, polls: 10, interval: TimeSpan.FromMilliseconds(50));
        Assert.True(produced < Rows, $"all {produced} rows were produced for a client that reads nothing");

        // What the server holds for the client is its output buffer, not the rows produced.
        long held = GC.GetTotalMemory(forceFullCollection: true) - heldBefore;
        Assert.True(held < 8L << 20, $"the server holds {held} bytes more while the client does not read ({produced} rows produced, about {produced * 33} bytes)");

        // Other clients are served meanwhile, and the stalled session stays where it was.
        await using (PgFrontendSession other = await server.ConnectAsync("other"))
        {
            Assert.Equal(1000, (await other.QueryAsync("rows 1000", cancellationToken: Wait.Token))[0].Rows.Count);
        }

        Assert.True(handler.RowsProduced < Rows, "the rows went on while the client did not read");

        // Once the client reads, every row arrives.
        long dataRows = 0;
        IBackendMessage? message;
        while ((message = await slow.ReceiveAsync()) is not CommandComplete)
        {
            Assert.NotNull(message);
            if (message is DataRow)
            {
                dataRows++;
            }
        }

        Assert.Equal(Rows, dataRows);
        Assert.Equal("SELECT 1000000", ((CommandComplete)message).CommandTag);
        Assert.IsType<ReadyForQuery>(await slow.ReceiveAsync());
    }
}
