using System.Text;

namespace PgSpec.Cli.Serve;

internal enum TokenKind
{
    Whitespace,
    Comment,
    /// <summary>'...', E'...', X'...', B'...', N'...'.</summary>
    String,
    /// <summary>$tag$...$tag$.</summary>
    DollarString,
    /// <summary>"..." or `...`.</summary>
    QuotedIdent,
    /// <summary>An unquoted identifier or keyword.</summary>
    Word,
    Number,
    /// <summary>$1, $2, ...</summary>
    Param,
    Operator,
    /// <summary>::</summary>
    DoubleColon,
    OpenParen,
    CloseParen,
    Comma,
    Semicolon,
    Dot,
    Other,
}

/// <summary>A token of a statement: where it is in the text and what it is.</summary>
internal readonly record struct Token(TokenKind Kind, int Start, int Length, bool Unterminated = false)
{
    public int End => Start + Length;

    public bool IsTrivia => Kind is TokenKind.Whitespace or TokenKind.Comment;

    public string Text(string sql) => sql.Substring(Start, Length);
}

/// <summary>Reads SQL (PostgreSQL's lexical rules, with SQLite's quoting where they differ) into tokens.</summary>
internal static class SqlLexer
{
    public static List<Token> Tokenize(string sql)
    {
        var tokens = new List<Token>();
        int i = 0;
        while (i < sql.Length)
        {
            int start = i;
            char c = sql[i];
            if (char.IsWhiteSpace(c))
            {
                while (i < sql.Length && char.IsWhiteSpace(sql[i])) i++;
                tokens.Add(new Token(TokenKind.Whitespace, start, i - start));
            }
            else if (c == '-' && Peek(sql, i + 1) == '-')
            {
                while (i < sql.Length && sql[i] != '\n') i++;
                tokens.Add(new Token(TokenKind.Comment, start, i - start));
            }
            else if (c == '/' && Peek(sql, i + 1) == '*')
            {
                int depth = 1;
                i += 2;
                while (i < sql.Length && depth > 0)
                {
                    if (sql[i] == '/' && Peek(sql, i + 1) == '*') { depth++; i += 2; }
                    else if (sql[i] == '*' && Peek(sql, i + 1) == '/') { depth--; i += 2; }
                    else i++;
                }
                tokens.Add(new Token(TokenKind.Comment, start, i - start, depth > 0));
            }
            else if (c == '\'')
            {
                bool closed = SkipQuoted(sql, ref i, '\'', backslashEscapes: false);
                tokens.Add(new Token(TokenKind.String, start, i - start, !closed));
            }
            else if ((c is 'e' or 'E') && Peek(sql, i + 1) == '\'' && !PrecededByIdentChar(sql, i))
            {
                i++;
                bool closed = SkipQuoted(sql, ref i, '\'', backslashEscapes: true);
                tokens.Add(new Token(TokenKind.String, start, i - start, !closed));
            }
            else if ((c is 'x' or 'X' or 'b' or 'B' or 'n' or 'N') && Peek(sql, i + 1) == '\'' && !PrecededByIdentChar(sql, i))
            {
                i++;
                bool closed = SkipQuoted(sql, ref i, '\'', backslashEscapes: false);
                tokens.Add(new Token(TokenKind.String, start, i - start, !closed));
            }
            else if (c is '"' or '`')
            {
                bool closed = SkipQuoted(sql, ref i, c, backslashEscapes: false);
                tokens.Add(new Token(TokenKind.QuotedIdent, start, i - start, !closed));
            }
            else if (c == '$' && char.IsAsciiDigit(Peek(sql, i + 1)))
            {
                i++;
                while (i < sql.Length && char.IsAsciiDigit(sql[i])) i++;
                tokens.Add(new Token(TokenKind.Param, start, i - start));
            }
            else if (c == '$' && DollarTagLength(sql, i) is > 0 and var tagLength && !PrecededByIdentChar(sql, i))
            {
                string tag = sql.Substring(i, tagLength);
                int close = sql.IndexOf(tag, i + tagLength, StringComparison.Ordinal);
                i = close < 0 ? sql.Length : close + tagLength;
                tokens.Add(new Token(TokenKind.DollarString, start, i - start, close < 0));
            }
            else if (IsIdentStart(c))
            {
                while (i < sql.Length && IsIdentPart(sql[i])) i++;
                tokens.Add(new Token(TokenKind.Word, start, i - start));
            }
            else if (char.IsAsciiDigit(c) || (c == '.' && char.IsAsciiDigit(Peek(sql, i + 1))))
            {
                while (i < sql.Length && (char.IsAsciiDigit(sql[i]) || sql[i] == '_')) i++;
                if (i < sql.Length && sql[i] == '.' && Peek(sql, i + 1) != '.')
                {
                    i++;
                    while (i < sql.Length && char.IsAsciiDigit(sql[i])) i++;
                }
                if (i < sql.Length && (sql[i] is 'e' or 'E') && (char.IsAsciiDigit(Peek(sql, i + 1)) || (Peek(sql, i + 1) is '+' or '-' && char.IsAsciiDigit(Peek(sql, i + 2)))))
                {
                    i += 2;
                    while (i < sql.Length && char.IsAsciiDigit(sql[i])) i++;
                }
                else if (start + 1 < sql.Length && sql[start] == '0' && (sql[start + 1] is 'x' or 'X') && i == start + 1)
                {
                    i = start + 2;
                    while (i < sql.Length && char.IsAsciiHexDigit(sql[i])) i++;
                }
                tokens.Add(new Token(TokenKind.Number, start, i - start));
            }
            else if (c == ':' && Peek(sql, i + 1) == ':')
            {
                i += 2;
                tokens.Add(new Token(TokenKind.DoubleColon, start, 2));
            }
            else if (c == '(') { i++; tokens.Add(new Token(TokenKind.OpenParen, start, 1)); }
            else if (c == ')') { i++; tokens.Add(new Token(TokenKind.CloseParen, start, 1)); }
            else if (c == ',') { i++; tokens.Add(new Token(TokenKind.Comma, start, 1)); }
            else if (c == ';') { i++; tokens.Add(new Token(TokenKind.Semicolon, start, 1)); }
            else if (c == '.') { i++; tokens.Add(new Token(TokenKind.Dot, start, 1)); }
            else if (IsOperatorChar(c))
            {
                while (i < sql.Length && IsOperatorChar(sql[i])
                       && !(sql[i] == '-' && Peek(sql, i + 1) == '-' && i > start)
                       && !(sql[i] == '/' && Peek(sql, i + 1) == '*' && i > start))
                    i++;
                tokens.Add(new Token(TokenKind.Operator, start, i - start));
            }
            else
            {
                i++;
                tokens.Add(new Token(TokenKind.Other, start, 1));
            }
        }
        return tokens;
    }

