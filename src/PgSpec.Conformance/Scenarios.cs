using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using PgSpec.Protocol;
using PgSpec.Protocol.PgOutput;
using PgSpec.Protocol.Replication;
using PgSpec.Client;
using PgSpec.Servers;

namespace PgSpec.Conformance;

/// <summary>How a scenario ended.</summary>
public enum ScenarioStatus
{
    /// <summary>Everything held.</summary>
    Passed,

    /// <summary>PgSpec's codec or session did something wrong.</summary>
    Failed,

    /// <summary>The server refused it with an ErrorResponse (a feature or method it lacks).</summary>
    Refused,

    /// <summary>It does not apply to this server (a version or role it does not have).</summary>
    NotApplicable,

    /// <summary>
    /// A server PgSpec did not start (--server) broke the protocol: it sent bytes the codec or the
    /// session rejected, so the scenario could not go on. The server's fault, not PgSpec's; against
    /// a server PgSpec started (PostgreSQL, the reference), the same error is <see cref="Failed"/>.
    /// </summary>
    ServerViolation,
}

/// <summary>One scenario's outcome against one server.</summary>
public sealed record ScenarioResult(string Server, string Scenario, ScenarioStatus Status, string Detail, TimeSpan Duration);

/// <summary>A server to run the scenarios against.</summary>
public sealed class Target
{
    /// <summary>A short key for tables ("15", "18", "url").</summary>
    public required string Key { get; init; }

    /// <summary>A description ("PostgreSQL 15.18, local").</summary>
    public required string Description { get; set; }

    /// <summary>Host.</summary>
    public required string Host { get; init; }

    /// <summary>Port.</summary>
    public required int Port { get; init; }

    /// <summary>Unix socket path, if reachable that way.</summary>
    public string? SocketPath { get; init; }

    /// <summary>The CA for verify-ca / verify-full.</summary>
    public X509Certificate2? CaCertificate { get; init; }

    /// <summary>The roles: one per method for servers PgSpec started, the URL's user otherwise.</summary>
    public required IReadOnlyList<PgRole> Roles { get; init; }

    /// <summary>The database to connect to.</summary>
    public string Database { get; init; } = "postgres";

    /// <summary>PgSpec started it: every scenario must pass and every reachable message must be seen.</summary>
    public bool Managed { get; init; }

    /// <summary>The server's major version, learnt on the first connection.</summary>
    public int Major { get; set; }

    /// <summary>Whether the server has prepared transactions enabled (max_prepared_transactions), learnt by the logical-replication scenario; null before.</summary>
    public bool? PreparedTransactions { get; set; }

    /// <summary>A target for a server PgSpec started.</summary>
    public static Target From(PgServer server) => new()
    {
        Key = server.MajorVersion.ToString(CultureInfo.InvariantCulture),
        Description = server.Version + " (" + server.Provider + ")",
        Host = server.Host,
        Port = server.Port,
        SocketPath = server.SocketPath,
        CaCertificate = server.CaCertificate,
        Roles = server.Roles,
        Managed = true,
        Major = server.MajorVersion,
    };

    /// <summary>A target for a server given by URL.</summary>
    public static Target FromUrl(string url)
    {
        PgConnectOptions options = PgConnectOptions.FromUrl(url);
        return new Target
        {
            Key = "url",
            Description = $"{options.Host}:{options.Port}",
            Host = options.Host,
            Port = options.Port,
            Roles = [new PgRole(options.User, options.Password ?? "", PgAuthMethod.ScramSha256)],
            Database = options.Database ?? options.User,
            Managed = false,
        };
    }

    /// <summary>The role for a method; for a URL target, its only role.</summary>
    public PgRole RoleFor(PgAuthMethod method)
        => Managed ? Roles.First(r => r.Method == method && !r.SslOnly && !r.Replication) : Roles[0];
}

/// <summary>A scenario cannot run against this server.</summary>
public sealed class NotApplicableException(string reason) : Exception(reason);

/// <summary>The server answered in its own way (a pooler, another implementation); not a failure of PgSpec.</summary>
public sealed class RefusedException(string reason) : Exception(reason);

/// <summary>A scenario saw something wrong.</summary>
public sealed class ScenarioFailedException(string reason) : Exception(reason);

/// <summary>What a scenario gets: its server, and sessions whose traffic is recorded.</summary>
public sealed class ScenarioContext(Target target, Coverage coverage, string scenario, TimeSpan timeout)
{
    /// <summary>The server.</summary>
    public Target Target { get; } = target;

    /// <summary>The scenario's name.</summary>
    public string Scenario { get; } = scenario;

    /// <summary>Gives a further traffic callback for each session opened (given the scenario's name), or null.</summary>
    public Func<string, Action<PgTraffic>>? Observe { get; init; }

    /// <summary>Connection options for a role.</summary>
    public PgConnectOptions Options(PgRole? role = null)
    {
        role ??= Target.RoleFor(PgAuthMethod.Trust);
        return new PgConnectOptions
        {
            Host = Target.Host,
            Port = Target.Port,
            User = role.Name,
            Password = role.Password,
            Database = Target.Database,
            SslMode = PgSslMode.Disable,
            RootCertificates = Target.CaCertificate is null ? null : [Target.CaCertificate],
            ConnectTimeout = timeout,
            CommandTimeout = timeout,
        };
    }

