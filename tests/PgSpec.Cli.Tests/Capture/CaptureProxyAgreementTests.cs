using System.Globalization;
using System.Text.RegularExpressions;

namespace PgSpec.Cli.Tests.Capture;

/// <summary>
/// What <c>pgspec capture</c> decodes from the packets of the clients' connections to a proxy is
/// what that proxy traced of the same connections: the same bytes, seen once by the kernel (through
/// tcpdump) and once by the proxy's sockets, printed by the same trace writer.
/// </summary>
[Collection(ProxiedSessionsCollection.Name)]
public class CaptureProxyAgreementTests(ProxiedSessions sessions)
{
    [Theory]
    [InlineData(15)]
    [InlineData(18)]
    public void EveryConnectionThroughTheProxy_IsDecodedFromThePackets_AsTheProxyTracedIt(int major)
    {
        // Normalized, and why:
        // - the connection ids: the proxy numbers connections as it accepts them, the capture as
        //   their first packets come; connections are matched by their lines instead.
        // - the order of the two directions' lines: each writes a message when it has it whole
        //   (the proxy reads the client and the server on their own, the capture goes by packet
        //   times), so each direction is compared on its own, in its order.
        // - comment lines: the capture's events (seen, ended) and the proxy's notes are not messages.
        // Nothing else: no timestamps are printed, secrets are shown by both, nothing is masked.
        CliResult result = CliRunner.Run("capture", "--port", Port(major), "--connection-ids", "--show-secrets", sessions.CaptureFile);
        Assert.True(result.ExitCode == 0, result.Stderr);
        List<Connection> captured = Connection.Split(result.Lines);
        List<Connection> traced = Connection.Split((major == 15 ? sessions.Proxy15Trace : sessions.Proxy18Trace).Split('\n', StringSplitOptions.RemoveEmptyEntries));

        Assert.Equal(traced.Count, captured.Count);
        foreach (Connection connection in traced)
        {
            Connection? same = captured.FirstOrDefault(c => c.Frontend.SequenceEqual(connection.Frontend) && c.Backend.SequenceEqual(connection.Backend));
            if (same is null)
            {
                Connection closest = captured.MaxBy(c => c.Frontend.Zip(connection.Frontend).TakeWhile(p => p.First == p.Second).Count())!;
                Assert.Equal(connection.Frontend, closest.Frontend);
                Assert.Equal(connection.Backend, closest.Backend);
            }

            captured.Remove(same!);

            // The proxy ended every connection normally, and the capture saw each from its SYN to its FINs.
            Assert.Empty(connection.Notes);
            Assert.Equal(2, same!.Notes.Count);
            Assert.Matches(@"^# connection \d+ seen: \[::1\]:\d+ -> \[::1\]:" + Port(major) + "$", same.Notes[0]);
            Assert.Matches(@"^# connection \d+ ended: closed$", same.Notes[1]);
        }
    }

