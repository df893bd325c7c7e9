namespace PgSpec.Protocol;

/// <summary>Why bytes could not be decoded: the message, the field and the offset from the start of the message.</summary>
/// <param name="MessageName">The message being decoded, or "frame" for framing errors.</param>
/// <param name="Field">The field being read, if any.</param>
/// <param name="Offset">The offset of the problem from the message's first byte (its type byte, or its length word for untyped packets).</param>
/// <param name="Reason">What is wrong.</param>
public readonly record struct PgDecodeError(string MessageName, string? Field, long Offset, string Reason)
{
    /// <summary>The same error with its offset moved by <paramref name="delta"/> (to place it in a stream).</summary>
    public PgDecodeError Shift(long delta) => this with { Offset = Offset + delta };

    /// <summary>
    /// True when a reader's stream ended inside a message (part of it received, then the end of the
    /// stream): the peer closed the connection rather than sent something malformed.
    /// </summary>
    public bool IsClosedInsideMessage => MessageName == FrameName && Field is null;

    private const string FrameName = "frame";

    /// <summary>The error of a stream that ended at <paramref name="offset"/>, <paramref name="received"/> bytes into a message.</summary>
    internal static PgDecodeError ClosedInsideMessage(long offset, long received)
        => new(FrameName, null, offset, $"the connection closed inside a message ({received} bytes of it received)");

    /// <inheritdoc/>
    public override string ToString()
        => Field is null
            ? $"{MessageName}: {Reason} (at offset {Offset})"
            : $"{MessageName}.{Field}: {Reason} (at offset {Offset})";
}

/// <summary>The base of every exception PgSpec throws on purpose.</summary>
public class PgException : Exception
{
    /// <summary>Creates the exception.</summary>
    public PgException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}

/// <summary>
/// Bytes from a peer broke the protocol. The only exception a decoder throws; a session that
/// sees it ends the connection, as PostgreSQL does with FATAL 08P01.
/// </summary>
public sealed class PgProtocolException : PgException
{
    /// <summary>Creates the exception from a decode error.</summary>
    public PgProtocolException(PgDecodeError error)
        : base("protocol violation: " + error)
    {
        Error = error;
    }

    /// <summary>What went wrong and where.</summary>
    public PgDecodeError Error { get; }

    /// <summary>The message being decoded.</summary>
    public string MessageName => Error.MessageName;

    /// <summary>The field being read, if any.</summary>
    public string? Field => Error.Field;

    /// <summary>The offset of the problem.</summary>
    public long Offset => Error.Offset;

    /// <summary>What is wrong.</summary>
    public string Reason => Error.Reason;
}

/// <summary>A message cannot be encoded as it is (a NUL inside a String, a count over its Int16, a body over the limit...).</summary>
public sealed class PgEncodeException : PgException
{
    /// <summary>Creates the exception.</summary>
    public PgEncodeException(string messageName, string? field, string reason)
        : base(field is null ? $"cannot encode {messageName}: {reason}" : $"cannot encode {messageName}.{field}: {reason}")
    {
        MessageName = messageName;
        Field = field;
        Reason = reason;
    }

    /// <summary>The message being encoded.</summary>
    public string MessageName { get; }

    /// <summary>The field at fault, if any.</summary>
    public string? Field { get; }

    /// <summary>What is wrong.</summary>
    public string Reason { get; }
}
