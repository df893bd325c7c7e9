// A PostgreSQL-protocol server that answers every statement with one row, one int4 column "?column?"
// holding 1 (text or binary, as the client asks): what the Go server on pgproto3 in
// ../pgproto3-server answers, so that serve-compare.sh measures the protocol's cost and nothing else.
//
// Usage: ConstantRowServer --listen HOST:PORT
using System.Net;
using PgSpec.Server;

using AllocationSampler? sampler = Environment.GetEnvironmentVariable("PGSPEC_ALLOCATION_SAMPLES") == "1" ? new AllocationSampler() : null;
string listen = args.Length == 2 && args[0] == "--listen" ? args[1] : "127.0.0.1:5432";
// PGSPEC_IO_THREADS: the server's event threads (0 or unset: the default, one per two processors).
var options = new PgBackendOptions { IoThreads = int.TryParse(Environment.GetEnvironmentVariable("PGSPEC_IO_THREADS"), out int threads) ? threads : 0 };
// PGSPEC_EVENT_SPIN_US: how long an event thread polls before it sleeps, in microseconds (unset: the default, 300; 0: never).
if (int.TryParse(Environment.GetEnvironmentVariable("PGSPEC_EVENT_SPIN_US"), out int spin))
{
    options.EventSpin = TimeSpan.FromMicroseconds(spin);
}

options.Listen.Add(IPEndPoint.Parse(listen));
await using PgBackendServer server = PgBackendServer.Start(options, _ => new ConstantRowHandler());
Console.WriteLine($"listening on {server.EndPoints[0]}");
using var stop = new CancellationTokenSource();
using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, context =>
{
    context.Cancel = true;
    stop.Cancel();
});
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    stop.Cancel();
};
try
{
    await Task.Delay(Timeout.Infinite, stop.Token);
}
catch (OperationCanceledException)
{
}

// What the run cost the garbage collector, for comparing versions of the session's hot path.
Console.WriteLine($"allocated {GC.GetTotalAllocatedBytes()} bytes; collections gen0 {GC.CollectionCount(0)}, gen1 {GC.CollectionCount(1)}, gen2 {GC.CollectionCount(2)}");
sampler?.Print();

internal sealed class ConstantRowHandler : PgSessionHandler
{
    private static readonly PgColumn[] s_columns = [new("?column?", 23, 4)];
    private static readonly PgStatement s_statement = new("SELECT 1", [], s_columns);

    // Never blocks: the session may call it on the socket event thread, saving a thread hop per message.
    public override bool RunsInline => true;

    public override ValueTask<PgStatement> PrepareAsync(string sql, IReadOnlyList<uint> parameterTypes, CancellationToken cancellationToken)
        => ValueTask.FromResult(s_statement);

    public override ValueTask<PgStatementResult> BindAsync(PgStatement statement, PgBindContext bind, CancellationToken cancellationToken)
        => ValueTask.FromResult<PgStatementResult>(new OneRow());

    private sealed class OneRow : PgStatementResult
    {
        private static readonly byte[] s_text = "1"u8.ToArray();
        private static readonly byte[] s_binary = [0, 0, 0, 1];
        private bool _read;

        public override IReadOnlyList<PgColumn>? Columns => s_columns;

        public override string CommandTag => "SELECT 1";

        public override ValueTask<bool> ReadAsync(CancellationToken cancellationToken)
        {
            bool more = !_read;
            _read = true;
            return ValueTask.FromResult(more);
        }

        public override ReadOnlyMemory<byte>? GetValue(int column, short format) => format == 1 ? s_binary : s_text;
    }
}

/// <summary>
/// With PGSPEC_ALLOCATION_SAMPLES=1: the runtime's allocation samples (one per ~100 KB allocated)
/// counted by type, printed at exit, to see what the hot path allocates.
/// </summary>
internal sealed class AllocationSampler : System.Diagnostics.Tracing.EventListener
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _samples = new();

    protected override void OnEventSourceCreated(System.Diagnostics.Tracing.EventSource source)
    {
        if (source.Name == "Microsoft-Windows-DotNETRuntime")
        {
            EnableEvents(source, System.Diagnostics.Tracing.EventLevel.Verbose, (System.Diagnostics.Tracing.EventKeywords)0x1 /* GC */);
        }
    }

    protected override void OnEventWritten(System.Diagnostics.Tracing.EventWrittenEventArgs e)
    {
        if (e.EventName == "GCAllocationTick_V4" && e.Payload is { } payload && e.PayloadNames is { } names)
        {
            string type = payload[names.IndexOf("TypeName")]?.ToString() ?? "?";
            _samples.AddOrUpdate(type, 1, (_, n) => n + 1);
        }
    }

    public void Print()
    {
        foreach ((string type, int count) in _samples.OrderByDescending(p => p.Value).Take(25))
        {
            Console.WriteLine($"{count,8} {type}");
        }
    }
}
