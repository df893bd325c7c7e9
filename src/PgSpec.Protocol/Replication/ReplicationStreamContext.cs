using System.Globalization;
using PgSpec.Protocol.PgOutput;
using PgSpec.Protocol.Replication;

namespace PgSpec.Protocol;

/// <summary>What a replication stream carries in its XLogData, as its START_REPLICATION said.</summary>
public enum ReplicationStreamKind
{
    /// <summary>No stream has started.</summary>
    None,

    /// <summary>Physical replication: XLogData carries WAL as it is on disk.</summary>
    Physical,

    /// <summary>Logical replication: XLogData carries the output of the slot's plugin (pgoutput's messages, or another plugin's).</summary>
    Logical,

    /// <summary>A stream whose START_REPLICATION was not seen (CopyBothResponse came without it): its XLogData's data is not read.</summary>
    Unknown,
}

/// <summary>
/// Follows one connection's replication commands, so that the CopyData of a replication stream can be
/// read as what they carry: after START_REPLICATION, answered by CopyBothResponse, each CopyData's data
/// is a replication message (<see cref="ReplicationMessages"/>), and for logical replication with
/// pgoutput each XLogData's data is one of pgoutput's messages (<see cref="PgOutputMessages"/>), read
/// with the <c>proto_version</c> and <c>streaming</c> options the command gave. Physical replication's
/// XLogData carries WAL, which is not read further.
/// </summary>
/// <remarks>
/// <para>
/// Feed it every message of both directions, in the order they crossed (a frontend's Query before the
/// answer to it), with <see cref="Observe"/> (or <see cref="ObserveFrontend"/>, <see cref="ObserveBackend"/>
/// and <see cref="Decode"/>). A stream starts at CopyBothResponse; a side's CopyDone ends what that side
/// sends; ErrorResponse, ReadyForQuery, Terminate or another Query end it all.
/// </para>
/// <para>
/// Which plugin a logical slot has is known only when CREATE_REPLICATION_SLOT was seen on the same
/// connection (the last <see cref="MaxSlotsRemembered"/> slots are remembered). A slot with another
/// plugin (test_decoding, wal2json) is not read as pgoutput. A slot whose plugin is not known is read
/// as pgoutput when its options are pgoutput's (<c>proto_version</c> and <c>publication_names</c>);
/// the first XLogData that does not decode then ends the reading of pgoutput for that stream (the
/// replication messages are still read). Commands are read from a Query's text as PostgreSQL's
/// replication grammar reads them, liberally (case, quoting, blanks, comments, options in any order),
/// up to 64 KiB of text. Memory is bounded: a stream, a command waiting for its answer and the slots.
/// Not thread-safe: one context per connection, fed in order.
/// </para>
/// </remarks>
public sealed class ReplicationStreamContext
{
    /// <summary>The most slots (created on the connection) whose plugins are remembered; the oldest are forgotten first.</summary>
    public const int MaxSlotsRemembered = 64;

    private readonly List<KeyValuePair<string, string?>> _slots = [];
    private ReplicationCommand? _starting;
    private ReplicationCommand? _creating;
    private bool _frontendOpen;
    private bool _backendOpen;

    /// <summary>Whether a stream is in progress: CopyBothResponse came, and it has not ended both ways.</summary>
    public bool InStream => _frontendOpen || _backendOpen;

    /// <summary>
    /// Whether a START_REPLICATION was seen and its answer has not come yet. A tool that sees only the
    /// frontend's side may take the stream as started then (<see cref="ObserveBackend"/> with CopyBothResponse).
    /// </summary>
    public bool StartRequested => _starting is not null;

    /// <summary>The kind of the stream in progress, or of the last one; <see cref="ReplicationStreamKind.None"/> before any.</summary>
    public ReplicationStreamKind Kind { get; private set; }

    /// <summary>The slot the stream streams from, if its START_REPLICATION named one.</summary>
    public string? SlotName { get; private set; }

    /// <summary>The position the stream started from (its START_REPLICATION's), as PostgreSQL prints it (<c>0/16B3748</c>); null when not known.</summary>
    public string? StartLsn { get; private set; }

    /// <summary>The output plugin of the stream's logical slot, when CREATE_REPLICATION_SLOT was seen on this connection; null when not known.</summary>
    public string? Plugin { get; private set; }

    /// <summary>
    /// The context XLogData's data is read with as pgoutput messages (following Stream Start and Stop),
    /// or null when it is not read: physical replication, another plugin, options that are not
    /// pgoutput's, or after a message that did not decode.
    /// </summary>
    public PgOutputContext? PgOutput { get; private set; }

