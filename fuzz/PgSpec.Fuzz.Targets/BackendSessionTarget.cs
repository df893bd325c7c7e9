using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using PgSpec.Protocol;
using PgSpec.Server;

namespace PgSpec.Fuzz;

/// <summary>
/// The backend session (PgSpec.Server) serving a hostile client over an in-memory connection:
/// the client's side is the fuzzer's bytes, sent at once and then closed, whatever the server
/// answers. The session must end once the client's stream has ended, never let an exception out
/// of <see cref="PgBackendServer.ServeAsync"/>, write a valid backend message stream (the one-byte
/// answers to SSLRequest and GSSENCRequest included) whose only FATAL error is its last message,
/// end with that FATAL when the client's framing is broken, and allocate within a budget
/// proportional to the input.
/// </summary>
public sealed class BackendSessionTarget : FuzzTarget
{
    /// <summary>How long a session may take once the client's stream has ended (afl-fuzz's own timeout is shorter).</summary>
    public static readonly TimeSpan SessionTimeLimit = TimeSpan.FromSeconds(10);

    /// <summary>
    /// What a session may allocate per input byte, besides <see cref="SessionTarget.SessionBaseBudget"/>:
    /// a statement as short as "x;" costs its string, the handler's statement and result, a bind
    /// context and its share of the output waiting for the next flush (about 250 bytes in all).
    /// </summary>
    public const int BytesPerInputByte = 256;

    /// <summary>The password of the user <c>fuzz</c> under every password method.</summary>
    public const string Password = "secret";

    /// <summary>Rows and COPY lines the handler produces in one session at most: what a client gets out stays proportional to what it sends.</summary>
    public const int HandlerRowBudget = 256;

    // The server's limit on a message before authentication (PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH with the length word).
    private const int AuthenticationMessageLimit = 65539;

    private PgScramVerifier? _verifier;
    private byte[] _output = new byte[1 << 16];

    /// <inheritdoc/>
    public override string Name => "backend";

    /// <inheritdoc/>
    public override string Description =>
        "the backend session (PgSpec.Server) against a hostile client over an in-memory connection. Input: an option byte, then what the client sends (then it closes). "
        + "Byte 0: bits 0-2 authentication (0 trust, 1 trust for the user fuzz only, 2 cleartext, 3 MD5 from the password, 4 MD5 from the stored hash, 5 SCRAM-SHA-256, 6-7 trust; "
        + "the user fuzz has the password 'secret'), bit 3 protocol up to 3.2 (else 3.0), bit 4 the Traffic callback on (its bytes are checked against the stream, and the flow of both directions followed), "
        + "bits 5-6 reads of at most (all, 1, 5, 64) bytes, bit 7 the smallest output buffer (1 KiB). "
        + "No TLS certificate: SSLRequest is answered 'N'. The handler splits queries at ';' and knows: rows N, param ($1 text), int ($1 int4), fail, bad, fatal, empty, notice, notify, "
        + "set NAME VALUE, begin, commit, rollback, copy in, copy out N, terminate; anything else completes with the tag OK; the database nodb is refused.";

    /// <inheritdoc/>
    protected override void Warm()
    {
        Oracle.Initialise();
        _verifier ??= PgScramVerifier.Create(Password, "pgspec-fuzz-salt"u8, 4096);
        byte[] startup = new StartupMessage(PgProtocolVersion.V3_0.Code, [new("user", "fuzz")]).ToArray();
        Execute([0, .. startup, .. new Query("rows 2; fail").ToArray(), .. new Terminate().ToArray()]);
    }

