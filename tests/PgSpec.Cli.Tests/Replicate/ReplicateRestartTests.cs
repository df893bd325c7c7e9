using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using PgSpec.Cli.Tests.RealServer;
using PgSpec.Client;
using PgSpec.Servers;

namespace PgSpec.Cli.Tests.Replicate;

/// <summary>
/// <c>pgspec replicate</c> as a process of its own, stopped with SIGTERM while the server sends, and
/// started again on the same slot and output file: it exits 0; the slot's confirmed_flush_lsn is the
/// position the run confirmed, no further than what it wrote out (and, with a transaction prepared
/// but not committed, no further than its PREPARE, so that the server sends it again); the next run
/// goes on from there, and every transaction is in the file, once, except those that committed after
/// the confirmed position (which the protocol sends again).
/// </summary>
[Collection(ReplicateCollection.Name)]
public class ReplicateRestartTests(ReplicateServers servers)
{
    [Fact]
    public async Task Sigterm_ConfirmsOnlyWhatWasWritten_AndARestartGoesOnFromThere()
    {
        const int Major = 18;
        PgServer server = await servers.Server(Major);
        await using PgFrontendSession admin = await servers.AdminAsync(Major);
        const string P = "rs";
        await admin.QueryAsync($"""
            DROP PUBLICATION IF EXISTS {P}_pub;
            DROP TABLE IF EXISTS {P}_t;
            CREATE TABLE {P}_t (id int PRIMARY KEY, v text);
            CREATE PUBLICATION {P}_pub FOR TABLE {P}_t;
            """);
        await admin.QueryAsync($"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{P}_slot'");
        using var folder = new TempDirectory();
        string file = Path.Combine(folder.Path, "changes.jsonl");
        string[] args = [.. ReplicateServers.Connect(server), "--slot", $"{P}_slot", "--publication", $"{P}_pub", "--two-phase", "--streaming", "-f", file, "--status-interval", "1", "-v"];

        try
        {
            // First run: rows 1 to 10, a transaction prepared (row 100), rows 11 to 20; SIGTERM.
            await using (ReplicateProcess first = await ReplicateProcess.StartAsync([.. args, "--create-slot"]))
            {
                await Insert(admin, P, 1, 10);
                await admin.QueryAsync($"BEGIN; INSERT INTO {P}_t VALUES (100, 'prepared'); PREPARE TRANSACTION '{P}_gp'");
                await Insert(admin, P, 11, 20);
                await WaitForRowsAsync(file, 20);
                string[] notes = await first.Stderr.WaitForAsync(lines => lines.Any(l => l.Contains($"PREPARE TRANSACTION '{P}_gp'", StringComparison.Ordinal)), "the note of the PREPARE");
                string prepared = notes.First(l => l.Contains($"PREPARE TRANSACTION '{P}_gp'", StringComparison.Ordinal));
                long prepareLsn = ReplicateOutput.ParseLsn(Regex.Match(prepared, @"stays at ([0-9A-F]+/[0-9A-F]+)").Groups[1].Value);

                first.Signal("TERM");
                Assert.True(await first.WaitForExitAsync() == 0, first.ToString());
                long confirmed = ReplicateOutput.Confirmed(first.Stderr.Text);
                Assert.Equal(confirmed, await ReplicateOutput.SlotPositionAsync(admin, $"{P}_slot"));

                // Written: rows 1 to 20, not the prepared row; confirmed: exactly its PREPARE, which is after row 10's commit.
                List<JsonElement> written = ReplicateOutput.Parse(File.ReadAllLines(file));
                Assert.Equal(Enumerable.Range(1, 20), Rows(written).Select(r => r.Id));
                Assert.Equal(prepareLsn, confirmed);
                Assert.True(Rows(written).Single(r => r.Id == 10).End <= confirmed, "row 10 committed before the PREPARE, and was written");
                Assert.True(Rows(written).Single(r => r.Id == 11).End > confirmed, "row 11 committed after the PREPARE");
            }

            long firstConfirmed = await ReplicateOutput.SlotPositionAsync(admin, $"{P}_slot");

            // While stopped: the prepared transaction commits, rows 21 to 30. Second run, SIGTERM once row 30 is written.
            await admin.QueryAsync($"COMMIT PREPARED '{P}_gp'");
            await Insert(admin, P, 21, 30);
            long secondConfirmed;
            await using (ReplicateProcess second = await ReplicateProcess.StartAsync(args))
            {
                await WaitForRowsAsync(file, 30);
                second.Signal("TERM");
                Assert.True(await second.WaitForExitAsync() == 0, second.ToString());
                secondConfirmed = ReplicateOutput.Confirmed(second.Stderr.Text);
                Assert.Equal(secondConfirmed, await ReplicateOutput.SlotPositionAsync(admin, $"{P}_slot"));
            }

            List<(int Id, long End)> rows = Rows(ReplicateOutput.Parse(File.ReadAllLines(file)));
            Assert.True(rows.Max(r => r.End) <= secondConfirmed, "nothing prepared was left: every transaction written was confirmed");

            // Third run, to --endpos: rows 31 to 40, each once, nothing of the second run again.
            await Insert(admin, P, 31, 40);
            long end = await ReplicateOutput.InsertLsnAsync(admin);
            ProcessOutput third = ExternalProcess.Run("dotnet", [Path.Combine(AppContext.BaseDirectory, "pgspec.dll"), "replicate", .. args, "--endpos", Lsn(end)]);
            Assert.True(third.ExitCode == 0, third.ToString());

            rows = Rows(ReplicateOutput.Parse(File.ReadAllLines(file)));
            int[] expected = [.. Enumerable.Range(1, 40), 100];
            Assert.Equal(expected.Order(), rows.Select(r => r.Id).Distinct().Order());
            foreach (IGrouping<int, (int Id, long End)> copies in rows.GroupBy(r => r.Id))
            {
                // A transaction is written again only when it committed after the position confirmed when the run before stopped.
                if (copies.Count() > 1)
                {
                    Assert.True(copies.Count() == 2 && copies.First().End > firstConfirmed && copies.First().End <= secondConfirmed, $"row {copies.Key} written {copies.Count()} times");
                }
            }

            Assert.Single(rows, r => r.Id == 100);
            Assert.All(rows.Where(r => r.Id is <= 10 or > 20), r => Assert.Single(rows, o => o.Id == r.Id));
        }
        finally
        {
            await admin.QueryAsync($"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{P}_slot' AND NOT active");
            if ((await admin.QueryAsync($"SELECT 1 FROM pg_prepared_xacts WHERE gid = '{P}_gp'"))[0].Rows.Count > 0)
            {
                await admin.QueryAsync($"ROLLBACK PREPARED '{P}_gp'");
            }
        }
    }

