using System.Text;
using System.Text.Json;
using PgSpec.Protocol;
using PgSpec.Protocol.PgOutput;
using PgSpec.Protocol.Replication;

namespace PgSpec.Cli.Tests.Replication;

/// <summary>
/// <c>pgspec decode</c> of replication streams made by the codec: malformed replication and pgoutput
/// payloads are reported in place (exit code 0: the protocol's own framing holds), a pgoutput message
/// that does not decode ends pgoutput for its stream, and options that are checked before anything runs.
/// </summary>
public class ReplicationDecodeTests
{
    private static readonly byte[] Frontend =
    [
        .. new Query("CREATE_REPLICATION_SLOT \"s\" TEMPORARY LOGICAL pgoutput").ToArray(),
        .. new Query("START_REPLICATION SLOT s LOGICAL 0/16B3748 (proto_version 2, publication_names 'p', streaming on)").ToArray(),
        .. new CopyData(new StandbyStatusUpdate(1, 2, 3, 4, 0).ToArray()).ToArray(),
        .. new CopyData(new byte[] { (byte)'h', 1, 2 }).ToArray(),
        .. new CopyDone().ToArray(),
        .. new Terminate().ToArray(),
    ];

    private static readonly byte[] Backend =
    [
        .. new CommandComplete("CREATE_REPLICATION_SLOT").ToArray(),
        .. new ReadyForQuery(TransactionStatus.Idle).ToArray(),
        .. new CopyBothResponse(CopyFormat.Binary, []).ToArray(),
        .. Copy(Wal(new StreamStart(700, 1).ToArray())),
        .. Copy(Wal(new Insert(700, 16385, new TupleData([new TupleData.Column(TupleValueKind.Text, "x"u8.ToArray())])).ToArray(new PgOutputContext(2, PgOutputStreaming.On) { InStreamedTransaction = true }))),
        .. Copy([(byte)'w', 1]),
        .. Copy(Wal([(byte)'E', 0])),
        .. Copy(Wal(new StreamStop().ToArray())),
        .. Copy(new PrimaryKeepalive(5, 6, 1).ToArray()),
        .. new CopyDone().ToArray(),
        .. new CommandComplete("START_REPLICATION").ToArray(),
        .. new ReadyForQuery(TransactionStatus.Idle).ToArray(),
        .. new CopyData(Wal(new StreamStop().ToArray())).ToArray(),
    ];

    [Fact]
    public void BackendStream_WithItsPeer_ReportsWhatDoesNotDecode_InPlace()
    {
        using var dir = new TempDirectory();
        CliResult result = CliRunner.Run("decode", "--from", "backend", "--peer", dir.Write("f.bin", Frontend), "--replication", dir.Write("b.bin", Backend));
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(
            [
                "B\t28\tCommandComplete\t \"CREATE_REPLICATION_SLOT\"",
                "B\t5\tReadyForQuery\t I",
                "B\t7\tCopyBothResponse\t \\x01 0",
                "\t# logical replication of slot \"s\" from 0/16B3748 with pgoutput: XLogData carries pgoutput messages (proto_version 2, streaming on)",
                "B\t35\tCopyData\t 'w\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x03S\\x00\\x00\\x02\\xbc\\x01'",
                "\tB\t31\tXLogData\t 1 2 3",
                "\t\tB\t6\tStreamStart\t 700 1",
                "B\t47\tCopyData\t 'w\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x03I\\x00\\x00\\x02\\xbc\\x00\\x00@\\x01N\\x00\\x01t\\x00\\x00\\x00\\x01x'",
                "\tB\t43\tXLogData\t 1 2 3",
                "\t\tB\t18\tInsert\t 700 16385 N 1 t 1 'x'",
            ],
            result.Lines[..10]);
        Assert.StartsWith("B\t6\tCopyData\t 'w\\x01'", result.Lines[10], StringComparison.Ordinal);
        Assert.StartsWith("\t# not a replication message (XLogData): XLogData.walStart: ", result.Lines[11], StringComparison.Ordinal);
        Assert.StartsWith("B\t31\tCopyData\t ", result.Lines[12], StringComparison.Ordinal);
        Assert.Equal("\tB\t27\tXLogData\t 1 2 3", result.Lines[13]);
        Assert.StartsWith("\t\t# not a pgoutput message (StreamStop): StreamStop: ", result.Lines[14], StringComparison.Ordinal);
        Assert.EndsWith("; pgoutput is not decoded in the rest of this stream", result.Lines[14], StringComparison.Ordinal);

        // After it, XLogData is not read as pgoutput; the other replication messages are.
        Assert.StartsWith("B\t30\tCopyData\t ", result.Lines[15], StringComparison.Ordinal);
        Assert.Equal("\tB\t26\tXLogData\t 1 2 3", result.Lines[16]);
        Assert.StartsWith("B\t22\tCopyData\t 'k", result.Lines[17], StringComparison.Ordinal);
        Assert.Equal("\tB\t18\tPrimaryKeepalive\t 5 6 1", result.Lines[18]);

        // The stream has ended: a CopyData after ReadyForQuery is not replication.
        Assert.Equal(["B\t4\tCopyDone", "B\t22\tCommandComplete\t \"START_REPLICATION\""], result.Lines[19..21]);
        Assert.Equal("B\t5\tReadyForQuery\t I", result.Lines[21]);
        Assert.StartsWith("B\t30\tCopyData\t ", result.Lines[22], StringComparison.Ordinal);
        Assert.Equal(23, result.Lines.Length);
    }

