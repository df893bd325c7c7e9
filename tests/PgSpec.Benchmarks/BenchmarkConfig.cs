using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace PgSpec.Benchmarks;

/// <summary>
/// Adds the throughput column to every benchmark class, and the minimum, which is the figure
/// least disturbed by other work on a busy machine.
/// </summary>
public class BenchmarkConfig : ManualConfig
{
    public BenchmarkConfig()
    {
        AddColumn(StatisticColumn.Min);
        AddColumn(new ThroughputColumn(DataRowStream.MessageSize));
    }
}

/// <summary>
/// Throughput in MB/s (10^6 bytes a second), from the mean time of one operation (one message,
/// thanks to OperationsPerInvoke) and the bytes it covers.
/// </summary>
public sealed class ThroughputColumn : IColumn
{
    private readonly int _bytesPerOperation;

    public ThroughputColumn(int bytesPerOperation) => _bytesPerOperation = bytesPerOperation;

    public string Id => nameof(ThroughputColumn);

    public string ColumnName => "MB/s";

    public bool AlwaysShow => true;

    public ColumnCategory Category => ColumnCategory.Statistics;

    public int PriorityInCategory => 100;

    public bool IsNumeric => true;

    public UnitType UnitType => UnitType.Dimensionless;

    public string Legend => $"Throughput: {_bytesPerOperation} bytes per operation over the mean time, in 10^6 bytes a second";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, summary.Style);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        double? meanNanoseconds = summary[benchmarkCase]?.ResultStatistics?.Mean;
        return meanNanoseconds is > 0
            ? (_bytesPerOperation * 1000.0 / meanNanoseconds.Value).ToString("N0", style.CultureInfo)
            : "NA";
    }

    public bool IsAvailable(Summary summary) => true;

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public override string ToString() => ColumnName;
}