    private static async Task Insert(PgFrontendSession admin, string p, int from, int to)
    {
        for (int id = from; id <= to; id++)
        {
            await admin.QueryAsync($"INSERT INTO {p}_t VALUES ({id}, 'row {id}')");
        }
    }

    /// <summary>The rows inserted, in the file's order, with the end of the transaction that wrote each.</summary>
    private static List<(int Id, long End)> Rows(List<JsonElement> lines)
    {
        var rows = new List<(int, long)>();
        var open = new List<int>();
        foreach (JsonElement line in lines)
        {
            switch (line.GetProperty("op").GetString())
            {
                case "insert":
                    open.Add(int.Parse(line.GetProperty("new").GetProperty("id").GetString()!, CultureInfo.InvariantCulture));
                    break;
                case "commit":
                    long end = ReplicateOutput.Lsn(line, "endLsn");
                    rows.AddRange(open.Select(id => (id, end)));
                    open.Clear();
                    break;
            }
        }

        return rows;
    }

    /// <summary>Waits until the file holds the commit of the row <paramref name="id"/>.</summary>
    private static async Task WaitForRowsAsync(string file, int id)
    {
        var watch = Stopwatch.StartNew();
        while (true)
        {
            string[] lines = File.Exists(file) ? File.ReadAllLines(file) : [];
            if (lines.Length > 0 && lines[^1].Length > 0 && Rows(ReplicateOutput.Parse(lines.Where(l => l.EndsWith('}')))).Any(r => r.Id == id))
            {
                return;
            }

            Assert.True(watch.Elapsed < TimeSpan.FromMinutes(2), $"row {id} never reached {file}:\n{string.Join('\n', lines.TakeLast(10))}");
            await Task.Delay(20);
        }
    }

    private static string Lsn(long lsn) => PgSpec.Cli.Replicate.ReplicationValues.FormatLsn(lsn);
}

/// <summary><c>pgspec replicate</c> as a process of its own: standard error watched line by line, signals sent with kill.</summary>
public sealed class ReplicateProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly Task _readErrors;
    private readonly Task _readOutput;

    private ReplicateProcess(Process process)
    {
        _process = process;
        _readErrors = Task.Run(async () =>
        {
            while (await process.StandardError.ReadLineAsync() is { } line)
            {
                Stderr.Append(line + "\n");
            }
        });
        _readOutput = Task.Run(async () =>
        {
            while (await process.StandardOutput.ReadLineAsync() is { } line)
            {
                Stdout.Append(line + "\n");
            }
        });
    }

    public Watched Stderr { get; } = new();

    public Watched Stdout { get; } = new();

    /// <summary>Starts <c>pgspec replicate ARGUMENTS</c> and waits until it streams.</summary>
    public static async Task<ReplicateProcess> StartAsync(string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "pgspec.dll"));
        start.ArgumentList.Add("replicate");
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        var process = new ReplicateProcess(Process.Start(start)!);
        await process.Stderr.WaitForAsync(lines => lines.Any(l => l.Contains("streaming from slot", StringComparison.Ordinal)), "the start of streaming", process._process.WaitForExitAsync());
        return process;
    }

    public void Signal(string name) => ExternalProcess.Run("/bin/kill", ["-" + name, _process.Id.ToString(CultureInfo.InvariantCulture)]);

    public async Task<int> WaitForExitAsync()
    {
        await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(1));
        await _readErrors;
        await _readOutput;
        return _process.ExitCode;
    }

    public override string ToString() => $"--- stderr\n{Stderr.Text}";

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }
}
