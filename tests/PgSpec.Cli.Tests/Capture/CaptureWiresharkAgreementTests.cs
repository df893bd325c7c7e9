using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Xml;
using PgSpec.Cli.Tests.RealServer;
using PgSpec.Protocol;

namespace PgSpec.Cli.Tests.Capture;

/// <summary>
/// Every message <c>pgspec capture</c> decodes from the capture of <see cref="ProxiedSessions"/>
/// (both sides of each proxy: clients over IPv6, servers over IPv4) against what Wireshark's pgsql
/// dissector (tshark 4.0) shows for the same packets: direction, type, length and every field the
/// dissector shows (query texts, statement and portal names, parameter, format and column
/// counts, values, error and notice fields, ParameterStatus, BackendKeyData, authentication data,
/// COPY data, ...). Where the dissector is wrong, <see cref="KnownDissectorErrors"/> lists its
/// disagreements exactly, so that a new or a missing one fails, and
/// <see cref="WhereTheDissectorIsWrong_OursFollowsTheProtocol"/> checks ours against the protocol.
/// </summary>
[Collection(ProxiedSessionsCollection.Name)]
public class CaptureWiresharkAgreementTests(ProxiedSessions sessions)
{
    /// <summary>
    /// tshark 4.0's pgsql dissector, where it is wrong on these sessions: it does not show the
    /// one-byte answers to SSLRequest and GSSENCRequest; after a GSSENCRequest it takes the server's
    /// side for encrypted and shows none of it, although the answer was 'N'; it knows neither the
    /// StartupMessage of protocol 3.2, nor a CancelRequest with a key longer than 4 bytes, nor
    /// CopyBothResponse ('W'), and it shows the first 4 bytes of a 3.2 BackendKeyData's 32-byte
    /// key as the key. Each line: the connection (its application_name, the side of the proxy,
    /// the server), the direction, our message and what the dissector does with it.
    /// </summary>
    private static readonly string[] KnownDissectorErrors =
    [
        "psql-pg15 (client side, PostgreSQL 15): B SSLResponse: not shown",
        "psql-pg18 (client side, PostgreSQL 18): B SSLResponse: not shown",
        "pipeline-libpq18-3.2-pg15 (client side, PostgreSQL 15): F StartupMessage: dissector type 'Unknown'",
        "pipeline-libpq18-3.2-pg15 (server side, PostgreSQL 15): F StartupMessage: dissector type 'Unknown'",
        "pipeline-libpq18-3.2-pg18 (client side, PostgreSQL 18): F StartupMessage: dissector type 'Unknown'",
        "pipeline-libpq18-3.2-pg18 (client side, PostgreSQL 18): B BackendKeyData: pgsql.key differs",
        "pipeline-libpq18-3.2-pg18 (server side, PostgreSQL 18): F StartupMessage: dissector type 'Unknown'",
        "pipeline-libpq18-3.2-pg18 (server side, PostgreSQL 18): B BackendKeyData: pgsql.key differs",
        "pgspec-client-3.2 (client side, PostgreSQL 18): F StartupMessage: dissector type 'Unknown'",
        "pgspec-client-3.2 (client side, PostgreSQL 18): B GSSENCResponse and the 51 messages after it: not shown",
        "pgspec-client-3.2 (server side, PostgreSQL 18): F StartupMessage: dissector type 'Unknown'",
        "pgspec-client-3.2 (server side, PostgreSQL 18): B BackendKeyData: pgsql.key differs",
        "CancelRequest (client side, PostgreSQL 18): F CancelRequest: dissector type 'Unknown'",
        "CancelRequest (server side, PostgreSQL 18): F CancelRequest: dissector type 'Unknown'",
        "pg_recvlogical (client side, PostgreSQL 15): B CopyBothResponse: dissector type 'Unknown'",
        "pg_recvlogical (server side, PostgreSQL 15): B CopyBothResponse: dissector type 'Unknown'",
    ];

