using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using PgSpec.Protocol;

namespace PgSpec.Cli.Tests.Capture;

/// <summary>
/// <c>pgspec capture</c> as users run it: on a tcpdump capture of a conversation over loopback
/// (the SCRAM session of <see cref="Conversation"/>, the client's and the server's bytes sent in
/// turns), and with arguments that are wrong.
/// </summary>
public class CaptureCommandTests : IClassFixture<CaptureCommandTests.CapturedConversation>
{
    private readonly CapturedConversation _capture;

    public CaptureCommandTests(CapturedConversation capture) => _capture = capture;

    [Fact]
    public void TheTraceFormat_PrintsTheConversationsMessages_WithTheConnectionId()
    {
        CliResult result = CliRunner.Run("capture", "--port", _capture.Port, "--connection-ids", _capture.File);

        Assert.True(result.ExitCode == 0, result.ToString());
        string[] messages = [.. result.Lines.Where(line => !line.Contains("\t#", StringComparison.Ordinal))];
        Assert.All(result.Lines, line => Assert.StartsWith("1\t", line, StringComparison.Ordinal));
        Assert.Equal(
            ["StartupMessage", "AuthenticationSASL", "SASLInitialResponse", "AuthenticationSASLContinue", "SASLResponse", "AuthenticationSASLFinal", "ParameterStatus", "BackendKeyData", "ReadyForQuery", "Query", "RowDescription", "DataRow", "CommandComplete", "ReadyForQuery", "Terminate"],
            messages.Select(line => line.Split('\t')[3]));

        // SASL data is hidden unless asked for.
        Assert.Contains(messages, line => line.Contains("SASLResponse\t 'BBBB'", StringComparison.Ordinal));
        Assert.Contains("# connection 1 seen: 127.0.0.1:", result.Lines[0], StringComparison.Ordinal);
        Assert.EndsWith("# connection 1 ended: closed", result.Lines[^1], StringComparison.Ordinal);
        Assert.Contains("1 PostgreSQL connections", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void TimestampsAreTheCapturesOwn()
    {
        CliResult result = CliRunner.Run("capture", "--port", _capture.Port, "--timestamps", _capture.File);

        Assert.True(result.ExitCode == 0, result.ToString());
        foreach (string line in result.Lines)
        {
            DateTime stamp = DateTime.ParseExact(line[..26], "yyyy-MM-dd HH:mm:ss.ffffff", CultureInfo.InvariantCulture);
            Assert.InRange(stamp, _capture.Started.ToLocalTime().AddSeconds(-1), _capture.Ended.ToLocalTime().AddSeconds(1));
        }
    }

    [Fact]
    public void TheJsonFormat_GivesOneObjectPerMessageAndEvent()
    {
        CliResult result = CliRunner.Run("capture", "--port", _capture.Port, "--format", "json", "--show-secrets", _capture.File);

        Assert.True(result.ExitCode == 0, result.ToString());
        JsonElement[] objects = [.. result.Lines.Select(line => JsonDocument.Parse(line).RootElement)];
        Assert.All(objects, o => Assert.Equal(1, o.GetProperty("connection").GetInt64()));
        Assert.Equal("seen", objects[0].GetProperty("event").GetString());
        Assert.Equal("ended", objects[^1].GetProperty("event").GetString());
        JsonElement[] messages = [.. objects.Where(o => !o.TryGetProperty("event", out _))];
        Assert.Equal(16, messages.Length); // AuthenticationOk too, which the trace format leaves out
        JsonElement query = messages.Single(m => m.GetProperty("name").GetString() == "Query");
        Assert.Equal("SELECT 1, NULL", query.GetProperty("fields").GetProperty("queryString").GetString());
    }

    [Fact]
    public void AFilterForAnotherServer_DecodesNothing()
    {
        CliResult result = CliRunner.Run("capture", "--filter", "127.0.0.2:" + _capture.Port, _capture.File);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Empty(result.Lines);
        Assert.Contains("0 PostgreSQL connections", result.Stderr, StringComparison.Ordinal);

        CliResult right = CliRunner.Run("capture", "--filter", "127.0.0.1:" + _capture.Port, _capture.File);
        Assert.Equal(CliRunner.Run("capture", "--port", _capture.Port, _capture.File).Stdout, right.Stdout);
    }

    [Theory]
    [InlineData("--port", "0", "--port takes TCP port numbers")]
    [InlineData("--port", "5432,x", "--port takes TCP port numbers")]
    [InlineData("--filter", "localhost:5432", "--filter takes an IP address and a port")]
    [InlineData("--filter", "127.0.0.1", "--filter takes an IP address and a port")]
    [InlineData("--format", "xml", "xml")]
    public void BadArguments_AreUsageErrors(string option, string value, string message)
    {
        CliResult result = CliRunner.Run("capture", option, value, _capture.File);

        Assert.Equal(PgSpecCommandLine.ExitUsage, result.ExitCode);
        Assert.Contains(message, result.Stderr, StringComparison.Ordinal);
        Assert.Empty(result.Stdout);
    }

    [Fact]
    public void AFileAndAnInterfaceTogether_AreAUsageError()
    {
        CliResult result = CliRunner.Run("capture", "--interface", "lo", _capture.File);

        Assert.Equal(PgSpecCommandLine.ExitUsage, result.ExitCode);
        Assert.Contains("FILE and --interface cannot be used together", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void AFileThatIsNotACapture_IsAUsageErrorNamingIt()
    {
        using var dir = new TempDirectory();
        string notCapture = dir.Write("notes.txt", "just some text, not packets\n"u8.ToArray());

        CliResult result = CliRunner.Run("capture", notCapture);
        Assert.Equal(PgSpecCommandLine.ExitUsage, result.ExitCode);
        Assert.Contains("notes.txt", result.Stderr, StringComparison.Ordinal);

        CliResult missing = CliRunner.Run("capture", Path.Combine(dir.Path, "missing.pcap"));
        Assert.Equal(PgSpecCommandLine.ExitUsage, missing.ExitCode);
        Assert.Contains("missing.pcap", missing.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void ACaptureCutShortInARecord_PrintsWhatWasReadThenFailsSayingWhy()
    {
        using var dir = new TempDirectory();
        byte[] whole = System.IO.File.ReadAllBytes(_capture.File);

        // A record header that announces 100 captured bytes, followed by only 10 of them.
        byte[] record = new byte[16 + 10];
        record[8] = 100;
        record[12] = 100;
        string cut = dir.Write("cut.pcap", [.. whole, .. record]);

        CliResult result = CliRunner.Run("capture", "--port", _capture.Port, cut);

        Assert.Equal(PgSpecCommandLine.ExitUsage, result.ExitCode);
        Assert.Equal(CliRunner.Run("capture", "--port", _capture.Port, _capture.File).Stdout, result.Stdout);
        Assert.Contains("reading " + cut + " stopped after", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("truncated", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void ACaptureWithAbsurdLengthsInItsHeaders_IsReadAsFarAsItCanBe_OrRefusedSayingWhy()
    {
        using var dir = new TempDirectory();
        byte[] whole = System.IO.File.ReadAllBytes(_capture.File);
        Assert.Equal(0xA1B2C3D4u, BinaryPrimitives.ReadUInt32LittleEndian(whole)); // tcpdump's pcap, little-endian, microseconds
        string expected = CliRunner.Run("capture", "--port", _capture.Port, _capture.File).Stdout;
        List<byte[]> records = [];
        for (int offset = 24; offset < whole.Length;)
        {
            int length = BinaryPrimitives.ReadInt32LittleEndian(whole.AsSpan(offset + 8));
            records.Add(whole[offset..(offset + 16 + length)]);
            offset += 16 + length;
        }

        // A snap length of 4 GiB in the file header: libpcap takes what the records hold, no more.
        byte[] header = whole[..24];
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(16), uint.MaxValue);
        CliResult snap = CliRunner.Run("capture", "--port", _capture.Port, dir.Write("snap.pcap", [.. header, .. records.SelectMany(r => r)]));
        Assert.True(snap.ExitCode == 0, snap.ToString());
        Assert.Equal(expected, snap.Stdout);

        // Every packet said to be 4 GiB long on the wire (its original length): the TCP lengths
        // come from the IP headers, which are whole, so nothing is missing.
        byte[][] wire = [.. records.Select(r => (byte[])r.Clone())];
        foreach (byte[] record in wire)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(record.AsSpan(12), uint.MaxValue);
        }

        CliResult huge = CliRunner.Run("capture", "--port", _capture.Port, dir.Write("wire.pcap", [.. whole[..24], .. wire.SelectMany(r => r)]));
        Assert.True(huge.ExitCode == 0, huge.ToString());
        Assert.Equal(expected, huge.Stdout);

        // A record that says it holds 2 GiB after the tenth: what came before is decoded, then
        // the reading stops with libpcap's reason, exit 2, and nothing is allocated for it.
        byte[] absurd = new byte[16 + 64];
        BinaryPrimitives.WriteUInt32LittleEndian(absurd.AsSpan(8), 0x7FFF_FFF0);
        BinaryPrimitives.WriteUInt32LittleEndian(absurd.AsSpan(12), 0x7FFF_FFF0);
        string partial = dir.Write("absurd.pcap", [.. whole[..24], .. records.Take(10).SelectMany(r => r), .. absurd, .. records.Skip(10).SelectMany(r => r)]);
        CliResult refused = CliRunner.Run("capture", "--port", _capture.Port, partial);
        Assert.Equal(PgSpecCommandLine.ExitUsage, refused.ExitCode);
        Assert.Contains($"reading {partial} stopped after 10 packets: invalid packet capture length 2147483632, bigger than snaplen of ", refused.Stderr, StringComparison.Ordinal);
        Assert.Equal(CliRunner.Run("capture", "--port", _capture.Port, dir.Write("ten.pcap", [.. whole[..24], .. records.Take(10).SelectMany(r => r)])).Stdout, refused.Stdout);
    }

    [Fact]
    public void Help_NamesTheFormatsAndTheReassembly()
    {
        CliResult result = CliRunner.Run("help", "capture");

        Assert.Equal(0, result.ExitCode);
        Assert.Contains("pcapng", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("--interface", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("gap", result.Stdout, StringComparison.Ordinal);
    }

    /// <summary>The conversation, sent in turns over loopback while tcpdump captured it.</summary>
    public sealed class CapturedConversation : IDisposable
    {
        private readonly TempDirectory _dir = new();

        public CapturedConversation()
        {
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            int port = ((IPEndPoint)listener.LocalEndpoint).Port;
            Port = port.ToString(CultureInfo.InvariantCulture);
            File = Path.Combine(_dir.Path, "conversation.pcap");
            using (Tcpdump.Start(["-i", "lo", "--immediate-mode", "-U", "-B", "32768", "-w", File, $"tcp port {port}"]))
            {
                Started = DateTime.UtcNow;
                Converse(listener);
                Tcpdump.WaitForEnds(File, TimeSpan.FromSeconds(30));
                Ended = DateTime.UtcNow;
            }
        }

        public string Port { get; }

        public string File { get; }

        public DateTime Started { get; }

        public DateTime Ended { get; }

        public void Dispose() => _dir.Dispose();

        private static void Converse(TcpListener listener)
        {
            (bool ToServer, IPgMessage[] Messages)[] turns =
            [
                (true, [Conversation.Startup]),
                (false, [Conversation.Sasl]),
                (true, [Conversation.SaslInitial]),
                (false, [Conversation.SaslContinue]),
                (true, [Conversation.SaslResponse]),
                (false, [Conversation.SaslFinal, new AuthenticationOk(), Conversation.ServerVersion, new BackendKeyData(4242, new byte[] { 0, 0, 0, 7 }), new ReadyForQuery(TransactionStatus.Idle)]),
                (true, [Conversation.Select]),
                (false, [Conversation.Columns, Conversation.Row, new CommandComplete("SELECT 1"), new ReadyForQuery(TransactionStatus.Idle)]),
                (true, [new Terminate()]),
            ];
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            client.Connect(listener.LocalEndpoint);
            using Socket server = listener.AcceptSocket();
            server.NoDelay = true;
            foreach ((bool toServer, IPgMessage[] messages) in turns)
            {
                byte[] bytes = Conversation.Bytes(messages);
                (toServer ? client : server).Send(bytes);
                ReceiveExactly(toServer ? server : client, bytes.Length);
            }

            client.Shutdown(SocketShutdown.Send);
            ReceiveExactly(server, 0);
            server.Shutdown(SocketShutdown.Send);
            ReceiveExactly(client, 0);
        }

        /// <summary>Receives <paramref name="count"/> bytes (0: waits for the peer's end).</summary>
        private static void ReceiveExactly(Socket socket, int count)
        {
            byte[] buffer = new byte[Math.Max(count, 1)];
            int received = 0;
            while (count == 0 || received < count)
            {
                int n = socket.Receive(buffer, received % buffer.Length, buffer.Length - (received % buffer.Length), SocketFlags.None);
                if (n == 0)
                {
                    Assert.True(count == 0, $"the peer closed after {received} of {count} bytes");
                    return;
                }

                received += n;
            }
        }
    }
}