    /// <summary>What the stream in progress (or the last one) is and how its data is read, in a sentence.</summary>
    public string Description { get; private set; } = "no replication stream";

    /// <summary>
    /// Learns from a message either side sent, in its turn, and reads a CopyData of a stream in
    /// progress: its payload, or null for any other message. Startup packets and encryption answers
    /// change nothing.
    /// </summary>
    public ReplicationPayload? Observe(PgReceivedMessage message)
    {
        if (message.FrameKind != PgFrameKind.Typed)
        {
            return null;
        }

        if (message.Direction == PgDirection.Frontend)
        {
            if (message.FrontendKind == FrontendMessageKind.CopyData)
            {
                return Decode(message.Body, PgDirection.Frontend);
            }

            ObserveFrontend(message.FrontendKind, message.Body);
            return null;
        }

        if (message.BackendKind == BackendMessageKind.CopyData)
        {
            return Decode(message.Body, PgDirection.Backend);
        }

        ObserveBackend(message.BackendKind, message.Body);
        return null;
    }

    /// <summary>Learns from a frontend message (its body: the bytes after the length word): replication commands, CopyDone, Terminate.</summary>
    public void ObserveFrontend(FrontendMessageKind kind, ReadOnlySpan<byte> body)
    {
        switch (kind)
        {
            case FrontendMessageKind.Query:
                // A new command: whatever came before is over, and a slot whose creation was not
                // answered (the server's side is not seen) is taken as created.
                EndStream();
                _starting = null;
                ConfirmSlot();
                int end = body.IndexOf((byte)0);
                ReplicationCommand? command = ReplicationCommand.TryParse(end < 0 ? body : body[..end]);
                switch (command?.Kind)
                {
                    case ReplicationCommandKind.StartPhysical:
                    case ReplicationCommandKind.StartLogical:
                        _starting = command;
                        break;
                    case ReplicationCommandKind.CreateSlot:
                        _creating = command;
                        break;
                    case ReplicationCommandKind.DropSlot:
                        ForgetSlot(command.Slot!);
                        break;
                }

                break;
            case FrontendMessageKind.CopyDone:
                _frontendOpen = false;
                break;
            case FrontendMessageKind.Terminate:
                EndStream();
                break;
        }
    }

    /// <summary>Learns from a backend message (its body: the bytes after the length word): CopyBothResponse starts a stream, CopyDone, ErrorResponse and ReadyForQuery end it.</summary>
    public void ObserveBackend(BackendMessageKind kind, ReadOnlySpan<byte> body)
    {
        switch (kind)
        {
            case BackendMessageKind.CopyBothResponse:
                StartStream(_starting);
                _starting = null;
                break;
            case BackendMessageKind.CopyDone:
                _backendOpen = false;
                break;
            case BackendMessageKind.ErrorResponse:
                EndStream();
                _starting = null;
                _creating = null;
                break;
            case BackendMessageKind.ReadyForQuery:
                EndStream();
                _starting = null;
                ConfirmSlot();
                break;
        }
    }

    /// <summary>
    /// Reads the data of a CopyData that <paramref name="direction"/> sent: its payload when a stream is
    /// in progress and that side has not ended it, null otherwise (it is not replication). A pgoutput
    /// message that does not decode ends the reading of pgoutput for the stream.
    /// </summary>
    public ReplicationPayload? Decode(ReadOnlySpan<byte> data, PgDirection direction)
    {
        if (!(direction == PgDirection.Frontend ? _frontendOpen : _backendOpen))
        {
            return null;
        }

        ReplicationMessageKind kind = data.IsEmpty ? ReplicationMessageKind.Unknown : ReplicationMessages.Classify(data[0], direction);
        string? name = kind == ReplicationMessageKind.Unknown ? null : ReplicationMessages.NameOf(kind);
        if (!ReplicationMessages.TryDecode(data, direction, out IReplicationMessage? message, out PgDecodeError error))
        {
            return new ReplicationPayload(direction, null, name, error, null, null, null);
        }

        if (message is not XLogData wal || PgOutput is not { } context)
        {
            return new ReplicationPayload(direction, message, name, null, null, null, null);
        }

        ReadOnlySpan<byte> carried = wal.Data.Span;
        if (PgOutputMessages.TryDecodeNext(carried, context, out IPgOutputMessage? inner, out error))
        {
            return new ReplicationPayload(direction, message, name, null, inner, inner.Name, null);
        }

        PgOutputMessageKind innerKind = carried.IsEmpty ? PgOutputMessageKind.Unknown : PgOutputMessages.Classify(carried[0]);
        string? innerName = innerKind == PgOutputMessageKind.Unknown ? null : PgOutputMessages.NameOf(innerKind);
        PgOutput = null;
        Description += "; XLogData's data stopped decoding as pgoutput (" + error + ")";
        return new ReplicationPayload(direction, message, name, null, null, innerName, error);
    }

