using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Text;
using PgSpec.Cli.Capture;
using PgSpec.Cli.Script;
using PgSpec.Cli.Tests.RealServer;
using PgSpec.Protocol;
using PgSpec.Servers;
using Xunit;

namespace PgSpec.Cli.Tests.Capture;

public class CaptureScriptsTests
{
    private static readonly IPEndPoint Client = IPEndPoint.Parse("10.0.0.7:40001");
    private static readonly IPEndPoint Server = IPEndPoint.Parse("10.0.0.1:5432");
    private static readonly DateTime Start = new(2026, 12, 3, 6, 0, 0, DateTimeKind.Utc);
    private static readonly ReadyForQuery Idle = new(TransactionStatus.Idle);

    /// <summary>The startup, trust authentication and the server's first ReadyForQuery.</summary>
    private static readonly (bool ToServer, byte[] Bytes)[] Login =
    [
        (true, Conversation.Bytes(Conversation.Startup)),
        (false, Conversation.Bytes(new AuthenticationOk(), Conversation.ServerVersion, new BackendKeyData(4242, new byte[] { 0, 0, 0, 7 }), Idle)),
    ];

    [Fact]
    public void SimpleQueries_AreQueryLinesEachFollowedByAWait_AndStringsRoundTrip()
    {
        var tricky = new Query("SELECT 'quote \" and \\ backslash',\n  'line two', E'\\\\n' -- ends with a backslash \\");
        var tab = new Query("SELECT 'a\tb'");
        (bool, byte[])[] turns =
        [
            .. Login,
            (true, Conversation.Bytes(tricky)),
            (false, Conversation.Bytes(Conversation.Columns, Conversation.Row, new CommandComplete("SELECT 1"), Idle)),
            (true, Conversation.Bytes(tab)),
            (false, Conversation.Bytes(new CommandComplete("SELECT 1"), Idle)),
            (true, Conversation.Bytes(new Terminate())),
        ];

        using var directory = new TempDirectory();
        string text = Script(directory, turns);

        string[] lines = text.Split('\n');
        Assert.StartsWith("# connection 1: 10.0.0.7:40001 -> 10.0.0.1:5432, captured 2026-12-03 06:00:00", lines[0]);
        Assert.StartsWith("# status: complete", lines[1]);
        Assert.Contains(lines, l => l.StartsWith("# StartupMessage (protocol 3.0; user=alice, database=shop)", StringComparison.Ordinal));
        IReadOnlyList<ScriptStep> steps = ScriptParser.Parse(text, "connection-1.pgproto");
        Assert.Equal(["send", "read", "send", "read", "send"], steps.Select(Kind));
        Assert.Equal([tricky.ToArray(), tab.ToArray(), new Terminate().ToArray()], Sent(steps));

        // The TAB cannot be in a string: that Query is its raw bytes, after a comment saying so.
        Assert.IsType<RawStep>(steps[2]);
        Assert.Contains("# a Query with a TAB in a string (the script's fields end at TABs): sent as its raw bytes ('!', which pgproto does not have)", lines);
    }

