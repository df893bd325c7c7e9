using System.Globalization;
using System.Text;

namespace PgSpec.Cli.Serve;

internal enum UnitKind
{
    Trivia,
    Word,
    QuotedIdent,
    Literal,
    Param,
    Group,
    Cast,
    Operator,
    Comma,
    Dot,
    Semicolon,
    Other,
}

/// <summary>A piece of a rewritten statement: a token, or a parenthesised group, or a rewritten cast.</summary>
internal sealed class Unit
{
    public UnitKind Kind;
    public string Text = "";
    public int Origin;
    /// <summary>Word: lower-cased; QuotedIdent: the name.</summary>
    public string? Name;
    public List<Unit>? Children;
    public PgType? CastType;
    /// <summary>Cast: the column name PostgreSQL gives an expression that is this cast.</summary>
    public string? CastName;

    public bool IsWord(string lower) => Kind == UnitKind.Word && Name == lower;

    public bool IsIdent => Kind is UnitKind.Word or UnitKind.QuotedIdent;

    public override string ToString() => Text;
}

/// <summary>What the rewrite found out about one item of a select list (or RETURNING list).</summary>
internal sealed record SelectItem(string? Name, PgType? Type, bool IsStar);

/// <summary>A statement rewritten from PostgreSQL's forms into SQLite's, with what was learnt on the way.</summary>
internal sealed class RewrittenSql
{
    public required string Sql { get; init; }
    /// <summary>The top-level units (without trivia).</summary>
    public required List<Unit> Units { get; init; }
    /// <summary>The highest $n.</summary>
    public int ParameterCount { get; init; }
    /// <summary>The type of $n given by a cast ($n::type), by n.</summary>
    public required Dictionary<int, PgType> ParameterCasts { get; init; }
    /// <summary>The main verb (select, insert, update, delete, values, ...), lower-case, or null.</summary>
    public string? Verb { get; init; }
    /// <summary>The items of the select list or RETURNING list, or null when there is none.</summary>
    public List<SelectItem>? Items { get; init; }
}

/// <summary>
/// Rewrites PostgreSQL's syntax that SQLite lacks: <c>x::type</c> casts, <c>$n</c> parameters (as
/// <c>?n</c>), dollar-quoted and E'' strings, ILIKE; and reads the select list for column names and types.
/// </summary>
internal static class SqlRewriter
{
    /// <summary>Words that end a select list.</summary>
    private static readonly HashSet<string> SelectListEnd =
        ["from", "where", "group", "having", "window", "order", "limit", "offset", "union", "intersect", "except", "fetch", "for", "into"];

    /// <summary>Words that are never an alias written without AS.</summary>
    private static readonly HashSet<string> NotAnAlias =
    [
        "from", "where", "and", "or", "not", "is", "null", "in", "like", "ilike", "glob", "regexp", "match", "between", "end", "then", "else",
        "when", "case", "as", "asc", "desc", "collate", "escape", "isnull", "notnull", "filter", "over", "true", "false", "distinct", "all",
        "exists", "select", "union", "intersect", "except", "order", "group", "having", "limit", "offset", "window", "returning", "on",
        "using", "join", "inner", "left", "right", "full", "cross", "natural", "outer",
    ];

    /// <summary>Words before a parenthesis that are not the name of a called function.</summary>
    private static readonly HashSet<string> NotAFunction =
    [
        "in", "exists", "values", "and", "or", "not", "select", "where", "on", "using", "as", "from", "when", "then", "else", "case",
        "is", "like", "between", "returning", "set", "into", "join", "any", "all", "some", "over", "filter", "by", "limit", "offset", "with",
    ];

