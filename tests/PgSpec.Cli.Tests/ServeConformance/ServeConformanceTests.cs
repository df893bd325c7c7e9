using System.Text;
using PgSpec.Protocol;
using Xunit.Abstractions;

namespace PgSpec.Cli.Tests.ServeConformance;

/// <summary>
/// The same frontend messages, sent to PostgreSQL 18 and to <c>pgspec serve</c>, must get the same
/// backend messages, compared field by field where the field is the protocol's and not the SQL
/// engine's (see <see cref="ProtocolScript.Show"/>). Each case is an edge of the protocol; the
/// lines each case must find in PostgreSQL's answers keep the case honest about what it exercises.
/// </summary>
public sealed class ServeConformanceTests(ComparedServers servers, ITestOutputHelper output) : IClassFixture<ComparedServers>
{
    private static readonly Sync S = new();
    private static readonly Flush F = new();

    private sealed record Case(string Setup, string[] PostgreSqlMustSay, Func<ProtocolScript, Task> Script);

    private static readonly Dictionary<string, Case> s_cases = new(StringComparer.Ordinal)
    {
        ["empty query"] = new(
            "",
            ["EmptyQueryResponse", "NoData"],
            async x =>
            {
                await x.RoundTripAsync("Query \"\"", new Query(""));
                await x.RoundTripAsync("Query \";\"", new Query(";"));
                await x.RoundTripAsync("Query \" ; ; \"", new Query(" ; ; "));
                await x.RoundTripAsync("Query of a comment only", new Query("-- nothing"));
                await x.RoundTripAsync(
                    "extended empty statement: Parse \"\", Describe S, Bind, Describe P, Execute, Execute, Sync",
                    Parse("", ""), new Describe(StatementOrPortal.Statement, ""), Bind("", ""), new Describe(StatementOrPortal.Portal, ""), new Execute("", 0), new Execute("", 0), S);
            }),

        ["error in the middle of a Query"] = new(
            "DROP TABLE IF EXISTS cmp_multi; CREATE TABLE cmp_multi (a int8, b text)",
            ["ErrorResponse ERROR 42P01"],
            async x =>
            {
                await x.RoundTripAsync("SELECT 1; SELECT * FROM nope; SELECT 2", new Query("SELECT 1; SELECT * FROM nope; SELECT 2"));
                await x.RoundTripAsync("an INSERT before the error is undone with it", new Query("INSERT INTO cmp_multi VALUES (1, 'a'); SELECT * FROM nope; INSERT INTO cmp_multi VALUES (2, 'b')"));
                await x.RoundTripAsync("SELECT a FROM cmp_multi", new Query("SELECT a FROM cmp_multi"));
                await x.RoundTripAsync("a syntax error in the middle", new Query("SELECT 1; SELEC 2; SELECT 3"));
                await x.RoundTripAsync("COMMIT in the middle keeps what came before", new Query("INSERT INTO cmp_multi VALUES (3, 'c'); COMMIT; SELECT * FROM nope"));
                await x.RoundTripAsync("SELECT a FROM cmp_multi again", new Query("SELECT a FROM cmp_multi"));
            }),

        ["extended-query error, then more messages up to Sync"] = new(
            "DROP TABLE IF EXISTS cmp_ext; CREATE TABLE cmp_ext (a int8, b text)",
            ["ErrorResponse ERROR 42601", "ErrorResponse ERROR 08P01"],
            async x =>
            {
                await x.RoundTripAsync(
                    "INSERT, then Parse of bad SQL, Bind, Execute, Describe, Sync",
                    Parse("", "INSERT INTO cmp_ext VALUES (1, 'a')"), Bind("", ""), new Execute("", 0),
                    Parse("", "SELEC 1"), Bind("", ""), new Execute("", 0), new Describe(StatementOrPortal.Portal, ""), S);
                await x.RoundTripAsync("the INSERT was undone: SELECT a FROM cmp_ext", new Query("SELECT a FROM cmp_ext"));
                await x.RoundTripAsync(
                    "Bind with a parameter missing, Execute, Sync",
                    Parse("", "SELECT $1::int8"), Bind("", ""), new Execute("", 0), S);
                await x.RoundTripAsync("then a Query", new Query("SELECT 1"));
                await x.RoundTripAsync("Parse of two statements", Parse("", "SELECT 1; SELECT 2"), S);
                await x.SendAsync("a Query after an extended error is discarded until Sync", Parse("", "SELEC 1"), new Query("SELECT 1"), S);
                await x.ReadyAsync(1);
                await x.RoundTripAsync(
                    "a Query in an extended batch ends its transaction and the portals",
                    Parse("one", "SELECT 1"), Bind("p", "one"), new Query("SELECT 2"), new Execute("p", 0), S);
            }),

        ["Describe of a statement without result and of portals"] = new(
            "DROP TABLE IF EXISTS cmp_desc; CREATE TABLE cmp_desc (a int8, b text); INSERT INTO cmp_desc VALUES (1, 'x'), (2, NULL)",
            ["ParameterDescription 2 parameters", "RowDescription 2 columns, formats [1,1]", "RowDescription 2 columns, formats [0,1]"],
            async x =>
            {
                await x.RoundTripAsync(
                    "Describe S of an INSERT",
                    Parse("ins", "INSERT INTO cmp_desc VALUES ($1, $2)"), new Describe(StatementOrPortal.Statement, "ins"), S);
                await x.RoundTripAsync(
                    "Describe P of an INSERT, Execute",
                    new Bind("", "ins", [], [Text("3"), null], []), new Describe(StatementOrPortal.Portal, ""), new Execute("", 0), S);
                await x.RoundTripAsync(
                    "Describe S of a SELECT; portals in binary, mixed and text formats",
                    Parse("sel", "SELECT a, b FROM cmp_desc ORDER BY a"), new Describe(StatementOrPortal.Statement, "sel"),
                    Bind("bin", "sel", 1), new Describe(StatementOrPortal.Portal, "bin"),
                    Bind("mixed", "sel", 0, 1), new Describe(StatementOrPortal.Portal, "mixed"),
                    Bind("txt", "sel"), new Describe(StatementOrPortal.Portal, "txt"),
                    new Execute("bin", 0), new Execute("mixed", 0), new Execute("txt", 0), S);
                await x.RoundTripAsync("Bind with 3 result formats for 2 columns", Bind("", "sel", 0, 1, 0), new Describe(StatementOrPortal.Portal, ""), S);
            }),

        ["Execute with a row limit"] = new(
            "DROP TABLE IF EXISTS cmp_fetch; CREATE TABLE cmp_fetch (a int8, b text); INSERT INTO cmp_fetch VALUES (1, 'a'), (2, 'b'), (3, NULL), (4, 'd'), (5, 'e')",
            ["PortalSuspended", "ErrorResponse ERROR 34000"],
            async x =>
            {
                await x.RoundTripAsync(
                    "Execute 2 rows at a time, then once more at the end",
                    Parse("", "SELECT a, b FROM cmp_fetch ORDER BY a"), Bind("", ""),
                    new Execute("", 2), new Execute("", 2), new Execute("", 2), new Execute("", 2), S);
                await x.RoundTripAsync(
                    "Execute exactly all rows, then again",
                    Bind("", ""), new Execute("", 5), new Execute("", 0), S);
                await x.RoundTripAsync("the portal ended with its transaction at Sync", new Execute("", 0), S);
                await x.RoundTripAsync("BEGIN", new Query("BEGIN"));
                await x.RoundTripAsync(
                    "in a transaction block: Execute 2 rows, Sync",
                    Parse("", "SELECT a, b FROM cmp_fetch ORDER BY a"), Bind("cur", ""), new Execute("cur", 2), S);
                await x.RoundTripAsync("the portal outlives Sync in the block: the rest", new Execute("cur", 0), S);
                await x.RoundTripAsync("COMMIT", new Query("COMMIT"));
                await x.RoundTripAsync("the portal ended with the transaction", new Execute("cur", 0), S);
                await x.RoundTripAsync(
                    "INSERT ... RETURNING 2 rows at a time, then again at the end",
                    Parse("", "INSERT INTO cmp_fetch VALUES (6, 'f'), (7, 'g'), (8, 'h') RETURNING a"), Bind("", ""),
                    new Execute("", 2), new Execute("", 2), new Execute("", 2), S);
                await x.RoundTripAsync(
                    "Execute of an INSERT portal run to its end",
                    Parse("", "INSERT INTO cmp_fetch VALUES (9, 'i')"), Bind("", ""), new Execute("", 0), new Execute("", 0), S);
                await x.RoundTripAsync("Execute with a negative row limit", Parse("", "SELECT a FROM cmp_fetch WHERE a < 3"), Bind("", ""), new Execute("", -1), S);
            }),

        ["Close of what does not exist"] = new(
            "",
            ["CloseComplete", "ErrorResponse ERROR 26000"],
            async x =>
            {
                await x.RoundTripAsync(
                    "Close S and P, named and unnamed, that do not exist",
                    new Close(StatementOrPortal.Statement, "nosuch"), new Close(StatementOrPortal.Portal, "nosuch"),
                    new Close(StatementOrPortal.Statement, ""), new Close(StatementOrPortal.Portal, ""), S);
                await x.RoundTripAsync(
                    "a closed statement is gone",
                    Parse("gone", "SELECT 1"), new Close(StatementOrPortal.Statement, "gone"), Bind("", "gone"), S);
                await x.RoundTripAsync(
                    "a portal closed while suspended is gone",
                    Parse("", "SELECT 1 UNION ALL SELECT 2"), Bind("p", ""), new Execute("p", 1), new Close(StatementOrPortal.Portal, "p"), new Execute("p", 0), S);
            }),

        ["Flush without Sync"] = new(
            "",
            ["CommandComplete \"SELECT 1\"", "ErrorResponse ERROR 42601"],
            async x =>
            {
                await x.SendAsync("Parse, Bind, Describe P, Execute, Flush", Parse("", "SELECT 1"), Bind("", ""), new Describe(StatementOrPortal.Portal, ""), new Execute("", 0), F);
                await x.UntilAsync<CommandComplete>();
                await x.RoundTripAsync("then Sync", S);
                await x.SendAsync("Parse of bad SQL, Flush", Parse("", "SELEC 1"), F);
                await x.UntilAsync<ErrorResponse>();
                await x.RoundTripAsync("then Bind, Execute, Sync", Bind("", ""), new Execute("", 0), S);
            }),

        ["COPY"] = new(
            "DROP TABLE IF EXISTS cmp_copy; CREATE TABLE cmp_copy (a int8, b text)",
            ["CopyInResponse Text, column formats [0,0]", "ErrorResponse ERROR 57014", "CopyOutResponse Text, column formats [0,0]", "CommandComplete \"COPY 2\""],
            async x =>
            {
                await x.SendAsync("COPY FROM STDIN", new Query("COPY cmp_copy FROM STDIN"));
                await x.UntilAsync<CopyInResponse>();
                await x.SendAsync("CopyData, CopyFail", new CopyData(Bytes("1\ta\n")), new CopyFail("the client gave up"));
                await x.ReadyAsync();
                await x.RoundTripAsync(
                    "CopyData and CopyDone after the failed COPY are dropped; SELECT",
                    new CopyData(Bytes("2\tb\n")), new CopyDone(), new Query("SELECT a FROM cmp_copy"));
                await x.SendAsync("COPY FROM STDIN again", new Query("COPY cmp_copy FROM STDIN"));
                await x.UntilAsync<CopyInResponse>();
                await x.SendAsync("CopyData, CopyDone", new CopyData(Bytes("1\ta\n2\t\\N\n")), new CopyDone());
                await x.ReadyAsync();
                await x.RoundTripAsync("COPY TO STDOUT", new Query("COPY cmp_copy TO STDOUT"));
                await x.SendAsync("extended COPY FROM STDIN: Parse, Bind, Describe P, Execute, Sync", Parse("", "COPY cmp_copy FROM STDIN"), Bind("", ""), new Describe(StatementOrPortal.Portal, ""), new Execute("", 0), S);
                await x.UntilAsync<CopyInResponse>();
                await x.RoundTripAsync("CopyData, CopyDone, Sync (the Sync during COPY is ignored)", new CopyData(Bytes("3\tc\n")), new CopyDone(), S);
                await x.SendAsync("extended COPY FROM STDIN again", Parse("", "COPY cmp_copy FROM STDIN"), Bind("", ""), new Execute("", 0), S);
                await x.UntilAsync<CopyInResponse>();
                await x.SendAsync("CopyFail", new CopyFail("the client gave up"));
                await x.UntilAsync<ErrorResponse>();
                await x.RoundTripAsync("CopyData, Sync", new CopyData(Bytes("4\td\n")), S);
                await x.RoundTripAsync(
                    "extended COPY TO STDOUT",
                    Parse("", "COPY cmp_copy TO STDOUT"), Bind("", ""), new Describe(StatementOrPortal.Portal, ""), new Execute("", 0), S);
            }),

        ["cancel"] = new(
            "",
            ["ErrorResponse ERROR 57014"],
            async x =>
            {
                await x.SendAsync("SELECT pg_sleep(30), cancelled when it runs", new Query("SELECT pg_sleep(30)"));
                await x.CancelWhenSleepingAsync("SELECT pg_sleep(30)");
                await x.ReadyAsync();
                await x.RoundTripAsync("then a Query", new Query("SELECT 1"));
            }),

        ["Terminate"] = new(
            "",
            ["(connection closed)"],
            async x =>
            {
                await x.SendAsync("Terminate", new Terminate());
                await x.ClosedAsync();
            }),

        ["transaction status"] = new(
            "",
            ["ReadyForQuery E", "ReadyForQuery T", "ErrorResponse ERROR 25P02", "CommandComplete \"ROLLBACK\""],
            async x =>
            {
                await x.RoundTripAsync("BEGIN", new Query("BEGIN"));
                await x.RoundTripAsync("an error", new Query("SELECT * FROM nope"));
                await x.RoundTripAsync("a Query in the failed block", new Query("SELECT 1"));
                await x.RoundTripAsync("Parse in the failed block", Parse("", "SELECT 1"), Bind("", ""), new Execute("", 0), S);
                await x.RoundTripAsync("Sync in the failed block", S);
                await x.RoundTripAsync("ROLLBACK", new Query("ROLLBACK"));
                await x.RoundTripAsync("BEGIN again", new Query("BEGIN"));
                await x.RoundTripAsync("a statement in the block", Parse("", "SELECT 1"), Bind("", ""), new Execute("", 0), S);
                await x.RoundTripAsync("Sync alone in the block", S);
                await x.RoundTripAsync("an extended error in the block", Parse("", "SELEC 1"), S);
                await x.RoundTripAsync("COMMIT of a failed block", new Query("COMMIT"));
                await x.RoundTripAsync("BEGIN and COMMIT in the extended protocol", Parse("", "BEGIN"), Bind("", ""), new Execute("", 0), S, Parse("", "COMMIT"), Bind("", ""), new Execute("", 0), S);
                await x.RoundTripAsync("BEGIN and an error in one Query", new Query("BEGIN; SELECT * FROM nope"));
                await x.RoundTripAsync("ROLLBACK", new Query("ROLLBACK"));
                await x.RoundTripAsync("a portal of a block", new Query("BEGIN"), Parse("kept", "SELECT 1"), Bind("p", "kept"), S);
                await x.RoundTripAsync("the block fails", new Query("SELECT * FROM nope"));
                await x.RoundTripAsync("Execute of the portal in the failed block", new Execute("p", 0), S);
                await x.RoundTripAsync("ROLLBACK", new Query("ROLLBACK"));
            }),

        ["ParameterStatus"] = new(
            "",
            ["ParameterStatus application_name"],
            async x =>
            {
                await x.RoundTripAsync("SET application_name", new Query("SET application_name = 'compared'"));
                await x.RoundTripAsync("SET in a block, ROLLBACK", new Query("BEGIN; SET application_name = 'undone'"), new Query("ROLLBACK"));
                await x.RoundTripAsync("SET in the extended protocol", Parse("", "SET application_name = 'extended'"), Bind("", ""), new Execute("", 0), S);
            }),

        ["named statements and portals"] = new(
            "",
            ["ErrorResponse ERROR 42P05", "ErrorResponse ERROR 26000", "ErrorResponse ERROR 34000", "ErrorResponse ERROR 42P03"],
            async x =>
            {
                await x.RoundTripAsync("Parse of a named statement", Parse("dup", "SELECT 1"), S);
                await x.RoundTripAsync("Parse of it again", Parse("dup", "SELECT 2"), S);
                await x.RoundTripAsync("Bind to an unknown statement", Bind("", "nosuch"), new Execute("", 0), S);
                await x.RoundTripAsync("Execute of an unknown portal", new Execute("nosuch", 0), S);
                await x.RoundTripAsync("Describe of an unknown statement", new Describe(StatementOrPortal.Statement, "nosuch"), S);
                await x.RoundTripAsync("Describe of an unknown portal", new Describe(StatementOrPortal.Portal, "nosuch"), S);
                await x.RoundTripAsync(
                    "the unnamed statement is replaced by the next",
                    Parse("", "SELECT 1"), Parse("", "SELECT 1, 2"), Bind("", ""), new Describe(StatementOrPortal.Portal, ""), new Execute("", 0), S);
                await x.RoundTripAsync("the unnamed portal is replaced by the next", Bind("", "dup"), Bind("", "dup"), new Execute("", 0), S);
                await x.RoundTripAsync("a named portal is not", Bind("p", "dup"), Bind("p", "dup"), S);
                await x.RoundTripAsync("Close of the named statement, Parse of the name again", new Close(StatementOrPortal.Statement, "dup"), Parse("dup", "SELECT 3"), Bind("", "dup"), new Execute("", 0), S);
            }),
    };