    [Fact]
    public void TheExtendedProtocol_NamedStatementsBinaryParametersAndFlush_RoundTrip()
    {
        byte[] int4 = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(int4, -7);
        IPgMessage[] batch =
        [
            new Parse("ins", "INSERT INTO t VALUES ($1, $2, $3, $4)", [23, 25, 17, 0]),
            new Bind("p1", "ins", [1, 0, 1, 0], [int4, Encoding.UTF8.GetBytes("héllo \"x\" \\ \n"), new byte[] { 0, 0xFF, 0x09, 0x80 }, null], [1]),
            new Describe(StatementOrPortal.Portal, "p1"),
            new Execute("p1", 10),
            new Close(StatementOrPortal.Statement, "ins"),
            new Sync(),
        ];
        IPgMessage[] flushed =
        [
            new Parse("", "SELECT $1::int8", []),
            new Describe(StatementOrPortal.Statement, ""),
            new Flush(),
        ];
        IPgMessage[] after =
        [
            new Bind("", "", [], [Encoding.ASCII.GetBytes("42"), ReadOnlyMemory<byte>.Empty], []),
            new Execute("", 0),
            new Sync(),
        ];
        (bool, byte[])[] turns =
        [
            .. Login,
            (true, Conversation.Bytes(batch)),
            (false, Conversation.Bytes(new ParseComplete(), new BindComplete(), new NoData(), new CommandComplete("INSERT 0 1"), new CloseComplete(), Idle)),
            (true, Conversation.Bytes(flushed)),
            (false, Conversation.Bytes(new ParseComplete(), new ParameterDescription([20]), Conversation.Columns)),
            (true, Conversation.Bytes(after)),
            (false, Conversation.Bytes(new BindComplete(), Conversation.Row, new CommandComplete("SELECT 1"), Idle)),
        ];

        using var directory = new TempDirectory();
        string text = Script(directory, turns);

        IReadOnlyList<ScriptStep> steps = ScriptParser.Parse(text, "connection-1.pgproto");
        Assert.Equal([.. batch.Select(m => m.ToArray()), .. flushed.Select(m => m.ToArray()), .. after.Select(m => m.ToArray())], Sent(steps));
        Assert.All(steps, step => Assert.IsNotType<RawStep>(step));

        // A wait after each Sync; after the Flush, one 'z' for each of the three answers.
        string waits = string.Concat(steps.Select(s => s is ReadStep read ? read.Read == ScriptRead.UntilReady ? "Y" : "z" : "."));
        Assert.Equal("......Y...zzz...Y", waits);
        Assert.Contains("'B'\t\"p1\"\t\"ins\"\t4\t1\t0\t1\t0\t4\t4\t\"0x", text);
        Assert.Contains("\t4\t\"0x00ff0980\"\t-1\t1\t1\n", text);
    }

    [Fact]
    public void CopyIn_TheDataFollowsTheQuery_AndTheWaitComesAfterCopyDone()
    {
        var copy = new Query("COPY t FROM STDIN");
        var withTab = new CopyData(Encoding.UTF8.GetBytes("1\tone\n"));
        var noTab = new CopyData(Encoding.UTF8.GetBytes("2,\"two\"\n"));
        var latin1 = new CopyData(new byte[] { (byte)'3', (byte)',', 0xE9, (byte)'\n' });
        (bool, byte[])[] turns =
        [
            .. Login,
            (true, Conversation.Bytes(copy)),
            (false, Conversation.Bytes(new CopyInResponse(CopyFormat.Text, [0, 0]))),
            (true, Conversation.Bytes(withTab, noTab, latin1, new CopyDone())),
            (false, Conversation.Bytes(new CommandComplete("COPY 3"), Idle)),
            (true, Conversation.Bytes(new Query("COPY t FROM STDIN"))),
            (false, Conversation.Bytes(new CopyInResponse(CopyFormat.Text, [0, 0]))),
            (true, Conversation.Bytes(new CopyFail("stop\there"))),
            (false, Conversation.Bytes(Error("57014", "COPY from stdin failed"), Idle)),
        ];

        using var directory = new TempDirectory();
        string text = Script(directory, turns);

        IReadOnlyList<ScriptStep> steps = ScriptParser.Parse(text, "connection-1.pgproto");
        Assert.Equal(["send", "send", "send", "send", "send", "read", "send", "send", "read"], steps.Select(Kind));
        Assert.Equal(
            [copy.ToArray(), withTab.ToArray(), noTab.ToArray(), latin1.ToArray(), new CopyDone().ToArray(), copy.ToArray(), new CopyFail("stop\there").ToArray()],
            Sent(steps));
        Assert.Contains("'d'\t\"2,\\\"two\\\"\\n\"\n", text);
        Assert.StartsWith("# status: complete", text.Split('\n')[1]);
    }