    /// <summary>Opens a recorded session.</summary>
    public async Task<PgFrontendSession> ConnectAsync(PgConnectOptions options)
    {
        PgFrontendSession? session = null;
        Action<PgTraffic> recorder = coverage.Recorder(Target.Key, Scenario, () => session?.ProtocolVersion ?? options.ProtocolVersion);
        if (Observe?.Invoke(Scenario) is { } observer)
        {
            Action<PgTraffic> coverageRecorder = recorder;
            recorder = traffic =>
            {
                coverageRecorder(traffic);
                observer(traffic);
            };
        }

        PgFrontendSession result = await PgFrontendSession.ConnectAsync(options, recorder).ConfigureAwait(false);
        session = result;
        if (Target.Major == 0 && result.Parameters.TryGetValue("server_version", out string? version))
        {
            Target.Major = int.Parse(version.Split('.', ' ')[0], CultureInfo.InvariantCulture);
            Target.Description = "PostgreSQL " + version + (Target.Managed ? "" : " at " + Target.Description);
        }

        return result;
    }

    /// <summary>Opens a recorded session as the trust role (or the URL's user).</summary>
    public Task<PgFrontendSession> ConnectAsync() => ConnectAsync(Options());

    /// <summary>Fails the scenario unless <paramref name="condition"/> holds.</summary>
    public static void Check(bool condition, string what)
    {
        if (!condition)
        {
            throw new ScenarioFailedException(what);
        }
    }
}

/// <summary>The scenarios of `pgspec conform`, each a part of the protocol driven against a real server.</summary>
public static class Scenarios
{
    /// <summary>Every scenario, in running order.</summary>
    public static IReadOnlyList<(string Name, Func<ScenarioContext, Task> Run)> All { get; } =
    [
        ("auth-trust", c => Authenticate(c, PgAuthMethod.Trust, "trust")),
        ("auth-password", c => Authenticate(c, PgAuthMethod.Password, "cleartext")),
        ("auth-md5", c => Authenticate(c, PgAuthMethod.Md5, "md5")),
        ("auth-scram", c => Authenticate(c, PgAuthMethod.ScramSha256, "SCRAM-SHA-256")),
        ("auth-wrong-password", WrongPassword),
        ("ssl-prefer", c => Ssl(c, PgSslMode.Prefer, PgSslNegotiation.Postgres)),
        ("ssl-require", c => Ssl(c, PgSslMode.Require, PgSslNegotiation.Postgres)),
        ("ssl-verify-full", c => Ssl(c, PgSslMode.VerifyFull, PgSslNegotiation.Postgres)),
        ("ssl-direct", c => Ssl(c, PgSslMode.Require, PgSslNegotiation.Direct)),
        ("ssl-only-role", SslOnlyRole),
        ("gssenc-request", GssEncRequest),
        ("unix-socket", UnixSocket),
        ("protocol-3.2", Protocol32),
        ("protocol-option", ProtocolOption),
        ("simple-query", SimpleQuery),
        ("extended-query", ExtendedQuery),
        ("portal-suspension", PortalSuspension),
        ("pipeline-error", PipelineWithError),
        ("copy-in", CopyIn),
        ("copy-out", CopyOut),
        ("copy-fail", CopyFail),
        ("copy-both", CopyBoth),
        ("logical-replication", LogicalReplication),
        ("function-call", FunctionCallScenario),
        ("notifications", Notifications),
        ("notices", Notices),
        ("parameter-status", ParameterStatusScenario),
        ("cancel", Cancel),
        ("terminate", TerminateScenario),
    ];

    private static async Task Authenticate(ScenarioContext c, PgAuthMethod method, string expected)
    {
        if (!c.Target.Managed && method != PgAuthMethod.Trust)
        {
            throw new NotApplicableException("only the URL's user is known; see auth-trust for the method the server chose");
        }

        await using PgFrontendSession session = await c.ConnectAsync(c.Options(c.Target.RoleFor(method))).ConfigureAwait(false);
        if (c.Target.Managed)
        {
            ScenarioContext.Check(session.AuthenticationMethod == expected, $"authenticated with {session.AuthenticationMethod}, expected {expected}");
        }

        IReadOnlyList<PgResult> results = await session.QueryAsync("SELECT current_user").ConfigureAwait(false);
        ScenarioContext.Check(results[0].Text(0, 0) == c.Target.RoleFor(method).Name, "current_user is not the role that logged in");
    }

    private static async Task WrongPassword(ScenarioContext c)
    {
        PgRole role = c.Target.RoleFor(PgAuthMethod.ScramSha256);
        try
        {
            await using PgFrontendSession session = await c.ConnectAsync(c.Options(role) with { Password = role.Password + "-wrong" }).ConfigureAwait(false);
        }
        catch (PgServerException e)
        {
            if (!c.Target.Managed && e.SqlState != "28P01")
            {
                // A pooler may answer with its own code (pgbouncer: 08P01): the session surfaced it.
                throw new RefusedException($"the server rejected the wrong password with {e.SqlState} ({e.Fields.Message}) rather than 28P01");
            }

            ScenarioContext.Check(e.SqlState == "28P01", $"expected SQLSTATE 28P01, got {e.SqlState}: {e.Fields.Message}");
            return;
        }

        if (!c.Target.Managed)
        {
            throw new NotApplicableException("the server accepted a wrong password (trust authentication)");
        }

        throw new ScenarioFailedException("a wrong password was accepted");
    }

