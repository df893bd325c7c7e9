using System.Diagnostics;
using PgSpec.Client;
using PgSpec.Protocol;
using PgSpec.Protocol.PgOutput;
using PgSpec.Protocol.Replication;
using PgSpec.Servers;

namespace PgSpec.Integration.Tests;

/// <summary>
/// Logical replication from real servers: START_REPLICATION with pgoutput in each protocol version and
/// streaming mode the server has, over a session in copy-both mode. Every CopyData decodes as a
/// replication message and every XLogData's data as a pgoutput message, with the context following
/// the streamed blocks, and each re-encodes to exactly the bytes the server sent; the client's
/// standby status updates are encoded by the same codec.
/// </summary>
[Collection(ServerCollection.Name)]
public class ReplicationStreamTests(ServerFixture fixture)
{
    [Theory]
    [InlineData(15, 1, "off", false)]
    [InlineData(15, 2, "on", false)]
    [InlineData(15, 3, "on", true)]
    [InlineData(18, 1, "off", true)]
    [InlineData(18, 4, "on", false)]
    [InlineData(18, 4, "parallel", true)]
    public async Task StartReplication_Pgoutput_EveryMessageDecodesAndReencodesByteForByte(int major, int version, string streaming, bool binary)
    {
        PgServer server = await fixture.Server(major);
        PgRole role = server.ReplicationRole;
        var options = new PgConnectOptions
        {
            Host = server.Host,
            Port = server.Port,
            User = role.Name,
            Password = role.Password,
            Database = "postgres",
            SslMode = PgSslMode.Disable,
            CommandTimeout = TimeSpan.FromSeconds(60),
        };
        var superuser = new PgConnectOptions { UnixSocketPath = server.SocketPath!, User = "postgres", Database = "postgres", CommandTimeout = TimeSpan.FromSeconds(60) };
        string name = $"pgspec_repl_{major}_{version}_{streaming}_{(binary ? "b" : "t")}";

        await using (PgFrontendSession admin = await PgFrontendSession.ConnectAsync(superuser))
        {
            await admin.QueryAsync($"""
                DROP PUBLICATION IF EXISTS {name}_p;
                DROP TABLE IF EXISTS {name}_key, {name}_full;
                DROP TYPE IF EXISTS {name}_mood;
                CREATE TYPE {name}_mood AS ENUM ('sad', 'happy');
                CREATE TABLE {name}_key (id int PRIMARY KEY, n int, mood {name}_mood, big text);
                CREATE TABLE {name}_full (a int, b text);
                ALTER TABLE {name}_full REPLICA IDENTITY FULL;
                CREATE PUBLICATION {name}_p FOR TABLE {name}_key, {name}_full;
                """);
        }

        PgOutputStreaming mode = streaming switch { "on" => PgOutputStreaming.On, "parallel" => PgOutputStreaming.Parallel, _ => PgOutputStreaming.Off };
        await using PgFrontendSession stream = await PgFrontendSession.ConnectAsync(options with
        {
            Parameters = [new("replication", "database"), new("logical_decoding_work_mem", "64kB")],
        });
        await stream.QueryAsync($"CREATE_REPLICATION_SLOT {name} TEMPORARY LOGICAL pgoutput");

        await using PgFrontendSession writer = await PgFrontendSession.ConnectAsync(superuser);
        {
            string big = "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 300) i)";
            await writer.QueryAsync($"INSERT INTO {name}_key VALUES (1, 1, 'happy', {big}), (2, 2, NULL, NULL)");
            await writer.QueryAsync($"UPDATE {name}_key SET n = n + 1 WHERE id = 1");            // the TOASTed big is unchanged: 'u'
            await writer.QueryAsync($"UPDATE {name}_key SET id = 3 WHERE id = 2");              // the key changes: 'K'
            await writer.QueryAsync($"INSERT INTO {name}_full VALUES (1, 'one'), (2, NULL)");
            await writer.QueryAsync($"UPDATE {name}_full SET b = 'uno' WHERE a = 1");           // the whole old row: 'O'
            await writer.QueryAsync($"DELETE FROM {name}_full WHERE a = 2");
            await writer.QueryAsync($"DELETE FROM {name}_key WHERE id = 3");
            await writer.QueryAsync($"TRUNCATE {name}_full");
            await writer.QueryAsync("SELECT pg_logical_emit_message(true, 'pgspec', 'in a transaction'), pg_logical_emit_message(false, 'pgspec', '\\x00ff'::bytea)");

            // Over logical_decoding_work_mem: streamed when streaming is on, then committed.
            await writer.QueryAsync($"INSERT INTO {name}_full SELECT g, repeat('x', 200) FROM generate_series(1, 2000) g");
            await writer.QueryAsync("SELECT pg_logical_emit_message(false, 'pgspec-ready', '')");
        }

        string start = $"START_REPLICATION SLOT {name} LOGICAL 0/0 (proto_version '{version}', publication_names '{name}_p', messages 'true'"
            + (binary ? ", binary 'true'" : "")
            + (mode == PgOutputStreaming.Off ? "" : $", streaming '{streaming}'") + ")";
        await stream.StartCopyBothAsync(start);

        var context = new PgOutputContext(version, mode);
        var seen = new Dictionary<PgOutputMessageKind, int>();
        var replication = new HashSet<ReplicationMessageKind>();
        var columnKinds = new HashSet<TupleValueKind>();
        var oldKinds = new HashSet<OldTupleKind?>();
        bool done = false;
        bool aborting = false;
        bool streamedInsert = false;
        StreamAbort? abort = null;
        var watch = Stopwatch.StartNew();
        while (!done && watch.Elapsed < TimeSpan.FromSeconds(60))
        {
            IBackendMessage received = await stream.ReceiveAsync();
            CopyData data = Assert.IsType<CopyData>(received);
            Assert.True(ReplicationMessages.TryDecode(data, PgDirection.Backend, out IReplicationMessage? outer, out PgDecodeError error), error.ToString());
            Assert.Equal(data.Data.ToArray(), outer.ToArray());
            replication.Add(outer.Kind);
            if (outer is PrimaryKeepalive keepalive)
            {
                stream.Send(new CopyData(new StandbyStatusUpdate(keepalive.WalEnd, keepalive.WalEnd, keepalive.WalEnd, keepalive.SendTime, 0).ToArray()));
                await stream.FlushAsync();
                continue;
            }

            XLogData wal = Assert.IsType<XLogData>(outer);
            bool inStream = context.InStreamedTransaction;
            Assert.True(PgOutputMessages.TryDecodeNext(wal, context, out IPgOutputMessage? message, out error), $"{error} in {Convert.ToHexString(wal.Data.Span)}");
            Assert.Equal(wal.Data.ToArray(), message.ToArray());
            seen[message.Kind] = seen.GetValueOrDefault(message.Kind) + 1;
            switch (message)
            {
                case Insert insert:
                    streamedInsert |= inStream && insert.Xid is not null;
                    Assert.Equal(inStream, insert.Xid is not null);
                    columnKinds.UnionWith(insert.NewTuple.Columns.Select(c => c.Kind));
                    break;
                case Update update:
                    oldKinds.Add(update.OldTupleKind);
                    columnKinds.UnionWith(update.NewTuple.Columns.Select(c => c.Kind));
                    break;
                case Delete delete:
                    oldKinds.Add(delete.OldTupleKind);
                    break;
                case StreamAbort streamAbort:
                    abort = streamAbort;
                    break;
                case LogicalMessage { Prefix: "pgspec-ready" }:
                    // A large transaction that aborts once part of it is streamed (PostgreSQL 18 streams
                    // no transaction already known to have aborted).
                    aborting = true;
                    await writer.QueryAsync($"BEGIN; INSERT INTO {name}_full SELECT g, repeat('y', 200) FROM generate_series(1, 2000) g");
                    if (mode == PgOutputStreaming.Off)
                    {
                        await RollBackAsync(writer);
                        aborting = false;
                    }

                    break;
                case StreamStop when aborting:
                    await RollBackAsync(writer);
                    aborting = false;
                    break;
                case LogicalMessage { Prefix: "pgspec-done" }:
                    done = true;
                    break;
            }
        }

        await stream.EndCopyBothAsync();
        await writer.DisposeAsync();
        await using (PgFrontendSession cleanup = await PgFrontendSession.ConnectAsync(superuser))
        {
            await cleanup.QueryAsync($"DROP PUBLICATION IF EXISTS {name}_p; DROP TABLE IF EXISTS {name}_key, {name}_full; DROP TYPE IF EXISTS {name}_mood");
        }

        Assert.True(done, "the stream did not reach the last message; seen: " + string.Join(", ", seen.Select(p => $"{p.Key} {p.Value}")));
        Assert.Contains(ReplicationMessageKind.XLogData, replication);
        foreach (PgOutputMessageKind kind in new[] { PgOutputMessageKind.Begin, PgOutputMessageKind.Relation, PgOutputMessageKind.DataType, PgOutputMessageKind.Insert, PgOutputMessageKind.Update, PgOutputMessageKind.Delete, PgOutputMessageKind.Truncate, PgOutputMessageKind.LogicalMessage, PgOutputMessageKind.Commit })
        {
            Assert.True(seen.ContainsKey(kind), $"no {kind}; seen: " + string.Join(", ", seen.Select(p => $"{p.Key} {p.Value}")));
        }

        Assert.Contains(OldTupleKind.Key, oldKinds);
        Assert.Contains(OldTupleKind.Old, oldKinds);
        Assert.Contains(null, oldKinds);
        Assert.Contains(TupleValueKind.Null, columnKinds);
        Assert.Contains(TupleValueKind.UnchangedToast, columnKinds);
        Assert.Contains(binary ? TupleValueKind.Binary : TupleValueKind.Text, columnKinds);
        if (mode != PgOutputStreaming.Off)
        {
            foreach (PgOutputMessageKind kind in new[] { PgOutputMessageKind.StreamStart, PgOutputMessageKind.StreamStop, PgOutputMessageKind.StreamCommit, PgOutputMessageKind.StreamAbort })
            {
                Assert.True(seen.ContainsKey(kind), $"no {kind}; seen: " + string.Join(", ", seen.Select(p => $"{p.Key} {p.Value}")));
            }

            Assert.True(streamedInsert, "no Insert carried its streamed transaction's xid");
            Assert.NotNull(abort);
            Assert.Equal(mode == PgOutputStreaming.Parallel, abort.AbortLsn is not null);
            Assert.Equal(mode == PgOutputStreaming.Parallel, abort.AbortTime is not null);
        }
        else
        {
            Assert.DoesNotContain(PgOutputMessageKind.StreamStart, seen.Keys);
        }
    }

    private static async Task RollBackAsync(PgFrontendSession writer)
    {
        await writer.QueryAsync("ROLLBACK");
        await writer.QueryAsync("SELECT pg_logical_emit_message(false, 'pgspec-done', '')");
    }
}
