using System.Text;
using PgSpec.Protocol.PgOutput;
using PgSpec.Protocol.Replication;

namespace PgSpec.Protocol.Tests;

/// <summary>
/// The decode context of replication streams: the commands read from a Query's text as PostgreSQL's
/// replication grammar reads them (liberally), the stream's start and end, and when XLogData's data is
/// read as pgoutput (and when not: physical replication, another plugin, options that are not
/// pgoutput's, a message that does not decode).
/// </summary>
public class ReplicationStreamContextTests
{
    private static readonly TupleData Row = new([new TupleData.Column(TupleValueKind.Text, "42"u8.ToArray())]);

    [Theory]
    [InlineData("START_REPLICATION SLOT s LOGICAL 0/0 (proto_version '1', publication_names 'p')", "s", 0UL, "proto_version=1;publication_names=p")]
    [InlineData("start_replication slot \"My Slot\" logical 16/B374D848 (\"proto_version\" '2', \"publication_names\" '\"a\",\"b\"', \"streaming\" 'on')", "My Slot", 0x16B374D848UL, "proto_version=2;publication_names=\"a\",\"b\";streaming=on")]
    [InlineData("  START_REPLICATION\n\tSLOT  S1 LOGICAL 0/1 ( publication_names 'p' ,proto_version 4, streaming parallel, binary , messages true ) ;", "s1", 1UL, "publication_names=p;proto_version=4;streaming=parallel;binary=;messages=true")]
    [InlineData("/* c */ START_REPLICATION SLOT s LOGICAL A/1 -- note\n", "s", 0xA00000001UL, "")]
    [InlineData("START_REPLICATION SLOT s LOGICAL 0/0 (origin 'it''s')", "s", 0UL, "origin=it's")]
    public void StartLogical_IsRead_Liberally(string text, string slot, ulong lsn, string options)
    {
        ReplicationCommand command = Assert.IsType<ReplicationCommand>(ReplicationCommand.TryParse(Encoding.UTF8.GetBytes(text)));
        Assert.Equal(ReplicationCommandKind.StartLogical, command.Kind);
        Assert.Equal(slot, command.Slot);
        Assert.Equal(lsn, command.StartLsn);
        Assert.Equal(options, string.Join(";", command.Options.Select(o => o.Key + "=" + o.Value)));
    }

    [Theory]
    [InlineData("START_REPLICATION 0/3000000", null, 0x3000000UL, null)]
    [InlineData("START_REPLICATION PHYSICAL 0/3000000 TIMELINE 1", null, 0x3000000UL, 1U)]
    [InlineData("START_REPLICATION SLOT phys PHYSICAL 1/0 timeline 12;", "phys", 0x100000000UL, 12U)]
    [InlineData("start_replication slot phys ABCDEF/12", "phys", 0xABCDEF00000012UL, null)]
    public void StartPhysical_IsRead(string text, string? slot, ulong lsn, uint? timeline)
    {
        ReplicationCommand command = Assert.IsType<ReplicationCommand>(ReplicationCommand.TryParse(Encoding.UTF8.GetBytes(text)));
        Assert.Equal(ReplicationCommandKind.StartPhysical, command.Kind);
        Assert.Equal(slot, command.Slot);
        Assert.Equal(lsn, command.StartLsn);
        Assert.Equal(timeline, command.Timeline);
    }

    [Theory]
    [InlineData("CREATE_REPLICATION_SLOT s LOGICAL pgoutput", "s", "pgoutput")]
    [InlineData("create_replication_slot \"S\" temporary logical \"test_decoding\" (SNAPSHOT 'nothing', TWO_PHASE)", "S", "test_decoding")]
    [InlineData("CREATE_REPLICATION_SLOT s TEMPORARY LOGICAL wal2json NOEXPORT_SNAPSHOT", "s", "wal2json")]
    [InlineData("CREATE_REPLICATION_SLOT p PHYSICAL RESERVE_WAL", "p", null)]
    public void CreateSlot_NamesItsPlugin(string text, string slot, string? plugin)
    {
        ReplicationCommand command = Assert.IsType<ReplicationCommand>(ReplicationCommand.TryParse(Encoding.UTF8.GetBytes(text)));
        Assert.Equal(ReplicationCommandKind.CreateSlot, command.Kind);
        Assert.Equal(slot, command.Slot);
        Assert.Equal(plugin, command.Plugin);
    }

