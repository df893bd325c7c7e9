using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using PgSpec.Client;
using PgSpec.Servers;

namespace PgSpec.Cli.Tests.Replicate;

/// <summary>
/// <c>pgspec replicate</c> against PostgreSQL 15 and 18, once per pgoutput protocol version the server
/// has (15: 1 to 3; 18: 1 to 4), all streaming at once while one workload runs: inserts, updates and
/// deletes of many types, an unchanged TOASTed value, REPLICA IDENTITY FULL, TRUNCATE, an enum
/// (Type message), transactional and other logical decoding messages, an origin, large transactions
/// streamed before they commit (one committed, one with a savepoint rolled back, one aborted),
/// and two-phase commit (committed, rolled back, and a large one). Every change the workload
/// committed appears once, in commit order, with its values; nothing rolled back appears; each run
/// stops cleanly with the slot's confirmed_flush_lsn where the run says it confirmed, after all it wrote.
/// </summary>
[Collection(ReplicateCollection.Name)]
public class ReplicateWorkloadTests(ReplicateServers servers)
{
    private static readonly JsonSerializerOptions s_json = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>A run of the command: its protocol version (null: the server's highest), streaming, two-phase and other options.</summary>
    private sealed record Config(string Name, int? Version, string? Streaming, bool TwoPhase, params string[] Extra);

    [Theory]
    [InlineData(15)]
    [InlineData(18)]
    public async Task EveryCommittedChange_AppearsOnceInCommitOrder_WithItsValues_ForEachProtocolVersion(int major)
    {
        PgServer server = await servers.Server(major);
        string p = $"wl{major}";
        Config[] configs = major == 15
            ?
            [
                new("v1", 1, null, false),
                new("v2", 2, "on", false, "--buffer-memory", "0"),
                new("v3", null, "on", true),
            ]
            :
            [
                new("v1", 1, null, false),
                new("v2", 2, "on", false),
                new("v3", 3, null, true),
                new("v4", null, "parallel", true, "--buffer-memory", "100kB"),
            ];

        await using PgFrontendSession admin = await servers.AdminAsync(major);
        await admin.QueryAsync($"""
            DROP PUBLICATION IF EXISTS {p}_pub;
            DROP TABLE IF EXISTS {p}_items, {p}_full, {p}_bulk;
            DROP TYPE IF EXISTS {p}_mood;
            CREATE TYPE {p}_mood AS ENUM ('sad', 'happy');
            CREATE TABLE {p}_items (id int PRIMARY KEY, n bigint, price numeric(10,2), ok bool, mood {p}_mood, note text,
                data bytea, tags text[], doc jsonb, day date, big text);
            CREATE TABLE {p}_full (a int, b text);
            ALTER TABLE {p}_full REPLICA IDENTITY FULL;
            CREATE TABLE {p}_bulk (g int PRIMARY KEY, pad text);
            CREATE PUBLICATION {p}_pub FOR TABLE {p}_items, {p}_full, {p}_bulk;
            """);
        await admin.QueryAsync($"SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname = '{p}_origin'");
        await admin.QueryAsync($"SELECT pg_replication_origin_create('{p}_origin')");
        foreach (Config config in configs)
        {
            await admin.QueryAsync($"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{p}_{config.Name}'");
        }

        var runs = new List<(Config Config, ReplicateRun Run)>();
        try
        {
            foreach (Config config in configs)
            {
                var args = new List<string>(ReplicateServers.Connect(server))
                {
                    "--slot", $"{p}_{config.Name}", "--create-slot", "--publication", $"{p}_pub", "--status-interval", "1", "-v",
                };
                if (config.Version is int version)
                {
                    args.AddRange(["--proto-version", version.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
                }

                if (config.Streaming is { } streaming)
                {
                    args.AddRange(streaming == "on" ? ["--streaming"] : ["--streaming", streaming]);
                }

                if (config.TwoPhase)
                {
                    args.Add("--two-phase");
                }

                args.AddRange(config.Extra);
                runs.Add((config, ReplicateRun.Start([.. args])));
            }

            foreach ((Config config, ReplicateRun run) in runs)
            {
                string[] notes = await run.WaitForNoteAsync("streaming from slot");
                int expectedVersion = config.Version ?? (major == 15 ? 3 : 4);
                Assert.Contains(notes, l => l.Contains($"proto_version '{expectedVersion}'", StringComparison.Ordinal));
            }

            List<string> expected = await RunWorkloadAsync(admin, server, p, runs.Where(r => r.Config.Streaming is not null).Select(r => r.Run).ToArray());

            foreach ((Config config, ReplicateRun run) in runs)
            {
                await run.Stdout.WaitForAsync(lines => lines.Any(l => l.Contains($"\"prefix\":\"{p}-end\"", StringComparison.Ordinal)), $"the end marker from {config.Name}", run.Exit);
                Assert.True(await run.StopAsync() == 0, run.ToString());
            }

            foreach ((Config config, ReplicateRun run) in runs)
            {
                List<JsonElement> lines = ReplicateOutput.Parse(run.Stdout.Lines);
                CheckRelationAndOrigin(lines, p);
                List<string> actual = CheckTransactions(lines, run);
                string label = $"PostgreSQL {major}, {config}";
                Assert.True(expected.Count == actual.Count, $"{label}: {actual.Count} changes, expected {expected.Count}\n" + FirstDifference(expected, actual));
                Assert.True(expected.SequenceEqual(actual), $"{label}:\n" + FirstDifference(expected, actual));

                long confirmed = ReplicateOutput.Confirmed(run.Stderr.Text);
                long last = lines.Where(l => l.GetProperty("op").GetString() is "commit").Select(l => ReplicateOutput.Lsn(l, "endLsn"))
                    .Concat(lines.Where(l => l.GetProperty("op").GetString() == "message" && !l.TryGetProperty("xid", out _)).Select(l => ReplicateOutput.Lsn(l, "lsn")))
                    .Max();
                Assert.True(confirmed >= last, $"{label}: confirmed {confirmed:X} before the last position written {last:X}");
                Assert.Equal(confirmed, await ReplicateOutput.SlotPositionAsync(admin, $"{p}_{config.Name}"));

                if (config.Streaming is not null)
                {
                    Assert.Contains("aborted: its changes are dropped", run.Stderr.Text, StringComparison.Ordinal);
                    Assert.Contains("subtransaction ", run.Stderr.Text, StringComparison.Ordinal);
                    Assert.Contains(lines, l => l.GetProperty("op").GetString() == "begin" && l.TryGetProperty("streamed", out _));
                }

                if (config.TwoPhase)
                {
                    Assert.Contains(lines, l => l.GetProperty("op").GetString() == "commit" && l.TryGetProperty("gid", out JsonElement gid) && gid.GetString() == $"{p}_g1");
                    Assert.Contains("ROLLBACK PREPARED", run.Stderr.Text, StringComparison.Ordinal);
                }
            }
        }
        finally
        {
            foreach ((Config _, ReplicateRun run) in runs)
            {
                run.Dispose();
                await run.Exit.WaitAsync(TimeSpan.FromMinutes(1));
            }

            foreach (Config config in configs)
            {
                await admin.QueryAsync($"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{p}_{config.Name}' AND NOT active");
            }
        }
    }

    /// <summary>Runs the workload; returns the changes the output must show, in order.</summary>
    private static async Task<List<string>> RunWorkloadAsync(PgFrontendSession admin, PgServer server, string p, ReplicateRun[] streaming)
    {
        var expected = new List<string>();
        string big = string.Concat(Enumerable.Range(1, 300).Select(i => Convert.ToHexStringLower(MD5.HashData(Encoding.ASCII.GetBytes(i.ToString(System.Globalization.CultureInfo.InvariantCulture))))));
        string items = $"{p}_items";
        string[] columns = ["id", "n", "price", "ok", "mood", "note", "data", "tags", "doc", "day", "big"];
        object?[] one = ["1", "10", "12.50", "t", "happy", "first", "\\x00ff", "{a,\"b c\"}", "{\"k\": [1, 2]}", "2024-02-29", null];
        object?[] two = ["2", null, null, null, null, null, null, null, null, null, null];

        await using PgFrontendSession writer = await PgFrontendSession.ConnectAsync(new PgConnectOptions { UnixSocketPath = server.SocketPath!, User = "postgres", Database = "postgres", CommandTimeout = TimeSpan.FromSeconds(120) });

        await writer.QueryAsync($"INSERT INTO {items} VALUES (1, 10, 12.5, true, 'happy', 'first', '\\x00ff', '{{a,\"b c\"}}', '{{\"k\":[1,2]}}', '2024-02-29', NULL), (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)");
        expected.Add(Change("insert", items, newRow: Row(columns, one)));
        expected.Add(Change("insert", items, newRow: Row(columns, two)));

        await writer.QueryAsync($"UPDATE {items} SET big = '{big}' WHERE id = 1");
        object?[] withBig = [.. one[..^1], big];
        expected.Add(Change("update", items, newRow: Row(columns, withBig)));

        // The TOASTed big is not sent again: 'u'.
        await writer.QueryAsync($"UPDATE {items} SET n = 11 WHERE id = 1");
        object?[] unchanged = [one[0], "11", .. one[2..^1], Unchanged];
        expected.Add(Change("update", items, newRow: Row(columns, unchanged)));

        await writer.QueryAsync($"UPDATE {items} SET id = 3 WHERE id = 2");
        expected.Add(Change("update", items, key: Row(["id"], ["2"]), newRow: Row(columns, ["3", .. two[1..]])));
        await writer.QueryAsync($"DELETE FROM {items} WHERE id = 3");
        expected.Add(Change("delete", items, key: Row(["id"], ["3"])));

        string full = $"{p}_full";
        await writer.QueryAsync($"BEGIN; INSERT INTO {full} VALUES (1, 'one'), (2, NULL); UPDATE {full} SET b = 'uno' WHERE a = 1; DELETE FROM {full} WHERE a = 2; COMMIT");
        expected.Add(Change("insert", full, newRow: Row(["a", "b"], ["1", "one"])));
        expected.Add(Change("insert", full, newRow: Row(["a", "b"], ["2", null])));
        expected.Add(Change("update", full, old: Row(["a", "b"], ["1", "one"]), newRow: Row(["a", "b"], ["1", "uno"])));
        expected.Add(Change("delete", full, old: Row(["a", "b"], ["2", null])));

        await writer.QueryAsync($"TRUNCATE {full} RESTART IDENTITY");
        expected.Add($"truncate [{full}] cascade=False restartIdentity=True");

        await writer.QueryAsync($"BEGIN; INSERT INTO {full} VALUES (3, 'three'); SELECT pg_logical_emit_message(true, '{p}', 'in a transaction'); COMMIT");
        expected.Add(Change("insert", full, newRow: Row(["a", "b"], ["3", "three"])));
        expected.Add($"message {p} transactional=True content=in a transaction");
        await writer.QueryAsync($"SELECT pg_logical_emit_message(false, '{p}', '\\x00ff'::bytea)");
        expected.Add($"message {p} transactional=False base64=AP8=");

        // Large transactions, streamed (with streaming on) before they commit.
        string bulk = $"{p}_bulk";
        await writer.QueryAsync($"INSERT INTO {bulk} SELECT g, repeat('x', 200) FROM generate_series(1, 1000) g");
        expected.AddRange(Enumerable.Range(1, 1000).Select(g => Change("insert", bulk, newRow: Row(["g", "pad"], [G(g), new string('x', 200)]))));

        // A savepoint rolled back once its changes were streamed: they are dropped, the rest commits.
        await writer.QueryAsync($"BEGIN; INSERT INTO {bulk} SELECT g, repeat('y', 200) FROM generate_series(1001, 1500) g; SAVEPOINT s; INSERT INTO {bulk} SELECT g, repeat('z', 200) FROM generate_series(1501, 2500) g");
        string xid = (await writer.QueryAsync("SELECT txid_current()"))[0].Text(0, 0)!;
        foreach (ReplicateRun run in streaming)
        {
            await run.Stderr.WaitForAsync(lines => lines.Any(l => l.Contains($"streamed block of transaction {xid}:", StringComparison.Ordinal) && l.Contains("subtransactions", StringComparison.Ordinal)), $"a streamed block of {xid} with its subtransaction", run.Exit);
        }

        await writer.QueryAsync($"ROLLBACK TO s; INSERT INTO {bulk} VALUES (2501, 'after'); COMMIT");
        expected.AddRange(Enumerable.Range(1001, 500).Select(g => Change("insert", bulk, newRow: Row(["g", "pad"], [G(g), new string('y', 200)]))));
        expected.Add(Change("insert", bulk, newRow: Row(["g", "pad"], ["2501", "after"])));

        // A large transaction aborted once part of it was streamed: nothing of it appears.
        await writer.QueryAsync($"BEGIN; INSERT INTO {bulk} SELECT g, repeat('a', 200) FROM generate_series(3001, 4000) g");
        string aborted = (await writer.QueryAsync("SELECT txid_current()"))[0].Text(0, 0)!;
        foreach (ReplicateRun run in streaming)
        {
            await run.Stderr.WaitForAsync(lines => lines.Any(l => l.Contains($"streamed block of transaction {aborted}:", StringComparison.Ordinal)), $"a streamed block of {aborted}", run.Exit);
        }

        await writer.QueryAsync("ROLLBACK");

        // Two-phase commit: committed, rolled back, and a large one.
        await writer.QueryAsync($"BEGIN; INSERT INTO {items} (id, note) VALUES (10, 'prepared'); PREPARE TRANSACTION '{p}_g1'");
        await writer.QueryAsync($"COMMIT PREPARED '{p}_g1'");
        expected.Add(Change("insert", items, newRow: Row(columns, ["10", null, null, null, null, "prepared", null, null, null, null, null])));
        await writer.QueryAsync($"BEGIN; INSERT INTO {items} (id, note) VALUES (11, 'rolled back'); PREPARE TRANSACTION '{p}_g2'");
        await writer.QueryAsync($"ROLLBACK PREPARED '{p}_g2'");
        await writer.QueryAsync($"BEGIN; INSERT INTO {bulk} SELECT g, repeat('p', 200) FROM generate_series(5001, 6000) g; PREPARE TRANSACTION '{p}_g3'");
        await writer.QueryAsync($"COMMIT PREPARED '{p}_g3'");
        expected.AddRange(Enumerable.Range(5001, 1000).Select(g => Change("insert", bulk, newRow: Row(["g", "pad"], [G(g), new string('p', 200)]))));

        // Changes that came from another origin (as a subscriber applies them).
        await writer.QueryAsync($"SELECT pg_replication_origin_session_setup('{p}_origin')");
        await writer.QueryAsync($"BEGIN; SELECT pg_replication_origin_xact_setup('0/ABCDEF', now()); INSERT INTO {items} (id, mood) VALUES (20, 'sad'); COMMIT");
        await writer.QueryAsync("SELECT pg_replication_origin_session_reset()");
        expected.Add(Change("insert", items, newRow: Row(columns, ["20", null, null, null, "sad", null, null, null, null, null, null]), origin: $"{p}_origin"));

        await writer.QueryAsync($"SELECT pg_logical_emit_message(false, '{p}-end', '')");
        expected.Add($"message {p}-end transactional=False content=");
        return expected;
    }

    private static readonly object Unchanged = new();

    /// <summary>The relation of the first change to the items table (names, types, key), and the begin line of the origin's transaction.</summary>
    private static void CheckRelationAndOrigin(List<JsonElement> lines, string p)
    {
        JsonElement insert = lines.First(l => l.GetProperty("op").GetString() == "insert" && l.GetProperty("relation").GetProperty("name").GetString() == $"{p}_items");
        JsonElement relation = insert.GetProperty("relation");
        Assert.Equal("default", relation.GetProperty("replicaIdentity").GetString());
        string columns = string.Join(", ", relation.GetProperty("columns").EnumerateArray().Select(c =>
            $"{c.GetProperty("name").GetString()} {c.GetProperty("type").GetString()}{(c.TryGetProperty("typeModifier", out JsonElement m) ? "(" + m.GetInt32() + ")" : "")}{(c.GetProperty("key").GetBoolean() ? " key" : "")}"));
        // numeric(10,2)'s typmod is ((10 << 16) | 2) + 4.
        Assert.Equal($"id int4 key, n int8, price numeric(655366), ok bool, mood public.{p}_mood, note text, data bytea, tags _text, doc jsonb, day date, big text", columns);
        Assert.True(relation.GetProperty("columns")[0].GetProperty("typeOid").GetUInt32() == 23, relation.ToString());

        JsonElement originBegin = lines.Single(l => l.GetProperty("op").GetString() == "begin" && l.TryGetProperty("origin", out _));
        Assert.Equal($"{p}_origin", originBegin.GetProperty("origin").GetString());
        Assert.Equal("0/00ABCDEF", originBegin.GetProperty("originLsn").GetString());
    }

    private static string G(int g) => g.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static string Row(string[] names, object?[] values)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            for (int i = 0; i < names.Length; i++)
            {
                json.WritePropertyName(names[i]);
                switch (values[i])
                {
                    case null:
                        json.WriteNullValue();
                        break;
                    case string text:
                        json.WriteStringValue(text);
                        break;
                    default:
                        json.WriteStartObject();
                        json.WriteBoolean("unchanged", true);
                        json.WriteEndObject();
                        break;
                }
            }

            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static string Change(string op, string table, string? key = null, string? old = null, string? newRow = null, string? origin = null)
        => $"{op} {table}" + (key is null ? "" : " key=" + key) + (old is null ? "" : " old=" + old) + (newRow is null ? "" : " new=" + newRow) + (origin is null ? "" : " origin=" + origin);

    /// <summary>
    /// Checks the shape of the output (every change inside its transaction's begin and commit, with
    /// its xid and commit; transactions in commit order; the commit's count) and returns the
    /// changes as the workload's notation has them.
    /// </summary>
    private static List<string> CheckTransactions(List<JsonElement> lines, ReplicateRun run)
    {
        var changes = new List<string>();
        JsonElement? begin = null;
        int count = 0;
        long lastEnd = 0;
        foreach (JsonElement line in lines)
        {
            string op = line.GetProperty("op").GetString()!;
            switch (op)
            {
                case "begin":
                    Assert.True(begin is null, $"begin inside a transaction: {line}\n{run}");
                    begin = line;
                    count = 0;
                    break;
                case "commit":
                    Assert.True(begin is { } b && b.GetProperty("xid").GetInt64() == line.GetProperty("xid").GetInt64(), $"commit without its begin: {line}");
                    Assert.Equal(count, line.GetProperty("changes").GetInt32());
                    Assert.Equal(begin!.Value.GetProperty("commitLsn").GetString(), line.GetProperty("commitLsn").GetString());
                    long end = ReplicateOutput.Lsn(line, "endLsn");
                    Assert.True(end > lastEnd, $"transactions out of commit order at {line}");
                    lastEnd = end;
                    begin = null;
                    break;
                case "message" when !line.TryGetProperty("xid", out _):
                    Assert.True(begin is null, $"a message outside transactions written inside one: {line}");
                    changes.Add(Describe(line));
                    break;
                default:
                    Assert.True(begin is { } open && open.GetProperty("xid").GetInt64() == line.GetProperty("xid").GetInt64(), $"a change outside its transaction: {line}");
                    Assert.Equal(begin.Value.GetProperty("commitTime").GetString(), line.GetProperty("commitTime").GetString());
                    count++;
                    changes.Add(Describe(line));
                    break;
            }
        }

        Assert.True(begin is null, "the output ends inside a transaction");
        return changes;
    }

    private static string Describe(JsonElement line)
    {
        string op = line.GetProperty("op").GetString()!;
        string origin = line.TryGetProperty("origin", out JsonElement o) ? " origin=" + o.GetString() : "";
        switch (op)
        {
            case "truncate":
                string tables = string.Join(",", line.GetProperty("relations").EnumerateArray().Select(r => r.GetProperty("name").GetString()));
                return $"truncate [{tables}] cascade={line.GetProperty("cascade").GetBoolean()} restartIdentity={line.GetProperty("restartIdentity").GetBoolean()}{origin}";
            case "message":
                string content = line.TryGetProperty("content", out JsonElement text) ? "content=" + text.GetString() : "base64=" + line.GetProperty("contentBase64").GetString();
                return $"message {line.GetProperty("prefix").GetString()} transactional={line.GetProperty("transactional").GetBoolean()} {content}{origin}";
            default:
                JsonElement relation = line.GetProperty("relation");
                Assert.Equal("public", relation.GetProperty("schema").GetString());
                string Part(string name) => line.TryGetProperty(name, out JsonElement value) ? $" {name}={value.GetRawText()}" : "";
                return $"{op} {relation.GetProperty("name").GetString()}{Part("key")}{Part("old")}{Part("new")}{origin}";
        }
    }

    private static string FirstDifference(List<string> expected, List<string> actual)
    {
        for (int i = 0; i < Math.Max(expected.Count, actual.Count); i++)
        {
            string? e = i < expected.Count ? expected[i] : null;
            string? a = i < actual.Count ? actual[i] : null;
            if (e != a)
            {
                static string Cut(string? s) => s is null ? "(none)" : s.Length > 400 ? s[..400] + "..." : s;
                return $"first difference at change {i}:\n  expected {Cut(e)}\n  actual   {Cut(a)}";
            }
        }

        return "(no difference)";
    }
}
