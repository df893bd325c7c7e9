using System.Text.Json;
using PgSpec.Client;
using PgSpec.Servers;

namespace PgSpec.Cli.Tests.Replicate;

/// <summary>
/// Physical replication (--physical): START_REPLICATION PHYSICAL through a physical slot created with
/// --create-slot receives XLogData; each becomes a line whose WAL range follows the one before without
/// a gap, up to --endpos; the slot keeps WAL from the position confirmed, which is the end of the last
/// line written.
/// </summary>
[Collection(ReplicateCollection.Name)]
public class ReplicatePhysicalTests(ReplicateServers servers)
{
    [Theory]
    [InlineData(15)]
    [InlineData(18)]
    public async Task PhysicalStream_XLogDataLinesCoverTheWalWithoutGaps_UpToEndpos(int major)
    {
        PgServer server = await servers.Server(major);
        await using PgFrontendSession admin = await servers.AdminAsync(major);
        string slot = $"ph{major}_slot";
        await admin.QueryAsync($"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}'");
        await admin.QueryAsync($"SELECT pg_create_physical_replication_slot('{slot}', true)");
        long start = await ReplicateOutput.SlotPositionAsync(admin, slot);
        try
        {
            await admin.QueryAsync($"DROP TABLE IF EXISTS ph{major}_t; CREATE TABLE ph{major}_t AS SELECT g, md5(g::text) FROM generate_series(1, 2000) g");
            long end = await ReplicateOutput.InsertLsnAsync(admin);

            using ReplicateRun run = ReplicateRun.Start([.. ReplicateServers.Connect(server), "--physical", "--slot", slot, "--endpos", PgSpec.Cli.Replicate.ReplicationValues.FormatLsn(end)]);
            int exit = await run.Exit.WaitAsync(TimeSpan.FromMinutes(2));
            Assert.True(exit == 0, run.ToString());

            List<JsonElement> lines = ReplicateOutput.Parse(run.Stdout.Lines);
            Assert.NotEmpty(lines);
            long expected = start;
            foreach (JsonElement line in lines)
            {
                Assert.Equal("wal", line.GetProperty("op").GetString());
                long walStart = ReplicateOutput.Lsn(line, "walStart");
                Assert.True(walStart == expected, $"a line starts at {walStart:X}, the one before ended at {expected:X}");
                expected = walStart + line.GetProperty("bytes").GetInt64();
                Assert.True(ReplicateOutput.Lsn(line, "walEnd") >= expected, line.ToString());
            }

            Assert.True(expected >= end, $"the WAL lines end at {expected:X}, before --endpos {end:X}");
            long confirmed = ReplicateOutput.Confirmed(run.Stderr.Text);
            Assert.Equal(expected, confirmed);
            Assert.Equal(confirmed, await ReplicateOutput.SlotPositionAsync(admin, slot));
        }
        finally
        {
            await admin.QueryAsync($"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}' AND NOT active");
        }
    }
}