    private static char Peek(string s, int i) => i < s.Length ? s[i] : '\0';

    private static bool PrecededByIdentChar(string s, int i) => i > 0 && IsIdentPart(s[i - 1]);

    public static bool IsIdentStart(char c) => char.IsLetter(c) || c == '_' || c > 127 && !char.IsWhiteSpace(c);

    public static bool IsIdentPart(char c) => IsIdentStart(c) || char.IsAsciiDigit(c) || c == '$';

    private static bool IsOperatorChar(char c) => c is '+' or '-' or '*' or '/' or '<' or '>' or '=' or '~' or '!' or '@' or '#' or '%' or '^' or '&' or '|' or '?' or ':' or '[' or ']';

    /// <summary>The length of a $tag$ opener at <paramref name="i"/>, or 0.</summary>
    private static int DollarTagLength(string s, int i)
    {
        int j = i + 1;
        if (j < s.Length && s[j] == '$') return 2;
        if (j >= s.Length || !(char.IsLetter(s[j]) || s[j] == '_')) return 0;
        while (j < s.Length && (char.IsLetterOrDigit(s[j]) || s[j] == '_')) j++;
        return j < s.Length && s[j] == '$' ? j - i + 1 : 0;
    }

    /// <summary>Skips a quoted token from its opening quote at <paramref name="i"/>; false when it does not close.</summary>
    private static bool SkipQuoted(string s, ref int i, char quote, bool backslashEscapes)
    {
        i++;
        while (i < s.Length)
        {
            char c = s[i];
            if (backslashEscapes && c == '\\') { i += 2; continue; }
            if (c == quote)
            {
                if (i + 1 < s.Length && s[i + 1] == quote) { i += 2; continue; }
                i++;
                return true;
            }
            i++;
        }
        i = s.Length;
        return false;
    }

    /// <summary>
    /// Splits the text of one Query message into its statements (each without its semicolon, trimmed);
    /// text of only whitespace, comments and semicolons gives none. A CREATE TRIGGER's BEGIN ... END
    /// body stays whole.
    /// </summary>
    public static List<string> Split(string sql)
    {
        var result = new List<string>();
        var tokens = Tokenize(sql);
        int first = -1, last = -1;
        int depth = 0;
        bool trigger = false;
        int wordsSeen = 0;
        var leading = new List<string>(3);
        foreach (var t in tokens)
        {
            if (t.Kind == TokenKind.Semicolon && depth <= 0)
            {
                if (first >= 0) result.Add(sql[first..last]);
                first = last = -1;
                depth = 0;
                trigger = false;
                wordsSeen = 0;
                leading.Clear();
                continue;
            }
            if (t.IsTrivia) continue;
            if (first < 0) first = t.Start;
            last = t.End;
            if (t.Kind == TokenKind.Word)
            {
                string w = t.Text(sql).ToLowerInvariant();
                if (wordsSeen < 4)
                {
                    leading.Add(w);
                    wordsSeen++;
                    if (leading.Count >= 2 && leading[0] == "create" && w == "trigger") trigger = true;
                }
                if (trigger)
                {
                    if (w is "begin" or "case") depth++;
                    else if (w == "end") depth--;
                }
            }
            else
            {
                wordsSeen = 4;
            }
        }
        if (first >= 0) result.Add(sql[first..last]);
        return result;
    }

