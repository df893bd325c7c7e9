using System.Buffers;
using System.Text;
using System.Text.Json;

namespace PgSpec.Protocol;

/// <summary>
/// A message carried inside a field of another message, in a family the specs declare
/// (<c>family Replication in CopyData.data</c>): it starts with its type byte and has no length word;
/// its body runs to the end of the field.
/// </summary>
public interface IPgSubMessage
{
    /// <summary>The message name.</summary>
    string Name { get; }

    /// <summary>The type byte that starts it.</summary>
    byte TypeByte { get; }

    /// <summary>The family it belongs to.</summary>
    string Family { get; }

    /// <summary>The side that sends it.</summary>
    PgDirection Direction { get; }

    /// <summary>The number of bytes it encodes to: its type byte and its body.</summary>
    int EncodedLength { get; }

    /// <summary>Throws <see cref="PgEncodeException"/> if the message cannot be encoded as it is.</summary>
    void Validate();

    /// <summary>Validates, then writes the message.</summary>
    void Encode(IBufferWriter<byte> writer);

    /// <summary>Validates, then writes the message into a span; returns the bytes written.</summary>
    int Encode(Span<byte> destination);

    /// <summary>Validates and encodes into a new array: the payload of the carrier's field.</summary>
    byte[] ToArray();

    /// <summary>Writes the message as a line in libpq's trace layout.</summary>
    void Trace(PgTraceWriter trace, char direction);

    /// <summary>Writes the message as a JSON object: name, type byte, fields.</summary>
    void WriteJson(Utf8JsonWriter writer);
}

/// <summary>Helpers of the generated sub-message families.</summary>
public static class PgSubMessages
{
    /// <summary>The message's trace line (without the newline), for logs and test output.</summary>
    public static string Describe(IPgSubMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        try
        {
            message.Validate();
        }
        catch (PgEncodeException e)
        {
            return message.Name + " (cannot be encoded: " + e.Reason + ")";
        }

        return Capture(trace => message.Trace(trace, message.Direction == PgDirection.Frontend ? 'F' : 'B'));
    }

    /// <summary>What <paramref name="fields"/> writes to a trace line, without its leading space: a part or a group item, for logs.</summary>
    public static string Describe(Action<PgTraceWriter> fields)
    {
        ArgumentNullException.ThrowIfNull(fields);
        string line = Capture(trace =>
        {
            trace.BeginMessage('B', 0, "-", maskLength: false, hasFields: true);
            fields(trace);
            trace.EndMessage(0, 0, checkLength: false);
        });

        // "B TAB 0 TAB - TAB fields": the fields alone.
        int start = line.IndexOf("\t-\t", StringComparison.Ordinal);
        return start < 0 ? line : line[(start + 3)..].TrimStart();
    }

    private static string Capture(Action<PgTraceWriter> write)
    {
        using var output = new MemoryStream();
        var trace = new PgTraceWriter(output);
        try
        {
            write(trace);
        }
        catch (ArgumentNullException)
        {
            return "(incomplete)";
        }

        return Encoding.UTF8.GetString(output.ToArray()).Trim('\n');
    }
}
