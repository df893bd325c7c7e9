using System.Text;
using PgSpec.Cli.Serve;

namespace PgSpec.Cli.Tests.Serve;

public class CopyTests : IDisposable
{
    private readonly EngineHarness h = new();

    public CopyTests() => h.Query("CREATE TABLE t (id INTEGER, name TEXT, data BYTEA, flag BOOLEAN, x REAL)");

    public void Dispose() => h.Dispose();

    private SqlCursor OpenCopy(string sql)
    {
        var st = h.Session.Prepare(sql, []);
        return h.Session.Open(st, [], [], CancellationToken.None);
    }

    /// <summary>Runs a COPY FROM STDIN with its data cut into chunks of <paramref name="chunk"/> bytes.</summary>
    private string CopyIn(string sql, string data, int chunk)
    {
        h.Session.BeginImplicit();
        using var c = OpenCopy(sql);
        Assert.True(c.IsCopyIn);
        byte[] bytes = Encoding.UTF8.GetBytes(data);
        for (int i = 0; i < bytes.Length; i += chunk) c.WriteCopyData(bytes.AsSpan(i, Math.Min(chunk, bytes.Length - i)));
        c.CompleteCopy();
        string tag = c.CommandTag;
        h.Session.EndImplicit(true);
        return tag;
    }

    private string CopyOut(string sql)
    {
        h.Session.BeginImplicit();
        using var c = OpenCopy(sql);
        Assert.True(c.IsCopyOut);
        var sb = new StringBuilder();
        while (c.ReadCopyData(out var line)) sb.Append(Encoding.UTF8.GetString(line.Span));
        Assert.StartsWith("COPY ", c.CommandTag);
        h.Session.EndImplicit(true);
        return sb.ToString();
    }