    /// <summary>The dissector's names of the message types (tshark 4.0), by ours.</summary>
    private static readonly Dictionary<string, string> s_dissectorTypes = new()
    {
        ["AuthenticationOk"] = "Authentication request",
        ["AuthenticationCleartextPassword"] = "Authentication request",
        ["AuthenticationMD5Password"] = "Authentication request",
        ["AuthenticationSASL"] = "Authentication request",
        ["AuthenticationSASLContinue"] = "Authentication request",
        ["AuthenticationSASLFinal"] = "Authentication request",
        ["BackendKeyData"] = "Backend key data",
        ["BindComplete"] = "Bind completion",
        ["CloseComplete"] = "Close completion",
        ["CommandComplete"] = "Command completion",
        ["CopyDone"] = "Copy completion",
        ["CopyData"] = "Copy data",
        ["CopyInResponse"] = "CopyIn response",
        ["CopyOutResponse"] = "CopyOut response",
        ["DataRow"] = "Data row",
        ["EmptyQueryResponse"] = "Empty query",
        ["ErrorResponse"] = "Error",
        ["FunctionCallResponse"] = "Function call response",
        ["NegotiateProtocolVersion"] = "Negotiate protocol version",
        ["NoData"] = "No data",
        ["NoticeResponse"] = "Notice",
        ["NotificationResponse"] = "Notification",
        ["ParameterDescription"] = "Parameter description",
        ["ParameterStatus"] = "Parameter status",
        ["ParseComplete"] = "Parse completion",
        ["PortalSuspended"] = "Portal suspended",
        ["ReadyForQuery"] = "Ready for query",
        ["RowDescription"] = "Row description",
        ["Bind"] = "Bind",
        ["CancelRequest"] = "Cancel request",
        ["Close"] = "Close",
        ["CopyFail"] = "Copy failure",
        ["Describe"] = "Describe",
        ["Execute"] = "Execute",
        ["Flush"] = "Flush",
        ["FunctionCall"] = "Function call",
        ["GSSENCRequest"] = "GSS encrypt request",
        ["Parse"] = "Parse",
        ["PasswordMessage"] = "Password message",
        ["Query"] = "Simple query",
        ["SASLInitialResponse"] = "SASLInitialResponse message",
        ["SASLResponse"] = "SASLResponse message",
        ["SSLRequest"] = "SSL request",
        ["StartupMessage"] = "Startup message",
        ["Sync"] = "Sync",
        ["Terminate"] = "Termination",
    };

    /// <summary>The dissector's fields of ErrorResponse and NoticeResponse, by field code.</summary>
    private static readonly Dictionary<char, string> s_errorFields = new()
    {
        ['S'] = "severity", ['V'] = "text", ['C'] = "code", ['M'] = "message", ['D'] = "detail", ['H'] = "hint",
        ['P'] = "position", ['p'] = "internal_position", ['q'] = "internal_query", ['W'] = "where", ['s'] = "schema_name",
        ['t'] = "table_name", ['c'] = "column_name", ['d'] = "type_name", ['n'] = "constraint_name", ['F'] = "file",
        ['L'] = "line", ['R'] = "routine",
    };

