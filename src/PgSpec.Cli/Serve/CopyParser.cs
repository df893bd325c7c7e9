namespace PgSpec.Cli.Serve;

/// <summary>Parses COPY ... FROM STDIN / TO STDOUT with its options (the WITH (...) list and the legacy words).</summary>
internal static class CopyParser
{
    private static SqlError Syntax(List<Unit> u, int at) =>
        at < u.Count
            ? SqlError.Error(SqlStates.SyntaxError, $"syntax error at or near \"{u[at].Text}\"")
            : SqlError.Error(SqlStates.SyntaxError, "syntax error at end of input");

    public static SqlStatement Parse(SqliteSession session, string sql, List<Unit> u, List<uint> types)
    {
        int i = 1;
        string? query = null, table = null, tableName = null, schema = null;
        List<string>? columns = null;
        if (i < u.Count && u[i].Kind == UnitKind.Group)
        {
            query = u[i].Text[1..^1];
            i++;
        }
        else
        {
            int start = i;
            string name = StatementBuilder.DottedName(u, i, out int end) ?? throw Syntax(u, i);
            table = string.Concat(u.GetRange(start, end - start).Select(x => x.Text));
            int dot = name.LastIndexOf('.');
            tableName = dot >= 0 ? name[(dot + 1)..] : name;
            schema = dot >= 0 ? name[..dot] : null;
            i = end;
            if (i < u.Count && u[i].Kind == UnitKind.Group)
            {
                columns = [];
                foreach (var c in u[i].Children!.Where(x => x.Kind is not (UnitKind.Trivia or UnitKind.Comma)))
                    columns.Add(c.IsIdent ? c.Name! : throw SqlError.Error(SqlStates.SyntaxError, $"syntax error at or near \"{c.Text}\""));
                i++;
            }
        }
        bool copyIn;
        if (i < u.Count && u[i].IsWord("from")) copyIn = true;
        else if (i < u.Count && u[i].IsWord("to")) copyIn = false;
        else throw Syntax(u, i);
        i++;
        if (copyIn && query is not null) throw Syntax(u, i - 1);
        if (i < u.Count && (u[i].IsWord(copyIn ? "stdin" : "stdout")))
        {
            i++;
        }
        else if (i < u.Count && (u[i].Kind == UnitKind.Literal || u[i].IsWord("program")))
        {
            throw SqlError.Error(SqlStates.FeatureNotSupported, "COPY to or from a file or program is not supported",
                hint: copyIn ? "Use COPY ... FROM STDIN." : "Use COPY ... TO STDOUT.");
        }
        else
        {
            throw Syntax(u, i);
        }
        var options = new CopyOptions();
        bool? csv = null;
        string? delimiter = null, nullString = null, quote = null, escape = null;
        if (i < u.Count && u[i].IsWord("with")) i++;
        if (i < u.Count && u[i].Kind == UnitKind.Group)
        {
            foreach (var option in SplitComma(u[i].Children!))
            {
                if (option.Count == 0 || option[0].Kind != UnitKind.Word) throw SqlError.Error(SqlStates.SyntaxError, "syntax error in COPY options");
                string name = option[0].Name!;
                Unit? value = option.Count > 1 ? option[1] : null;
                string? text = value is null ? null : value.Kind == UnitKind.Literal ? value.Name ?? value.Text : value.Name ?? value.Text;
                switch (name)
                {
                    case "format":
                        csv = text?.ToLowerInvariant() switch
                        {
                            "csv" => true,
                            "text" => false,
                            "binary" => throw SqlError.Error(SqlStates.FeatureNotSupported, "COPY format \"binary\" is not supported"),
                            _ => throw SqlError.Error(SqlStates.InvalidParameterValue, $"COPY format \"{text}\" not recognized"),
                        };
                        break;
                    case "header":
                        options.Header = text is null || text.ToLowerInvariant() is "true" or "on" or "1" or "match";
                        if (text is not null && !(text.ToLowerInvariant() is "true" or "on" or "1" or "match" or "false" or "off" or "0"))
                            throw SqlError.Error(SqlStates.InvalidParameterValue, "header requires a Boolean value or \"match\"");
                        break;
                    case "delimiter": delimiter = text ?? throw SqlError.Error(SqlStates.SyntaxError, "delimiter requires a value"); break;
                    case "null": nullString = text ?? throw SqlError.Error(SqlStates.SyntaxError, "null requires a value"); break;
                    case "quote": quote = text; break;
                    case "escape": escape = text; break;
                    case "freeze" or "encoding" or "force_not_null" or "force_null":
                        if (name == "encoding" && text is not null) SessionSettings.NormalizeEncoding("encoding", text);
                        break;
                    case "force_quote":
                        if (value is { Kind: UnitKind.Operator, Text: "*" }) options.ForceQuoteAll = true;
                        else if (value is { Kind: UnitKind.Group }) foreach (var c in value.Children!.Where(x => x.IsIdent)) options.ForceQuote.Add(c.Name!);
                        break;
                    default:
                        throw SqlError.Error(SqlStates.SyntaxError, $"option \"{name}\" not recognized");
                }
            }
            i++;
        }
        else
        {
            while (i < u.Count)
            {
                var w = u[i];
                if (w.IsWord("binary")) throw SqlError.Error(SqlStates.FeatureNotSupported, "COPY format \"binary\" is not supported");
                if (w.IsWord("csv")) { csv = true; i++; continue; }
                if (w.IsWord("header")) { options.Header = true; i++; continue; }
                if (w.IsWord("freeze")) { i++; continue; }
                if (w.Kind == UnitKind.Word && w.Name is "delimiter" or "null" or "quote" or "escape")
                {
                    int v = i + 1;
                    if (v < u.Count && u[v].IsWord("as")) v++;
                    if (v >= u.Count || u[v].Kind != UnitKind.Literal || u[v].Name is null) throw Syntax(u, v);
                    string value = u[v].Name!;
                    switch (w.Name) { case "delimiter": delimiter = value; break; case "null": nullString = value; break; case "quote": quote = value; break; default: escape = value; break; }
                    i = v + 1;
                    continue;
                }
                if (w.IsWord("force") && i + 1 < u.Count)
                {
                    if (u[i + 1].IsWord("quote"))
                    {
                        i += 2;
                        if (i < u.Count && u[i] is { Kind: UnitKind.Operator, Text: "*" }) { options.ForceQuoteAll = true; i++; continue; }
                        while (i < u.Count && u[i].IsIdent) { options.ForceQuote.Add(u[i].Name!); i++; if (i < u.Count && u[i].Kind == UnitKind.Comma) i++; }
                        continue;
                    }
                    if (u[i + 1].IsWord("not") && i + 2 < u.Count && u[i + 2].IsWord("null"))
                    {
                        i += 3;
                        while (i < u.Count && u[i].IsIdent) { i++; if (i < u.Count && u[i].Kind == UnitKind.Comma) i++; }
                        continue;
                    }
                }
                throw Syntax(u, i);
            }
        }
        if (i != u.Count) throw Syntax(u, i);
        options.Csv = csv ?? false;
        options.Delimiter = OneByte("COPY delimiter", delimiter ?? (options.Csv ? "," : "\t"));
        options.Null = nullString ?? (options.Csv ? "" : "\\N");
        if (!options.Csv && (quote is not null || escape is not null))
            throw SqlError.Error(SqlStates.FeatureNotSupported, $"COPY {(quote is not null ? "quote" : "escape")} available only in CSV mode");
        options.Quote = OneByte("COPY quote", quote ?? "\"");
        options.Escape = OneByte("COPY escape", escape ?? ((char)options.Quote).ToString());
        if (options.Csv && options.Delimiter == options.Quote)
            throw SqlError.Error(SqlStates.FeatureNotSupported, "COPY delimiter and quote must be different");
        if (options.Null.Contains((char)options.Delimiter, StringComparison.Ordinal))
            throw SqlError.Error(SqlStates.FeatureNotSupported, "COPY delimiter character must not appear in the NULL specification");
        var command = new CopyCommand
        {
            In = copyIn,
            Table = table,
            TableName = tableName,
            Schema = schema,
            Columns = columns,
            Query = query,
            Options = options,
        };
        return new SqlStatement(session, sql, copyIn ? SqlCommandKind.CopyIn : SqlCommandKind.CopyOut, types, null) { Copy = command };
    }

    private static byte OneByte(string what, string value)
    {
        if (value.Length != 1 || value[0] > 127)
            throw SqlError.Error(SqlStates.FeatureNotSupported, $"{what} must be a single one-byte character");
        if (value[0] is '\r' or '\n')
            throw SqlError.Error(SqlStates.InvalidParameterValue, $"{what} cannot be newline or carriage return");
        return (byte)value[0];
    }

    private static List<List<Unit>> SplitComma(List<Unit> units)
    {
        var result = new List<List<Unit>> { new() };
        foreach (var x in units)
        {
            if (x.Kind == UnitKind.Comma) result.Add([]);
            else if (x.Kind != UnitKind.Trivia) result[^1].Add(x);
        }
        if (result[^1].Count == 0) result.RemoveAt(result.Count - 1);
        return result;
    }
}
