using System.Buffers.Binary;
using System.Text;
using PgSpec.Cli.Serve;

namespace PgSpec.Cli.Tests.Serve;

public class ValuesTests : IDisposable
{
    private readonly EngineHarness h = new();

    public void Dispose() => h.Dispose();

    [Theory]
    [InlineData("SELECT 1", "?column?", PgType.Int8Oid, "1")]
    [InlineData("SELECT 1::int4", "int4", PgType.Int4Oid, "1")]
    [InlineData("SELECT 1::integer AS n", "n", PgType.Int4Oid, "1")]
    [InlineData("SELECT '7'::int2", "int2", PgType.Int2Oid, "7")]
    [InlineData("SELECT 2.5", "?column?", PgType.Float8Oid, "2.5")]
    [InlineData("SELECT 1e16::float8", "float8", PgType.Float8Oid, "1e+16")]
    [InlineData("SELECT 0.1::double precision", "float8", PgType.Float8Oid, "0.1")]
    [InlineData("SELECT 'Infinity'::float8", "float8", PgType.Float8Oid, "Infinity")]
    [InlineData("SELECT '-inf'::float8", "float8", PgType.Float8Oid, "-Infinity")]
    [InlineData("SELECT 'NaN'::float8", "float8", PgType.Float8Oid, "NaN")]
    [InlineData("SELECT 0.000012345::float8", "float8", PgType.Float8Oid, "1.2345e-05")]
    [InlineData("SELECT 'abc'", "?column?", PgType.TextOid, "abc")]
    [InlineData("SELECT 'x'::varchar", "varchar", PgType.VarcharOid, "x")]
    [InlineData("SELECT '\\x00ff'::bytea", "bytea", PgType.ByteaOid, "\\x00ff")]
    [InlineData("SELECT X'0aFF'", "?column?", PgType.ByteaOid, "\\x0aff")]
    [InlineData("SELECT true", "bool", PgType.BoolOid, "t")]
    [InlineData("SELECT 'yes'::bool", "bool", PgType.BoolOid, "t")]
    [InlineData("SELECT 0::boolean", "bool", PgType.BoolOid, "f")]
    [InlineData("SELECT '12.50'::numeric", "numeric", PgType.NumericOid, "12.5")]
    [InlineData("SELECT NULL", "?column?", PgType.TextOid, null)]
    [InlineData("SELECT version()", "version", PgType.TextOid, null)]
    [InlineData("SELECT count(*) FROM (SELECT 1)", "count", PgType.Int8Oid, "1")]
    [InlineData("SELECT CASE WHEN 1 THEN 'a' END", "case", PgType.TextOid, "a")]
    [InlineData("SELECT E'a\\tb'", "?column?", PgType.TextOid, "a\tb")]
    [InlineData("SELECT $$it's$$", "?column?", PgType.TextOid, "it's")]
    public void Column_names_types_and_text_values(string sql, string name, uint oid, string? value)
    {
        var r = h.Query(sql).Single();
        var column = Assert.Single(r.Columns!);
        Assert.Equal(name, column.Name);
        Assert.Equal(oid, column.TypeOid);
        if (sql.Contains("version()")) Assert.StartsWith("PostgreSQL 16.0 (PgSpec serve, SQLite 3.", r.Rows[0][0]);
        else Assert.Equal(value, r.Rows.Single()[0]);
        Assert.Equal("SELECT 1", r.Tag);
    }

    [Fact]
    public void Declared_types_decide_the_columns_and_values_are_converted_to_them()
    {
        h.Query("CREATE TABLE t (i INTEGER, f REAL, s TEXT, b BLOB, flag BOOLEAN, n NUMERIC, v VARCHAR(10))");
        h.Query("INSERT INTO t VALUES (42, 1.5, 'x', X'01', 1, 3, 'y'), (NULL, 2, 'z', NULL, 0, 2.25, NULL)");
        var r = h.Query("SELECT * FROM t ORDER BY i NULLS LAST", binary: true).Single();
        Assert.Equal(["i", "f", "s", "b", "flag", "n", "v"], r.Columns!.Select(c => c.Name));
        Assert.Equal([PgType.Int8Oid, PgType.Float8Oid, PgType.TextOid, PgType.ByteaOid, PgType.BoolOid, PgType.NumericOid, PgType.TextOid], r.Columns!.Select(c => c.TypeOid));
        Assert.Equal([(short)8, (short)8, (short)-1, (short)-1, (short)1, (short)-1, (short)-1], r.Columns!.Select(c => c.TypeSize));
        Rows.Same(new string?[] { "42", "1.5", "x", "\\x01", "t", "3", "y" }, r.Rows[0]);
        Rows.Same(new string?[] { null, "2", "z", null, "f", "2.25", null }, r.Rows[1]);
        var b = r.BinaryRows[0];
        Assert.Equal(42, BinaryPrimitives.ReadInt64BigEndian(b[0]));
        Assert.Equal(1.5, BinaryPrimitives.ReadDoubleBigEndian(b[1]));
        Assert.Equal("x"u8.ToArray(), b[2]);
        Assert.Equal([1], b[3]);
        Assert.Equal([1], b[4]);
        Assert.Equal(PgValues.EncodeNumericBinary("3"), b[5]);
        Assert.Equal("SELECT 2", r.Tag);
    }

