using System.Text.RegularExpressions;
using SQLitePCL;

namespace PgSpec.Cli.Serve;

/// <summary>Maps SQLite's result codes and messages to PostgreSQL's SQLSTATEs and wording.</summary>
internal static partial class SqliteErrors
{
    [GeneratedRegex("^near \"(?<tok>.*)\": syntax error$", RegexOptions.Singleline)]
    private static partial Regex NearSyntax();

    [GeneratedRegex("^no such table: (?<name>.+)$")]
    private static partial Regex NoSuchTable();

    [GeneratedRegex("^no such column: (?<name>.+)$")]
    private static partial Regex NoSuchColumn();

    [GeneratedRegex("^(?:table|index|view|trigger) (?<name>.+) already exists$")]
    private static partial Regex AlreadyExists();

    [GeneratedRegex("^no such function: (?<name>.+)$")]
    private static partial Regex NoSuchFunction();

    [GeneratedRegex("^wrong number of arguments to function (?<name>[^(]+)\\(\\)$")]
    private static partial Regex WrongArgs();

    [GeneratedRegex("^UNIQUE constraint failed: (?<cols>.+)$")]
    private static partial Regex Unique();

    [GeneratedRegex("^NOT NULL constraint failed: (?<table>[^.]+)\\.(?<col>.+)$")]
    private static partial Regex NotNull();

    [GeneratedRegex("^CHECK constraint failed: (?<name>.+)$")]
    private static partial Regex Check();

    [GeneratedRegex("^unknown database (?<name>.+)$")]
    private static partial Regex UnknownDatabase();

    [GeneratedRegex("^no such savepoint: (?<name>.+)$")]
    private static partial Regex NoSuchSavepoint();

    [GeneratedRegex("^ambiguous column name: (?<name>.+)$")]
    private static partial Regex Ambiguous();

    [GeneratedRegex("^duplicate column name: (?<name>.+)$")]
    private static partial Regex DuplicateColumn();

    [GeneratedRegex("^no such index: (?<name>.+)$")]
    private static partial Regex NoSuchIndex();

    [GeneratedRegex("^no such (?:view|trigger): (?<name>.+)$")]
    private static partial Regex NoSuchOther();

    [GeneratedRegex("^table (?<table>\\S+) has (?<n>\\d+) columns but (?<m>\\d+) values were supplied$")]
    private static partial Regex ValueCount();

    [GeneratedRegex("(?<schema>pg_catalog|information_schema)\\s*\\.\\s*(?<name>\"[^\"]+\"|\\w+)", RegexOptions.IgnoreCase)]
    private static partial Regex CatalogRelation();