    private static async Task Ssl(ScenarioContext c, PgSslMode mode, PgSslNegotiation negotiation)
    {
        if (negotiation == PgSslNegotiation.Direct && c.Target.Major is > 0 and < 17)
        {
            throw new NotApplicableException($"direct TLS needs PostgreSQL 17 or later; this is {c.Target.Major}");
        }

        if (mode == PgSslMode.VerifyFull && c.Target.CaCertificate is null)
        {
            throw new NotApplicableException("the server's CA certificate is not known");
        }

        PgRole role = c.Target.RoleFor(PgAuthMethod.ScramSha256);
        PgFrontendSession session;
        try
        {
            session = await c.ConnectAsync(c.Options(role) with { SslMode = mode, SslNegotiation = negotiation }).ConfigureAwait(false);
        }
        catch (PgConnectionException e) when (negotiation == PgSslNegotiation.Direct && !c.Target.Managed)
        {
            // Direct TLS is optional: servers before 17 and poolers (whatever version they report) close or answer in their own way.
            throw new RefusedException("the server does not take direct TLS: " + e.Message);
        }

        await using PgFrontendSession owned = session;
        if (c.Target.Managed)
        {
            ScenarioContext.Check(session.Tls is not null, "TLS was not used");
            ScenarioContext.Check(session.AuthenticationMethod == "SCRAM-SHA-256-PLUS", $"expected channel binding (SCRAM-SHA-256-PLUS), got {session.AuthenticationMethod}");
        }

        IReadOnlyList<PgResult> results = await session.QueryAsync("SELECT 1").ConfigureAwait(false);
        ScenarioContext.Check(results[0].Text(0, 0) == "1", "wrong result over TLS");
    }

    private static async Task SslOnlyRole(ScenarioContext c)
    {
        if (!c.Target.Managed)
        {
            throw new NotApplicableException("needs a hostssl-only role");
        }

        PgRole role = c.Target.Roles.First(r => r.SslOnly);
        try
        {
            await using PgFrontendSession plain = await c.ConnectAsync(c.Options(role)).ConfigureAwait(false);
            throw new ScenarioFailedException("a hostssl-only role logged in without TLS");
        }
        catch (PgServerException e)
        {
            ScenarioContext.Check(e.SqlState == "28000", $"expected 28000 (no pg_hba entry) without TLS, got {e.SqlState}");
        }

        await using PgFrontendSession session = await c.ConnectAsync(c.Options(role) with { SslMode = PgSslMode.VerifyCa }).ConfigureAwait(false);
        ScenarioContext.Check(session.Tls is not null, "TLS was not used");
    }

    private static async Task GssEncRequest(ScenarioContext c)
    {
        // A server built without GSSAPI answers 'N' and the startup goes on; one built with it
        // answers 'G', and the session (which has no GSSAPI) starts over without the request.
        await using PgFrontendSession session = await c.ConnectAsync(c.Options() with { RequestGssEncryption = true }).ConfigureAwait(false);
        ScenarioContext.Check(session.GssEncryptionAnswer is (byte)'N' or (byte)'G', "GSSENCRequest was not answered");
        await session.QueryAsync("SELECT 1").ConfigureAwait(false);
    }

    private static async Task UnixSocket(ScenarioContext c)
    {
        if (c.Target.SocketPath is null)
        {
            throw new NotApplicableException("the server's socket folder is not known");
        }

        await using PgFrontendSession session = await c.ConnectAsync(c.Options() with { UnixSocketPath = c.Target.SocketPath }).ConfigureAwait(false);
        IReadOnlyList<PgResult> results = await session.QueryAsync("SELECT inet_server_addr() IS NULL").ConfigureAwait(false);
        ScenarioContext.Check(results[0].Text(0, 0) == "t", "the session is not on a Unix socket");
    }

    private static async Task Protocol32(ScenarioContext c)
    {
        await using PgFrontendSession session = await c.ConnectAsync(c.Options() with { ProtocolVersion = PgProtocolVersion.V3_2 }).ConfigureAwait(false);
        if (c.Target.Major >= 18)
        {
            ScenarioContext.Check(session.ProtocolVersion == PgProtocolVersion.V3_2, $"negotiated {session.ProtocolVersion}, expected 3.2");
            ScenarioContext.Check(session.SecretKey.Length is > 4 and <= 256, $"a {session.SecretKey.Length}-byte key under 3.2");
            await CancelSleep(session).ConfigureAwait(false);
        }
        else
        {
            ScenarioContext.Check(session.Negotiation is not null, "no NegotiateProtocolVersion from a server older than 18");
            ScenarioContext.Check(session.ProtocolVersion == PgProtocolVersion.V3_0, $"negotiated {session.ProtocolVersion}, expected 3.0");
            ScenarioContext.Check(session.SecretKey.Length == 4, "the key is not 4 bytes under 3.0");
        }
    }

    private static async Task ProtocolOption(ScenarioContext c)
    {
        await using PgFrontendSession session = await c.ConnectAsync(c.Options() with { Parameters = [new("_pq_.pgspec_conformance", "on")] }).ConfigureAwait(false);
        ScenarioContext.Check(session.Negotiation is { } n && n.UnrecognizedOptions.Contains("_pq_.pgspec_conformance"), "NegotiateProtocolVersion does not list the _pq_ option");
    }

    private static async Task SimpleQuery(ScenarioContext c)
    {
        await using PgFrontendSession session = await c.ConnectAsync().ConfigureAwait(false);
        IReadOnlyList<PgResult> results = await session.QueryAsync("SELECT 1 AS a; SELECT 'x' AS b, NULL AS c; CREATE TEMP TABLE t(a int); INSERT INTO t VALUES (1),(2)").ConfigureAwait(false);
        ScenarioContext.Check(results.Count == 4, $"{results.Count} results for 4 statements");
        ScenarioContext.Check(results[1].Text(0, 1) is null, "NULL did not come back as NULL");
        ScenarioContext.Check(results[3].CommandTag == "INSERT 0 2", $"tag {results[3].CommandTag}");
        IReadOnlyList<PgResult> empty = await session.QueryAsync("").ConfigureAwait(false);
        ScenarioContext.Check(empty.Count == 1 && empty[0].EmptyQuery, "no EmptyQueryResponse for an empty query");
    }