    private void StartStream(ReplicationCommand? command)
    {
        _frontendOpen = true;
        _backendOpen = true;
        SlotName = command?.Slot;
        StartLsn = command is null ? null : ReplicationCommand.FormatLsn(command.StartLsn);
        Plugin = null;
        PgOutput = null;
        switch (command?.Kind)
        {
            case ReplicationCommandKind.StartPhysical:
                Kind = ReplicationStreamKind.Physical;
                Description = "physical replication"
                    + (command.Slot is null ? "" : " of slot \"" + command.Slot + "\"")
                    + " from " + StartLsn
                    + (command.Timeline is { } timeline ? " on timeline " + timeline.ToString(CultureInfo.InvariantCulture) : "")
                    + ": XLogData carries WAL, not decoded further";
                break;
            case ReplicationCommandKind.StartLogical:
                Kind = ReplicationStreamKind.Logical;
                Plugin = PluginOf(command.Slot!);
                Description = $"logical replication of slot \"{command.Slot}\" from {StartLsn}" + ReadAs(command);
                break;
            default:
                Kind = ReplicationStreamKind.Unknown;
                Description = "a replication stream whose START_REPLICATION was not seen: XLogData's data is not decoded";
                break;
        }
    }

    /// <summary>Decides whether a logical stream's data is pgoutput, and with which context; says so.</summary>
    private string ReadAs(ReplicationCommand command)
    {
        bool hasVersion = command.TryGetOption("proto_version", out string? version);
        bool hasPublications = command.TryGetOption("publication_names", out _);
        string plugin;
        if (Plugin is not null)
        {
            if (Plugin != "pgoutput")
            {
                return $" with plugin {Plugin}: XLogData carries the plugin's output, not decoded";
            }

            plugin = " with pgoutput";
        }
        else if (hasVersion && hasPublications)
        {
            plugin = " (plugin not seen; pgoutput's options)";
        }
        else
        {
            return " (plugin not seen, and the options are not pgoutput's: no proto_version and publication_names): XLogData's data is not decoded";
        }

        if (!int.TryParse(version?.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int protocol)
            || protocol < PgOutputMessages.MinVersion || protocol > PgOutputMessages.MaxVersion)
        {
            return plugin + $", proto_version {(version is null ? "missing" : "'" + version + "'")}, not one of {PgOutputMessages.MinVersion} to {PgOutputMessages.MaxVersion}: XLogData's data is not decoded";
        }

        PgOutputStreaming? streaming = command.TryGetOption("streaming", out string? mode) ? Streaming(mode) : PgOutputStreaming.Off;
        if (streaming is not { } known)
        {
            return plugin + $", streaming '{mode}' not on, off or parallel: XLogData's data is not decoded";
        }

        try
        {
            PgOutput = new PgOutputContext(protocol, known);
        }
        catch (ArgumentOutOfRangeException)
        {
            // pgoutput refuses these too: the server answers with an error.
            return plugin + $", streaming {known.ToString().ToLowerInvariant()} with proto_version {protocol}, which pgoutput refuses: XLogData's data is not decoded";
        }

        return plugin + $": XLogData carries pgoutput messages (proto_version {protocol}, streaming {known.ToString().ToLowerInvariant()})";
    }

    /// <summary>pgoutput's <c>streaming</c>: a Boolean (as PostgreSQL's parse_bool reads one; no value is true) or <c>parallel</c>.</summary>
    private static PgOutputStreaming? Streaming(string? value)
    {
        if (value is null)
        {
            return PgOutputStreaming.On;
        }

        string text = value.Trim().ToLowerInvariant();
        if (text == "parallel")
        {
            return PgOutputStreaming.Parallel;
        }

        return text switch
        {
            "1" or "on" => PgOutputStreaming.On,
            "0" or "of" or "off" => PgOutputStreaming.Off,
            _ when text.Length > 0 && ("true".StartsWith(text, StringComparison.Ordinal) || "yes".StartsWith(text, StringComparison.Ordinal)) => PgOutputStreaming.On,
            _ when text.Length > 0 && ("false".StartsWith(text, StringComparison.Ordinal) || "no".StartsWith(text, StringComparison.Ordinal)) => PgOutputStreaming.Off,
            _ => null,
        };
    }

