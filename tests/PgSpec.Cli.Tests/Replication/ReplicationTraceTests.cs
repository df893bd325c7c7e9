using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace PgSpec.Cli.Tests.Replication;

/// <summary>
/// Replication streams of PostgreSQL's own clients, decoded by <c>pgspec proxy --trace-replication</c>,
/// by <c>pgspec capture</c> from the packets of the same connections, and by <c>pgspec decode</c> from
/// the recorded bytes of a session: every CopyData of a stream gets its replication message, every
/// XLogData of a pgoutput stream its pgoutput message, in order and with their values; physical
/// replication's WAL and a test_decoding slot's output are not read as pgoutput.
/// </summary>
[Collection(ReplicationSessionsCollection.Name)]
public class ReplicationTraceTests(ReplicationSessions sessions)
{
    private static readonly Regex s_replicationLine = new(@"^\t([FB])\t(\d+)\t(\w+)(\t .*)?$");
    private static readonly Regex s_pgoutputLine = new(@"^\t\tB\t(\d+)\t(\w+)(\t .*)?$");

    [Fact]
    public void ProxyTrace_PgoutputVersion1_EveryCopyDataDecoded_InOrder_WithTheirValues()
    {
        TracedConnection connection = Session(sessions.Proxy15Trace, ReplicationSessions.Pgoutput1);
        Assert.Contains(connection.Frontend, m => m.Name == "Query" && m.Line.Contains("CREATE_REPLICATION_SLOT", StringComparison.Ordinal));
        TracedMessage start = Assert.Single(connection.Backend, m => m.Name == "CopyBothResponse");
        Assert.Equal(["\t# logical replication of slot \"s1\" from 0/0 with pgoutput: XLogData carries pgoutput messages (proto_version 1, streaming off)"], start.Below);
        CheckEveryCopyData(connection, pgoutput: true);

        List<string> changes = TraceLines.PgOutput(connection);
        Assert.Equal(
            ["Begin", "Relation", "Insert", "Insert", "Insert", "Commit", "Begin", "Update", "Delete", "Commit", "LogicalMessage"],
            changes.Select(TraceLines.NameBelow));
        string relation = Regex.Match(changes[1], @"\tRelation\t (\d+) ""public"" ""repl"" d 2 1 ""id"" 23 -1 0 ""v"" 25 -1$").Groups[1].Value;
        Assert.NotEmpty(relation);
        Assert.EndsWith($"\tInsert\t {relation} N 2 t 1 '1' t 3 'one'", changes[2], StringComparison.Ordinal);
        Assert.EndsWith($"\tInsert\t {relation} N 2 t 1 '2' t 3 'two'", changes[3], StringComparison.Ordinal);
        Assert.EndsWith($"\tInsert\t {relation} N 2 t 1 '3' t 5 'three'", changes[4], StringComparison.Ordinal);
        Assert.EndsWith($"\tUpdate\t {relation} N 2 t 1 '2' t 3 'TWO'", changes[7], StringComparison.Ordinal);
        Assert.EndsWith($"\tDelete\t {relation} K 2 t 1 '3' n", changes[8], StringComparison.Ordinal);
        Assert.Matches(@"\tLogicalMessage\t \\x00 \d+ ""pgspec"" 7 'done-v1'$", changes[10]);

        // The transactions' LSNs agree: Begin's final LSN is its Commit's LSN.
        Assert.Equal(Fields(changes[0])[0], Fields(changes[5])[1]);
        Assert.Equal(Fields(changes[6])[0], Fields(changes[9])[1]);
    }