    [Fact]
    public void FrontendStream_ItsStartReplication_StartsTheStream()
    {
        using var dir = new TempDirectory();
        CliResult result = CliRunner.Run("decode", "--from", "frontend", "--replication", dir.Write("f.bin", Frontend));
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("\t# logical replication of slot \"s\" from 0/16B3748 with pgoutput: XLogData carries pgoutput messages (proto_version 2, streaming on)", result.Lines[2]);
        Assert.Equal("\tF\t34\tStandbyStatusUpdate\t 1 2 3 4 0", result.Lines[4]);
        Assert.StartsWith("\t# not a replication message (HotStandbyFeedback): HotStandbyFeedback.clientTime: ", result.Lines[6], StringComparison.Ordinal);
        Assert.Equal(["F\t4\tCopyDone", "F\t4\tTerminate"], result.Lines[7..]);
    }

    [Fact]
    public void Json_CarriesTheMessages_AndWhatDoesNotDecode()
    {
        using var dir = new TempDirectory();
        CliResult result = CliRunner.Run("decode", "--from", "backend", "--peer", dir.Write("f.bin", Frontend), "--format", "json", dir.Write("b.bin", Backend));
        Assert.True(result.ExitCode == 0, result.ToString());
        JsonElement[] objects = [.. result.Lines.Select(line => JsonDocument.Parse(line).RootElement)];
        JsonElement stream = objects[2].GetProperty("replicationStream");
        Assert.Equal(("logical", "s", "0/16B3748", "pgoutput", 2, "on"), (stream.GetProperty("kind").GetString(), stream.GetProperty("slot").GetString(), stream.GetProperty("startLsn").GetString(), stream.GetProperty("plugin").GetString(), stream.GetProperty("pgoutput").GetProperty("protoVersion").GetInt32(), stream.GetProperty("pgoutput").GetProperty("streaming").GetString()));
        Assert.Equal(
            """{"name":"XLogData","type":"w","fields":{"walStart":1,"walEnd":2,"sendTime":3,"data":{"hex":"53000002bc01"}}}""",
            objects[3].GetProperty("replication").GetRawText());
        Assert.Equal("""{"name":"StreamStart","type":"S","fields":{"xid":700,"firstSegment":1}}""", objects[3].GetProperty("pgoutput").GetRawText());
        Assert.Equal(700, objects[4].GetProperty("pgoutput").GetProperty("fields").GetProperty("xid").GetInt32());
        Assert.Equal("XLogData", objects[5].GetProperty("replication").GetProperty("name").GetString());
        Assert.StartsWith("XLogData.walStart: ", objects[5].GetProperty("replication").GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.False(objects[5].TryGetProperty("pgoutput", out _));
        Assert.Equal("StreamStop", objects[6].GetProperty("pgoutput").GetProperty("name").GetString());
        Assert.EndsWith("; pgoutput is not decoded in the rest of this stream", objects[6].GetProperty("pgoutput").GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.False(objects[7].TryGetProperty("pgoutput", out _));
        Assert.Equal(
            """{"name":"PrimaryKeepalive","type":"k","fields":{"walEnd":5,"sendTime":6,"replyRequested":1}}""",
            objects[8].GetProperty("replication").GetRawText());
        Assert.False(objects[^1].TryGetProperty("replication", out _));
    }

    [Theory]
    [InlineData("decode", "--replication", "--format", "json", "-")]
    [InlineData("capture", "--replication", "--format", "json", "-")]
    [InlineData("capture", "--replication", "--stats", "-")]
    public void Replication_WithAFormatItDoesNotApplyTo_IsAUsageError(params string[] args)
    {
        CliResult result = CliRunner.Run(args);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--replication applies to", result.Stderr, StringComparison.Ordinal);
    }

    private static byte[] Copy(byte[] data) => new CopyData(data).ToArray();

    private static byte[] Wal(byte[] data) => new XLogData(1, 2, 3, data).ToArray();
}
