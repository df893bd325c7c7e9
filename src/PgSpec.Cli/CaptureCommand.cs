using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using PgSpec.Cli.Capture;

namespace PgSpec.Cli;

/// <summary>Builds the <c>capture</c> command.</summary>
internal static class CaptureCommand
{
    private const string Summary = "Decode PostgreSQL connections from a packet capture (pcap, pcapng) or a live interface.";

    private const string Description = """
        Reads a packet capture and prints every message of every PostgreSQL connection in it, as
        the proxy's trace does: one line per message in libpq 18's PQtrace format (with the
        connection id and the capture's timestamps when asked), or one JSON object per line.

        Input: FILE, a pcap or pcapng file ('-' or nothing: standard input, so that
        `tcpdump -w - | pgspec capture -` works), or --interface NAME for a live capture through
        libpcap (until SIGINT or SIGTERM; needs the right to capture; the kernel passes on only
        TCP packets of the server ports, so other traffic costs nothing). Link types: Ethernet,
        Linux cooked (SLL and SLL2, as `tcpdump -i any` writes), loopback/null and raw IP; IPv4
        and IPv6; VLAN tags.

        Connections: TCP connections to a server port (--port, 5432 by default) or to one server
        (--filter HOST:PORT). Each direction is reassembled: segments in sequence order,
        retransmissions and overlaps removed (also a retransmission seen after the connection
        ended), segments out of order held (up to 1 MiB per direction) until the hole before
        them is filled. A reset ends a connection both ways. Bytes that were not captured are
        reported as a gap with their size, and decoding resumes only at a message boundary that
        the bytes after it prove (three whole valid messages, or whole messages up to the end of
        a packet); a connection whose start was not captured is picked up the same way. Nothing
        is invented: a message is printed only when all its bytes were captured.

        Decoding follows the same context rules as `pgspec decode` and the proxy, with both
        directions of a connection in the order the capture saw them: startup packets, the 'p'
        messages named by the authentication request before them, COPY, protocol 3.2 when the
        StartupMessage asks for it. A connection that turns to TLS (an SSLRequest answered 'S',
        or PostgreSQL 17's direct TLS) or GSSAPI encryption is reported as encrypted from there
        and not decoded further.

        Events (a connection seen, a gap, a resumption, encryption, malformed bytes, an end) are
        comment lines in the trace format ('# connection 3 gap: ...') and objects with "event"
        in JSON. Passwords and SASL/GSS data are hidden unless --show-secrets.

        Replication: with --replication, the CopyData of a replication stream (after
        START_REPLICATION and its CopyBothResponse) get the lines the proxy's --trace-replication
        writes below them: the replication message one TAB deeper (XLogData without its data),
        and for logical replication through pgoutput the pgoutput message two TABs deeper; see
        `pgspec decode --help`. JSON always carries them ("replication", "pgoutput",
        "replicationStream"). A connection picked up in the middle of a stream is not decoded so.

        Scripts: --to-script DIR writes, instead of the message lines, one pgproto script per
        connection, DIR/connection-N.pgproto (N: the connection id), that `pgspec script` replays
        against another server: the client's messages after its startup, one line each ('Q', 'P',
        'B', 'E', 'D', 'C', 'S', 'H', 'F', 'd', 'c', 'f', 'X'), and 'Y' wherever the client waited
        for a ReadyForQuery ('z' for each answer to a Flush). Each line reads back as the exact
        bytes captured; a message the syntax cannot give exactly (a TAB in a string, COPY data
        with TABs, bytes that are not UTF-8, an unknown type) is the raw '!' line of its bytes. The
        startup, authentication, SSLRequest and CancelRequest are comments (pgspec script makes
        its own connection). A gap, encryption, malformed bytes or a start that was not captured is
        a comment where it happened, and the header's status line says INCOMPLETE. DIR is created
        if missing, in a directory that exists; a DIR that already holds connection-*.pgproto
        entries is refused before the capture is read (other files are left alone).

        Statistics (--stats): instead of the message lines, a summary at the end of the capture.
        Per normalized query (constants replaced by $1, $2, ... as pg_stat_statements shows
        them: numbers, with their sign, strings, E'', B'', X'' and dollar-quoted strings;
        identifiers, keywords, TRUE, FALSE and NULL kept; comments removed; whitespace collapsed):
        calls, rows (the last number of CommandComplete's tag), total, mean and p95 time
        (nearest rank) and errors. A call is a Query, all its statements as one call of its
        whole text, timed from the Query to its ReadyForQuery; or an Execute of the extended
        protocol, with the text of the Parse of the statement its portal was bound to, timed
        from the first message of its batch (up to Sync) to the ReadyForQuery (a batch with
        several Executes is split at each one's completion); Executes of statements prepared
        before the capture started are counted together, after the others. Then message counts and bytes by
        type and direction, errors by SQLSTATE ("invalid" when the C field is not five digits
        or capital letters), gaps and other events, and one line per connection (id, messages,
        bytes each way, duration, errors, gaps, client -> server).
        Bounds: 10,000 distinct queries (the calls of later ones are counted as one "other"
        query), 1,024 call times kept per query for the p95 (a uniform sample beyond that:
        then an estimate), 100,000 connections listed (later ones count in the totals only),
        and per open connection 10,000 prepared statements and portals, 1,000 batches waiting
        for their ReadyForQuery and 1,000 Executes in a batch (calls beyond, and calls whose end
        was not captured, are counted as unfinished).

        With --format json, statistics are one JSON document:
          {"connections": N, "start": "...", "end": "...", "duration_ms": X,
           "queries": [{"query": "SELECT ... $1", "other": false, "calls": N, "rows": N,
                        "total_ms": X, "mean_ms": X, "p95_ms": X, "p95_sampled": false,
                        "errors": N}, ...],            (by total time, largest first)
           "queries_capped": false, "unfinished_calls": N,
           "messages": {"frontend": {"count": N, "bytes": N}, "backend": {...},
                        "types": [{"direction": "F", "name": "Query", "count": N, "bytes": N}, ...]},
           "errors": {"42P01": N, ...},
           "events": {"gap": {"count": N, "bytes": N}, "resumed": {...}, "malformed": {...},
                      "encrypted": {...}},
           "connection_list": [{"id": 1, "endpoints": "client -> server", "start": "...", "end": "...",
                                "duration_ms": X, "messages": N, "frontend_bytes": N, "backend_bytes": N,
                                "errors": N, "gaps": N, "gap_bytes": N, "ended": "closed"}, ...],
           "connections_not_listed": N}
        Times are local; bytes are those of the decoded messages (not of encrypted traffic);
        "events" holds only the kinds that occurred.

        Exit codes: 0 the capture was read; 2 a usage error, a capture that cannot be opened or
        read (one cut short or corrupt after its start: what was read is printed, then why
        reading stopped), or a script that cannot be written. A summary (packets, segments, connections,
        scripts written) goes to standard error.

        Examples:
          pgspec capture traffic.pcap
          pgspec capture --port 5432,6432 --connection-ids --timestamps traffic.pcapng
          tcpdump -i any -w - 'tcp port 5432' | pgspec capture -
          pgspec capture --interface lo --filter 127.0.0.1:5432 --format json
          pgspec capture --to-script scripts traffic.pcap && pgspec script -h other -d test -f scripts/connection-1.pgproto
          pgspec capture --stats traffic.pcap
        """;

