using System.Globalization;
using System.Text;
using System.Text.Json;
using PgSpec.Cli.Replicate;
using PgSpec.Client;
using PgSpec.Servers;

namespace PgSpec.Cli.Tests.Replicate;

/// <summary>
/// PostgreSQL 15 (the local binaries) and 18 (from npm, in the cache) for the tests of
/// <c>pgspec replicate</c>, started once for all of them: wal_level=logical (as every provisioned
/// server), prepared transactions allowed, and logical_decoding_work_mem at its least (64kB), so
/// that a transaction of a few hundred kilobytes is streamed.
/// </summary>
public sealed class ReplicateServers : IAsyncLifetime
{
    private readonly Dictionary<int, Task<PgServer>> _servers = [];

    public Task InitializeAsync()
    {
        var settings = new Dictionary<string, string>
        {
            ["max_prepared_transactions"] = "10",
            ["logical_decoding_work_mem"] = "64kB",
            ["max_replication_slots"] = "30",
            ["max_wal_senders"] = "30",
        };
        foreach (int major in new[] { 15, 18 })
        {
            _servers[major] = new LocalPgServerProvider().StartAsync(new PgServerOptions { MajorVersion = major, Settings = settings }, CancellationToken.None);
        }

        return Task.CompletedTask;
    }

    public Task<PgServer> Server(int major) => _servers[major];

    /// <summary>A superuser session over the server's Unix socket.</summary>
    public async Task<PgFrontendSession> AdminAsync(int major)
    {
        PgServer server = await Server(major);
        return await PgFrontendSession.ConnectAsync(new PgConnectOptions
        {
            UnixSocketPath = server.SocketPath!,
            User = "postgres",
            Database = "postgres",
            CommandTimeout = TimeSpan.FromSeconds(120),
        });
    }

    /// <summary>-d with the connection string of the replication role (SCRAM over TCP, without TLS).</summary>
    public static string[] Connect(PgServer server)
    {
        PgRole role = server.ReplicationRole;
        return ["-d", $"host={server.Host} port={server.Port.ToString(CultureInfo.InvariantCulture)} dbname=postgres user={role.Name} password={role.Password} sslmode=disable"];
    }

    public async Task DisposeAsync()
    {
        foreach (Task<PgServer> server in _servers.Values)
        {
            try
            {
                await (await server).DisposeAsync();
            }
            catch (PgProvisionException)
            {
                // It never started; the tests that needed it failed with the reason.
            }
        }
    }
}

[CollectionDefinition(Name)]
public sealed class ReplicateCollection : ICollectionFixture<ReplicateServers>
{
    public const string Name = "replicate";
}

/// <summary>Text written by another thread, which a test can wait on (a condition, never a time).</summary>
public sealed class Watched
{
    private readonly StringBuilder _text = new();
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public string Text
    {
        get
        {
            lock (_text)
            {
                return _text.ToString();
            }
        }
    }

    /// <summary>The complete lines so far.</summary>
    public string[] Lines
    {
        get
        {
            string text = Text;
            int end = text.LastIndexOf('\n');
            return end < 0 ? [] : text[..end].Split('\n');
        }
    }

    public void Append(string text)
    {
        TaskCompletionSource changed;
        lock (_text)
        {
            _text.Append(text);
            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        changed.TrySetResult();
    }

    /// <summary>Waits until <paramref name="condition"/> holds for the complete lines (or <paramref name="ended"/> completes, or two minutes pass).</summary>
    public async Task<string[]> WaitForAsync(Func<string[], bool> condition, string what, Task? ended = null)
    {
        DateTime deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
        while (true)
        {
            Task changed;
            lock (_text)
            {
                changed = _changed.Task;
            }

            string[] lines = Lines;
            if (condition(lines))
            {
                return lines;
            }

            TimeSpan left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || ended is { IsCompleted: true })
            {
                throw new TimeoutException($"waited for {what}; got:\n{string.Join('\n', lines.TakeLast(40))}");
            }

            await Task.WhenAny(changed, Task.Delay(left), ended ?? Task.Delay(Timeout.Infinite));
        }
    }
}

/// <summary>A stream that keeps what is written in a <see cref="Watched"/> (standard output of an in-process run).</summary>
public sealed class WatchedStream(Watched target) : Stream
{
    private readonly Decoder _decoder = Encoding.UTF8.GetDecoder();

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        lock (_decoder)
        {
            char[] chars = new char[_decoder.GetCharCount(buffer, flush: false)];
            int n = _decoder.GetChars(buffer, chars, flush: false);
            target.Append(new string(chars, 0, n));
        }
    }

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();
}

