using System.Collections.Immutable;
using System.Globalization;
using PgSpec.Protocol;

namespace PgSpec.Server;

/// <summary>
/// An error to send to the client as ErrorResponse (or, with a notice severity, NoticeResponse):
/// a handler throws it to fail a statement; with severity FATAL it ends the session after the
/// message.
/// </summary>
public class PgErrorException : Exception
{
    /// <summary>An ERROR with this SQLSTATE and primary message.</summary>
    public PgErrorException(string sqlState, string message)
        : this("ERROR", sqlState, message)
    {
    }

    /// <summary>An error of <paramref name="severity"/> (ERROR, FATAL, PANIC; or WARNING, NOTICE, ... for notices).</summary>
    public PgErrorException(string severity, string sqlState, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        ArgumentException.ThrowIfNullOrEmpty(severity);
        ArgumentNullException.ThrowIfNull(sqlState);
        if (sqlState.Length != 5)
        {
            throw new ArgumentException($"a SQLSTATE has 5 characters: \"{sqlState}\"", nameof(sqlState));
        }

        Severity = severity;
        SqlState = sqlState;
    }

    /// <summary>ERROR, FATAL, PANIC (errors) or WARNING, NOTICE, DEBUG, INFO, LOG (notices).</summary>
    public string Severity { get; }

    /// <summary>The SQLSTATE code.</summary>
    public string SqlState { get; }

    /// <summary>An optional secondary message (field D).</summary>
    public string? Detail { get; init; }

    /// <summary>An optional suggestion (field H).</summary>
    public string? Hint { get; init; }

    /// <summary>A 1-based character position in the statement (field P).</summary>
    public int? Position { get; init; }

    /// <summary>Where the error happened (field W).</summary>
    public string? Where { get; init; }

    /// <summary>True for FATAL and PANIC: the session ends after the message.</summary>
    public bool IsFatal => Severity is "FATAL" or "PANIC";

    /// <summary>The fields in PostgreSQL's order: S, V, C, M, D, H, P, W.</summary>
    internal ImmutableArray<(byte Code, string Value)> Fields()
    {
        var fields = ImmutableArray.CreateBuilder<(byte, string)>(8);
        fields.Add(((byte)'S', Severity));
        fields.Add(((byte)'V', Severity));
        fields.Add(((byte)'C', SqlState));
        fields.Add(((byte)'M', Message));
        if (Detail is not null)
        {
            fields.Add(((byte)'D', Detail));
        }

        if (Hint is not null)
        {
            fields.Add(((byte)'H', Hint));
        }

        if (Position is int position)
        {
            fields.Add(((byte)'P', position.ToString(CultureInfo.InvariantCulture)));
        }

        if (Where is not null)
        {
            fields.Add(((byte)'W', Where));
        }

        return fields.ToImmutable();
    }

    /// <summary>This error as the ErrorResponse message.</summary>
    public ErrorResponse ToErrorResponse() => new([.. Fields().Select(f => new ErrorResponse.Field(f.Code, f.Value))]);

    /// <summary>This error as a NoticeResponse message.</summary>
    public NoticeResponse ToNoticeResponse() => new([.. Fields().Select(f => new NoticeResponse.Field(f.Code, f.Value))]);
}