    [Fact]
    public void ProxyTrace_PgoutputVersion2_StreamedTransaction_FollowsTheBlocks_ThePluginFromTheOptions()
    {
        TracedConnection connection = Session(sessions.Proxy15Trace, ReplicationSessions.Pgoutput2);
        Assert.DoesNotContain(connection.Frontend, m => m.Line.Contains("CREATE_REPLICATION_SLOT", StringComparison.Ordinal));
        Assert.Equal(
            ["\t# logical replication of slot \"s2\" from 0/0 (plugin not seen; pgoutput's options): XLogData carries pgoutput messages (proto_version 2, streaming on)"],
            Assert.Single(connection.Backend, m => m.Name == "CopyBothResponse").Below);
        CheckEveryCopyData(connection, pgoutput: true);

        List<string> changes = TraceLines.PgOutput(connection);
        List<string> names = [.. changes.Select(TraceLines.NameBelow)];
        Assert.True(names.Count(n => n == "StreamStart") >= 2, string.Join(", ", names.Distinct()));
        Assert.Equal(names.Count(n => n == "StreamStart"), names.Count(n => n == "StreamStop"));
        Assert.Single(names, n => n == "StreamCommit");
        Assert.Equal(2000, names.Count(n => n == "Insert"));
        Assert.DoesNotContain("Begin", names);

        // Inside a block, every message that may carry the streamed transaction's xid carries it;
        // Stream Commit names the same xid.
        bool inBlock = false;
        var xids = new HashSet<string>();
        foreach (string line in changes)
        {
            switch (TraceLines.NameBelow(line))
            {
                case "StreamStart":
                    inBlock = true;
                    xids.Add(Fields(line)[0]);
                    break;
                case "StreamStop":
                    inBlock = false;
                    break;
                case "Insert":
                    Assert.True(inBlock, line);
                    Assert.Matches(@"\tInsert\t (\d+) \d+ N 2 t \d+ '\d+' t 200 'x{200}'$", line);
                    xids.Add(Fields(line)[0]);
                    break;
                case "StreamCommit":
                    xids.Add(Fields(line)[0]);
                    break;
            }
        }

        Assert.Single(xids);
    }

    [Fact]
    public void ProxyTrace_PgoutputVersion4_ParallelStreaming_StreamAbortHasItsLsnAndTime_BinaryValues()
    {
        TracedConnection connection = Session(sessions.Proxy18Trace, ReplicationSessions.Pgoutput4);
        Assert.EndsWith("XLogData carries pgoutput messages (proto_version 4, streaming parallel)", Assert.Single(Assert.Single(connection.Backend, m => m.Name == "CopyBothResponse").Below), StringComparison.Ordinal);
        CheckEveryCopyData(connection, pgoutput: true);

        List<string> changes = TraceLines.PgOutput(connection);
        List<string> names = [.. changes.Select(TraceLines.NameBelow)];
        Assert.Single(names, n => n == "StreamCommit");
        string abort = Assert.Single(changes, line => TraceLines.NameBelow(line) == "StreamAbort");
        Assert.Equal(4, Fields(abort).Length);
        Assert.True(long.Parse(Fields(abort)[2], CultureInfo.InvariantCulture) > 0, abort);
        Assert.Contains(changes, line => Regex.IsMatch(line, @"\tInsert\t \d+ \d+ N 2 b 4 '\\x00\\x00[^']*' b 200 'y{200}'$"));
        Assert.Equal("done-v4", Regex.Match(changes.Last(), "'(done-v4)'$").Groups[1].Value);
    }

    [Fact]
    public void ProxyTrace_Physical_XLogDataAndKeepalives_TheWalNotDecoded()
    {
        TracedConnection connection = Session(sessions.Proxy15Trace, ReplicationSessions.Physical);
        Assert.Matches(@"^\t# physical replication from [0-9A-F]+/[0-9A-F]+ on timeline 1: XLogData carries WAL, not decoded further$", Assert.Single(Assert.Single(connection.Backend, m => m.Name == "CopyBothResponse").Below));
        CheckEveryCopyData(connection, pgoutput: false);
        List<string> below = [.. connection.Backend.Where(m => m.Name == "CopyData").Select(m => TraceLines.NameBelow(Assert.Single(m.Below)))];
        Assert.Contains("XLogData", below);
        Assert.Contains("PrimaryKeepalive", below);
        Assert.Empty(TraceLines.PgOutput(connection));

        // A keepalive asks for a reply (wal_sender_timeout was short), which pg_receivewal sends.
        Assert.Contains(connection.Backend.SelectMany(m => m.Below), line => Regex.IsMatch(line, @"\tPrimaryKeepalive\t \d+ \d+ 1$"));
        Assert.Contains(connection.Frontend.SelectMany(m => m.Below), line => line.StartsWith("\tF\t34\tStandbyStatusUpdate\t ", StringComparison.Ordinal));
    }