    [Theory]
    [InlineData("SELECT 1")]
    [InlineData("IDENTIFY_SYSTEM")]
    [InlineData("START_REPLICATION")]
    [InlineData("START_REPLICATION LOGICAL 0/0")]
    [InlineData("START_REPLICATION SLOT s LOGICAL 0/0 (proto_version '1'")]
    [InlineData("START_REPLICATION SLOT s LOGICAL 0/0 (proto_version '1) ")]
    [InlineData("START_REPLICATION SLOT s LOGICAL 0/0 (proto_version '1',)")]
    [InlineData("START_REPLICATION SLOT s LOGICAL 0/0 extra")]
    [InlineData("START_REPLICATION SLOT s LOGICAL 123456789/0")]
    [InlineData("START_REPLICATION 0/0 TIMELINE x")]
    [InlineData("START_REPLICATION 0/0 TIMELINE 99999999999")]
    [InlineData("START_REPLICATION /* unterminated")]
    [InlineData("START_REPLICATION SLOT \"unterminated LOGICAL 0/0")]
    [InlineData("CREATE_REPLICATION_SLOT s")]
    [InlineData("\u00ff\u00fe")]
    [InlineData("")]
    public void OtherText_IsNoCommand(string text)
        => Assert.Null(ReplicationCommand.TryParse(Encoding.UTF8.GetBytes(text)));

    [Fact]
    public void ALongQuery_IsNotRead()
    {
        string text = "START_REPLICATION SLOT s LOGICAL 0/0 (publication_names '" + new string('p', ReplicationCommand.MaxLength) + "')";
        Assert.Null(ReplicationCommand.TryParse(Encoding.UTF8.GetBytes(text)));
    }

    [Fact]
    public void LogicalStream_WithPgoutputSeenCreated_DecodesAndFollowsStreamedBlocks()
    {
        var context = new ReplicationStreamContext();
        Query(context, "CREATE_REPLICATION_SLOT s TEMPORARY LOGICAL pgoutput");
        context.ObserveBackend(BackendMessageKind.ReadyForQuery, "I"u8);
        Query(context, "START_REPLICATION SLOT s LOGICAL 0/0 (proto_version '2', publication_names 'p', streaming 'on')");
        Assert.False(context.InStream);
        Assert.Null(context.Decode(Wal(new Begin(1, 2, 3).ToArray()), PgDirection.Backend));

        context.ObserveBackend(BackendMessageKind.CopyBothResponse, default);
        Assert.True(context.InStream);
        Assert.Equal(ReplicationStreamKind.Logical, context.Kind);
        Assert.Equal("pgoutput", context.Plugin);
        Assert.Equal("s", context.SlotName);
        Assert.Equal("0/0", context.StartLsn);
        Assert.Equal((2, PgOutputStreaming.On), (context.PgOutput!.ProtocolVersion, context.PgOutput.Streaming));
        Assert.Contains("pgoutput messages (proto_version 2, streaming on)", context.Description, StringComparison.Ordinal);

        ReplicationPayload start = context.Decode(Wal(new StreamStart(700, 1).ToArray()), PgDirection.Backend)!;
        Assert.IsType<StreamStart>(start.PgOutput);
        ReplicationPayload insert = context.Decode(Wal(new Insert(700, 16385, Row).ToArray(new PgOutputContext(2, PgOutputStreaming.On) { InStreamedTransaction = true })), PgDirection.Backend)!;
        Assert.Equal(700, Assert.IsType<Insert>(insert.PgOutput).Xid);
        context.Decode(Wal(new StreamStop().ToArray()), PgDirection.Backend);
        Assert.False(context.PgOutput.InStreamedTransaction);

        ReplicationPayload status = context.Decode(new StandbyStatusUpdate(1, 2, 3, 4, 0).ToArray(), PgDirection.Frontend)!;
        Assert.IsType<StandbyStatusUpdate>(status.Message);
        Assert.Null(status.PgOutput);

        ReplicationPayload keepalive = context.Decode(new PrimaryKeepalive(5, 6, 1).ToArray(), PgDirection.Backend)!;
        Assert.Equal("PrimaryKeepalive", keepalive.Name);

        // The client ends first: the server's CopyData still belong to the stream until its CopyDone.
        context.ObserveFrontend(FrontendMessageKind.CopyDone, default);
        Assert.Null(context.Decode(new StandbyStatusUpdate(1, 2, 3, 4, 0).ToArray(), PgDirection.Frontend));
        Assert.NotNull(context.Decode(Wal(new Commit(1, 2, 3).ToArray()), PgDirection.Backend));
        context.ObserveBackend(BackendMessageKind.CopyDone, default);
        Assert.False(context.InStream);
        Assert.Null(context.Decode(Wal(new Commit(1, 2, 3).ToArray()), PgDirection.Backend));
    }