    /// <inheritdoc/>
    protected override void Execute(ReadOnlySpan<byte> input)
    {
        if (input.Length < 1)
        {
            return;
        }

        byte options = input[0];
        byte[] client = input[1..].ToArray();
        int readSize = ((options >> 5) & 3) switch { 1 => 1, 2 => 5, 3 => 64, _ => int.MaxValue };
        var run = new SessionRun(client, readSize, _output, (options & 0x10) != 0);
        var serverOptions = new PgBackendOptions
        {
            Authentication = Authenticator(options & 7),
            MaxProtocolVersion = (options & 8) != 0 ? PgProtocolVersion.V3_2 : PgProtocolVersion.V3_0,
            OutputBufferSize = (options & 0x80) != 0 ? 1024 : 64 * 1024,
            SessionEnded = run.Ended,
        };
        if (run.Tracing)
        {
            serverOptions.Traffic = run.Observe;
        }

        PgBackendServer server = PgBackendServer.Create(serverOptions, session => new FuzzHandler(session, run));

        long before = GC.GetTotalAllocatedBytes(precise: true);
        Task serving = server.ServeAsync(run.Connection);
        bool ended;
        try
        {
            ended = serving.Wait(SessionTimeLimit);
        }
        catch (AggregateException e)
        {
            Exception inner = e.InnerException ?? e;
            throw new FuzzFindingException($"{Name}: {inner.GetType().FullName} escaped ServeAsync: {inner.Message}", inner);
        }

        long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        if (!ended)
        {
            throw new FuzzFindingException($"{Name}: the session did not end within {SessionTimeLimit.TotalSeconds} s of the client's stream ending ({run.Connection.Consumed} of {client.Length} bytes read)");
        }

        _output = run.Connection.OutputBuffer;
        Oracle.CheckAllocation($"{Name}: the session", allocated, SessionTarget.SessionBaseBudget + ((long)BytesPerInputByte * input.Length));
        Check(run, client, serverOptions.MaxProtocolVersion);
    }

    private PgAuthenticator Authenticator(int method)
    {
        PgScramVerifier verifier = _verifier ??= PgScramVerifier.Create(Password, "pgspec-fuzz-salt"u8, 4096);
        return method switch
        {
            1 => PgAuthenticator.TrustUsers(user => user == "fuzz"),
            2 => PgAuthenticator.Cleartext(user => user == "fuzz" ? Password : null),
            3 => PgAuthenticator.Md5(user => user == "fuzz" ? Password : null),
            4 => PgAuthenticator.Md5(user => user == "fuzz" ? "md5" + Convert.ToHexStringLower(System.Security.Cryptography.MD5.HashData(Encoding.UTF8.GetBytes(Password + user))) : null),
            5 => PgAuthenticator.ScramSha256(user => user == "fuzz" ? verifier : null),
            _ => PgAuthenticator.Trust,
        };
    }

    private void Check(SessionRun run, byte[] client, PgProtocolVersion maxVersion)
    {
        if (run.EndedCount != 1)
        {
            throw new FuzzFindingException($"{Name}: SessionEnded was called {run.EndedCount} times");
        }

        if (run.Failure is { } failure && failure.StartsWith("unexpected error", StringComparison.Ordinal))
        {
            throw new FuzzFindingException($"{Name}: the session ended on an exception it did not expect: {failure}");
        }

        byte[] output = run.Connection.Output;
        ClientStart start = ReadClientStart(client, maxVersion);
        ReadOnlySpan<(BackendMessageKind Kind, ErrorResponse? Error, long Offset)> messages = ReadServerStream(output, start);

        for (int i = 0; i < messages.Length; i++)
        {
            if (messages[i].Error is not { } error)
            {
                continue;
            }

            string? severity = Field(error, 'S');
            string? code = Field(error, 'C');
            if (code == "XX000")
            {
                throw new FuzzFindingException($"{Name}: an internal error (XX000) at offset {messages[i].Offset}: {Field(error, 'M')}");
            }

            if (severity is "FATAL" or "PANIC" && i != messages.Length - 1)
            {
                throw new FuzzFindingException($"{Name}: a {severity} error ({code} {Field(error, 'M')}) at offset {messages[i].Offset} is followed by {messages.Length - 1 - i} more messages");
            }
        }

        bool endsFatal = messages.Length > 0 && messages[^1].Error is { } last && Field(last, 'S') == "FATAL";
        if (start.TypedFrom >= 0 && BrokenFramingAhead(client, start.TypedFrom) is { } broken && !endsFatal)
        {
            throw new FuzzFindingException($"{Name}: the client's stream is malformed ({broken}), but the server's output does not end with a FATAL ErrorResponse ({messages.Length} messages)");
        }

        if (run.Terminated && !endsFatal)
        {
            throw new FuzzFindingException($"{Name}: the handler ended the session (Terminate), but the output does not end with FATAL 57P01");
        }

        if (run.Tracing)
        {
            run.CheckTraffic(Name, output, client);
        }
    }

