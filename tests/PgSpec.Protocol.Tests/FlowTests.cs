using PgSpec.Protocol;

namespace PgSpec.Protocol.Tests;

/// <summary>
/// The protocol's flow as the spec says it ('answered-by', 'by-context', the phases of 'in',
/// 'ignored-in' and 'enters', the extended query rules), checked against PostgreSQL's documented
/// rules, and the decode context that follows it.
/// </summary>
public class FlowTests
{
    private static readonly PgSessionPhase[] s_phases = Enum.GetValues<PgSessionPhase>();
    private static readonly PgSessionPhase[] s_afterAuthentication = [PgSessionPhase.Normal, PgSessionPhase.CopyIn, PgSessionPhase.CopyOut, PgSessionPhase.CopyBoth];

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

    [Theory]
    [InlineData(BackendMessageKind.CopyInResponse, PgSessionPhase.CopyIn)]
    [InlineData(BackendMessageKind.CopyOutResponse, PgSessionPhase.CopyOut)]
    [InlineData(BackendMessageKind.CopyBothResponse, PgSessionPhase.CopyBoth)]
    public void EachCopyResponse_IsSentInTheNormalPhase_AndEntersItsCopyPhase(BackendMessageKind response, PgSessionPhase copy)
    {
        Assert.Equal([PgSessionPhase.Normal], s_phases.Where(phase => BackendMessages.IsAllowedIn(response, phase)));
        Assert.Equal(copy, BackendMessages.NextPhase(response, PgSessionPhase.Normal));
    }

    [Fact]
    public void ReadyForQueryAndAuthenticationOk_EnterNormal_WhateverThePhase()
    {
        Assert.All(s_phases, phase => Assert.Equal(PgSessionPhase.Normal, BackendMessages.NextPhase(BackendMessageKind.ReadyForQuery, phase)));
        Assert.All(s_phases, phase => Assert.Equal(PgSessionPhase.Normal, BackendMessages.NextPhase(BackendMessageKind.AuthenticationOk, phase)));
        Assert.Equal([PgSessionPhase.Normal], s_phases.Where(phase => BackendMessages.IsAllowedIn(BackendMessageKind.ReadyForQuery, phase)));
        Assert.Equal([PgSessionPhase.Authentication], s_phases.Where(phase => BackendMessages.IsAllowedIn(BackendMessageKind.AuthenticationOk, phase)));
    }

    [Fact]
    public void TheStartupPhase_IsTheUntypedPackets_AndStartupMessageEntersAuthentication()
    {
        FrontendMessageKind[] untyped = [.. FrontendMessages.All.Where(kind => FrontendMessages.TypeByteOf(kind) < 0)];
        Assert.Equal(untyped.Order(), FrontendMessages.All.Where(kind => FrontendMessages.IsAllowedIn(kind, PgSessionPhase.Startup)).Order());
        Assert.All(untyped, kind => Assert.Equal([PgSessionPhase.Startup], s_phases.Where(phase => FrontendMessages.IsAllowedIn(kind, phase))));
        Assert.Equal(PgSessionPhase.Authentication, FrontendMessages.NextPhase(FrontendMessageKind.StartupMessage, PgSessionPhase.Startup));

        // The encryption requests and CancelRequest leave the phase alone (the answer is one byte, or nothing).
        Assert.All(untyped.Where(kind => kind != FrontendMessageKind.StartupMessage), kind => Assert.Equal(PgSessionPhase.Startup, FrontendMessages.NextPhase(kind, PgSessionPhase.Startup)));

        // Before StartupMessage the backend sends no message but an ErrorResponse (a server too old for SSLRequest).
        Assert.Equal([BackendMessageKind.ErrorResponse], BackendMessages.All.Where(kind => BackendMessages.IsAllowedIn(kind, PgSessionPhase.Startup)));
    }

