using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace PgSpec.Cli.Tests.ServeConformance;

/// <summary>
/// <c>pgspec serve</c> as users run it: a process of its own on a free loopback port (it says
/// which on standard error), an in-memory database, trust authentication, and a PQtrace file of
/// every session (flushed per message), so tests can wait until a message has reached it.
/// </summary>
public sealed partial class ServeProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stderr = new();
    private readonly TaskCompletionSource<int> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task _readErrors;

    private ServeProcess(Process process, string traceFile)
    {
        _process = process;
        TraceFile = traceFile;
        _ = process.StandardOutput.ReadToEndAsync();
        _readErrors = Task.Run(async () =>
        {
            while (await process.StandardError.ReadLineAsync() is { } line)
            {
                lock (_stderr)
                {
                    _stderr.AppendLine(line);
                }

                if (ListeningOn().Match(line) is { Success: true } match)
                {
                    _listening.TrySetResult(int.Parse(match.Groups["port"].Value, CultureInfo.InvariantCulture));
                }
            }

            _listening.TrySetException(new InvalidOperationException("pgspec serve exited before it listened\n" + Stderr));
        });
    }

    /// <summary>The port it listens on (127.0.0.1).</summary>
    public int Port { get; private set; }

    /// <summary>The trace of all sessions: lines "PID TAB F|B TAB length TAB message ...".</summary>
    public string TraceFile { get; }

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

    /// <summary>Starts <c>pgspec serve</c> and waits until it listens.</summary>
    public static async Task<ServeProcess> StartAsync()
    {
        string trace = Path.Combine(Path.GetTempPath(), "pgspec-serve-trace-" + Guid.NewGuid().ToString("N") + ".txt");
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in new[] { Path.Combine(AppContext.BaseDirectory, "pgspec.dll"), "serve", "--listen", "127.0.0.1:0", "--trace", trace })
        {
            start.ArgumentList.Add(argument);
        }

        var serve = new ServeProcess(Process.Start(start)!, trace);
        try
        {
            serve.Port = await serve._listening.Task.WaitAsync(TimeSpan.FromMinutes(2));
        }
        catch
        {
            await serve.DisposeAsync();
            throw;
        }

        return serve;
    }

    /// <summary>The lines of the trace written so far (the server keeps the file open for writing).</summary>
    public string[] TraceLines()
    {
        using var stream = new FileStream(TraceFile, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd().Split('\n');
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        await _readErrors;
        _process.Dispose();
        File.Delete(TraceFile);
    }

    [GeneratedRegex(@"listening on 127\.0\.0\.1:(?<port>\d+)")]
    private static partial Regex ListeningOn();
}