    [Fact]
    public void AGapInTheClientsStream_IsACommentThere_AndTheScriptIsMarkedIncomplete()
    {
        (bool, byte[])[] turns =
        [
            .. Login,
            .. Enumerable.Range(0, 6).SelectMany(i => new (bool, byte[])[]
            {
                (true, Conversation.Bytes(new Query($"SELECT {i} AS number_{i:D3}"))),
                (false, Conversation.Bytes(new CommandComplete("SELECT 1"), Idle)),
            }),
            (true, Conversation.Bytes(new Terminate())),
        ];
        List<Seg> segments = Segments(turns);
        int lost = segments.FindIndex(s => s.Payload.AsSpan().IndexOf("SELECT 2"u8) >= 0);
        segments.RemoveAt(lost);

        using var directory = new TempDirectory();
        string text = Script(directory, segments);

        string[] lines = text.Split('\n');
        Assert.StartsWith("# status: INCOMPLETE", lines[1]);
        Assert.Equal(lines[1].Length, "# status: complete: every message the client sent after its startup was captured and is below".Length);
        Assert.Contains(lines, l => l.StartsWith("# gap: ", StringComparison.Ordinal) && l.Contains("client's", StringComparison.Ordinal));
        IReadOnlyList<ScriptStep> steps = ScriptParser.Parse(text, "connection-1.pgproto");
        List<string> queries = steps.OfType<SendStep>().Select(s => s.Message).OfType<Query>().Select(q => q.QueryString).ToList();
        Assert.Contains("SELECT 1 AS number_001", queries);
        Assert.DoesNotContain("SELECT 2 AS number_002", queries);
        Assert.Contains("SELECT 5 AS number_005", queries);
    }

    [Fact]
    public void AGapAfterTheFileWasStarted_RewritesItsStatusLineInPlace()
    {
        // More than a batch of lines before the gap: the header is in the file by then.
        string padding = new('x', 600);
        (bool, byte[])[] turns =
        [
            .. Login,
            .. Enumerable.Range(0, 150).SelectMany(i => new (bool, byte[])[]
            {
                (true, Conversation.Bytes(new Query($"SELECT {i:D3}, '{padding}'"))),
                (false, Conversation.Bytes(new CommandComplete("SELECT 1"), Idle)),
            }),
        ];
        Assert.True(150 * padding.Length > CaptureScripts.BatchChars);
        List<Seg> segments = Segments(turns);
        segments.RemoveAt(segments.FindIndex(s => s.Payload.AsSpan().IndexOf("SELECT 140"u8) >= 0));

        using var directory = new TempDirectory();
        string text = Script(directory, segments);

        string[] lines = text.Split('\n');
        Assert.StartsWith("# status: INCOMPLETE", lines[1]);
        Assert.StartsWith("# replay: ", lines[2]);
        List<string> queries = ScriptParser.Parse(text, "x").OfType<SendStep>().Select(s => ((Query)s.Message).QueryString[..10]).ToList();
        Assert.Equal([.. Enumerable.Range(0, 150).Where(i => i != 140).Select(i => $"SELECT {i:D3}")], queries);
    }

    [Fact]
    public void AQueryThatIsNotUtf8_IsItsRawBytes()
    {
        byte[] body = [.. "SELECT 'caf"u8, 0xE9, .. "'"u8, 0];
        byte[] query = new byte[5 + body.Length];
        query[0] = (byte)'Q';
        BinaryPrimitives.WriteInt32BigEndian(query.AsSpan(1), body.Length + 4);
        body.CopyTo(query, 5);
        (bool, byte[])[] turns = [.. Login, (true, query), (false, Conversation.Bytes(new CommandComplete("SELECT 1"), Idle))];

        using var directory = new TempDirectory();
        string text = Script(directory, turns);

        IReadOnlyList<ScriptStep> steps = ScriptParser.Parse(text, "connection-1.pgproto");
        Assert.Equal([query], Sent(steps));
        Assert.Contains("# a Query with a string that is not UTF-8: sent as its raw bytes", text);
    }

