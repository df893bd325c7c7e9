using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using PgSpec.Protocol;

namespace PgSpec.Cli;

/// <summary>Runs <c>pgspec decode</c>: reads the inputs, decodes one direction, writes lines.</summary>
internal static class StreamDecoder
{
    public static int Run(DecodeSettings settings, Stream stdin, Stream stdout, TextWriter stderr)
    {
        if (settings.InputPath == "-" && settings.PeerPath == "-")
        {
            return Usage(stderr, "FILE and --peer cannot both be standard input");
        }

        byte[] input;
        byte[]? peer = null;
        try
        {
            input = InputFiles.Read(settings.InputPath, stdin, settings.Hex);
            if (settings.PeerPath is not null)
            {
                peer = InputFiles.Read(settings.PeerPath, stdin, settings.Hex);
            }
        }
        catch (InputException e)
        {
            return Usage(stderr, e.Message);
        }

        PgDirection? guessed = settings.From ?? StreamScan.GuessDirection(input);
        if (guessed is null && peer is not null && StreamScan.GuessDirection(peer) is { } peerDirection)
        {
            guessed = peerDirection == PgDirection.Frontend ? PgDirection.Backend : PgDirection.Frontend;
        }

        if (guessed is not { } direction)
        {
            if (input.Length == 0)
            {
                return PgSpecCommandLine.ExitOk;
            }

            return Usage(stderr, $"cannot tell which side sent the input: its first byte, {PgTraceWriter.FormatByte(input[0])}, starts messages of both sides; pass --from frontend or --from backend");
        }

        IMessageOutput output = settings.Format == DecodeFormat.Json
            ? new JsonOutput(stdout)
            : new TraceOutput(new PgTraceWriter(stdout, new PgTraceOptions { Regress = settings.Regress }));
        var decoder = new Decoder(direction, input, peer, settings, output, stdout, stderr);
        return decoder.Run();
    }

    private static int Usage(TextWriter stderr, string message)
    {
        stderr.WriteLine("pgspec: " + message);
        return PgSpecCommandLine.ExitUsage;
    }

    private sealed class Decoder
    {
        private readonly PgDirection _direction;
        private readonly byte[] _input;
        private readonly IMessageOutput _output;
        private readonly Stream _stdout;
        private readonly TextWriter _stderr;
        private readonly PeerDecodeContext _context;
        private readonly FrontendStartup? _frontend;
        private readonly BackendStartup? _backend;
        private readonly int _expectedAnswers;

        public Decoder(PgDirection direction, byte[] input, byte[]? peer, DecodeSettings settings, IMessageOutput output, Stream stdout, TextWriter stderr)
        {
            _direction = direction;
            _input = input;
            _output = output;
            _stdout = stdout;
            _stderr = stderr;
            byte[]? frontendBytes = direction == PgDirection.Frontend ? input : peer;
            byte[]? backendBytes = direction == PgDirection.Backend ? input : peer;
            _frontend = frontendBytes is null ? null : StreamScan.ScanFrontend(frontendBytes);

            // The backend speaks what the StartupMessage asked for (or less, by NegotiateProtocolVersion).
            PgProtocolVersion backendVersion = settings.Protocol ?? PgProtocolVersion.Latest;
            if (settings.Protocol is null && _frontend?.StartupVersion is { } requested && requested.Code < PgProtocolVersion.Latest.Code)
            {
                backendVersion = requested;
            }

            if (direction == PgDirection.Frontend && backendBytes is not null)
            {
                _backend = StreamScan.ScanBackend(backendBytes, _frontend?.EncryptionRequests.Count, backendVersion);
            }

            _expectedAnswers = direction == PgDirection.Backend
                ? _frontend?.EncryptionRequests.Count ?? StreamScan.CountEncryptionAnswers(input)
                : 0;
            _context = new PeerDecodeContext(_backend?.PasswordMessages)
            {
                ProtocolVersion = direction == PgDirection.Backend ? backendVersion : settings.Protocol ?? PgProtocolVersion.Latest,
                Phase = direction == PgDirection.Frontend && input.Length > 0 && input[0] == 0 ? PgSessionPhase.Startup : PgSessionPhase.Normal,
            };
        }

        private string Side => _direction == PgDirection.Frontend ? "frontend" : "backend";

        public int Run()
        {
            var reader = new PgMessageReader(_direction, _context);
            var buffer = new ReadOnlySequence<byte>(_input);
            int answers = 0;
            int requests = 0;
            while (!buffer.IsEmpty)
            {
                if (answers < _expectedAnswers)
                {
                    _context.ExpectEncryptionAnswer = true;
                    _context.LastEncryptionRequest = _frontend is { } f && answers < f.EncryptionRequests.Count ? f.EncryptionRequests[answers] : FrontendMessageKind.Unknown;
                }

                long offset = reader.Position;
                switch (reader.TryRead(ref buffer, out PgReceivedMessage message, out PgDecodeError error))
                {
                    case PgReadStatus.Malformed:
                        return Fail(error.Offset, error.Field is null ? $"{error.MessageName}: {error.Reason}" : $"{error.MessageName}.{error.Field}: {error.Reason}");
                    case PgReadStatus.Incomplete:
                        return Fail(offset, "stream ends inside a message: " + DescribeTruncation(buffer));
                }

                _output.Write(message, _context);
                if (message.FrameKind == PgFrameKind.EncryptionAnswer)
                {
                    answers++;
                    if (message.TypeByte != 'N')
                    {
                        string what = message.TypeByte == 'S' ? "SSL" : "GSSAPI encryption";
                        return Stop($"the server accepted {what} (answer '{(char)message.TypeByte}' at offset {offset}); the remaining {buffer.Length} bytes are encrypted and are not decoded");
                    }
                }
                else if (_direction == PgDirection.Frontend && message.FrontendKind is FrontendMessageKind.SSLRequest or FrontendMessageKind.GSSENCRequest)
                {
                    bool accepted = _backend is not null
                        ? requests < _backend.EncryptionAnswers.Count && _backend.EncryptionAnswers[requests] != 'N'
                        : !buffer.IsEmpty && buffer.FirstSpan[0] == 0x16;
                    requests++;
                    if (accepted)
                    {
                        return Stop($"the {message.Name} at offset {offset} was accepted; the remaining {buffer.Length} bytes are encrypted and are not decoded");
                    }
                }
            }

            return PgSpecCommandLine.ExitOk;
        }

        private string DescribeTruncation(ReadOnlySequence<byte> rest)
        {
            Span<byte> header = stackalloc byte[5];
            int have = (int)Math.Min(rest.Length, 5);
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
