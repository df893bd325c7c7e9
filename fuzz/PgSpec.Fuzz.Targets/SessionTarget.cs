using System.Buffers.Binary;
using System.Text;
using PgSpec.Protocol;
using PgSpec.Client;

namespace PgSpec.Fuzz;

/// <summary>
/// The frontend session talking to a hostile server over an in-memory connection: the server's
/// side is the fuzzer's bytes, whatever the session says. The session may only fail with
/// PgSpec's own exceptions (a protocol violation, a refused or dropped connection, a server
/// error), every message it reports must re-encode to the bytes it came in, and nothing may
/// wait: the connection always has data or has ended.
/// </summary>
public sealed class SessionTarget : FuzzTarget
{
    /// <summary>What a session may allocate besides <see cref="Oracle.DecodeBytesPerInputByte"/> per input byte (TLS handshakes included).</summary>
    public const long SessionBaseBudget = 16L << 20;

    /// <inheritdoc/>
    public override string Name => "session";

    /// <inheritdoc/>
    public override string Description =>
        "a session against a hostile server. Input: two option bytes, then what the server sends (over every connection the session opens, in order). "
        + "Byte 0: bit 0 protocol 3.2, bit 1 GSSENCRequest first, bits 2-3 sslmode (disable, prefer, require, allow), bit 4 a password is given, bits 5-7 the operation "
        + "(simple query, COPY FROM STDIN, extended query, function call, COPY BOTH, wait for a notification, pipeline with Flush, cancel then query). "
        + "Byte 1: bit 0 require the protocol version, bits 1-2 channel binding (prefer, disable, require), bit 3 direct TLS, bits 4-5 how many times the operation runs (1-4).";

    /// <inheritdoc/>
    protected override void Warm()
    {
        Oracle.Initialise();
        Execute([0, 0, (byte)'R', 0, 0, 0, 8, 0, 0, 0, 0, (byte)'Z', 0, 0, 0, 5, (byte)'I']);
    }

    /// <inheritdoc/>
    protected override void Execute(ReadOnlySpan<byte> input)
    {
        if (input.Length < 2)
        {
            return;
        }

        byte a = input[0];
        byte b = input[1];
        var options = new PgConnectOptions
        {
            User = "fuzz",
            Database = "fuzz",
            Password = (a & 0x10) != 0 ? "secret" : null,
            ProtocolVersion = (a & 1) != 0 ? PgProtocolVersion.V3_2 : PgProtocolVersion.V3_0,
            RequestGssEncryption = (a & 2) != 0,
            SslMode = ((a >> 2) & 3) switch { 1 => PgSslMode.Prefer, 2 => PgSslMode.Require, 3 => PgSslMode.Allow, _ => PgSslMode.Disable },
            RequireProtocolVersion = (b & 1) != 0,
            ChannelBinding = ((b >> 1) & 3) switch { 1 => PgChannelBinding.Disable, 2 => PgChannelBinding.Require, _ => PgChannelBinding.Prefer },
            SslNegotiation = (b & 8) != 0 ? PgSslNegotiation.Direct : PgSslNegotiation.Postgres,
            ConnectTimeout = Timeout.InfiniteTimeSpan,
            CommandTimeout = Timeout.InfiniteTimeSpan,
        };
        int operation = a >> 5;
        int repeats = 1 + ((b >> 4) & 3);
        var server = new HostileServer(input[2..].ToArray());
        var traffic = new TrafficCheck(Name);

        long before = Oracle.Allocated();
        Task run = RunAsync(options, server, traffic, operation, repeats);
        if (!run.IsCompleted)
        {
            throw new FuzzFindingException($"{Name}: the session waits although the connection always has data or has ended");
        }

        run.GetAwaiter().GetResult();
        long allocated = Oracle.Allocated() - before;
        Oracle.CheckAllocation($"{Name}: the session", allocated, SessionBaseBudget + ((long)Oracle.DecodeBytesPerInputByte * input.Length));
        traffic.ThrowIfFailed();
    }

    private static async Task RunAsync(PgConnectOptions options, HostileServer server, TrafficCheck traffic, int operation, int repeats)
    {
        PgFrontendSession session;
        try
        {
            session = await PgFrontendSession.ConnectAsync(options, _ => ValueTask.FromResult<Stream>(server.Open()), traffic.Observe).ConfigureAwait(false);
        }
        catch (PgException)
        {
            return;
        }

        try
        {
            for (int i = 0; i < repeats; i++)
            {
                try
                {
                    await OperateAsync(session, operation).ConfigureAwait(false);
                }
                catch (PgServerException)
                {
                    // An ErrorResponse: the session goes on.
                }
            }
        }
        catch (PgException)
        {
            // The session ended as it should on what the server did.
        }
        finally
        {
            await session.DisposeAsync().ConfigureAwait(false);
        }
    }

