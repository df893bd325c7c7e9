using System.Buffers;
using System.Text.Json;
using FsCheck;
using FsCheck.Fluent;
using PgSpec.Protocol.PgOutput;
using PgSpec.Protocol.Replication;
using PgSpec.Protocol.Tests.Support;

namespace PgSpec.Protocol.Tests;

/// <summary>
/// The replication messages carried in CopyData and pgoutput's messages carried in XLogData, with
/// messages generated from the descriptors in every context each can appear in (protocol version,
/// streaming mode, inside or outside a streamed block): they round-trip byte for byte through the
/// family dispatchers, and every other way to read them agrees.
/// </summary>
public class ReplicationCodecTests
{
    private const int MaxTest = 60;

    public static TheoryData<string> Cases()
    {
        var cases = new TheoryData<string>();
        foreach (FamilyCase c in FamilyCase.All())
        {
            cases.Add(c.ToString());
        }

        return cases;
    }

    private static FamilyCase Case(string name) => FamilyCase.All().Single(c => c.ToString() == name);

    [Fact]
    public void Descriptors_ListEveryReplicationAndPgOutputMessage()
    {
        Assert.Equal(
            ["HotStandbyFeedback", "PrimaryKeepalive", "PrimaryStatusUpdate", "RequestPrimaryStatusUpdate", "StandbyStatusUpdate", "XLogData"],
            ReplicationMessages.Descriptors.Select(d => d.Name));
        Assert.Equal(
            ["Begin", "BeginPrepare", "Commit", "CommitPrepared", "DataType", "Delete", "Insert", "LogicalMessage", "Origin", "Prepare", "Relation",
             "RollbackPrepared", "StreamAbort", "StreamCommit", "StreamPrepare", "StreamStart", "StreamStop", "Truncate", "Update"],
            PgOutputMessages.Descriptors.Select(d => d.Name));
        Assert.Equal(["TupleData"], PgOutputMessages.Parts.Select(d => d.Name));
        Assert.All(ReplicationMessages.Descriptors.Concat(PgOutputMessages.Descriptors), d =>
        {
            Assert.Equal(d.Name, d.MessageType.Name);
            Assert.True(typeof(IPgSubMessage).IsAssignableFrom(d.MessageType));
        });
        Assert.Equal(25, ReplicationMessages.All.Count + PgOutputMessages.All.Count);

        // The protocol's own catalogue is unchanged: the families are apart from it.
        Assert.Equal(52, PgProtocolSpec.Messages.Count);
        Assert.DoesNotContain(PgProtocolSpec.Messages, m => m.Family is not null);
    }

