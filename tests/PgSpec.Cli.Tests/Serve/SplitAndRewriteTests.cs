using PgSpec.Cli.Serve;

namespace PgSpec.Cli.Tests.Serve;

public class SplitAndRewriteTests
{
    [Theory]
    [InlineData("SELECT 1; SELECT 2", new[] { "SELECT 1", "SELECT 2" })]
    [InlineData("SELECT ';'; SELECT \"a;b\" FROM t;", new[] { "SELECT ';'", "SELECT \"a;b\" FROM t" })]
    [InlineData("SELECT $$a;b$$; SELECT $x$ $$ ; $x$", new[] { "SELECT $$a;b$$", "SELECT $x$ $$ ; $x$" })]
    [InlineData("SELECT 1 -- c;\n; /* x; /* nested; */ y; */ SELECT 2", new[] { "SELECT 1", "SELECT 2" })]
    [InlineData("  ;; -- only a comment\n /* and this */ ;", new string[0])]
    [InlineData("", new string[0])]
    [InlineData("SELECT 'it''s;' ; SELECT E'\\';'", new[] { "SELECT 'it''s;'", "SELECT E'\\';'" })]
    [InlineData("CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET a = CASE WHEN 1 THEN 2 END; DELETE FROM u; END; SELECT 1",
        new[] { "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET a = CASE WHEN 1 THEN 2 END; DELETE FROM u; END", "SELECT 1" })]
    public void Split_respects_quotes_comments_and_trigger_bodies(string sql, string[] expected)
    {
        Assert.Equal(expected, SqlLexer.Split(sql));
    }

    [Fact]
    public void Casts_become_CAST_and_parameters_become_numbered()
    {
        var rw = SqlRewriter.Rewrite("SELECT a::int8, $2::text, (a + 1)::float8, f(x)::bigint, '-- not a comment' FROM t WHERE b = $1");
        Assert.Contains("CAST(a AS INTEGER)", rw.Sql);
        Assert.Contains("CAST(?2 AS TEXT)", rw.Sql);
        Assert.Contains("CAST((a + 1) AS REAL)", rw.Sql);
        Assert.Contains("CAST(f(x) AS INTEGER)", rw.Sql);
        Assert.Contains("b = ?1", rw.Sql);
        Assert.Contains("'-- not a comment'", rw.Sql);
        Assert.Equal(2, rw.ParameterCount);
        Assert.Equal(PgType.TextOid, rw.ParameterCasts[2].Oid);
        Assert.Equal(["a", "text", "float8", "f", "?column?"], rw.Items!.Select(i => i.Name));
    }

    [Fact]
    public void Casts_inside_strings_and_comments_stay()
    {
        var rw = SqlRewriter.Rewrite("SELECT 'x::int8' /* y::int8 */, $$z::int8$$");
        Assert.Contains("'x::int8'", rw.Sql);
        Assert.Contains("'z::int8'", rw.Sql);
        Assert.DoesNotContain("CAST", rw.Sql);
    }

    [Fact]
    public void An_unknown_type_is_42704()
    {
        var e = Assert.Throws<SqlError>(() => SqlRewriter.Rewrite("SELECT 1::nosuchtype"));
        Assert.Equal("42704", e.SqlState);
        Assert.Equal("type \"nosuchtype\" does not exist", e.Message);
        Assert.Equal(11, e.Position);
    }
}

public class CompatibilityTests : IDisposable
{
    private readonly EngineHarness h = new();

    public void Dispose() => h.Dispose();

    [Fact]
    public void PostgreSQL_spellings_that_SQLite_lacks()
    {
        Assert.Equal("tester", h.Scalar("SELECT current_user"));
        Assert.Equal("current_user", h.Query("SELECT current_user").Single().Columns![0].Name);
        Assert.StartsWith("PostgreSQL", h.Scalar("SELECT pg_catalog.version()"));
        h.Query("CREATE TABLE a (id serial PRIMARY KEY, v text) WITH (fillfactor=100)");
        h.Query("INSERT INTO a (v) VALUES ('x'), ('y')");
        Assert.Equal("2", h.Scalar("SELECT max(id) FROM a"));
        Assert.Equal("1", h.Scalar("SELECT count(*) FROM a WHERE v ILIKE 'X'"));
    }
}
