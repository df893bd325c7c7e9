using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace PgSpec.Cli.Tests.ServeClients;

/// <summary>
/// <c>pgspec serve</c> as a process of its own, as users run it: started with <c>dotnet pgspec.dll
/// serve ARGUMENTS</c>, ready once standard error says it listens (never after a fixed wait),
/// stopped with SIGTERM.
/// </summary>
public sealed class ServeProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stderr = new();
    private readonly TaskCompletionSource<string> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task _readErrors;
    private readonly Task<string> _stdout;

    private ServeProcess(Process process)
    {
        _process = process;
        _stdout = process.StandardOutput.ReadToEndAsync();
        _readErrors = Task.Run(async () =>
        {
            while (await process.StandardError.ReadLineAsync() is { } line)
            {
                lock (_stderr)
                {
                    _stderr.AppendLine(line);
                }

                if (line.Contains("listening on", StringComparison.Ordinal))
                {
                    _listening.TrySetResult(line);
                }
            }

            _listening.TrySetException(new InvalidOperationException("pgspec serve exited before it listened\n" + Stderr));
        });
    }

    /// <summary>Standard error so far: the notes about sessions that failed.</summary>
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

    public bool HasExited => _process.HasExited;

    /// <summary>Starts <c>pgspec serve ARGUMENTS</c> and waits (up to two minutes) until it listens.</summary>
    public static async Task<ServeProcess> StartAsync(IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "pgspec.dll"));
        start.ArgumentList.Add("serve");
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        var serve = new ServeProcess(Process.Start(start)!);
        try
        {
            await serve._listening.Task.WaitAsync(TimeSpan.FromMinutes(2));
        }
        catch
        {
            await serve.DisposeAsync();
            throw;
        }

        return serve;
    }

    /// <summary>SIGTERM, then waits for the exit; returns the exit code.</summary>
    public async Task<int> StopAsync()
    {
        if (!_process.HasExited)
        {
            RealServer.ExternalProcess.RunChecked("/bin/kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        }

        await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(1));
        await _readErrors;
        await _stdout;
        return _process.ExitCode;
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