    /// <summary>The error of SQLite result code <paramref name="rc"/> with message <paramref name="message"/> for a statement whose original text is <paramref name="sql"/>.</summary>
    public static SqlError Map(int rc, int extended, string message, string? sql, bool timedOut)
    {
        int primary = rc & 0xff;
        switch (primary)
        {
            case raw.SQLITE_INTERRUPT:
                return SqlError.Error(SqlStates.QueryCanceled, "canceling statement due to user request");
            case raw.SQLITE_BUSY or raw.SQLITE_LOCKED:
                return timedOut
                    ? SqlError.Error(SqlStates.LockNotAvailable, "canceling statement due to lock timeout",
                        detail: "Another session holds a lock on the database.", hint: "Retry the transaction.")
                    : SqlError.Error(SqlStates.SerializationFailure, "could not serialize access due to concurrent update",
                        detail: "Another session holds a lock on the database.", hint: "Retry the transaction.");
            case raw.SQLITE_READONLY:
                return SqlError.Error(SqlStates.ReadOnlyTransaction, "cannot execute this statement: the database is read-only", detail: message);
            case raw.SQLITE_FULL:
                return SqlError.Error(SqlStates.DiskFull, "could not extend file: " + message);
            case raw.SQLITE_NOMEM:
                return SqlError.Error(SqlStates.OutOfMemory, "out of memory");
            case raw.SQLITE_TOOBIG:
                return SqlError.Error(SqlStates.ProgramLimitExceeded, message);
            case raw.SQLITE_CORRUPT or raw.SQLITE_NOTADB:
                return SqlError.Error(SqlStates.DataCorrupted, message);
            case raw.SQLITE_IOERR or raw.SQLITE_CANTOPEN:
                return SqlError.Error(SqlStates.IoError, message);
            case raw.SQLITE_MISMATCH:
                return SqlError.Error(SqlStates.DatatypeMismatch, message);
            case raw.SQLITE_RANGE:
                return SqlError.Error(SqlStates.UndefinedParameter, message);
            case raw.SQLITE_CONSTRAINT:
                return MapConstraint(extended, message);
        }
        Match m;
        if ((m = NearSyntax().Match(message)).Success)
        {
            string tok = m.Groups["tok"].Value;
            return SqlError.Error(SqlStates.SyntaxError, $"syntax error at or near \"{tok}\"", position: FindToken(sql, tok));
        }
        if (message == "incomplete input")
            return SqlError.Error(SqlStates.SyntaxError, "syntax error at end of input", position: sql is null ? null : sql.Length + 1);
        if ((m = NoSuchTable().Match(message)).Success)
            return SqlError.Error(SqlStates.UndefinedTable, $"relation \"{m.Groups["name"].Value}\" does not exist", position: FindToken(sql, LastPart(m.Groups["name"].Value)));
        if ((m = UnknownDatabase().Match(message)).Success)
        {
            string schema = m.Groups["name"].Value;
            if (sql is not null && CatalogRelation().Match(sql) is { Success: true } c)
                return SqlError.Error(SqlStates.UndefinedTable, $"relation \"{c.Groups["schema"].Value.ToLowerInvariant()}.{c.Groups["name"].Value.Trim('"')}\" does not exist",
                    detail: "The PostgreSQL catalogs do not exist in this SQLite database.", position: c.Index + 1);
            return SqlError.Error(SqlStates.InvalidSchemaName, $"schema \"{schema}\" does not exist", position: FindToken(sql, schema));
        }
        if ((m = NoSuchColumn().Match(message)).Success)
            return SqlError.Error(SqlStates.UndefinedColumn, $"column \"{m.Groups["name"].Value}\" does not exist", position: FindToken(sql, LastPart(m.Groups["name"].Value)));
        if ((m = AlreadyExists().Match(message)).Success)
            return SqlError.Error(SqlStates.DuplicateTable, $"relation \"{m.Groups["name"].Value}\" already exists");
        if ((m = NoSuchFunction().Match(message)).Success)
            return SqlError.Error(SqlStates.UndefinedFunction, $"function {m.Groups["name"].Value}() does not exist",
                hint: "No function matches the given name and argument types. You might need to add explicit type casts.", position: FindToken(sql, m.Groups["name"].Value));
        if ((m = WrongArgs().Match(message)).Success)
            return SqlError.Error(SqlStates.UndefinedFunction, $"function {m.Groups["name"].Value} does not exist with these arguments",
                hint: "No function matches the given name and argument types. You might need to add explicit type casts.", position: FindToken(sql, m.Groups["name"].Value));
        if ((m = NoSuchSavepoint().Match(message)).Success)
            return SqlError.Error(SqlStates.InvalidSavepoint, $"savepoint \"{m.Groups["name"].Value}\" does not exist");
        if ((m = Ambiguous().Match(message)).Success)
            return SqlError.Error(SqlStates.AmbiguousColumn, $"column reference \"{m.Groups["name"].Value}\" is ambiguous", position: FindToken(sql, LastPart(m.Groups["name"].Value)));
        if ((m = DuplicateColumn().Match(message)).Success)
            return SqlError.Error(SqlStates.DuplicateColumn, $"column \"{m.Groups["name"].Value}\" specified more than once");
        if ((m = NoSuchIndex().Match(message)).Success)
            return SqlError.Error(SqlStates.UndefinedObject, $"index \"{m.Groups["name"].Value}\" does not exist");
        if ((m = NoSuchOther().Match(message)).Success)
            return SqlError.Error(SqlStates.UndefinedObject, message);
        if ((m = ValueCount().Match(message)).Success)
            return SqlError.Error(SqlStates.SyntaxError, int.Parse(m.Groups["n"].Value, System.Globalization.CultureInfo.InvariantCulture) < int.Parse(m.Groups["m"].Value, System.Globalization.CultureInfo.InvariantCulture)
                ? "INSERT has more expressions than target columns" : "INSERT has more target columns than expressions");
        if (message.EndsWith("values for", StringComparison.Ordinal) || message.Contains(" values for ", StringComparison.Ordinal))
            return SqlError.Error(SqlStates.SyntaxError, message);
        if (message.StartsWith("misuse of aggregate", StringComparison.Ordinal))
            return SqlError.Error(SqlStates.GroupingError, message);
        if (message.StartsWith("cannot VACUUM from within a transaction", StringComparison.Ordinal))
            return SqlError.Error(SqlStates.ActiveTransaction, "VACUUM cannot run inside a transaction block");
        if (message.StartsWith("too many SQL variables", StringComparison.Ordinal) || message.StartsWith("too many terms", StringComparison.Ordinal))
            return SqlError.Error(SqlStates.ProgramLimitExceeded, message);
        if (message.StartsWith("integer overflow", StringComparison.Ordinal))
            return SqlError.Error(SqlStates.NumericValueOutOfRange, "bigint out of range");
        return SqlError.Error(SqlStates.InternalError, message);
    }