    private static async Task ExtendedQuery(ScenarioContext c)
    {
        await using PgFrontendSession session = await c.ConnectAsync().ConfigureAwait(false);
        byte[] binary = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(binary, 41);
        IReadOnlyList<IBackendMessage> replies = await session.RoundTripAsync(
        [
            new Parse("s1", "SELECT $1::int4 + 1 AS n, $2::text AS t, $3::text IS NULL AS z", [23, 25, 25]),
            new Describe(StatementOrPortal.Statement, "s1"),
            new Bind("p1", "s1", [1, 0, 0], [binary, Encoding.UTF8.GetBytes("héllo"), null], [1, 0, 0]),
            new Describe(StatementOrPortal.Portal, "p1"),
            new Execute("p1", 0),
            new Close(StatementOrPortal.Portal, "p1"),
            new Close(StatementOrPortal.Statement, "s1"),
            new Parse("", "CREATE TEMP TABLE e(a int)", []),
            new Bind("", "", [], [], []),
            new Describe(StatementOrPortal.Portal, ""),
            new Execute("", 0),
            new Flush(),
        ],
        until: m => m is CommandComplete { CommandTag: "CREATE TABLE" }).ConfigureAwait(false);
        ScenarioContext.Check(replies.OfType<ParameterDescription>().Single().ParameterTypeOids.SequenceEqual(new uint[] { 23, 25, 25 }), "ParameterDescription");
        DataRow row = replies.OfType<DataRow>().Single();
        ScenarioContext.Check(BinaryPrimitives.ReadInt32BigEndian(row.Columns[0]!.Value.Span) == 42, "binary int4 result");
        ScenarioContext.Check(Encoding.UTF8.GetString(row.Columns[1]!.Value.Span) == "héllo", "text result");
        ScenarioContext.Check(replies.OfType<CloseComplete>().Count() == 2, "CloseComplete");
        ScenarioContext.Check(replies.OfType<NoData>().Any(), "NoData for a statement without rows");
        IReadOnlyList<IBackendMessage> end = await session.RoundTripAsync([new Sync()]).ConfigureAwait(false);
        ScenarioContext.Check(end.Last() is ReadyForQuery, "ReadyForQuery after Sync");
    }

    private static async Task PortalSuspension(ScenarioContext c)
    {
        await using PgFrontendSession session = await c.ConnectAsync().ConfigureAwait(false);
        IReadOnlyList<IBackendMessage> replies = await session.RoundTripAsync(
        [
            new Query("BEGIN"),
            new Parse("", "SELECT g FROM generate_series(1, 5) g", []),
            new Bind("cur", "", [], [], []),
            new Execute("cur", 2),
            new Execute("cur", 2),
            new Execute("cur", 2),
            new Sync(),
            new Query("COMMIT"),
        ]).ConfigureAwait(false);
        ScenarioContext.Check(replies.OfType<PortalSuspended>().Count() == 2, $"{replies.OfType<PortalSuspended>().Count()} PortalSuspended, expected 2");
        ScenarioContext.Check(replies.OfType<DataRow>().Count() == 5, "5 rows in 3 batches");
    }

    private static async Task PipelineWithError(ScenarioContext c)
    {
        await using PgFrontendSession session = await c.ConnectAsync().ConfigureAwait(false);
        IReadOnlyList<IBackendMessage> replies = await session.RoundTripAsync(
        [
            new Parse("", "SELECT 1", []), new Bind("", "", [], [], []), new Execute("", 0),
            new Parse("", "SELECT 1/0", []), new Bind("", "", [], [], []), new Execute("", 0),
            new Parse("", "SELECT 3", []), new Bind("", "", [], [], []), new Execute("", 0),
            new Sync(),
            new Parse("", "SELECT 4", []), new Bind("", "", [], [], []), new Execute("", 0),
            new Sync(),
        ]).ConfigureAwait(false);
        ErrorResponse error = replies.OfType<ErrorResponse>().Single();
        ScenarioContext.Check(PgErrorFields.From(error.Fields.Select(f => (f.Code, f.Value))).SqlState == "22012", "division by zero expected");
        ScenarioContext.Check(replies.OfType<DataRow>().Count() == 2, "the statement after the error in the same pipeline must be skipped, the next pipeline must run");
    }

    private static async Task CopyIn(ScenarioContext c)
    {
        await using PgFrontendSession session = await c.ConnectAsync().ConfigureAwait(false);
        await session.QueryAsync("CREATE TEMP TABLE ci(a int, b text)").ConfigureAwait(false);
        IReadOnlyList<PgResult> text = await session.QueryAsync("COPY ci FROM STDIN", [Encoding.UTF8.GetBytes("1\tone\n2\t\\N\n")]).ConfigureAwait(false);
        ScenarioContext.Check(text[0].CommandTag == "COPY 2", $"text COPY tag {text[0].CommandTag}");
        byte[] binary = BinaryCopy([(3, "three")]);
        IReadOnlyList<PgResult> bin = await session.QueryAsync("COPY ci FROM STDIN (FORMAT binary)", [binary]).ConfigureAwait(false);
        ScenarioContext.Check(bin[0].CommandTag == "COPY 1", $"binary COPY tag {bin[0].CommandTag}");
    }