    private void EndStream()
    {
        _frontendOpen = false;
        _backendOpen = false;
    }

    private void ConfirmSlot()
    {
        if (_creating is { Slot: { } slot } created)
        {
            ForgetSlot(slot);
            if (_slots.Count == MaxSlotsRemembered)
            {
                _slots.RemoveAt(0);
            }

            _slots.Add(new(slot, created.Plugin));
        }

        _creating = null;
    }

    private void ForgetSlot(string slot) => _slots.RemoveAll(entry => entry.Key == slot);

    private string? PluginOf(string slot)
    {
        foreach (KeyValuePair<string, string?> entry in _slots)
        {
            if (entry.Key == slot)
            {
                return entry.Value;
            }
        }

        return null;
    }
}

/// <summary>
/// A CopyData of a replication stream, read: the replication message (or why it is not one), and for
/// XLogData of a pgoutput stream, the pgoutput message it carries (or why it is not one, after which
/// pgoutput is no longer read in that stream).
/// </summary>
public sealed class ReplicationPayload
{
    internal ReplicationPayload(PgDirection direction, IReplicationMessage? message, string? name, PgDecodeError? error, IPgOutputMessage? pgOutput, string? pgOutputName, PgDecodeError? pgOutputError)
    {
        Direction = direction;
        Message = message;
        Name = name;
        Error = error;
        PgOutput = pgOutput;
        PgOutputName = pgOutputName;
        PgOutputError = pgOutputError;
    }

    /// <summary>Who sent the CopyData.</summary>
    public PgDirection Direction { get; }

    /// <summary>The replication message, or null when the data is not one (see <see cref="Error"/>).</summary>
    public IReplicationMessage? Message { get; }

    /// <summary>The replication message the first byte names (also when it did not decode), or null for an empty payload or an unknown byte.</summary>
    public string? Name { get; }

    /// <summary>Why the data is not a replication message; null when it is.</summary>
    public PgDecodeError? Error { get; }

    /// <summary>The pgoutput message XLogData carries, when the stream is read as pgoutput and it decoded.</summary>
    public IPgOutputMessage? PgOutput { get; }

    /// <summary>The pgoutput message XLogData's first byte names, when the stream is read as pgoutput (also when it did not decode).</summary>
    public string? PgOutputName { get; }

    /// <summary>Why XLogData's data is not a pgoutput message, when the stream was read as pgoutput until it; pgoutput is not read in the rest of the stream.</summary>
    public PgDecodeError? PgOutputError { get; }

    /// <summary>
    /// Writes the lines that go below the CopyData's trace line: the replication message one indent
    /// deeper than <paramref name="trace"/>'s <see cref="PgTraceWriter.Indent"/>, in libpq's layout
    /// (direction, size with the type byte, name, fields; XLogData without its data, which the CopyData
    /// line shows and the next line decodes), the pgoutput message two deeper; what did not decode as a
    /// comment line (<c># ...</c>) at the same depth. The writer's indent is left as it was.
    /// </summary>
    public void Trace(PgTraceWriter trace)
    {
        ArgumentNullException.ThrowIfNull(trace);
        int indent = trace.Indent;
        char direction = Direction == PgDirection.Frontend ? 'F' : 'B';
        try
        {
            trace.Indent = Math.Min(indent + 1, 8);
            switch (Message)
            {
                case XLogData wal:
                    trace.BeginMessage(direction, wal.EncodedLength, "XLogData", maskLength: false, hasFields: true);
                    trace.Int64(wal.WalStart);
                    trace.Int64(wal.WalEnd);
                    trace.Int64(wal.SendTime);
                    trace.EndMessage(0, 0, checkLength: false);
                    break;
                case { } message:
                    message.Trace(trace, direction);
                    break;
                default:
                    trace.Note($"not a replication message{(Name is null ? "" : " (" + Name + ")")}: {Error}");
                    break;
            }

            trace.Indent = Math.Min(indent + 2, 8);
            if (PgOutput is { } inner)
            {
                inner.Trace(trace, direction);
            }
            else if (PgOutputError is { } error)
            {
                trace.Note($"not a pgoutput message{(PgOutputName is null ? "" : " (" + PgOutputName + ")")}: {error}; pgoutput is not decoded in the rest of this stream");
            }
        }
        finally
        {
            trace.Indent = indent;
        }
    }
}
