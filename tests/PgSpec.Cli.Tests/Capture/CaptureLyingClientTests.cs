using System.Buffers.Binary;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using PgSpec.Servers;

namespace PgSpec.Cli.Tests.Capture;

/// <summary>
/// Clients that lie about the lengths of their messages to PostgreSQL 15, captured by tcpdump:
/// <c>pgspec capture</c> says what is wrong where it is, never takes a lie for messages, and
/// decodes what follows once its bytes prove a boundary.
/// </summary>
[Collection(ProxiedSessionsCollection.Name)]
public sealed class CaptureLyingClientTests(ProxiedSessions sessions) : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void LengthsThatLie_AreReportedWhereTheyAre_AndTheTruthAfterThemIsDecoded()
    {
        PgServer server = sessions.Pg15;
        string file = Path.Combine(_dir.Path, "lies.pcap");
        using (Tcpdump.Start(["-i", "lo", "--immediate-mode", "-U", "-B", "32768", "-w", file, $"tcp port {server.Port.ToString(CultureInfo.InvariantCulture)}"]))
        {
            // A Query of 2 GiB (over the protocol's limit) and one of 2 bytes (less than the
            // length itself): the server closes the connection without a word.
            foreach (int length in new[] { 0x7FFF_FFF0, 2 })
            {
                using Socket socket = LoggedIn(server);
                socket.Send(Query(length, "SELECT 1"));
                Drain(socket);
            }

            // A Query of 100 bytes of which the client sends 14, then closes its side.
            using (Socket socket = LoggedIn(server))
            {
                socket.Send(Query(100, "SELECT 1"));
                socket.Shutdown(SocketShutdown.Send);
                Drain(socket);
            }

            // A Query 12 bytes longer than its text, and those 12 bytes frame as a Query of their
            // own: the server refuses the message (08P01) and goes on; the client then sends the truth.
            using (Socket socket = LoggedIn(server))
            {
                socket.Send([.. Query(4 + 9 + 12, "SELECT 1"), .. Query(9, "junk"), 0, 0]);
                Assert.Contains("invalid message format", ReadUntilReady(socket), StringComparison.Ordinal);
                socket.Send([.. Query(4 + 9, "SELECT 2"), (byte)'X', 0, 0, 0, 4]);
                Drain(socket);
            }

            Tcpdump.WaitForEnds(file, TimeSpan.FromSeconds(30));
        }

        CliResult result = CliRunner.Run("capture", "--port", server.Port.ToString(CultureInfo.InvariantCulture), "--connection-ids", file);

        Assert.True(result.ExitCode == 0, result.ToString());
        string[][] connections = [.. result.Lines.GroupBy(line => line.Split('\t')[0]).Select(g => g.Select(line => line.Split('\t', 2)[1]).Where(line => !line.Contains("ParameterStatus", StringComparison.Ordinal)).ToArray())];
        Assert.Equal(4, connections.Length);
        string[] login = ["F\t45\tStartupMessage\t 3 0 \"user\" \"pgspec_trust\" \"database\" \"postgres\"", "B\t12\tBackendKeyData", "B\t5\tReadyForQuery\t I"];
        foreach (string[] connection in connections)
        {
            Assert.StartsWith("# connection ", connection[0], StringComparison.Ordinal);
            Assert.Equal(login, connection[1..4].Select(line => line.StartsWith("B\t12\tBackendKeyData", StringComparison.Ordinal) ? "B\t12\tBackendKeyData" : line));
            Assert.EndsWith(" ended: closed", connection[^1], StringComparison.Ordinal);
        }

        Assert.Equal(
            [
                "# connection 1 malformed: the client's bytes break the protocol: frame.length: length 2147483632 of message type Q is over the limit of 1073741826 (at offset 46); looking for the next message boundary",
                "# connection 1 malformed: the client's stream ended before a message boundary was found (13 bytes not decoded)",
            ],
            connections[0][4..^1]);
        Assert.Equal(
            [
                "# connection 2 malformed: the client's bytes break the protocol: frame.length: length 2 of message type Q is less than 4 (at offset 46); looking for the next message boundary",
                "# connection 2 malformed: the client's stream ended before a message boundary was found (13 bytes not decoded)",
            ],
            connections[1][4..^1]);
        Assert.Equal(["# connection 3 malformed: the client's stream ended inside a message (14 bytes of it)"], connections[2][4..^1]);
        Assert.Equal(
            [
                "# connection 4 malformed: the client's bytes break the protocol: Query: 12 bytes left over after the last field (at offset 59); looking for the next message boundary",
                "B\t81\tErrorResponse\t S \"ERROR\" V \"ERROR\" C \"08P01\" M \"invalid message format\" F \"pqformat.c\" L \"640\" R \"pq_getmsgend\" \\x00",
                "B\t5\tReadyForQuery\t I",
                "# connection 4 resumed: the client's stream resumes at a message boundary, 25 bytes on",
                "F\t13\tQuery\t \"SELECT 2\"",
                "F\t4\tTerminate",
                "B\t33\tRowDescription\t 1 \"?column?\" 0 0 23 4 -1 0",
                "B\t11\tDataRow\t 1 1 '2'",
                "B\t13\tCommandComplete\t \"SELECT 1\"",
                "B\t5\tReadyForQuery\t I",
            ],
            connections[3][4..^1]);
    }

    /// <summary>A Query whose length field says <paramref name="length"/>, whatever its text.</summary>
    private static byte[] Query(int length, string text)
    {
        byte[] message = new byte[5 + text.Length + 1];
        message[0] = (byte)'Q';
        BinaryPrimitives.WriteInt32BigEndian(message.AsSpan(1), length);
        Encoding.ASCII.GetBytes(text, message.AsSpan(5));
        return message;
    }

    /// <summary>A connection logged in as the trust role (a StartupMessage, then up to ReadyForQuery).</summary>
    private static Socket LoggedIn(PgServer server)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        socket.Connect(server.Host, server.Port);
        byte[] parameters = Encoding.ASCII.GetBytes($"user\0{server.Role(PgAuthMethod.Trust).Name}\0database\0postgres\0\0");
        byte[] startup = new byte[8 + parameters.Length];
        BinaryPrimitives.WriteInt32BigEndian(startup, startup.Length);
        BinaryPrimitives.WriteInt32BigEndian(startup.AsSpan(4), 0x0003_0000);
        parameters.CopyTo(startup, 8);
        socket.Send(startup);
        ReadUntilReady(socket);
        return socket;
    }

    /// <summary>Reads until the bytes end with a ReadyForQuery (idle); returns them as Latin-1 text.</summary>
    private static string ReadUntilReady(Socket socket)
    {
        var received = new List<byte>();
        byte[] buffer = new byte[65536];
        while (!received.ToArray().AsSpan().EndsWith("Z\0\0\0\u0005I"u8))
        {
            int n = socket.Receive(buffer);
            Assert.True(n > 0, "the server closed before ReadyForQuery: " + Encoding.Latin1.GetString([.. received]));
            received.AddRange(buffer.AsSpan(0, n));
        }

        return Encoding.Latin1.GetString([.. received]);
    }

    /// <summary>Reads until the server closes.</summary>
    private static void Drain(Socket socket)
    {
        byte[] buffer = new byte[65536];
        while (socket.Receive(buffer) > 0)
        {
        }
    }
}
