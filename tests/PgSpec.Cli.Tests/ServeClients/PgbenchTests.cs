using System.Globalization;
using System.Text.RegularExpressions;
using PgSpec.Cli.Tests.RealServer;

namespace PgSpec.Cli.Tests.ServeClients;

/// <summary>pgbench with a custom script against <c>pgspec serve</c>, in each query mode.</summary>
public sealed partial class PgbenchTests(ServeServers servers) : IClassFixture<ServeServers>
{
    private const int Clients = 2;
    private const int TransactionsPerClient = 50;

    [Theory]
    [InlineData("simple", ClientMode.Plain)]
    [InlineData("extended", ClientMode.Plain)]
    [InlineData("prepared", ClientMode.Plain)]
    [InlineData("prepared", ClientMode.TlsScram)]
    public async Task Pgbench_CustomScript_RunsEveryTransaction(string queryMode, ClientMode mode)
    {
        ServeServer server = await servers.For(mode);
        string table = $"bench_{queryMode}_{mode.ToString().ToLowerInvariant()}";
        ProcessOutput create = Psql(server, $"CREATE TABLE {table} (id int8, note text)");
        Assert.True(create.ExitCode == 0, create + server.Diagnostics);
        string script = Path.Combine(servers.Directory, table + ".sql");
        File.WriteAllText(script, $"""
            \set id random(1, 100)
            SELECT :id::int8 + 1;
            INSERT INTO {table} (id, note) VALUES (:id, 'from pgbench');
            BEGIN;
            UPDATE {table} SET note = 'updated' WHERE id = :id;
            END;

            """.ReplaceLineEndings("\n"));

        string pgbench = ExternalProcess.FindOnPath("pgbench") ?? throw new InvalidOperationException("pgbench is not on PATH (Debian: apt-get install -y postgresql-contrib)");
        ProcessOutput run = ExternalProcess.Run(
            pgbench,
            ["-n", "-f", script, "-t", TransactionsPerClient.ToString(CultureInfo.InvariantCulture), "-c", Clients.ToString(CultureInfo.InvariantCulture), "-M", queryMode],
            environment: server.LibpqEnvironment());

        string context = run + server.Diagnostics;
        Assert.True(run.ExitCode == 0, context);
        Assert.Contains($"query mode: {queryMode}", run.Stdout);
        Match processed = Processed().Match(run.Stdout);
        Assert.True(processed.Success, context);
        Assert.Equal(Clients * TransactionsPerClient, int.Parse(processed.Groups[1].Value, CultureInfo.InvariantCulture));
        Assert.Contains("number of failed transactions: 0 (0.000%)", run.Stdout);
        ProcessOutput count = Psql(server, $"SELECT count(*), count(*) FILTER (WHERE note = 'updated'), min(id) >= 1 AND max(id) <= 100 FROM {table}");
        Assert.True(count.ExitCode == 0, count + server.Diagnostics);
        Assert.Equal($"{Clients * TransactionsPerClient}|{Clients * TransactionsPerClient}|1", count.Stdout.Trim());
    }

    private static ProcessOutput Psql(ServeServer server, string sql)
    {
        string psql = ExternalProcess.FindOnPath("psql") ?? throw new InvalidOperationException("psql is not on PATH (Debian: apt-get install -y postgresql-client)");
        return ExternalProcess.Run(psql, [server.ConnInfo(), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]);
    }

    [GeneratedRegex(@"number of transactions actually processed: (\d+)/")]
    private static partial Regex Processed();
}