    [Fact]
    public void TraceLines_AreIndentedBelowTheCopyData()
    {
        var context = Started("START_REPLICATION SLOT s LOGICAL 0/0 (proto_version '1', publication_names 'p')");
        var output = new MemoryStream();
        var trace = new PgTraceWriter(output, new PgTraceOptions { Prefix = "7" });
        context.Decode(Wal(new Insert(null, 16385, Row).ToArray()), PgDirection.Backend)!.Trace(trace);
        context.Decode(Wal([(byte)'Z']), PgDirection.Backend)!.Trace(trace);
        context.Decode([(byte)'k', 1], PgDirection.Backend)!.Trace(trace);
        Assert.Equal(0, trace.Indent);
        string[] lines = Encoding.UTF8.GetString(output.ToArray()).Split('\n');
        Assert.Equal(
            [
                "7\t\tB\t40\tXLogData\t 1 2 3",
                "7\t\t\tB\t15\tInsert\t 16385 N 1 t 2 '42'",
                "7\t\tB\t26\tXLogData\t 1 2 3",
                "7\t\t\t# not a pgoutput message: PgOutput: unknown type byte 'Z' (at offset 0); pgoutput is not decoded in the rest of this stream",
            ],
            lines[..4]);
        Assert.StartsWith("7\t\t# not a replication message (PrimaryKeepalive): PrimaryKeepalive.walEnd: ", lines[4], StringComparison.Ordinal);
        Assert.Equal([""], lines[5..]);
    }

    [Fact]
    public void AMessageThatDoesNotDecode_StopsPgoutputForTheStream_NotTheReplicationMessages()
    {
        var context = Started("START_REPLICATION SLOT s LOGICAL 0/0 (proto_version '1', publication_names 'p')");
        ReplicationPayload bad = context.Decode(Wal([(byte)'I', 0, 0]), PgDirection.Backend)!;
        Assert.NotNull(bad.Message);
        Assert.Equal("Insert", bad.PgOutputName);
        Assert.NotNull(bad.PgOutputError);
        Assert.Null(context.PgOutput);
        Assert.Contains("stopped decoding as pgoutput", context.Description, StringComparison.Ordinal);

        ReplicationPayload next = context.Decode(Wal(new Begin(1, 2, 3).ToArray()), PgDirection.Backend)!;
        Assert.IsType<XLogData>(next.Message);
        Assert.Null(next.PgOutput);
        Assert.Null(next.PgOutputError);

        ReplicationPayload empty = context.Decode([], PgDirection.Backend)!;
        Assert.Null(empty.Message);
        Assert.Null(empty.Name);
        Assert.NotNull(empty.Error);

        // The next stream of the connection starts afresh.
        context.ObserveBackend(BackendMessageKind.ReadyForQuery, "I"u8);
        Query(context, "START_REPLICATION SLOT s LOGICAL 0/0 (proto_version '1', publication_names 'p')");
        context.ObserveBackend(BackendMessageKind.CopyBothResponse, default);
        Assert.IsType<Begin>(context.Decode(Wal(new Begin(1, 2, 3).ToArray()), PgDirection.Backend)!.PgOutput);
    }

