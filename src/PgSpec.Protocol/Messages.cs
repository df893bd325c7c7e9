using System.Buffers;

namespace PgSpec.Protocol;

/// <summary>A protocol message in owned form: immutable, with value equality.</summary>
public interface IPgMessage
{
    /// <summary>The message name as the protocol documentation writes it.</summary>
    string Name { get; }

    /// <summary>The type byte, or -1 for the untyped startup-phase packets.</summary>
    int TypeByte { get; }

    /// <summary>The value of the length word (which counts itself, not the type byte).</summary>
    int Length { get; }

    /// <summary>The number of bytes <see cref="Encode(IBufferWriter{byte}, PgProtocolVersion, PgLimits?)"/> writes.</summary>
    int EncodedLength { get; }

    /// <summary>Throws <see cref="PgEncodeException"/> if the message cannot be encoded as it is.</summary>
    void Validate(PgProtocolVersion version = default, PgLimits? limits = null);

    /// <summary>Validates, then writes the message.</summary>
    void Encode(IBufferWriter<byte> writer, PgProtocolVersion version = default, PgLimits? limits = null);

    /// <summary>Validates, then writes the message into a span; returns the bytes written.</summary>
    int Encode(Span<byte> destination, PgProtocolVersion version = default, PgLimits? limits = null);

    /// <summary>Validates and encodes into a new array.</summary>
    byte[] ToArray(PgProtocolVersion version = default, PgLimits? limits = null);
}

/// <summary>A message the frontend (client) sends.</summary>
public interface IFrontendMessage : IPgMessage
{
    /// <summary>Which frontend message this is.</summary>
    FrontendMessageKind FrontendKind { get; }
}

/// <summary>A message the backend (server) sends.</summary>
public interface IBackendMessage : IPgMessage
{
    /// <summary>Which backend message this is.</summary>
    BackendMessageKind BackendKind { get; }
}

/// <summary>Which side sent a message.</summary>
public enum PgDirection
{
    /// <summary>Client to server ('F' in traces).</summary>
    Frontend,

    /// <summary>Server to client ('B' in traces).</summary>
    Backend,
}