    [Fact]
    public void AnEncryptedConnection_SaysSo_AndIsIncomplete()
    {
        (bool, byte[])[] turns =
        [
            (true, Conversation.Bytes(new SSLRequest())),
            (false, "S"u8.ToArray()),
            (true, [0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]),
        ];

        using var directory = new TempDirectory();
        string text = Script(directory, turns);

        Assert.StartsWith("# status: INCOMPLETE", text.Split('\n')[1]);
        Assert.Contains("# SSLRequest: not replayed", text);
        Assert.Contains("# encrypted: the server accepted SSL", text);
        Assert.Empty(ScriptParser.Parse(text, "connection-1.pgproto"));
    }

    [Fact]
    public void FunctionCall_IsAnFLine_AndTheClientWaitsForItsReadyForQuery()
    {
        var call = new FunctionCall(1598, [1], [new byte[] { 0, 0, 0, 3 }, Encoding.ASCII.GetBytes("ab\tc")], 0);
        var plain = new FunctionCall(1598, [0], [Encoding.ASCII.GetBytes("3")], 1);
        (bool, byte[])[] turns =
        [
            .. Login,
            (true, Conversation.Bytes(call)),
            (false, Conversation.Bytes(new FunctionCallResponse(Encoding.ASCII.GetBytes("x")), Idle)),
            (true, Conversation.Bytes(plain)),
            (false, Conversation.Bytes(new FunctionCallResponse(null), Idle)),
        ];

        using var directory = new TempDirectory();
        string text = Script(directory, turns);

        IReadOnlyList<ScriptStep> steps = ScriptParser.Parse(text, "x");
        Assert.Equal(["send", "read", "send", "read"], steps.Select(Kind));
        Assert.Equal([call.ToArray(), plain.ToArray()], Sent(steps));
        Assert.Contains("'F'\t1598\t1\t1\t2\t4\t\"0x00000003\"\t4\t\"0x61620963\"\t0\n", text);
        Assert.Contains("'F'\t1598\t1\t0\t1\t1\t\"3\"\t1\n", text);
    }

    [Fact]
    public void ACancelRequestConnection_IsAnEmptyScriptThatSaysSo()
    {
        (bool, byte[])[] turns = [(true, Conversation.Bytes(new CancelRequest(4242, new byte[] { 0, 0, 0, 7 })))];

        using var directory = new TempDirectory();
        string text = Script(directory, turns);

        Assert.StartsWith("# status: complete", text.Split('\n')[1]);
        Assert.Contains("# CancelRequest: a connection of its own that cancels another's query; not replayed", text);
        Assert.Empty(ScriptParser.Parse(text, "x"));
    }

    [Fact]
    public void TheHelp_DescribesToScript()
    {
        CliResult result = CliRunner.Run("capture", "--help");

        Assert.Contains("--to-script <DIR>", result.Stdout);
        Assert.Contains("Scripts: --to-script DIR writes", result.Stdout);
    }

    [Fact]
    public void ADirectoryWithScriptsAlready_IsRefused_OtherFilesAreNot()
    {
        using var directory = new TempDirectory();
        directory.Write("notes.txt", "x"u8.ToArray());
        Assert.NotNull(CaptureScripts.Open(directory.Path, out string? error));
        Assert.Null(error);

        directory.Write("connection-1.pgproto", "# old"u8.ToArray());
        Assert.Null(CaptureScripts.Open(directory.Path, out error));
        Assert.Contains("already holds connection-*.pgproto", error);

        string created = Path.Combine(directory.Path, "new");
        Assert.NotNull(CaptureScripts.Open(created, out _));
        Assert.True(Directory.Exists(created));

        CliResult result = CliRunner.Run("capture", "--to-script", directory.Path, Path.Combine(directory.Path, "notes.txt"));
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("already holds connection-*.pgproto", result.Stderr);
    }