    [Fact]
    public void ProxyTrace_TestDecodingSlot_IsNotReadAsPgoutput()
    {
        TracedConnection connection = Session(sessions.Proxy15Trace, ReplicationSessions.TestDecoding);
        Assert.Equal(
            ["\t# logical replication of slot \"td\" from 0/0 with plugin test_decoding: XLogData carries the plugin's output, not decoded"],
            Assert.Single(connection.Backend, m => m.Name == "CopyBothResponse").Below);
        CheckEveryCopyData(connection, pgoutput: false);
        Assert.Empty(TraceLines.PgOutput(connection));
        TracedMessage text = Assert.Single(connection.Backend, m => m.Name == "CopyData" && m.Line.Contains("decoded as text", StringComparison.Ordinal));
        Assert.Equal("XLogData", TraceLines.NameBelow(Assert.Single(text.Below)));
    }

    [Theory]
    [InlineData(15)]
    [InlineData(18)]
    public void Capture_OfTheSessions_DecodesEveryStreamAsTheProxyTracedIt(int major)
    {
        int port = major == 15 ? sessions.Proxy15Port : sessions.Proxy18Port;
        CliResult result = CliRunner.Run("capture", "--port", port.ToString(CultureInfo.InvariantCulture), "--connection-ids", "--replication", sessions.CaptureFile);
        Assert.True(result.ExitCode == 0, result.Stderr);
        List<TracedConnection> captured = TraceLines.Connections(result.Stdout);
        List<TracedConnection> traced = TraceLines.Connections(major == 15 ? sessions.Proxy15Trace : sessions.Proxy18Trace);
        Assert.Equal(traced.Count, captured.Count);
        string[] streams = major == 15
            ? [ReplicationSessions.Pgoutput1, ReplicationSessions.Pgoutput2, ReplicationSessions.Physical, ReplicationSessions.TestDecoding]
            : [ReplicationSessions.Pgoutput4];
        foreach (string application in streams)
        {
            TracedConnection proxy = Assert.Single(traced, c => c.Application == application);
            TracedConnection capture = Assert.Single(captured, c => c.Application == application);

            // Each direction in its order (the two directions' lines interleave as each saw them whole).
            Assert.Equal(Flatten(proxy.Frontend), Flatten(capture.Frontend));
            Assert.Equal(Flatten(proxy.Backend), Flatten(capture.Backend));
            Assert.Contains(capture.Backend, m => m.Name == "CopyData" && m.Below.Count > 0);
        }

        // Without --replication, the same lines without those below them: libpq's lines as they were.
        CliResult plain = CliRunner.Run("capture", "--port", port.ToString(CultureInfo.InvariantCulture), "--connection-ids", sessions.CaptureFile);
        Assert.Equal(
            result.Lines.Where(line => !line.Split('\t', 2)[1].StartsWith('\t')),
            plain.Lines);
    }

