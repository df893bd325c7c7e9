using System.Globalization;
using PgSpec.Client;
using PgSpec.Protocol;
using PgSpec.Servers;

namespace PgSpec.Cli.Tests.Capture;

/// <summary>
/// A protocol 3.2 session against PostgreSQL 18, captured by tcpdump on every interface
/// (<c>-i any</c>, Linux cooked v2): a GSSENCRequest answered 'N', a StartupMessage for 3.2, a
/// 32-byte cancel key, queries, COPY, and a cancel on a connection of its own. What
/// <c>pgspec capture</c> decodes from the packets is what the client session sent and received.
/// </summary>
public sealed class CaptureProtocol32Tests : IAsyncLifetime
{
    private readonly TempDirectory _dir = new();
    private readonly List<PgTraffic> _traffic = [];
    private PgServer? _server;
    private string _file = "";

    public async Task InitializeAsync()
    {
        _server = await new LocalPgServerProvider().StartAsync(new PgServerOptions { MajorVersion = 18 }, CancellationToken.None);
        _file = Path.Combine(_dir.Path, "v32.pcap");
        var options = new PgConnectOptions
        {
            Host = _server.Host,
            Port = _server.Port,
            User = _server.Role(PgAuthMethod.Trust).Name,
            Database = "postgres",
            SslMode = PgSslMode.Disable,
            RequestGssEncryption = true,
            ProtocolVersion = PgProtocolVersion.V3_2,
        };
        using (Tcpdump.Start(["-i", "any", "--immediate-mode", "-U", "-B", "32768", "-w", _file, $"tcp port {_server.Port}"]))
        {
            await using (PgFrontendSession session = await PgFrontendSession.ConnectAsync(options, traffic => { lock (_traffic) { _traffic.Add(traffic with { Raw = traffic.Raw.ToArray() }); } }))
            await using (PgFrontendSession probe = await PgFrontendSession.ConnectAsync(options with { RequestGssEncryption = false }))
            {
                await session.QueryAsync("CREATE TEMP TABLE t (a int, b text); INSERT INTO t VALUES (1, 'one'), (2, NULL)");
                await session.ExecuteAsync("SELECT a, b FROM t WHERE a >= $1", [(ReadOnlyMemory<byte>?)"1"u8.ToArray()]);
                await session.QueryAsync("COPY t FROM STDIN", [(ReadOnlyMemory<byte>)"3\tthree\n"u8.ToArray()]);
                await session.QueryAsync("COPY t TO STDOUT");

                // A cancel, sent once the server runs the sleep (as pg_stat_activity shows it).
                Task sleeping = session.QueryAsync("SELECT pg_sleep(60)");
                string waiting = $"SELECT 1 FROM pg_stat_activity WHERE pid = {session.ProcessId.ToString(CultureInfo.InvariantCulture)} AND wait_event = 'PgSleep'";
                var deadline = DateTime.UtcNow.AddSeconds(60);
                while ((await probe.QueryAsync(waiting))[0].Rows.Count == 0 && DateTime.UtcNow < deadline)
                {
                }

                await session.CancelAsync();
                PgServerException error = await Assert.ThrowsAsync<PgServerException>(() => sleeping);
                Assert.Equal("57014", error.SqlState);
            }

            // Three connections: the session, the probe and the cancel request.
            Tcpdump.WaitForEnds(_file, TimeSpan.FromSeconds(30));
        }
    }

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }

        _dir.Dispose();
    }

    [Fact]
    public void EveryMessageOfTheSession_IsDecodedFromThePackets_AsTheClientSentAndReceivedIt()
    {
        CliResult result = CliRunner.Run("capture", "--port", _server!.Port.ToString(CultureInfo.InvariantCulture), "--connection-ids", "--show-secrets", _file);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("(Linux cooked (SLL2))", result.Stderr, StringComparison.Ordinal);

        // The session is the connection that starts with the GSSENCRequest.
        string session = result.Lines.First(line => line.Contains("\tGSSENCRequest", StringComparison.Ordinal)).Split('\t')[0];
        string[] lines = [.. result.Lines.Where(line => line.StartsWith(session + "\t", StringComparison.Ordinal) && !line.Contains("\t#", StringComparison.Ordinal))];
        foreach (PgDirection direction in new[] { PgDirection.Frontend, PgDirection.Backend })
        {
            // The trace format leaves AuthenticationOk out, as libpq does.
            string[] expected;
            lock (_traffic)
            {
                // The CancelRequest went over a connection of its own.
                expected = [.. _traffic.Where(t => t.Direction == direction && t.Name is not ("AuthenticationOk" or "CancelRequest")).Select(t => t.Name)];
            }

            string side = direction == PgDirection.Frontend ? "F" : "B";
            string[] decoded = [.. lines.Where(line => line.Split('\t')[1] == side).Select(line => line.Split('\t')[3])];
            Assert.Equal(expected, decoded);
        }

        Assert.Contains(lines, line => line.Contains("\tGSSENCResponse\t N", StringComparison.Ordinal));
        Assert.Contains(lines, line => line.Contains("\tStartupMessage\t 3 2 ", StringComparison.Ordinal));

        // Protocol 3.2's key: 32 bytes, printed as they are.
        string key = lines.Single(line => line.Contains("\tBackendKeyData\t", StringComparison.Ordinal));
        Assert.Equal("40", key.Split('\t')[2]);
    }

    [Fact]
    public void TheCancelRequest_CarriesTheSessionsWholeKey()
    {
        CliResult result = CliRunner.Run("capture", "--port", _server!.Port.ToString(CultureInfo.InvariantCulture), "--connection-ids", _file);
        Assert.True(result.ExitCode == 0, result.ToString());

        string key = result.Lines.Single(line => line.Contains("\tBackendKeyData\t", StringComparison.Ordinal) && result.Lines.Any(l => l.StartsWith(line.Split('\t')[0] + "\t", StringComparison.Ordinal) && l.Contains("GSSENCRequest", StringComparison.Ordinal)));
        string cancel = result.Lines.Single(line => line.Contains("\tCancelRequest\t", StringComparison.Ordinal));

        // CancelRequest's length: 4 (length) + 4 (code) + 4 (process id) + 32 (key).
        Assert.Equal("44", cancel.Split('\t')[2]);

        // The process id and key fields of both lines are the same.
        string keyFields = key.Split('\t')[4].Trim();
        Assert.EndsWith(keyFields, cancel.Split('\t')[4].Trim(), StringComparison.Ordinal);
    }
}
