using System.Diagnostics;
using System.Text;
using System.Text.Json;
using PgSpec.Client;
using PgSpec.Servers;

namespace PgSpec.Cli.Tests.Replicate;

/// <summary>
/// The options that change what is streamed: --binary (values in binary format, as base64),
/// --no-messages, --origin none (PostgreSQL 16 and later); and SIGHUP, which reopens the --file.
/// </summary>
[Collection(ReplicateCollection.Name)]
public class ReplicateOptionsTests(ReplicateServers servers)
{
    [Fact]
    public async Task Binary_NoMessages_OriginNone_ChangeWhatIsStreamed()
    {
        PgServer server = await servers.Server(18);
        await using PgFrontendSession admin = await servers.AdminAsync(18);
        await admin.QueryAsync("""
            DROP PUBLICATION IF EXISTS op_pub;
            DROP TABLE IF EXISTS op_t;
            CREATE TABLE op_t (id int PRIMARY KEY, t text, a int[]);
            CREATE PUBLICATION op_pub FOR TABLE op_t;
            SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'op\_%';
            SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname = 'op_origin';
            SELECT pg_replication_origin_create('op_origin');
            """);
        string[] common = [.. ReplicateServers.Connect(server), "--publication", "op_pub", "--create-slot", "-v"];
        using ReplicateRun binary = ReplicateRun.Start([.. common, "--slot", "op_binary", "--binary"]);
        using ReplicateRun noMessages = ReplicateRun.Start([.. common, "--slot", "op_nomessages", "--no-messages"]);
        using ReplicateRun originNone = ReplicateRun.Start([.. common, "--slot", "op_originnone", "--origin", "none"]);
        ReplicateRun[] runs = [binary, noMessages, originNone];
        try
        {
            foreach (ReplicateRun run in runs)
            {
                await run.WaitForNoteAsync("streaming from slot");
            }

            await admin.QueryAsync("INSERT INTO op_t VALUES (1, 'héllo', '{1,2}')");
            await admin.QueryAsync("BEGIN; INSERT INTO op_t VALUES (2, 'two', NULL); SELECT pg_logical_emit_message(true, 'op', 'm'); COMMIT");
            await admin.QueryAsync("SELECT pg_replication_origin_session_setup('op_origin')");
            await admin.QueryAsync("INSERT INTO op_t VALUES (3, 'from elsewhere', NULL)");
            await admin.QueryAsync("SELECT pg_replication_origin_session_reset()");
            await admin.QueryAsync("INSERT INTO op_t VALUES (4, 'last', NULL)");
            foreach (ReplicateRun run in runs)
            {
                await run.Stdout.WaitForAsync(lines => lines.Any(l => l.Contains("\"op\":\"commit\"", StringComparison.Ordinal) && l.Contains("\"changes\":1", StringComparison.Ordinal)) && lines.Any(l => l.Contains("last", StringComparison.Ordinal) || l.Contains(Base64("last"), StringComparison.Ordinal)), "the last row", run.Exit);
                Assert.True(await run.StopAsync() == 0, run.ToString());
            }

            List<JsonElement> binaryLines = ReplicateOutput.Parse(binary.Stdout.Lines);
            JsonElement first = binaryLines.First(l => l.GetProperty("op").GetString() == "insert").GetProperty("new");
            Assert.Equal("AAAAAQ==", first.GetProperty("id").GetProperty("base64").GetString());
            Assert.Equal(Base64("héllo"), first.GetProperty("t").GetProperty("base64").GetString());
            Assert.Equal(JsonValueKind.String, first.GetProperty("a").GetProperty("base64").ValueKind);
            Assert.Equal(4, Ids(binaryLines).Count);
            Assert.Contains(binaryLines, l => l.GetProperty("op").GetString() == "message");

            List<JsonElement> noMessageLines = ReplicateOutput.Parse(noMessages.Stdout.Lines);
            Assert.DoesNotContain(noMessageLines, l => l.GetProperty("op").GetString() == "message");
            Assert.Equal(["1", "2", "3", "4"], Ids(noMessageLines));
            Assert.Contains(noMessageLines, l => l.TryGetProperty("origin", out JsonElement origin) && origin.GetString() == "op_origin");

            List<JsonElement> originNoneLines = ReplicateOutput.Parse(originNone.Stdout.Lines);
            Assert.Equal(["1", "2", "4"], Ids(originNoneLines));
            Assert.DoesNotContain(originNoneLines, l => l.TryGetProperty("origin", out _));

            // Over TLS, the server's certificate verified (verify-full against 127.0.0.1), then --drop-slot.
            using var folder = new TempDirectory();
            string ca = folder.Write("root.crt", Encoding.ASCII.GetBytes(server.CaCertificatePem!));
            using (ReplicateRun tls = ReplicateRun.Start([.. ReplicateServers.Connect(server), "--sslmode", "verify-full", "--sslrootcert", ca, "--slot", "op_binary", "--publication", "op_pub", "--endpos", "0/1"]))
            {
                Assert.True(await tls.Exit.WaitAsync(TimeSpan.FromMinutes(1)) == 0, tls.ToString());
            }

            using (ReplicateRun drop = ReplicateRun.Start([.. ReplicateServers.Connect(server), "--slot", "op_binary", "--drop-slot"]))
            {
                Assert.True(await drop.Exit.WaitAsync(TimeSpan.FromMinutes(1)) == 0, drop.ToString());
                Assert.Contains("dropped replication slot op_binary", drop.Stderr.Text, StringComparison.Ordinal);
            }

            Assert.Empty((await admin.QueryAsync("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'op_binary'"))[0].Rows);
        }
        finally
        {
            foreach (ReplicateRun run in runs)
            {
                run.Dispose();
                await run.Exit.WaitAsync(TimeSpan.FromMinutes(1));
            }

            await admin.QueryAsync("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'op\\_%' AND NOT active");
        }
    }

