using System.CommandLine;
using PgSpec.Protocol;

namespace PgSpec.Cli;

/// <summary>The output formats of <c>pgspec decode</c>.</summary>
public enum DecodeFormat
{
    /// <summary>libpq's PQtrace lines.</summary>
    Trace,

    /// <summary>One JSON object per message, one per line.</summary>
    Json,
}

/// <summary>What <c>pgspec decode</c> was asked to do.</summary>
public sealed record DecodeSettings
{
    /// <summary>Who sent the input; null to guess from its first bytes.</summary>
    public PgDirection? From { get; init; }

    /// <summary>The protocol version to start with; null for the default of the direction.</summary>
    public PgProtocolVersion? Protocol { get; init; }

    /// <summary>The input (and the peer) are hex text.</summary>
    public bool Hex { get; init; }

    /// <summary>libpq's regress mode.</summary>
    public bool Regress { get; init; }

    /// <summary>The output format.</summary>
    public DecodeFormat Format { get; init; }

    /// <summary>Print passwords and SASL/GSS data instead of hiding them.</summary>
    public bool ShowSecrets { get; init; }

    /// <summary>The other direction's stream, if given.</summary>
    public string? PeerPath { get; init; }

    /// <summary>The input file, or "-" for standard input.</summary>
    public string InputPath { get; init; } = "-";

    /// <summary>Trace format: a line below each CopyData of a replication stream with what it carries (JSON always has it).</summary>
    public bool Replication { get; init; }
}

/// <summary>Builds the <c>decode</c> command.</summary>
internal static class DecodeCommand
{
    private const string Summary = "Decode the bytes one side of a connection sent into libpq PQtrace lines or JSON.";

    private const string Description = """
        Decodes the bytes that ONE side of a PostgreSQL connection sent (protocol 3.0 or 3.2) and
        prints one line per message: the line libpq 18's PQtrace prints for it, or a JSON object.

        Input: FILE, or standard input when FILE is '-' or missing; raw bytes, or hex text with
        --hex (all whitespace is ignored; any other non-hex character is an error). The input is
        read as a stream, of any length: each line is printed as soon as its message is whole
        (the output is flushed whenever the input has to wait), and memory is bounded by the
        largest message. The --peer stream is read only as far as its startup and
        authentication (and its replication commands, below).

        Which side: --from. Without it the first byte decides: 0x00 (a startup packet) or a
        frontend-only type byte (Q P B F X f p) means frontend; an SSL/GSSENC answer (see below)
        or a backend-only type byte means backend; a byte both sides use (C D E H S c d) needs
        --from (or a --peer whose own first byte decides).

        Frontend streams that start with 0x00 begin with untyped packets (SSLRequest,
        GSSENCRequest, StartupMessage, CancelRequest); the StartupMessage sets the protocol
        version. Other frontend streams are read as typed messages from the middle of a session.

        Backend streams may begin with the one-byte answers to SSLRequest/GSSENCRequest: as many
        as the --peer stream sends requests before its StartupMessage; without --peer, as long as
        a byte is 'S', 'N' or 'G' and the byte after it is the end of the input, 'R', 'E' or 'v'
        (an authentication request, an error, NegotiateProtocolVersion), another answer byte, or
        0x16 (a TLS record). After an 'S' or 'G' answer the rest is encrypted: the answer line is
        printed, a note goes to standard error, and decoding stops with exit code 0. (A frontend
        stream stops the same way after a request the --peer accepted, or, without --peer, after
        an SSLRequest followed by a TLS record, 0x16.)

        'p' messages (PasswordMessage, SASLInitialResponse, SASLResponse, GSSResponse) all look
        alike. With --peer (the backend stream), the i-th 'p' gets the kind that the i-th
        authentication request expecting an answer implies: cleartext or MD5 password ->
        PasswordMessage, SASL -> SASLInitialResponse, SASLContinue -> SASLResponse, GSS, SSPI or
        GSSContinue -> GSSResponse. Without it, a 'p' prints as libpq prints a response it cannot
        name ("UnknownAuthenticationResponse"); in JSON its name is "p" and its body is raw.
        Unknown type bytes are printed ("Unknown message: xx"), not rejected. As in libpq 18,
        the trace format prints no line for AuthenticationOk (JSON does).

        Secrets: passwords (PasswordMessage) print as "********", and the SASL and GSS data of
        SASLInitialResponse, SASLResponse, GSSResponse and the AuthenticationSASLContinue,
        SASLFinal and GSSContinue requests as 'BBBB' (as regress mode prints them); in JSON
        their fields are {"redacted": true}. --show-secrets prints them as they are.

        Replication: after START_REPLICATION, the CopyData of the stream carry replication
        messages (XLogData, keepalives, status updates, hot standby feedback), and with logical
        replication through pgoutput, each XLogData one of pgoutput's messages. --replication adds,
        below each such CopyData line, a line one TAB deeper with the replication message (XLogData
        without its data, which the CopyData line shows) and for pgoutput one two TABs deeper with
        the pgoutput message; a comment line below CopyBothResponse says what the stream carries,
        and what does not decode is a comment line ('# ...') in place. The libpq lines stay as they
        are. JSON always carries them: "replication" and "pgoutput" objects in the CopyData's
        object, "replicationStream" in the CopyBothResponse's. A frontend stream's START_REPLICATION
        starts its stream; a backend stream's CopyBothResponse takes the START_REPLICATION (and the
        CREATE_REPLICATION_SLOT, which names the slot's plugin) from the --peer stream, read on as
        far as the streams need (without --peer, XLogData's data is not decoded). Physical
        replication's WAL is not decoded; a slot whose plugin is not pgoutput is not read as
        pgoutput, nor one whose plugin is not seen and whose options are not pgoutput's
        (proto_version, publication_names); an XLogData that does not decode as pgoutput ends the
        decoding of pgoutput in its stream.

        Exit codes: 0 all decoded; 1 the stream breaks the protocol or ends inside a message (the
        lines decoded so far are printed, then one error line with the byte offset on standard
        error); 2 a usage error or an input that cannot be read.

        Examples:
          pgspec decode --from frontend client.bin
          pgspec decode --from backend --peer client.bin server.bin
          pgspec decode --from frontend --peer server.bin --regress client.bin
          pgspec decode --from frontend --peer server.bin --show-secrets client.bin
          pgspec decode --hex --from backend --format json server.hex
          pgspec decode --from backend --peer client.bin --replication server.bin
          echo '5a 00000005 49' | pgspec decode --hex --from backend
        """;

