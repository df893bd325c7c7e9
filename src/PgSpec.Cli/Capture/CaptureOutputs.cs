using System.Buffers;
using System.Globalization;
using System.Text.Json;
using PgSpec.Protocol;
using PgSpec.Proxy;

namespace PgSpec.Cli.Capture;

/// <summary>
/// The proxy's trace lines for captured connections: libpq's PQtrace format, with the
/// connection id and the capture's timestamps (local time, as libpq prints) when asked, secrets
/// hidden as the proxy hides them; events are comment lines (<c># ...</c>); replication streams
/// decoded below their CopyData when asked (the proxy's <c>--trace-replication</c>).
/// </summary>
internal sealed class TraceCaptureOutput : ICaptureOutput
{
    private readonly PqTraceSink _sink;
    private DateTime _time;

    public TraceCaptureOutput(Stream output, bool regress, bool timestamps, bool connectionIds, bool showSecrets, bool replication = false)
    {
        var options = new PgTraceOptions { Regress = regress, Timestamps = timestamps, Clock = () => _time.ToLocalTime() };
        _sink = new PqTraceSink(output, options, connectionIds, showSecrets) { Replication = replication };
    }

    public void Message(long connection, DateTime time, PgReceivedMessage message, DecodeContext context)
    {
        _time = time;
        _sink.Write(connection, message, context);
    }

    public void Event(long connection, DateTime time, CaptureEvent kind, string text, long bytes = 0)
    {
        _time = time;
        _sink.Note(connection, $"connection {connection} {Name(kind)}: {text}");
        if (kind == CaptureEvent.Ended)
        {
            _sink.EndConnection(connection);
        }
    }

    internal static string Name(CaptureEvent kind) => kind switch
    {
        CaptureEvent.Connection => "seen",
        CaptureEvent.MidStream => "mid-stream",
        CaptureEvent.Gap => "gap",
        CaptureEvent.Resumed => "resumed",
        CaptureEvent.Encrypted => "encrypted",
        CaptureEvent.Malformed => "malformed",
        CaptureEvent.Skipped => "skipped",
        _ => "ended",
    };
}

/// <summary>
/// JSON lines for captured connections: <c>pgspec decode</c>'s objects with the connection
/// number (and the capture's time when asked), and one object per event:
/// <c>{"connection": N, "time": "...", "event": "gap", "bytes": N, "text": "..."}</c>.
/// </summary>
internal sealed class JsonCaptureOutput(Stream output, bool hideSecrets, bool timestamps) : ICaptureOutput
{
    private readonly Dictionary<long, JsonOutput> _outputs = new();
    private readonly ArrayBufferWriter<byte> _line = new(256);
    private DateTime _time;

    public void Message(long connection, DateTime time, PgReceivedMessage message, DecodeContext context)
    {
        _time = time;
        if (!_outputs.TryGetValue(connection, out JsonOutput? json))
        {
            json = new JsonOutput(output, connection, hideSecrets, timestamps, () => _time.ToLocalTime());
            _outputs[connection] = json;
        }

        json.Write(message, context);
    }

    public void Event(long connection, DateTime time, CaptureEvent kind, string text, long bytes = 0)
    {
        _line.ResetWrittenCount();
        using (var writer = new Utf8JsonWriter(_line))
        {
            writer.WriteStartObject();
            writer.WriteNumber("connection", connection);
            if (timestamps)
            {
                writer.WriteString("time", time.ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss.ffffff", CultureInfo.InvariantCulture));
            }

            writer.WriteString("event", TraceCaptureOutput.Name(kind));
            if (kind is CaptureEvent.Gap or CaptureEvent.Resumed or CaptureEvent.Malformed or CaptureEvent.Skipped)
            {
                writer.WriteNumber("bytes", bytes);
            }

            writer.WriteString("text", text);
            writer.WriteEndObject();
        }

        _line.Write("\n"u8);
        output.Write(_line.WrittenSpan);
        if (kind == CaptureEvent.Ended)
        {
            _outputs.Remove(connection);
        }
    }
}

/// <summary>
/// An output whose Flush waits for <see cref="FlushNow"/>: the trace sinks flush after every
/// message, which for a capture of millions would be a system call each.
/// </summary>
internal sealed class DeferredFlushStream(Stream inner) : Stream
{
    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Flush()
    {
    }

    /// <summary>Writes out what is buffered.</summary>
    public void FlushNow() => inner.Flush();

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);

    public override void Write(ReadOnlySpan<byte> buffer) => inner.Write(buffer);
}