    private static string? Field(ErrorResponse error, char code)
    {
        foreach (ErrorResponse.Field field in error.Fields)
        {
            if (field.Code == (byte)code)
            {
                return field.Value;
            }
        }

        return null;
    }

    /// <summary>What the client's startup packets ask: how many encryption answers come first, the protocol version, where typed messages begin (-1: never).</summary>
    private readonly record struct ClientStart(int EncryptionAnswers, PgProtocolVersion Version, int TypedFrom);

    /// <summary>Follows the client's startup packets as the server reads them: each SSLRequest and GSSENCRequest once, then the StartupMessage.</summary>
    private static ClientStart ReadClientStart(byte[] client, PgProtocolVersion maxVersion)
    {
        var context = new DecodeContext { Limits = PgLimits.Default.WithAll(PgDirection.Frontend, AuthenticationMessageLimit) };
        var reader = new PgMessageReader(PgDirection.Frontend, context);
        ReadOnlySpan<byte> rest = client;
        int answers = 0;
        bool ssl = false, gss = false;
        while (true)
        {
            if (rest.Length >= 1 && reader.Position == 0 && rest[0] == 0x16)
            {
                // Direct TLS: no certificate, the server closes.
                return new ClientStart(0, maxVersion, -1);
            }

            if (reader.TryRead(rest, out int consumed, out PgReceivedMessage message, out _) != PgReadStatus.Message)
            {
                return new ClientStart(answers, maxVersion, -1);
            }

            rest = rest[consumed..];
            switch (message.FrontendKind)
            {
                case FrontendMessageKind.SSLRequest when !ssl:
                    ssl = true;
                    answers++;
                    break;
                case FrontendMessageKind.GSSENCRequest when !gss:
                    gss = true;
                    answers++;
                    break;
                case FrontendMessageKind.StartupMessage:
                    var requested = new PgProtocolVersion(BinaryPrimitives.ReadInt32BigEndian(message.Body));
                    return new ClientStart(answers, requested.Code > maxVersion.Code ? maxVersion : requested, (int)reader.Position);
                default:
                    return new ClientStart(answers, maxVersion, -1);
            }
        }
    }

    /// <summary>
    /// Whether the client's typed messages, read from <paramref name="from"/>, reach a frame no
    /// context can make valid (a length word under 4, or the end of the stream inside a message)
    /// before a Terminate: the server must then end with FATAL.
    /// </summary>
    private static string? BrokenFramingAhead(byte[] client, int from)
    {
        int at = from;
        while (at < client.Length)
        {
            if (client.Length - at < 5)
            {
                return $"the stream ends inside a message header at offset {at}";
            }

            byte type = client[at];
            int length = BinaryPrimitives.ReadInt32BigEndian(client.AsSpan(at + 1));
            if (length < 4)
            {
                return $"a length word of {length} at offset {at + 1}";
            }

            if (type == (byte)'X')
            {
                return null;
            }

            if (client.Length - at - 1 < length)
            {
                return $"the stream ends inside a {length}-byte message at offset {at}";
            }

            at += 1 + length;
        }

        return null;
    }

