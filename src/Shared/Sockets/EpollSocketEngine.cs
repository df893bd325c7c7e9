using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using static PgSpec.Sockets.LinuxInterop;

namespace PgSpec.Sockets;

/// <summary>Sockets served by PgSpec's own epoll loops (Linux), one event thread each; connections are spread over them in turn.</summary>
internal sealed class EpollSocketEngine : SocketEngine
{
    private readonly EventLoop[] _loops;
    private int _next;

    public EpollSocketEngine(int threads, bool inlineCompletions, Action<string>? log)
    {
        _loops = new EventLoop[threads];
        try
        {
            for (int i = 0; i < threads; i++)
            {
                _loops[i] = new EventLoop($"pgspec epoll {i + 1}", inlineCompletions, log);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public override string Description => $"epoll, {_loops.Length} event thread{(_loops.Length == 1 ? "" : "s")}";

    private EventLoop NextLoop() => _loops[(int)((uint)Interlocked.Increment(ref _next) % (uint)_loops.Length)];

    public override EngineSocket Adopt(Socket accepted) => EpollSocket.Adopt(NextLoop(), accepted);

    public override async ValueTask<EngineSocket> ConnectAsync(EndPoint endpoint, CancellationToken cancellationToken)
    {
        SocketException? last = null;
        foreach (EndPoint address in await EndPoints.ResolveAsync(endpoint, cancellationToken).ConfigureAwait(false))
        {
            try
            {
                return await EpollSocket.ConnectAsync(NextLoop(), address, cancellationToken).ConfigureAwait(false);
            }
            catch (SocketException e)
            {
                last = e;
            }
        }

        throw last!;
    }

    public override void Dispose()
    {
        foreach (EventLoop? loop in _loops)
        {
            loop?.Dispose();
        }
    }
}

/// <summary>
/// One epoll set and the thread that waits on it. A socket is registered once, edge-triggered for
/// reading and writing; the thread tells each socket which of its conditions came true, and the
/// socket finishes the operation waiting for it (inline on this thread, or on the thread pool).
/// </summary>
internal sealed unsafe class EventLoop : IDisposable
{
    private const int MaxEvents = 256;
    private const ulong WakeData = 0;

    private readonly int _epoll;
    private readonly int _wake;
    private readonly Thread _thread;
    private readonly ConcurrentQueue<GCHandle> _released = new();
    private readonly Action<string>? _log;
    private readonly Lock _state = new();
    private volatile bool _stopping;
    private bool _closed;

    public EventLoop(string name, bool inlineCompletions, Action<string>? log)
    {
        InlineCompletions = inlineCompletions;
        _log = log;
        _epoll = EpollCreate(EPOLL_CLOEXEC);
        if (_epoll < 0)
        {
            throw Error(Marshal.GetLastPInvokeError());
        }

        _wake = EventFd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (_wake < 0 || EpollAdd(_epoll, _wake, EPOLLIN, WakeData) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (_wake >= 0)
            {
                Close(_wake);
            }

            Close(_epoll);
            throw Error(errno);
        }

        _thread = new Thread(Run) { IsBackground = true, Name = name };
        _thread.Start();
    }

    /// <summary>Whether operations finished by this thread continue on it (else on the thread pool).</summary>
    public bool InlineCompletions { get; }

    /// <summary>True on this loop's thread.</summary>
    public bool IsLoopThread => Thread.CurrentThread == _thread;

    /// <summary>Adds a socket (edge-triggered: in, out, peer hang-up); returns the handle its events carry.</summary>
    public GCHandle Register(EpollSocket socket, int fd)
    {
        GCHandle handle = GCHandle.Alloc(socket);
        if (EpollAdd(_epoll, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, (ulong)GCHandle.ToIntPtr(handle)) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            handle.Free();
            throw Error(errno);
        }

        return handle;
    }

    /// <summary>
    /// Removes a socket before its descriptor is closed. Its handle is freed by the event thread
    /// after the events it is handling, which may still name the socket.
    /// </summary>
    public void Unregister(int fd, GCHandle handle)
    {
        EpollRemove(_epoll, fd);
        _released.Enqueue(handle);
    }

    private void Run()
    {
        byte* events = (byte*)NativeMemory.Alloc((nuint)(MaxEvents * EpollEventSize));
        try
        {
            while (!_stopping)
            {
                int count = EpollWait(_epoll, events, MaxEvents, -1);
                if (count < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == EINTR)
                    {
                        continue;
                    }

                    _log?.Invoke($"the epoll event thread stopped: {Marshal.GetPInvokeErrorMessage(errno)}");
                    return;
                }

                for (int i = 0; i < count; i++)
                {
                    byte* entry = events + (i * EpollEventSize);
                    uint flags = *(uint*)entry;
                    ulong data = *(ulong*)(entry + EpollDataOffset);
                    if (data == WakeData)
                    {
                        ulong drained;
                        Read(_wake, (byte*)&drained, sizeof(ulong));
                        continue;
                    }

                    EpollSocket socket = Unsafe.As<EpollSocket>(GCHandle.FromIntPtr((nint)data).Target!);
                    try
                    {
                        socket.OnEvents(flags);
                    }
                    catch (Exception e)
                    {
                        // A continuation's failure belongs to its connection; the thread serves the others.
                        _log?.Invoke("an error on the event thread: " + e);
                    }
                }

                while (!_released.IsEmpty && _released.TryDequeue(out GCHandle handle))
                {
                    handle.Free();
                }
            }
        }
        finally
        {
            NativeMemory.Free(events);
            lock (_state)
            {
                // After Dispose's wake-up write (or a fatal error): nothing writes to these any more.
                _closed = true;
                Close(_wake);
                Close(_epoll);
            }

            while (_released.TryDequeue(out GCHandle handle))
            {
                handle.Free();
            }
        }
    }

    /// <summary>Stops the thread (and waits for it, unless called on it, when it stops after the current events).</summary>
    public void Dispose()
    {
        lock (_state)
        {
            if (_stopping)
            {
                return;
            }

            _stopping = true;
            if (!_closed)
            {
                ulong one = 1;
                Write(_wake, (byte*)&one, sizeof(ulong));
            }
        }

        if (!IsLoopThread)
        {
            _thread.Join();
        }
    }
}