    [Theory]
    [InlineData("test_decoding")]
    [InlineData("wal2json")]
    public void ASlotOfAnotherPlugin_IsNotReadAsPgoutput_EvenWithPgoutputsOptions(string plugin)
    {
        var context = new ReplicationStreamContext();
        Query(context, $"CREATE_REPLICATION_SLOT td LOGICAL {plugin}");
        context.ObserveBackend(BackendMessageKind.ReadyForQuery, "I"u8);
        Query(context, "START_REPLICATION SLOT td LOGICAL 0/0 (proto_version '1', publication_names 'p')");
        context.ObserveBackend(BackendMessageKind.CopyBothResponse, default);
        Assert.Equal(plugin, context.Plugin);
        Assert.Null(context.PgOutput);
        ReplicationPayload payload = context.Decode(Wal("BEGIN 734"u8.ToArray()), PgDirection.Backend)!;
        Assert.IsType<XLogData>(payload.Message);
        Assert.Null(payload.PgOutput);
        Assert.Null(payload.PgOutputError);
        Assert.Contains($"with plugin {plugin}", context.Description, StringComparison.Ordinal);
    }

    [Fact]
    public void ASlotWhoseCreationFailed_IsNotRemembered()
    {
        var context = new ReplicationStreamContext();
        Query(context, "CREATE_REPLICATION_SLOT s LOGICAL test_decoding");
        context.ObserveBackend(BackendMessageKind.ErrorResponse, default);
        context.ObserveBackend(BackendMessageKind.ReadyForQuery, "I"u8);
        Query(context, "START_REPLICATION SLOT s LOGICAL 0/0 (proto_version '1', publication_names 'p')");
        context.ObserveBackend(BackendMessageKind.CopyBothResponse, default);
        Assert.Null(context.Plugin);
        Assert.NotNull(context.PgOutput);
    }

    [Theory]
    [InlineData("(\"include-xids\" '0', \"skip-empty-xacts\" '1')", "not pgoutput's")]
    [InlineData("(proto_version '1')", "not pgoutput's")]
    [InlineData("", "not pgoutput's")]
    [InlineData("(proto_version '9', publication_names 'p')", "not one of 1 to 4")]
    [InlineData("(proto_version 'x', publication_names 'p')", "not one of 1 to 4")]
    [InlineData("(proto_version '1', publication_names 'p', streaming 'on')", "which pgoutput refuses")]
    [InlineData("(proto_version '2', publication_names 'p', streaming 'parallel')", "which pgoutput refuses")]
    [InlineData("(proto_version '2', publication_names 'p', streaming 'maybe')", "not on, off or parallel")]
    public void ALogicalStreamOfAnUnseenSlot_IsReadAsPgoutputOnlyWithItsOptions(string options, string why)
    {
        var context = Started("START_REPLICATION SLOT other LOGICAL 0/0 " + options);
        Assert.Null(context.PgOutput);
        Assert.Contains(why, context.Description, StringComparison.Ordinal);
        Assert.Null(context.Decode(Wal(new Begin(1, 2, 3).ToArray()), PgDirection.Backend)!.PgOutput);
    }

    [Theory]
    [InlineData("streaming 'true'", PgOutputStreaming.On)]
    [InlineData("streaming", PgOutputStreaming.On)]
    [InlineData("streaming 'ON'", PgOutputStreaming.On)]
    [InlineData("streaming 1", PgOutputStreaming.On)]
    [InlineData("streaming 'y'", PgOutputStreaming.On)]
    [InlineData("streaming 'off'", PgOutputStreaming.Off)]
    [InlineData("streaming false", PgOutputStreaming.Off)]
    [InlineData("streaming 'parallel'", PgOutputStreaming.Parallel)]
    public void Streaming_IsReadAsPostgreSQLReadsIt(string option, PgOutputStreaming expected)
    {
        var context = Started($"START_REPLICATION SLOT s LOGICAL 0/0 (proto_version 4, publication_names 'p', {option})");
        Assert.Equal(expected, context.PgOutput!.Streaming);
    }