    public static Command Create(Stream stdin, Stream stdout, TextWriter stderr)
    {
        var from = new Option<string?>("--from")
        {
            Description = "Who sent the input: frontend (the client) or backend (the server). Guessed from the first byte when omitted.",
            HelpName = "frontend|backend",
        };
        from.AcceptOnlyFromAmong("frontend", "backend");

        var protocol = new Option<string?>("--protocol")
        {
            Description = "The protocol version to start with. Default: for backend streams 3.2, or 3.0 if the --peer StartupMessage asks for 3.0; for frontend streams 3.2 until the StartupMessage says otherwise.",
            HelpName = "3.0|3.2",
        };
        protocol.AcceptOnlyFromAmong("3.0", "3.2");

        var hex = new Option<bool>("--hex")
        {
            Description = "The input (and the --peer file) are hex text; whitespace is ignored.",
        };

        var regress = new Option<bool>("--regress")
        {
            Description = "libpq's regress mode (PQTRACE_REGRESS_MODE): OIDs and process ids as NNNN, error/notice lengths as NN, file/line/routine as \"SSSS\", secrets and COPY data as 'BBBB'. Trace format only.",
        };

        var format = new Option<string>("--format")
        {
            Description = "trace: libpq's PQtrace lines (without timestamps). json: one JSON object per message and line, with offset, direction, type, length, name and the decoded fields.",
            HelpName = "trace|json",
            DefaultValueFactory = _ => "trace",
        };
        format.AcceptOnlyFromAmong("trace", "json");

        var peer = new Option<string?>("--peer")
        {
            Description = "The other direction's stream of the same connection (same --hex setting). Names 'p' messages, SSL/GSSENC answers and the protocol version.",
            HelpName = "FILE",
        };

        var showSecrets = new Option<bool>("--show-secrets")
        {
            Description = "Print passwords and SASL/GSS data instead of hiding them (\"********\", 'BBBB', {\"redacted\": true}).",
        };

        var replication = new Option<bool>("--replication")
        {
            Description = "Trace format: below each CopyData of a replication stream (after START_REPLICATION), an indented line with the replication message it carries, and for pgoutput one more with the pgoutput message. JSON always carries them.",
        };

        var input = new Argument<string>("FILE")
        {
            Description = "The stream to decode; '-' or nothing for standard input.",
            Arity = ArgumentArity.ZeroOrOne,
            DefaultValueFactory = _ => "-",
        };

        var command = new PgSpecCommand("decode", Summary, Description)
        {
            from,
            protocol,
            hex,
            regress,
            format,
            peer,
            showSecrets,
            replication,
            input,
        };

        command.Validators.Add(result =>
        {
            if (PgSpecCommandLine.ValueInValidator(result, regress) && PgSpecCommandLine.ValueInValidator(result, format) == "json")
            {
                result.AddError("--regress applies to --format trace only.");
            }

            if (PgSpecCommandLine.ValueInValidator(result, replication) && PgSpecCommandLine.ValueInValidator(result, format) == "json")
            {
                result.AddError("--replication applies to --format trace only (JSON always carries the decoded replication messages).");
            }
        });

        command.SetAction(result =>
        {
            var settings = new DecodeSettings
            {
                From = result.GetValue(from) switch
                {
                    "frontend" => PgDirection.Frontend,
                    "backend" => PgDirection.Backend,
                    _ => null,
                },
                Protocol = result.GetValue(protocol) switch
                {
                    "3.0" => PgProtocolVersion.V3_0,
                    "3.2" => PgProtocolVersion.V3_2,
                    _ => null,
                },
                Hex = result.GetValue(hex),
                Regress = result.GetValue(regress),
                Format = result.GetValue(format) == "json" ? DecodeFormat.Json : DecodeFormat.Trace,
                ShowSecrets = result.GetValue(showSecrets),
                PeerPath = result.GetValue(peer),
                Replication = result.GetValue(replication),
                InputPath = result.GetValue(input) ?? "-",
            };
            return StreamDecoder.Run(settings, stdin, stdout, stderr);
        });

        return command;
    }
}
