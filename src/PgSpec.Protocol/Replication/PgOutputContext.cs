namespace PgSpec.Protocol;

/// <summary>The <c>streaming</c> option of pgoutput's START_REPLICATION: whether, and how, in-progress transactions are streamed.</summary>
public enum PgOutputStreaming
{
    /// <summary>No streaming (the default): a transaction is sent once it commits.</summary>
    Off,

    /// <summary>Large in-progress transactions are streamed in blocks between Stream Start and Stream Stop (protocol version 2 and later).</summary>
    On,

    /// <summary>As <see cref="On"/>, with the extra information for applying streams in parallel, such as Stream Abort's LSN and time (protocol version 4 and later).</summary>
    Parallel,
}

/// <summary>
/// What decoding a pgoutput message depends on: the protocol version and the <c>streaming</c> option the
/// client asked for in START_REPLICATION, and whether the stream is inside a streamed transaction block
/// (between Stream Start and Stream Stop), where the messages carry the transaction's xid. The
/// generated dispatcher's <c>TryDecodeNext</c> follows the blocks, as the spec marks them
/// (<c>starts-stream</c>, <c>ends-stream</c>); one context follows one replication stream.
/// </summary>
public sealed class PgOutputContext
{
    /// <summary>Creates the context of a stream started with <paramref name="protocolVersion"/> (pgoutput's <c>proto_version</c>) and <paramref name="streaming"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The version is below 1, or the streaming mode needs a newer one (on: 2, parallel: 4), as pgoutput refuses them.</exception>
    public PgOutputContext(int protocolVersion, PgOutputStreaming streaming = PgOutputStreaming.Off)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(protocolVersion, 1);
        if (!Enum.IsDefined(streaming))
        {
            throw new ArgumentOutOfRangeException(nameof(streaming), streaming, "not a streaming mode");
        }

        if (streaming == PgOutputStreaming.On && protocolVersion < 2)
        {
            throw new ArgumentOutOfRangeException(nameof(streaming), streaming, "streaming needs protocol version 2 or later");
        }

        if (streaming == PgOutputStreaming.Parallel && protocolVersion < 4)
        {
            throw new ArgumentOutOfRangeException(nameof(streaming), streaming, "parallel streaming needs protocol version 4 or later");
        }

        ProtocolVersion = protocolVersion;
        Streaming = streaming;
    }

    /// <summary>The protocol version (<c>proto_version</c>).</summary>
    public int ProtocolVersion { get; }

    /// <summary>The <c>streaming</c> option.</summary>
    public PgOutputStreaming Streaming { get; }

    /// <summary>
    /// Whether the stream is inside a streamed transaction block: between Stream Start and Stream Stop, the
    /// messages that may belong to a streamed transaction carry its xid. Set by the dispatcher's
    /// <c>TryDecodeNext</c>; a caller that joins a stream in the middle of a block may set it.
    /// </summary>
    public bool InStreamedTransaction { get; set; }

    /// <inheritdoc/>
    public override string ToString()
        => $"pgoutput proto_version {ProtocolVersion}, streaming {Streaming.ToString().ToLowerInvariant()}{(InStreamedTransaction ? ", in a streamed block" : "")}";
}
