using PgSpec.Protocol;

namespace PgSpec.Protocol.Tests;

/// <summary>The protocol's flow as the spec says it ('answered-by', 'by-context'), and the decode context that follows it.</summary>
public class FlowTests
{
    [Theory]
    [InlineData(BackendMessageKind.AuthenticationCleartextPassword, FrontendMessageKind.PasswordMessage)]
    [InlineData(BackendMessageKind.AuthenticationMD5Password, FrontendMessageKind.PasswordMessage)]
    [InlineData(BackendMessageKind.AuthenticationSASL, FrontendMessageKind.SASLInitialResponse)]
    [InlineData(BackendMessageKind.AuthenticationSASLContinue, FrontendMessageKind.SASLResponse)]
    [InlineData(BackendMessageKind.AuthenticationGSS, FrontendMessageKind.GSSResponse)]
    [InlineData(BackendMessageKind.AuthenticationGSSContinue, FrontendMessageKind.GSSResponse)]
    [InlineData(BackendMessageKind.AuthenticationSSPI, FrontendMessageKind.GSSResponse)]
    [InlineData(BackendMessageKind.AuthenticationOk, FrontendMessageKind.Unknown)]
    [InlineData(BackendMessageKind.AuthenticationSASLFinal, FrontendMessageKind.Unknown)]
    [InlineData(BackendMessageKind.ReadyForQuery, FrontendMessageKind.Unknown)]
    public void EachAuthenticationRequest_IsAnsweredByThePMessagePostgresqlExpects_AndTheContextExpectsIt(BackendMessageKind request, FrontendMessageKind answer)
    {
        Assert.Equal(answer, BackendMessages.AnsweredBy(request));

        var context = new DecodeContext { Phase = PgSessionPhase.Authentication };
        context.ObserveBackend(request, ReadOnlySpan<byte>.Empty);
        Assert.Equal(answer, context.ExpectedPasswordMessage);
        Assert.Equal(answer == FrontendMessageKind.Unknown ? FrontendMessageKind.Unknown : answer, context.ResolveFrontendByContext((byte)'p'));

        if (answer != FrontendMessageKind.Unknown)
        {
            // Once answered, nothing is expected until the next request.
            context.ObserveFrontend(answer, ReadOnlySpan<byte>.Empty);
            Assert.Equal(FrontendMessageKind.Unknown, context.ExpectedPasswordMessage);
        }
    }

    [Fact]
    public void TheByContextFamily_IsExactlyTheFourPMessages_AndEveryOneAnswersSomeRequest()
    {
        FrontendMessageKind[] family = FrontendMessages.All.Where(FrontendMessages.IsByContext).ToArray();

        Assert.Equal([FrontendMessageKind.GSSResponse, FrontendMessageKind.PasswordMessage, FrontendMessageKind.SASLInitialResponse, FrontendMessageKind.SASLResponse], family.Order());
        Assert.All(family, kind => Assert.Contains(BackendMessages.All, request => BackendMessages.AnsweredBy(request) == kind));
        Assert.All(family, kind => Assert.Equal((byte)'p', FrontendMessages.TypeByteOf(kind)));
    }

    [Fact]
    public void TheSecretMessages_AreThePasswordAndTheSaslAndGssExchangeData_OfBothDirections()
    {
        Assert.Equal(
            [FrontendMessageKind.GSSResponse, FrontendMessageKind.PasswordMessage, FrontendMessageKind.SASLInitialResponse, FrontendMessageKind.SASLResponse],
            FrontendMessages.All.Where(FrontendMessages.IsSecret).Order());
        Assert.Equal(
            [BackendMessageKind.AuthenticationGSSContinue, BackendMessageKind.AuthenticationSASLContinue, BackendMessageKind.AuthenticationSASLFinal],
            BackendMessages.All.Where(BackendMessages.IsSecret).Order());
    }
}