    [Fact]
    public void DuringAuthentication_TheFrontendSendsOnlyThePMessages_AndTheBackendTheRequestsErrorsNoticesAndNegotiation()
    {
        Assert.Equal(
            FrontendMessages.All.Where(FrontendMessages.IsByContext).Order(),
            FrontendMessages.All.Where(kind => FrontendMessages.IsAllowedIn(kind, PgSessionPhase.Authentication)).Order());

        BackendMessageKind[] requests = [.. BackendMessages.All.Where(kind => BackendMessages.TypeByteOf(kind) == 'R')];
        Assert.Equal(
            requests.Concat([BackendMessageKind.ErrorResponse, BackendMessageKind.NoticeResponse, BackendMessageKind.NegotiateProtocolVersion]).Order(),
            BackendMessages.All.Where(kind => BackendMessages.IsAllowedIn(kind, PgSessionPhase.Authentication)).Order());
    }

    [Fact]
    public void InCopyIn_TheFrontendSendsTheCopyMessages_AndFlushAndSync_WhichTheServerIgnores()
    {
        Assert.Equal(
            new[] { FrontendMessageKind.CopyData, FrontendMessageKind.CopyDone, FrontendMessageKind.CopyFail, FrontendMessageKind.Flush, FrontendMessageKind.Sync }.Order(),
            FrontendMessages.All.Where(kind => FrontendMessages.IsAllowedIn(kind, PgSessionPhase.CopyIn)).Order());
        Assert.Equal(
            new[] { FrontendMessageKind.Flush, FrontendMessageKind.Sync }.Order(),
            FrontendMessages.All.Where(kind => FrontendMessages.IsIgnoredIn(kind, PgSessionPhase.CopyIn)).Order());

        // Any other message aborts the copy (PostgreSQL: "unexpected message type ... during COPY from stdin").
        Assert.False(FrontendMessages.IsAllowedIn(FrontendMessageKind.Query, PgSessionPhase.CopyIn));
        Assert.False(FrontendMessages.IsAllowedIn(FrontendMessageKind.Parse, PgSessionPhase.CopyIn));

        // The backend sends nothing there but errors and the asynchronous messages.
        Assert.Equal(
            new[] { BackendMessageKind.ErrorResponse, BackendMessageKind.NoticeResponse, BackendMessageKind.NotificationResponse, BackendMessageKind.ParameterStatus }.Order(),
            BackendMessages.All.Where(kind => BackendMessages.IsAllowedIn(kind, PgSessionPhase.CopyIn)).Order());
    }

    [Fact]
    public void InCopyOut_TheBackendSendsCopyDataAndCopyDone_AmongErrorsAndTheAsynchronousMessages()
    {
        Assert.Equal(
            new[] { BackendMessageKind.CopyData, BackendMessageKind.CopyDone, BackendMessageKind.ErrorResponse, BackendMessageKind.NoticeResponse, BackendMessageKind.NotificationResponse, BackendMessageKind.ParameterStatus }.Order(),
            BackendMessages.All.Where(kind => BackendMessages.IsAllowedIn(kind, PgSessionPhase.CopyOut)).Order());
        Assert.Equal(
            new[] { BackendMessageKind.CopyData, BackendMessageKind.CopyDone, BackendMessageKind.ErrorResponse, BackendMessageKind.NoticeResponse, BackendMessageKind.NotificationResponse, BackendMessageKind.ParameterStatus }.Order(),
            BackendMessages.All.Where(kind => BackendMessages.IsAllowedIn(kind, PgSessionPhase.CopyBoth)).Order());

        // The frontend cannot take part in a copy-out: it may only end the connection.
        Assert.Equal([FrontendMessageKind.Terminate], FrontendMessages.All.Where(kind => FrontendMessages.IsAllowedIn(kind, PgSessionPhase.CopyOut)));
        Assert.Equal(
            new[] { FrontendMessageKind.CopyData, FrontendMessageKind.CopyDone, FrontendMessageKind.Terminate }.Order(),
            FrontendMessages.All.Where(kind => FrontendMessages.IsAllowedIn(kind, PgSessionPhase.CopyBoth)).Order());
    }

