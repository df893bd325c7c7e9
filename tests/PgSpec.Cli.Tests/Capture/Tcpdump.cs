using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using PgSpec.Cli.Capture;

namespace PgSpec.Cli.Tests.Capture;

/// <summary>tcpdump writing a capture: started when it says it is listening, stopped by SIGTERM (which makes it write out what it holds).</summary>
internal sealed class Tcpdump : IDisposable
{
    private const int SigTerm = 15;

    private readonly Process _process;

    private readonly StringBuilder _stderr = new();

    private Tcpdump(Process process)
    {
        _process = process;
    }

    public static Tcpdump Start(string[] arguments)
    {
        var start = new ProcessStartInfo("/usr/bin/tcpdump")
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (string argument in (string[])["-Z", "root", "-n", .. arguments])
        {
            start.ArgumentList.Add(argument);
        }

        var listening = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var tcpdump = new Tcpdump(new Process { StartInfo = start });
        tcpdump._process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                listening.TrySetResult();
                return;
            }

            lock (tcpdump._stderr)
            {
                tcpdump._stderr.AppendLine(e.Data);
            }

            if (e.Data.Contains("listening on", StringComparison.Ordinal))
            {
                listening.TrySetResult();
            }
        };
        tcpdump._process.OutputDataReceived += (_, _) => { };
        tcpdump._process.Start();
        tcpdump._process.BeginErrorReadLine();
        tcpdump._process.BeginOutputReadLine();
        if (!listening.Task.Wait(TimeSpan.FromSeconds(30)) || tcpdump._process.HasExited)
        {
            tcpdump.Dispose();
            Assert.Fail("tcpdump did not start listening: " + tcpdump.Stderr);
        }

        return tcpdump;
    }

    private string Stderr
    {
        get
        {
            lock (_stderr)
            {
                return _stderr.ToString();
            }
        }
    }

    /// <summary>How many segments with FIN a capture file holds so far (0 before its header is written).</summary>
    public static int CountFins(string file)
    {
        int fins = 0;
        try
        {
            using var source = CaptureSource.OpenFile(file);
            source.Run(s => fins += (s.Flags & TcpFlags.Fin) != 0 ? 1 : 0, CancellationToken.None);
        }
        catch (CaptureException)
        {
            // Not even the file header yet.
        }

        return fins;
    }

    /// <summary>
    /// Waits until the file holds <paramref name="fins"/> FINs (tcpdump stops on SIGTERM without
    /// reading what the kernel still holds for it), at most <paramref name="limit"/>.
    /// </summary>
    public static void WaitForFins(string file, int fins, TimeSpan limit)
    {
        var waiting = Stopwatch.StartNew();
        while (CountFins(file) < fins && waiting.Elapsed < limit)
        {
            Thread.Sleep(10);
        }
    }

    /// <summary>
    /// Waits until every connection that starts in the file (a SYN) has its FIN both ways in it,
    /// at most <paramref name="limit"/>: tcpdump may still be writing the last packets, and stops
    /// on SIGTERM without reading what the kernel still holds for it.
    /// </summary>
    public static void WaitForEnds(string file, TimeSpan limit)
    {
        var waiting = Stopwatch.StartNew();
        while (waiting.Elapsed < limit)
        {
            var starts = new HashSet<string>();
            var fins = new HashSet<string>();
            try
            {
                using var source = CaptureSource.OpenFile(file);
                source.Run(
                    s =>
                    {
                        if ((s.Flags & (TcpFlags.Syn | TcpFlags.Ack)) == TcpFlags.Syn)
                        {
                            starts.Add($"{s.Source} {s.Destination}");
                        }

                        if ((s.Flags & TcpFlags.Fin) != 0)
                        {
                            fins.Add($"{s.Source} {s.Destination}");
                        }
                    },
                    CancellationToken.None);
            }
            catch (CaptureException)
            {
                // Not even the file header yet.
            }

            if (starts.Count > 0 && starts.All(start => fins.Contains(start) && fins.Contains(string.Join(' ', start.Split(' ').Reverse()))))
            {
                return;
            }

            Thread.Sleep(10);
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _ = Kill(_process.Id, SigTerm);
            if (!_process.WaitForExit(TimeSpan.FromSeconds(30)))
            {
                _process.Kill();
                _process.WaitForExit();
            }
        }

        _process.WaitForExit();
        int exitCode = _process.ExitCode;
        _process.Dispose();
        Assert.True(exitCode == 0, $"tcpdump exit code {exitCode}: {Stderr}");

        // A capture that lost packets in the kernel is not the session's traffic: said as such,
        // instead of as the gaps and mismatches the tests would then find in it.
        System.Text.RegularExpressions.Match dropped = System.Text.RegularExpressions.Regex.Match(Stderr, @"(\d+) packets? dropped by kernel");
        Assert.True(!dropped.Success || dropped.Groups[1].Value == "0", $"tcpdump could not keep up and the kernel dropped packets, so the capture is incomplete: {Stderr}");
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}