    private const string TextData = "1\ttab\\there\\nnewline\t\\\\x01ff\tt\t1.5\n2\t\\N\t\\N\tf\t-2\n3\tback\\\\slash \\101\\x42\t\\\\x\tfalse\tInfinity\n";

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(1000)]
    public void Text_format_round_trips_with_escapes_and_chunks_split_anywhere(int chunk)
    {
        Assert.Equal("COPY 3", CopyIn("COPY t FROM STDIN", TextData, chunk));
        var rows = h.Query("SELECT id, name, data, flag, x FROM t ORDER BY id").Single().Rows;
        Rows.Same(new string?[] { "1", "tab\there\nnewline", "\\x01ff", "t", "1.5" }, rows[0]);
        Rows.Same(new string?[] { "2", null, null, "f", "-2" }, rows[1]);
        Rows.Same(new string?[] { "3", "back\\slash AB", "\\x", "f", "Infinity" }, rows[2]);
        Assert.Equal(TextData.Replace("back\\\\slash \\101\\x42", "back\\\\slash AB", StringComparison.Ordinal).Replace("false", "f", StringComparison.Ordinal),
            CopyOut("COPY t TO STDOUT"));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    public void Csv_round_trips_with_quotes_newlines_and_nulls(int chunk)
    {
        string csv = "id,name,data\n1,\"a,b\",\n2,\"line1\nline2 \"\"q\"\"\",\\x00\n3,\"\",\"\"\n";
        Assert.Equal("COPY 3", CopyIn("COPY t (id, name, data) FROM STDIN WITH (FORMAT csv, HEADER true)", csv, chunk));
        var rows = h.Query("SELECT id, name, data FROM t ORDER BY id").Single().Rows;
        Rows.Same(new string?[] { "1", "a,b", null }, rows[0]);
        Rows.Same(new string?[] { "2", "line1\nline2 \"q\"", "\\x00" }, rows[1]);
        Rows.Same(new string?[] { "3", "", "\\x" }, rows[2]);
        string back = CopyOut("COPY t (id, name, data) TO STDOUT WITH CSV HEADER");
        Assert.Equal("id,name,data\n1,\"a,b\",\n2,\"line1\nline2 \"\"q\"\"\",\\x00\n3,\"\",\\x\n", back);
    }

    [Fact]
    public void Copy_of_a_query_with_options()
    {
        CopyIn("COPY t (id, name) FROM STDIN (DELIMITER '|', NULL 'NIL')", "1|one\n2|NIL\n\\.\nignored after the end marker", 5);
        Assert.Equal("1;one\n2;\n", CopyOut("COPY (SELECT id, name FROM t ORDER BY id) TO STDOUT WITH (FORMAT csv, DELIMITER ';')"));
        Assert.Equal("n\n2\n", CopyOut("COPY (SELECT count(*)::int4 AS n FROM t) TO STDOUT (FORMAT csv, HEADER)"));
        Assert.Equal("1|one\n2|NIL\n", CopyOut("COPY t (id, name) TO STDOUT (DELIMITER '|', NULL 'NIL')"));
    }

    [Fact]
    public void The_last_line_may_lack_its_newline()
    {
        Assert.Equal("COPY 2", CopyIn("COPY t (id) FROM STDIN", "1\n2", 100));
        Assert.Equal("2", h.Scalar("SELECT count(*) FROM t"));
    }

    [Fact]
    public void Bad_data_is_22P04_and_rolls_back_the_copy()
    {
        h.Session.BeginImplicit();
        using (var c = OpenCopy("COPY t (id, name) FROM STDIN"))
        {
            c.WriteCopyData("1\tok\n"u8);
            var e = Assert.Throws<SqlError>(() => c.WriteCopyData("2\tok\textra\n"u8));
            Assert.Equal("22P04", e.SqlState);
            Assert.Equal("extra data after last expected column", e.Message);
            Assert.Equal("COPY t, line 2: \"2\tok\textra\"", e.Where);
            c.WriteCopyData("3\tignored\n"u8);
        }
        h.Session.OnError();
        h.Session.EndImplicit(false);
        Assert.Equal("0", h.Scalar("SELECT count(*) FROM t"));

        h.Session.BeginImplicit();
        using (var c = OpenCopy("COPY t (id, name) FROM STDIN"))
        {
            var e = Assert.Throws<SqlError>(() => { c.WriteCopyData("1\n"u8); });
            Assert.Equal(("22P04", "missing data for column \"name\""), (e.SqlState, e.Message));
        }
        h.Session.EndImplicit(false);

        h.Session.BeginImplicit();
        using (var c = OpenCopy("COPY t (id) FROM STDIN"))
        {
            var e = Assert.Throws<SqlError>(() => c.WriteCopyData("abc\n"u8));
            Assert.Equal(("22P02", "invalid input syntax for type bigint: \"abc\""), (e.SqlState, e.Message));
            Assert.Equal("COPY t, line 1, column id: \"abc\"", e.Where);
        }
        h.Session.EndImplicit(false);

        h.Session.BeginImplicit();
        using (var c = OpenCopy("COPY t (id, name) FROM STDIN (FORMAT csv)"))
        {
            c.WriteCopyData("1,\"open\n"u8);
            var e = Assert.Throws<SqlError>(() => c.CompleteCopy());
            Assert.Equal(("22P04", "unterminated CSV quoted field"), (e.SqlState, e.Message));
        }
        h.Session.EndImplicit(false);
    }

    [Fact]
    public void FailCopy_rolls_back_inside_an_explicit_transaction_too()
    {
        h.Query("BEGIN; INSERT INTO t (id) VALUES (100)");
        h.Session.BeginImplicit();
        using (var c = OpenCopy("COPY t (id) FROM STDIN"))
        {
            c.WriteCopyData("1\n2\n"u8);
            c.FailCopy("client gave up");
        }
        h.Session.OnError();
        h.Session.EndImplicit(false);
        Assert.Equal(SqlTransactionState.Failed, h.Session.TransactionState);
        h.Query("ROLLBACK");
        h.Query("BEGIN");
        h.Session.BeginImplicit();
        using (var c = OpenCopy("COPY t (id) FROM STDIN"))
        {
            c.WriteCopyData("1\n2\n"u8);
            c.FailCopy("again");
        }
        h.Session.EndImplicit(true);
        h.Query("INSERT INTO t (id) VALUES (3); COMMIT");
        Assert.Equal("3", h.Scalar("SELECT group_concat(id) FROM t"));
    }

    [Fact]
    public void Copy_errors_before_data()
    {
        Assert.Equal("42P01", EngineHarness.Error(() => OpenCopy("COPY nothere FROM STDIN")).SqlState);
        Assert.Equal("42703", EngineHarness.Error(() => OpenCopy("COPY t (nope) FROM STDIN")).SqlState);
        Assert.Equal("0A000", EngineHarness.Error(() => OpenCopy("COPY t FROM '/data/file.csv'")).SqlState);
        Assert.Equal("0A000", EngineHarness.Error(() => OpenCopy("COPY t TO STDOUT (FORMAT binary)")).SqlState);
    }
}