    /// <summary>The value of a string token: '...' with '' doubled, E'...' with backslash escapes.</summary>
    public static string StringValue(string text)
    {
        char p = text[0];
        if (p is 'e' or 'E') return DecodeEscapeString(text[2..^1]);
        string body = p == '\'' ? text[1..^1] : text[2..^1];
        return body.Replace("''", "'", StringComparison.Ordinal);
    }

    private static string DecodeEscapeString(string body)
    {
        var bytes = new List<byte>(body.Length);
        Span<byte> utf8 = stackalloc byte[4];
        for (int i = 0; i < body.Length; i++)
        {
            char c = body[i];
            if (c == '\'' && i + 1 < body.Length && body[i + 1] == '\'') { bytes.Add((byte)'\''); i++; continue; }
            if (c != '\\' || i + 1 >= body.Length)
            {
                if (char.IsHighSurrogate(c) && i + 1 < body.Length)
                {
                    int n2 = Encoding.UTF8.GetBytes(body.AsSpan(i, 2), utf8);
                    for (int k = 0; k < n2; k++) bytes.Add(utf8[k]);
                    i++;
                    continue;
                }
                int n = Encoding.UTF8.GetBytes(body.AsSpan(i, 1), utf8);
                for (int k = 0; k < n; k++) bytes.Add(utf8[k]);
                continue;
            }
            char e = body[++i];
            switch (e)
            {
                case 'b': bytes.Add(8); break;
                case 'f': bytes.Add(12); break;
                case 'n': bytes.Add(10); break;
                case 'r': bytes.Add(13); break;
                case 't': bytes.Add(9); break;
                case >= '0' and <= '7':
                {
                    int v = 0, k = 0;
                    while (k < 3 && i < body.Length && body[i] is >= '0' and <= '7') { v = v * 8 + (body[i] - '0'); i++; k++; }
                    i--;
                    bytes.Add((byte)v);
                    break;
                }
                case 'x' when i + 1 < body.Length && PgValues.HexValue(body[i + 1]) >= 0:
                {
                    int v = 0, k = 0;
                    i++;
                    while (k < 2 && i < body.Length && PgValues.HexValue(body[i]) >= 0) { v = v * 16 + PgValues.HexValue(body[i]); i++; k++; }
                    i--;
                    bytes.Add((byte)v);
                    break;
                }
                case 'u' or 'U':
                {
                    int len = e == 'u' ? 4 : 8;
                    if (i + len < body.Length + 0 && int.TryParse(body.AsSpan(i + 1, Math.Min(len, body.Length - i - 1)), System.Globalization.NumberStyles.HexNumber, null, out int cp) && i + len < body.Length + 1)
                    {
                        string s = char.ConvertFromUtf32(cp);
                        bytes.AddRange(Encoding.UTF8.GetBytes(s));
                        i += len;
                    }
                    else
                    {
                        throw SqlError.Error(SqlStates.SyntaxError, "invalid Unicode escape");
                    }
                    break;
                }
                default:
                {
                    int n = Encoding.UTF8.GetBytes(body.AsSpan(i, 1), utf8);
                    for (int k = 0; k < n; k++) bytes.Add(utf8[k]);
                    break;
                }
            }
        }
        return PgValues.DecodeUtf8(bytes.ToArray());
    }

    /// <summary>The name of a quoted identifier token's text ("a""b" → a"b).</summary>
    public static string QuotedIdentValue(string text)
    {
        char q = text[0];
        string body = text.Length >= 2 && text[^1] == q ? text[1..^1] : text[1..];
        return body.Replace(new string(q, 2), q.ToString(), StringComparison.Ordinal);
    }

    /// <summary>A SQLite string literal of <paramref name="value"/>.</summary>
    public static string QuoteLiteral(string value) => "'" + value.Replace("'", "''", StringComparison.Ordinal) + "'";

    /// <summary>A SQLite quoted identifier.</summary>
    public static string QuoteIdent(string name) => "\"" + name.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
}
