using System.Buffers.Binary;
using System.Text;
using PgSpec.Cli.Script;
using PgSpec.Protocol;

namespace PgSpec.Cli.Tests.Script;

/// <summary>The script parser on its own: each command, what it sends and prints, and malformed lines with file:line:column.</summary>
public sealed class ScriptParserTests
{
    private static IReadOnlyList<ScriptStep> Parse(string text) => ScriptParser.Parse(text, "t.data");

    private static SendStep One(string line) => Assert.IsType<SendStep>(Assert.Single(Parse(line + "\n")));

    [Fact]
    public void Comments_and_empty_lines_are_skipped()
    {
        IReadOnlyList<ScriptStep> steps = Parse("# a comment\n\n'S'\n#\n'Y'\n");
        Assert.Collection(
            steps,
            s => Assert.Equal(3, Assert.IsType<SendStep>(s).Line),
            s => Assert.Equal(ScriptRead.UntilReady, Assert.IsType<ReadStep>(s).Read));
    }

    [Theory]
    [InlineData("'S'", "Sync", typeof(Sync))]
    [InlineData("'H'", "Flush", typeof(Flush))]
    [InlineData("'X'", "Terminate", typeof(Terminate))]
    [InlineData("'c'", "CopyDone", typeof(CopyDone))]
    public void Messages_without_fields(string line, string display, Type type)
    {
        SendStep step = One(line);
        Assert.Equal(display, step.Display);
        Assert.IsType(type, step.Message);
    }

    [Theory]
    [InlineData("'Y'", (int)ScriptRead.UntilReady)]
    [InlineData("'y'", (int)ScriptRead.UntilSilent)]
    [InlineData("'z'", (int)ScriptRead.One)]
    public void Reading_commands(string line, int read)
        => Assert.Equal((ScriptRead)read, Assert.IsType<ReadStep>(Assert.Single(Parse(line))).Read);

    [Fact]
    public void Query_with_escapes_and_inner_quotes()
    {
        SendStep step = One("'Q'\t\"SELECT * FROM \"aaa\" WHERE a = '\\n' AND b = \\\"x\\\"\"");
        Assert.Equal("SELECT * FROM \"aaa\" WHERE a = '\n' AND b = \"x\"", Assert.IsType<Query>(step.Message).QueryString);
        Assert.Equal("Query (query=\"SELECT * FROM \"aaa\" WHERE a = '\n' AND b = \"x\"\")", step.Display);
    }

    [Fact]
    public void A_line_ending_in_a_backslash_goes_on_with_a_newline()
    {
        IReadOnlyList<ScriptStep> steps = Parse("'Q'\t\"SELECT 1 \\\nWHERE true\"\n'Y'\n");
        Assert.Equal("SELECT 1 \nWHERE true", Assert.IsType<Query>(Assert.IsType<SendStep>(steps[0]).Message).QueryString);
        Assert.Equal(3, steps[1].Line);
    }

    [Fact]
    public void Parse_without_and_with_parameter_types()
    {
        SendStep plain = One("'P'\t\"\"\t\"SELECT 2\"");
        Assert.Equal("Parse(stmt=\"\", query=\"SELECT 2\")", plain.Display);
        Assert.Empty(Assert.IsType<Parse>(plain.Message).ParameterTypeOids);

        SendStep typed = One("'P'\t\"s1\"\t\"SELECT $1, $2\"\t2\t23\t25");
        Assert.Equal([23u, 25u], Assert.IsType<Parse>(typed.Message).ParameterTypeOids.ToArray());
        Assert.Equal("Parse(stmt=\"s1\", query=\"SELECT $1, $2\", oids={23,25})", typed.Display);
    }

    [Fact]
    public void Bind_with_text_binary_and_null_parameters()
    {
        SendStep step = One("'B'\t\"p\"\t\"s\"\t3\t0\t1\t1\t3\t2\t\"42\"\t4\t\"7\"\t-1\t1\t1");
        var bind = Assert.IsType<Bind>(step.Message);
        Assert.Equal("Bind(stmt=\"s\", portal=\"p\")", step.Display);
        Assert.Equal([0, 1, 1], bind.ParameterFormatCodes.ToArray());
        Assert.Equal("42", Encoding.UTF8.GetString(bind.Parameters[0]!.Value.Span));
        Assert.Equal(7, BinaryPrimitives.ReadInt32BigEndian(bind.Parameters[1]!.Value.Span));
        Assert.Null(bind.Parameters[2]);
        Assert.Equal([1], bind.ResultFormatCodes.ToArray());
    }

    [Fact]
    public void Bind_binary_hex_and_empty_values()
    {
        var bind = Assert.IsType<Bind>(One("'B'\t\"\"\t\"\"\t1\t1\t2\t3\t\"0x0a0b0c\"\t0\t0").Message);
        Assert.Equal(new byte[] { 10, 11, 12 }, bind.Parameters[0]!.Value.ToArray());
        Assert.Equal(0, bind.Parameters[1]!.Value.Length);
        Assert.Empty(bind.ResultFormatCodes);
    }

