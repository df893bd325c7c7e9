using System.Globalization;
using System.Text;
using PgSpec.Cli.Tests.RealServer;

namespace PgSpec.Cli.Tests.ServeClients;

/// <summary><c>pgspec serve --trace FILE</c> refuses to overwrite a trace, and adds to it with --trace-append.</summary>
public sealed class ServeTraceFileTests
{
    [Fact]
    public void ExistingTrace_WithoutAppend_IsRefusedWithTheOptionToUse()
    {
        using var directory = new TempDirectory();
        string trace = directory.Write("old.trace", Encoding.ASCII.GetBytes("an earlier trace\n"));

        CliResult result = CliRunner.Run("serve", "--listen", "127.0.0.1:" + ServeProcess.FreePort().ToString(CultureInfo.InvariantCulture), "--trace", trace);

        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("--trace-append", result.Stderr);
        Assert.Equal("an earlier trace\n", File.ReadAllText(trace));
    }

    [Fact]
    public void TraceAppend_ToStandardOutput_IsAUsageError()
    {
        CliResult result = CliRunner.Run("serve", "--trace", "-", "--trace-append");

        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("--trace-append needs a --trace FILE", result.Stderr);
    }

    [Fact]
    public async Task ExistingTrace_WithAppend_GetsTheNewSessionsAfterIt()
    {
        using var directory = new TempDirectory();
        string trace = directory.Write("old.trace", Encoding.ASCII.GetBytes("an earlier trace\n"));
        int port = ServeProcess.FreePort();
        await using ServeProcess serve = await ServeProcess.StartAsync(["--listen", "127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture), "--trace", trace, "--trace-append"]);

        string psql = ExternalProcess.FindOnPath("psql") ?? throw new InvalidOperationException("psql is not on PATH (Debian: apt-get install -y postgresql-client)");
        ProcessOutput run = ExternalProcess.Run(psql, [$"host=127.0.0.1 port={port} user=u dbname=db sslmode=disable", "-X", "-c", "SELECT 'appended'"]);
        Assert.True(run.ExitCode == 0, run + serve.Stderr);
        Assert.Equal(0, await serve.StopAsync());

        string[] lines = File.ReadAllLines(trace);
        Assert.Equal("an earlier trace", lines[0]);
        Assert.Contains(lines, l => l.Contains("\tQuery\t \"SELECT 'appended'\"", StringComparison.Ordinal));
    }
}
