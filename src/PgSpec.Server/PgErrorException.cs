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

    /// <summary>
    /// The fields in PostgreSQL's order: S, V, C, M, D, H, P, W. A NUL character, which a String
    /// on the wire cannot hold (a message may quote the client's data), becomes U+FFFD.
    /// </summary>
    internal ImmutableArray<(byte Code, string Value)> Fields()
    {
        var fields = ImmutableArray.CreateBuilder<(byte, string)>(8);
        fields.Add(((byte)'S', WithoutNul(Severity)));
        fields.Add(((byte)'V', WithoutNul(Severity)));
        fields.Add(((byte)'C', WithoutNul(SqlState)));
        fields.Add(((byte)'M', WithoutNul(Message)));
        if (Detail is not null)
        {
            fields.Add(((byte)'D', WithoutNul(Detail)));
        }

        if (Hint is not null)
        {
            fields.Add(((byte)'H', WithoutNul(Hint)));
        }

        if (Position is int position)
        {
            fields.Add(((byte)'P', position.ToString(CultureInfo.InvariantCulture)));
        }

        if (Where is not null)
        {
            fields.Add(((byte)'W', WithoutNul(Where)));
        }

        return fields.ToImmutable();
    }

    private static string WithoutNul(string value) => value.Contains('\0', StringComparison.Ordinal) ? value.Replace('\0', '\uFFFD') : value;

    /// <summary>This error as the ErrorResponse message.</summary>
    public ErrorResponse ToErrorResponse() => new([.. Fields().Select(f => new ErrorResponse.Field(f.Code, f.Value))]);

    /// <summary>This error as a NoticeResponse message.</summary>
    public NoticeResponse ToNoticeResponse() => new([.. Fields().Select(f => new NoticeResponse.Field(f.Code, f.Value))]);
}