    private static SqlError MapConstraint(int extended, string message)
    {
        Match m;
        if ((m = Unique().Match(message)).Success)
        {
            // t.a, t.b → t_a_b_key; a primary key → t_pkey.
            string[] cols = m.Groups["cols"].Value.Split(", ");
            string table = cols[0].Contains('.', StringComparison.Ordinal) ? cols[0][..cols[0].IndexOf('.', StringComparison.Ordinal)] : cols[0];
            string[] names = cols.Select(c => c.Contains('.', StringComparison.Ordinal) ? c[(c.IndexOf('.', StringComparison.Ordinal) + 1)..] : c).ToArray();
            string constraint = extended == raw.SQLITE_CONSTRAINT_PRIMARYKEY || extended == raw.SQLITE_CONSTRAINT_ROWID
                ? $"{table}_pkey"
                : cols[0].StartsWith("index '", StringComparison.Ordinal) ? cols[0]["index '".Length..].TrimEnd('\'') : $"{table}_{string.Join('_', names)}_key";
            return SqlError.Error(SqlStates.UniqueViolation, $"duplicate key value violates unique constraint \"{constraint}\"",
                detail: $"Key ({string.Join(", ", names)}) already exists.");
        }
        if ((m = NotNull().Match(message)).Success)
        {
            string table = m.Groups["table"].Value, col = m.Groups["col"].Value;
            return SqlError.Error(SqlStates.NotNullViolation, $"null value in column \"{col}\" of relation \"{table}\" violates not-null constraint");
        }
        if ((m = Check().Match(message)).Success)
            return SqlError.Error(SqlStates.CheckViolation, $"new row violates check constraint \"{m.Groups["name"].Value}\"");
        if (message.StartsWith("FOREIGN KEY constraint failed", StringComparison.Ordinal) || extended == raw.SQLITE_CONSTRAINT_FOREIGNKEY)
            return SqlError.Error(SqlStates.ForeignKeyViolation, "insert or update on table violates foreign key constraint",
                detail: "A referenced key is missing, or a referencing row still exists.");
        return SqlError.Error(SqlStates.IntegrityConstraintViolation, message);
    }

    private static string LastPart(string name) => name.Contains('.', StringComparison.Ordinal) ? name[(name.LastIndexOf('.') + 1)..] : name;

    /// <summary>The 1-based position of the first token of <paramref name="sql"/> equal to <paramref name="token"/> (case-insensitive), or null.</summary>
    private static int? FindToken(string? sql, string token)
    {
        if (sql is null || token.Length == 0) return null;
        foreach (var t in SqlLexer.Tokenize(sql))
        {
            if (t.IsTrivia) continue;
            string text = t.Text(sql);
            if (text.Equals(token, StringComparison.OrdinalIgnoreCase)) return t.Start + 1;
            if (t.Kind == TokenKind.QuotedIdent && SqlLexer.QuotedIdentValue(text).Equals(token, StringComparison.OrdinalIgnoreCase)) return t.Start + 1;
        }
        return null;
    }
}