    [Fact]
    public void EveryMessage_AgreesWithWiresharksDissector_WhereTheDissectorIsRight()
    {
        Dictionary<(string Client, string Server), List<DissectedMessage>> dissected = Dissect(sessions.CaptureFile, sessions.Ports);
        List<DecodedConnection> decoded = Decode();

        var disagreements = new List<string>();
        int agreed = 0;
        foreach (DecodedConnection connection in decoded)
        {
            Assert.True(dissected.Remove((connection.Client, connection.Server), out List<DissectedMessage>? theirs), $"tshark shows nothing of {connection.Label}");
            foreach (char direction in "FB")
            {
                agreed += Compare(
                    [.. connection.Messages.Where(m => m.Direction == direction)],
                    [.. theirs.Where(m => m.Direction == direction)],
                    $"{connection.Label}: {direction} ",
                    disagreements);
            }
        }

        // Connections the dissector shows and we do not.
        disagreements.AddRange(dissected.Keys.Select(key => $"{key.Client} -> {key.Server}: shown by the dissector only"));

        Assert.True(agreed > 25_000, $"only {agreed} messages compared");
        Assert.Equal(KnownDissectorErrors.Order(StringComparer.Ordinal), disagreements.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void WhereTheDissectorIsWrong_OursFollowsTheProtocol()
    {
        List<DecodedConnection> decoded = Decode();
        DecodedConnection[] startups32 = [.. decoded.Where(c => c.Messages.Any(m => m.Name == "StartupMessage" && m.Fields.GetProperty("protocolVersion").GetInt32() == 0x0003_0002))];

        // Protocol 3.2's StartupMessage: version 3.2 and the parameters; PostgreSQL 15 answers that
        // it speaks 3.0 (NegotiateProtocolVersion), 18 gives a 32-byte key. Both sides of three sessions.
        Assert.Equal(6, startups32.Length);
        foreach (DecodedConnection connection in startups32)
        {
            JsonElement startup = connection.Messages.Single(m => m.Name == "StartupMessage").Fields;
            Assert.Equal(["user", "database", "application_name"], startup.GetProperty("parameters").EnumerateArray().Select(p => p.GetProperty("name").GetString()).Where(n => n is not "replication"));
            if (connection.Major == 15)
            {
                DecodedMessage negotiate = connection.Messages.Single(m => m.Name == "NegotiateProtocolVersion");
                Assert.Equal(0x0003_0000, negotiate.Fields.GetProperty("newestProtocolVersion").GetInt32());
                Assert.Equal(12, connection.Messages.Single(m => m.Name == "BackendKeyData").Length);
            }
            else
            {
                DecodedMessage key = connection.Messages.Single(m => m.Name == "BackendKeyData");
                Assert.Equal(40, key.Length);
                Assert.Equal(64, key.Fields.GetProperty("secretKey").GetProperty("hex").GetString()!.Length);
            }
        }

        // A CancelRequest of 3.2: the process id and the whole 32-byte key of a BackendKeyData that
        // the same side of the proxy carried (the proxy's own key to the client, the server's to the proxy).
        DecodedConnection[] cancels = [.. decoded.Where(c => c.Messages.Any(m => m.Name == "CancelRequest"))];
        Assert.Equal(2, cancels.Length);
        foreach (DecodedConnection cancel in cancels)
        {
            DecodedMessage request = Assert.Single(cancel.Messages);
            Assert.Equal(44, request.Length);
            Assert.Contains(
                decoded.Where(c => c.Server == cancel.Server).SelectMany(c => c.Messages).Where(m => m.Name == "BackendKeyData"),
                key => key.Fields.GetRawText() == request.Fields.GetRawText());
        }

        // After a GSSENCRequest answered 'N' the connection goes on in plain text: the server's
        // side is every message the client received, from the answer on.
        DecodedConnection gss = Assert.Single(decoded, c => c.Messages.Any(m => m.Name == "GSSENCRequest"));
        Assert.Equal(["GSSENCRequest", "StartupMessage"], gss.Messages.Where(m => m.Direction == 'F').Take(2).Select(m => m.Name));
        Assert.Equal(
            sessions.Protocol32Traffic.Where(t => t.Direction == PgDirection.Backend).Select(t => t.Name),
            gss.Messages.Where(m => m.Direction == 'B').Select(m => m.Name));
        Assert.Equal(52, gss.Messages.Count(m => m.Direction == 'B'));
        Assert.Equal("N", gss.Messages.First(m => m.Direction == 'B').Fields.GetProperty("answer").GetString());

        // An SSLRequest answered 'N': one byte, then the StartupMessage in plain text.
        foreach (DecodedConnection psql in decoded.Where(c => c.Messages.Any(m => m.Name == "SSLRequest")))
        {
            DecodedMessage answer = psql.Messages.First(m => m.Direction == 'B');
            Assert.Equal(("SSLResponse", 1, "N"), (answer.Name, answer.Length, answer.Fields.GetProperty("answer").GetString()));
            Assert.Equal("StartupMessage", psql.Messages.Where(m => m.Direction == 'F').ElementAt(1).Name);
        }

        // CopyBothResponse ('W', logical replication): the answer to START_REPLICATION, after which
        // both sides send CopyData.
        DecodedConnection[] replication = [.. decoded.Where(c => c.Messages.Any(m => m.Name == "CopyBothResponse"))];
        Assert.Equal(2, replication.Length);
        foreach (DecodedConnection connection in replication)
        {
            List<DecodedMessage> messages = connection.Messages;
            int both = messages.FindIndex(m => m.Name == "CopyBothResponse");
            Assert.StartsWith("START_REPLICATION", messages.Take(both).Last(m => m.Name == "Query").Fields.GetProperty("queryString").GetString(), StringComparison.Ordinal);
            Assert.Equal(7, messages[both].Length);
            Assert.Contains(messages.Skip(both), m => m.Name == "CopyData" && m.Direction == 'F');
            Assert.Contains(messages.Skip(both), m => m.Name == "CopyData" && m.Direction == 'B');
        }
    }

    /// <summary>
    /// Compares one direction of a connection: the messages paired by type and length in order
    /// (the longest common sequence), the fields of each pair; what does not pair is a disagreement.
    /// Returns how many messages agreed.
    /// </summary>
    private static int Compare(List<DecodedMessage> ours, List<DissectedMessage> theirs, string prefix, List<string> disagreements)
    {
        int agreed = 0;
        foreach ((int I1, int I2, int J1, int J2, bool Equal) run in Align(ours, theirs))
        {
            List<DecodedMessage> a = ours[run.I1..run.I2];
            List<DissectedMessage> b = theirs[run.J1..run.J2];
            if (run.Equal || (a.Count == b.Count && a.Zip(b).All(p => p.First.Length == p.Second.Length)))
            {
                foreach ((DecodedMessage mine, DissectedMessage dissector) in a.Zip(b))
                {
                    if (!run.Equal)
                    {
                        disagreements.Add($"{prefix}{mine.Name}: dissector type '{dissector.Type}'");
                        continue;
                    }

                    List<(string Name, string Value)> expected = Project(mine);
                    if (expected.SequenceEqual(dissector.Fields))
                    {
                        agreed++;
                    }
                    else if (expected.Count == dissector.Fields.Count)
                    {
                        disagreements.AddRange(expected.Zip(dissector.Fields).Where(p => p.First != p.Second).Select(p => p.First.Name).Distinct().Select(field => $"{prefix}{mine.Name}: {field} differs"));
                    }
                    else
                    {
                        disagreements.Add($"{prefix}{mine.Name}: {expected.Count} fields, the dissector {dissector.Fields.Count}: [{string.Join(", ", dissector.Fields)}] for [{string.Join(", ", expected)}]");
                    }
                }

                continue;
            }

            if (a.Count > 0)
            {
                disagreements.Add(a.Count == 1 ? $"{prefix}{a[0].Name}: not shown" : $"{prefix}{a[0].Name} and the {a.Count - 1} messages after it: not shown");
            }

            if (b.Count > 0)
            {
                disagreements.Add($"{prefix}the dissector shows {b.Count} messages we do not, from '{b[0].Type}' of length {b[0].Length}");
            }
        }

        return agreed;
    }

    /// <summary>
    /// Runs of the two sequences: pairs of the same type and length (Equal), and the runs between
    /// them; the common start and end are taken first, the rest is a longest common subsequence.
    /// </summary>
    private static List<(int I1, int I2, int J1, int J2, bool Equal)> Align(List<DecodedMessage> ours, List<DissectedMessage> theirs)
    {
        bool Same(int i, int j) => ours[i].Length == theirs[j].Length && s_dissectorTypes.GetValueOrDefault(ours[i].Name) == theirs[j].Type;

        int head = 0;
        while (head < ours.Count && head < theirs.Count && Same(head, head))
        {
            head++;
        }

        int tail = 0;
        while (tail < ours.Count - head && tail < theirs.Count - head && Same(ours.Count - 1 - tail, theirs.Count - 1 - tail))
        {
            tail++;
        }

        int n = ours.Count - head - tail;
        int m = theirs.Count - head - tail;
        Assert.True((long)n * m < 4_000_000, $"the sequences differ over {n} and {m} messages");

        // lcs[i, j]: the longest common subsequence of the middles from i and from j.
        int[,] lcs = new int[n + 1, m + 1];
        for (int i = n - 1; i >= 0; i--)
        {
            for (int j = m - 1; j >= 0; j--)
            {
                lcs[i, j] = Same(head + i, head + j) ? lcs[i + 1, j + 1] + 1 : Math.Max(lcs[i + 1, j], lcs[i, j + 1]);
            }
        }

        var runs = new List<(int, int, int, int, bool)> { (0, head, 0, head, true) };
        int x = 0, y = 0, startX = 0, startY = 0;
        while (x < n || y < m)
        {
            if (x < n && y < m && Same(head + x, head + y))
            {
                runs.Add((head + startX, head + x, head + startY, head + y, false));
                runs.Add((head + x, head + x + 1, head + y, head + y + 1, true));
                x++;
                y++;
                startX = x;
                startY = y;
            }
            else if (y >= m || (x < n && lcs[x + 1, y] >= lcs[x, y + 1]))
            {
                x++;
            }
            else
            {
                y++;
            }
        }

        runs.Add((head + startX, head + n, head + startY, head + m, false));
        runs.Add((head + n, ours.Count, head + m, theirs.Count, true));
        return [.. runs.Where(r => r.Item2 > r.Item1 || r.Item4 > r.Item3)];
    }

    /// <summary>The fields the dissector shows for a message, in its order, as it shows them, from our decode.</summary>
    private static List<(string Name, string Value)> Project(DecodedMessage message)
    {
        JsonElement f = message.Fields;
        var fields = new List<(string, string)>();
        void Add(string name, object value) => fields.Add(("pgsql." + name, Convert.ToString(value, CultureInfo.InvariantCulture)!));
        void Text(string text) => fields.Add(("", text));
        void Value(JsonElement value)
        {
            // A value: its length (-1 for NULL), then its bytes when there are some.
            if (value.ValueKind == JsonValueKind.Null)
            {
                Add("val.length", -1);
                return;
            }

            string hex = value.GetProperty("hex").GetString()!;
            Add("val.length", hex.Length / 2);
            if (hex.Length > 0)
            {
                Add("val.data", Bytes(value));
            }
        }

        IEnumerable<JsonElement> Array(string name) => f.GetProperty(name).EnumerateArray();
        string String(string name) => f.GetProperty(name).GetString()!;
        int Int(string name) => f.GetProperty(name).GetInt32();

        switch (message.Name)
        {
            case "StartupMessage":
                Add("version_major", Int("protocolVersion") >> 16);
                Add("version_minor", Int("protocolVersion") & 0xFFFF);
                foreach (JsonElement parameter in Array("parameters"))
                {
                    Add("parameter_name", parameter.GetProperty("name").GetString()!);
                    Add("parameter_value", parameter.GetProperty("value").GetString()!);
                }

                break;
            case "CancelRequest":
            case "BackendKeyData":
                Add("pid", Int("processId"));

                // The dissector's key is 4 bytes, as before protocol 3.2.
                string key = f.GetProperty("secretKey").GetProperty("hex").GetString()!;
                Add("key", key.Length == 8 ? uint.Parse(key, NumberStyles.HexNumber, CultureInfo.InvariantCulture) : $"{key} ({key.Length / 2} bytes)");
                break;
            case "AuthenticationOk":
                Add("authtype", 0);
                break;
            case "AuthenticationCleartextPassword":
                Add("authtype", 3);
                break;
            case "AuthenticationMD5Password":
                Add("authtype", 5);
                Add("salt", Bytes(f.GetProperty("salt")));
                break;
            case "AuthenticationSASL":
                Add("authtype", 10);
                foreach (JsonElement mechanism in Array("mechanisms"))
                {
                    Add("auth.sasl.mech", mechanism.GetString()!);
                }

                break;
            case "AuthenticationSASLContinue":
            case "AuthenticationSASLFinal":
                Add("authtype", message.Name == "AuthenticationSASLContinue" ? 11 : 12);
                Add("auth.sasl.data", Bytes(f.GetProperty("data")));
                break;
            case "PasswordMessage":
                Add("password", String("password"));
                break;
            case "SASLInitialResponse":
                Add("auth.sasl.mech", String("mechanism"));
                Add("auth.sasl.data.length", f.GetProperty("data").GetProperty("hex").GetString()!.Length / 2);
                Add("auth.sasl.data", Bytes(f.GetProperty("data")));
                break;
            case "SASLResponse":
                Add("auth.sasl.data", Bytes(f.GetProperty("data")));
                break;
            case "ParameterStatus":
                Add("parameter_name", String("name"));
                Add("parameter_value", String("value"));
                break;
            case "Query":
                Add("query", String("queryString"));
                break;
            case "Parse":
                Add("statement", String("statementName"));
                Add("query", String("queryString"));
                Text($"Parameters: {Array("parameterTypeOids").Count()}");
                foreach (JsonElement oid in Array("parameterTypeOids"))
                {
                    Add("oid.type", oid.GetUInt32());
                }

                break;
            case "Bind":
                Add("portal", String("portalName"));
                Add("statement", String("statementName"));
                Text($"Parameter formats: {Array("parameterFormatCodes").Count()}");
                foreach (JsonElement format in Array("parameterFormatCodes"))
                {
                    Add("format", format.GetInt32());
                }

                Text($"Parameter values: {Array("parameters").Count()}");
                foreach (JsonElement value in Array("parameters"))
                {
                    Value(value);
                }

                Text($"Result formats: {Array("resultFormatCodes").Count()}");
                foreach (JsonElement format in Array("resultFormatCodes"))
                {
                    Add("format", format.GetInt32());
                }

                break;
            case "Describe":
            case "Close":
                Add(String("target") == "Portal" ? "portal" : "statement", String("name"));
                break;
            case "Execute":
                Add("portal", String("portalName"));
                Add("returns", Int("maxRows"));
                break;
            case "FunctionCall":
                Add("oid", f.GetProperty("functionOid").GetUInt32());
                Text($"Parameter formats: {Array("argumentFormatCodes").Count()}");
                foreach (JsonElement format in Array("argumentFormatCodes"))
                {
                    Add("format", format.GetInt32());
                }

                Text($"Parameter values: {Array("arguments").Count()}");
                foreach (JsonElement value in Array("arguments"))
                {
                    Value(value);
                }

                Add("format", Int("resultFormatCode"));
                break;
            case "FunctionCallResponse":
                Value(f.GetProperty("value"));
                break;
            case "CopyData":
                Add("copydata", Bytes(f.GetProperty("data")));
                break;
            case "CopyInResponse":
            case "CopyOutResponse":
                Add("format", String("overallFormat") == "Text" ? 0 : 1);
                Text($"Columns: {Array("columnFormatCodes").Count()}");
                break;
            case "RowDescription":
                Add("field.count", Array("fields").Count());
                foreach (JsonElement column in Array("fields"))
                {
                    Add("col.name", column.GetProperty("name").GetString()!);
                    Add("oid.table", column.GetProperty("tableOid").GetUInt32());
                    Add("col.index", column.GetProperty("columnAttributeNumber").GetInt32());
                    Add("oid.type", column.GetProperty("dataTypeOid").GetUInt32());
                    Add("val.length", column.GetProperty("dataTypeSize").GetInt32());
                    Add("col.typemod", column.GetProperty("typeModifier").GetInt32());
                    Add("format", column.GetProperty("formatCode").GetInt32());
                }

                break;
            case "DataRow":
                Add("field.count", Array("columns").Count());
                foreach (JsonElement value in Array("columns"))
                {
                    Value(value);
                }

                break;
            case "CommandComplete":
                Add("tag", String("commandTag"));
                break;
            case "ReadyForQuery":
                Add("status", (byte)Enum.Parse<TransactionStatus>(String("transactionStatus")));
                break;
            case "ErrorResponse":
            case "NoticeResponse":
                foreach (JsonElement field in Array("fields"))
                {
                    char code = field.GetProperty("code").GetString()![0];
                    Add(s_errorFields.GetValueOrDefault(code, "unknown field " + code), field.GetProperty("value").GetString()!);
                }

                break;
            case "NotificationResponse":
                Add("pid", Int("processId"));
                Add("condition", String("channel"));
                Add("text", String("payload"));
                break;
            case "CopyFail":
                Add("error", String("errorMessage"));
                break;
            case "ParameterDescription":
                Text($"Parameters: {Array("parameterTypeOids").Count()}");
                foreach (JsonElement oid in Array("parameterTypeOids"))
                {
                    Add("oid.type", oid.GetUInt32());
                }

                break;
            case "NegotiateProtocolVersion":
                Add("version_supported_minor", Int("newestProtocolVersion"));
                Add("number_nonsupported_options", Array("unrecognizedOptions").Count());
                foreach (JsonElement option in Array("unrecognizedOptions"))
                {
                    Add("nonsupported_option", option.GetString()!);
                }

                break;
        }

        return fields;
    }

    /// <summary>Bytes as the dissector shows them: hex pairs joined by colons.</summary>
    private static string Bytes(JsonElement value)
    {
        string hex = value.GetProperty("hex").GetString()!;
        return string.Join(':', Enumerable.Range(0, hex.Length / 2).Select(i => hex.Substring(i * 2, 2)));
    }

    /// <summary>Our decode of the whole capture, by connection.</summary>
    private List<DecodedConnection> Decode()
    {
        CliResult result = CliRunner.Run(["capture", "--format", "json", "--show-secrets", "--port", string.Join(',', sessions.Ports), sessions.CaptureFile]);
        Assert.True(result.ExitCode == 0, result.Stderr);
        var connections = new Dictionary<long, DecodedConnection>();
        foreach (string line in result.Lines)
        {
            JsonElement o = JsonDocument.Parse(line).RootElement;
            long id = o.GetProperty("connection").GetInt64();
            if (o.TryGetProperty("event", out JsonElement kind))
            {
                if (kind.GetString() == "seen")
                {
                    string[] ends = o.GetProperty("text").GetString()!.Split(" -> ");
                    IPEndPoint server = IPEndPoint.Parse(ends[1]);
                    bool clientSide = server.Port == sessions.Proxy15Port || server.Port == sessions.Proxy18Port;
                    int major = server.Port == sessions.Proxy15Port || server.Port == sessions.Pg15.Port ? 15 : 18;
                    connections[id] = new DecodedConnection(IPEndPoint.Parse(ends[0]).ToString(), server.ToString(), clientSide ? "client side" : "server side", major, []);
                }
                else
                {
                    // The capture saw every connection whole: seen and ended, nothing else.
                    Assert.Equal(("ended", "closed"), (kind.GetString(), o.GetProperty("text").GetString()));
                }

                continue;
            }

            connections[id].Messages.Add(new DecodedMessage(
                o.GetProperty("direction").GetString()![0],
                o.GetProperty("name").GetString()!,
                o.GetProperty("length").GetInt32(),
                o.GetProperty("fields").Clone()));
        }

        return [.. connections.Values];
    }

    /// <summary>
    /// tshark's dissection of every message of the capture (PDML, read as tshark writes it), by
    /// connection: its type, length and fields (named fields and the dissector's unnamed count
    /// lines, such as "Parameters: 2"), in the dissector's order.
    /// </summary>
    private static Dictionary<(string Client, string Server), List<DissectedMessage>> Dissect(string file, int[] ports)
    {
        string tshark = ExternalProcess.FindOnPath("tshark") ?? throw new InvalidOperationException("tshark is not installed (Debian: apt-get install -y tshark)");
        var start = new ProcessStartInfo(tshark)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
        };
        foreach (string argument in (string[])["-r", file, .. ports.SelectMany(port => new[] { "-d", $"tcp.port=={port.ToString(CultureInfo.InvariantCulture)},pgsql" }), "-T", "pdml"])
        {
            start.ArgumentList.Add(argument);
        }

        using Process process = Process.Start(start)!;
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        var messages = new Dictionary<(string, string), List<DissectedMessage>>();
        using (XmlReader reader = XmlReader.Create(process.StandardOutput, new XmlReaderSettings { DtdProcessing = DtdProcessing.Ignore }))
        {
            string proto = "";
            string source = "", destination = "", sourcePort = "", destinationPort = "";
            DissectedMessage? current = null;
            while (reader.Read())
            {
                if (reader.NodeType == XmlNodeType.EndElement && reader.Name == "proto" && current is not null)
                {
                    string client = new IPEndPoint(IPAddress.Parse(current.Direction == 'F' ? source : destination), int.Parse(current.Direction == 'F' ? sourcePort : destinationPort, CultureInfo.InvariantCulture)).ToString();
                    string server = new IPEndPoint(IPAddress.Parse(current.Direction == 'F' ? destination : source), int.Parse(current.Direction == 'F' ? destinationPort : sourcePort, CultureInfo.InvariantCulture)).ToString();
                    if (!messages.TryGetValue((client, server), out List<DissectedMessage>? list))
                    {
                        messages[(client, server)] = list = [];
                    }

                    list.Add(current);
                    current = null;
                    continue;
                }

                if (reader.NodeType != XmlNodeType.Element)
                {
                    continue;
                }

                if (reader.Name == "proto")
                {
                    proto = reader.GetAttribute("name") ?? "";
                    if (proto == "pgsql")
                    {
                        current = new DissectedMessage(' ', "", -1, []);
                    }

                    continue;
                }

                if (reader.Name != "field")
                {
                    continue;
                }

                string name = reader.GetAttribute("name") ?? "";
                string show = reader.GetAttribute("show") ?? "";
                switch (proto, name)
                {
                    case ("ip", "ip.src") or ("ipv6", "ipv6.src"):
                        source = show;
                        break;
                    case ("ip", "ip.dst") or ("ipv6", "ipv6.dst"):
                        destination = show;
                        break;
                    case ("tcp", "tcp.srcport"):
                        sourcePort = show;
                        break;
                    case ("tcp", "tcp.dstport"):
                        destinationPort = show;
                        break;
                    case ("pgsql", "pgsql.type"):
                        current = current! with { Type = show };
                        break;
                    case ("pgsql", "pgsql.length"):
                        current = current! with { Length = int.Parse(show, CultureInfo.InvariantCulture) };
                        break;
                    case ("pgsql", "pgsql.frontend"):
                        current = current! with { Direction = show == "1" ? 'F' : 'B' };
                        break;
                    case ("pgsql", ""):
                        current!.Fields.Add(("", show));
                        break;
                    case ("pgsql", _):
                        current!.Fields.Add((name, show));
                        break;
                }
            }
        }

        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"tshark exit code {process.ExitCode}: {stderr.Result}");
        return messages;
    }

    /// <summary>A message as the dissector shows it.</summary>
    private sealed record DissectedMessage(char Direction, string Type, int Length, List<(string Name, string Value)> Fields);

    /// <summary>A message of our decode: its direction, name, length and JSON fields.</summary>
    private sealed record DecodedMessage(char Direction, string Name, int Length, JsonElement Fields);

    /// <summary>A connection of our decode, named by its application_name, the side of the proxy and the server.</summary>
    private sealed record DecodedConnection(string Client, string Server, string Side, int Major, List<DecodedMessage> Messages)
    {
        public string Label
        {
            get
            {
                JsonElement? startup = Messages.FirstOrDefault(m => m.Name == "StartupMessage")?.Fields;
                string name = startup?.GetProperty("parameters").EnumerateArray().FirstOrDefault(p => p.GetProperty("name").GetString() == "application_name") is { ValueKind: JsonValueKind.Object } application
                    ? application.GetProperty("value").GetString()!
                    : Messages.FirstOrDefault()?.Name ?? "(no message)";
                return $"{name} ({Side}, PostgreSQL {Major.ToString(CultureInfo.InvariantCulture)})";
            }
        }
    }
}
