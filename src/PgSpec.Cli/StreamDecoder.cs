using System.Buffers.Binary;
using System.Globalization;
using PgSpec.Protocol;

namespace PgSpec.Cli;

/// <summary>
/// Runs <c>pgspec decode</c>: reads the input as a stream, decodes one direction, and writes each
/// message's line as soon as the message is whole. The output is flushed whenever the next read
/// of the input may wait (after a short read), so lines from a slow pipe show at once while a
/// file is written in large blocks. Memory is bounded by the largest message.
/// </summary>
internal static class StreamDecoder
{
    public static int Run(DecodeSettings settings, Stream stdin, Stream stdout, TextWriter stderr)
    {
        if (settings.InputPath == "-" && settings.PeerPath == "-")
        {
            return Usage(stderr, "FILE and --peer cannot both be standard input");
        }

        InputBuffer? input = null;
        InputBuffer? peer = null;
        try
        {
            input = InputFiles.Open(settings.InputPath, stdin, settings.Hex);
            if (settings.PeerPath is not null)
            {
                peer = InputFiles.Open(settings.PeerPath, stdin, settings.Hex);
            }

            input.BeforeWait = stdout.Flush;
            return Decode(settings, input, peer, stdout, stderr);
        }
        catch (InputException e)
        {
            // Hex text can turn out malformed, or a read fail, after lines were printed.
            stdout.Flush();
            return Usage(stderr, e.Message);
        }
        finally
        {
            input?.Dispose();
            peer?.Dispose();
        }
    }

    private static int Decode(DecodeSettings settings, InputBuffer input, InputBuffer? peer, Stream stdout, TextWriter stderr)
    {
        PgDirection? guessed = settings.From ?? Guess(input);
        if (guessed is null && peer is not null && Guess(peer) is { } peerDirection)
        {
            guessed = peerDirection == PgDirection.Frontend ? PgDirection.Backend : PgDirection.Frontend;
        }

        if (guessed is not { } direction)
        {
            if (input.Count == 0)
            {
                return PgSpecCommandLine.ExitOk;
            }

            return Usage(stderr, $"cannot tell which side sent the input: its first byte, {PgTraceWriter.FormatByte(input.Data[0])}, starts messages of both sides; pass --from frontend or --from backend");
        }

        if (peer is not null && Guess(peer) is { } peerSide && peerSide == direction)
        {
            string side = direction == PgDirection.Frontend ? "frontend" : "backend";
            return Usage(stderr, $"the --peer stream looks like the {side}'s too (its first byte, {PgTraceWriter.FormatByte(peer.Data[0])}, starts only {side} messages): --peer takes the other side of the connection");
        }

        // The startup packets of the frontend stream (this one, looked ahead, or the peer).
        FrontendStartup? frontend = direction == PgDirection.Frontend ? StreamScan.ScanFrontend(input)
            : peer is not null ? StreamScan.ScanFrontend(peer)
            : null;

        // The backend speaks what the StartupMessage asked for (or less, by NegotiateProtocolVersion).
        PgProtocolVersion backendVersion = settings.Protocol ?? PgProtocolVersion.Latest;
        if (settings.Protocol is null && frontend?.StartupVersion is { } requested && requested.Code < PgProtocolVersion.Latest.Code)
        {
            backendVersion = requested;
        }

        BackendStartup? backend = direction == PgDirection.Frontend && peer is not null
            ? StreamScan.ScanBackend(peer, frontend!.EncryptionRequests.Count, backendVersion)
            : null;
        if (peer is not null && (direction == PgDirection.Backend ? frontend?.Problem : backend?.Problem) is { } problem)
        {
            stderr.WriteLine($"pgspec: note: the --peer stream breaks the protocol ({problem}): it names the 'p' messages and encryption answers only up to there");
        }

        IMessageOutput output = settings.Format == DecodeFormat.Json
            ? new JsonOutput(stdout, hideSecrets: !settings.ShowSecrets)
            : new TraceOutput(stdout, new PgTraceOptions { Regress = settings.Regress }, settings.ShowSecrets, settings.Replication);

        // A backend stream's replication streams are started by the frontend's START_REPLICATION:
        // the --peer is read on as far as its replication commands, as the streams start.
        PeerCommands? commands = direction == PgDirection.Backend && peer is not null && output.Replication is not null ? new PeerCommands(peer) : null;
        if (commands is null)
        {
            peer?.Dispose();
        }

        var context = new PeerDecodeContext(backend?.PasswordMessages)
        {
            ProtocolVersion = direction == PgDirection.Backend ? backendVersion : settings.Protocol ?? PgProtocolVersion.Latest,
            Phase = direction == PgDirection.Frontend && input.Ensure(1) && input.Data[0] == 0 ? PgSessionPhase.Startup : PgSessionPhase.Normal,
        };
        return new Decoder(direction, input, frontend, backend, context, output, stdout, stderr) { Commands = commands }.Run();
    }