/// <summary>A text writer that keeps what is written in a <see cref="Watched"/> (standard error of an in-process run).</summary>
public sealed class WatchedWriter(Watched target) : TextWriter
{
    public override Encoding Encoding => Encoding.UTF8;

    public override void Write(char value) => target.Append(value.ToString());

    public override void Write(string? value) => target.Append(value ?? "");

    public override void WriteLine(string? value) => target.Append((value ?? "") + "\n");
}

/// <summary><c>pgspec replicate</c> run in-process on a thread of its own, stopped by a token as SIGTERM stops the tool.</summary>
public sealed class ReplicateRun : IDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource<int> _exit = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private ReplicateRun(string[] args)
    {
        Args = args;
        var thread = new Thread(() =>
        {
            try
            {
                _exit.SetResult(PgSpecCommandLine.Run(args, Stream.Null, new WatchedStream(Stdout), new WatchedWriter(Stderr), _stop.Token));
            }
            catch (Exception e)
            {
                _exit.SetException(e);
            }
        })
        { IsBackground = true, Name = "pgspec replicate " + string.Join(' ', args.Where(a => !a.Contains("password", StringComparison.Ordinal))) };
        thread.Start();
    }

    public string[] Args { get; }

    public Watched Stdout { get; } = new();

    public Watched Stderr { get; } = new();

    public Task<int> Exit => _exit.Task;

    public static ReplicateRun Start(params string[] args) => new(["replicate", .. args]);

    /// <summary>Stops the run as SIGTERM does, and waits for its exit code.</summary>
    public async Task<int> StopAsync()
    {
        await _stop.CancelAsync();
        return await Exit.WaitAsync(TimeSpan.FromMinutes(2));
    }

    /// <summary>Waits for a line of standard error that contains <paramref name="text"/>.</summary>
    public Task<string[]> WaitForNoteAsync(string text)
        => Stderr.WaitForAsync(lines => lines.Any(l => l.Contains(text, StringComparison.Ordinal)), $"'{text}' on standard error of {string.Join(' ', Args)}", Exit);

    public override string ToString() => $"pgspec {string.Join(' ', Args)}\n--- stderr\n{Stderr.Text}";

    /// <summary>Stops the run, if it still runs (without waiting for it).</summary>
    public void Dispose()
    {
        if (!_exit.Task.IsCompleted)
        {
            _stop.Cancel();
        }
    }
}

/// <summary>The JSON lines of <c>pgspec replicate</c>.</summary>
public static class ReplicateOutput
{
    public static List<JsonElement> Parse(IEnumerable<string> lines)
        => lines.Where(l => l.Length > 0).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();

    public static long Lsn(JsonElement element, string property)
    {
        Assert.True(ReplicationValues.TryParseLsn(element.GetProperty(property).GetString(), out long lsn), $"{property} in {element}");
        return lsn;
    }

    public static long ParseLsn(string text)
    {
        Assert.True(ReplicationValues.TryParseLsn(text, out long lsn), text);
        return lsn;
    }

    /// <summary>The position the run's last line on standard error says it confirmed.</summary>
    public static long Confirmed(string stderr)
    {
        System.Text.RegularExpressions.Match match = System.Text.RegularExpressions.Regex.Match(stderr, @"stopped \([^)]*\); confirmed ([0-9A-F]+/[0-9A-F]+) to the server");
        Assert.True(match.Success, "no 'stopped ...; confirmed' line in:\n" + stderr);
        return ParseLsn(match.Groups[1].Value);
    }

    /// <summary>The slot's confirmed_flush_lsn (or restart_lsn for a physical slot) once no process streams from it.</summary>
    public static async Task<long> SlotPositionAsync(PgFrontendSession admin, string slot)
    {
        DateTime deadline = DateTime.UtcNow + TimeSpan.FromMinutes(1);
        while (true)
        {
            PgResult result = (await admin.QueryAsync($"SELECT active, coalesce(confirmed_flush_lsn, restart_lsn) FROM pg_replication_slots WHERE slot_name = '{slot}'"))[0];
            Assert.True(result.Rows.Count == 1, $"slot {slot} does not exist");
            if (result.Text(0, 0) == "f")
            {
                return ParseLsn(result.Text(0, 1)!);
            }

            Assert.True(DateTime.UtcNow < deadline, $"slot {slot} is still active a minute after its client stopped");
            await admin.QueryAsync("SELECT pg_sleep(0.05)");
        }
    }

    public static async Task<long> InsertLsnAsync(PgFrontendSession admin)
        => ParseLsn((await admin.QueryAsync("SELECT pg_current_wal_insert_lsn()"))[0].Text(0, 0)!);
}