    [Fact]
    public void CaptureJson_CarriesTheDecodedMessages_WithEveryField()
    {
        CliResult result = CliRunner.Run("capture", "--port", sessions.Proxy15Port.ToString(CultureInfo.InvariantCulture), "--format", "json", sessions.CaptureFile);
        Assert.True(result.ExitCode == 0, result.Stderr);
        List<JsonElement> objects = [.. result.Lines.Select(line => JsonDocument.Parse(line).RootElement)];
        long connection = objects.Single(o => o.TryGetProperty("name", out JsonElement name) && name.GetString() == "StartupMessage" && o.GetRawText().Contains(ReplicationSessions.Pgoutput1 + "\"", StringComparison.Ordinal)).GetProperty("connection").GetInt64();
        List<JsonElement> session = [.. objects.Where(o => o.GetProperty("connection").GetInt64() == connection && o.TryGetProperty("name", out _))];

        JsonElement stream = session.Single(o => o.GetProperty("name").GetString() == "CopyBothResponse").GetProperty("replicationStream");
        Assert.Equal("logical", stream.GetProperty("kind").GetString());
        Assert.Equal("s1", stream.GetProperty("slot").GetString());
        Assert.Equal("pgoutput", stream.GetProperty("plugin").GetString());
        Assert.Equal(1, stream.GetProperty("pgoutput").GetProperty("protoVersion").GetInt32());

        List<JsonElement> copies = [.. session.Where(o => o.GetProperty("name").GetString() == "CopyData")];
        Assert.All(copies, copy => Assert.True(copy.TryGetProperty("replication", out JsonElement r) && r.TryGetProperty("fields", out _), copy.GetRawText()));
        List<JsonElement> pgoutput = [.. copies.Where(c => c.TryGetProperty("pgoutput", out _)).Select(c => c.GetProperty("pgoutput"))];
        Assert.Equal(copies.Count(c => c.GetProperty("replication").GetProperty("name").GetString() == "XLogData"), pgoutput.Count);

        // XLogData's data is the pgoutput message's bytes; the values are the rows'.
        JsonElement firstWal = copies.First(c => c.TryGetProperty("pgoutput", out _));
        Assert.Equal("42", firstWal.GetProperty("replication").GetProperty("fields").GetProperty("data").GetProperty("hex").GetString()![..2]);
        JsonElement relation = pgoutput.Single(p => p.GetProperty("name").GetString() == "Relation").GetProperty("fields");
        Assert.Equal("repl", relation.GetProperty("relationName").GetString());
        Assert.Equal(["id", "v"], relation.GetProperty("columns").EnumerateArray().Select(c => c.GetProperty("name").GetString()));
        List<JsonElement> inserts = [.. pgoutput.Where(p => p.GetProperty("name").GetString() == "Insert").Select(p => p.GetProperty("fields"))];
        Assert.Equal(3, inserts.Count);
        Assert.All(inserts, insert => Assert.Equal(relation.GetProperty("relationOid").GetUInt32(), insert.GetProperty("relationOid").GetUInt32()));
        Assert.Equal(
            ["one", "two", "three"],
            inserts.Select(i => Encoding.UTF8.GetString(Convert.FromHexString(i.GetProperty("newTuple").GetProperty("columns")[1].GetProperty("value").GetProperty("hex").GetString()!))));
        JsonElement delete = pgoutput.Single(p => p.GetProperty("name").GetString() == "Delete").GetProperty("fields");
        Assert.Equal("Key", delete.GetProperty("oldTupleKind").GetString());
        Assert.Equal("Null", delete.GetProperty("oldTuple").GetProperty("columns")[1].GetProperty("kind").GetString());
        JsonElement status = session.First(o => o.GetProperty("direction").GetString() == "F" && o.GetProperty("name").GetString() == "CopyData").GetProperty("replication");
        Assert.Equal("StandbyStatusUpdate", status.GetProperty("name").GetString());
        Assert.True(status.GetProperty("fields").GetProperty("writtenLsn").GetInt64() >= 0);
    }

    [Fact]
    public void CaptureJson_StreamAbortOfParallelStreaming_HasItsLsnAndTime()
    {
        CliResult result = CliRunner.Run("capture", "--port", sessions.Proxy18Port.ToString(CultureInfo.InvariantCulture), "--format", "json", sessions.CaptureFile);
        Assert.True(result.ExitCode == 0, result.Stderr);
        JsonElement abort = result.Lines.Select(line => JsonDocument.Parse(line).RootElement)
            .Where(o => o.TryGetProperty("pgoutput", out JsonElement p) && p.GetProperty("name").GetString() == "StreamAbort")
            .Select(o => o.GetProperty("pgoutput").GetProperty("fields"))
            .Single();
        Assert.True(abort.GetProperty("abortLsn").GetInt64() > 0);
        Assert.True(abort.GetProperty("abortTime").GetInt64() > 0);
        Assert.Equal(abort.GetProperty("xid").GetInt32(), abort.GetProperty("subXid").GetInt32());
    }