    /// <summary>Who sent a stream, from its first two bytes (or one, at its end).</summary>
    private static PgDirection? Guess(InputBuffer input)
    {
        input.Ensure(2);
        return StreamScan.GuessDirection(input.Data.Slice(0, Math.Min(input.Count, 2)));
    }

    private static int Usage(TextWriter stderr, string message)
    {
        stderr.WriteLine("pgspec: " + message);
        return PgSpecCommandLine.ExitUsage;
    }

    private sealed class Decoder
    {
        private readonly PgDirection _direction;
        private readonly InputBuffer _input;
        private readonly FrontendStartup? _frontend;
        private readonly BackendStartup? _backend;
        private readonly PeerDecodeContext _context;
        private readonly IMessageOutput _output;
        private readonly Stream _stdout;
        private readonly TextWriter _stderr;

        /// <summary>A backend stream without its frontend: encryption answers are judged from the bytes, until one is not.</summary>
        private bool _judgeAnswers;

        public Decoder(PgDirection direction, InputBuffer input, FrontendStartup? frontend, BackendStartup? backend, PeerDecodeContext context, IMessageOutput output, Stream stdout, TextWriter stderr)
        {
            _direction = direction;
            _input = input;
            _frontend = frontend;
            _backend = backend;
            _context = context;
            _output = output;
            _stdout = stdout;
            _stderr = stderr;
            _judgeAnswers = direction == PgDirection.Backend && frontend is null;
        }

        /// <summary>For a backend stream: the replication commands of its --peer, fed to the output as its streams start.</summary>
        public PeerCommands? Commands { get; init; }

        private string Side => _direction == PgDirection.Frontend ? "frontend" : "backend";

        public int Run()
        {
            var reader = new PgMessageReader(_direction, _context);
            int answers = 0;
            int requests = 0;
            while (_input.Count > 0 || _input.Ensure(1))
            {
                ExpectAnswer(answers);
                switch (reader.TryRead(_input.Data, out int consumed, out PgReceivedMessage message, out PgDecodeError error))
                {
                    case PgReadStatus.Malformed:
                        return Fail(error.Offset, error.Field is null ? $"{error.MessageName}: {error.Reason}" : $"{error.MessageName}.{error.Field}: {error.Reason}");
                    case PgReadStatus.Incomplete:
                        if (!_input.ReadMore(StreamScan.NeededFor(NextFrameKind(), _input.Data)))
                        {
                            return Fail(reader.Position, "stream ends inside a message: " + DescribeTruncation(_input.Data));
                        }

                        continue;
                }

                // The message is a view of the input buffer: write it before reading on.
                long offset = message.Offset;
                if (Commands is not null && message.BackendKind == BackendMessageKind.CopyBothResponse)
                {
                    Commands.FeedNextStart(_output.Replication!);
                }

                _output.Write(message, _context);
                if (_direction == PgDirection.Frontend && message.FrontendKind == FrontendMessageKind.Query)
                {
                    // The server's answer is not seen: a START_REPLICATION starts its stream.
                    _output.AssumeStreamStarted();
                }

                bool answer = message.FrameKind == PgFrameKind.EncryptionAnswer;
                int typeByte = message.TypeByte;
                FrontendMessageKind request = _direction == PgDirection.Frontend ? message.FrontendKind : FrontendMessageKind.Unknown;
                _input.Consume(consumed);

                if (answer)
                {
                    answers++;
                    if (typeByte != 'N')
                    {
                        string what = typeByte == 'S' ? "SSL" : "GSSAPI encryption";
                        return Stop($"the server accepted {what} (answer '{(char)typeByte}' at offset {offset}); the remaining {_input.SkipToEnd()} bytes are encrypted and are not decoded");
                    }
                }
                else if (request is FrontendMessageKind.SSLRequest or FrontendMessageKind.GSSENCRequest)
                {
                    bool accepted = _backend is not null
                        ? requests < _backend.EncryptionAnswers.Count && _backend.EncryptionAnswers[requests] != 'N'
                        : _input.Ensure(1) && _input.Data[0] == 0x16;
                    requests++;
                    if (accepted)
                    {
                        return Stop($"the {FrontendMessages.NameOf(request)} at offset {offset} was accepted; the remaining {_input.SkipToEnd()} bytes are encrypted and are not decoded");
                    }
                }
            }

            return PgSpecCommandLine.ExitOk;
        }

