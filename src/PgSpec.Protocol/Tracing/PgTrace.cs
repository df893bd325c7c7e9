using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace PgSpec.Protocol;

/// <summary>Writes the trace line of a message body already validated (generated trace formatters have this shape).</summary>
public delegate void PgBodyTracer(ReadOnlySpan<byte> body, PgTraceWriter trace, char direction);

/// <summary>Traces whole messages, including those no spec names, as libpq 18 does.</summary>
public static class PgTrace
{
    /// <summary>
    /// Traces a typed message. Known messages are validated first; a malformed one gives false and
    /// the error, and writes nothing. Unknown type bytes, authentication sub-codes and 'p' messages
    /// the context cannot name are printed as libpq prints them.
    /// </summary>
    public static bool TryTrace(PgDirection direction, byte typeByte, ReadOnlySpan<byte> body, DecodeContext? context, PgTraceWriter trace, out PgDecodeError error)
    {
        ArgumentNullException.ThrowIfNull(trace);
        error = default;
        if (direction == PgDirection.Frontend)
        {
            FrontendMessageKind kind = FrontendMessages.Classify(typeByte, body, context);
            if (kind != FrontendMessageKind.Unknown)
            {
                if (!FrontendMessages.TryValidate(kind, body, context, out error))
                {
                    return false;
                }

                FrontendMessages.TraceValidated(kind, body, trace);
                return true;
            }

            string name = typeByte == (byte)'p' ? "UnknownAuthenticationResponse" : UnknownName(typeByte);
            trace.BeginMessage('F', body.Length + 4, name, maskLength: false, hasFields: false);
            trace.EndMessage(4, body.Length + 4, checkLength: true);
            return true;
        }
        else
        {
            BackendMessageKind kind = BackendMessages.Classify(typeByte, body, context);
            if (kind != BackendMessageKind.Unknown)
            {
                if (!BackendMessages.TryValidate(kind, body, context, out error))
                {
                    return false;
                }

                BackendMessages.TraceValidated(kind, body, trace);
                return true;
            }

            if (typeByte == (byte)'R' && body.Length >= 4)
            {
                int code = BinaryPrimitives.ReadInt32BigEndian(body);
                trace.BeginMessage('B', body.Length + 4, "Unknown authentication message " + code.ToString(CultureInfo.InvariantCulture), maskLength: false, hasFields: false);
                trace.EndMessage(8, body.Length + 4, checkLength: true);
                return true;
            }

            trace.BeginMessage('B', body.Length + 4, UnknownName(typeByte), maskLength: false, hasFields: false);
            trace.EndMessage(4, body.Length + 4, checkLength: true);
            return true;
        }
    }

    /// <summary>Traces an untyped startup-phase packet (<paramref name="body"/> starts at its code).</summary>
    public static bool TryTraceStartup(ReadOnlySpan<byte> body, DecodeContext? context, PgTraceWriter trace, out PgDecodeError error)
    {
        ArgumentNullException.ThrowIfNull(trace);
        FrontendMessageKind kind = FrontendMessages.ClassifyStartup(body);
        if (kind == FrontendMessageKind.Unknown)
        {
            error = default;
            trace.BeginMessage('F', body.Length + 4, "Unknown message", maskLength: false, hasFields: false);
            trace.EndMessage(0, 0, checkLength: false);
            return true;
        }

        if (!FrontendMessages.TryValidate(kind, body, context, out error))
        {
            return false;
        }

        FrontendMessages.TraceValidated(kind, body, trace);
        return true;
    }

    /// <summary>libpq's name for a type byte it does not know: "Unknown message: 59", with a signed char's hex.</summary>
    public static string UnknownName(byte typeByte)
        => "Unknown message: " + (typeByte >= 0x80 ? "ffffff" : "") + typeByte.ToString("x2", CultureInfo.InvariantCulture);

    /// <summary>
    /// One trace line (without the newline) describing a message of a set of one's own (generated from
    /// a spec of one's own): <paramref name="tracer"/> traces its body as sent by <paramref name="direction"/>.
    /// </summary>
    public static string Describe(IPgMessage message, char direction, PgBodyTracer tracer)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(tracer);
        byte[] bytes;
        try
        {
            bytes = message.ToArray(PgProtocolVersion.Latest, PgLimits.Create(static (_, _) => int.MaxValue, int.MaxValue));
        }
        catch (PgEncodeException e)
        {
            return message.Name + " (cannot be encoded: " + e.Reason + ")";
        }

        using var output = new MemoryStream();
        tracer(bytes.AsSpan(message.TypeByte < 0 ? 4 : 5), new PgTraceWriter(output), direction);
        string text = Encoding.UTF8.GetString(output.ToArray()).TrimEnd('\n');
        return text.Length > 0 ? text : message.Name;
    }

    /// <summary>One trace line (without the newline) describing a message, for logs and test output.</summary>
    public static string Describe(IPgMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        byte[] bytes;
        try
        {
            bytes = message.ToArray(PgProtocolVersion.Latest, PgLimits.Default.WithAll(PgDirection.Frontend, int.MaxValue).WithAll(PgDirection.Backend, int.MaxValue).WithStartupPacket(int.MaxValue));
        }
        catch (PgEncodeException e)
        {
            return message.Name + " (cannot be encoded: " + e.Reason + ")";
        }

        using var output = new MemoryStream();
        var writer = new PgTraceWriter(output);
        var context = new DecodeContext();
        if (message is IFrontendMessage f && FrontendMessages.IsByContext(f.FrontendKind))
        {
            context.ExpectedPasswordMessage = f.FrontendKind;
        }

        PgDirection direction = message is IFrontendMessage ? PgDirection.Frontend : PgDirection.Backend;
        bool ok = message.TypeByte < 0
            ? TryTraceStartup(bytes.AsSpan(4), context, writer, out _)
            : TryTrace(direction, (byte)message.TypeByte, bytes.AsSpan(5), context, writer, out _);
        string text = ok ? Encoding.UTF8.GetString(output.ToArray()).TrimEnd('\n') : "";
        return text.Length > 0 ? text : message.Name; // a message libpq does not trace, or cannot
    }
}