    [Fact]
    public void TheAsynchronousMessages_MayComeInEveryPhaseAfterAuthentication()
    {
        foreach (BackendMessageKind kind in new[] { BackendMessageKind.NoticeResponse, BackendMessageKind.ParameterStatus, BackendMessageKind.NotificationResponse, BackendMessageKind.ErrorResponse })
        {
            Assert.All(s_afterAuthentication, phase => Assert.True(BackendMessages.IsAllowedIn(kind, phase), $"{kind} in {phase}"));
        }

        // A notice may come during authentication too; an error at any time.
        Assert.True(BackendMessages.IsAllowedIn(BackendMessageKind.NoticeResponse, PgSessionPhase.Authentication));
        Assert.All(s_phases, phase => Assert.True(BackendMessages.IsAllowedIn(BackendMessageKind.ErrorResponse, phase)));
    }

    [Theory]
    [InlineData(PgSessionPhase.CopyIn, PgSessionPhase.Normal)]
    [InlineData(PgSessionPhase.CopyBoth, PgSessionPhase.CopyOut)]
    [InlineData(PgSessionPhase.Normal, PgSessionPhase.Normal)]
    [InlineData(PgSessionPhase.CopyOut, PgSessionPhase.CopyOut)]
    public void TheFrontendsCopyDone_EndsItsOwnCopy(PgSessionPhase before, PgSessionPhase after)
        => Assert.Equal(after, FrontendMessages.NextPhase(FrontendMessageKind.CopyDone, before));

    [Theory]
    [InlineData(PgSessionPhase.CopyOut, PgSessionPhase.Normal)]
    [InlineData(PgSessionPhase.CopyBoth, PgSessionPhase.CopyIn)]
    [InlineData(PgSessionPhase.Normal, PgSessionPhase.Normal)]
    [InlineData(PgSessionPhase.CopyIn, PgSessionPhase.CopyIn)]
    public void TheBackendsCopyDone_EndsItsOwnCopy(PgSessionPhase before, PgSessionPhase after)
        => Assert.Equal(after, BackendMessages.NextPhase(BackendMessageKind.CopyDone, before));

    [Fact]
    public void CopyFail_EndsCopyIn_AndErrorResponse_EndsEveryCopyMode()
    {
        Assert.Equal(PgSessionPhase.Normal, FrontendMessages.NextPhase(FrontendMessageKind.CopyFail, PgSessionPhase.CopyIn));
        Assert.Equal([PgSessionPhase.CopyIn], s_phases.Where(phase => FrontendMessages.IsAllowedIn(FrontendMessageKind.CopyFail, phase) && !FrontendMessages.IsIgnoredIn(FrontendMessageKind.CopyFail, phase)));
        foreach (PgSessionPhase phase in s_phases)
        {
            PgSessionPhase expected = phase is PgSessionPhase.CopyIn or PgSessionPhase.CopyOut or PgSessionPhase.CopyBoth ? PgSessionPhase.Normal : phase;
            Assert.Equal(expected, BackendMessages.NextPhase(BackendMessageKind.ErrorResponse, phase));
        }
    }

    [Fact]
    public void AfterACopy_EachSideDropsTheOthersCopyMessagesThatStillCome()
    {
        // The server, those of a frontend that goes on after a failed COPY (the docs); a frontend,
        // those of a server that goes on after its CopyDone (libpq; walsender does so).
        Assert.Equal(
            new[] { FrontendMessageKind.CopyData, FrontendMessageKind.CopyDone, FrontendMessageKind.CopyFail }.Order(),
            FrontendMessages.All.Where(kind => FrontendMessages.IsIgnoredIn(kind, PgSessionPhase.Normal)).Order());
        Assert.Equal(
            new[] { BackendMessageKind.CopyData, BackendMessageKind.CopyDone }.Order(),
            BackendMessages.All.Where(kind => BackendMessages.IsIgnoredIn(kind, PgSessionPhase.Normal)).Order());
        Assert.All(
            FrontendMessages.All.Where(kind => FrontendMessages.IsAllowedIn(kind, PgSessionPhase.Normal)),
            kind => Assert.Equal(PgSessionPhase.Normal, FrontendMessages.NextPhase(kind, PgSessionPhase.Normal)));
        Assert.All(
            BackendMessages.All.Where(kind => BackendMessages.IsIgnoredIn(kind, PgSessionPhase.Normal)),
            kind => Assert.Equal(PgSessionPhase.Normal, BackendMessages.NextPhase(kind, PgSessionPhase.Normal)));
        Assert.DoesNotContain(BackendMessages.All, kind => s_phases.Where(phase => phase != PgSessionPhase.Normal).Any(phase => BackendMessages.IsIgnoredIn(kind, phase)));
    }