        /// <summary>Tells the context whether the next byte of a backend stream is the answer to an encryption request.</summary>
        private void ExpectAnswer(int answers)
        {
            if (_frontend is not null)
            {
                if (_direction == PgDirection.Backend && answers < _frontend.EncryptionRequests.Count)
                {
                    _context.ExpectEncryptionAnswer = true;
                    _context.LastEncryptionRequest = _frontend.EncryptionRequests[answers];
                }
            }
            else if (_judgeAnswers)
            {
                // The byte after a possible answer decides.
                _input.Ensure(2);
                if (StreamScan.StartsWithEncryptionAnswer(_input.Data))
                {
                    _context.ExpectEncryptionAnswer = true;
                    _context.LastEncryptionRequest = FrontendMessageKind.Unknown;
                }
                else
                {
                    _judgeAnswers = false;
                }
            }
        }

        /// <summary>What the context says comes next (as the reader decides it).</summary>
        private PgFrameKind NextFrameKind()
            => _direction == PgDirection.Frontend && _context.Phase == PgSessionPhase.Startup ? PgFrameKind.StartupPacket
                : _direction == PgDirection.Backend && _context.ExpectEncryptionAnswer ? PgFrameKind.EncryptionAnswer
                : PgFrameKind.Typed;

        private string DescribeTruncation(ReadOnlySpan<byte> rest)
        {
            Span<byte> header = stackalloc byte[5];
            int have = Math.Min(rest.Length, 5);
            rest.Slice(0, have).CopyTo(header);
            if (_direction == PgDirection.Frontend && _context.Phase == PgSessionPhase.Startup)
            {
                return have < 4
                    ? $"{rest.Length} bytes of the 4-byte length word of a startup packet"
                    : $"{rest.Length} bytes of a startup packet of {BinaryPrimitives.ReadInt32BigEndian(header).ToString(CultureInfo.InvariantCulture)} bytes";
            }

            string type = "'" + PgTraceWriter.FormatByte(header[0]) + "'";
            string name = _direction == PgDirection.Frontend
                ? FrontendMessages.Classify(header[0], default, null) is var f and not FrontendMessageKind.Unknown ? " (" + FrontendMessages.NameOf(f) + ")" : ""
                : BackendMessages.Classify(header[0], default, null) is var b and not BackendMessageKind.Unknown ? " (" + BackendMessages.NameOf(b) + ")" : "";
            if (have < 5)
            {
                return $"{rest.Length} bytes of the 5-byte header of a {type}{name} message";
            }

            long total = 1L + BinaryPrimitives.ReadInt32BigEndian(header.Slice(1));
            return $"{rest.Length} bytes of a {type}{name} message of {total.ToString(CultureInfo.InvariantCulture)} bytes";
        }

        private int Fail(long offset, string text)
        {
            _stdout.Flush();
            _stderr.WriteLine($"pgspec: malformed {Side} stream at offset {offset.ToString(CultureInfo.InvariantCulture)}: {text}");
            return PgSpecCommandLine.ExitMalformed;
        }

        private int Stop(string note)
        {
            _stdout.Flush();
            _stderr.WriteLine("pgspec: note: " + note);
            return PgSpecCommandLine.ExitOk;
        }
    }
}

/// <summary>
/// The replication commands of a frontend stream, read as far as they are needed: a backend stream's
/// i-th CopyBothResponse is taken to answer the frontend's i-th START_REPLICATION (with the
/// CREATE_REPLICATION_SLOT commands before it, which name the slots' plugins). Reading stops for good
/// at the end of the stream or at bytes that break the protocol (encryption, say).
/// </summary>
internal sealed class PeerCommands
{
    private readonly InputBuffer _input;
    private readonly PgMessageReader _reader;
    private bool _ended;

    public PeerCommands(InputBuffer input)
    {
        _input = input;
        _reader = new PgMessageReader(PgDirection.Frontend, new DecodeContext { Phase = input.Ensure(1) && input.Data[0] == 0 ? PgSessionPhase.Startup : PgSessionPhase.Normal });
    }

    /// <summary>Feeds the frontend's Query messages to <paramref name="replication"/> up to and including its next START_REPLICATION.</summary>
    public void FeedNextStart(ReplicationStreamContext replication)
    {
        while (!_ended && (_input.Count > 0 || _input.Ensure(1)))
        {
            switch (_reader.TryRead(_input.Data, out int consumed, out PgReceivedMessage message, out _))
            {
                case PgReadStatus.Incomplete:
                    PgFrameKind frame = _reader.Context.Phase == PgSessionPhase.Startup ? PgFrameKind.StartupPacket : PgFrameKind.Typed;
                    _ended = !_input.ReadMore(StreamScan.NeededFor(frame, _input.Data));
                    continue;
                case PgReadStatus.Malformed:
                    _ended = true;
                    return;
            }

            bool query = message.FrontendKind == FrontendMessageKind.Query;
            if (query)
            {
                replication.ObserveFrontend(FrontendMessageKind.Query, message.Body);
            }

            _input.Consume(consumed);
            if (query && replication.StartRequested)
            {
                return;
            }
        }

        _ended = true;
    }
}