    public static TheoryData<string> Cases => new(s_cases.Keys);

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Serve_answers_as_PostgreSQL_does(string name)
    {
        Case c = s_cases[name];
        IReadOnlyList<RecordedStep> expected = await ProtocolScript.RunAsync(servers.PostgreSql, c.Setup, c.Script);
        IReadOnlyList<RecordedStep> actual = await ProtocolScript.RunAsync(servers.Serve, c.Setup, c.Script);

        string both = ProtocolScript.SideBySide(servers.PostgreSql.Name, expected, servers.Serve.Name, actual);
        output.WriteLine(both);
        string[] lines = expected.SelectMany(s => s.Lines).ToArray();
        foreach (string must in c.PostgreSqlMustSay)
        {
            Assert.True(lines.Contains(must), $"{servers.PostgreSql.Name} did not answer \"{must}\", which this case is about:\n{both}");
        }

        if (name != "Terminate")
        {
            Assert.False(lines.Any(l => l.StartsWith('(')), $"{servers.PostgreSql.Name} did not answer all of the script:\n{both}");
        }

        string? difference = ProtocolScript.Compare(servers.PostgreSql.Name, expected, servers.Serve.Name, actual);
        Assert.True(difference is null, $"pgspec serve answers otherwise than {servers.PostgreSql.Name} ('!' marks the differences):\n{difference}");
    }

    private static Parse Parse(string name, string sql) => new(name, sql, []);

    private static Bind Bind(string portal, string statement, params short[] resultFormats) => new(portal, statement, [], [], [.. resultFormats]);

    private static ReadOnlyMemory<byte>? Text(string value) => Encoding.UTF8.GetBytes(value);

    private static byte[] Bytes(string text) => Encoding.UTF8.GetBytes(text);
}