    [Fact]
    public void Binary_encodings_of_each_type()
    {
        var r = h.Query("SELECT 1::int2, 2::int4, 3::int8, 1.5::float4, 2.5::float8, 'a'::text, '\\x0102'::bytea, true, '-12.345'::numeric, pg_sleep(0)", binary: true).Single();
        var b = r.BinaryRows[0];
        Assert.Equal([0, 1], b[0]);
        Assert.Equal([0, 0, 0, 2], b[1]);
        Assert.Equal([0, 0, 0, 0, 0, 0, 0, 3], b[2]);
        Assert.Equal(1.5f, BinaryPrimitives.ReadSingleBigEndian(b[3]));
        Assert.Equal(2.5, BinaryPrimitives.ReadDoubleBigEndian(b[4]));
        Assert.Equal("a"u8.ToArray(), b[5]);
        Assert.Equal([1, 2], b[6]);
        Assert.Equal([1], b[7]);
        // ndigits 2, weight 0, sign negative, dscale 3, digits 12 3450.
        Assert.Equal([0, 2, 0, 0, 0x40, 0, 0, 3, 0, 12, 0x0d, 0x7a], b[8]);
        Assert.Equal("-12.345", PgValues.DecodeNumericBinary(b[8]));
        Assert.Empty(b[9]!);
        Assert.Equal(PgType.VoidOid, r.Columns![9].TypeOid);
        Assert.Equal("", r.Rows[0][9]);
    }

    [Theory]
    [InlineData(1.0, "1")]
    [InlineData(-0.5, "-0.5")]
    [InlineData(123456789012345.0, "123456789012345")]
    [InlineData(1234567890123456.0, "1.234567890123456e+15")]
    [InlineData(0.0001, "0.0001")]
    [InlineData(0.00001, "1e-05")]
    [InlineData(1e300, "1e+300")]
    [InlineData(0.1 + 0.2, "0.30000000000000004")]
    public void Float8_prints_as_PostgreSQL(double value, string text)
    {
        Assert.Equal(text, PgValues.FormatFloat8(value));
    }

    [Fact]
    public void Float4_prints_as_PostgreSQL()
    {
        Assert.Equal("1.5", PgValues.FormatFloat4(1.5f));
        Assert.Equal("123456", PgValues.FormatFloat4(123456f));
        Assert.Equal("1.234567e+06", PgValues.FormatFloat4(1234567f));
        Assert.Equal("0.1", PgValues.FormatFloat4(0.1f));
    }

    [Fact]
    public void Numeric_binary_round_trips()
    {
        foreach (string v in new[] { "0", "1", "-1", "10000", "123456789.000123", "0.0001", "-0.5", "NaN", "Infinity" })
            Assert.Equal(v, PgValues.DecodeNumericBinary(PgValues.EncodeNumericBinary(v)));
    }

    [Fact]
    public void Text_parameters_are_converted_by_their_type()
    {
        var s = h.Session;
        using var st = s.Prepare("SELECT $1::int8 + 1, $2::float8, $3::bool, $4::bytea, $5, $6::numeric, $7::int4", [0, 0, 0, 0, 0, 0, 0]);
        Assert.Equal([PgType.Int8Oid, PgType.Float8Oid, PgType.BoolOid, PgType.ByteaOid, PgType.TextOid, PgType.NumericOid, PgType.Int4Oid], st.ParameterTypes);
        ReadOnlyMemory<byte>?[] p = [T("41"), T("2.5"), T("true"), T("\\xdead"), T("hello"), T("1.25"), null];
        using var c = s.Open(st, p, [0], CancellationToken.None);
        var r = EngineHarness.Drain(c);
        Rows.Same(new string?[] { "42", "2.5", "t", "\\xdead", "hello", "1.25", null }, r.Rows.Single());
        Assert.Equal(PgType.Int8Oid, r.Columns![0].TypeOid);
    }