    [Fact]
    public void ADirectoryThatCannotHoldTheScripts_IsAUsageErrorSayingWhy_BeforeTheCaptureIsRead()
    {
        using var directory = new TempDirectory();
        string capture = directory.Write("empty.pcap", [0xD4, 0xC3, 0xB2, 0xA1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 1, 0, 0, 0]);
        string file = directory.Write("a-file", "x"u8.ToArray());
        Directory.CreateDirectory(Path.Combine(directory.Path, "taken", "connection-2.pgproto"));

        (string Directory, string Message)[] refused =
        [
            ("", "--to-script needs the name of a directory, not an empty one"),
            ("  ", "--to-script needs the name of a directory, not an empty one"),
            (Path.Combine(directory.Path, "missing", "scripts"), $"--to-script: the directory '{Path.Combine(directory.Path, "missing")}' does not exist (DIR is created only in a directory that exists)"),
            (Path.Combine(file, "scripts"), $"--to-script: '{file}' is a file, not a directory to create 'scripts' in"),
            (file, $"--to-script: '{file}' is a file, not a directory"),
            (Path.Combine(directory.Path, "taken"), $"--to-script: '{Path.Combine(directory.Path, "taken")}' holds a directory named connection-2.pgproto, where a script would be written: give an empty or new directory"),
        ];
        foreach ((string scripts, string message) in refused)
        {
            CliResult result = CliRunner.Run("capture", "--to-script", scripts, capture);

            Assert.Equal(PgSpecCommandLine.ExitUsage, result.ExitCode);
            Assert.Equal("pgspec capture: " + message + "\n", result.Stderr);
            Assert.Empty(result.Stdout);
        }

        Assert.False(Directory.Exists(Path.Combine(directory.Path, "missing")));

        // The capture, empty but valid, gives no script at all: the refusals came before it was read.
        CliResult fine = CliRunner.Run("capture", "--to-script", Path.Combine(directory.Path, "scripts"), capture);
        Assert.True(fine.ExitCode == 0, fine.ToString());
        Assert.Contains("0 scripts written", fine.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void ManyConnections_EachHaveTheirScript()
    {
        using var directory = new TempDirectory();
        CaptureScripts scripts = CaptureScripts.Open(directory.Path, out _)!;
        var decoder = new CaptureDecoder([5432], server: null, scripts);
        var clients = Enumerable.Range(0, 50).Select(i => new IPEndPoint(Client.Address, 41000 + i)).ToList();
        var wires = clients.Select(c => new Wire(c)).ToList();
        for (int turn = 0; turn < 3; turn++)
        {
            for (int i = 0; i < clients.Count; i++)
            {
                (bool, byte[])[] turns = turn switch
                {
                    0 => [.. Login],
                    1 => [(true, Conversation.Bytes(new Query($"SELECT {i}"))), (false, Conversation.Bytes(new CommandComplete("SELECT 1"), Idle))],
                    _ => [(true, Conversation.Bytes(new Terminate()))],
                };
                foreach (Seg segment in wires[i].Segments(turns, handshake: turn == 0, end: turn == 2))
                {
                    decoder.Add(segment.ToTcp());
                }
            }
        }

        decoder.Finish(Start.AddMinutes(1));
        scripts.Complete();

        Assert.Equal(50, scripts.Written);
        for (int i = 0; i < clients.Count; i++)
        {
            string text = File.ReadAllText(Path.Combine(directory.Path, $"connection-{i + 1}.pgproto"));
            Assert.Contains($"10.0.0.7:{41000 + i} -> 10.0.0.1:5432", text.Split('\n')[0]);
            IReadOnlyList<ScriptStep> steps = ScriptParser.Parse(text, "x");
            Assert.Equal([new Query($"SELECT {i}").ToArray(), new Terminate().ToArray()], Sent(steps));
        }
    }

    internal static ErrorResponse Error(string code, string message) => new([
        new ErrorResponse.Field((byte)'S', "ERROR"), new ErrorResponse.Field((byte)'C', code), new ErrorResponse.Field((byte)'M', message)]);

    private static string Kind(ScriptStep step) => step is ReadStep ? "read" : "send";

    /// <summary>The bytes each sending step sends.</summary>
    private static List<byte[]> Sent(IReadOnlyList<ScriptStep> steps) => steps
        .Select(s => s switch { SendStep send => send.Message.ToArray(), RawStep raw => raw.Bytes, _ => null })
        .OfType<byte[]>()
        .ToList();

    private static string Script(TempDirectory directory, (bool, byte[])[] turns) => Script(directory, Segments(turns));

    private static string Script(TempDirectory directory, List<Seg> segments)
    {
        CaptureScripts scripts = CaptureScripts.Open(directory.Path, out string? error) ?? throw new InvalidOperationException(error);
        var decoder = new CaptureDecoder([5432], server: null, scripts);
        foreach (Seg segment in segments)
        {
            decoder.Add(segment.ToTcp());
        }

        decoder.Finish(segments[^1].Time);
        scripts.Complete();
        Assert.Equal(1, scripts.Written);
        return File.ReadAllText(Path.Combine(directory.Path, "connection-1.pgproto"));
    }

    private static List<Seg> Segments((bool, byte[])[] turns) => new Wire(Client).Segments(turns, handshake: true, end: true);

    /// <summary>One connection's segments: a handshake, each turn cut into segments of 20 bytes, FINs.</summary>
    private sealed class Wire(IPEndPoint client)
    {
        private uint _client = 1000;
        private uint _server = 900_000;
        private DateTime _time = Start;

        public List<Seg> Segments((bool ToServer, byte[] Bytes)[] turns, bool handshake, bool end)
        {
            var segments = new List<Seg>();
            if (handshake)
            {
                segments.Add(Segment(true, TcpFlags.Syn, []));
                _client++;
                segments.Add(Segment(false, TcpFlags.Syn | TcpFlags.Ack, []));
                _server++;
            }

            foreach ((bool toServer, byte[] bytes) in turns)
            {
                for (int offset = 0; offset < bytes.Length; offset += 20)
                {
                    byte[] payload = bytes[offset..Math.Min(bytes.Length, offset + 20)];
                    segments.Add(Segment(toServer, TcpFlags.Ack | TcpFlags.Psh, payload));
                    if (toServer)
                    {
                        _client += (uint)payload.Length;
                    }
                    else
                    {
                        _server += (uint)payload.Length;
                    }
                }
            }

            if (end)
            {
                segments.Add(Segment(true, TcpFlags.Fin | TcpFlags.Ack, []));
                _client++;
                segments.Add(Segment(false, TcpFlags.Fin | TcpFlags.Ack, []));
                _server++;
            }

            return segments;
        }

        private Seg Segment(bool toServer, TcpFlags flags, byte[] payload)
        {
            _time = _time.AddMilliseconds(1);
            return new Seg(_time, toServer ? client : Server, toServer ? Server : client, toServer ? _client : _server, flags, payload, toServer ? _server : _client);
        }
    }

    /// <summary>A captured segment, kept (a <see cref="TcpSegment"/> lives only during a call).</summary>
    private sealed record Seg(DateTime Time, IPEndPoint Source, IPEndPoint Destination, uint Sequence, TcpFlags Flags, byte[] Payload, uint Acknowledgment)
    {
        public TcpSegment ToTcp() => new(Time, Source, Destination, Sequence, Flags, Payload, truncated: false, acknowledgment: Acknowledgment);
    }
}

/// <summary>
/// The capture-replay loop against real servers: a psql session and a session of extended
/// protocol messages are captured with tcpdump, turned into scripts, and replayed on a second
/// fresh PostgreSQL 15, which ends with the same tables and rows, and the same errors.
/// </summary>
public sealed class CaptureScriptsReplayTests
{
    private const string PsqlSession = """
        CREATE TABLE items (id int PRIMARY KEY, name text, note text);
        INSERT INTO items VALUES (1, 'one', E'tab\there'), (2, 'two "quoted" \ back', E'line\nbreak');
        \copy items FROM STDIN
        3	three	from copy
        4	four	\N
        \.
        SELECT count(*) FROM items;
        INSERT INTO items VALUES (1, 'duplicate', NULL);
        SELECT * FROM missing_table;
        UPDATE items SET note = 'café' WHERE id = 3;

        """;

    private const string ExtendedSession = """
        'P'	"ins"	"INSERT INTO ext VALUES ($1, $2, $3)"	3	23	17	25
        'B'	""	"ins"	3	1	1	0	3	4	"7"	3	"0x00ff10"	5	"seven"	0
        'E'	""	0
        'S'
        'Y'
        'B'	"p"	"ins"	3	1	1	0	3	4	"8"	0	-1	0
        'D'	'P'	"p"
        'E'	"p"	0
        'H'
        'z'
        'z'
        'S'
        'Y'
        'B'	""	"ins"	1	1	3	2	"9"	0	1	"x"	0
        'E'	""	0
        'S'
        'Y'
        'X'

        """;

    [Fact]
    public async Task ScriptsFromACapture_ReplayOnAnotherServer_ToTheSameTablesAndErrors()
    {
        var provider = new LocalPgServerProvider();
        Task<PgServer> startSource = provider.StartAsync(new PgServerOptions { MajorVersion = 15 }, CancellationToken.None);
        Task<PgServer> startTarget = provider.StartAsync(new PgServerOptions { MajorVersion = 15 }, CancellationToken.None);
        await using PgServer source = await startSource;
        await using PgServer target = await startTarget;
        PgBinaries binaries = await PgBinaries.FindLocalAsync(15, CancellationToken.None) ?? throw new InvalidOperationException("the PostgreSQL 15 binaries that started the servers are gone");
        string psql = Path.Combine(binaries.BinDirectory, "psql");
        using var directory = new TempDirectory();
        string capture = Path.Combine(directory.Path, "session.pcap");
        string scripts = Path.Combine(directory.Path, "scripts");
        string original;

        using (Tcpdump.Start(["-i", "lo", "--immediate-mode", "-U", "-B", "32768", "-w", capture, $"tcp port {source.Port}"]))
        {
            RunPsql(psql, source, ["-f", directory.Write("session.sql", Encoding.UTF8.GetBytes(PsqlSession))]);
            RunPsql(psql, source, ["-c", "CREATE TABLE ext (id int4, data bytea, label text)"]);
            CliResult extended = CliRunner.Run(["script", .. Connect(source), "-f", directory.Write("extended.pgproto", Encoding.UTF8.GetBytes(ExtendedSession))]);
            Assert.True(extended.ExitCode == 0, extended.ToString());
            original = extended.Stdout;
            Tcpdump.WaitForEnds(capture, TimeSpan.FromSeconds(30));
        }

        CliResult captured = CliRunner.Run("capture", "--port", source.Port.ToString(CultureInfo.InvariantCulture), "--to-script", scripts, capture);
        Assert.True(captured.ExitCode == 0, captured.ToString());
        Assert.Equal("", captured.Stdout);
        Assert.Contains("3 scripts written", captured.Stderr);
        Assert.Contains("(0 incomplete)", captured.Stderr);

        // Each script replays in the order the connections were made.
        var outputs = new List<string>();
        for (int id = 1; id <= 3; id++)
        {
            string file = Path.Combine(scripts, $"connection-{id}.pgproto");
            string text = File.ReadAllText(file);
            Assert.StartsWith($"# connection {id}: 127.0.0.1:", text);
            Assert.Contains($" -> 127.0.0.1:{source.Port}, captured ", text.Split('\n')[0]);
            CliResult replay = CliRunner.Run(["script", .. Connect(target), "-f", file]);
            Assert.True(replay.ExitCode == 0, $"{file}:\n{text}\n{replay}");
            outputs.Add(replay.Stdout);
        }

        // The psql session: COPY with TABs goes as raw bytes; the errors happen again.
        string psqlScript = File.ReadAllText(Path.Combine(scripts, "connection-1.pgproto"));
        Assert.Contains("'!'\t\"64", psqlScript);
        Assert.Contains("<= BE ErrorResponse(S ERROR V ERROR C 23505 M duplicate key value violates unique constraint \"items_pkey\"", outputs[0]);
        Assert.Contains("<= BE ErrorResponse(S ERROR V ERROR C 42P01 M relation \"missing_table\" does not exist", outputs[0]);
        Assert.Contains("<= BE CopyInResponse", outputs[0]);
        Assert.Contains("<= BE CommandComplete(COPY 2)", outputs[0]);

        // The extended session: the named statement, binary parameters, a Flush and its answers (the
        // server sent three before the client's Sync: BindComplete, NoData, CommandComplete), and
        // the error of the third Bind.
        string extendedScript = File.ReadAllText(Path.Combine(scripts, "connection-3.pgproto"));
        Assert.Contains("'B'\t\"\"\t\"ins\"\t3\t1\t1\t0\t3\t4\t\"0x00000007\"\t3\t\"0x00ff10\"\t5\t\"seven\"\t0\n", extendedScript);
        Assert.Contains("'P'\t\"ins\"\t\"INSERT INTO ext VALUES ($1, $2, $3)\"\t3\t23\t17\t25\n", extendedScript);
        Assert.True(extendedScript.Contains("'H'\n'z'\n'z'\n'z'\n'S'\n'Y'\n", StringComparison.Ordinal), extendedScript);
        Assert.Contains("<= BE ErrorResponse(S ERROR V ERROR C 08P01 M insufficient data left in message", outputs[2]);
        Assert.Equal(Received(original), Received(outputs[2]));

        string[] checks =
        [
            "SELECT id, name, coalesce(note, '<null>') FROM items ORDER BY id",
            "SELECT id, encode(data, 'hex'), coalesce(label, '<null>') FROM ext ORDER BY id",
        ];
        foreach (string check in checks)
        {
            string expected = RunPsql(psql, source, ["-At", "-c", check]);
            Assert.Equal(expected, RunPsql(psql, target, ["-At", "-c", check]));
        }

        Assert.Equal("1|one|tab\there\n2|two \"quoted\" \\ back|line\nbreak\n3|three|café\n4|four|<null>\n", RunPsql(psql, target, ["-At", "-c", checks[0]]));
        Assert.Equal("7|00ff10|seven\n8||<null>\n", RunPsql(psql, target, ["-At", "-c", checks[1]]));
    }

    /// <summary>What the server sent, as pgproto prints it.</summary>
    private static string[] Received(string output) => [.. output.Split('\n').Where(l => l.StartsWith("<= BE", StringComparison.Ordinal))];

    private static string[] Connect(PgServer server)
        => ["-h", server.Host, "-p", server.Port.ToString(CultureInfo.InvariantCulture), "-u", server.Role(PgAuthMethod.Trust).Name, "-d", "postgres", "--sslmode", "disable"];

    private static string RunPsql(string psql, PgServer server, string[] arguments)
    {
        var environment = new Dictionary<string, string> { ["PGSSLMODE"] = "disable", ["PGGSSENCMODE"] = "disable", ["PGCONNECT_TIMEOUT"] = "30" };
        ProcessOutput run = ExternalProcess.Run(
            psql,
            ["-X", "-q", "-h", server.Host, "-p", server.Port.ToString(CultureInfo.InvariantCulture), "-U", server.Role(PgAuthMethod.Trust).Name, "-d", "postgres", .. arguments],
            environment: environment);
        Assert.True(run.ExitCode == 0, run.ToString());
        return run.Stdout;
    }
}
