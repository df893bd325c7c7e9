using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace PgSpec.Cli.Capture;

/// <summary>
/// Normalizes SQL text as pg_stat_statements shows it: constants become parameters numbered
/// after the highest <c>$n</c> the text already has ($1, $2, ... when it has none), so that
/// queries that differ only in their constants are one.
/// </summary>
/// <remarks>
/// <para>
/// Constants: numbers (integers, decimals, exponents, 0x/0o/0b integers, with '_' separators),
/// with their minus sign when it is a sign and not a subtraction (after an operator, a comma, an
/// opening parenthesis, a keyword such as SELECT or WHERE, or at the start); strings
/// ('...' with '' inside, E'...' with backslash escapes, N'...', U&amp;'...'), bit strings
/// (B'...', X'...') and dollar-quoted strings ($$...$$, $tag$...$tag$).
/// </para>
/// <para>
/// Kept as written: identifiers and keywords (their case too), quoted identifiers, operators,
/// parameters already there, TRUE, FALSE and NULL. An IN list keeps its length: IN (1, 2) is
/// IN ($1, $2). Comments (-- to the end of the line, /* */ nested) are removed, so that queries
/// that differ only in comments (tags added by an application, say) are one. Whitespace is
/// collapsed to one space (none at the ends). Text that is not SQL (an unterminated string, say)
/// is normalized as far as it goes and never fails.
/// </para>
/// </remarks>
internal static class QueryNormalizer
{
    /// <summary>Normalized texts longer than this are cut, and made distinct by a hash of the whole.</summary>
    public const int MaxLength = 4096;

    // Keywords after which a '-' is a sign, not a subtraction.
    private static readonly HashSet<string> s_signKeywords = new(StringComparer.OrdinalIgnoreCase)
    {
        "SELECT", "WHERE", "AND", "OR", "NOT", "WHEN", "THEN", "ELSE", "VALUES", "LIMIT", "OFFSET", "BY", "SET",
        "ON", "IS", "BETWEEN", "IN", "LIKE", "ILIKE", "RETURN", "RETURNING", "HAVING", "AS", "CASE", "DEFAULT",
        "ANY", "ALL", "SOME", "ARRAY", "FROM", "TO", "FETCH", "MOVE", "FORWARD", "BACKWARD", "ABSOLUTE", "RELATIVE",
        "DISTINCT", "INTERVAL", "USING", "WITH", "OVER", "ROWS", "RANGE", "PRECEDING", "FOLLOWING", "EXECUTE",
        "CALL", "DO", "UNION", "INTERSECT", "EXCEPT",
    };

