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
