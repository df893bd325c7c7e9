using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using PgSpec.Cli.Tests.RealServer;

namespace PgSpec.Proxy.Tests;

/// <summary>
/// <c>pgspec proxy</c> as a process of its own, as users run it: its standard error read line by
/// line (tests wait for a line, never for a time), signals sent with kill, and its memory read from /proc.
/// </summary>
public sealed class ProxyProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stderr = new();
    private readonly List<(Func<string, bool> Match, TaskCompletionSource<string> Seen)> _waiters = [];
    private readonly Task<string> _stdout;
    private readonly Task _readErrors;

    private ProxyProcess(Process process, bool readStdout)
    {
        _process = process;
        _stdout = readStdout ? process.StandardOutput.ReadToEndAsync() : Task.FromResult("(not read)");
        _readErrors = Task.Run(async () =>
        {
            while (await process.StandardError.ReadLineAsync() is { } line)
            {
                lock (_stderr)
                {
                    _stderr.AppendLine(line);
                    foreach (var waiter in _waiters.Where(w => w.Match(line)).ToArray())
                    {
                        _waiters.Remove(waiter);
                        waiter.Seen.TrySetResult(line);
                    }
                }
            }

            lock (_stderr)
            {
                foreach (var waiter in _waiters)
                {
                    waiter.Seen.TrySetException(new InvalidOperationException("the proxy exited before writing the line waited for\n" + _stderr));
                }

                _waiters.Clear();
            }
        });
    }

    public int Pid => _process.Id;

    /// <summary>Standard error so far.</summary>
    public string Stderr
    {
        get
        {
            lock (_stderr)
            {
                return _stderr.ToString();
            }
        }
    }

    /// <summary>Starts <c>pgspec proxy ARGUMENTS</c> and waits until it listens.</summary>
    public static Task<ProxyProcess> StartAsync(params string[] arguments) => StartAsync(arguments, readStdout: true, openFiles: null);

    /// <summary>
    /// Starts <c>pgspec proxy ARGUMENTS</c> and waits until it listens; standard output is left
    /// unread (a pipe nobody reads) unless <paramref name="readStdout"/>, and the limit of open
    /// files is <paramref name="openFiles"/> when given.
    /// </summary>
    public static async Task<ProxyProcess> StartAsync(string[] arguments, bool readStdout, int? openFiles)
    {
        var start = new ProcessStartInfo(openFiles is null ? "dotnet" : "/usr/bin/prlimit")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (openFiles is { } limit)
        {
            start.ArgumentList.Add($"--nofile={limit}:{limit}");
            start.ArgumentList.Add("dotnet");
        }

        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "pgspec.dll"));
        start.ArgumentList.Add("proxy");
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        var proxy = new ProxyProcess(Process.Start(start)!, readStdout);
        await proxy.WaitForLineAsync(line => line.Contains("listening on", StringComparison.Ordinal));
        return proxy;
    }

    /// <summary>Waits for a line of standard error (one already written counts), up to two minutes.</summary>
    public Task<string> WaitForLineAsync(Func<string, bool> match)
    {
        var seen = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_stderr)
        {
            if (_stderr.ToString().Split('\n').FirstOrDefault(line => match(line.TrimEnd('\r'))) is { } line)
            {
                return Task.FromResult(line);
            }

            if (_readErrors.IsCompleted)
            {
                throw new InvalidOperationException("the proxy has exited\n" + _stderr);
            }

            _waiters.Add((match, seen));
        }

        return seen.Task.WaitAsync(TimeSpan.FromMinutes(2));
    }

    /// <summary>Sends a signal (TERM, HUP, USR1, ...).</summary>
    /// <summary>The port the proxy listens on, from its "listening on HOST:0 (HOST:PORT)" line (a proxy started on port 0).</summary>
    public async Task<int> ListeningPortAsync()
    {
        string line = await WaitForLineAsync(l => l.Contains("listening on", StringComparison.Ordinal));
        System.Text.RegularExpressions.Match port = System.Text.RegularExpressions.Regex.Match(line, @"\(.*:(\d+)\)");
        Assert.True(port.Success, "no port in: " + line);
        return int.Parse(port.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    public void Signal(string name) => ExternalProcess.RunChecked("/bin/kill", ["-" + name, Pid.ToString(CultureInfo.InvariantCulture)]);

    public bool HasExited => _process.HasExited;

    /// <summary>Resident memory now, in bytes (VmRSS).</summary>
    public long ResidentBytes => Status("VmRSS:");

    /// <summary>The most resident memory so far, in bytes (VmHWM), since the start or <see cref="ResetPeak"/>.</summary>
    public long PeakBytes => Status("VmHWM:");

    /// <summary>Starts counting the peak anew (Linux: 5 into clear_refs).</summary>
    public void ResetPeak() => File.WriteAllText($"/proc/{Pid}/clear_refs", "5");

    private long Status(string field)
    {
        string line = File.ReadAllLines($"/proc/{Pid}/status").Single(l => l.StartsWith(field, StringComparison.Ordinal));
        return long.Parse(line[field.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
    }

    /// <summary>SIGTERM, then waits for the exit; returns the exit code and standard output.</summary>
    public async Task<(int ExitCode, string Stdout)> StopAsync()
    {
        if (!_process.HasExited)
        {
            Signal("TERM");
        }

        await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(1));
        await _readErrors;
        return (_process.ExitCode, await _stdout);
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }

    /// <summary>A loopback port nobody listens on now.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