    [Fact]
    public void Decode_RecordedBackendStream_WithItsPeer_DecodesPgoutput()
    {
        CliResult result = CliRunner.Run("decode", "--from", "backend", "--peer", sessions.RecordedFrontend, "--replication", sessions.RecordedBackend);
        Assert.True(result.ExitCode == 0, result.ToString());
        TracedConnection connection = Assert.Single(TraceLines.Connections(result.Stdout, ids: false));
        Assert.Equal(
            ["\t# logical replication of slot \"rec\" from 0/0 (plugin not seen; pgoutput's options): XLogData carries pgoutput messages (proto_version 1, streaming off)"],
            Assert.Single(connection.Backend, m => m.Name == "CopyBothResponse").Below);
        CheckEveryCopyData(connection, pgoutput: true, frontend: false);
        List<string> changes = TraceLines.PgOutput(connection);
        Assert.Equal(["Begin", "Relation", "Insert", "Insert", "Commit", "Begin", "Update", "Commit"], changes.Select(TraceLines.NameBelow));
        Assert.EndsWith(" N 2 t 3 '101' t 15 'one hundred one'", changes[2], StringComparison.Ordinal);
        Assert.EndsWith(" N 2 t 3 '102' n", changes[3], StringComparison.Ordinal);
        Assert.EndsWith(" N 2 t 3 '102' t 7 'changed'", changes[6], StringComparison.Ordinal);

        // The lines libpq prints are as without --replication.
        CliResult plain = CliRunner.Run("decode", "--from", "backend", "--peer", sessions.RecordedFrontend, sessions.RecordedBackend);
        Assert.Equal(plain.Lines, result.Lines.Where(line => !line.StartsWith('\t')));

        // Without the frontend's START_REPLICATION, the replication messages only.
        CliResult alone = CliRunner.Run("decode", "--from", "backend", "--replication", sessions.RecordedBackend);
        TracedConnection envelope = Assert.Single(TraceLines.Connections(alone.Stdout, ids: false));
        Assert.Equal(["\t# a replication stream whose START_REPLICATION was not seen: XLogData's data is not decoded"], Assert.Single(envelope.Backend, m => m.Name == "CopyBothResponse").Below);
        CheckEveryCopyData(envelope, pgoutput: false, frontend: false);
    }

    [Fact]
    public void Decode_RecordedFrontendStream_DecodesTheStatusUpdates()
    {
        CliResult result = CliRunner.Run("decode", "--from", "frontend", "--peer", sessions.RecordedBackend, "--replication", sessions.RecordedFrontend);
        Assert.True(result.ExitCode == 0, result.ToString());
        TracedConnection connection = Assert.Single(TraceLines.Connections(result.Stdout, ids: false));
        TracedMessage start = Assert.Single(connection.Frontend, m => m.Name == "Query" && m.Line.Contains("START_REPLICATION", StringComparison.Ordinal));
        Assert.Equal(["\t# logical replication of slot \"rec\" from 0/0 (plugin not seen; pgoutput's options): XLogData carries pgoutput messages (proto_version 1, streaming off)"], start.Below);
        List<TracedMessage> copies = [.. connection.Frontend.Where(m => m.Name == "CopyData")];
        Assert.NotEmpty(copies);
        Assert.All(copies, copy =>
        {
            Match status = s_replicationLine.Match(Assert.Single(copy.Below));
            Assert.Equal(("F", "StandbyStatusUpdate"), (status.Groups[1].Value, status.Groups[3].Value));
            Assert.Equal(copy.Length - 4, int.Parse(status.Groups[2].Value, CultureInfo.InvariantCulture));
        });
    }

