using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;
using static PgSpec.Sockets.LinuxInterop;

namespace PgSpec.Sockets;

/// <summary>
/// A non-blocking socket served by an <see cref="EventLoop"/>. At most one receive and one send
/// wait at a time. An operation is tried at once when the socket may be ready, and otherwise waits
/// for the event thread's news, without a system call. Since the registration is edge-triggered, a
/// receive that returns less than it asked for marks the socket drained (any later byte brings a
/// new event): unlike .NET's sockets, no receive is made only to learn that nothing is there.
/// Every system call on the descriptor happens under the socket's gate and never after it is
/// disposed, so a closed descriptor number, reused by another socket, is never touched.
/// </summary>
internal sealed class EpollSocket : EngineSocket
{
    private readonly EventLoop _loop;
    private readonly Socket _socket;
    private readonly int _fd;
    private readonly SpinGate _gate = new();
    private readonly Operation _read;
    private readonly Operation _write;
    private bool _registered;
    private bool _readReady = true;
    private bool _writeReady = true;
    private bool _hangUp;
    private bool _disposed;
    private EpollStream? _stream;

    private EpollSocket(EventLoop loop, Socket socket)
    {
        _loop = loop;
        _socket = socket;
        _fd = (int)socket.Handle;
        _read = new Operation(this);
        _write = new Operation(this);
        if (SetNonBlocking(_fd) != 0)
        {
            throw Error(Marshal.GetLastPInvokeError());
        }
    }

    /// <summary>What this socket's events carry: its slot in the loop's table and the registration's generation (set by <see cref="EventLoop.Register"/>).</summary>
    internal ulong EventData { get; set; }

    public override Stream Stream => _stream ??= new EpollStream(this);

