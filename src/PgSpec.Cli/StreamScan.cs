using System.Buffers.Binary;
using PgSpec.Protocol;

namespace PgSpec.Cli;

/// <summary>What the startup packets of a frontend stream say.</summary>
internal sealed class FrontendStartup
{
    /// <summary>The SSLRequest and GSSENCRequest packets, in order, before the StartupMessage.</summary>
    public List<FrontendMessageKind> EncryptionRequests { get; } = [];

    /// <summary>The version the StartupMessage asks for, if there is one.</summary>
    public PgProtocolVersion? StartupVersion { get; set; }

    /// <summary>Why the scan stopped before a StartupMessage (malformed bytes), or null.</summary>
    public string? Problem { get; set; }
}

/// <summary>What the start of a backend stream says.</summary>
internal sealed class BackendStartup
{
    /// <summary>The one-byte answers to encryption requests ('S', 'N', 'G'), in order.</summary>
    public List<byte> EncryptionAnswers { get; } = [];

    /// <summary>For each authentication request that expects an answer, the 'p' message that answers it.</summary>
    public List<FrontendMessageKind> PasswordMessages { get; } = [];

    /// <summary>Why the scan stopped before the end of authentication (malformed bytes), or null.</summary>
    public string? Problem { get; set; }
}

/// <summary>Looks ahead in streams: which side sent them, and what the other side needs to know.</summary>
internal static class StreamScan
{
    /// <summary>How far the startup packets are looked ahead for: more than any client sends before its StartupMessage.</summary>
    private const int LookAhead = 256 * 1024;

    /// <summary>Guesses who sent a stream from its first bytes; null when they do not tell.</summary>
    public static PgDirection? GuessDirection(ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty)
        {
            return null;
        }

        byte first = bytes[0];
        if (first == 0)
        {
            return PgDirection.Frontend;
        }

        if (CountEncryptionAnswers(bytes) > 0)
        {
            return PgDirection.Backend;
        }