    [Fact]
    public void TheExtendedQueryProtocol_IsParseBindDescribeExecuteCloseFlushAndSync_AndSyncEndsTheSkipAfterAnError()
    {
        Assert.Equal(
            new[] { FrontendMessageKind.Parse, FrontendMessageKind.Bind, FrontendMessageKind.Describe, FrontendMessageKind.Execute, FrontendMessageKind.Close, FrontendMessageKind.Flush, FrontendMessageKind.Sync }.Order(),
            FrontendMessages.All.Where(FrontendMessages.IsExtendedQuery).Order());

        // PostgreSQL's postgres.c ends the skip on Sync, and acts on Terminate while skipping.
        Assert.Equal(
            new[] { FrontendMessageKind.Sync, FrontendMessageKind.Terminate }.Order(),
            FrontendMessages.All.Where(FrontendMessages.EndsErrorSkip).Order());
        Assert.All(FrontendMessages.All.Where(FrontendMessages.IsExtendedQuery), kind => Assert.True(FrontendMessages.IsAllowedIn(kind, PgSessionPhase.Normal)));
    }

    [Fact]
    public void EveryMessage_MayBeSentInSomePhase()
    {
        Assert.All(FrontendMessages.All, kind => Assert.Contains(s_phases, phase => FrontendMessages.IsAllowedIn(kind, phase)));
        Assert.All(BackendMessages.All, kind => Assert.Contains(s_phases, phase => BackendMessages.IsAllowedIn(kind, phase)));
        Assert.All(s_phases, phase => Assert.False(FrontendMessages.IsAllowedIn(FrontendMessageKind.Unknown, phase)));
        Assert.All(s_phases, phase => Assert.False(BackendMessages.IsAllowedIn(BackendMessageKind.Unknown, phase)));
    }

    [Fact]
    public void TheTypeByteTables_AgreeWithTheKindTables()
    {
        foreach (PgSessionPhase phase in s_phases)
        {
            for (int b = 0; b < 256; b++)
            {
                Assert.Equal(
                    FrontendMessages.All.Any(kind => FrontendMessages.TypeByteOf(kind) == b && FrontendMessages.IsAllowedIn(kind, phase)),
                    FrontendMessages.IsTypeByteAllowedIn((byte)b, phase));
                Assert.Equal(
                    BackendMessages.All.Any(kind => BackendMessages.TypeByteOf(kind) == b && BackendMessages.IsAllowedIn(kind, phase)),
                    BackendMessages.IsTypeByteAllowedIn((byte)b, phase));
            }
        }

        // PostgreSQL refuses anything but 'p' from a client it is authenticating, before reading the body.
        Assert.Equal([(int)'p'], Enumerable.Range(0, 256).Where(b => FrontendMessages.IsTypeByteAllowedIn((byte)b, PgSessionPhase.Authentication)));
        Assert.Equal([(int)'E', 'N', 'R', 'v'], Enumerable.Range(0, 256).Where(b => BackendMessages.IsTypeByteAllowedIn((byte)b, PgSessionPhase.Authentication)));
    }

