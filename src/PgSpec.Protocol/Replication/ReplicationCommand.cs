using System.Globalization;
using System.Text;

namespace PgSpec.Protocol;

/// <summary>The replication commands that decide how a replication stream's CopyData read.</summary>
internal enum ReplicationCommandKind
{
    /// <summary><c>START_REPLICATION [SLOT name] [PHYSICAL] X/X [TIMELINE n]</c>.</summary>
    StartPhysical,

    /// <summary><c>START_REPLICATION SLOT name LOGICAL X/X [(option [value], ...)]</c>.</summary>
    StartLogical,

    /// <summary><c>CREATE_REPLICATION_SLOT name [TEMPORARY] {PHYSICAL | LOGICAL plugin} ...</c>.</summary>
    CreateSlot,

    /// <summary><c>DROP_REPLICATION_SLOT name [WAIT]</c>.</summary>
    DropSlot,
}

/// <summary>
/// A replication command read from a Query's text, as PostgreSQL's replication grammar
/// (<c>repl_gram.y</c>, <c>repl_scanner.l</c>) reads it, and more liberally: keywords in any case,
/// names bare (folded to lower case) or double-quoted, option names bare or double-quoted, option
/// values as 'strings', numbers, bare words or double-quoted, options in any order, SQL comments and
/// a trailing semicolon. Only what decoding the stream needs is kept.
/// </summary>
internal sealed class ReplicationCommand
{
    /// <summary>A Query longer than this (in bytes) is not read as a replication command.</summary>
    public const int MaxLength = 64 * 1024;

    private ReplicationCommand(ReplicationCommandKind kind, string? slot)
    {
        Kind = kind;
        Slot = slot;
    }

    /// <summary>The command.</summary>
    public ReplicationCommandKind Kind { get; }

    /// <summary>The slot it names, if any.</summary>
    public string? Slot { get; }

    /// <summary>CREATE_REPLICATION_SLOT: the output plugin of a logical slot (null for a physical one).</summary>
    public string? Plugin { get; private init; }

    /// <summary>START_REPLICATION: the position to start from.</summary>
    public ulong StartLsn { get; private init; }

    /// <summary>START_REPLICATION (physical): the timeline asked for, if any.</summary>
    public uint? Timeline { get; private init; }

    /// <summary>START_REPLICATION (logical): the plugin's options, names folded to lower case, in order; a value is null when the option has none.</summary>
    public IReadOnlyList<KeyValuePair<string, string?>> Options { get; private init; } = [];

    /// <summary>The value of an option (the last one given), and whether it was given.</summary>
    public bool TryGetOption(string name, out string? value)
    {
        for (int i = Options.Count - 1; i >= 0; i--)
        {
            if (Options[i].Key == name)
            {
                value = Options[i].Value;
                return true;
            }
        }

        value = null;
        return false;
    }

    /// <summary>An LSN as PostgreSQL prints it (<c>16/B374D848</c>).</summary>
    public static string FormatLsn(ulong lsn)
        => (lsn >> 32).ToString("X", CultureInfo.InvariantCulture) + "/" + (lsn & 0xFFFFFFFF).ToString("X", CultureInfo.InvariantCulture);

    /// <summary>
    /// Reads a Query's text (its bytes, without the terminating zero; bytes that are not UTF-8 read as
    /// U+FFFD) as one of the commands, or returns null: another command, SQL, a text longer than
    /// <see cref="MaxLength"/>, or a command that does not parse (which the server refuses).
    /// </summary>
    public static ReplicationCommand? TryParse(ReadOnlySpan<byte> text)
    {
        if (text.Length > MaxLength || !StartsWithCommand(text))
        {
            return null;
        }

        var lexer = new Lexer(text);
        if (!lexer.Next(out Token first) || first.Kind != TokenKind.Word)
        {
            return null;
        }

        try
        {
            return first.Text switch
            {
                "start_replication" => ParseStart(ref lexer),
                "create_replication_slot" => ParseCreate(ref lexer),
                "drop_replication_slot" => ParseDrop(ref lexer),
                _ => null,
            };
        }
        catch (Exception e) when (e is FormatException or OverflowException)
        {
            return null;
        }
    }

