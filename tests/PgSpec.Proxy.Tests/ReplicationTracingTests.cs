using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using PgSpec.Protocol;
using PgSpec.Protocol.PgOutput;
using PgSpec.Protocol.Replication;
using PgSpec.Server.Tests;

namespace PgSpec.Proxy.Tests;

/// <summary>
/// The proxy's <see cref="PqTraceSink.Replication"/> in front of a server that streams replication
/// messages a real server never sends: malformed replication and pgoutput payloads are relayed as
/// they are and reported in the trace, in place, and the connection goes on to its normal end.
/// </summary>
public class ReplicationTracingTests
{
    private const string Start = "START_REPLICATION SLOT \"s\" LOGICAL 0/0 (\"proto_version\" '1', \"publication_names\" 'p')";

    [Fact]
    public async Task MalformedReplicationPayloads_AreRelayedAndReported_TheConnectionGoesOn()
    {
        byte[][] serverStream =
        [
            new CopyBothResponse(CopyFormat.Binary, []).ToArray(),
            Copy(Wal(new Begin(1, 2, 3).ToArray())),
            Copy([(byte)'w', 1]),
            Copy([(byte)'Z']),
            Copy(Wal([(byte)'I', 0, 0])),
            Copy(Wal(new Commit(1, 2, 3).ToArray())),
            Copy([(byte)'k', .. new byte[16], 2]),
            Copy([]),
        ];
        byte[][] clientStream =
        [
            Copy(new StandbyStatusUpdate(1, 2, 3, 4, 0).ToArray()),
            Copy([(byte)'h', 1, 2]),
            Copy([(byte)'w', .. new byte[24]]),
            new CopyDone().ToArray(),
        ];
        var trace = new MemoryStream();
        var serverReceived = new List<byte[]>();
        await using var fake = new FakeServerProxy(
            async socket =>
            {
                using var stream = new NetworkStream(socket);
                await ReadStartupAsync(stream);
                await stream.WriteAsync((byte[])[.. new AuthenticationOk().ToArray(), .. new ReadyForQuery(TransactionStatus.Idle).ToArray()]);
                await ReadUntilAsync(stream, 'Q', serverReceived);
                await stream.WriteAsync(serverStream.SelectMany(m => m).ToArray());
                await ReadUntilAsync(stream, 'c', serverReceived);
                await stream.WriteAsync((byte[])[.. new CopyDone().ToArray(), .. new CommandComplete("START_REPLICATION").ToArray(), .. new ReadyForQuery(TransactionStatus.Idle).ToArray()]);
                await ReadUntilAsync(stream, 'X', serverReceived);
            },
            options => options with { Trace = new PqTraceSink(trace, showSecrets: true) { Replication = true } });
        using (RawClient client = await RawClient.ConnectAsync(fake.Port))
        {
            await client.SendAsync(RawClient.Startup("anyone"));
            Assert.NotNull(await client.ReadUntilAsync('Z'));
            await client.SendAsync(RawClient.Message('Q', Start + "\0"));
            foreach (byte[] sent in serverStream)
            {
                (char Type, byte[] Body)? received = await client.ReadAsync();
                Assert.NotNull(received);
                Assert.Equal(sent, (byte[])[(byte)received.Value.Type, .. Length(received.Value.Body.Length), .. received.Value.Body]);
            }

            await client.SendAsync(clientStream.SelectMany(m => m).ToArray());
            Assert.NotNull(await client.ReadUntilAsync('Z'));
            await client.SendAsync(RawClient.Message('X', ""));
            Assert.True(await client.ClosedAsync());
        }

        await fake.Served;
        await Wait.UntilAsync(() => fake.Proxy.ActiveConnections == 0, "the connection ended");
        Assert.Equal(clientStream.Select(m => m), serverReceived.Skip(1).Take(clientStream.Length));
        await fake.StopAsync();

        string[] lines = Encoding.UTF8.GetString(trace.ToArray()).TrimEnd('\n').Split('\n');
        Assert.DoesNotContain(lines, line => line.Contains("connection ended", StringComparison.Ordinal));
        string[] stream = [.. lines.SkipWhile(line => !line.StartsWith("B\t", StringComparison.Ordinal) || !line.Contains("\tCopyBothResponse\t", StringComparison.Ordinal))];

        // Each line as it starts (a CopyData line by its pattern): the server's side first (the client
        // answered once it had all of it), then the client's, then the ends.
        string[] expected =
        [
            "B\t7\tCopyBothResponse\t \\x01 0",
            "\t# logical replication of slot \"s\" from 0/0 (plugin not seen; pgoutput's options): XLogData carries pgoutput messages (proto_version 1, streaming off)",
            "B\t50\tCopyData\t 'w",
            "\tB\t46\tXLogData\t 10 20 30",
            "\t\tB\t21\tBegin\t 1 2 3",
            "B\t6\tCopyData\t 'w",
            "\t# not a replication message (XLogData): XLogData.walStart: ",
            "B\t5\tCopyData\t 'Z'",
            "\t# not a replication message: Replication: unknown type byte 'Z' from the backend (at offset 0)",
            "B\t32\tCopyData\t 'w",
            "\tB\t28\tXLogData\t 10 20 30",
            "\t\t# not a pgoutput message (Insert): Insert.",
            "B\t55\tCopyData\t 'w",
            "\tB\t51\tXLogData\t 10 20 30",
            "B\t22\tCopyData\t 'k",
            "\t# not a replication message (PrimaryKeepalive): PrimaryKeepalive.replyRequested: ",
            "B\t4\tCopyData\t ''",
            "\t# not a replication message: Replication: empty payload",
            "F\t38\tCopyData\t 'r",
            "\tF\t34\tStandbyStatusUpdate\t 1 2 3 4 ",
            "F\t7\tCopyData\t 'h",
            "\t# not a replication message (HotStandbyFeedback): HotStandbyFeedback.clientTime: ",
            "F\t29\tCopyData\t 'w",
            "\t# not a replication message: Replication: unknown type byte 'w' from the frontend (at offset 0)",
            "F\t4\tCopyDone",
            "B\t4\tCopyDone",
            "B\t22\tCommandComplete\t \"START_REPLICATION\"",
            "B\t5\tReadyForQuery\t I",
            "F\t4\tTerminate",
        ];
        Assert.True(expected.Length == stream.Length, string.Join("\n", stream));
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.StartsWith(expected[i], stream[i], StringComparison.Ordinal);
        }
    }

    private static byte[] Copy(byte[] data) => new CopyData(data).ToArray();

    private static byte[] Wal(byte[] data) => new XLogData(10, 20, 30, data).ToArray();

    private static byte[] Length(int body)
    {
        byte[] length = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(length, 4 + body);
        return length;
    }

    private static async Task ReadStartupAsync(NetworkStream stream)
    {
        byte[] length = new byte[4];
        await stream.ReadExactlyAsync(length);
        await stream.ReadExactlyAsync(new byte[BinaryPrimitives.ReadInt32BigEndian(length) - 4]);
    }

    /// <summary>Reads typed messages (each whole, as bytes) until one of <paramref name="type"/>.</summary>
    private static async Task ReadUntilAsync(NetworkStream stream, char type, List<byte[]> received)
    {
        while (true)
        {
            byte[] header = new byte[5];
            await stream.ReadExactlyAsync(header);
            byte[] message = new byte[1 + BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(1))];
            header.CopyTo(message, 0);
            await stream.ReadExactlyAsync(message.AsMemory(5));
            received.Add(message);
            if (header[0] == type)
            {
                return;
            }
        }
    }
}