    [Fact]
    public void Execute_Describe_Close()
    {
        Assert.Equal("Execute(portal=\"p\")", One("'E'\t\"p\"\t10").Display);
        Assert.Equal(10, Assert.IsType<Execute>(One("'E'\t\"p\"\t10").Message).MaxRows);
        Assert.Equal("Describe(stmt=\"S2\")", One("'D'\t'S'\t\"S2\"").Display);
        Assert.Equal("Describe(portal=\"\")", One("'D'\t'P'\t\"\"").Display);
        Assert.Equal(StatementOrPortal.Portal, Assert.IsType<Close>(One("'C'\t'P'\t\"c\"").Message).Target);
        Assert.Equal("Close(stmt=\"S1\")", One("'C'\t'S'\t\"S1\"").Display);
    }

    [Fact]
    public void Copy_messages()
    {
        SendStep data = One("'d'\t\"abc\\n\"");
        Assert.Equal("abc\n"u8.ToArray(), Assert.IsType<CopyData>(data.Message).Data.ToArray());
        Assert.Equal("CopyData (copy data=\"abc\n\")", data.Display);
        Assert.Equal("CopyFail (error message=\"stop\")", One("'f'\t\"stop\"").Display);
    }

    [Fact]
    public void FunctionCall_as_pgproto_documents_it()
    {
        SendStep step = One("'F'\t957\t1\t0\t1\t1\t\"0\"\t0");
        var call = Assert.IsType<FunctionCall>(step.Message);
        Assert.Equal(957u, call.FunctionOid);
        Assert.Equal("0", Encoding.UTF8.GetString(call.Arguments[0]!.Value.Span));
        Assert.Equal("FunctionCall(oid=957)", step.Display);
    }

    [Fact]
    public void Raw_bytes()
    {
        RawStep raw = Assert.IsType<RawStep>(Assert.Single(Parse("'!'\t\"51 00000004\"")));
        Assert.Equal(new byte[] { 0x51, 0, 0, 0, 4 }, raw.Bytes);
    }

    [Fact]
    public void Several_tabs_separate_like_one()
        => Assert.Equal("S1", Assert.IsType<Close>(One("'C'\t\t'S'\t\t\t\"S1\"").Message).Name);

    [Fact]
    public void Every_pgpool_script_parses()
    {
        string[] scripts = Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "Script", "pgproto", "tests"), "*.data");
        Assert.Equal(23, scripts.Length);
        foreach (string script in scripts)
        {
            Assert.NotEmpty(ScriptParser.Parse(File.ReadAllText(script), script));
        }
    }

    [Theory]
    [InlineData("'S'\nQ\t\"x\"\n", 2, 1, "expected a message kind in single quotes")]
    [InlineData(" 'S'\n", 1, 1, "found a space")]
    [InlineData("'SS'\n", 1, 3, "one character between single quotes")]
    [InlineData("'K'\n", 1, 2, "unknown message kind 'K'")]
    [InlineData("'Q'\n", 1, 4, "expected the query (a string in double quotes) after a TAB, found the end of the line")]
    [InlineData("'Q' \"x\"\n", 1, 4, "expected a TAB before the query, found a space")]
    [InlineData("'Q'\tx\n", 1, 5, "expected the query as a string in double quotes, found 'x'")]
    [InlineData("'Q'\t\"abc\n", 1, 9, "the string does not end with an unescaped '\"'")]
    [InlineData("# c\n'P'\t\"\"\t\"SELECT 1\"\tzero\n", 2, 19, "expected the number of parameter type OIDs as an integer, found \"zero\"")]
    [InlineData("'P'\t\"\"\t\"SELECT $1\"\t2\t23\n", 1, 24, "expected parameter type OID 2 of 2")]
    [InlineData("'B'\t\"\"\t\"\"\t0\t1\t3\t\"ab\"\t0\n", 1, 15, "parameter 1 of 1: the length says 3 bytes, but the value is 2")]
    [InlineData("'E'\t\"\"\t99999999999\n", 1, 8, "out of range")]
    [InlineData("'D'\t'X'\t\"s\"\n", 1, 5, "expected 'S' (a statement) or 'P' (a portal), found 'X'")]
    [InlineData("'C'\t\"S\"\t\"s\"\n", 1, 5, "as one character in single quotes")]
    [InlineData("'S'\t0\n", 1, 4, "unexpected field \"0\" after the last field")]
    [InlineData("'Y' \n", 1, 4, "unexpected a space after the last field")]
    [InlineData("'!'\t\"5\"\n", 1, 5, "even number of hex digits")]
    [InlineData("'Q'\t\"a \\\nb\n", 2, 2, "the string does not end")]
    public void Malformed_lines_give_file_line_column(string text, int line, int column, string message)
    {
        ScriptParseException e = Assert.Throws<ScriptParseException>(() => Parse(text));
        Assert.Equal((line, column), (e.Line, e.Column));
        Assert.Contains(message, e.Reason, StringComparison.Ordinal);
        Assert.StartsWith($"t.data:{line}:{column}: ", e.Message, StringComparison.Ordinal);
    }
}
