using System.Globalization;
using PgSpec.Client;
using PgSpec.Server.Tests;
using PgSpec.Servers;

namespace PgSpec.Integration.Tests;

/// <summary>What a server's backends are doing, as pg_stat_activity shows it to a second connection.</summary>
internal static class Activity
{
    /// <summary>
    /// Waits until the backend of <paramref name="session"/> runs <paramref name="sql"/> (state
    /// active, that very text): from then on a cancel or a crash meets the running statement,
    /// where before it a cancel would be lost on a backend still reading its next command.
    /// </summary>
    public static async Task UntilRunningAsync(PgServer server, PgFrontendSession session, string sql)
    {
        PgRole role = server.Role(PgAuthMethod.Trust);
        var options = new PgConnectOptions { Host = server.Host, Port = server.Port, User = role.Name, Password = role.Password, Database = "postgres", SslMode = PgSslMode.Disable };
        await using PgFrontendSession observer = await PgFrontendSession.ConnectAsync(options, cancellationToken: Wait.Token);
        string pid = session.ProcessId.ToString(CultureInfo.InvariantCulture);
        string probe = $"SELECT 1 FROM pg_stat_activity WHERE pid = {pid} AND state = 'active' AND query = '{sql.Replace("'", "''", StringComparison.Ordinal)}'";
        await Wait.UntilAsync(async () => (await observer.QueryAsync(probe, cancellationToken: Wait.Token))[0].Rows.Count > 0, $"backend {pid} runs {sql}");
    }
}
