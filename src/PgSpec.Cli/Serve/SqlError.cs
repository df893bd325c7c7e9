namespace PgSpec.Cli.Serve;

/// <summary>
/// An error (or, taken from <see cref="SqliteSession.TakeNotices"/>, a notice) worded as PostgreSQL
/// words it: severity, SQLSTATE and primary message, with the optional fields of ErrorResponse.
/// </summary>
internal sealed class SqlError : Exception
{
    public SqlError(string severity, string sqlState, string message, string? detail = null, string? hint = null, int? position = null, string? where = null)
        : base(message)
    {
        Severity = severity;
        SqlState = sqlState;
        Detail = detail;
        Hint = hint;
        Position = position;
        Where = where;
    }

    /// <summary>ERROR, FATAL, WARNING, NOTICE, ... (field S and V).</summary>
    public string Severity { get; }

    /// <summary>The five-character SQLSTATE (field C).</summary>
    public string SqlState { get; }

    /// <summary>Field D, or null.</summary>
    public string? Detail { get; }

    /// <summary>Field H, or null.</summary>
    public string? Hint { get; }

    /// <summary>Field P: a 1-based character position in the statement's text, or null.</summary>
    public int? Position { get; }

    /// <summary>Field W (CONTEXT), e.g. <c>COPY t, line 2, column b: "x"</c>, or null.</summary>
    public string? Where { get; }

    /// <summary>The same error with a CONTEXT line.</summary>
    public SqlError WithWhere(string where) => new(Severity, SqlState, Message, Detail, Hint, Position, where);

    /// <summary>The same error with a position.</summary>
    public SqlError WithPosition(int? position) => new(Severity, SqlState, Message, Detail, Hint, position, Where);

    public static SqlError Error(string sqlState, string message, string? detail = null, string? hint = null, int? position = null) =>
        new("ERROR", sqlState, message, detail, hint, position);

    public static SqlError Fatal(string sqlState, string message, string? detail = null) => new("FATAL", sqlState, message, detail);

    public static SqlError Warning(string sqlState, string message) => new("WARNING", sqlState, message);

    public static SqlError Notice(string sqlState, string message) => new("NOTICE", sqlState, message);

    public override string ToString() => $"{Severity} {SqlState}: {Message}";
}

/// <summary>The SQLSTATE codes the engine reports.</summary>
internal static class SqlStates
{
    public const string Warning = "01000";
    public const string ActiveTransaction = "25001";
    public const string NoActiveTransaction = "25P01";
    public const string InFailedTransaction = "25P02";
    public const string ReadOnlyTransaction = "25006";
    public const string InvalidTextRepresentation = "22P02";
    public const string InvalidBinaryRepresentation = "22P03";
    public const string BadCopyFileFormat = "22P04";
    public const string NumericValueOutOfRange = "22003";
    public const string DivisionByZero = "22012";
    public const string CharacterNotInRepertoire = "22021";
    public const string InvalidParameterValue = "22023";
    public const string SyntaxError = "42601";
    public const string UndefinedTable = "42P01";
    public const string UndefinedColumn = "42703";
    public const string UndefinedObject = "42704";
    public const string UndefinedFunction = "42883";
    public const string UndefinedParameter = "42P02";
    public const string DuplicateTable = "42P07";
    public const string DuplicateColumn = "42701";
    public const string AmbiguousColumn = "42702";
    public const string DatatypeMismatch = "42804";
    public const string GroupingError = "42803";
    public const string InvalidSchemaName = "3F000";
    public const string InvalidSavepoint = "3B001";
    public const string UniqueViolation = "23505";
    public const string NotNullViolation = "23502";
    public const string CheckViolation = "23514";
    public const string ForeignKeyViolation = "23503";
    public const string IntegrityConstraintViolation = "23000";
    public const string FeatureNotSupported = "0A000";
    public const string QueryCanceled = "57014";
    public const string LockNotAvailable = "55P03";
    public const string CantChangeRuntimeParam = "55P02";
    public const string SerializationFailure = "40001";
    public const string ProgramLimitExceeded = "54000";
    public const string DiskFull = "53100";
    public const string OutOfMemory = "53200";
    public const string DataCorrupted = "XX001";
    public const string InternalError = "XX000";
    public const string InvalidCursorName = "34000";
    public const string InsufficientPrivilege = "42501";
    public const string IoError = "58030";
}