        bool frontend = FrontendMessages.IsDefinedTypeByte(first);
        bool backend = BackendMessages.IsDefinedTypeByte(first);
        return frontend == backend ? null : frontend ? PgDirection.Frontend : PgDirection.Backend;
    }

    /// <summary>
    /// How many one-byte SSL/GSSENC answers a backend stream starts with, judged from the bytes
    /// alone: a byte 'S', 'N' or 'G' followed by the end of the input, 'R', 'E', 'v', another
    /// answer byte or 0x16 (a TLS record). No typed message can start that way within the
    /// limits, since its length word would begin with that second byte. 'S' and 'G' end the
    /// answers (encryption follows).
    /// </summary>
    public static int CountEncryptionAnswers(ReadOnlySpan<byte> bytes)
    {
        int count = 0;
        while (count < bytes.Length && StartsWithEncryptionAnswer(bytes.Slice(count)))
        {
            count++;
            if (bytes[count - 1] != (byte)'N')
            {
                break;
            }
        }

        return count;
    }

    /// <summary>
    /// Whether bytes that follow the encryption answers so far start with another, by the rule of
    /// <see cref="CountEncryptionAnswers"/>: it needs the first two bytes (one at the end of the input).
    /// </summary>
    public static bool StartsWithEncryptionAnswer(ReadOnlySpan<byte> bytes)
        => !bytes.IsEmpty && IsAnswer(bytes[0]) && (bytes.Length == 1 || IsAnswer(bytes[1]) || bytes[1] is (byte)'R' or (byte)'E' or (byte)'v' or 0x16);

    /// <summary>
    /// Reads the startup packets at the start of a frontend stream (one that starts with 0x00),
    /// looking ahead without consuming them: they are decoded again in their turn.
    /// </summary>
    public static FrontendStartup ScanFrontend(InputBuffer input)
    {
        var info = new FrontendStartup();
        if (!input.Ensure(1) || input.Data[0] != 0)
        {
            return info;
        }

        var context = new DecodeContext();
        var reader = new PgMessageReader(PgDirection.Frontend, context);
        int position = 0;
        while (context.Phase == PgSessionPhase.Startup && position < LookAhead)
        {
            PgReadStatus status = reader.TryRead(input.Data.Slice(position), out int consumed, out PgReceivedMessage message, out PgDecodeError error);
            if (status == PgReadStatus.Incomplete)
            {
                if (!input.ReadMore(position + NeededFor(PgFrameKind.StartupPacket, input.Data.Slice(position))))
                {
                    return info;
                }

                continue;
            }

            if (status == PgReadStatus.Malformed)
            {
                info.Problem = error.ToString();
                return info;
            }

            switch (message.FrontendKind)
            {
                case FrontendMessageKind.SSLRequest:
                case FrontendMessageKind.GSSENCRequest:
                    info.EncryptionRequests.Add(message.FrontendKind);
                    position += consumed;
                    if (input.Ensure(position + 1) && input.Data[position] == 0x16)
                    {
                        return info;
                    }

                    break;
                case FrontendMessageKind.StartupMessage:
                    info.StartupVersion = new PgProtocolVersion(BinaryPrimitives.ReadInt32BigEndian(message.Body));
                    return info;
                default:
                    return info;
            }
        }

        return info;
    }

    /// <summary>
    /// Reads a backend stream up to the end of authentication, consuming it: its encryption
    /// answers (as many as <paramref name="answers"/>) and its authentication requests. Stops
    /// quietly at anything malformed, and at the first message that does not belong before the
    /// end of authentication, so a stream that starts later (or never ends) is not read through.
    /// </summary>
    public static BackendStartup ScanBackend(InputBuffer input, int answers, PgProtocolVersion version)
    {
        var info = new BackendStartup();
        var context = new DecodeContext { ProtocolVersion = version, Phase = PgSessionPhase.Authentication };
        var reader = new PgMessageReader(PgDirection.Backend, context);
        while (input.Ensure(1))
        {
            context.ExpectEncryptionAnswer = info.EncryptionAnswers.Count < answers;
            PgReadStatus status = reader.TryRead(input.Data, out int consumed, out PgReceivedMessage message, out PgDecodeError error);
            if (status == PgReadStatus.Incomplete)
            {
                if (!input.ReadMore(NeededFor(context.ExpectEncryptionAnswer ? PgFrameKind.EncryptionAnswer : PgFrameKind.Typed, input.Data)))
                {
                    break;
                }

                continue;
            }

            if (status == PgReadStatus.Malformed)
            {
                info.Problem = error.ToString();
                break;
            }

            if (message.FrameKind == PgFrameKind.EncryptionAnswer)
            {
                info.EncryptionAnswers.Add((byte)message.TypeByte);
                input.Consume(consumed);
                if (message.TypeByte != 'N')
                {
                    break;
                }

                continue;
            }

            BackendMessageKind kind = message.BackendKind;
            input.Consume(consumed);
            FrontendMessageKind answer = PeerDecodeContext.AnswerTo(kind);
            if (answer != FrontendMessageKind.Unknown)
            {
                info.PasswordMessages.Add(answer);
            }

            if (!IsBeforeAuthenticationEnds(kind))
            {
                break;
            }
        }

        return info;
    }

    /// <summary>
    /// How many bytes the frame at the start of <paramref name="bytes"/> needs in all, once a
    /// reader has found it incomplete (its length word, if there, is within the limits).
    /// </summary>
    public static int NeededFor(PgFrameKind kind, ReadOnlySpan<byte> bytes) => kind switch
    {
        PgFrameKind.EncryptionAnswer => 1,
        PgFrameKind.StartupPacket => bytes.Length < 4 ? 4 : BinaryPrimitives.ReadInt32BigEndian(bytes),
        _ => bytes.Length < 5 ? 5 : 1 + BinaryPrimitives.ReadInt32BigEndian(bytes.Slice(1)),
    };

    /// <summary>
    /// What a backend may send before authentication ends (with AuthenticationOk or an error):
    /// what the flow allows in the Authentication phase and keeps it there (authentication
    /// requests, NegotiateProtocolVersion, notices).
    /// </summary>
    private static bool IsBeforeAuthenticationEnds(BackendMessageKind kind)
        => kind != BackendMessageKind.ErrorResponse
            && BackendMessages.IsAllowedIn(kind, PgSessionPhase.Authentication)
            && BackendMessages.NextPhase(kind, PgSessionPhase.Authentication) == PgSessionPhase.Authentication;

    private static bool IsAnswer(byte b) => b is (byte)'S' or (byte)'N' or (byte)'G';
}