    [Fact]
    public async Task Sighup_ReopensTheFile_ForLogRotation()
    {
        PgServer server = await servers.Server(15);
        await using PgFrontendSession admin = await servers.AdminAsync(15);
        await admin.QueryAsync("""
            DROP PUBLICATION IF EXISTS hup_pub;
            DROP TABLE IF EXISTS hup_t;
            CREATE TABLE hup_t (id int PRIMARY KEY);
            CREATE PUBLICATION hup_pub FOR TABLE hup_t;
            SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'hup_slot';
            """);
        using var folder = new TempDirectory();
        string file = Path.Combine(folder.Path, "changes.jsonl");
        try
        {
            await using ReplicateProcess process = await ReplicateProcess.StartAsync([.. ReplicateServers.Connect(server), "--slot", "hup_slot", "--create-slot", "--publication", "hup_pub", "-f", file, "-v"]);
            await admin.QueryAsync("INSERT INTO hup_t VALUES (1)");
            await WaitForTextAsync(file, "\"id\":\"1\"");
            File.Move(file, file + ".1");
            process.Signal("HUP");
            await process.Stderr.WaitForAsync(lines => lines.Any(l => l.Contains("reopened " + file, StringComparison.Ordinal)), "the note of the reopening");
            await admin.QueryAsync("INSERT INTO hup_t VALUES (2)");
            await WaitForTextAsync(file, "\"id\":\"2\"");
            process.Signal("TERM");
            Assert.True(await process.WaitForExitAsync() == 0, process.ToString());

            Assert.Contains("\"id\":\"1\"", File.ReadAllText(file + ".1"), StringComparison.Ordinal);
            Assert.DoesNotContain("\"id\":\"2\"", File.ReadAllText(file + ".1"), StringComparison.Ordinal);
            Assert.DoesNotContain("\"id\":\"1\"", File.ReadAllText(file), StringComparison.Ordinal);
        }
        finally
        {
            await admin.QueryAsync("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'hup_slot' AND NOT active");
        }
    }

    private static string Base64(string text) => Convert.ToBase64String(Encoding.UTF8.GetBytes(text));

    private static List<string> Ids(List<JsonElement> lines)
        => lines.Where(l => l.GetProperty("op").GetString() == "insert")
            .Select(l => l.GetProperty("new").GetProperty("id") is { ValueKind: JsonValueKind.String } text
                ? text.GetString()!
                : System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(Convert.FromBase64String(l.GetProperty("new").GetProperty("id").GetProperty("base64").GetString()!)).ToString(System.Globalization.CultureInfo.InvariantCulture))
            .ToList();

    private static async Task WaitForTextAsync(string file, string text)
    {
        var watch = Stopwatch.StartNew();
        while (!(File.Exists(file) && File.ReadAllText(file).Contains(text, StringComparison.Ordinal)))
        {
            Assert.True(watch.Elapsed < TimeSpan.FromMinutes(2), $"{text} never reached {file}");
            await Task.Delay(20);
        }
    }
}
