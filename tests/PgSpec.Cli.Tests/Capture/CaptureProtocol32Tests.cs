using System.Globalization;
using PgSpec.Protocol;

namespace PgSpec.Cli.Tests.Capture;

/// <summary>
/// A protocol 3.2 session of PgSpec's client with PostgreSQL 18 through the proxy
/// (<see cref="ProxiedSessions.Protocol32"/>), captured by tcpdump on every interface (<c>-i any</c>,
/// Linux cooked v2) over IPv6: a GSSENCRequest answered 'N', a StartupMessage for 3.2, a 32-byte
/// cancel key, queries, a function call, COPY, and a cancel on a connection of its own. What
/// <c>pgspec capture</c> decodes from the packets is what the client session sent and received.
/// </summary>
[Collection(ProxiedSessionsCollection.Name)]
public sealed class CaptureProtocol32Tests(ProxiedSessions sessions)
{
    [Fact]
    public void EveryMessageOfTheSession_IsDecodedFromThePackets_AsTheClientSentAndReceivedIt()
    {
        CliResult result = CliRunner.Run("capture", "--port", sessions.Proxy18Port.ToString(CultureInfo.InvariantCulture), "--connection-ids", "--show-secrets", sessions.CaptureFile);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("(Linux cooked (SLL2))", result.Stderr, StringComparison.Ordinal);

        // The session is the connection that starts with the GSSENCRequest.
        string session = result.Lines.First(line => line.Contains("\tGSSENCRequest", StringComparison.Ordinal)).Split('\t')[0];
        string[] lines = [.. result.Lines.Where(line => line.StartsWith(session + "\t", StringComparison.Ordinal) && !line.Contains("\t#", StringComparison.Ordinal))];
        foreach (PgDirection direction in new[] { PgDirection.Frontend, PgDirection.Backend })
        {
            // The trace format leaves AuthenticationOk out, as libpq does.
            // The CancelRequest went over a connection of its own.
            string[] expected = [.. sessions.Protocol32Traffic.Where(t => t.Direction == direction && t.Name is not ("AuthenticationOk" or "CancelRequest")).Select(t => t.Name)];

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
        CliResult result = CliRunner.Run("capture", "--port", sessions.Proxy18Port.ToString(CultureInfo.InvariantCulture), "--connection-ids", sessions.CaptureFile);
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
