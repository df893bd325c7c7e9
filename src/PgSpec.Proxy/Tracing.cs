using System.Globalization;
using PgSpec.Protocol;

namespace PgSpec.Proxy;

/// <summary>Receives every message the proxy forwards, already validated, with its connection's decode context.</summary>
public interface IProxyTraceSink
{
    /// <summary>One message of connection <paramref name="connectionId"/>; called from the connection's two directions concurrently.</summary>
    void Write(long connectionId, PgReceivedMessage message, DecodeContext context);

    /// <summary>The connection ended; nothing more comes for it.</summary>
    void EndConnection(long connectionId);

    /// <summary>
    /// The connection ended; <paramref name="failure"/> says why when it ended abnormally (a
    /// malformed message, a timeout, a peer that vanished), null when it closed as the protocol foresees.
    /// </summary>
    void EndConnection(long connectionId, string? failure) => EndConnection(connectionId);
}

/// <summary>Whether a message carries a password or authentication exchange data.</summary>
public static class ProxySecrets
{
    /// <summary>True for the messages the spec marks 'secret': PasswordMessage, the SASL and GSS data of both directions.</summary>
    public static bool IsSecret(PgReceivedMessage message) => message.Direction == PgDirection.Frontend
        ? FrontendMessages.IsSecret(message.FrontendKind)
        : BackendMessages.IsSecret(message.BackendKind);
}

/// <summary>
/// Trace lines in libpq 18's PQtrace format, one per message, written whole (a line and its
/// "mismatched message length" line together) so connections never interleave within a line.
/// With connection ids, each line starts with the id and a TAB. With <see cref="Replication"/>, the
/// CopyData of replication streams get lines of their own below theirs.
/// </summary>
public sealed class PqTraceSink : IProxyTraceSink
{
    private static readonly byte[] s_hiddenPassword = "********"u8.ToArray();
    private readonly Stream _output;
    private readonly PgTraceOptions _options;
    private readonly bool _connectionIds;
    private readonly bool _showSecrets;
    private readonly Dictionary<long, ConnectionTrace> _writers = new();
    private readonly Lock _lock = new();

    /// <summary>
    /// Writes to <paramref name="output"/>. <paramref name="options"/> gives regress mode and
    /// timestamps (its prefix is replaced by the connection id when <paramref name="connectionIds"/>);
    /// passwords and SASL/GSS data are hidden unless <paramref name="showSecrets"/>.
    /// </summary>
    public PqTraceSink(Stream output, PgTraceOptions? options = null, bool connectionIds = false, bool showSecrets = false)
    {
        _output = output ?? throw new ArgumentNullException(nameof(output));
        _options = options ?? new PgTraceOptions();
        _connectionIds = connectionIds;
        _showSecrets = showSecrets;
    }

    /// <summary>
    /// Decodes each connection's replication streams (<see cref="ReplicationStreamContext"/>): below a
    /// CopyBothResponse that starts one, a comment line says what it carries; below each of its CopyData,
    /// a line one TAB deeper gives the replication message (XLogData without its data), and for pgoutput,
    /// a line two TABs deeper the pgoutput message; what does not decode is a comment line there. The
    /// libpq lines stay as they are. Off by default: libpq's trace shows only the CopyData.
    /// </summary>
    public bool Replication { get; init; }

    /// <inheritdoc/>
    public void Write(long connectionId, PgReceivedMessage message, DecodeContext context)
    {
        lock (_lock)
        {
            if (!_writers.TryGetValue(connectionId, out ConnectionTrace? writers))
            {
                PgTraceOptions options = Options(connectionId);
                writers = new ConnectionTrace(new PgTraceWriter(_output, options), new PgTraceWriter(_output, options with { Regress = true }), Replication ? new ReplicationStreamContext() : null);
                _writers[connectionId] = writers;
            }

            if (!_showSecrets && ProxySecrets.IsSecret(message))
            {
                if (message.FrontendKind == FrontendMessageKind.PasswordMessage)
                {
                    writers.Plain.BeginMessage('F', message.Length, "PasswordMessage", maskLength: false, hasFields: true);
                    writers.Plain.String(s_hiddenPassword, masked: false);
                    writers.Plain.EndMessage(message.Length, message.Length, checkLength: false);
                }
                else
                {
                    // Regress mode prints the SASL and GSS data as 'BBBB' and masks nothing else in these messages.
                    message.Trace(writers.Masked, context);
                }
            }
            else
            {
                message.Trace(writers.Plain, context);
            }

            if (writers.Replication is { } replication)
            {
                TraceReplication(writers.Plain, replication, message);
            }

            _output.Flush();
        }
    }

    /// <summary>The lines below a message of a replication stream: what a CopyData carries, what a stream that starts is.</summary>
    private static void TraceReplication(PgTraceWriter writer, ReplicationStreamContext replication, PgReceivedMessage message)
    {
        if (replication.Observe(message) is { } payload)
        {
            payload.Trace(writer);
        }
        else if (message.BackendKind == BackendMessageKind.CopyBothResponse && replication.InStream)
        {
            int indent = writer.Indent;
            writer.Indent = indent + 1;
            writer.Note(replication.Description);
            writer.Indent = indent;
        }
    }

    /// <inheritdoc/>
    public void EndConnection(long connectionId) => EndConnection(connectionId, null);

    /// <inheritdoc/>
    /// <remarks>An abnormal end is written as a comment line, which libpq never prints: <c># connection ended: REASON</c>, with the line prefixes.</remarks>
    public void EndConnection(long connectionId, string? failure)
    {
        lock (_lock)
        {
            if (failure is not null)
            {
                PgTraceWriter writer = _writers.TryGetValue(connectionId, out var writers) ? writers.Plain : new PgTraceWriter(_output, Options(connectionId));
                writer.Note("connection ended: " + failure.ReplaceLineEndings(" "));
            }

            _writers.Remove(connectionId);
            _output.Flush();
        }
    }

    /// <summary>A comment line (<c># TEXT</c>, which libpq never prints) for connection <paramref name="connectionId"/>, with its line prefixes.</summary>
    public void Note(long connectionId, string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        lock (_lock)
        {
            PgTraceWriter writer = _writers.TryGetValue(connectionId, out var writers) ? writers.Plain : new PgTraceWriter(_output, Options(connectionId));
            writer.Note(text.ReplaceLineEndings(" "));
            _output.Flush();
        }
    }

    private PgTraceOptions Options(long connectionId)
        => _connectionIds ? _options with { Prefix = connectionId.ToString(CultureInfo.InvariantCulture) } : _options;

    /// <summary>A connection's writers (plain, and in regress mode for secrets) and its replication streams, when decoded.</summary>
    private sealed record ConnectionTrace(PgTraceWriter Plain, PgTraceWriter Masked, ReplicationStreamContext? Replication);
}
