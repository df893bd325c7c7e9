using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using PgSpec.Cli.Tests.RealServer;

namespace PgSpec.Cli.Tests;

/// <summary>The tool as a process among others: output shared with other programs, readers that go away, signals.</summary>
public class StandardStreamsTests
{
    private static readonly string s_pgspec = Path.Combine(AppContext.BaseDirectory, "pgspec.dll");

    [Fact]
    public void OutputRedirectedToAFile_IsWrittenWhereTheFileEnds_BetweenWhatOtherProgramsWrite()
    {
        using var directory = new TempDirectory();
        string input = Path.Combine(directory.Path, "ready.hex");
        File.WriteAllText(input, "5a0000000549");
        string output = Path.Combine(directory.Path, "out.txt");

        // One redirection shared by several programs, as a shell script or a loop writes a log.
        ProcessOutput run = ExternalProcess.Run("/bin/sh", ["-c", $"(echo first; dotnet '{s_pgspec}' --version; dotnet '{s_pgspec}' decode --from backend --hex '{input}'; echo last) > '{output}'"]);

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal($"first\npgspec {Version()}\nB\t5\tReadyForQuery\t I\nlast\n", File.ReadAllText(output));
    }

    [Fact]
    public void AReaderThatGoesAway_EndsTheToolQuietlyAsSigpipeWould()
    {
        using var directory = new TempDirectory();
        string input = Path.Combine(directory.Path, "rows.bin");
        byte[] row = Convert.FromHexString("440000000e00010000000478787878");
        using (FileStream file = File.Create(input))
        {
            for (int i = 0; i < 100_000; i++)
            {
                file.Write(row);
            }
        }

        foreach (string arguments in new[] { $"decode --from backend '{input}'", $"decode --from backend --format json '{input}'", "help" })
        {
            ProcessOutput run = ExternalProcess.Run("/bin/bash", ["-c", $"dotnet '{s_pgspec}' {arguments} | head -c 10 > /dev/null; echo \"status ${{PIPESTATUS[0]}}\" >&2"]);

            Assert.DoesNotContain("Unhandled exception", run.Stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", run.Stderr, StringComparison.Ordinal);
            Assert.Matches(@"status (0|141)\n", run.Stderr);
        }
    }

    [Fact]
    public async Task Conform_StoppedWithSigterm_StopsItsServersAndExits143()
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in new[] { s_pgspec, "conform", "--pg", "15" })
        {
            start.ArgumentList.Add(argument);
        }

        using Process conform = Process.Start(start)!;
        Task<string> stdout = conform.StandardOutput.ReadToEndAsync();
        var stderr = new System.Text.StringBuilder();
        int port = 0;
        while (await conform.StandardError.ReadLineAsync() is { } line)
        {
            stderr.AppendLine(line);
            Match listening = Regex.Match(line, @"listening on 127\.0\.0\.1:(\d+)");
            if (listening.Success)
            {
                port = int.Parse(listening.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            }

            if (line.Contains("running", StringComparison.Ordinal))
            {
                break;
            }
        }

        Assert.True(port > 0, stderr.ToString());
        ExternalProcess.RunChecked("kill", ["-TERM", conform.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        stderr.Append(await conform.StandardError.ReadToEndAsync());
        await conform.WaitForExitAsync();
        await stdout;

        Assert.Equal(143, conform.ExitCode);
        Assert.Contains("pgspec conform: terminated; stopping servers", stderr.ToString(), StringComparison.Ordinal);

        // The server it started is gone: no PostgreSQL listens on its port any more (another test's
        // server may have taken the freed port since, so the listener's program is what is checked).
        ProcessOutput listeners = ExternalProcess.RunChecked("ss", ["-Hltnp", $"sport = :{port}"]);
        Assert.DoesNotContain("postgres", listeners.Stdout, StringComparison.Ordinal);
    }

    private static string Version()
        => typeof(PgSpecCommandLine).Assembly.GetName().Version is { } version ? $"{version.Major}.{version.Minor}.{version.Build}" : "";
}