    [Fact]
    public void Cases_CoverEveryVersionAndStreamingCombination()
    {
        FamilyCase[] all = [.. FamilyCase.All()];
        Assert.Equal(12, all.Count(c => c.Descriptor.Name == "Insert"));       // v1 off; v2, v3 off/on x2; v4 off/on x2/parallel x2
        Assert.Equal(11, all.Count(c => c.Descriptor.Name == "StreamAbort"));  // v2, v3: off/on x2; v4: off/on x2/parallel x2
        Assert.Equal(8, all.Count(c => c.Descriptor.Name == "StreamPrepare")); // v3, v4
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EncodeThenDecode_AnyMessageInItsContexts_GivesItBackByteForByte(string name)
    {
        FamilyCase c = Case(name);
        Verify(c, message =>
        {
            PgOutputContext? context = c.NewContext();
            byte[] bytes = Encode(message, context);
            Assert.Equal(message.EncodedLength, bytes.Length);
            Assert.Equal(message.TypeByte, bytes[0]);

            IPgSubMessage decoded = Decode(c, bytes, context);
            Assert.Equal<object>(message, decoded);
            Assert.Equal(message.GetHashCode(), decoded.GetHashCode());
            Assert.Equal(bytes, decoded.ToArray());

            // The same through IBufferWriter, a span, and the message's own decoder.
            var writer = new ArrayBufferWriter<byte>();
            decoded.Encode(writer);
            Assert.Equal(bytes, writer.WrittenSpan.ToArray());
            byte[] span = new byte[bytes.Length + 3];
            Assert.Equal(bytes.Length, decoded.Encode(span));
            Assert.Equal(bytes, span.AsSpan(0, bytes.Length).ToArray());
        });
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Validate_Trace_Json_AndView_AgreeWithDecode(string name)
    {
        FamilyCase c = Case(name);
        Verify(c, message =>
        {
            PgOutputContext? context = c.NewContext();
            byte[] bytes = Encode(message, context);
            if (c.IsPgOutput)
            {
                Assert.True(PgOutputMessages.TryValidate(bytes, context, out PgOutputMessageKind kind, out PgDecodeError error), error.ToString());
                Assert.Equal(message.Name, PgOutputMessages.NameOf(kind));
                Assert.Equal(message.TypeByte, PgOutputMessages.TypeByteOf(kind));
            }
            else
            {
                Assert.True(ReplicationMessages.TryValidate(bytes, c.Direction, out ReplicationMessageKind kind, out PgDecodeError error), error.ToString());
                Assert.Equal(message.Name, ReplicationMessages.NameOf(kind));
                Assert.True(ReplicationMessages.IsSentBy(kind, c.Direction));
            }

            using var output = new MemoryStream();
            var trace = new PgTraceWriter(output);
            PgDecodeError traceError;
            bool traced = c.IsPgOutput
                ? PgOutputMessages.TryTrace(bytes, context, trace, out traceError)
                : ReplicationMessages.TryTrace(bytes, c.Direction, trace, out traceError);
            Assert.True(traced, traceError.ToString());
            string line = System.Text.Encoding.UTF8.GetString(output.ToArray());
            Assert.StartsWith((c.Direction == PgDirection.Frontend ? "F" : "B") + "\t" + bytes.Length + "\t" + message.Name, line, StringComparison.Ordinal);
            Assert.Equal(line.TrimEnd('\n'), message.ToString());

            var json = new ArrayBufferWriter<byte>();
            using (var jsonWriter = new Utf8JsonWriter(json))
            {
                message.WriteJson(jsonWriter);
            }

            using JsonDocument document = JsonDocument.Parse(json.WrittenMemory);
            Assert.Equal(message.Name, document.RootElement.GetProperty("name").GetString());
            Assert.Equal(((char)message.TypeByte).ToString(), document.RootElement.GetProperty("type").GetString());
        });
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryShorterPayload_IsADecodeError_AndSoIsATrailingByte(string name)
    {
        FamilyCase c = Case(name);
        bool restToTheEnd = c.Descriptor.Fields.Count > 0 && c.Descriptor.Fields[^1].Kind == PgFieldKind.RestBytes;
        Verify(c, message =>
        {
            PgOutputContext? context = c.NewContext();
            byte[] bytes = Encode(message, context);
            if (!restToTheEnd)
            {
                for (int length = 0; length < bytes.Length; length++)
                {
                    Assert.False(TryDecode(c, bytes.AsSpan(0, length), context, out _, out PgDecodeError error), $"a prefix of {length} bytes decoded");
                    Assert.False(string.IsNullOrEmpty(error.Reason));
                }

                byte[] longer = [.. bytes, 0];
                Assert.False(TryDecode(c, longer, context, out _, out PgDecodeError trailing));
                Assert.Contains("left over", trailing.Reason, StringComparison.Ordinal);
            }
        }, maxTest: 15);
    }

    [Fact]
    public void ReplicationMessages_OfTheOtherDirection_AreUnknown()
    {
        byte[] feedback = new HotStandbyFeedback(1, 2, 3, 4, 5).ToArray();
        Assert.False(ReplicationMessages.TryDecode(feedback, PgDirection.Backend, out _, out PgDecodeError error));
        Assert.Equal("Replication", error.MessageName);
        Assert.Contains("unknown type byte", error.Reason, StringComparison.Ordinal);
        Assert.True(ReplicationMessages.TryDecode(feedback, PgDirection.Frontend, out IReplicationMessage? message, out _));
        Assert.Equal(ReplicationMessageKind.HotStandbyFeedback, message.Kind);
    }

    [Fact]
    public void CopyData_CarriesXLogData_WhichCarriesPgOutput()
    {
        var insert = new Insert(null, 16385, new TupleData([new TupleData.Column(TupleValueKind.Text, "42"u8.ToArray()), new TupleData.Column(TupleValueKind.Null, null)]));
        var xlog = new XLogData(0x16B3748, 0x16B3780, 725_000_000_000_000, insert.ToArray());
        var copy = new CopyData(xlog.ToArray());

        Assert.True(ReplicationMessages.TryDecode(copy, PgDirection.Backend, out IReplicationMessage? outer, out PgDecodeError error), error.ToString());
        XLogData wal = Assert.IsType<XLogData>(outer);
        var context = new PgOutputContext(1);
        Assert.True(PgOutputMessages.TryDecodeNext(wal, context, out IPgOutputMessage? inner, out error), error.ToString());
        Assert.Equal(insert, inner);

        XLogData.View view = XLogData.View.Read(copy.Data.Span[1..]);
        Assert.Equal(0x16B3748, view.WalStart);
        Assert.Equal(0x16B3780, view.WalEnd);
        Assert.Equal(insert.ToArray(), view.Data.ToArray());
    }

    [Fact]
    public void TraceAndJson_OfAnInsert_AreOneLineEach()
    {
        var insert = new Insert(null, 16385, new TupleData([new TupleData.Column(TupleValueKind.Text, "42"u8.ToArray()), new TupleData.Column(TupleValueKind.Null, null)]));
        Assert.Equal("B\t16\tInsert\t 16385 N 2 t 2 '42' n", insert.ToString());
        Assert.Equal("2 t 2 '42' n", insert.NewTuple.ToString());
        Assert.Equal("F\t34\tStandbyStatusUpdate\t 1 2 3 4 0", new StandbyStatusUpdate(1, 2, 3, 4, 0).ToString());

        var json = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(json))
        {
            insert.WriteJson(writer);
        }

        Assert.Equal(
            """{"name":"Insert","type":"I","fields":{"relationOid":16385,"newTuple":{"columns":[{"kind":"Text","value":{"hex":"3432"}},{"kind":"Null"}]}}}""",
            System.Text.Encoding.UTF8.GetString(json.WrittenSpan));
    }

    [Fact]
    public void Views_ReadEachFieldInPlace_AsTheContextSaid()
    {
        var parallel = new PgOutputContext(4, PgOutputStreaming.Parallel);
        byte[] abort = new StreamAbort(5, 6, 7, 8).ToArray(parallel);
        StreamAbort.View withLsn = StreamAbort.View.Read(abort.AsSpan(1), parallel);
        Assert.Equal((5, 6, 7L, 8L), (withLsn.Xid, withLsn.SubXid, withLsn.AbortLsn, withLsn.AbortTime));
        StreamAbort.View without = StreamAbort.View.Read(abort.AsSpan(1, 8), new PgOutputContext(3, PgOutputStreaming.On));
        Assert.Null(without.AbortLsn);
        Assert.Null(without.AbortTime);

        var streamed = new PgOutputContext(2, PgOutputStreaming.On) { InStreamedTransaction = true };
        var message = new LogicalMessage(900, LogicalMessageFlags.Transactional, 77, "app", "hello"u8.ToArray());
        LogicalMessage.View view = LogicalMessage.View.Read(message.ToArray(streamed).AsSpan(1), streamed);
        streamed.InStreamedTransaction = false; // the view keeps what the context said when it was read
        Assert.Equal(900, view.Xid);
        Assert.Equal(LogicalMessageFlags.Transactional, view.Flags);
        Assert.Equal(77, view.Lsn);
        Assert.Equal("app"u8.ToArray(), view.Prefix.ToArray());
        Assert.Equal("hello"u8.ToArray(), view.Content.ToArray());
        Assert.Equal(message, view.ToMessage(new PgOutputContext(2, PgOutputStreaming.On) { InStreamedTransaction = true }));

        var tuple = new TupleData([new TupleData.Column(TupleValueKind.UnchangedToast, null)]);
        Update.View keyed = Update.View.Read(new Update(null, 9, OldTupleKind.Key, tuple, tuple).ToArray().AsSpan(1));
        Assert.Equal((null, 9u, OldTupleKind.Key), (keyed.Xid, keyed.RelationOid, keyed.OldTupleKind));
        Update.View bare = Update.View.Read(new Update(null, 9, null, null, tuple).ToArray().AsSpan(1));
        Assert.Null(bare.OldTupleKind);

        Relation.View relation = Relation.View.Read(new Relation(null, 2, "public", "t", ReplicaIdentity.Full, []).ToArray().AsSpan(1));
        Assert.Equal("t"u8.ToArray(), relation.RelationName.ToArray());
        Assert.Equal(ReplicaIdentity.Full, relation.ReplicaIdentity);

        Assert.False(Insert.View.TryRead([0, 0, 0, 1, (byte)'X'], null, out _, out PgDecodeError error));
        Assert.Equal("tagN", error.Field);
    }

    [Fact]
    public void TryDecodeNext_FollowsStreamedBlocks_AsTheSpecMarksThem()
    {
        var context = new PgOutputContext(2, PgOutputStreaming.On);
        var tuple = new TupleData([new TupleData.Column(TupleValueKind.Text, "x"u8.ToArray())]);
        byte[][] stream =
        [
            new Insert(null, 1, tuple).ToArray(),
            new StreamStart(700, 1).ToArray(),
            new Insert(700, 1, tuple).ToArray(),
            new Relation(700, 2, "public", "t", ReplicaIdentity.Default, [new Relation.Column(1, "id", 23, -1)]).ToArray(),
            new StreamStop().ToArray(),
            new Insert(null, 1, tuple).ToArray(),
            new StreamCommit(700, 10, 20, 30).ToArray(),
        ];

        var seen = new List<IPgOutputMessage>();
        foreach (byte[] payload in stream)
        {
            Assert.True(PgOutputMessages.TryDecodeNext(payload, context, out IPgOutputMessage? message, out PgDecodeError error), error.ToString());
            seen.Add(message);
        }

        Assert.Equal([null, 700, null], seen.OfType<Insert>().Select(i => i.Xid));
        Assert.Equal(700, Assert.Single(seen.OfType<Relation>()).Xid);
        Assert.False(context.InStreamedTransaction);

        // Outside the block, the streamed Insert's xid is four bytes too many for the grammar.
        Assert.False(PgOutputMessages.TryDecode(stream[2], new PgOutputContext(2, PgOutputStreaming.On), out _, out _));
    }

    [Fact]
    public void StreamAbort_HasItsAbortLsnAndTime_OnlyInVersion4WithParallelStreaming()
    {
        byte[] v4 = [(byte)'A', 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 8];
        var parallel = new PgOutputContext(4, PgOutputStreaming.Parallel);
        var abort = Assert.IsType<StreamAbort>(PgOutputMessages.Decode(v4, parallel));
        Assert.Equal((5, 6, 7L, 8L), (abort.Xid, abort.SubXid, abort.AbortLsn, abort.AbortTime));
        Assert.Equal(v4, abort.ToArray(parallel));

        // streaming = on (even in version 4), and versions 2 and 3: no LSN, no time.
        foreach (PgOutputContext context in new[] { new PgOutputContext(4, PgOutputStreaming.On), new PgOutputContext(3, PgOutputStreaming.On), new PgOutputContext(2) })
        {
            Assert.False(PgOutputMessages.TryDecode(v4, context, out _, out PgDecodeError error));
            Assert.Contains("left over", error.Reason, StringComparison.Ordinal);
            var shortAbort = Assert.IsType<StreamAbort>(PgOutputMessages.Decode(v4.AsSpan(0, 9), context));
            Assert.Null(shortAbort.AbortLsn);
            Assert.Null(shortAbort.AbortTime);
        }

        // Encoding checks what the context says.
        Assert.Throws<PgEncodeException>(() => abort.ToArray(new PgOutputContext(4, PgOutputStreaming.On)));
        Assert.Throws<PgEncodeException>(() => new StreamAbort(5, 6, null, null).ToArray(parallel));
    }

    [Fact]
    public void UpdateAndDelete_ReadTheirOldRowTags()
    {
        byte[] tuple = [0, 2, (byte)'t', 0, 0, 0, 2, (byte)'4', (byte)'2', (byte)'u'];
        byte[] keyed = [(byte)'U', 0, 0, 64, 1, (byte)'K', .. tuple, (byte)'N', .. tuple];
        byte[] plain = [(byte)'U', 0, 0, 64, 1, (byte)'N', .. tuple];
        byte[] delete = [(byte)'D', 0, 0, 64, 1, (byte)'O', .. tuple];

        var update = Assert.IsType<Update>(PgOutputMessages.Decode(keyed, null));
        Assert.Equal(OldTupleKind.Key, update.OldTupleKind);
        Assert.Equal([TupleValueKind.Text, TupleValueKind.UnchangedToast], update.NewTuple.Columns.Select(col => col.Kind));
        Assert.Equal("42"u8.ToArray(), update.OldTuple!.Columns[0].Value!.Value.ToArray());
        Assert.Null(update.NewTuple.Columns[1].Value);
        Assert.Equal(keyed, update.ToArray());

        var bare = Assert.IsType<Update>(PgOutputMessages.Decode(plain, null));
        Assert.Null(bare.OldTupleKind);
        Assert.Null(bare.OldTuple);
        Assert.Equal(plain, bare.ToArray());

        var deleted = Assert.IsType<Delete>(PgOutputMessages.Decode(delete, null));
        Assert.Equal(OldTupleKind.Old, deleted.OldTupleKind);
        Assert.Equal(delete, deleted.ToArray());

        // A Delete needs its 'K' or 'O'; an Update's new row its 'N'.
        Assert.False(PgOutputMessages.TryDecode([(byte)'D', 0, 0, 64, 1, (byte)'N', .. tuple], null, out _, out PgDecodeError error));
        Assert.Equal("oldTupleKind", error.Field);
        Assert.False(PgOutputMessages.TryDecode([(byte)'U', 0, 0, 64, 1, (byte)'X', .. tuple], null, out _, out error));
        Assert.Equal("tagN", error.Field);
    }

    [Fact]
    public void DecodeErrors_AreTypedAndPlaced()
    {
        Assert.False(PgOutputMessages.TryDecode([], null, out _, out PgDecodeError error));
        Assert.Equal(("PgOutput", 0L), (error.MessageName, error.Offset));
        Assert.Contains("empty", error.Reason, StringComparison.Ordinal);

        Assert.False(PgOutputMessages.TryDecode("Z"u8, null, out _, out error));
        Assert.Contains("unknown type byte", error.Reason, StringComparison.Ordinal);

        // A message newer than the context's version.
        Assert.False(PgOutputMessages.TryDecode([(byte)'E'], new PgOutputContext(1), out _, out error));
        Assert.Equal("StreamStop", error.MessageName);
        Assert.Contains("since protocol version 2", error.Reason, StringComparison.Ordinal);
        Assert.True(PgOutputMessages.TryDecode([(byte)'E'], new PgOutputContext(2), out _, out _));

        // A version the family does not have.
        Assert.False(PgOutputMessages.TryDecode([(byte)'E'], new PgOutputContext(5), out _, out error));
        Assert.Contains("not one of 1..4", error.Reason, StringComparison.Ordinal);

        // A column kind that is no TupleValueKind, placed at its byte.
        Assert.False(PgOutputMessages.TryDecode([(byte)'I', 0, 0, 0, 1, (byte)'N', 0, 1, (byte)'x'], null, out _, out error));
        Assert.Equal(("Insert", "kind", 8L), (error.MessageName, error.Field, error.Offset));

        // A count far beyond the bytes: refused before anything is allocated for it.
        long before = GC.GetAllocatedBytesForCurrentThread();
        bool decoded = PgOutputMessages.TryDecode([(byte)'T', 0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 1], null, out _, out error);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.False(decoded);
        Assert.Equal("relationOids", error.Field);
        Assert.True(allocated < 4096, $"allocated {allocated} bytes for a refused count");

        // Enum values are checked; a keepalive's flag is 0 or 1.
        Assert.False(ReplicationMessages.TryDecode([(byte)'k', .. new byte[16], 2], PgDirection.Backend, out _, out error));
        Assert.Equal("replyRequested", error.Field);
        Assert.False(PgOutputMessages.TryDecode([(byte)'C', 1, .. new byte[24]], null, out _, out error));
        Assert.Equal("flags", error.Field);
    }

    [Fact]
    public void Encode_ChecksPresenceAgainstTheContextAndTheTags()
    {
        var tuple = new TupleData([]);
        Assert.Throws<PgEncodeException>(() => new Insert(7, 1, tuple).ToArray(new PgOutputContext(2, PgOutputStreaming.On)));
        Assert.Throws<PgEncodeException>(() => new Insert(null, 1, tuple).ToArray(new PgOutputContext(2, PgOutputStreaming.On) { InStreamedTransaction = true }));
        Assert.Throws<PgEncodeException>(() => new StreamStart(1, 1).ToArray(new PgOutputContext(1)));
        Assert.Throws<PgEncodeException>(() => new Update(null, 1, OldTupleKind.Key, null, tuple).ToArray());
        Assert.Throws<PgEncodeException>(() => new Update(null, 1, null, tuple, tuple).ToArray());
        Assert.Throws<PgEncodeException>(() => new TupleDataHolder(new TupleData([new TupleData.Column(TupleValueKind.Text, null)])).Insert.ToArray());
        Assert.Throws<PgEncodeException>(() => new TupleDataHolder(new TupleData([new TupleData.Column(TupleValueKind.Null, "x"u8.ToArray())])).Insert.ToArray());
        Assert.Throws<PgEncodeException>(() => new Origin(1, "a\0b").ToArray());

        // Without a context, whatever is present is written.
        Assert.Equal(12, new Insert(7, 1, tuple).EncodedLength); // 'I', xid, oid, 'N', no column
        Assert.Equal(12, new Insert(7, 1, tuple).ToArray().Length);
    }

    [Fact]
    public void PgOutputContext_RefusesWhatPgOutputRefuses()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new PgOutputContext(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PgOutputContext(1, PgOutputStreaming.On));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PgOutputContext(3, PgOutputStreaming.Parallel));
        Assert.Equal(4, new PgOutputContext(4, PgOutputStreaming.Parallel).ProtocolVersion);
    }