    [Fact]
    public void TheDecodeContext_FollowsACopyInExchange_AsBothDirectionsArrive()
    {
        var session = new Session();
        session.Startup();
        session.Frontend(new Query("COPY t FROM STDIN"), PgSessionPhase.Normal);
        session.Backend(new CopyInResponse(CopyFormat.Text, [0, 0]), PgSessionPhase.CopyIn);
        session.Frontend(new CopyData("1\tone\n"u8.ToArray()), PgSessionPhase.CopyIn);
        session.Frontend(new Flush(), PgSessionPhase.CopyIn);
        session.Frontend(new Sync(), PgSessionPhase.CopyIn);
        session.Frontend(new CopyData("2\ttwo\n"u8.ToArray()), PgSessionPhase.CopyIn);
        session.Frontend(new CopyDone(), PgSessionPhase.Normal);
        session.Backend(new CommandComplete("COPY 2"), PgSessionPhase.Normal);
        session.Backend(new ReadyForQuery(TransactionStatus.Idle), PgSessionPhase.Normal);

        // CopyFail ends it too.
        session.Frontend(new Query("COPY t FROM STDIN"), PgSessionPhase.Normal);
        session.Backend(new CopyInResponse(CopyFormat.Binary, []), PgSessionPhase.CopyIn);
        session.Frontend(new CopyFail("no data"), PgSessionPhase.Normal);
        session.Backend(Error("57014"), PgSessionPhase.Normal);
        session.Backend(new ReadyForQuery(TransactionStatus.Idle), PgSessionPhase.Normal);
    }

    [Fact]
    public void TheDecodeContext_LeavesCopyIn_WhenTheServerFailsTheCopy_AndTheCopyDataStillComingIsDropped()
    {
        var session = new Session();
        session.Startup();
        session.Frontend(new Query("COPY t FROM STDIN"), PgSessionPhase.Normal);
        session.Backend(new CopyInResponse(CopyFormat.Text, [0]), PgSessionPhase.CopyIn);
        session.Frontend(new CopyData("x\n"u8.ToArray()), PgSessionPhase.CopyIn);
        session.Backend(Error("22P02"), PgSessionPhase.Normal);
        session.Frontend(new CopyData("y\n"u8.ToArray()), PgSessionPhase.Normal);
        Assert.True(FrontendMessages.IsIgnoredIn(FrontendMessageKind.CopyData, PgSessionPhase.Normal));
        session.Frontend(new CopyDone(), PgSessionPhase.Normal);
        session.Backend(new ReadyForQuery(TransactionStatus.Idle), PgSessionPhase.Normal);
    }