    public static Command Create(Stream stdout, TextWriter stderr)
    {
        var input = new Argument<string?>("FILE")
        {
            Description = "The capture file (pcap or pcapng); '-' for standard input. Not with --interface.",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var iface = new Option<string?>("--interface", "-i") { Description = "Capture live on this interface (libpcap's name, e.g. lo, eth0, any) instead of reading a file.", HelpName = "NAME" };
        var ports = new Option<string>("--port", "-p") { Description = "The server ports: connections to them are decoded.", HelpName = "N[,N...]", DefaultValueFactory = _ => "5432" };
        var filter = new Option<string?>("--filter") { Description = "Decode only the connections to this server (an IP address and port; [IPv6]:PORT).", HelpName = "HOST:PORT" };
        var format = new Option<string>("--format") { Description = "trace: the proxy's PQtrace lines. json: one JSON object per message or event and line.", HelpName = "trace|json", DefaultValueFactory = _ => "trace" };
        format.AcceptOnlyFromAmong("trace", "json");
        var connectionIds = new Option<bool>("--connection-ids") { Description = "Start each trace line with the connection's number and a TAB (JSON objects always have it)." };
        var timestamps = new Option<bool>("--timestamps") { Description = "Start each line with the time the packet that completed the message was captured (local time)." };
        var regress = new Option<bool>("--regress") { Description = "libpq's regress mode (OIDs and process ids as NNNN, ...). Trace format only." };
        var showSecrets = new Option<bool>("--show-secrets") { Description = "Print passwords and SASL/GSS data instead of hiding them." };
        var toScript = new Option<string?>("--to-script") { Description = "Write one pgproto script per connection, DIR/connection-N.pgproto, for `pgspec script` to replay, instead of the message lines.", HelpName = "DIR" };
        var replication = new Option<bool>("--replication") { Description = "Trace format: below each CopyData of a replication stream, indented lines with the replication message and the pgoutput message it carries (JSON always has them)." };
        var stats = new Option<bool>("--stats") { Description = "Print statistics at the end (per query, message, error, connection) instead of the messages; --format json makes them one JSON document." };

        var command = new PgSpecCommand("capture", Summary, Description)
        {
            input,
            iface,
            ports,
            filter,
            format,
            connectionIds,
            timestamps,
            regress,
            showSecrets,
            replication,
            toScript,
            stats,
        };

        command.Validators.Add(result =>
        {
            if (PgSpecCommandLine.ValueInValidator(result, iface) is not null && result.GetValue(input) is not null)
            {
                result.AddError("FILE and --interface cannot be used together: read a capture file or capture live.");
            }

            if (ParsePorts(PgSpecCommandLine.ValueInValidator(result, ports) ?? "5432") is null)
            {
                result.AddError("--port takes TCP port numbers (1 to 65535) separated by commas, e.g. 5432,6432.");
            }

            if (PgSpecCommandLine.ValueInValidator(result, filter) is { } server && !IPEndPoint.TryParse(server, out IPEndPoint? parsed) | parsed is { Port: 0 })
            {
                result.AddError($"--filter takes an IP address and a port, e.g. 127.0.0.1:5432 or [::1]:5432, not '{server}'.");
            }

            if (PgSpecCommandLine.ValueInValidator(result, regress) && PgSpecCommandLine.ValueInValidator(result, format) == "json")
            {
                result.AddError("--regress applies to --format trace only.");
            }

            if (PgSpecCommandLine.ValueInValidator(result, regress) && PgSpecCommandLine.ValueInValidator(result, stats))
            {
                result.AddError("--regress applies to the message lines, not to --stats.");
            }

            if (PgSpecCommandLine.ValueInValidator(result, replication))
            {
                if (PgSpecCommandLine.ValueInValidator(result, format) == "json")
                {
                    result.AddError("--replication applies to --format trace only (JSON always carries the decoded replication messages).");
                }
                else if (PgSpecCommandLine.ValueInValidator(result, stats) || PgSpecCommandLine.ValueInValidator(result, toScript) is not null)
                {
                    result.AddError("--replication applies to the message lines, not to --stats or --to-script.");
                }
            }
        });

        command.SetAction((result, cancellationToken) =>
        {
            string? liveInterface = result.GetValue(iface);
            string path = result.GetValue(input) ?? "-";
            IPEndPoint? server = result.GetValue(filter) is { } text ? IPEndPoint.Parse(text) : null;
            var output = new DeferredFlushStream(stdout);
            var outputs = new List<ICaptureOutput>();

            // Summaries (--stats, --to-script) take the place of the message lines.
            CaptureScripts? scripts = null;
            if (result.GetValue(toScript) is { } directory)
            {
                scripts = CaptureScripts.Open(directory, out string? error);
                if (scripts is null)
                {
                    stderr.WriteLine("pgspec capture: " + error);
                    return Task.FromResult(PgSpecCommandLine.ExitUsage);
                }

                outputs.Add(scripts);
            }

            if (result.GetValue(stats))
            {
                outputs.Add(new CaptureStatistics(output, json: result.GetValue(format) == "json"));
            }

            if (outputs.Count == 0)
            {
                outputs.Add(result.GetValue(format) == "json"
                    ? new JsonCaptureOutput(output, hideSecrets: !result.GetValue(showSecrets), result.GetValue(timestamps))
                    : new TraceCaptureOutput(output, result.GetValue(regress), result.GetValue(timestamps), result.GetValue(connectionIds), result.GetValue(showSecrets), result.GetValue(replication)));
            }

            var sink = new CaptureOutputs(outputs);
            var decoder = new CaptureDecoder(ParsePorts(result.GetValue(ports)!)!, server, sink);
            CaptureSource source;
            try
            {
                source = liveInterface is not null
                    ? OpenInterface(liveInterface, server is not null ? [server.Port] : ParsePorts(result.GetValue(ports)!)!)
                    : CaptureSource.OpenFile(path);
            }
            catch (CaptureException e)
            {
                stderr.WriteLine("pgspec capture: " + e.Message);
                return Task.FromResult(PgSpecCommandLine.ExitUsage);
            }

            // SIGTERM (kill, timeout(1), a service's stop) ends a live capture as SIGINT does: what was seen is printed.
            using var stopped = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            using PosixSignalRegistration onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
            {
                context.Cancel = true;
                stopped.Cancel();
            });
            using (source)
            {
                DateTime last = default;
                CaptureCounts counts;
                try
                {
                    counts = source.Run(
                        segment =>
                        {
                            last = segment.Timestamp;
                            decoder.Add(segment);
                            if (liveInterface is not null)
                            {
                                output.FlushNow();
                            }
                        },
                        stopped.Token);
                }
                catch (CaptureException e)
                {
                    try
                    {
                        decoder.Finish(last);
                        sink.Complete();
                    }
                    catch (CaptureException)
                    {
                        // An output that failed (a script that cannot be written) has said why once.
                    }

                    output.FlushNow();
                    stderr.WriteLine("pgspec capture: " + e.Message);
                    return Task.FromResult(PgSpecCommandLine.ExitUsage);
                }

                try
                {
                    decoder.Finish(last);
                    sink.Complete();
                }
                catch (CaptureException e)
                {
                    output.FlushNow();
                    stderr.WriteLine("pgspec capture: " + e.Message);
                    return Task.FromResult(PgSpecCommandLine.ExitUsage);
                }

                output.FlushNow();
                string written = scripts is null ? "" : string.Create(CultureInfo.InvariantCulture, $"; {scripts.Written} scripts written to {result.GetValue(toScript)} ({scripts.Incomplete} incomplete)");
                stderr.WriteLine(string.Create(
                    CultureInfo.InvariantCulture,
                    $"pgspec capture: {counts.Packets} packets ({source.LinkType}), {counts.TcpSegments} TCP segments, {decoder.Connections} PostgreSQL connections; {counts.Skipped} packets not TCP over IP, {counts.Unparsed} that could not be parsed{written}"));
                if (counts.ReadError is not null)
                {
                    // What was read is printed; the rest of the capture could not be.
                    string what = liveInterface is not null ? $"interface '{liveInterface}'" : path == "-" ? "standard input" : path;
                    stderr.WriteLine(string.Create(CultureInfo.InvariantCulture, $"pgspec capture: reading {what} stopped after {counts.Packets} packets: {counts.ReadError}"));
                    return Task.FromResult(PgSpecCommandLine.ExitUsage);
                }
            }

            return Task.FromResult(PgSpecCommandLine.ExitOk);
        });

        return command;
    }

    /// <summary>
    /// A live capture of the server ports' TCP packets only: the kernel filters the rest out (BPF),
    /// so that other traffic on the interface costs nothing. VLAN-tagged packets too where the
    /// link type has tags.
    /// </summary>
    private static CaptureSource OpenInterface(string name, int[] ports)
    {
        string filter = string.Join(" or ", ports.Select(port => string.Create(CultureInfo.InvariantCulture, $"tcp port {port}")));
        return CaptureSource.OpenInterface(name, $"{filter} or (vlan and ({filter}))", filter);
    }

    /// <summary>Ports from "5432,6432"; null when any is not a TCP port.</summary>
    internal static int[]? ParsePorts(string text)
    {
        var ports = new List<int>();
        foreach (string part in text.Split(','))
        {
            if (!int.TryParse(part.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65535)
            {
                return null;
            }

            ports.Add(port);
        }

        return [.. ports];
    }
}