    /// <summary>Reads the server's whole output as backend messages, checking each; returns their kinds and errors.</summary>
    private (BackendMessageKind, ErrorResponse?, long)[] ReadServerStream(byte[] output, ClientStart start)
    {
        var context = new DecodeContext
        {
            ProtocolVersion = start.Version,
            Phase = FrontendMessages.NextPhase(FrontendMessageKind.StartupMessage, PgSessionPhase.Startup),
            Limits = Oracle.Unlimited,
        };
        var reader = new PgMessageReader(PgDirection.Backend, context);
        var messages = new List<(BackendMessageKind, ErrorResponse?, long)>();
        ReadOnlySpan<byte> rest = output;
        int answers = 0;
        while (rest.Length > 0)
        {
            if (answers < start.EncryptionAnswers)
            {
                context.ExpectEncryptionAnswer = true;
            }

            PgProtocolVersion version = context.ProtocolVersion;
            long offset = reader.Position;
            PgReadStatus status = reader.TryRead(rest, out int consumed, out PgReceivedMessage message, out PgDecodeError error);
            if (status == PgReadStatus.Malformed)
            {
                throw new FuzzFindingException($"{Name}: the server wrote a malformed stream: {error} (after {messages.Count} messages)");
            }

            if (status == PgReadStatus.Incomplete)
            {
                throw new FuzzFindingException($"{Name}: the server's output ends inside a message at offset {offset} ({rest.Length} bytes: {Oracle.Hex(rest)})");
            }

            ReadOnlySpan<byte> raw = rest[..consumed];
            rest = rest[consumed..];
            if (message.FrameKind == PgFrameKind.EncryptionAnswer)
            {
                answers++;
                if (message.TypeByte != 'N')
                {
                    throw new FuzzFindingException($"{Name}: without a certificate the server answered an encryption request with '{(char)message.TypeByte}'");
                }

                continue;
            }

            if (answers < start.EncryptionAnswers)
            {
                // Each request is answered before the next packet is read.
                throw new FuzzFindingException($"{Name}: {start.EncryptionAnswers} encryption requests, but only {answers} answers before {message.Name}");
            }

            if (message.IsUnknown)
            {
                throw new FuzzFindingException($"{Name}: the server wrote a message of unknown type {Oracle.Hex(raw[..1])} at offset {offset}");
            }

            StreamContexts.CheckMessage($"{Name}: the server's output", message, raw, version, context);
            ErrorResponse? errorResponse = message.BackendKind == BackendMessageKind.ErrorResponse ? (ErrorResponse)message.ToMessage(context) : null;
            messages.Add((message.BackendKind, errorResponse, offset));
        }

        if (answers != start.EncryptionAnswers && messages.Count > 0)
        {
            throw new FuzzFindingException($"{Name}: {start.EncryptionAnswers} encryption requests, {answers} answers");
        }

        return [.. messages];
    }

    /// <summary>One session's state: the connection, what SessionEnded and Traffic reported.</summary>
    private sealed class SessionRun
    {
        private readonly List<(PgDirection Direction, byte[] Raw)> _traffic = [];

        public SessionRun(byte[] client, int readSize, byte[] outputBuffer, bool tracing)
        {
            Connection = new ClientConnection(client, readSize, outputBuffer);
            Tracing = tracing;
        }

        public ClientConnection Connection { get; }

        public bool Tracing { get; }

        public int EndedCount { get; private set; }

        public string? Failure { get; private set; }

        /// <summary>Rows and COPY lines the handler has produced.</summary>
        public int Rows { get; set; }

        /// <summary>The handler called Terminate.</summary>
        public bool Terminated { get; set; }

        public void Ended(PgBackendSession session, string? failure)
        {
            EndedCount++;
            Failure = failure;
        }

        public void Observe(PgBackendSession session, PgDirection direction, ReadOnlySpan<byte> raw) => _traffic.Add((direction, raw.ToArray()));