    [Fact]
    public void TheDecodeContext_FollowsACopyOutExchange()
    {
        var session = new Session();
        session.Startup();
        session.Frontend(new Query("COPY t TO STDOUT"), PgSessionPhase.Normal);
        session.Backend(new CopyOutResponse(CopyFormat.Text, [0]), PgSessionPhase.CopyOut);
        session.Backend(new CopyData("1\n"u8.ToArray()), PgSessionPhase.CopyOut);
        session.Backend(new NoticeResponse([new NoticeResponse.Field((byte)'S', "NOTICE"), new NoticeResponse.Field((byte)'M', "meanwhile")]), PgSessionPhase.CopyOut);
        session.Backend(new ParameterStatus("application_name", "x"), PgSessionPhase.CopyOut);
        session.Backend(new CopyData("2\n"u8.ToArray()), PgSessionPhase.CopyOut);
        session.Backend(new CopyDone(), PgSessionPhase.Normal);
        session.Backend(new CommandComplete("COPY 2"), PgSessionPhase.Normal);
        session.Backend(new ReadyForQuery(TransactionStatus.Idle), PgSessionPhase.Normal);

        // An error ends the copy-out.
        session.Frontend(new Query("COPY t TO STDOUT"), PgSessionPhase.Normal);
        session.Backend(new CopyOutResponse(CopyFormat.Text, [0]), PgSessionPhase.CopyOut);
        session.Backend(Error("57014"), PgSessionPhase.Normal);
        session.Backend(new ReadyForQuery(TransactionStatus.Idle), PgSessionPhase.Normal);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TheDecodeContext_FollowsACopyBothExchange_WhicheverSideEndsFirst(bool frontendFirst)
    {
        var session = new Session();
        session.Startup();
        session.Frontend(new Query("START_REPLICATION SLOT s LOGICAL 0/0"), PgSessionPhase.Normal);
        session.Backend(new CopyBothResponse(CopyFormat.Binary, []), PgSessionPhase.CopyBoth);
        session.Backend(new CopyData(new byte[] { (byte)'k', 0, 0 }), PgSessionPhase.CopyBoth);
        session.Frontend(new CopyData(new byte[] { (byte)'r', 0, 0 }), PgSessionPhase.CopyBoth);
        if (frontendFirst)
        {
            session.Frontend(new CopyDone(), PgSessionPhase.CopyOut);
            session.Backend(new CopyData(new byte[] { (byte)'w', 0 }), PgSessionPhase.CopyOut);
            session.Backend(new CopyDone(), PgSessionPhase.Normal);

            // PostgreSQL's walsender may still send data after its CopyDone: the frontend drops it.
            Assert.True(BackendMessages.IsIgnoredIn(BackendMessageKind.CopyData, PgSessionPhase.Normal));
            session.Backend(new CopyData(new byte[] { (byte)'k', 0 }), PgSessionPhase.Normal);
        }
        else
        {
            session.Backend(new CopyDone(), PgSessionPhase.CopyIn);
            session.Frontend(new CopyData(new byte[] { (byte)'r', 1 }), PgSessionPhase.CopyIn);
            session.Frontend(new CopyDone(), PgSessionPhase.Normal);
        }

        session.Backend(new CommandComplete("START_REPLICATION"), PgSessionPhase.Normal);
        session.Backend(new ReadyForQuery(TransactionStatus.Idle), PgSessionPhase.Normal);
    }

    [Fact]
    public void TheDecodeContext_ForgetsAPendingAuthenticationRequest_WhenAuthenticationEnds()
    {
        var session = new Session();
        session.Frontend(new StartupMessage(PgProtocolVersion.V3_0.Code, [new("user", "u")]), PgSessionPhase.Authentication);
        session.Backend(new AuthenticationCleartextPassword(), PgSessionPhase.Authentication);
        Assert.Equal(FrontendMessageKind.PasswordMessage, session.Context.ExpectedPasswordMessage);
        session.Backend(new AuthenticationOk(), PgSessionPhase.Normal);
        Assert.Equal(FrontendMessageKind.Unknown, session.Context.ExpectedPasswordMessage);
    }

    private static ErrorResponse Error(string code)
        => new([new ErrorResponse.Field((byte)'S', "ERROR"), new ErrorResponse.Field((byte)'C', code), new ErrorResponse.Field((byte)'M', "failed")]);

    /// <summary>Both directions of a connection read with one decode context, as a proxy reads them.</summary>
    private sealed class Session
    {
        private readonly PgMessageReader _frontend;
        private readonly PgMessageReader _backend;

        public Session()
        {
            _frontend = new PgMessageReader(PgDirection.Frontend, Context);
            _backend = new PgMessageReader(PgDirection.Backend, Context);
        }

        public DecodeContext Context { get; } = new();

        public void Startup()
        {
            Frontend(new StartupMessage(PgProtocolVersion.V3_2.Code, [new("user", "u")]), PgSessionPhase.Authentication);
            Backend(new AuthenticationOk(), PgSessionPhase.Normal);
            Backend(new ReadyForQuery(TransactionStatus.Idle), PgSessionPhase.Normal);
        }

        public void Frontend(IFrontendMessage message, PgSessionPhase after)
        {
            Assert.True(FrontendMessages.IsAllowedIn(message.FrontendKind, Context.Phase), $"{message.FrontendKind} in {Context.Phase}");
            Read(_frontend, message, after);
        }

        public void Backend(IBackendMessage message, PgSessionPhase after)
        {
            Assert.True(BackendMessages.IsAllowedIn(message.BackendKind, Context.Phase), $"{message.BackendKind} in {Context.Phase}");
            Read(_backend, message, after);
        }

        private void Read(PgMessageReader reader, IPgMessage message, PgSessionPhase after)
        {
            byte[] bytes = message.ToArray(Context.ProtocolVersion);
            Assert.Equal(PgReadStatus.Message, reader.TryRead(bytes, out int consumed, out PgReceivedMessage received, out PgDecodeError error));
            Assert.Equal(bytes.Length, consumed);
            Assert.Equal(message.Name, received.Name);
            Assert.Equal(after, Context.Phase);
        }
    }
}
