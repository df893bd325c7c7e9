using System.Buffers;
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
}

/// <summary>What the start of a backend stream says.</summary>
internal sealed class BackendStartup
{
    /// <summary>The one-byte answers to encryption requests ('S', 'N', 'G'), in order.</summary>
    public List<byte> EncryptionAnswers { get; } = [];

    /// <summary>For each authentication request that expects an answer, the 'p' message that answers it.</summary>
    public List<FrontendMessageKind> PasswordMessages { get; } = [];
}

/// <summary>Looks ahead in streams: which side sent them, and what the other side needs to know.</summary>
internal static class StreamScan
{
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
        while (count < bytes.Length && IsAnswer(bytes[count]))
        {
            if (count + 1 < bytes.Length && !(IsAnswer(bytes[count + 1]) || bytes[count + 1] is (byte)'R' or (byte)'E' or (byte)'v' or 0x16))
            {
                break;
            }

            count++;
            if (bytes[count - 1] != (byte)'N')
            {
                break;
            }
        }

        return count;
    }

    /// <summary>Reads the startup packets of a frontend stream (one that starts with 0x00).</summary>
    public static FrontendStartup ScanFrontend(byte[] bytes)
    {
        var info = new FrontendStartup();
        if (bytes.Length == 0 || bytes[0] != 0)
        {
            return info;
        }

        var context = new DecodeContext();
        var reader = new PgMessageReader(PgDirection.Frontend, context);
        var buffer = new ReadOnlySequence<byte>(bytes);
        while (context.Phase == PgSessionPhase.Startup && reader.TryRead(ref buffer, out PgReceivedMessage message, out _) == PgReadStatus.Message)
        {
            switch (message.FrontendKind)
            {
                case FrontendMessageKind.SSLRequest:
                case FrontendMessageKind.GSSENCRequest:
                    info.EncryptionRequests.Add(message.FrontendKind);
                    if (!buffer.IsEmpty && buffer.FirstSpan[0] == 0x16)
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
    /// Reads a backend stream up to the end of authentication: its encryption answers (as many
    /// as <paramref name="answers"/>, or as the bytes suggest when null) and its authentication
    /// requests. Stops quietly at anything malformed.
    /// </summary>
    public static BackendStartup ScanBackend(byte[] bytes, int? answers, PgProtocolVersion version)
    {
        var info = new BackendStartup();
        int expected = answers ?? CountEncryptionAnswers(bytes);
        var context = new DecodeContext { ProtocolVersion = version, Phase = PgSessionPhase.Authentication };
        var reader = new PgMessageReader(PgDirection.Backend, context);
        var buffer = new ReadOnlySequence<byte>(bytes);
        while (!buffer.IsEmpty)
        {
            context.ExpectEncryptionAnswer = info.EncryptionAnswers.Count < expected;
            if (reader.TryRead(ref buffer, out PgReceivedMessage message, out _) != PgReadStatus.Message)
            {
                break;
            }

            if (message.FrameKind == PgFrameKind.EncryptionAnswer)
            {
                info.EncryptionAnswers.Add((byte)message.TypeByte);
                if (message.TypeByte != 'N')
                {
                    break;
                }

                continue;
            }

            FrontendMessageKind answer = PeerDecodeContext.AnswerTo(message.BackendKind);
            if (answer != FrontendMessageKind.Unknown)
            {
                info.PasswordMessages.Add(answer);
            }

            if (message.BackendKind is BackendMessageKind.AuthenticationOk or BackendMessageKind.ErrorResponse)
            {
                break;
            }
        }

        return info;
    }

    private static bool IsAnswer(byte b) => b is (byte)'S' or (byte)'N' or (byte)'G';
}