    [Fact]
    public void DecodeJson_RecordedBackendStream_CarriesReplicationAndPgoutputObjects()
    {
        CliResult result = CliRunner.Run("decode", "--from", "backend", "--peer", sessions.RecordedFrontend, "--format", "json", sessions.RecordedBackend);
        Assert.True(result.ExitCode == 0, result.ToString());
        List<JsonElement> copies = [.. result.Lines.Select(line => JsonDocument.Parse(line).RootElement).Where(o => o.GetProperty("name").GetString() == "CopyData")];
        Assert.NotEmpty(copies);
        Assert.All(copies, copy => Assert.True(copy.TryGetProperty("replication", out _), copy.GetRawText()));
        List<JsonElement> inserts = [.. copies.Where(c => c.TryGetProperty("pgoutput", out JsonElement p) && p.GetProperty("name").GetString() == "Insert").Select(c => c.GetProperty("pgoutput").GetProperty("fields").GetProperty("newTuple").GetProperty("columns"))];
        Assert.Equal(2, inserts.Count);
        Assert.Equal("one hundred one", Encoding.UTF8.GetString(Convert.FromHexString(inserts[0][1].GetProperty("value").GetProperty("hex").GetString()!)));
        Assert.Equal("Null", inserts[1][1].GetProperty("kind").GetString());
        Assert.False(inserts[1][1].TryGetProperty("value", out _));
    }

    /// <summary>The connection of one session (by application_name).</summary>
    private static TracedConnection Session(string trace, string application)
        => Assert.Single(TraceLines.Connections(trace), c => c.Application == application);

    /// <summary>
    /// Every CopyData after the CopyBothResponse has its replication message below it (sized as its
    /// data), each XLogData of a pgoutput stream its pgoutput message (sized as XLogData's data), and
    /// nothing failed to decode.
    /// </summary>
    private static void CheckEveryCopyData(TracedConnection connection, bool pgoutput, bool frontend = true)
    {
        int start = connection.Backend.FindIndex(m => m.Name == "CopyBothResponse");
        Assert.True(start >= 0, "no CopyBothResponse");
        List<TracedMessage> copies = [.. connection.Backend.Skip(start).Where(m => m.Name == "CopyData")];
        Assert.NotEmpty(copies);
        foreach (TracedMessage copy in copies)
        {
            Assert.NotEmpty(copy.Below);
            Match replication = s_replicationLine.Match(copy.Below[0]);
            Assert.True(replication.Success, copy.Below[0]);
            Assert.Equal("B", replication.Groups[1].Value);
            int length = int.Parse(replication.Groups[2].Value, CultureInfo.InvariantCulture);
            Assert.Equal(copy.Length - 4, length);
            string name = replication.Groups[3].Value;
            Assert.Contains(name, new[] { "XLogData", "PrimaryKeepalive" });
            if (name == "XLogData" && pgoutput)
            {
                Assert.Equal(2, copy.Below.Count);
                Match inner = s_pgoutputLine.Match(copy.Below[1]);
                Assert.True(inner.Success, copy.Below[1]);
                Assert.Equal(length - 25, int.Parse(inner.Groups[1].Value, CultureInfo.InvariantCulture));
            }
            else
            {
                Assert.Single(copy.Below);
            }
        }

        if (frontend)
        {
            foreach (TracedMessage copy in connection.Frontend.Where(m => m.Name == "CopyData"))
            {
                Match replication = s_replicationLine.Match(Assert.Single(copy.Below));
                Assert.True(replication.Success, copy.Below[0]);
                Assert.Equal(("F", "StandbyStatusUpdate"), (replication.Groups[1].Value, replication.Groups[3].Value));
            }
        }
    }

    /// <summary>The fields of an indented message line, after its name.</summary>
    private static string[] Fields(string line) => line.Split('\t')[^1].Trim().Split(' ');

    private static List<string> Flatten(List<TracedMessage> messages) => [.. messages.SelectMany(m => (string[])[m.Line, .. m.Below])];
}