        /// <summary>
        /// The Traffic callback saw exactly the server's output and a prefix of the client's input,
        /// in an order that the protocol's flow allows: every backend message is one the spec lets
        /// the backend send in the phase both directions have brought the connection to.
        /// </summary>
        public void CheckTraffic(string name, byte[] output, byte[] client)
        {
            var context = new DecodeContext { Limits = Oracle.Unlimited };
            var frontend = new PgMessageReader(PgDirection.Frontend, context);
            var backend = new PgMessageReader(PgDirection.Backend, context);
            int outputAt = 0, clientAt = 0;
            string? rejected = null;
            int backendAfterRejected = 0;
            foreach ((PgDirection direction, byte[] raw) in _traffic)
            {
                if (direction == PgDirection.Backend)
                {
                    if (!output.AsSpan(outputAt).StartsWith(raw))
                    {
                        throw new FuzzFindingException($"{name}: Traffic reported backend bytes {Oracle.Hex(raw)} at output offset {outputAt}, where the server wrote {Oracle.Hex(output.AsSpan(outputAt))}");
                    }

                    outputAt += raw.Length;
                    if (rejected is not null)
                    {
                        backendAfterRejected++;
                        continue;
                    }

                    if (context.ExpectEncryptionAnswer && raw.Length > 1 && raw[0] == (byte)'E')
                    {
                        // A request made twice is refused with an ErrorResponse instead of the one-byte
                        // answer, as PostgreSQL refuses it; the protocol tells clients to expect that.
                        context.ExpectEncryptionAnswer = false;
                    }

                    PgSessionPhase phase = context.Phase;
                    PgReadStatus status = backend.TryRead(raw, out int consumed, out PgReceivedMessage message, out PgDecodeError error);
                    if (status != PgReadStatus.Message || consumed != raw.Length)
                    {
                        throw new FuzzFindingException($"{name}: Traffic reported backend bytes that are not one message ({status} {error}): {Oracle.Hex(raw)}");
                    }

                    if (message.FrameKind != PgFrameKind.EncryptionAnswer && !BackendMessages.IsAllowedIn(message.BackendKind, phase))
                    {
                        throw new FuzzFindingException($"{name}: the server sent {message.Name} in the {phase} phase, where the protocol's flow does not allow it");
                    }
                }
                else
                {
                    if (!client.AsSpan(clientAt).StartsWith(raw))
                    {
                        throw new FuzzFindingException($"{name}: Traffic reported frontend bytes {Oracle.Hex(raw)} at input offset {clientAt}, where the client sent {Oracle.Hex(client.AsSpan(clientAt))}");
                    }

                    clientAt += raw.Length;
                    if (rejected is not null)
                    {
                        throw new FuzzFindingException($"{name}: the server read on after a message the protocol rejects ({rejected})");
                    }

                    PgReadStatus status = frontend.TryRead(raw, out int consumed, out _, out PgDecodeError error);
                    if (status == PgReadStatus.Malformed)
                    {
                        rejected = error.ToString();
                    }
                    else if (status != PgReadStatus.Message || consumed != raw.Length)
                    {
                        throw new FuzzFindingException($"{name}: Traffic reported frontend bytes that are not one message ({status}): {Oracle.Hex(raw)}");
                    }
                }
            }

            if (outputAt != output.Length)
            {
                throw new FuzzFindingException($"{name}: Traffic reported {outputAt} bytes of the server's {output.Length}");
            }

            if (backendAfterRejected > 1)
            {
                throw new FuzzFindingException($"{name}: the server sent {backendAfterRejected} messages after a client message the protocol rejects ({rejected})");
            }
        }
    }

    /// <summary>
    /// The client's end of the connection: reads give the fuzzer's bytes (at most so many at a time),
    /// then the end of the stream; writes are kept. Everything completes at once.
    /// </summary>
    private sealed class ClientConnection(byte[] input, int readSize, byte[] outputBuffer) : Stream
    {
        private int _read;
        private int _written;
        private bool _closed;

        public int Consumed => _read;

        /// <summary>The buffer the output went to (kept for the next run: its growth is not the session's).</summary>
        public byte[] OutputBuffer => outputBuffer;

