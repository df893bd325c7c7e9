namespace PgSpec.Protocol.Tests;

/// <summary>
/// <see cref="DecodeContext.LearnsNothingFrom"/> lets a derived context pass messages by without
/// its own work: it must be true only of kinds whose observation changes nothing, in any phase and
/// whatever the context has learnt before.
/// </summary>
public class DecodeContextLearningTests
{
    [Fact]
    public void A_kind_said_to_teach_nothing_changes_no_context_in_any_state()
    {
        byte[][] bodies = [[], [0, 0, 0, 5], [0, 3, 0, 0, 0, 0], [0, 0, 0, 10, 0, 0, 0, 0]];
        int inert = 0;
        foreach (BackendMessageKind kind in Enum.GetValues<BackendMessageKind>())
        {
            if (!DecodeContext.LearnsNothingFrom(kind))
            {
                continue;
            }

            inert++;
            foreach (DecodeContext context in States())
            {
                foreach (byte[] body in bodies)
                {
                    DecodeContext observed = Copy(context);
                    observed.ObserveBackend(kind, body);
                    Assert.True(Describe(observed) == Describe(context), $"{kind} changed the context from {Describe(context)} to {Describe(observed)}");
                    Assert.Same(context.Limits, observed.Limits);
                }
            }
        }

        Assert.True(inert >= 10, $"only {inert} kinds teach nothing");
    }

    [Theory]
    [InlineData(BackendMessageKind.DataRow, true)]
    [InlineData(BackendMessageKind.CommandComplete, true)]
    [InlineData(BackendMessageKind.RowDescription, true)]
    [InlineData(BackendMessageKind.Unknown, false)]
    [InlineData(BackendMessageKind.ReadyForQuery, false)]
    [InlineData(BackendMessageKind.CopyInResponse, false)]
    [InlineData(BackendMessageKind.CopyOutResponse, false)]
    [InlineData(BackendMessageKind.CopyDone, false)]
    [InlineData(BackendMessageKind.AuthenticationMD5Password, false)]
    [InlineData(BackendMessageKind.AuthenticationSASLContinue, false)]
    [InlineData(BackendMessageKind.AuthenticationOk, false)]
    [InlineData(BackendMessageKind.NegotiateProtocolVersion, false)]
    public void Only_kinds_that_teach_nothing_are_said_to(BackendMessageKind kind, bool learnsNothing)
        => Assert.Equal(learnsNothing, DecodeContext.LearnsNothingFrom(kind));

    private static IEnumerable<DecodeContext> States()
    {
        foreach (PgSessionPhase phase in Enum.GetValues<PgSessionPhase>())
        {
            foreach (PgProtocolVersion version in new[] { PgProtocolVersion.V3_0, PgProtocolVersion.Latest })
            {
                foreach (FrontendMessageKind expected in new[] { FrontendMessageKind.Unknown, FrontendMessageKind.PasswordMessage, FrontendMessageKind.SASLResponse })
                {
                    yield return new DecodeContext { Phase = phase, ProtocolVersion = version, ExpectedPasswordMessage = expected };
                }
            }

            yield return new DecodeContext { Phase = phase, ExpectEncryptionAnswer = true, LastEncryptionRequest = FrontendMessageKind.SSLRequest };
        }
    }

    private static DecodeContext Copy(DecodeContext context) => new()
    {
        Phase = context.Phase,
        ProtocolVersion = context.ProtocolVersion,
        ExpectedPasswordMessage = context.ExpectedPasswordMessage,
        ExpectEncryptionAnswer = context.ExpectEncryptionAnswer,
        LastEncryptionRequest = context.LastEncryptionRequest,
        Limits = context.Limits,
    };

    private static string Describe(DecodeContext context)
        => $"{context.Phase} {context.ProtocolVersion} {context.ExpectedPasswordMessage} {context.ExpectEncryptionAnswer} {context.LastEncryptionRequest}";
}
