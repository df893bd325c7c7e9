using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using PgSpec.Benchmarks;

// Usage: dotnet run -c Release --project tests/PgSpec.Benchmarks -- [--quick] [BenchmarkDotNet options]
// --quick runs every benchmark (unless --filter says otherwise) with the short job:
// one launch, three warm-up and three measured iterations.
var arguments = new List<string>(args);
IConfig? config = null;
if (arguments.Remove("--quick"))
{
    config = DefaultConfig.Instance.AddJob(Job.ShortRun);
    if (!arguments.Contains("--filter"))
    {
        arguments.AddRange(["--filter", "*"]);
    }
}

BenchmarkSwitcher.FromAssembly(typeof(DataRowStream).Assembly).Run([.. arguments], config);