    /// <summary>Whether the first word (after blanks and comments) is one of the commands: SQL is passed over without being decoded.</summary>
    private static bool StartsWithCommand(ReadOnlySpan<byte> text)
    {
        while (!text.IsEmpty)
        {
            if (text[0] is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r' or (byte)'\f' or (byte)'\v')
            {
                text = text[1..];
            }
            else if (text.StartsWith("--"u8))
            {
                int end = text.IndexOf((byte)'\n');
                text = end < 0 ? default : text[(end + 1)..];
            }
            else if (text.StartsWith("/*"u8))
            {
                int end = text[2..].IndexOf("*/"u8);
                text = end < 0 ? default : text[(end + 4)..];
            }
            else
            {
                break;
            }
        }

        return IsWord(text, "start_replication"u8) || IsWord(text, "create_replication_slot"u8) || IsWord(text, "drop_replication_slot"u8);
    }

    private static bool IsWord(ReadOnlySpan<byte> text, ReadOnlySpan<byte> word)
    {
        if (text.Length < word.Length || !System.Text.Ascii.EqualsIgnoreCase(text[..word.Length], word))
        {
            return false;
        }

        return text.Length == word.Length || !(char.IsAsciiLetterOrDigit((char)text[word.Length]) || text[word.Length] is (byte)'_' or (byte)'$' or >= 0x80);
    }

    private static ReplicationCommand? ParseStart(ref Lexer lexer)
    {
        string? slot = null;
        Token token = lexer.Expect();
        if (token.IsKeyword("slot"))
        {
            slot = lexer.Expect().Name();
            token = lexer.Expect();
        }

        if (token.IsKeyword("logical"))
        {
            if (slot is null)
            {
                return null;
            }

            ulong start = lexer.Expect().Lsn();
            var options = new List<KeyValuePair<string, string?>>();
            if (lexer.Next(out token) && token.Kind == TokenKind.Open)
            {
                while (true)
                {
                    string name = lexer.Expect().Name();
                    token = lexer.Expect();
                    string? value = null;
                    if (token.Kind is TokenKind.String or TokenKind.Word or TokenKind.Quoted or TokenKind.Number)
                    {
                        value = token.Text;
                        token = lexer.Expect();
                    }

                    options.Add(new(name, value));
                    if (token.Kind == TokenKind.Close)
                    {
                        break;
                    }

                    if (token.Kind != TokenKind.Comma)
                    {
                        return null;
                    }
                }

                if (!lexer.AtEnd())
                {
                    return null;
                }
            }
            else if (lexer.HasToken && !lexer.IsEndToken(token))
            {
                return null;
            }

            return new ReplicationCommand(ReplicationCommandKind.StartLogical, slot) { StartLsn = start, Options = options };
        }

        if (token.IsKeyword("physical"))
        {
            token = lexer.Expect();
        }

        ulong lsn = token.Lsn();
        uint? timeline = null;
        if (lexer.Next(out token) && token.IsKeyword("timeline"))
        {
            timeline = lexer.Expect().Unsigned();
            lexer.Next(out token);
        }

        if (lexer.HasToken && !lexer.IsEndToken(token))
        {
            return null;
        }

        return new ReplicationCommand(ReplicationCommandKind.StartPhysical, slot) { StartLsn = lsn, Timeline = timeline };
    }

    private static ReplicationCommand? ParseCreate(ref Lexer lexer)
    {
        string slot = lexer.Expect().Name();
        Token token = lexer.Expect();
        if (token.IsKeyword("temporary"))
        {
            token = lexer.Expect();
        }

        if (token.IsKeyword("physical"))
        {
            return new ReplicationCommand(ReplicationCommandKind.CreateSlot, slot);
        }

        if (token.IsKeyword("logical"))
        {
            // What follows the plugin (snapshot and two-phase options) changes nothing here.
            return new ReplicationCommand(ReplicationCommandKind.CreateSlot, slot) { Plugin = lexer.Expect().Name() };
        }

        return null;
    }

    private static ReplicationCommand? ParseDrop(ref Lexer lexer)
        => new(ReplicationCommandKind.DropSlot, lexer.Expect().Name());

    private enum TokenKind
    {
        Word,
        Quoted,
        String,
        Number,
        Lsn,
        Open,
        Close,
        Comma,
        Semicolon,
    }

    private readonly record struct Token(TokenKind Kind, string Text)
    {
        public bool IsKeyword(string keyword) => Kind == TokenKind.Word && Text == keyword;

        /// <summary>A name: a bare word (folded) or a double-quoted identifier.</summary>
        public string Name() => Kind is TokenKind.Word or TokenKind.Quoted && Text.Length > 0 ? Text : throw new FormatException();

        public ulong Lsn()
        {
            if (Kind != TokenKind.Lsn)
            {
                throw new FormatException();
            }

            int slash = Text.IndexOf('/', StringComparison.Ordinal);
            return (ulong.Parse(Text.AsSpan(0, slash), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture) << 32)
                | ulong.Parse(Text.AsSpan(slash + 1), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);
        }

        public uint Unsigned() => Kind == TokenKind.Number ? uint.Parse(Text, NumberStyles.None, CultureInfo.InvariantCulture) : throw new FormatException();
    }

    /// <summary>The tokens of a command; malformed text throws <see cref="FormatException"/>.</summary>
    private ref struct Lexer
    {
        private readonly string _text;
        private int _position;

        public Lexer(ReadOnlySpan<byte> bytes)
        {
            _text = Encoding.UTF8.GetString(bytes);
            _position = 0;
            HasToken = false;
        }

        /// <summary>Whether the last <see cref="Next"/> found a token.</summary>
        public bool HasToken { get; private set; }

        public bool Next(out Token token)
        {
            SkipBlanks();
            HasToken = _position < _text.Length;
            token = HasToken ? Read() : default;
            return HasToken;
        }

        public Token Expect() => Next(out Token token) ? token : throw new FormatException();

        /// <summary>Whether a token read is the end: a semicolon with nothing after it.</summary>
        public bool IsEndToken(Token token) => token.Kind == TokenKind.Semicolon && AtEnd();

        /// <summary>Whether nothing but blanks and a semicolon is left.</summary>
        public bool AtEnd()
        {
            SkipBlanks();
            if (_position < _text.Length && _text[_position] == ';')
            {
                _position++;
                SkipBlanks();
            }

            return _position >= _text.Length;
        }

        private void SkipBlanks()
        {
            while (_position < _text.Length)
            {
                char c = _text[_position];
                if (char.IsWhiteSpace(c))
                {
                    _position++;
                }
                else if (c == '-' && At(1) == '-')
                {
                    int end = _text.IndexOf('\n', _position);
                    _position = end < 0 ? _text.Length : end + 1;
                }
                else if (c == '/' && At(1) == '*')
                {
                    int end = _text.IndexOf("*/", _position + 2, StringComparison.Ordinal);
                    _position = end < 0 ? throw new FormatException() : end + 2;
                }
                else
                {
                    return;
                }
            }
        }

        private readonly char At(int ahead) => _position + ahead < _text.Length ? _text[_position + ahead] : '\0';

        private Token Read()
        {
            char c = _text[_position];
            switch (c)
            {
                case '(':
                    _position++;
                    return new Token(TokenKind.Open, "(");
                case ')':
                    _position++;
                    return new Token(TokenKind.Close, ")");
                case ',':
                    _position++;
                    return new Token(TokenKind.Comma, ",");
                case ';':
                    _position++;
                    return new Token(TokenKind.Semicolon, ";");
                case '\'':
                    return new Token(TokenKind.String, Quoted('\''));
                case '"':
                    return new Token(TokenKind.Quoted, Quoted('"'));
            }

            // An LSN (hex digits, '/', hex digits) wins over a word or number it starts like, as the
            // longest match does in PostgreSQL's scanner.
            int hex = HexRun(_position);
            if (hex > 0 && At(hex) == '/' && HexRun(_position + hex + 1) is > 0 and int low)
            {
                if (hex > 8 || low > 8)
                {
                    throw new FormatException();
                }

                string lsn = _text.Substring(_position, hex + 1 + low);
                _position += hex + 1 + low;
                return new Token(TokenKind.Lsn, lsn);
            }

            if (char.IsAsciiDigit(c))
            {
                int start = _position;
                while (_position < _text.Length && char.IsAsciiDigit(_text[_position]))
                {
                    _position++;
                }

                return new Token(TokenKind.Number, _text[start.._position]);
            }

            if (char.IsAsciiLetter(c) || c == '_' || c >= 0x80)
            {
                int start = _position;
                while (_position < _text.Length && (char.IsAsciiLetterOrDigit(_text[_position]) || _text[_position] is '_' or '$' || _text[_position] >= 0x80))
                {
                    _position++;
                }

                // Bare identifiers fold to lower case (ASCII letters only, as PostgreSQL folds them).
                return new Token(TokenKind.Word, string.Create(_position - start, (_text, start), static (span, word) =>
                {
                    for (int i = 0; i < span.Length; i++)
                    {
                        char c = word._text[word.start + i];
                        span[i] = char.IsAsciiLetterUpper(c) ? (char)(c | 0x20) : c;
                    }
                }));
            }

            throw new FormatException();
        }

        private readonly int HexRun(int from)
        {
            int end = from;
            while (end < _text.Length && char.IsAsciiHexDigit(_text[end]))
            {
                end++;
            }

            return end - from;
        }

        /// <summary>A quoted string or identifier; a doubled quote stands for one.</summary>
        private string Quoted(char quote)
        {
            var value = new StringBuilder();
            _position++;
            while (true)
            {
                int end = _text.IndexOf(quote, _position);
                if (end < 0)
                {
                    throw new FormatException();
                }

                value.Append(_text, _position, end - _position);
                _position = end + 1;
                if (At(0) != quote)
                {
                    return value.ToString();
                }

                value.Append(quote);
                _position++;
            }
        }
    }
}