    [Fact]
    public void TheSessions_HaveWhatTheComparisonIsAbout()
    {
        List<Connection> pg15 = Connection.Split(CliRunner.Run("capture", "--port", Port(15), "--connection-ids", sessions.CaptureFile).Lines);
        List<Connection> pg18 = Connection.Split(CliRunner.Run("capture", "--port", Port(18), "--connection-ids", sessions.CaptureFile).Lines);

        foreach ((List<Connection> connections, string name) in new[] { (pg15, ProxiedSessions.Psql15), (pg18, ProxiedSessions.Psql18) })
        {
            Connection psql = Assert.Single(connections, c => c.Application == name);
            Assert.Equal(["SSLRequest", "StartupMessage"], psql.Frontend.Take(2).Select(Name));
            Assert.Equal("SSLResponse\t N", psql.Backend[0].Split('\t', 3)[2]);
            foreach (string message in new[] { "Query", "CopyData", "CopyDone", "Terminate" })
            {
                Assert.Contains(message, psql.Frontend.Select(Name));
            }

            foreach (string message in new[] { "AuthenticationSASL", "NoticeResponse", "ErrorResponse", "CopyInResponse", "CopyOutResponse", "CopyData", "CopyDone", "NotificationResponse" })
            {
                Assert.Contains(message, psql.Backend.Select(Name));
            }

            // Results of hundreds of kilobytes: a message over many TCP segments.
            Assert.Contains(psql.Backend, line => Name(line) == "DataRow" && Length(line) > 200_000);
            Assert.True(psql.Backend.Count(line => Name(line) == "DataRow") > 3000);
        }

        foreach ((List<Connection> connections, int server) in new[] { (pg15, 15), (pg18, 18) })
        {
            foreach (int libpq in new[] { 15, 18 })
            {
                Connection pipeline = Assert.Single(connections, c => c.Application == ProxiedSessions.PipelineSession(libpq, server));

                // Pipelined: several statements (Bind, Describe, Execute, some with their Parse) before one Sync.
                string[] batches = string.Join(' ', pipeline.Frontend.Select(Name)).Split("Sync");
                Assert.True(batches.Max(batch => Regex.Count(batch, "Execute")) >= 8, string.Join("\n", pipeline.Frontend));
                Assert.Contains(pipeline.Backend, line => Name(line) == "ErrorResponse" && line.Contains("22012", StringComparison.Ordinal));
                Assert.Contains(pipeline.Frontend, line => Name(line) == "Parse" && line.Contains("\"_pg3_", StringComparison.Ordinal));
                Assert.StartsWith(libpq == 18 ? "StartupMessage\t 3 2 " : "StartupMessage\t 3 0 ", pipeline.Frontend[0].Split('\t', 3)[2], StringComparison.Ordinal);
                if (libpq == 18)
                {
                    // PostgreSQL 15 answers 3.2 with NegotiateProtocolVersion; 18 gives its 32-byte key.
                    Assert.Equal(server == 15, pipeline.Backend.Any(line => Name(line) == "NegotiateProtocolVersion"));
                    Assert.Equal(server == 15 ? 12 : 40, Length(pipeline.Backend.Single(line => Name(line) == "BackendKeyData")));
                }
            }
        }

        // pgbench: a first connection that looks at the tables, then one per client, each running
        // its 25 transactions of 7 prepared statements.
        List<Connection> pgbench = [.. pg15.Where(c => c.Application == ProxiedSessions.Pgbench)];
        Assert.Equal(3, pgbench.Count);
        Assert.Equal([0, 25 * 7, 25 * 7], pgbench.Select(c => c.Frontend.Count(line => Name(line) == "Execute")));

        Connection client = Assert.Single(pg18, c => c.Application == ProxiedSessions.Protocol32);
        Assert.Equal(["GSSENCRequest", "StartupMessage"], client.Frontend.Take(2).Select(Name));
        Assert.Equal("GSSENCResponse\t N", client.Backend[0].Split('\t', 3)[2]);
        Assert.Contains("FunctionCall", client.Frontend.Select(Name));
        Connection cancel = Assert.Single(pg18, c => c.Frontend.Count == 1 && Name(c.Frontend[0]) == "CancelRequest");
        Assert.Equal(44, Length(cancel.Frontend[0]));

        // The replication stream: a slot created, then pgoutput's changes over COPY both ways.
        List<Connection> replication = [.. pg15.Where(c => c.Application == ProxiedSessions.Replication)];
        Assert.Equal(2, replication.Count);
        Assert.Contains(replication[0].Frontend, line => line.Contains("CREATE_REPLICATION_SLOT", StringComparison.Ordinal));
        Assert.Contains(replication[1].Frontend, line => line.Contains("START_REPLICATION", StringComparison.Ordinal));
        Assert.Contains("CopyBothResponse", replication[1].Backend.Select(Name));
        Assert.Contains(replication[1].Frontend, line => Name(line) == "CopyData" && line.Contains("\t 'r", StringComparison.Ordinal));
        foreach (string change in new[] { @"t\x00\x00\x00\x03one", @"t\x00\x00\x00\x03TWO", @"K\x00\x02t\x00\x00\x00\x013n" })
        {
            // XLogData ('w') carrying pgoutput's Insert, Update and Delete (its key) of the table's rows.
            Assert.Contains(replication[1].Backend, line => Name(line) == "CopyData" && line.Contains("\t 'w", StringComparison.Ordinal) && line.Contains(change, StringComparison.Ordinal));
        }
    }

    /// <summary>The message name of a line "F\tLENGTH\tNAME\t..." (empty for libpq's "mismatched message length" lines).</summary>
    private static string Name(string line) => line.Split('\t') is { Length: > 2 } parts ? parts[2] : "";

    private static int Length(string line) => int.Parse(line.Split('\t')[1], CultureInfo.InvariantCulture);

    private string Port(int major) => (major == 15 ? sessions.Proxy15Port : sessions.Proxy18Port).ToString(CultureInfo.InvariantCulture);

    /// <summary>One connection's lines of a trace with connection ids: each direction's messages, and the comment lines.</summary>
    private sealed record Connection(string Id, List<string> Frontend, List<string> Backend, List<string> Notes)
    {
        /// <summary>The application_name of its StartupMessage, if it has one.</summary>
        public string? Application => Frontend.Count > 0 && Regex.Match(Frontend.FirstOrDefault(line => line.Split('\t')[2] == "StartupMessage") ?? "", "\"application_name\" \"([^\"]*)\"") is { Success: true } match ? match.Groups[1].Value : null;

        /// <summary>
        /// Groups lines "ID\tF\t..." by connection, in the order the connections first appear; a
        /// "mismatched message length" line (libpq's, after a message longer than what it reads of
        /// it) goes with the message before it.
        /// </summary>
        public static List<Connection> Split(IEnumerable<string> lines)
        {
            var connections = new List<Connection>();
            var byId = new Dictionary<string, Connection>();
            var last = new Dictionary<string, List<string>>();
            foreach (string line in lines)
            {
                string[] parts = line.Split('\t', 3);
                if (!byId.TryGetValue(parts[0], out Connection? connection))
                {
                    connection = new Connection(parts[0], [], [], []);
                    byId[parts[0]] = connection;
                    connections.Add(connection);
                }

                List<string> into = parts[1] switch
                {
                    "F" => connection.Frontend,
                    "B" => connection.Backend,
                    _ when parts[1].StartsWith('#') => connection.Notes,
                    _ => last[parts[0]],
                };
                into.Add(into == connection.Notes ? parts[1] : line[(parts[0].Length + 1)..]);
                if (into != connection.Notes)
                {
                    last[parts[0]] = into;
                }
            }

            return connections;
        }
    }
}
