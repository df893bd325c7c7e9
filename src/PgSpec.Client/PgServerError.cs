using System.Text;
using PgSpec.Protocol;

namespace PgSpec.Client;

/// <summary>The fields of an ErrorResponse or NoticeResponse, by their documented codes.</summary>
public sealed record PgErrorFields
{
    /// <summary>Reads the fields of an error or notice.</summary>
    public static PgErrorFields From(IEnumerable<(byte Code, string Value)> fields)
    {
        var map = new Dictionary<char, string>();
        foreach ((byte code, string value) in fields)
        {
            map[(char)code] = value;
        }

        string? Get(char c) => map.TryGetValue(c, out string? v) ? v : null;
        return new PgErrorFields
        {
            All = map,
            Severity = Get('S') ?? "",
            SeverityNonLocalized = Get('V'),
            SqlState = Get('C') ?? "",
            Message = Get('M') ?? "",
            Detail = Get('D'),
            Hint = Get('H'),
            Position = Get('P'),
            InternalPosition = Get('p'),
            InternalQuery = Get('q'),
            Where = Get('W'),
            Schema = Get('s'),
            Table = Get('t'),
            Column = Get('c'),
            DataType = Get('d'),
            Constraint = Get('n'),
            File = Get('F'),
            Line = Get('L'),
            Routine = Get('R'),
        };
    }

    /// <summary>Every field by code.</summary>
    public IReadOnlyDictionary<char, string> All { get; init; } = new Dictionary<char, string>();

    /// <summary>S: ERROR, FATAL, PANIC, WARNING, NOTICE... (localized).</summary>
    public string Severity { get; init; } = "";

    /// <summary>V: the severity, never localized.</summary>
    public string? SeverityNonLocalized { get; init; }

    /// <summary>C: the SQLSTATE code.</summary>
    public string SqlState { get; init; } = "";

    /// <summary>M: the message.</summary>
    public string Message { get; init; } = "";

    /// <summary>D: detail.</summary>
    public string? Detail { get; init; }

    /// <summary>H: hint.</summary>
    public string? Hint { get; init; }

    /// <summary>P: position in the query.</summary>
    public string? Position { get; init; }

    /// <summary>p: position in an internal query.</summary>
    public string? InternalPosition { get; init; }

    /// <summary>q: the internal query.</summary>
    public string? InternalQuery { get; init; }

    /// <summary>W: where (context).</summary>
    public string? Where { get; init; }

    /// <summary>s: schema.</summary>
    public string? Schema { get; init; }

    /// <summary>t: table.</summary>
    public string? Table { get; init; }

    /// <summary>c: column.</summary>
    public string? Column { get; init; }

    /// <summary>d: data type.</summary>
    public string? DataType { get; init; }

    /// <summary>n: constraint.</summary>
    public string? Constraint { get; init; }

    /// <summary>F: source file.</summary>
    public string? File { get; init; }

    /// <summary>L: source line.</summary>
    public string? Line { get; init; }

    /// <summary>R: source routine.</summary>
    public string? Routine { get; init; }

    /// <inheritdoc/>
    public override string ToString()
    {
        var text = new StringBuilder();
        text.Append(Severity).Append(' ').Append(SqlState).Append(": ").Append(Message);
        if (Detail is not null)
        {
            text.Append(" DETAIL: ").Append(Detail);
        }

        if (Hint is not null)
        {
            text.Append(" HINT: ").Append(Hint);
        }

        return text.ToString();
    }
}

/// <summary>The server answered with an ErrorResponse.</summary>
public sealed class PgServerException : PgException
{
    /// <summary>Creates the exception from the server's fields.</summary>
    public PgServerException(PgErrorFields fields, ErrorResponse? response = null)
        : base(fields.ToString())
    {
        Fields = fields;
        Response = response;
    }

    /// <summary>Every field the server sent.</summary>
    public PgErrorFields Fields { get; }

    /// <summary>The message as received.</summary>
    public ErrorResponse? Response { get; }

    /// <summary>The SQLSTATE.</summary>
    public string SqlState => Fields.SqlState;
}

/// <summary>The connection failed: refused, dropped, timed out, TLS or authentication refused by the client.</summary>
public sealed class PgConnectionException : PgException
{
    /// <summary>Creates the exception.</summary>
    public PgConnectionException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}
