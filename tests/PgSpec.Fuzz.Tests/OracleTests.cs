using System.Buffers;
using System.Buffers.Binary;
using PgSpec.Protocol;

namespace PgSpec.Fuzz.Tests;

public sealed class OracleTests
{
    private sealed class ThrowingTarget : FuzzTarget
    {
        public override string Name => "throwing";

        public override string Description => "throws what it is told to";

        protected override void Execute(ReadOnlySpan<byte> input) => throw new IndexOutOfRangeException("index " + input.Length);
    }

    [Fact]
    public void ExceptionOtherThanTheCodecsOwn_EscapingATarget_IsAFinding()
    {
        FuzzFindingException e = Assert.Throws<FuzzFindingException>(() => new ThrowingTarget().Run([1, 2, 3]));
        Assert.IsType<IndexOutOfRangeException>(e.InnerException);
        Assert.Contains("IndexOutOfRangeException", e.Message);
    }

    [Fact]
    public void AcceptedMessage_ReencodingToOtherBytes_IsAFinding()
    {
        var query = new Query("SELECT 1");
        byte[] raw = query.ToArray();
        Oracle.CheckReencodes("test", query, raw, PgProtocolVersion.V3_0, PgLimits.Default);
        raw[^2] = (byte)'2';
        Assert.Throws<FuzzFindingException>(() => Oracle.CheckReencodes("test", query, raw, PgProtocolVersion.V3_0, PgLimits.Default));
    }

    [Fact]
    public void Allocation_OverItsBudget_IsAFinding()
    {
        Oracle.CheckAllocation("test", 100, 100);
        Assert.Throws<FuzzAllocationException>(() => Oracle.CheckAllocation("test", 101, 100));
    }

    [Fact]
    public void Errors_AtDifferentOffsets_AreAFinding()
    {
        var error = new PgDecodeError("Bind", "portalName", 5, "String has no terminating NUL before the end of the message");
        Oracle.CheckSameError("test", error, error);
        Assert.Throws<FuzzFindingException>(() => Oracle.CheckSameError("test", error, error.Shift(1)));
    }

    [Theory]
    [InlineData((byte)'D')]
    [InlineData((byte)'T')]
    [InlineData((byte)'E')]
    [InlineData((byte)'Z')]
    public void TwoGibLengthPrefix_EvenUnderLimitsThatAllowIt_AllocatesNothing(byte type)
    {
        var context = new DecodeContext { Phase = PgSessionPhase.Normal, Limits = PgLimits.Default.WithAll(PgDirection.Backend, int.MaxValue) };
        var reader = new PgMessageReader(PgDirection.Backend, context);
        byte[] bytes = new byte[64];
        bytes[0] = type;
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(1), int.MaxValue);
        var buffer = new ReadOnlySequence<byte>(bytes);
        reader.TryRead(ref buffer, out _, out _);

        long before = GC.GetAllocatedBytesForCurrentThread();
        PgReadStatus status = reader.TryRead(ref buffer, out _, out _);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(PgReadStatus.Incomplete, status);
        Assert.Equal(0, allocated);
    }

    public static TheoryData<string> StreamTargets() => [.. FuzzTargets.Names.Where(n => n.StartsWith("stream-", StringComparison.Ordinal))];

    [Theory]
    [MemberData(nameof(StreamTargets))]
    public void TwoGibLengthPrefix_InEveryStreamTarget_PassesTheOracle(string name)
    {
        bool backend = name.Contains("backend", StringComparison.Ordinal);
        byte[] prefix = backend ? [] : new StartupMessage(196608, [new("user", "u")]).ToArray();
        byte[] input = [.. prefix, (byte)'D', 0x7F, 0xFF, 0xFF, 0xFF, 0, 1, 0, 0];
        FuzzTargets.Find(name)!.Run(input);
    }

    [Fact]
    public void RowsOfOneLayout_ThenRowsOfTheSameLengthInOthers_PassTheOracle_WhoseViewsGiveTheOwnedValues()
    {
        // The reader checks the third row on from the first's layout and from a template of it;
        // rows of the same length in other layouts, a NULL among them, then the first layout again:
        // each row's view (from the reader's places) must give the owned decode's values.
        byte[] Row(params int[] lengths) => new DataRow([.. lengths.Select(n => n < 0 ? null : (ReadOnlyMemory<byte>?)Enumerable.Range(n, Math.Max(n, 0)).Select(b => (byte)b).ToArray())]).ToArray();
        byte[] stream = [.. Row(4, 8), .. Row(4, 8), .. Row(4, 8), .. Row(8, 4), .. Row(6, 6), .. Row(12, -1), .. Row(4, 8), .. Row(4, 8), .. Row(4, 8)];
        foreach (string name in new[] { "stream-backend-3.0", "stream-backend-3.2" })
        {
            FuzzTargets.Find(name)!.Run(stream);
        }

        // And with bytes changed, anywhere: each must pass the oracle too (read, or refused the same way).
        for (int i = 5; i < stream.Length; i++)
        {
            byte[] changed = [.. stream];
            changed[i] ^= 0x41;
            FuzzTargets.Find("stream-backend-3.0")!.Run(changed);
        }
    }

    [Fact]
    public void HostileServer_SendingATwoGibLength_PassesTheOracle()
        => FuzzTargets.Find("session")!.Run([0, 0, (byte)'R', 0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]);

    [Theory]
    [InlineData((byte)'Q')]
    [InlineData((byte)'d')]
    [InlineData((byte)'p')]
    public void HostileClient_SendingATwoGibLength_PassesTheOracle(byte type)
    {
        byte[] startup = new StartupMessage(196608, [new("user", "fuzz")]).ToArray();
        foreach (byte options in new byte[] { 0x00, 0x02, 0x1D })
        {
            FuzzTargets.Find("backend")!.Run([options, .. startup, type, 0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]);
        }
    }

    [Fact]
    public void Stream_SplitAtEveryPoint_ReadsTheSameEveryWay()
    {
        byte[] stream =
        [
            .. new ParameterStatus("server_version", "15.0").ToArray(),
            .. new ReadyForQuery(TransactionStatus.Idle).ToArray(),
            .. new DataRow([new byte[] { 1, 2, 3 }, null]).ToArray(),
            .. new ErrorResponse([new((byte)'S', "ERROR"), new((byte)'M', "x")]).ToArray(),
            (byte)'Z', 0, 0,
        ];
        FuzzTarget target = FuzzTargets.Find("segmentation")!;
        for (int at = 0; at < stream.Length; at++)
        {
            byte[] split = new byte[2];
            BinaryPrimitives.WriteUInt16BigEndian(split, (ushort)at);
            target.Run([1, 2, .. split, .. split, .. stream]);
        }
    }
}