    private static async Task OperateAsync(PgFrontendSession session, int operation)
    {
        switch (operation)
        {
            case 0:
                await session.QueryAsync("SELECT 1").ConfigureAwait(false);
                break;
            case 1:
                await session.QueryAsync("COPY t FROM STDIN", [Encoding.UTF8.GetBytes("1\tone\n")]).ConfigureAwait(false);
                break;
            case 2:
                await session.ExecuteAsync("SELECT $1, $2", [Encoding.UTF8.GetBytes("1"), null], [0, 0], [25, 25], maxRows: 1, resultFormats: [0]).ConfigureAwait(false);
                break;
            case 3:
                byte[] argument = new byte[4];
                BinaryPrimitives.WriteInt32BigEndian(argument, 41);
                await session.CallFunctionAsync(177, [argument, null], [1], 1).ConfigureAwait(false);
                break;
            case 4:
                await session.StartCopyBothAsync("START_REPLICATION SLOT s LOGICAL 0/0").ConfigureAwait(false);
                await session.ReceiveAsync().ConfigureAwait(false);
                await session.EndCopyBothAsync().ConfigureAwait(false);
                break;
            case 5:
                await session.WaitForNotificationAsync().ConfigureAwait(false);
                break;
            case 6:
                await session.RoundTripAsync(
                    [new Parse("", "SELECT 1", []), new Bind("", "", [], [], []), new Describe(StatementOrPortal.Portal, ""), new Execute("", 0), new Flush()],
                    until: m => m is CommandComplete or ErrorResponse).ConfigureAwait(false);
                break;
            default:
                await session.CancelAsync().ConfigureAwait(false);
                await session.QueryAsync("SELECT 2").ConfigureAwait(false);
                break;
        }
    }

    /// <summary>
    /// Checks what the session reports: every received message re-encodes to the bytes it came in,
    /// and is one the protocol's flow allows in the phase the connection is in (followed here from
    /// the same traffic, from its StartupMessage on).
    /// </summary>
    private sealed class TrafficCheck(string name)
    {
        private readonly DecodeContext _context = new();
        private FuzzFindingException? _failure;

        public void Observe(PgTraffic traffic)
        {
            try
            {
                Check(traffic);
            }
            catch (FuzzFindingException e)
            {
                _failure ??= e;
            }
        }

        private void Check(PgTraffic traffic)
        {
            ReadOnlySpan<byte> raw = traffic.Raw.Span;
            if (traffic.Message is null)
            {
                if (raw.Length != 1)
                {
                    throw new FuzzFindingException($"{name}: a {raw.Length}-byte {traffic.Name} reported without a message");
                }

                return;
            }

            IPgMessage message = traffic.Message;
            PgProtocolVersion version = _context.ProtocolVersion;
            if (traffic.Direction == PgDirection.Backend)
            {
                Oracle.CheckReencodes($"{name}: received", message, raw, version, _context.Limits);
                if (message is IBackendMessage backend)
                {
                    if (backend.BackendKind != BackendMessageKind.Unknown && !BackendMessages.IsAllowedIn(backend.BackendKind, _context.Phase))
                    {
                        throw new FuzzFindingException($"{name}: the session took {traffic.Name} in the {_context.Phase} phase, where the protocol's flow does not allow it");
                    }

                    _context.ObserveBackend(backend.BackendKind, raw[5..]);
                }
            }
            else if (message is IFrontendMessage frontend)
            {
                if (frontend.FrontendKind == FrontendMessageKind.StartupMessage)
                {
                    _context.ProtocolVersion = PgProtocolVersion.Latest;
                }

                _context.ObserveFrontend(frontend.FrontendKind, raw[(message.TypeByte < 0 ? 4 : 5)..]);
            }
        }

        public void ThrowIfFailed()
        {
            if (_failure is not null)
            {
                throw _failure;
            }
        }
    }

    /// <summary>The server: its bytes, handed out in order over every connection the session opens; what the session writes is dropped.</summary>
    private sealed class HostileServer(byte[] script)
    {
        private int _cursor;

        public Stream Open() => new Connection(this);

        public int Read(Span<byte> buffer)
        {
            int n = Math.Min(buffer.Length, script.Length - _cursor);
            script.AsSpan(_cursor, n).CopyTo(buffer);
            _cursor += n;
            return n;
        }

        private sealed class Connection(HostileServer server) : Stream
        {
            private bool _closed;

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
                return server.Read(buffer);
            }

            public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
                => cancellationToken.IsCancellationRequested ? ValueTask.FromCanceled<int>(cancellationToken) : ValueTask.FromResult(Read(buffer.Span));

            public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
                => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

            public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

            public override void Write(ReadOnlySpan<byte> buffer) => ObjectDisposedException.ThrowIf(_closed, this);

            public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
            {
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
    }
}