    private static byte[] BinaryCopy(IEnumerable<(int A, string B)> rows)
    {
        var bytes = new List<byte>();
        bytes.AddRange([(byte)'P', (byte)'G', (byte)'C', (byte)'O', (byte)'P', (byte)'Y', (byte)'\n', 0xFF, (byte)'\r', (byte)'\n', 0]);
        bytes.AddRange(new byte[8]);
        foreach ((int a, string b) in rows)
        {
            bytes.AddRange([0, 2, 0, 0, 0, 4]);
            byte[] n = new byte[4];
            BinaryPrimitives.WriteInt32BigEndian(n, a);
            bytes.AddRange(n);
            byte[] s = Encoding.UTF8.GetBytes(b);
            byte[] len = new byte[4];
            BinaryPrimitives.WriteInt32BigEndian(len, s.Length);
            bytes.AddRange(len);
            bytes.AddRange(s);
        }

        bytes.AddRange([0xFF, 0xFF]);
        return bytes.ToArray();
    }

    private static async Task CopyOut(ScenarioContext c)
    {
        await using PgFrontendSession session = await c.ConnectAsync().ConfigureAwait(false);
        IReadOnlyList<PgResult> text = await session.QueryAsync("COPY (SELECT g, 'v' || g FROM generate_series(1, 3) g) TO STDOUT").ConfigureAwait(false);
        ScenarioContext.Check(text[0].CopyData.Count == 3, $"{text[0].CopyData.Count} CopyData for 3 rows");
        IReadOnlyList<PgResult> binary = await session.QueryAsync("COPY (SELECT 1) TO STDOUT (FORMAT binary)").ConfigureAwait(false);
        ScenarioContext.Check(binary[0].CopyData.Count > 0 && binary[0].CopyData[0].Span.StartsWith("PGCOPY\n"u8), "binary COPY header");
    }

    private static async Task CopyFail(ScenarioContext c)
    {
        await using PgFrontendSession session = await c.ConnectAsync().ConfigureAwait(false);
        await session.QueryAsync("CREATE TEMP TABLE cf(a int)").ConfigureAwait(false);
        try
        {
            await session.QueryAsync("COPY cf FROM STDIN").ConfigureAwait(false);
            throw new ScenarioFailedException("CopyFail did not abort the COPY");
        }
        catch (PgServerException e)
        {
            ScenarioContext.Check(e.SqlState == "57014", $"CopyFail should end in 57014, got {e.SqlState}");
        }
    }

