namespace PgSpec.Protocol;

/// <summary>
/// ErrorResponse messages as PostgreSQL's server writes them, for a server, a proxy or a test
/// double that answers with an error: the severity twice (<c>S</c>, which PostgreSQL may
/// translate, and <c>V</c>, which it never does), the SQLSTATE code (<c>C</c>) and the message
/// (<c>M</c>), then the detail (<c>D</c>) and the hint (<c>H</c>) when given. Encode the result
/// with <see cref="IPgMessage.ToArray"/>.
/// </summary>
public static class PgErrors
{
    /// <summary>An ErrorResponse of severity ERROR: the statement failed, the session goes on.</summary>
    /// <param name="sqlState">The SQLSTATE code: five digits or upper-case letters, such as 42601.</param>
    /// <param name="message">The primary message.</param>
    /// <param name="detail">A detail, or null for none.</param>
    /// <param name="hint">A hint, or null for none.</param>
    public static ErrorResponse Error(string sqlState, string message, string? detail = null, string? hint = null)
        => Create("ERROR", sqlState, message, detail, hint);

    /// <summary>An ErrorResponse of severity FATAL: the server ends the session after it.</summary>
    /// <param name="sqlState">The SQLSTATE code: five digits or upper-case letters, such as 08P01.</param>
    /// <param name="message">The primary message.</param>
    /// <param name="detail">A detail, or null for none.</param>
    /// <param name="hint">A hint, or null for none.</param>
    public static ErrorResponse Fatal(string sqlState, string message, string? detail = null, string? hint = null)
        => Create("FATAL", sqlState, message, detail, hint);

    /// <summary>
    /// An ErrorResponse with fields S and V (<paramref name="severity"/>), C, M, and D and H when
    /// given. A NUL in a text, which a String cannot carry, becomes a space, so any text (an
    /// exception's message, say) can be sent.
    /// </summary>
    /// <param name="severity">ERROR, FATAL or PANIC, as PostgreSQL writes them (not checked).</param>
    /// <param name="sqlState">The SQLSTATE code: five digits or upper-case letters.</param>
    /// <param name="message">The primary message.</param>
    /// <param name="detail">A detail, or null for none.</param>
    /// <param name="hint">A hint, or null for none.</param>
    /// <exception cref="ArgumentException">The severity is empty, or the code is not five digits or upper-case letters.</exception>
    public static ErrorResponse Create(string severity, string sqlState, string message, string? detail = null, string? hint = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(severity);
        ArgumentNullException.ThrowIfNull(sqlState);
        ArgumentNullException.ThrowIfNull(message);
        if (sqlState.Length != 5 || !sqlState.All(c => c is (>= '0' and <= '9') or (>= 'A' and <= 'Z')))
        {
            throw new ArgumentException($"a SQLSTATE code is five digits or upper-case letters, not '{sqlState}'", nameof(sqlState));
        }

        var fields = new List<ErrorResponse.Field>(6)
        {
            Field(ErrorFieldCode.Severity, severity),
            Field(ErrorFieldCode.SeverityNonLocalized, severity),
            Field(ErrorFieldCode.SqlState, sqlState),
            Field(ErrorFieldCode.Message, message),
        };
        if (detail is not null)
        {
            fields.Add(Field(ErrorFieldCode.Detail, detail));
        }

        if (hint is not null)
        {
            fields.Add(Field(ErrorFieldCode.Hint, hint));
        }

        return new ErrorResponse([.. fields]);
    }

    private static ErrorResponse.Field Field(ErrorFieldCode code, string value) => new((byte)code, value.Replace('\0', ' '));
}
