using System.Buffers;
using System.Buffers.Binary;

namespace PgSpec.Protocol;

/// <summary>
/// A typed message no spec defines (or a sub-code or 'p' message the context cannot name), or
/// an untyped startup packet whose code no spec defines, kept as its raw body so a proxy can
/// forward it unchanged.
/// </summary>
public sealed class UnknownMessage : IFrontendMessage, IBackendMessage, IEquatable<UnknownMessage>
{
    /// <summary>Creates a typed message.</summary>
    public UnknownMessage(byte typeCode, ReadOnlyMemory<byte> body)
    {
        TypeCode = typeCode;
        Body = body;
    }

    private UnknownMessage(ReadOnlyMemory<byte> body)
    {
        IsStartupPacket = true;
        Body = body;
    }

    /// <summary>Creates an untyped startup packet: <paramref name="body"/> is what follows its length word, from its code on.</summary>
    public static UnknownMessage StartupPacket(ReadOnlyMemory<byte> body) => new(body);

    /// <summary>The type byte (0 for a startup packet).</summary>
    public byte TypeCode { get; }

    /// <summary>True for an untyped startup packet, which has no type byte.</summary>
    public bool IsStartupPacket { get; }

    /// <summary>The bytes after the length word.</summary>
    public ReadOnlyMemory<byte> Body { get; }

    /// <inheritdoc/>
    public string Name => "Unknown";

    /// <inheritdoc/>
    public int TypeByte => IsStartupPacket ? -1 : TypeCode;

    /// <inheritdoc/>
    public FrontendMessageKind FrontendKind => FrontendMessageKind.Unknown;

    /// <inheritdoc/>
    public BackendMessageKind BackendKind => BackendMessageKind.Unknown;

    /// <inheritdoc/>
    public int Length => Body.Length + 4;

    /// <inheritdoc/>
    public int EncodedLength => Body.Length + (IsStartupPacket ? 4 : 5);

    /// <inheritdoc/>
    public void Validate(PgProtocolVersion version = default, PgLimits? limits = null)
    {
        if (Body.Length > int.MaxValue - 5)
        {
            throw new PgEncodeException(Name, null, "the body is too large");
        }
    }

    /// <inheritdoc/>
    public void Encode(IBufferWriter<byte> writer, PgProtocolVersion version = default, PgLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(writer);
        Validate(version, limits);
        Span<byte> span = writer.GetSpan(EncodedLength);
        Write(span);
        writer.Advance(EncodedLength);
    }

    /// <inheritdoc/>
    public int Encode(Span<byte> destination, PgProtocolVersion version = default, PgLimits? limits = null)
    {
        Validate(version, limits);
        if (destination.Length < EncodedLength)
        {
            throw new PgEncodeException(Name, null, $"the destination has {destination.Length} bytes; the message needs {EncodedLength}");
        }

        Write(destination);
        return EncodedLength;
    }

    /// <inheritdoc/>
    public byte[] ToArray(PgProtocolVersion version = default, PgLimits? limits = null)
    {
        var bytes = new byte[EncodedLength];
        Encode(bytes, version, limits);
        return bytes;
    }

    private void Write(Span<byte> span)
    {
        if (IsStartupPacket)
        {
            BinaryPrimitives.WriteInt32BigEndian(span, Length);
            Body.Span.CopyTo(span.Slice(4));
            return;
        }

        span[0] = TypeCode;
        BinaryPrimitives.WriteInt32BigEndian(span.Slice(1), Length);
        Body.Span.CopyTo(span.Slice(5));
    }

    /// <inheritdoc/>
    public bool Equals(UnknownMessage? other) => other is not null && other.TypeCode == TypeCode && other.IsStartupPacket == IsStartupPacket && PgEquality.Equal(Body, other.Body);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is UnknownMessage other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(TypeCode, IsStartupPacket, PgEquality.Hash(Body));

    /// <inheritdoc/>
    public override string ToString()
        => IsStartupPacket
            ? $"Unknown startup packet {PgTraceWriter.FormatBytes(Body.Span)}"
            : $"Unknown message '{PgTraceWriter.FormatByte(TypeCode)}' {PgTraceWriter.FormatBytes(Body.Span)}";
}
