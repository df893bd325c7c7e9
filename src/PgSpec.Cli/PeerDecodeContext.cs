using PgSpec.Protocol;

namespace PgSpec.Cli;

/// <summary>
/// A decode context for one direction read on its own: the 'p' messages are named from a list
/// made in advance from the other direction (the i-th 'p' answers the i-th authentication
/// request that expects an answer), since the backend's requests are not seen as they arrive.
/// </summary>
internal sealed class PeerDecodeContext : DecodeContext
{
    private readonly Queue<FrontendMessageKind>? _passwordMessages;

    /// <summary>Creates the context; <paramref name="passwordMessages"/> is null when the other direction is unknown.</summary>
    public PeerDecodeContext(IEnumerable<FrontendMessageKind>? passwordMessages)
    {
        _passwordMessages = passwordMessages is null ? null : new Queue<FrontendMessageKind>(passwordMessages);
    }

    /// <inheritdoc/>
    public override FrontendMessageKind ResolveFrontendByContext(byte typeByte)
    {
        if (typeByte == (byte)'p' && _passwordMessages is not null)
        {
            return _passwordMessages.TryPeek(out FrontendMessageKind kind) ? kind : FrontendMessageKind.Unknown;
        }

        return base.ResolveFrontendByContext(typeByte);
    }

    /// <inheritdoc/>
    public override void ObserveFrontend(FrontendMessageKind kind, ReadOnlySpan<byte> body)
    {
        base.ObserveFrontend(kind, body);
        if (_passwordMessages is not null && IsPasswordMessage(kind))
        {
            _passwordMessages.TryDequeue(out _);
        }
    }

    /// <summary>The 'p' message that answers an authentication request (the spec's 'answered-by'), or Unknown if the request expects none.</summary>
    public static FrontendMessageKind AnswerTo(BackendMessageKind request) => BackendMessages.AnsweredBy(request);

    private static bool IsPasswordMessage(FrontendMessageKind kind) => FrontendMessages.IsByContext(kind);
}