    /// <summary>An Insert around a TupleData, for the encode checks of its columns.</summary>
    private sealed record TupleDataHolder(TupleData Tuple)
    {
        public Insert Insert => new(null, 1, Tuple);
    }

    private static byte[] Encode(IPgSubMessage message, PgOutputContext? context)
        => message switch
        {
            IPgOutputMessage => EncodeWithContext(message, context),
            _ => message.ToArray(),
        };

    private static byte[] EncodeWithContext(IPgSubMessage message, PgOutputContext? context)
    {
        // The generated ToArray(context) checks presence against the context.
        var method = message.GetType().GetMethod("ToArray", [typeof(PgOutputContext)])!;
        return (byte[])method.Invoke(message, [context])!;
    }

    private static IPgSubMessage Decode(FamilyCase c, byte[] bytes, PgOutputContext? context)
    {
        Assert.True(TryDecode(c, bytes, context, out IPgSubMessage? message, out PgDecodeError error), error.ToString());
        return message!;
    }

    private static bool TryDecode(FamilyCase c, ReadOnlySpan<byte> bytes, PgOutputContext? context, out IPgSubMessage? message, out PgDecodeError error)
    {
        if (c.IsPgOutput)
        {
            bool ok = PgOutputMessages.TryDecode(bytes, context, out IPgOutputMessage? m, out error);
            message = m;
            return ok;
        }

        bool decoded = ReplicationMessages.TryDecode(bytes, c.Direction, out IReplicationMessage? r, out error);
        message = r;
        return decoded;
    }

    private static void Verify(FamilyCase c, Action<IPgSubMessage> property, int maxTest = MaxTest)
    {
        Gen<IPgSubMessage> messages = Gen.Choose(0, int.MaxValue).Select(seed => FamilyGen.Build(c, new Random(seed)));
        Check.One(
            Config.QuickThrowOnFailure.WithMaxTest(maxTest).WithQuietOnSuccess(true).WithName(c.ToString()),
            Prop.ForAll(messages.ToArbitrary(), property));
    }
}