    /// <summary>The normalized form of <paramref name="sql"/>, at most about <see cref="MaxLength"/> characters.</summary>
    public static string Normalize(string sql)
    {
        ArgumentNullException.ThrowIfNull(sql);
        int next = HighestParameter(sql) + 1;
        var output = new StringBuilder(Math.Min(sql.Length, MaxLength + 64));
        var scanner = new Scanner(sql);
        bool space = false;
        bool signAllowed = true;
        while (scanner.Next(out Token token))
        {
            if (token.Kind == TokenKind.Space)
            {
                space = true;
                continue;
            }

            if (token.Kind == TokenKind.Operator && sql[token.Start] == '-' && signAllowed && scanner.NumberFollows())
            {
                // A sign: the number after it (spaces allowed, as the server allows) is one constant with it.
                scanner.Next(out Token number);
                while (number.Kind == TokenKind.Space)
                {
                    scanner.Next(out number);
                }

                token = new Token(TokenKind.Constant, token.Start, number.End);
            }

            if (space && output.Length > 0)
            {
                output.Append(' ');
            }

            space = false;
            if (token.Kind == TokenKind.Constant)
            {
                output.Append('$').Append(next.ToString(CultureInfo.InvariantCulture));
                next++;
            }
            else
            {
                output.Append(sql, token.Start, token.End - token.Start);
            }

            signAllowed = token.Kind switch
            {
                TokenKind.Operator => sql[token.Start] is not ')' and not ']',
                TokenKind.Word => s_signKeywords.Contains(sql[token.Start..token.End]),
                _ => false,
            };

            if (output.Length > 4 * MaxLength)
            {
                break;
            }
        }

        if (output.Length <= MaxLength)
        {
            return output.ToString();
        }

        // The whole text of a long query keeps it apart from others with the same beginning.
        string whole = output.ToString();
        string hash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(sql)), 0, 8).ToLowerInvariant();
        return string.Create(CultureInfo.InvariantCulture, $"{whole.AsSpan(0, MaxLength)}... ({sql.Length} characters, {hash})");
    }

    /// <summary>The highest $n parameter outside strings, comments and quoted identifiers (0 when none).</summary>
    private static int HighestParameter(string sql)
    {
        int highest = 0;
        var scanner = new Scanner(sql);
        while (scanner.Next(out Token token))
        {
            if (token.Kind == TokenKind.Parameter
                && int.TryParse(sql.AsSpan(token.Start + 1, token.End - token.Start - 1), NumberStyles.None, CultureInfo.InvariantCulture, out int n))
            {
                highest = Math.Max(highest, n);
            }
        }

        return Math.Min(highest, int.MaxValue - 1_000_000);
    }

    private enum TokenKind
    {
        Space,
        Word,
        QuotedIdentifier,
        Parameter,
        Constant,
        Operator,
    }

    private readonly record struct Token(TokenKind Kind, int Start, int End);

    /// <summary>Splits SQL into tokens as the server's lexer does, as far as normalizing needs.</summary>
    private ref struct Scanner(string sql)
    {
        private readonly string _sql = sql;
        private int _position;

        /// <summary>Whether a number starts at the next non-space, non-comment character.</summary>
        public readonly bool NumberFollows()
        {
            Scanner look = this;
            while (look.Next(out Token token))
            {
                if (token.Kind != TokenKind.Space)
                {
                    return token.Kind == TokenKind.Constant && IsNumberStart(_sql, token.Start);
                }
            }

            return false;
        }

        public bool Next(out Token token)
        {
            string s = _sql;
            int start = _position;
            if (start >= s.Length)
            {
                token = default;
                return false;
            }

            char c = s[start];
            int end;
            TokenKind kind;
            if (char.IsWhiteSpace(c) || (c == '-' && At(start + 1, '-')) || (c == '/' && At(start + 1, '*')))
            {
                // Whitespace and comments, as many as follow each other, are one space.
                end = start;
                while (end < s.Length)
                {
                    if (char.IsWhiteSpace(s[end]))
                    {
                        end++;
                    }
                    else if (s[end] == '-' && At(end + 1, '-'))
                    {
                        end = s.IndexOf('\n', end);
                        end = end < 0 ? s.Length : end + 1;
                    }
                    else if (s[end] == '/' && At(end + 1, '*'))
                    {
                        end = BlockCommentEnd(end);
                    }
                    else
                    {
                        break;
                    }
                }

                kind = TokenKind.Space;
            }
            else if (c == '\'')
            {
                end = QuotedEnd(start, backslashes: false);
                kind = TokenKind.Constant;
            }
            else if (c == '"')
            {
                end = QuotedEnd(start, backslashes: false, quote: '"');
                kind = TokenKind.QuotedIdentifier;
            }
            else if (c == '$' && At(start + 1, char.IsAsciiDigit))
            {
                end = start + 1;
                while (end < s.Length && char.IsAsciiDigit(s[end]))
                {
                    end++;
                }

                kind = TokenKind.Parameter;
            }
            else if (c == '$' && DollarTag(start) is int tagLength)
            {
                int close = s.IndexOf(s.Substring(start, tagLength), start + tagLength, StringComparison.Ordinal);
                end = close < 0 ? s.Length : close + tagLength;
                kind = TokenKind.Constant;
            }
            else if (IsNumberStart(s, start))
            {
                end = NumberEnd(start);
                kind = TokenKind.Constant;
            }
            else if (IsIdentifierStart(c))
            {
                end = start + 1;
                while (end < s.Length && IsIdentifierPart(s[end]))
                {
                    end++;
                }

                // A string with a prefix: E'...', B'...', X'...', N'...', U&'...'.
                int length = end - start;
                if (At(end, '\'') && length == 1 && c is 'E' or 'e' or 'B' or 'b' or 'X' or 'x' or 'N' or 'n')
                {
                    end = QuotedEnd(end, backslashes: c is 'E' or 'e');
                    kind = TokenKind.Constant;
                }
                else if (length == 1 && c is 'U' or 'u' && At(end, '&') && At(end + 1, '\''))
                {
                    end = QuotedEnd(end + 1, backslashes: false);
                    kind = TokenKind.Constant;
                }
                else
                {
                    kind = TokenKind.Word;
                }
            }
            else
            {
                end = start + 1;
                kind = TokenKind.Operator;
            }

            _position = end;
            token = new Token(kind, start, end);
            return true;
        }

        private readonly bool At(int index, char c) => index < _sql.Length && _sql[index] == c;

        private readonly bool At(int index, Func<char, bool> test) => index < _sql.Length && test(_sql[index]);

        private readonly int BlockCommentEnd(int start)
        {
            int depth = 0;
            int i = start;
            while (i < _sql.Length)
            {
                if (_sql[i] == '/' && At(i + 1, '*'))
                {
                    depth++;
                    i += 2;
                }
                else if (_sql[i] == '*' && At(i + 1, '/'))
                {
                    i += 2;
                    if (--depth == 0)
                    {
                        return i;
                    }
                }
                else
                {
                    i++;
                }
            }

            return i;
        }

        /// <summary>The end of a quoted string or identifier starting at <paramref name="open"/>: doubled quotes and, in E strings, backslash escapes inside.</summary>
        private readonly int QuotedEnd(int open, bool backslashes, char quote = '\'')
        {
            int i = open + 1;
            while (i < _sql.Length)
            {
                char c = _sql[i];
                if (backslashes && c == '\\')
                {
                    i += 2;
                }
                else if (c == quote)
                {
                    if (At(i + 1, quote))
                    {
                        i += 2;
                    }
                    else
                    {
                        return i + 1;
                    }
                }
                else
                {
                    i++;
                }
            }

            return _sql.Length;
        }

        /// <summary>The length of a dollar-quote tag ($$ or $tag$) at <paramref name="start"/>, or null.</summary>
        private readonly int? DollarTag(int start)
        {
            int i = start + 1;
            if (i < _sql.Length && _sql[i] != '$')
            {
                if (!IsIdentifierStart(_sql[i]))
                {
                    return null;
                }

                while (i < _sql.Length && IsIdentifierPart(_sql[i]) && _sql[i] != '$')
                {
                    i++;
                }
            }

            return At(i, '$') ? i - start + 1 : null;
        }

        private readonly int NumberEnd(int start)
        {
            string s = _sql;
            int i = start;
            if (s[i] == '0' && i + 1 < s.Length && s[i + 1] is 'x' or 'X' or 'o' or 'O' or 'b' or 'B'
                && i + 2 < s.Length && (char.IsAsciiHexDigit(s[i + 2]) || s[i + 2] == '_'))
            {
                i += 2;
                while (i < s.Length && (char.IsAsciiHexDigit(s[i]) || s[i] == '_'))
                {
                    i++;
                }

                return i;
            }

            while (i < s.Length && (char.IsAsciiDigit(s[i]) || s[i] == '_'))
            {
                i++;
            }

            // A decimal point, unless it starts the '..' of a range.
            if (i < s.Length && s[i] == '.' && !At(i + 1, '.'))
            {
                i++;
                while (i < s.Length && (char.IsAsciiDigit(s[i]) || s[i] == '_'))
                {
                    i++;
                }
            }

            if (i < s.Length && s[i] is 'e' or 'E')
            {
                int exponent = i + 1;
                if (exponent < s.Length && s[exponent] is '+' or '-')
                {
                    exponent++;
                }

                if (exponent < s.Length && char.IsAsciiDigit(s[exponent]))
                {
                    i = exponent;
                    while (i < s.Length && char.IsAsciiDigit(s[i]))
                    {
                        i++;
                    }
                }
            }

            return i;
        }
    }

    private static bool IsNumberStart(string s, int i)
        => char.IsAsciiDigit(s[i]) || (s[i] == '.' && i + 1 < s.Length && char.IsAsciiDigit(s[i + 1]) && (i == 0 || !IsIdentifierPart(s[i - 1])));

    private static bool IsIdentifierStart(char c) => char.IsAsciiLetter(c) || c == '_' || c > 0x7F;

    private static bool IsIdentifierPart(char c) => IsIdentifierStart(c) || char.IsAsciiDigit(c) || c == '$';
}