    private static async Task CopyBoth(ScenarioContext c)
    {
        PgRole? replication = c.Target.Managed ? c.Target.Roles.First(r => r.Replication) : c.Target.Roles[0];
        string slot = "pgspec_" + Guid.NewGuid().ToString("N")[..12];
        await using (PgFrontendSession admin = await c.ConnectAsync(c.Options(replication)).ConfigureAwait(false))
        {
            await admin.QueryAsync($"CREATE TABLE IF NOT EXISTS {slot}_t(a int); DROP PUBLICATION IF EXISTS {slot}_p; CREATE PUBLICATION {slot}_p FOR TABLE {slot}_t").ConfigureAwait(false);
        }

        PgFrontendSession stream = await c.ConnectAsync(c.Options(replication) with { Parameters = [new("replication", "database")] }).ConfigureAwait(false);
        try
        {
            await stream.QueryAsync($"CREATE_REPLICATION_SLOT {slot} TEMPORARY LOGICAL pgoutput").ConfigureAwait(false);
            await using (PgFrontendSession writer = await c.ConnectAsync(c.Options(replication)).ConfigureAwait(false))
            {
                await writer.QueryAsync($"INSERT INTO {slot}_t VALUES (1), (2)").ConfigureAwait(false);
            }

            await stream.StartCopyBothAsync($"START_REPLICATION SLOT {slot} LOGICAL 0/0 (proto_version '1', publication_names '{slot}_p')").ConfigureAwait(false);
            int xlog = 0;
            var watch = Stopwatch.StartNew();
            while (xlog < 3 && watch.Elapsed < TimeSpan.FromSeconds(20))
            {
                IBackendMessage message = await stream.ReceiveAsync().ConfigureAwait(false);
                if (message is CopyData data && data.Data.Length > 0 && data.Data.Span[0] == (byte)'w')
                {
                    xlog++;
                }
                else if (message is CopyData keepalive && keepalive.Data.Length > 0 && keepalive.Data.Span[0] == (byte)'k')
                {
                    // Answer with a standby status update ('r'): written, flushed, applied, clock, no reply wanted.
                    byte[] status = new byte[34];
                    status[0] = (byte)'r';
                    keepalive.Data.Span.Slice(1, 8).CopyTo(status.AsSpan(1));
                    keepalive.Data.Span.Slice(1, 8).CopyTo(status.AsSpan(9));
                    keepalive.Data.Span.Slice(1, 8).CopyTo(status.AsSpan(17));
                    stream.Send(new CopyData(status));
                    await stream.FlushAsync().ConfigureAwait(false);
                }
            }

            ScenarioContext.Check(xlog >= 3, $"only {xlog} XLogData messages (BEGIN, INSERT..., COMMIT expected)");
            await stream.EndCopyBothAsync().ConfigureAwait(false);
        }
        finally
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            await using PgFrontendSession cleanup = await c.ConnectAsync(c.Options(replication)).ConfigureAwait(false);
            await cleanup.QueryAsync($"DROP PUBLICATION IF EXISTS {slot}_p; DROP TABLE IF EXISTS {slot}_t").ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The newest pgoutput protocol version a server of <paramref name="major"/> streams: 4 from
    /// PostgreSQL 16 on (parallel streaming), 3 in 15 (two-phase commit), 2 in 14 (streaming), 1 before.
    /// </summary>
    public static int PgOutputVersionFor(int major) => major >= 16 ? 4 : major == 15 ? 3 : major == 14 ? 2 : 1;

    /// <summary>
    /// Logical replication with pgoutput in the newest protocol version the server has, every option on
    /// (messages, streaming as far as it goes, two-phase commit when prepared transactions are
    /// enabled), over a slot created on the stream's own connection: every kind of change (a custom
    /// type, TOASTed values left unchanged, old rows by key and whole, truncate, logical decoding
    /// messages, a replication origin), prepared transactions committed and rolled back, a large
    /// transaction streamed and committed, one streamed and prepared, one streamed and rolled back;
    /// the client answers keepalives, asks for one, and sends hot standby feedback.
    /// </summary>
    private static async Task LogicalReplication(ScenarioContext c)
    {
        PgRole replication = c.Target.Roles.FirstOrDefault(r => r.Replication) ?? c.Target.Roles[0];

        // Replication origins are a superuser's: the servers PgSpec starts have postgres (trust on
        // the loopback); a container's or a URL's only role may be one.
        PgRole superuser = c.Target.Managed && c.Target.Roles.Any(r => r.Replication) ? new PgRole("postgres", "", PgAuthMethod.Trust) : c.Target.Roles[0];
        string name = "pgspec_lr_" + Guid.NewGuid().ToString("N")[..10];
        await using PgFrontendSession writer = await c.ConnectAsync(c.Options(superuser)).ConfigureAwait(false);
        bool super = (await writer.QueryAsync("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").ConfigureAwait(false))[0].Text(0, 0) == "t";
        bool prepared = (await writer.QueryAsync("SHOW max_prepared_transactions").ConfigureAwait(false))[0].Text(0, 0) != "0";
        c.Target.PreparedTransactions = prepared;
        int version = PgOutputVersionFor(c.Target.Major);
        bool twoPhase = version >= 3 && prepared;
        PgOutputStreaming streaming = version >= 4 ? PgOutputStreaming.Parallel : version >= 2 ? PgOutputStreaming.On : PgOutputStreaming.Off;
        await writer.QueryAsync($"""
            CREATE TYPE {name}_mood AS ENUM ('sad', 'happy');
            CREATE TABLE {name}_key (id int PRIMARY KEY, n int, mood {name}_mood, big text);
            CREATE TABLE {name}_full (a int, b text);
            ALTER TABLE {name}_full REPLICA IDENTITY FULL;
            CREATE PUBLICATION {name}_p FOR TABLE {name}_key, {name}_full;
            GRANT SELECT ON {name}_key, {name}_full TO {replication.Name};
            """).ConfigureAwait(false);
        if (super)
        {
            await writer.QueryAsync($"SELECT pg_replication_origin_create('{name}_o')").ConfigureAwait(false);
        }

        PgFrontendSession stream = await c.ConnectAsync(c.Options(replication) with
        {
            Parameters = [new("replication", "database"), new("logical_decoding_work_mem", "64kB")],
        }).ConfigureAwait(false);
        try
        {
            await stream.QueryAsync($"CREATE_REPLICATION_SLOT {name} TEMPORARY LOGICAL pgoutput" + (twoPhase ? " (TWO_PHASE true)" : "")).ConfigureAwait(false);
            string big = "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 300) i)";
            var changes = new List<string>
            {
                $"INSERT INTO {name}_key VALUES (1, 1, 'happy', {big}), (2, 2, NULL, NULL)",
                $"UPDATE {name}_key SET n = n + 1 WHERE id = 1",
                $"UPDATE {name}_key SET id = 3 WHERE id = 2",
                $"INSERT INTO {name}_full VALUES (1, 'one'), (2, NULL)",
                $"UPDATE {name}_full SET b = 'uno' WHERE a = 1",
                $"DELETE FROM {name}_full WHERE a = 2",
                $"DELETE FROM {name}_key WHERE id = 3",
                $"TRUNCATE {name}_full",
                "SELECT pg_logical_emit_message(true, 'pgspec', 'in a transaction')",
            };
            if (super)
            {
                changes.Add($"SELECT pg_replication_origin_session_setup('{name}_o')");
                changes.Add($"INSERT INTO {name}_key VALUES (10, 10, 'sad', 'from an origin')");
                changes.Add("SELECT pg_replication_origin_session_reset()");
            }

            if (twoPhase)
            {
                changes.Add($"BEGIN; INSERT INTO {name}_key VALUES (20, 20, 'sad', 'prepared'); PREPARE TRANSACTION '{name}_a'");
                changes.Add($"COMMIT PREPARED '{name}_a'");
                changes.Add($"BEGIN; INSERT INTO {name}_key VALUES (21, 21, 'sad', 'rolled back'); PREPARE TRANSACTION '{name}_b'");
                changes.Add($"ROLLBACK PREPARED '{name}_b'");
            }

            if (streaming != PgOutputStreaming.Off)
            {
                // Over logical_decoding_work_mem: streamed in blocks before it commits (or is prepared).
                changes.Add($"INSERT INTO {name}_full SELECT g, repeat('x', 200) FROM generate_series(1, 2000) g");
                if (twoPhase)
                {
                    changes.Add($"BEGIN; INSERT INTO {name}_full SELECT g, repeat('p', 200) FROM generate_series(1, 2000) g; PREPARE TRANSACTION '{name}_c'");
                    changes.Add($"COMMIT PREPARED '{name}_c'");
                }
            }

            changes.Add("SELECT pg_logical_emit_message(false, 'pgspec-ready', '')");
            foreach (string change in changes)
            {
                await writer.QueryAsync(change).ConfigureAwait(false);
            }

            string options = $"proto_version '{version}', publication_names '{name}_p', messages 'true'"
                + (streaming == PgOutputStreaming.Off ? "" : $", streaming '{(streaming == PgOutputStreaming.Parallel ? "parallel" : "on")}'")
                + (twoPhase ? ", two_phase 'on'" : "");
            await stream.StartCopyBothAsync($"START_REPLICATION SLOT {name} LOGICAL 0/0 ({options})").ConfigureAwait(false);
            HashSet<PgOutputMessageKind> seen = await StreamAsync(c, stream, writer, name, new PgOutputContext(version, streaming)).ConfigureAwait(false);
            await stream.EndCopyBothAsync().ConfigureAwait(false);

            var expected = new List<PgOutputMessageKind>
            {
                PgOutputMessageKind.Begin, PgOutputMessageKind.Relation, PgOutputMessageKind.DataType, PgOutputMessageKind.Insert, PgOutputMessageKind.Update,
                PgOutputMessageKind.Delete, PgOutputMessageKind.Truncate, PgOutputMessageKind.LogicalMessage, PgOutputMessageKind.Commit,
            };
            expected.AddRange(super ? [PgOutputMessageKind.Origin] : []);
            expected.AddRange(twoPhase ? [PgOutputMessageKind.BeginPrepare, PgOutputMessageKind.Prepare, PgOutputMessageKind.CommitPrepared, PgOutputMessageKind.RollbackPrepared] : []);
            expected.AddRange(streaming != PgOutputStreaming.Off ? [PgOutputMessageKind.StreamStart, PgOutputMessageKind.StreamStop, PgOutputMessageKind.StreamCommit, PgOutputMessageKind.StreamAbort] : []);
            expected.AddRange(twoPhase && streaming != PgOutputStreaming.Off ? [PgOutputMessageKind.StreamPrepare] : []);
            PgOutputMessageKind[] missing = [.. expected.Where(kind => !seen.Contains(kind))];
            ScenarioContext.Check(missing.Length == 0, "pgoutput did not send " + string.Join(", ", missing));
        }
        finally
        {
            // What a failure may have left: the writer's transaction, prepared ones (which hold locks), the origin in use.
            await stream.DisposeAsync().ConfigureAwait(false);
            await writer.QueryAsync("ROLLBACK").ConfigureAwait(false);
            PgResult left = (await writer.QueryAsync($"SELECT gid FROM pg_prepared_xacts WHERE gid LIKE '{name}%'").ConfigureAwait(false))[0];
            for (int row = 0; row < left.Rows.Count; row++)
            {
                await writer.QueryAsync($"ROLLBACK PREPARED '{left.Text(row, 0)}'").ConfigureAwait(false);
            }

            await writer.QueryAsync($"DROP PUBLICATION IF EXISTS {name}_p; DROP TABLE IF EXISTS {name}_key, {name}_full; DROP TYPE IF EXISTS {name}_mood").ConfigureAwait(false);
            if (super)
            {
                await writer.QueryAsync($"SELECT pg_replication_origin_session_reset() WHERE pg_replication_origin_session_is_setup(); SELECT pg_replication_origin_drop('{name}_o')").ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Reads the stream until the message that ends it, answering keepalives; once the changes made
    /// beforehand have come, rolls back a large transaction after a block of it was streamed, sends
    /// hot standby feedback and asks for a keepalive. Returns the pgoutput messages seen.
    /// </summary>
    private static async Task<HashSet<PgOutputMessageKind>> StreamAsync(ScenarioContext c, PgFrontendSession stream, PgFrontendSession writer, string name, PgOutputContext context)
    {
        var seen = new HashSet<PgOutputMessageKind>();
        bool aborting = false;
        bool done = false;
        bool keepalive = false;
        bool asked = false;
        var watch = Stopwatch.StartNew();
        while ((!done || !keepalive) && watch.Elapsed < TimeSpan.FromSeconds(60))
        {
            if (done && !asked)
            {
                // A keepalive asked for: the server answers at once.
                asked = true;
                stream.Send(new CopyData(new StandbyStatusUpdate(0, 0, 0, ClientTime(), 1).ToArray()));
                await stream.FlushAsync().ConfigureAwait(false);
            }

            CopyData data = await stream.ReceiveAsync().ConfigureAwait(false) as CopyData ?? throw new ScenarioFailedException("a message other than CopyData in the stream");
            if (!ReplicationMessages.TryDecode(data, PgDirection.Backend, out IReplicationMessage? message, out PgDecodeError error))
            {
                throw new ScenarioFailedException("not a replication message: " + error);
            }

            if (message is PrimaryKeepalive primary)
            {
                keepalive = true;
                stream.Send(new CopyData(new StandbyStatusUpdate(primary.WalEnd, primary.WalEnd, primary.WalEnd, ClientTime(), 0).ToArray()));
                await stream.FlushAsync().ConfigureAwait(false);
                continue;
            }

            if (message is not XLogData wal || !PgOutputMessages.TryDecodeNext(wal, context, out IPgOutputMessage? change, out error))
            {
                throw new ScenarioFailedException($"not a pgoutput message: {error}");
            }

            seen.Add(change.Kind);
            switch (change)
            {
                case LogicalMessage { Prefix: "pgspec-ready" } when context.Streaming != PgOutputStreaming.Off:
                    // PostgreSQL streams no transaction already known to have aborted: roll back once a block of it was streamed.
                    aborting = true;
                    await writer.QueryAsync($"BEGIN; INSERT INTO {name}_full SELECT g, repeat('y', 200) FROM generate_series(1, 2000) g").ConfigureAwait(false);
                    break;
                case LogicalMessage { Prefix: "pgspec-ready" }:
                case StreamStop when aborting:
                    aborting = false;
                    if (change is StreamStop)
                    {
                        await writer.QueryAsync("ROLLBACK").ConfigureAwait(false);
                    }

                    stream.Send(new CopyData(new HotStandbyFeedback(ClientTime(), 0, 0, 0, 0).ToArray()));
                    await stream.FlushAsync().ConfigureAwait(false);
                    await writer.QueryAsync("SELECT pg_logical_emit_message(false, 'pgspec-done', '')").ConfigureAwait(false);
                    break;
                case LogicalMessage { Prefix: "pgspec-done" }:
                    done = true;
                    break;
            }
        }

        ScenarioContext.Check(done, $"the stream did not reach its last message within 60 s ({c.Target.Key}); seen: {string.Join(", ", seen)}");
        ScenarioContext.Check(keepalive, "no keepalive came, though asked for");
        return seen;
    }

    /// <summary>Now, as the replication protocol counts time: microseconds since 2000-01-01 00:00 UTC.</summary>
    private static long ClientTime() => (DateTime.UtcNow - new DateTime(2000, 1, 1, 0, 0, 0, DateTimeKind.Utc)).Ticks / 10;

    private static async Task FunctionCallScenario(ScenarioContext c)
    {
        await using PgFrontendSession session = await c.ConnectAsync().ConfigureAwait(false);
        IReadOnlyList<PgResult> oid = await session.QueryAsync("SELECT 'int4pl'::regproc::oid").ConfigureAwait(false);
        uint function = uint.Parse(oid[0].Text(0, 0)!, CultureInfo.InvariantCulture);
        byte[] a = new byte[4];
        byte[] b = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(a, 40);
        BinaryPrimitives.WriteInt32BigEndian(b, 2);
        ReadOnlyMemory<byte>? result = await session.CallFunctionAsync(function, [a, b], [1], 1).ConfigureAwait(false);
        ScenarioContext.Check(result is { } r && BinaryPrimitives.ReadInt32BigEndian(r.Span) == 42, "int4pl(40, 2) is not 42");
        ReadOnlyMemory<byte>? nullResult = await session.CallFunctionAsync(function, [a, null], [1], 1).ConfigureAwait(false);
        ScenarioContext.Check(nullResult is null, "a strict function of NULL is not NULL");
    }

    private static async Task Notifications(ScenarioContext c)
    {
        await using PgFrontendSession listener = await c.ConnectAsync().ConfigureAwait(false);
        await listener.QueryAsync("LISTEN pgspec_channel").ConfigureAwait(false);
        await using (PgFrontendSession notifier = await c.ConnectAsync().ConfigureAwait(false))
        {
            await notifier.QueryAsync("NOTIFY pgspec_channel, 'hello'").ConfigureAwait(false);
        }

        NotificationResponse notification = await listener.WaitForNotificationAsync().ConfigureAwait(false);
        ScenarioContext.Check(notification.Channel == "pgspec_channel" && notification.Payload == "hello", "wrong notification");
    }

    private static async Task Notices(ScenarioContext c)
    {
        await using PgFrontendSession session = await c.ConnectAsync().ConfigureAwait(false);
        var notices = new List<NoticeResponse>();
        session.Notice += notices.Add;
        await session.QueryAsync("DO $$ BEGIN RAISE NOTICE 'pgspec notice %', 42; END $$").ConfigureAwait(false);
        ScenarioContext.Check(notices.Any(n => n.Fields.Any(f => f.Code == (byte)'M' && f.Value == "pgspec notice 42")), "RAISE NOTICE did not arrive");
    }

    private static async Task ParameterStatusScenario(ScenarioContext c)
    {
        await using PgFrontendSession session = await c.ConnectAsync().ConfigureAwait(false);
        await session.QueryAsync("SET application_name = 'pgspec-conform'").ConfigureAwait(false);
        ScenarioContext.Check(session.Parameters.TryGetValue("application_name", out string? name) && name == "pgspec-conform", "no ParameterStatus for application_name");
    }

    private static async Task Cancel(ScenarioContext c)
    {
        await using PgFrontendSession session = await c.ConnectAsync().ConfigureAwait(false);
        await CancelSleep(session).ConfigureAwait(false);
    }

    private static async Task CancelSleep(PgFrontendSession session)
    {
        Task<IReadOnlyList<PgResult>> sleeping = session.QueryAsync("SELECT pg_sleep(60)");

        // A cancel that arrives before the query has started is lost (a backend still reading its
        // next command ignores it), and how soon a busy server starts the query is not known:
        // cancel again every second until the query ends, which its command timeout bounds.
        do
        {
            await session.CancelAsync().ConfigureAwait(false);
        }
        while (await Task.WhenAny(sleeping, Task.Delay(TimeSpan.FromSeconds(1))).ConfigureAwait(false) != sleeping);

        try
        {
            await sleeping.ConfigureAwait(false);
            throw new ScenarioFailedException("pg_sleep was not cancelled");
        }
        catch (PgServerException e)
        {
            ScenarioContext.Check(e.SqlState == "57014", $"expected 57014 (query_canceled), got {e.SqlState}");
        }
    }

    private static async Task TerminateScenario(ScenarioContext c)
    {
        PgFrontendSession session = await c.ConnectAsync().ConfigureAwait(false);
        await session.QueryAsync("SELECT 1").ConfigureAwait(false);
        await session.DisposeAsync().ConfigureAwait(false);
    }
}