    [Fact]
    public void Binary_parameters_are_converted_by_their_type()
    {
        var s = h.Session;
        using var st = s.Prepare("SELECT $1, $2, $3, $4, $5, $6, $7", [PgType.Int2Oid, PgType.Int4Oid, PgType.Int8Oid, PgType.Float8Oid, PgType.BoolOid, PgType.ByteaOid, PgType.TextOid]);
        var f8 = new byte[8];
        BinaryPrimitives.WriteDoubleBigEndian(f8, -1.25);
        ReadOnlyMemory<byte>?[] p = [new byte[] { 0xff, 0xfe }, new byte[] { 0, 0, 1, 0 }, new byte[] { 0, 0, 0, 0, 0, 0, 0, 9 }, f8, new byte[] { 1 }, new byte[] { 0, 1 }, Encoding.UTF8.GetBytes("é")];
        using var c = s.Open(st, p, [1], CancellationToken.None);
        var r = EngineHarness.Drain(c);
        Rows.Same(new string?[] { "-2", "256", "9", "-1.25", "1", "\\x0001", "é" }, r.Rows.Single());
    }

    [Theory]
    [InlineData(PgType.Int4Oid, "abc", "22P02", "invalid input syntax for type integer: \"abc\"")]
    [InlineData(PgType.Int2Oid, "40000", "22003", "value \"40000\" is out of range for type smallint")]
    [InlineData(PgType.Int8Oid, "99999999999999999999", "22003", "value \"99999999999999999999\" is out of range for type bigint")]
    [InlineData(PgType.Float8Oid, "x1", "22P02", "invalid input syntax for type double precision: \"x1\"")]
    [InlineData(PgType.BoolOid, "maybe", "22P02", "invalid input syntax for type boolean: \"maybe\"")]
    [InlineData(PgType.ByteaOid, "\\xZZ", "22023", "invalid hexadecimal digit: \"Z\"")]
    [InlineData(PgType.NumericOid, "1.2.3", "22P02", "invalid input syntax for type numeric: \"1.2.3\"")]
    public void Bad_text_parameters_are_rejected_as_PostgreSQL_words_it(uint oid, string value, string state, string message)
    {
        using var st = h.Session.Prepare("SELECT $1", [oid]);
        var e = EngineHarness.Error(() => h.Session.Open(st, [T(value)], [], CancellationToken.None));
        Assert.Equal(state, e.SqlState);
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void Bad_binary_parameters_are_22P03_and_invalid_utf8_is_22021()
    {
        using var st = h.Session.Prepare("SELECT $1", [PgType.Int4Oid]);
        var e = EngineHarness.Error(() => h.Session.Open(st, [new byte[] { 1, 2 }], [1], CancellationToken.None));
        Assert.Equal("22P03", e.SqlState);
        Assert.Equal("incorrect binary data format in bind parameter 1", e.Message);
        using var text = h.Session.Prepare("SELECT $1", [0]);
        var u = EngineHarness.Error(() => h.Session.Open(text, [new byte[] { 0xc3, 0x28 }], [], CancellationToken.None));
        Assert.Equal("22021", u.SqlState);
        var w = EngineHarness.Error(() => h.Session.Open(text, [], [], CancellationToken.None));
        Assert.Equal("08P01", w.SqlState);
    }

    [Fact]
    public void Described_statement_keeps_its_columns_in_the_cursor()
    {
        using var st = h.Session.Prepare("SELECT 1 + 1, 'a' || 'b'", []);
        var described = st.Columns!;
        Assert.Equal([PgType.TextOid, PgType.TextOid], described.Select(c => c.TypeOid));
        using var c = h.Session.Open(st, [], [], CancellationToken.None);
        var r = EngineHarness.Drain(c);
        Assert.Equal(described, r.Columns);
        Rows.Same(new string?[] { "2", "ab" }, r.Rows.Single());
        // Not described: the first row's values decide.
        using var st2 = h.Session.Prepare("SELECT 1 + 1, 'a' || 'b'", []);
        using var c2 = h.Session.Open(st2, [], [], CancellationToken.None);
        Assert.Equal([PgType.Int8Oid, PgType.TextOid], c2.Columns!.Select(x => x.TypeOid));
    }

    [Fact]
    public void Values_that_are_not_of_the_column_type_are_errors()
    {
        h.Query("CREATE TABLE t (i INTEGER)");
        h.Query("INSERT INTO t VALUES ('abc')");
        var e = EngineHarness.Error(() => h.Query("SELECT i FROM t"));
        Assert.Equal("22P02", e.SqlState);
        Assert.Equal("invalid input syntax for type bigint: \"abc\"", e.Message);
        var e2 = EngineHarness.Error(() => h.Query("SELECT 'abc'::int8"));
        Assert.Equal("22P02", e2.SqlState);
        var e3 = EngineHarness.Error(() => h.Query("SELECT 3000000000::int4"));
        Assert.Equal("22003", e3.SqlState);
    }

    private static ReadOnlyMemory<byte>? T(string s) => Encoding.UTF8.GetBytes(s);
}
