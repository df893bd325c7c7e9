using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using PgSpec.Server.Tests;
using PgSpec.Sockets;

namespace PgSpec.Proxy.Tests;

/// <summary>
/// The epoll socket engine on its own, against .NET sockets as peers: readiness after a drained
/// read, the end of the stream arriving with the last bytes, back-pressure, cancellation, closing,
/// connecting, and many connections over two event threads. Each runs with continuations on the
/// event thread and on the thread pool.
/// </summary>
public sealed class EpollSocketTests : IDisposable
{
    /// <summary>Linux's TCP_CLOSE_WAIT: the peer's end has arrived, this side has not closed.</summary>
    private const byte TcpCloseWait = 8;

    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);
    private readonly List<IDisposable> _owned = [];

    public static TheoryData<bool> Inline => new() { true, false };

    [Theory]
    [MemberData(nameof(Inline))]
    public async Task Engine_ThatPollsBeforeItSleeps_ServesRoundTripsAndWakesAfterSilence(bool inline)
    {
        (EngineSocket socket, Socket peer) = await AcceptedPairAsync(Engine(inline, spin: TimeSpan.FromMilliseconds(1)));
        byte[] buffer = new byte[16];
        byte[] answer = new byte[16];

        // Round trips close together (the event thread finds each while it polls), and after
        // silences longer than its polling (it has gone to sleep, and the next bytes must wake it).
        for (int round = 0; round < 40; round++)
        {
            if (round % 10 == 9)
            {
                await Task.Delay(20);
            }

            await peer.SendAsync(new[] { (byte)round });
            int read = await socket.Stream.ReadAsync(buffer).AsTask().WaitAsync(Patience);
            await socket.Stream.WriteAsync(buffer.AsMemory(0, read));
            int answered = await peer.ReceiveAsync(answer.AsMemory()).AsTask().WaitAsync(Patience);

            Assert.Equal(1, read);
            Assert.Equal(1, answered);
            Assert.Equal((byte)round, answer[0]);
        }
    }

    [Theory]
    [MemberData(nameof(Inline))]
    public async Task Receive_AfterAShortReadDrainedTheSocket_CompletesWhenMoreBytesArrive(bool inline)
    {
        (EngineSocket socket, Socket peer) = await AcceptedPairAsync(Engine(inline));
        byte[] buffer = new byte[100];
        peer.Send(new byte[10]);
        await WaitAvailableAsync(socket, 10);

        int first = await socket.Stream.ReadAsync(buffer).AsTask().WaitAsync(Patience);
        ValueTask<int> waiting = socket.Stream.ReadAsync(buffer);

        // The peer stays silent for a while: the silence is what is tested, not a stand-in for a
        // condition. A correct engine cannot complete the read without bytes however long this
        // lasts, so a busy machine cannot fail the test; a wrong early completion has this long
        // to show.
        await Task.Delay(50);
        bool completedEarly = waiting.IsCompleted;
        peer.Send([1, 2, 3, 4, 5]);
        int second = await waiting.AsTask().WaitAsync(Patience);

        Assert.Equal(10, first);
        Assert.False(completedEarly);
        Assert.Equal(5, second);
        Assert.Equal([1, 2, 3, 4, 5], buffer[..5]);
    }

    [Theory]
    [MemberData(nameof(Inline))]
    public async Task Receive_WhenTheLastBytesAndTheEndArriveTogether_GivesTheBytesThenTheEnd(bool inline)
    {
        (EngineSocket socket, Socket peer, Socket accepted) = await AcceptedTripleAsync(Engine(inline));
        byte[] buffer = new byte[100];
        peer.Send(new byte[7]);
        peer.Shutdown(SocketShutdown.Send);

        // Both have arrived before the first read: the kernel has the end (the connection is in
        // CLOSE_WAIT on this side), and TCP delivers the bytes before it.
        await Wait.UntilAsync(() => TcpState(accepted) == TcpCloseWait, "the peer's end has arrived");
        Assert.Equal(7, socket.Available);

        int data = await socket.Stream.ReadAsync(buffer).AsTask().WaitAsync(Patience);
        int end = await socket.Stream.ReadAsync(buffer).AsTask().WaitAsync(Patience);

        Assert.Equal(7, data);
        Assert.Equal(0, end);
    }

    [Theory]
    [MemberData(nameof(Inline))]
    public async Task Send_MoreThanTheSocketBuffersHold_WaitsForRoomAndDeliversEveryByte(bool inline)
    {
        (EngineSocket socket, Socket peer) = await AcceptedPairAsync(Engine(inline));
        byte[] payload = RandomNumberGenerator.GetBytes(24 * 1024 * 1024);

        ValueTask sending = socket.Stream.WriteAsync(payload);

        // The peer reads nothing for a while: that is what is tested, not a stand-in for a
        // condition. 24 MiB is far more than the two sockets' buffers hold, so a correct engine
        // cannot complete the write before the peer reads however long this lasts (a busy machine
        // cannot fail the test); one that completes it early has this long to show it, and one
        // that drops bytes fails on the hash.
        await Task.Delay(100);
        bool waitedForRoom = !sending.IsCompleted;
        byte[] received = new byte[payload.Length];
        using var peerStream = new NetworkStream(peer, ownsSocket: false);
        await peerStream.ReadExactlyAsync(received).AsTask().WaitAsync(Patience);
        await sending.AsTask().WaitAsync(Patience);

        Assert.True(waitedForRoom);
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(received));
    }

    [Theory]
    [MemberData(nameof(Inline))]
    public async Task Receive_Cancelled_EndsWithOperationCanceledAndTheSocketStaysUsable(bool inline)
    {
        (EngineSocket socket, Socket peer) = await AcceptedPairAsync(Engine(inline));
        byte[] buffer = new byte[16];
        using var cancel = new CancellationTokenSource();

        ValueTask<int> waiting = socket.Stream.ReadAsync(buffer, cancel.Token);
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.AsTask().WaitAsync(Patience));
        peer.Send([42]);
        int after = await socket.Stream.ReadAsync(buffer).AsTask().WaitAsync(Patience);

        Assert.Equal(1, after);
        Assert.Equal(42, buffer[0]);
    }

    [Theory]
    [MemberData(nameof(Inline))]
    public async Task Dispose_WithAReceiveWaiting_EndsItWithObjectDisposed(bool inline)
    {
        (EngineSocket socket, _) = await AcceptedPairAsync(Engine(inline));

        ValueTask<int> waiting = socket.Stream.ReadAsync(new byte[16]);
        socket.Dispose();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => waiting.AsTask().WaitAsync(Patience));
        Assert.Throws<ObjectDisposedException>(() => socket.Stream.ReadAsync(new byte[16]));
    }

    [Theory]
    [MemberData(nameof(Inline))]
    public async Task Peek_LeavesTheBytesForTheNextReceive(bool inline)
    {
        (EngineSocket socket, Socket peer) = await AcceptedPairAsync(Engine(inline));
        byte[] one = new byte[1];
        byte[] all = new byte[8];

        ValueTask<int> peeking = socket.PeekAsync(one, CancellationToken.None);
        peer.Send([7, 8, 9]);
        int peeked = await peeking.AsTask().WaitAsync(Patience);
        await WaitAvailableAsync(socket, 3);
        int read = await socket.Stream.ReadAsync(all).AsTask().WaitAsync(Patience);

        Assert.Equal(1, peeked);
        Assert.Equal(7, one[0]);
        Assert.Equal(3, read);
        Assert.Equal([7, 8, 9], all[..3]);
    }

    [Fact]
    public async Task ShutdownSend_GivesThePeerTheEndAndStillReceives()
    {
        (EngineSocket socket, Socket peer) = await AcceptedPairAsync(Engine(inline: true));
        byte[] buffer = new byte[4];

        socket.ShutdownSend();
        int peerRead = await peer.ReceiveAsync(buffer).WaitAsync(Patience);
        peer.Send([5]);
        int read = await socket.Stream.ReadAsync(buffer).AsTask().WaitAsync(Patience);

        Assert.Equal(0, peerRead);
        Assert.Equal(1, read);
    }

    [Fact]
    public async Task Connect_ToAPortNobodyListensOn_IsConnectionRefused()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        int port = ((IPEndPoint)probe.LocalEndPoint!).Port;

        SocketException error = await Assert.ThrowsAsync<SocketException>(
            () => Engine(inline: true).ConnectAsync(ProxyEndpoint.Parse("127.0.0.1:" + port).EndPoint, CancellationToken.None).AsTask());

        Assert.Equal(SocketError.ConnectionRefused, error.SocketErrorCode);
        Assert.Contains("refused", error.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Connect_ToAUnixSocketThatIsNotThere_FailsWithTheSystemsReason()
    {
        string path = Path.Combine(Path.GetTempPath(), "pgspec-missing-" + Guid.NewGuid().ToString("N") + ".sock");

        SocketException error = await Assert.ThrowsAsync<SocketException>(
            () => Engine(inline: true).ConnectAsync(ProxyEndpoint.Parse(path).EndPoint, CancellationToken.None).AsTask());

        Assert.Contains("No such file", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("localhost")]
    [InlineData("[::1]")]
    [InlineData("unix")]
    public async Task Connect_ByHostNameIPv6OrUnixPath_ReachesTheListener(string kind)
    {
        string? path = kind == "unix" ? Path.Combine(Path.GetTempPath(), "pgspec-epoll-" + Guid.NewGuid().ToString("N") + ".sock") : null;
        using Socket listener = path is not null
            ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            : new Socket(kind == "[::1]" ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(path is not null ? new UnixDomainSocketEndPoint(path) : new IPEndPoint(kind == "[::1]" ? IPAddress.IPv6Loopback : IPAddress.Loopback, 0));
        listener.Listen();
        string endpoint = path ?? kind + ":" + ((IPEndPoint)listener.LocalEndPoint!).Port;
        try
        {
            EngineSocket socket = Own(await Engine(inline: true).ConnectAsync(ProxyEndpoint.Parse(endpoint).EndPoint, CancellationToken.None).AsTask().WaitAsync(Patience));
            using Socket accepted = await listener.AcceptAsync().WaitAsync(Patience);
            await socket.Stream.WriteAsync(new byte[] { 1, 2, 3 });
            byte[] buffer = new byte[3];
            await new NetworkStream(accepted).ReadExactlyAsync(buffer).AsTask().WaitAsync(Patience);

            Assert.Equal([1, 2, 3], buffer);
        }
        finally
        {
            if (path is not null)
            {
                File.Delete(path);
            }
        }
    }

    public static TheoryData<bool, int, bool> ThreadLayouts => new()
    {
        { true, 2, false }, { false, 2, false },

        // Any of the threads may take any socket's events, also two of them for one socket.
        { true, 3, true }, { false, 3, true },
    };

    [Theory]
    [MemberData(nameof(ThreadLayouts))]
    public async Task ManyConnections_OverSeveralEventThreads_EchoEveryByteInOrder(bool inline, int threads, bool shared)
    {
        SocketEngine engine = Engine(inline, threads, shared);
        Assert.Equal($"epoll, {threads} event threads{(shared ? " on one set" : "")}", engine.Description);
        const int Connections = 40;
        var pairs = new List<(EngineSocket Socket, Socket Peer)>();
        for (int i = 0; i < Connections; i++)
        {
            pairs.Add(await AcceptedPairAsync(engine));
        }

        // The engine's side echoes; each .NET peer sends random chunks and checks what comes back.
        Task[] echoes = pairs.Select(pair => EchoAsync(pair.Socket)).ToArray();
        Task<bool>[] checks = pairs.Select((pair, i) => SendAndCheckAsync(pair.Peer, seed: i)).ToArray();
        bool[] results = await Task.WhenAll(checks).WaitAsync(TimeSpan.FromSeconds(60));
        await Task.WhenAll(echoes).WaitAsync(Patience);

        Assert.All(results, Assert.True);
    }

    [Fact]
    public async Task SocketsOpenedAndClosed_OnASharedSet_ReuseTheirSlotsAndLeaveOthersServed()
    {
        // Registrations beyond the table's first size grow it; closed ones free their slots for
        // the next, whose events must never reach a socket closed before.
        SocketEngine engine = Engine(inline: true, threads: 2, shared: true);
        (EngineSocket longSocket, Socket longPeer) = await AcceptedPairAsync(engine);
        Task longEcho = EchoAsync(longSocket);
        using var longStream = new NetworkStream(longPeer, ownsSocket: false);
        byte[] answer = new byte[4];
        for (int round = 0; round < 3; round++)
        {
            var batch = new List<(EngineSocket Socket, Socket Peer)>();
            for (int i = 0; i < 100; i++)
            {
                batch.Add(await AcceptedPairAsync(engine));
            }

            Task[] echoes = batch.Select(pair => EchoAsync(pair.Socket)).ToArray();
            for (int i = 0; i < batch.Count; i++)
            {
                byte[] ping = BitConverter.GetBytes((round * 1000) + i);
                using var stream = new NetworkStream(batch[i].Peer, ownsSocket: false);
                await stream.WriteAsync(ping);
                await stream.ReadExactlyAsync(answer).AsTask().WaitAsync(Patience);
                Assert.Equal(ping, answer);
                batch[i].Peer.Shutdown(SocketShutdown.Send);
            }

            await Task.WhenAll(echoes).WaitAsync(Patience);
            foreach ((EngineSocket socket, Socket peer) in batch)
            {
                socket.Dispose();
                peer.Dispose();
            }

            byte[] longPing = BitConverter.GetBytes(-round);
            await longStream.WriteAsync(longPing);
            await longStream.ReadExactlyAsync(answer).AsTask().WaitAsync(Patience);
            Assert.Equal(longPing, answer);
        }

        longPeer.Shutdown(SocketShutdown.Send);
        await longEcho.WaitAsync(Patience);
    }

    public void Dispose()
    {
        for (int i = _owned.Count - 1; i >= 0; i--)
        {
            _owned[i].Dispose();
        }
    }

    private static async Task EchoAsync(EngineSocket socket)
    {
        byte[] buffer = new byte[3000];
        while (true)
        {
            int read = await socket.Stream.ReadAsync(buffer);
            if (read == 0)
            {
                socket.ShutdownSend();
                return;
            }

            await socket.Stream.WriteAsync(buffer.AsMemory(0, read));
        }
    }

    private static async Task<bool> SendAndCheckAsync(Socket peer, int seed)
    {
        var random = new Random(seed);
        byte[] payload = new byte[random.Next(200_000, 600_000)];
        random.NextBytes(payload);
        using var stream = new NetworkStream(peer, ownsSocket: false);
        Task sending = Task.Run(async () =>
        {
            for (int offset = 0; offset < payload.Length;)
            {
                int chunk = Math.Min(random.Next(1, 9000), payload.Length - offset);
                await stream.WriteAsync(payload.AsMemory(offset, chunk));
                offset += chunk;
            }

            peer.Shutdown(SocketShutdown.Send);
        });
        var echoed = new MemoryStream();
        await stream.CopyToAsync(echoed);
        await sending;
        return echoed.ToArray().AsSpan().SequenceEqual(payload);
    }

    private SocketEngine Engine(bool inline, int threads = 1, bool shared = false, TimeSpan spin = default) => Own<SocketEngine>(new EpollSocketEngine(threads, shared, inline, log: null, spin));

    private T Own<T>(T disposable)
        where T : IDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }

    private async Task<(EngineSocket Socket, Socket Peer)> AcceptedPairAsync(SocketEngine engine)
    {
        (EngineSocket socket, Socket peer, _) = await AcceptedTripleAsync(engine);
        return (socket, peer);
    }

    /// <summary>An engine socket and its .NET peer, and the accepted socket the engine adopted (to ask the kernel about it).</summary>
    private async Task<(EngineSocket Socket, Socket Peer, Socket Accepted)> AcceptedTripleAsync(SocketEngine engine)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        Socket peer = Own(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        Task connecting = peer.ConnectAsync(listener.LocalEndPoint!);
        Socket accepted = await listener.AcceptAsync().WaitAsync(Patience);
        await connecting;
        return (Own(engine.Adopt(accepted)), peer, accepted);
    }

    private static Task WaitAvailableAsync(EngineSocket socket, int bytes)
        => Wait.UntilAsync(() => socket.Available >= bytes, $"{bytes} bytes can be read");

    /// <summary>The socket's TCP state, the first byte of Linux's struct tcp_info (getsockopt IPPROTO_TCP, TCP_INFO).</summary>
    private static byte TcpState(Socket socket)
    {
        Span<byte> info = stackalloc byte[256];
        socket.GetRawSocketOption(6, 11, info);
        return info[0];
    }
}
