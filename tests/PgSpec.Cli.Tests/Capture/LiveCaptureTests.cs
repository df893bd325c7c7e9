using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using PgSpec.Protocol;

namespace PgSpec.Cli.Tests.Capture;

/// <summary><c>pgspec capture --interface</c> as a process of its own, stopped as services are stopped.</summary>
public class LiveCaptureTests
{
    [Fact]
    public async Task ALiveCapture_DecodesWhatPasses_AndStopsOnSigtermPrintingWhatItSaw()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in (string[])[Path.Combine(AppContext.BaseDirectory, "pgspec.dll"), "capture", "--interface", "lo", "--port", port.ToString(CultureInfo.InvariantCulture)])
        {
            start.ArgumentList.Add(argument);
        }

        using Process capture = Process.Start(start)!;
        var stdout = new StringBuilder();
        var seen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Task reading = Task.Run(async () =>
        {
            while (await capture.StandardOutput.ReadLineAsync() is { } line)
            {
                lock (stdout)
                {
                    stdout.AppendLine(line);
                }

                if (line.Contains("\tQuery\t", StringComparison.Ordinal))
                {
                    seen.TrySetResult();
                }
            }
        });
        Task<string> stderr = capture.StandardError.ReadToEndAsync();
        try
        {
            // The capture starts at some point after the process: talk until it has seen a Query.
            var deadline = Stopwatch.StartNew();
            while (!seen.Task.IsCompleted && deadline.Elapsed < TimeSpan.FromMinutes(1) && !capture.HasExited)
            {
                Converse(listener);
                await Task.WhenAny(seen.Task, Task.Delay(TimeSpan.FromMilliseconds(200)));
            }

            Assert.True(seen.Task.IsCompleted, $"no Query line; stdout:\n{stdout}\nstderr:\n{(capture.HasExited ? await stderr : "(running)")}");

            // Nothing passes any more: SIGTERM must still end the wait for the next packet.
            RealServer.ExternalProcess.RunChecked("/bin/kill", ["-TERM", capture.Id.ToString(CultureInfo.InvariantCulture)]);
            await capture.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(1));
            await reading;

            Assert.Equal(0, capture.ExitCode);
            Assert.Contains("PostgreSQL connections", await stderr, StringComparison.Ordinal);
            Assert.Contains("F\t14\tQuery\t \"SELECT 42\"", stdout.ToString(), StringComparison.Ordinal);
        }
        finally
        {
            if (!capture.HasExited)
            {
                capture.Kill(entireProcessTree: true);
            }
        }
    }

    [Fact]
    public async Task AnIdleLiveCapture_TakesNoProcessorTime_WhileOtherTrafficPasses()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        using var other = new TcpListener(IPAddress.Loopback, 0);
        other.Start();
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in (string[])[Path.Combine(AppContext.BaseDirectory, "pgspec.dll"), "capture", "--interface", "lo", "--port", ((IPEndPoint)listener.LocalEndpoint).Port.ToString(CultureInfo.InvariantCulture)])
        {
            start.ArgumentList.Add(argument);
        }

        using Process capture = Process.Start(start)!;
        Task<string> stderr = capture.StandardError.ReadToEndAsync();
        try
        {
            // Capturing once it has seen a Query of its port.
            var deadline = Stopwatch.StartNew();
            Task<string?> line = capture.StandardOutput.ReadLineAsync();
            bool seen = false;
            while (!seen && deadline.Elapsed < TimeSpan.FromMinutes(1) && !capture.HasExited)
            {
                Converse(listener);
                while (await Task.WhenAny(line, Task.Delay(TimeSpan.FromMilliseconds(200))) == line && await line is { } text)
                {
                    seen |= text.Contains("\tQuery\t", StringComparison.Ordinal);
                    line = capture.StandardOutput.ReadLineAsync();
                }
            }

            Assert.True(seen, "the live capture printed no Query");

            // Three seconds of connections to another port: the kernel keeps them from the
            // capture, which waits without running (a loop that polled would take ~300 ticks).
            long before = ProcessorTicks(capture.Id);
            var window = Stopwatch.StartNew();
            int conversations = 0;
            while (window.Elapsed < TimeSpan.FromSeconds(3))
            {
                Converse(other);
                conversations++;
                await Task.Delay(5);
            }

            long used = ProcessorTicks(capture.Id) - before;
            Assert.True(used <= 10, $"the capture took {used} ticks of processor time (1/100 s each) in {window.Elapsed.TotalSeconds:0.0} s while {conversations} conversations went to another port");
        }
        finally
        {
            if (!capture.HasExited)
            {
                capture.Kill(entireProcessTree: true);
            }
        }

        await capture.WaitForExitAsync();
        _ = await stderr;
    }

    /// <summary>The processor time a process has taken, user and system, in clock ticks (utime and stime of /proc/PID/stat).</summary>
    private static long ProcessorTicks(int pid)
    {
        string stat = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");

        // The fields after the command name (in parentheses, which may hold spaces): state is the third field, utime the 14th.
        string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
    }

    /// <summary>A login without password, one Query and its answer, over a new loopback connection.</summary>
    private static void Converse(TcpListener listener)
    {
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        client.Connect(listener.LocalEndpoint);
        using Socket server = listener.AcceptSocket();
        Turn(client, server, Conversation.Bytes(Conversation.Startup));
        Turn(server, client, Conversation.Bytes(new AuthenticationOk(), new ReadyForQuery(TransactionStatus.Idle)));
        Turn(client, server, new Query("SELECT 42").ToArray());
        Turn(server, client, Conversation.Bytes(new CommandComplete("SELECT 0"), new ReadyForQuery(TransactionStatus.Idle)));
        client.Shutdown(SocketShutdown.Both);
    }

    private static void Turn(Socket from, Socket to, byte[] bytes)
    {
        from.Send(bytes);
        byte[] buffer = new byte[bytes.Length];
        for (int read = 0; read < buffer.Length;)
        {
            read += to.Receive(buffer, read, buffer.Length - read, SocketFlags.None);
        }
    }
}