        public byte[] Output => outputBuffer.AsSpan(0, _written).ToArray();

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            ObjectDisposedException.ThrowIf(_closed, this);
            int n = Math.Min(Math.Min(buffer.Length, readSize), input.Length - _read);
            input.AsSpan(_read, n).CopyTo(buffer);
            _read += n;
            return n;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
            => cancellationToken.IsCancellationRequested ? ValueTask.FromCanceled<int>(cancellationToken) : ValueTask.FromResult(Read(buffer.Span));

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
            => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            ObjectDisposedException.ThrowIf(_closed, this);
            if (outputBuffer.Length - _written < buffer.Length)
            {
                Array.Resize(ref outputBuffer, Math.Max(outputBuffer.Length * 2, _written + buffer.Length));
            }

            buffer.CopyTo(outputBuffer.AsSpan(_written));
            _written += buffer.Length;
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                return ValueTask.FromCanceled(cancellationToken);
            }

            Write(buffer.Span);
            return ValueTask.CompletedTask;
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
            => WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Flush()
        {
        }

        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            _closed = true;
            base.Dispose(disposing);
        }
    }

    /// <summary>A small deterministic handler: each statement's first word says what it does.</summary>
    private sealed class FuzzHandler(PgBackendSession owner, SessionRun run) : PgSessionHandler
    {
        private static readonly PgColumn[] s_rowColumns = [new("n", 20, 8), new("t", 25)];
        private static readonly PgColumn[] s_textColumn = [new("param", 25)];
        private static readonly PgColumn[] s_intColumn = [new("int", 23, 4)];

        private TransactionStatus _status = TransactionStatus.Idle;

        public override TransactionStatus TransactionStatus => _status;

        public override ValueTask StartAsync(PgBackendSession session, CancellationToken cancellationToken)
            => session.Database == "nodb"
                ? throw new PgErrorException("FATAL", "3D000", $"database \"{session.Database}\" does not exist")
                : ValueTask.CompletedTask;

        public override IReadOnlyList<string> SplitQuery(string query)
            => query.Split(';', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);

        public override ValueTask<PgStatement> PrepareAsync(string sql, IReadOnlyList<uint> parameterTypes, CancellationToken cancellationToken)
            => ValueTask.FromResult(FirstWord(sql, out _) switch
            {
                "rows" => new PgStatement(sql, [], s_rowColumns),
                "param" => new PgStatement(sql, [25], s_textColumn),
                "int" => new PgStatement(sql, [23], s_intColumn),
                "bad" => throw new PgErrorException("42601", "syntax error at or near \"bad\"") { Position = 1 },
                _ => new PgStatement(sql, [], null),
            });

        public override ValueTask<PgStatementResult> BindAsync(PgStatement statement, PgBindContext bind, CancellationToken cancellationToken)
        {
            ReadOnlySpan<char> word = FirstWord(statement.Sql, out ReadOnlySpan<char> rest);
            ReadOnlySpan<char> second = FirstWord(rest, out ReadOnlySpan<char> third);
            return ValueTask.FromResult(word switch
            {
                "rows" => RowsResult(Count(rest)),
                "param" or "int" => PgStatementResult.Rows(statement.Columns!, [[Text(bind.Parameters[0])]]),
                "fail" => throw new PgErrorException("22012", "division by zero"),
                "fatal" => throw new PgErrorException("FATAL", "57P01", "terminating connection due to administrator command"),
                "empty" or "" => PgStatementResult.EmptyQuery,
                "notice" => Notice(),
                "notify" => Notify(),
                "set" when second.Length is > 0 and <= 64 && third.Length is > 0 and <= 64 && !third.Contains(' ') => Set(second.ToString(), third.ToString()),
                "begin" => Status(TransactionStatus.InTransaction, "BEGIN"),
                "commit" => Status(TransactionStatus.Idle, "COMMIT"),
                "rollback" => Status(TransactionStatus.Idle, "ROLLBACK"),
                "copy" when rest is "in" => new CopyIn(),
                "copy" when second is "out" => new CopyOut(Take(Count(third))),
                "terminate" => Terminate(),
                _ => PgStatementResult.Command("OK"),
            });
        }

        public override ValueTask OnErrorAsync(PgErrorException error, CancellationToken cancellationToken)
        {
            if (_status == TransactionStatus.InTransaction)
            {
                _status = TransactionStatus.FailedTransaction;
            }

            return ValueTask.CompletedTask;
        }

        private static string? Text(ReadOnlyMemory<byte>? value) => value is ReadOnlyMemory<byte> bytes ? Encoding.UTF8.GetString(bytes.Span) : null;

        /// <summary>The first word of <paramref name="text"/> (words are separated by spaces), and what follows it.</summary>
        private static ReadOnlySpan<char> FirstWord(ReadOnlySpan<char> text, out ReadOnlySpan<char> rest)
        {
            text = text.Trim(' ');
            int end = text.IndexOf(' ');
            rest = end < 0 ? default : text[end..].TrimStart(' ');
            return end < 0 ? text : text[..end];
        }

        private static int Count(ReadOnlySpan<char> text)
            => int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n < 100
                ? n
                : throw new PgErrorException("22P02", "a count from 0 to 99 expected");

        private int Take(int rows)
        {
            if (run.Rows + rows > HandlerRowBudget)
            {
                throw new PgErrorException("54000", "this session has produced its rows");
            }

            run.Rows += rows;
            return rows;
        }

        private PgStatementResult RowsResult(int n)
            => PgStatementResult.Rows(s_rowColumns, Enumerable.Range(1, Take(n)).Select(i => (IReadOnlyList<string?>)[i.ToString(CultureInfo.InvariantCulture), "row " + i.ToString(CultureInfo.InvariantCulture)]));

        private PgStatementResult Notice()
        {
            owner.SendNotice(new PgErrorException("NOTICE", "00000", "a notice"));
            return PgStatementResult.Command("NOTICE");
        }

        private PgStatementResult Notify()
        {
            owner.Notify("channel", "payload", owner.ProcessId);
            return PgStatementResult.Command("NOTIFY");
        }

        private PgStatementResult Set(string name, string value)
        {
            owner.SetParameter(name, value);
            return PgStatementResult.Command("SET");
        }

        private PgStatementResult Status(TransactionStatus status, string tag)
        {
            _status = status;
            return PgStatementResult.Command(tag);
        }

        private PgStatementResult Terminate()
        {
            run.Terminated = true;
            owner.Terminate();
            return PgStatementResult.Command("TERMINATE");
        }

        /// <summary>COPY FROM STDIN: counts the lines it is given.</summary>
        private sealed class CopyIn : PgCopyInResult
        {
            private long _lines;
            private string _tag = "";

            public override int ColumnCount => 1;

            public override string CommandTag => _tag;

            public override ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
            {
                _lines += data.Span.Count((byte)'\n');
                return ValueTask.CompletedTask;
            }

            public override ValueTask CompleteAsync(CancellationToken cancellationToken)
            {
                _tag = "COPY " + _lines.ToString(CultureInfo.InvariantCulture);
                return ValueTask.CompletedTask;
            }

            public override ValueTask FailAsync(string message, CancellationToken cancellationToken) => ValueTask.CompletedTask;
        }

        /// <summary>COPY TO STDOUT: so many lines.</summary>
        private sealed class CopyOut(int rows) : PgCopyOutResult
        {
            private int _sent;

            public override int ColumnCount => 1;

            public override string CommandTag => "COPY " + _sent.ToString(CultureInfo.InvariantCulture);

            public override ValueTask<ReadOnlyMemory<byte>?> ReadCopyDataAsync(CancellationToken cancellationToken)
            {
                if (_sent == rows)
                {
                    return ValueTask.FromResult<ReadOnlyMemory<byte>?>(null);
                }

                _sent++;
                return ValueTask.FromResult<ReadOnlyMemory<byte>?>(Encoding.UTF8.GetBytes("line " + _sent.ToString(CultureInfo.InvariantCulture) + "\n"));
            }
        }
    }
}