    public override int Available
    {
        get
        {
            using (_gate.Hold())
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                int available = LinuxInterop.Available(_fd);
                return available >= 0 ? available : throw Error(Marshal.GetLastPInvokeError());
            }
        }
    }

    /// <summary>Takes over a socket the listener accepted.</summary>
    public static EpollSocket Adopt(EventLoop loop, Socket accepted)
    {
        var socket = new EpollSocket(loop, accepted);
        socket.Register();
        return socket;
    }

    /// <summary>Connects a new socket to one address (IP or Unix-domain).</summary>
    public static async ValueTask<EpollSocket> ConnectAsync(EventLoop loop, EndPoint address, CancellationToken cancellationToken)
    {
        Socket raw = address is UnixDomainSocketEndPoint
            ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            : new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        EpollSocket? socket = null;
        try
        {
            socket = new EpollSocket(loop, raw);
            await socket.ConnectCoreAsync(address.Serialize(), cancellationToken).ConfigureAwait(false);
            return socket;
        }
        catch
        {
            if (socket is null)
            {
                raw.Dispose();
            }
            else
            {
                socket.Dispose();
            }

            throw;
        }
    }

    public override ValueTask<int> PeekAsync(Memory<byte> buffer, CancellationToken cancellationToken)
        => ReceiveAsync(buffer, MSG_PEEK, cancellationToken);

    public override void ShutdownSend()
    {
        using (_gate.Hold())
        {
            if (!_disposed)
            {
                Shutdown(_fd, SHUT_WR);
            }
        }
    }

    public override void Dispose()
    {
        Operation? read = null;
        Operation? write = null;
        using (_gate.Hold())
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            if (_read.Pending)
            {
                _read.SetOutcome(0, new ObjectDisposedException(nameof(EpollSocket)));
                read = _read;
            }

            if (_write.Pending)
            {
                _write.SetOutcome(0, new ObjectDisposedException(nameof(EpollSocket)));
                write = _write;
            }
        }

        read?.Finish(inline: false);
        write?.Finish(inline: false);
        if (_registered)
        {
            _loop.Unregister(_fd, EventData);
        }

        _socket.Dispose();
    }

    /// <summary>The event thread's news: <paramref name="events"/> are the epoll flags that came true.</summary>
    internal void OnEvents(uint events)
    {
        Operation? read = null;
        Operation? write = null;
        using (_gate.Hold())
        {
            if (_disposed)
            {
                return;
            }

            if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0)
            {
                // From now on a receive returns at once (the end, or an error): never wait for another edge.
                _hangUp = true;
            }

            if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0)
            {
                _readReady = true;
                if (_read.Pending && TryReceive(_read, out int received, out Exception? error))
                {
                    _read.SetOutcome(received, error);
                    read = _read;
                }
            }

            if ((events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0)
            {
                _writeReady = true;
                if (_write.Pending && TryProgressWrite(_write))
                {
                    write = _write;
                }
            }
        }

        read?.Finish(_loop.InlineCompletions);
        write?.Finish(_loop.InlineCompletions);
    }

    /// <summary>Receives (or peeks at) what is there, waiting for it if nothing is.</summary>
    internal ValueTask<int> ReceiveAsync(Memory<byte> buffer, int flags, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<int>(cancellationToken);
        }

        short version;
        using (_gate.Hold())
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_read.Pending)
            {
                throw new InvalidOperationException("a receive is already waiting on this socket");
            }

            _read.Begin(buffer, default, flags, cancellationToken);
            if (_readReady && TryReceive(_read, out int received, out Exception? error))
            {
                _read.SetOutcome(0, null);
                return error is null ? new ValueTask<int>(received) : ValueTask.FromException<int>(error);
            }

            version = _read.Version;
        }

        _read.WatchCancellation(version, cancellationToken);
        return new ValueTask<int>(_read, version);
    }

    /// <summary>Sends all of <paramref name="data"/>, waiting for room when the socket's buffer is full.</summary>
    internal ValueTask SendAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        short version;
        using (_gate.Hold())
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_write.Pending)
            {
                throw new InvalidOperationException("a send is already waiting on this socket");
            }

            _write.Begin(default, data, 0, cancellationToken);
            if (_writeReady && TryProgressWrite(_write))
            {
                Exception? error = _write.TakeError();
                return error is null ? default : ValueTask.FromException(error);
            }

            version = _write.Version;
        }

        _write.WatchCancellation(version, cancellationToken);
        return new ValueTask(_write, version);
    }

    private void Register()
    {
        _loop.Register(this, _fd);
        _registered = true;
    }

    private async ValueTask ConnectCoreAsync(SocketAddress address, CancellationToken cancellationToken)
    {
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int errno = StartConnect(address);
            if (errno == 0)
            {
                Register();
                return;
            }

            if (errno is EINPROGRESS or EINTR)
            {
                // Registered only now: a socket not yet connecting reports a hang-up.
                _writeReady = false;
                Register();
                short version;
                using (_gate.Hold())
                {
                    _write.Begin(default, default, ConnectFlag, cancellationToken);
                    if (_writeReady && TryProgressWrite(_write))
                    {
                        Exception? error = _write.TakeError();
                        if (error is not null)
                        {
                            throw error;
                        }

                        return;
                    }

                    version = _write.Version;
                }

                _write.WatchCancellation(version, cancellationToken);
                await new ValueTask(_write, version).ConfigureAwait(false);
                return;
            }

            if (errno == EAGAIN)
            {
                // A Unix-domain socket whose listen queue is full: try again shortly.
                await Task.Delay(10, cancellationToken).ConfigureAwait(false);
                continue;
            }

            throw Error(errno);
        }
    }

    private unsafe int StartConnect(SocketAddress address)
    {
        fixed (byte* bytes = address.Buffer.Span)
        {
            return LinuxInterop.Connect(_fd, bytes, address.Size) == 0 ? 0 : Marshal.GetLastPInvokeError();
        }
    }

    private const int ConnectFlag = 1 << 30;

    /// <summary>Under the gate: tries the receive; false when it must wait.</summary>
    private unsafe bool TryReceive(Operation operation, out int received, out Exception? error)
    {
        error = null;
        received = 0;
        Memory<byte> buffer = operation.Buffer;
        if (buffer.IsEmpty)
        {
            // A zero-byte read waits for readiness only.
            return true;
        }

        while (true)
        {
            nint count;
            fixed (byte* bytes = buffer.Span)
            {
                count = Recv(_fd, bytes, buffer.Length, operation.Flags);
            }

            if (count >= 0)
            {
                received = (int)count;
                if (count == 0)
                {
                    _hangUp = true;
                }
                else if (count < buffer.Length && (operation.Flags & MSG_PEEK) == 0 && !_hangUp)
                {
                    _readReady = false;
                }

                return true;
            }

            int errno = Marshal.GetLastPInvokeError();
            if (errno == EINTR)
            {
                continue;
            }

            if (errno == EAGAIN)
            {
                _readReady = false;
                return false;
            }

            error = TransportError(errno, reading: true);
            return true;
        }
    }

    /// <summary>Under the gate: sends what it can, or finishes a connect; true when the operation is over (its outcome set).</summary>
    private unsafe bool TryProgressWrite(Operation operation)
    {
        if (operation.Flags == ConnectFlag)
        {
            int pending = SocketError(_fd);
            operation.SetOutcome(0, pending == 0 ? null : LinuxInterop.Error(pending));
            return true;
        }

        while (!operation.Data.IsEmpty)
        {
            nint count;
            fixed (byte* bytes = operation.Data.Span)
            {
                count = Send(_fd, bytes, operation.Data.Length, MSG_NOSIGNAL);
            }

            if (count >= 0)
            {
                operation.Data = operation.Data[(int)count..];
                continue;
            }

            int errno = Marshal.GetLastPInvokeError();
            if (errno == EINTR)
            {
                continue;
            }

            if (errno == EAGAIN)
            {
                // Full: the kernel marks the socket, and an edge follows once there is room.
                _writeReady = false;
                return false;
            }

            operation.SetOutcome(0, TransportError(errno, reading: false));
            return true;
        }

        operation.SetOutcome(0, null);
        return true;
    }

    /// <summary>A failed receive or send, worded as <see cref="NetworkStream"/> words it.</summary>
    private static IOException TransportError(int errno, bool reading)
        => new((reading ? "Unable to read data from" : "Unable to write data to") + " the transport connection: " + Marshal.GetPInvokeErrorMessage(errno) + ".", LinuxInterop.Error(errno));

    /// <summary>A waiting receive, send or connect: one per direction, reused (no allocation per operation).</summary>
    private sealed class Operation(EpollSocket owner) : IValueTaskSource<int>, IValueTaskSource
    {
        private ManualResetValueTaskSourceCore<int> _core;
        private CancellationToken _token;
        private CancellationTokenRegistration _registration;
        private CancellationTokenRegistration _finished;
        private int _result;
        private Exception? _error;

        public bool Pending { get; private set; }

        public Memory<byte> Buffer { get; private set; }

        public ReadOnlyMemory<byte> Data { get; set; }

        public int Flags { get; private set; }

        public short Version => _core.Version;

        /// <summary>Under the gate.</summary>
        public void Begin(Memory<byte> buffer, ReadOnlyMemory<byte> data, int flags, CancellationToken token)
        {
            _core.Reset();
            Pending = true;
            Buffer = buffer;
            Data = data;
            Flags = flags;
            _token = token;
            _result = 0;
            _error = null;
        }

        /// <summary>Under the gate: the operation is over; <see cref="Finish"/> reports it after the gate.</summary>
        public void SetOutcome(int result, Exception? error)
        {
            Pending = false;
            _result = result;
            _error = error;
            Buffer = default;
            Data = default;
            _finished = _registration;
            _registration = default;
        }

        /// <summary>Under the gate, for an operation over before it waited: its error, if any.</summary>
        public Exception? TakeError()
        {
            Exception? error = _error;
            _error = null;
            return error;
        }

        /// <summary>Cancels the operation when the token is cancelled, as long as it still waits.</summary>
        public void WatchCancellation(short version, CancellationToken token)
        {
            if (!token.CanBeCanceled)
            {
                return;
            }

            CancellationTokenRegistration registration = token.UnsafeRegister(static (state, token) => ((Operation)state!).Cancel(token), this);
            using (owner._gate.Hold())
            {
                if (Pending && Version == version)
                {
                    _registration = registration;
                    return;
                }
            }

            registration.Unregister();
        }

        /// <summary>Completes the awaiter: its continuation runs here when <paramref name="inline"/>, else on the thread pool.</summary>
        public void Finish(bool inline)
        {
            CancellationTokenRegistration finished = _finished;
            _finished = default;
            finished.Unregister();
            _core.RunContinuationsAsynchronously = !inline;
            if (_error is null)
            {
                _core.SetResult(_result);
            }
            else
            {
                _core.SetException(_error);
            }
        }

        private void Cancel(CancellationToken token)
        {
            using (owner._gate.Hold())
            {
                if (!Pending || _token != token)
                {
                    return;
                }

                SetOutcome(0, new OperationCanceledException(token));
            }

            Finish(inline: false);
        }

        public int GetResult(short token) => _core.GetResult(token);

        void IValueTaskSource.GetResult(short token) => _core.GetResult(token);

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
            => _core.OnCompleted(continuation, state, token, flags);
    }

    /// <summary>The socket as a stream (not owning it).</summary>
    private sealed class EpollStream(EpollSocket socket) : Stream
    {
        public override bool CanRead => true;

        public override bool CanWrite => true;

        public override bool CanSeek => false;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
            => socket.ReceiveAsync(buffer, 0, cancellationToken);

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
            => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
            => socket.SendAsync(buffer, cancellationToken);

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
            => WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count)
        {
            RefuseOnLoopThread();
            return ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();
        }

        public override void Write(byte[] buffer, int offset, int count)
        {
            RefuseOnLoopThread();
            WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();
        }

        public override void Flush()
        {
        }

        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        /// <summary>Blocking the event thread would wait for the thread itself.</summary>
        private void RefuseOnLoopThread()
        {
            if (socket._loop.IsLoopThread)
            {
                throw new InvalidOperationException("synchronous socket I/O on the epoll event thread");
            }
        }
    }
}