    [Fact]
    public void PhysicalStream_CarriesWal_NotDecoded()
    {
        var context = Started("START_REPLICATION SLOT phys PHYSICAL 0/3000000 TIMELINE 1");
        Assert.Equal(ReplicationStreamKind.Physical, context.Kind);
        Assert.Null(context.PgOutput);
        Assert.Equal("physical replication of slot \"phys\" from 0/3000000 on timeline 1: XLogData carries WAL, not decoded further", context.Description);
        ReplicationPayload payload = context.Decode(Wal(new Begin(1, 2, 3).ToArray()), PgDirection.Backend)!;
        Assert.IsType<XLogData>(payload.Message);
        Assert.Null(payload.PgOutput);
        context.ObserveBackend(BackendMessageKind.ErrorResponse, default);
        Assert.False(context.InStream);
    }

    [Fact]
    public void CopyBothResponse_WithoutACommandSeen_ReadsTheEnvelopeOnly()
    {
        var context = new ReplicationStreamContext();
        context.ObserveBackend(BackendMessageKind.CopyBothResponse, default);
        Assert.Equal(ReplicationStreamKind.Unknown, context.Kind);
        Assert.IsType<XLogData>(context.Decode(Wal(new Begin(1, 2, 3).ToArray()), PgDirection.Backend)!.Message);
        context.ObserveFrontend(FrontendMessageKind.Terminate, default);
        Assert.False(context.InStream);
    }

    [Fact]
    public void AFailedStart_StartsNothing_AndTheNextCopyBothIsUnknown()
    {
        var context = new ReplicationStreamContext();
        Query(context, "START_REPLICATION SLOT s LOGICAL 0/0 (proto_version '1', publication_names 'p')");
        context.ObserveBackend(BackendMessageKind.ErrorResponse, default);
        context.ObserveBackend(BackendMessageKind.CopyBothResponse, default);
        Assert.Equal(ReplicationStreamKind.Unknown, context.Kind);
    }

    [Fact]
    public void SlotsRemembered_AreBounded_OldestForgottenFirst()
    {
        var context = new ReplicationStreamContext();
        for (int i = 0; i <= ReplicationStreamContext.MaxSlotsRemembered; i++)
        {
            Query(context, $"CREATE_REPLICATION_SLOT s{i} LOGICAL test_decoding");
        }

        Query(context, "START_REPLICATION SLOT s0 LOGICAL 0/0 (proto_version '1', publication_names 'p')");
        context.ObserveBackend(BackendMessageKind.CopyBothResponse, default);
        Assert.Null(context.Plugin);
        Query(context, $"START_REPLICATION SLOT s{ReplicationStreamContext.MaxSlotsRemembered} LOGICAL 0/0");
        context.ObserveBackend(BackendMessageKind.CopyBothResponse, default);
        Assert.Equal("test_decoding", context.Plugin);

        Query(context, $"DROP_REPLICATION_SLOT s{ReplicationStreamContext.MaxSlotsRemembered} WAIT");
        Query(context, $"START_REPLICATION SLOT s{ReplicationStreamContext.MaxSlotsRemembered} LOGICAL 0/0");
        context.ObserveBackend(BackendMessageKind.CopyBothResponse, default);
        Assert.Null(context.Plugin);
    }

    private static ReplicationStreamContext Started(string command)
    {
        var context = new ReplicationStreamContext();
        Query(context, command);
        context.ObserveBackend(BackendMessageKind.CopyBothResponse, default);
        Assert.True(context.InStream);
        return context;
    }

    private static void Query(ReplicationStreamContext context, string text)
        => context.ObserveFrontend(FrontendMessageKind.Query, [.. Encoding.UTF8.GetBytes(text), 0]);

    private static byte[] Wal(byte[] data) => new XLogData(1, 2, 3, data).ToArray();
}