    /// <summary>The result types of functions whose type PostgreSQL knows and SQLite's values would not tell.</summary>
    private static readonly Dictionary<string, PgType> FunctionTypes = new(StringComparer.Ordinal)
    {
        ["pg_sleep"] = PgType.Void,
        ["pg_advisory_unlock_all"] = PgType.Void,
        ["version"] = PgType.Text,
        ["current_setting"] = PgType.Text,
        ["set_config"] = PgType.Text,
        ["current_database"] = PgType.NameType,
        ["current_schema"] = PgType.NameType,
        ["pg_backend_pid"] = PgType.Int4,
        ["count"] = PgType.Int8,
        ["now"] = PgType.TimestampTz,
        ["statement_timestamp"] = PgType.TimestampTz,
        ["transaction_timestamp"] = PgType.TimestampTz,
        ["clock_timestamp"] = PgType.TimestampTz,
    };

    public static RewrittenSql Rewrite(string sql)
    {
        var tokens = SqlLexer.Tokenize(sql);
        var stack = new Stack<(List<Unit> List, int Origin)>();
        var current = new List<Unit>();
        var paramCasts = new Dictionary<int, PgType>();
        int maxParam = 0;
        string? firstWord = null;
        for (int ti = 0; ti < tokens.Count; ti++)
        {
            var t = tokens[ti];
            string text = t.Text(sql);
            if (t.Unterminated) throw Unterminated(t, sql);
            switch (t.Kind)
            {
                case TokenKind.Whitespace or TokenKind.Comment:
                    current.Add(new Unit { Kind = UnitKind.Trivia, Text = t.Kind == TokenKind.Comment ? " " : text, Origin = t.Start });
                    break;
                case TokenKind.Word:
                {
                    string lower = text.ToLowerInvariant();
                    firstWord ??= lower;
                    string outText = lower switch { "ilike" => "LIKE", _ => text };
                    current.Add(new Unit { Kind = UnitKind.Word, Text = outText, Origin = t.Start, Name = lower });
                    break;
                }
                case TokenKind.QuotedIdent:
                    current.Add(new Unit { Kind = UnitKind.QuotedIdent, Text = text, Origin = t.Start, Name = SqlLexer.QuotedIdentValue(text) });
                    break;
                case TokenKind.String:
                {
                    char p = text[0];
                    if (p is 'e' or 'E')
                    {
                        string value = SqlLexer.StringValue(text);
                        current.Add(new Unit { Kind = UnitKind.Literal, Text = SqlLexer.QuoteLiteral(value), Origin = t.Start, Name = value });
                    }
                    else if (p == '\'')
                    {
                        current.Add(new Unit { Kind = UnitKind.Literal, Text = text, Origin = t.Start, Name = SqlLexer.StringValue(text) });
                    }
                    else if (p is 'b' or 'B')
                    {
                        throw SqlError.Error(SqlStates.FeatureNotSupported, "bit-string constants are not supported", position: t.Start + 1);
                    }
                    else
                    {
                        current.Add(new Unit { Kind = UnitKind.Literal, Text = p is 'n' or 'N' ? text[1..] : text, Origin = t.Start });
                    }
                    break;
                }
                case TokenKind.DollarString:
                {
                    int tagLength = text.IndexOf('$', 1) + 1;
                    string value = text[tagLength..^tagLength];
                    current.Add(new Unit { Kind = UnitKind.Literal, Text = SqlLexer.QuoteLiteral(value), Origin = t.Start, Name = value });
                    break;
                }
                case TokenKind.Number:
                    current.Add(new Unit { Kind = UnitKind.Literal, Text = text.Replace("_", "", StringComparison.Ordinal), Origin = t.Start });
                    break;
                case TokenKind.Param:
                {
                    if (!int.TryParse(text.AsSpan(1), NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n < 1 || n > 65535)
                        throw SqlError.Error(SqlStates.UndefinedParameter, $"there is no parameter {text}", position: t.Start + 1);
                    maxParam = Math.Max(maxParam, n);
                    current.Add(new Unit { Kind = UnitKind.Param, Text = "?" + n.ToString(CultureInfo.InvariantCulture), Origin = t.Start, Name = n.ToString(CultureInfo.InvariantCulture) });
                    break;
                }
                case TokenKind.OpenParen:
                    stack.Push((current, t.Start));
                    current = [];
                    break;
                case TokenKind.CloseParen:
                    if (stack.Count == 0)
                    {
                        current.Add(new Unit { Kind = UnitKind.Other, Text = text, Origin = t.Start });
                        break;
                    }
                    var (parent, origin) = stack.Pop();
                    Fixup(current, firstWord);
                    parent.Add(new Unit { Kind = UnitKind.Group, Text = "(" + Concat(current) + ")", Origin = origin, Children = current });
                    current = parent;
                    break;
                case TokenKind.Comma:
                    current.Add(new Unit { Kind = UnitKind.Comma, Text = text, Origin = t.Start });
                    break;
                case TokenKind.Dot:
                    current.Add(new Unit { Kind = UnitKind.Dot, Text = text, Origin = t.Start });
                    break;
                case TokenKind.Semicolon:
                    current.Add(new Unit { Kind = UnitKind.Semicolon, Text = text, Origin = t.Start });
                    break;
                case TokenKind.Operator:
                    current.Add(new Unit { Kind = UnitKind.Operator, Text = text, Origin = t.Start, Name = text });
                    break;
                case TokenKind.DoubleColon:
                    ti = RewriteCast(sql, tokens, ti, current, paramCasts);
                    break;
                default:
                    current.Add(new Unit { Kind = UnitKind.Other, Text = text, Origin = t.Start });
                    break;
            }
        }
        while (stack.Count > 0)
        {
            var (parent, origin) = stack.Pop();
            parent.Add(new Unit { Kind = UnitKind.Other, Text = "(", Origin = origin });
            parent.AddRange(current);
            current = parent;
        }
        Fixup(current, firstWord);
        if (firstWord == "create")
        {
            // CREATE TABLE ... WITH (storage parameters): SQLite has none.
            var sig = current.Select((u, i) => (u, i)).Where(p => p.u.Kind is not (UnitKind.Trivia or UnitKind.Semicolon)).ToList();
            if (sig.Count >= 3 && sig[^1].u.Kind == UnitKind.Group && sig[^2].u.IsWord("with") && sig[^3].u.Kind == UnitKind.Group
                && sig.Take(5).Any(p => p.u.IsWord("table")))
            {
                sig[^1].u.Text = "";
                sig[^2].u.Text = "";
            }
        }
        var significant = current.Where(u => u.Kind != UnitKind.Trivia && u.Text.Length > 0).ToList();
        string? verb = MainVerb(significant);
        return new RewrittenSql
        {
            Sql = Concat(current),
            Units = significant,
            ParameterCount = maxParam,
            ParameterCasts = paramCasts,
            Verb = verb,
            Items = ReadItems(significant, verb),
        };
    }

    private static SqlError Unterminated(Token t, string sql)
    {
        string what = t.Kind switch
        {
            TokenKind.Comment => "unterminated /* comment",
            TokenKind.QuotedIdent => "unterminated quoted identifier",
            TokenKind.DollarString => "unterminated dollar-quoted string",
            _ => "unterminated quoted string",
        };
        string near = sql[t.Start..];
        return SqlError.Error(SqlStates.SyntaxError, $"{what} at or near \"{near}\"", position: t.Start + 1);
    }

    /// <summary>
    /// PostgreSQL's forms SQLite spells otherwise: current_user and session_user without parentheses,
    /// pg_catalog.f(...), and in CREATE statements the serial types.
    /// </summary>
    private static void Fixup(List<Unit> units, string? firstWord)
    {
        for (int i = 0; i < units.Count; i++)
        {
            var u = units[i];
            if (u.Kind != UnitKind.Word) continue;
            int next = i + 1;
            while (next < units.Count && units[next].Kind == UnitKind.Trivia) next++;
            bool call = next < units.Count && units[next].Kind == UnitKind.Group;
            switch (u.Name)
            {
                case "current_user" or "session_user" or "current_role" when !call:
                    u.Text = u.Name == "session_user" ? "session_user()" : "current_user()";
                    break;
                case "pg_catalog" when next < units.Count && units[next].Kind == UnitKind.Dot && next + 2 < units.Count
                                       && units[next + 1].IsIdent && units[next + 2].Kind == UnitKind.Group:
                    u.Text = "";
                    units[next].Text = "";
                    break;
                case "serial" or "serial4" or "bigserial" or "serial8" or "smallserial" or "serial2" when firstWord == "create":
                    u.Text = "INTEGER";
                    break;
            }
        }
    }

    public static string Concat(List<Unit> units)
    {
        var sb = new StringBuilder();
        foreach (var u in units) sb.Append(u.Text);
        return sb.ToString();
    }

    /// <summary>Reads the type after the :: at <paramref name="at"/>, wraps the operand before it; returns the index of the type's last token.</summary>
    private static int RewriteCast(string sql, List<Token> tokens, int at, List<Unit> current, Dictionary<int, PgType> paramCasts)
    {
        int colonPos = tokens[at].Start;
        // The type name: words (double precision, character varying, timestamp with time zone, pg_catalog.int8), a quoted name, (typmod), [].
        var words = new List<string>();
        int i = at + 1;
        int last = at;
        int typeStart = -1;
        while (true)
        {
            int j = i;
            while (j < tokens.Count && tokens[j].IsTrivia) j++;
            if (j >= tokens.Count) break;
            var t = tokens[j];
            string lower = t.Text(sql).ToLowerInvariant();
            bool take;
            if (words.Count == 0) take = t.Kind is TokenKind.Word or TokenKind.QuotedIdent;
            else if (t.Kind == TokenKind.Dot && words.Count == 1 && words[0] == "pg_catalog") take = true;
            else if (t.Kind == TokenKind.Word) take = ContinuesTypeName(words, lower);
            else take = false;
            if (!take) break;
            if (typeStart < 0) typeStart = t.Start;
            if (t.Kind == TokenKind.Dot) words[0] = "pg_catalog.";
            else if (t.Kind == TokenKind.QuotedIdent) words.Add(SqlLexer.QuotedIdentValue(t.Text(sql)));
            else if (words.Count == 1 && words[0] == "pg_catalog.") words[0] += lower;
            else words.Add(lower);
            last = j;
            i = j + 1;
        }
        if (words.Count == 0)
        {
            string near = at + 1 < tokens.Count ? NextSignificant(sql, tokens, at + 1) : "";
            throw near.Length == 0
                ? SqlError.Error(SqlStates.SyntaxError, "syntax error at end of input", position: sql.Length + 1)
                : SqlError.Error(SqlStates.SyntaxError, $"syntax error at or near \"{near}\"", position: colonPos + 3);
        }
        // (typmod) and [] after the name.
        int k = last + 1;
        while (k < tokens.Count && tokens[k].IsTrivia) k++;
        if (k < tokens.Count && tokens[k].Kind == TokenKind.OpenParen)
        {
            int depth = 0;
            for (; k < tokens.Count; k++)
            {
                if (tokens[k].Kind == TokenKind.OpenParen) depth++;
                else if (tokens[k].Kind == TokenKind.CloseParen && --depth == 0) break;
            }
            last = Math.Min(k, tokens.Count - 1);
            k = last + 1;
            while (k < tokens.Count && tokens[k].IsTrivia) k++;
        }
        string typeName = string.Join(' ', words);
        if (k < tokens.Count && tokens[k].Kind == TokenKind.Operator && tokens[k].Text(sql).StartsWith('['))
            throw SqlError.Error(SqlStates.FeatureNotSupported, $"arrays are not supported (type {typeName}[])", position: typeStart + 1);
        var type = PgType.FromName(typeName)
                   ?? throw SqlError.Error(SqlStates.UndefinedObject, $"type \"{typeName}\" does not exist", position: typeStart + 1);
        if (type.Kind == PgTypeKind.Void || type.Oid == PgType.UnknownOid)
            throw SqlError.Error(SqlStates.FeatureNotSupported, $"cannot cast to type {type.Name}", position: typeStart + 1);

        // The operand: the primary expression just before ::.
        int end = current.Count;
        int opEnd = end;
        while (opEnd > 0 && current[opEnd - 1].Kind == UnitKind.Trivia) opEnd--;
        if (opEnd == 0) throw SqlError.Error(SqlStates.SyntaxError, "syntax error at or near \"::\"", position: colonPos + 1);
        int opStart = opEnd - 1;
        var operand = current[opStart];
        string? operandName = null;
        if (operand.Kind == UnitKind.Group && opStart > 0 && current[opStart - 1].IsIdent && !NotAFunction.Contains(current[opStart - 1].Name ?? ""))
        {
            opStart--;
            operandName = current[opStart].Kind == UnitKind.Word ? current[opStart].Name : current[opStart].Name;
            while (opStart >= 2 && current[opStart - 1].Kind == UnitKind.Dot && current[opStart - 2].IsIdent) opStart -= 2;
        }
        else if (operand.IsIdent)
        {
            operandName = operand.Name;
            while (opStart >= 2 && current[opStart - 1].Kind == UnitKind.Dot && current[opStart - 2].IsIdent) opStart -= 2;
        }
        else if (operand.Kind == UnitKind.Cast)
        {
            operandName = operand.CastName;
        }
        else if (operand.Kind == UnitKind.Group)
        {
            operandName = ItemName(operand.Children!.Where(u => u.Kind != UnitKind.Trivia).ToList());
            if (operandName == "?column?") operandName = null;
        }
        string operandText = Concat(current.GetRange(opStart, opEnd - opStart));
        string castText;
        if (opEnd - opStart == 1 && operand.Kind == UnitKind.Literal && operand.Name is { } literal)
        {
            // A quoted literal: read it as PostgreSQL's input function of the type does, now.
            try
            {
                castText = SqliteLiteral(PgValues.ParseText(type, literal));
            }
            catch (SqlError e)
            {
                throw e.WithPosition(operand.Origin + 1);
            }
        }
        else if (type.Kind == PgTypeKind.Bool)
        {
            castText = $"(CASE lower(trim(CAST({operandText} AS TEXT))) WHEN 't' THEN 1 WHEN 'tr' THEN 1 WHEN 'tru' THEN 1 WHEN 'true' THEN 1 "
                       + "WHEN 'y' THEN 1 WHEN 'ye' THEN 1 WHEN 'yes' THEN 1 WHEN 'on' THEN 1 WHEN '1' THEN 1 "
                       + "WHEN 'f' THEN 0 WHEN 'fa' THEN 0 WHEN 'fal' THEN 0 WHEN 'fals' THEN 0 WHEN 'false' THEN 0 "
                       + $"WHEN 'n' THEN 0 WHEN 'no' THEN 0 WHEN 'of' THEN 0 WHEN 'off' THEN 0 WHEN '0' THEN 0 ELSE {operandText} END)";
        }
        else
        {
            castText = $"CAST({operandText} AS {type.SqliteType})";
        }
        if (opEnd - opStart == 1 && operand.Kind == UnitKind.Param)
        {
            int n = int.Parse(operand.Name!, CultureInfo.InvariantCulture);
            paramCasts.TryAdd(n, type);
        }
        var unit = new Unit
        {
            Kind = UnitKind.Cast,
            Text = castText,
            Origin = current[opStart].Origin,
            CastType = type,
            CastName = operandName ?? type.Name,
        };
        current.RemoveRange(opStart, end - opStart);
        current.Add(unit);
        return last;
    }

    private static string NextSignificant(string sql, List<Token> tokens, int from)
    {
        for (int j = from; j < tokens.Count; j++)
            if (!tokens[j].IsTrivia) return tokens[j].Text(sql);
        return "";
    }

    private static bool ContinuesTypeName(List<string> words, string next) => (string.Join(' ', words), next) switch
    {
        ("double", "precision") => true,
        ("character", "varying") => true,
        ("timestamp" or "time", "with" or "without") => true,
        ("timestamp with" or "time with" or "timestamp without" or "time without", "time") => true,
        ("timestamp with time" or "time with time" or "timestamp without time" or "time without time", "zone") => true,
        _ => false,
    };

    /// <summary>A SQLite literal of a SQLite value.</summary>
    public static string SqliteLiteral(object? value) => value switch
    {
        null => "NULL",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d when double.IsPositiveInfinity(d) => "9e999",
        double d when double.IsNegativeInfinity(d) => "-9e999",
        double d => d.ToString("R", CultureInfo.InvariantCulture) is var r && (r.Contains('.') || r.Contains('E')) ? r : r + ".0",
        byte[] b => "X'" + Convert.ToHexString(b) + "'",
        string s => SqlLexer.QuoteLiteral(s),
        _ => SqlLexer.QuoteLiteral(value.ToString() ?? ""),
    };

    private static string? MainVerb(List<Unit> units)
    {
        if (units.Count == 0) return null;
        var first = units[0];
        if (first.Kind == UnitKind.Group)
        {
            // (SELECT ...) UNION ...: the verb of the first group.
            var inner = first.Children!.Where(u => u.Kind != UnitKind.Trivia).ToList();
            return inner.Count > 0 && inner[0].IsWord("select") ? "select" : inner.Count > 0 && inner[0].IsWord("values") ? "values" : null;
        }
        if (first.Kind != UnitKind.Word) return null;
        if (first.Name != "with") return first.Name;
        foreach (var u in units.Skip(1))
            if (u.Kind == UnitKind.Word && u.Name is "select" or "insert" or "update" or "delete" or "values" or "replace")
                return u.Name;
        return "with";
    }

    private static List<SelectItem>? ReadItems(List<Unit> units, string? verb)
    {
        int start;
        int end = units.Count;
        switch (verb)
        {
            case "select":
            {
                int s = units.FindIndex(u => u.IsWord("select"));
                if (s < 0)
                {
                    // (SELECT ...) UNION ...
                    if (units.Count > 0 && units[0].Kind == UnitKind.Group)
                        return ReadItems(units[0].Children!.Where(u => u.Kind != UnitKind.Trivia).ToList(), "select");
                    return null;
                }
                start = s + 1;
                if (start < units.Count && units[start].IsWord("distinct"))
                {
                    start++;
                    if (start + 1 < units.Count && units[start].IsWord("on") && units[start + 1].Kind == UnitKind.Group) start += 2;
                }
                else if (start < units.Count && units[start].IsWord("all"))
                {
                    start++;
                }
                for (int i = start; i < units.Count; i++)
                {
                    if ((units[i].Kind == UnitKind.Word && SelectListEnd.Contains(units[i].Name!)) || units[i].Kind == UnitKind.Semicolon)
                    {
                        end = i;
                        break;
                    }
                }
                break;
            }
            case "values":
            {
                int v = units.FindIndex(u => u.IsWord("values"));
                if (v < 0 || v + 1 >= units.Count || units[v + 1].Kind != UnitKind.Group) return null;
                var row = SplitItems(units[v + 1].Children!.Where(u => u.Kind != UnitKind.Trivia).ToList());
                return row.Select((item, index) => new SelectItem($"column{index + 1}", ItemType(item), false)).ToList();
            }
            case "insert" or "update" or "delete" or "replace":
            {
                int r = units.FindIndex(u => u.IsWord("returning"));
                if (r < 0) return null;
                start = r + 1;
                break;
            }
            default:
                return null;
        }
        var items = new List<SelectItem>();
        foreach (var item in SplitItems(units.GetRange(start, Math.Max(0, end - start))))
        {
            if (item.Count == 0) continue;
            if ((item.Count == 1 && item[0].Kind == UnitKind.Operator && item[0].Text == "*")
                || (item.Count >= 3 && item[^1].Kind == UnitKind.Operator && item[^1].Text == "*" && item[^2].Kind == UnitKind.Dot))
            {
                items.Add(new SelectItem(null, null, true));
                continue;
            }
            var expr = item;
            string? alias = null;
            if (item.Count >= 3 && item[^2].IsWord("as") && item[^1].IsIdent)
            {
                alias = item[^1].Name;
                expr = item.GetRange(0, item.Count - 2);
            }
            else if (item.Count >= 2 && item[^1].IsIdent && (item[^1].Kind == UnitKind.QuotedIdent || !NotAnAlias.Contains(item[^1].Name!))
                     && IsCompleteOperand(item[^2]))
            {
                alias = item[^1].Name;
                expr = item.GetRange(0, item.Count - 1);
            }
            items.Add(new SelectItem(alias ?? ItemName(expr), ItemType(expr), false));
        }
        return items;
    }

    private static bool IsCompleteOperand(Unit u) =>
        u.Kind is UnitKind.Literal or UnitKind.Param or UnitKind.Group or UnitKind.Cast or UnitKind.QuotedIdent
        || (u.Kind == UnitKind.Word && (u.Name is "end" or "null" or "true" or "false" || !NotAnAlias.Contains(u.Name!)));

    private static List<List<Unit>> SplitItems(List<Unit> units)
    {
        var result = new List<List<Unit>> { new() };
        foreach (var u in units)
        {
            if (u.Kind == UnitKind.Comma) result.Add([]);
            else if (u.Kind != UnitKind.Trivia) result[^1].Add(u);
        }
        return result;
    }

    /// <summary>PostgreSQL's name for a select-list expression without an alias (FigureColname).</summary>
    private static string ItemName(List<Unit> expr)
    {
        if (expr.Count == 0) return "?column?";
        if (expr.Count == 1)
        {
            var u = expr[0];
            switch (u.Kind)
            {
                case UnitKind.Cast: return u.CastName ?? "?column?";
                case UnitKind.QuotedIdent: return u.Name!;
                case UnitKind.Word:
                    return u.Name switch
                    {
                        "true" or "false" => "bool",
                        "null" => "?column?",
                        _ => u.Name!,
                    };
                case UnitKind.Group:
                    return ItemName(u.Children!.Where(c => c.Kind != UnitKind.Trivia).ToList());
                default: return "?column?";
            }
        }
        // a.b.c
        if (expr.Count % 2 == 1 && Enumerable.Range(0, expr.Count).All(i => i % 2 == 0 ? expr[i].IsIdent : expr[i].Kind == UnitKind.Dot))
            return expr[^1].Name!;
        // f(...), schema.f(...)
        if (expr[^1].Kind == UnitKind.Group && expr.Count >= 2 && expr[^2].IsIdent && !NotAFunction.Contains(expr[^2].Name!)
            && (expr.Count == 2 || (expr.Count == 4 && expr[1].Kind == UnitKind.Dot && expr[0].IsIdent)))
            return expr[^2].Name!;
        if (expr[0].IsWord("case") && expr[^1].IsWord("end")) return "case";
        if (expr.Count == 2 && expr[0].IsWord("exists") && expr[1].Kind == UnitKind.Group) return "exists";
        return "?column?";
    }

    /// <summary>The type an expression announces by itself: a cast at its top, a known function, true/false.</summary>
    private static PgType? ItemType(List<Unit> expr)
    {
        if (expr.Count == 1)
        {
            var u = expr[0];
            if (u.Kind == UnitKind.Cast) return u.CastType;
            if (u.IsWord("true") || u.IsWord("false")) return PgType.Bool;
            if (u.IsWord("current_timestamp")) return PgType.TimestampTz;
            if (u.IsWord("current_date")) return PgType.Date;
            if (u.Kind == UnitKind.Group)
            {
                var inner = u.Children!.Where(c => c.Kind != UnitKind.Trivia).ToList();
                if (inner.Count > 0 && inner[0].IsWord("select")) return null;
                return ItemType(inner);
            }
            return null;
        }
        if (expr.Count == 2 && expr[0].IsIdent && expr[1].Kind == UnitKind.Group && expr[0].Name is { } f && FunctionTypes.TryGetValue(f, out var type))
            return type;
        if (expr.Count == 4 && expr[0].IsIdent && expr[0].Name == "pg_catalog" && expr[1].Kind == UnitKind.Dot && expr[3].Kind == UnitKind.Group
            && FunctionTypes.TryGetValue(expr[2].Name ?? "", out var qualified))
            return qualified;
        return null;
    }
}
