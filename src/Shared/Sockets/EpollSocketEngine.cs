using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using static PgSpec.Sockets.LinuxInterop;

namespace PgSpec.Sockets;

/// <summary>
/// Sockets served by PgSpec's own epoll loops (Linux). Either each event thread has an epoll set
/// of its own and connections are spread over them in turn, or all the threads wait on one set and
/// a ready socket is served by whichever thread is free: then a thread the scheduler preempts (on
/// a busy machine, often for the very client it just answered) holds up no other connection.
/// </summary>
internal sealed class EpollSocketEngine : SocketEngine
{
    private readonly EventLoop[] _loops;
    private readonly int _threads;
    private readonly bool _shared;
    private int _next;

    public EpollSocketEngine(int threads, bool shared, bool inlineCompletions, Action<string>? log, TimeSpan spin = default)
    {
        _threads = threads;
        _shared = shared;
        _loops = new EventLoop[shared ? 1 : threads];
        try
        {
            for (int i = 0; i < _loops.Length; i++)
            {
                _loops[i] = shared
                    ? new EventLoop("pgspec epoll", threads, inlineCompletions, log, spin)
                    : new EventLoop($"pgspec epoll {i + 1}", 1, inlineCompletions, log, spin);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public override string Description => $"epoll, {_threads} event thread{(_threads == 1 ? "" : "s")}{(_shared && _threads > 1 ? " on one set" : "")}";

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
/// One epoll set and the threads that wait on it. A socket is registered once, edge-triggered for
/// reading and writing; a thread tells each socket which of its conditions came true, and the
/// socket finishes the operation waiting for it (inline on that thread, or on the thread pool).
/// With several threads, an event wakes one of them (epoll's waiters are exclusive); the socket's
/// gate orders what two threads learn of one socket.
/// </summary>
/// <remarks>
/// An event names its socket by a slot in a table and the registration's generation, never by a
/// pointer: an event taken from the set before a socket was removed, and handled after, finds the
/// slot empty or given to another registration and is dropped.
/// </remarks>
internal sealed unsafe class EventLoop : IDisposable
{
    private const int MaxEvents = 256;
    private const ulong WakeData = 0;

    [ThreadStatic]
    private static EventLoop? t_current;

    private readonly int _epoll;
    private readonly int _wake;
    private readonly Thread[] _threads;
    private readonly Action<string>? _log;
    private readonly long _spinTicks;
    private readonly Lock _state = new();
    private readonly Lock _slotLock = new();
    private readonly Stack<int> _freeSlots = new();
    private EpollSocket?[] _slots = new EpollSocket?[64];
    private int _usedSlots;
    private uint _generation;
    private int _running;
    private volatile bool _stopping;
    private bool _closed;

    public EventLoop(string name, int threads, bool inlineCompletions, Action<string>? log, TimeSpan spin = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        _spinTicks = (long)(spin.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
        InlineCompletions = inlineCompletions;
        _log = log;
        _epoll = EpollCreate(EPOLL_CLOEXEC);
        if (_epoll < 0)
        {
            throw Error(Marshal.GetLastPInvokeError());
        }

        // Level-triggered and never drained once stopping: every thread sees it.
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

        _threads = new Thread[threads];
        _running = threads;
        for (int i = 0; i < threads; i++)
        {
            _threads[i] = new Thread(Run) { IsBackground = true, Name = threads == 1 ? name : $"{name} {i + 1}" };
        }

        foreach (Thread thread in _threads)
        {
            thread.Start();
        }
    }

    /// <summary>Whether operations finished by this loop's threads continue on them (else on the thread pool).</summary>
    public bool InlineCompletions { get; }

    /// <summary>True on one of this loop's threads.</summary>
    public bool IsLoopThread => t_current == this;

    /// <summary>
    /// Adds a socket (edge-triggered: in, out, peer hang-up); returns what its events carry, which
    /// the socket keeps as <see cref="EpollSocket.EventData"/> and gives back to <see cref="Unregister"/>.
    /// </summary>
    public ulong Register(EpollSocket socket, int fd)
    {
        ulong data;
        lock (_slotLock)
        {
            int slot;
            if (!_freeSlots.TryPop(out slot))
            {
                if (_usedSlots == _slots.Length)
                {
                    var larger = new EpollSocket?[_slots.Length * 2];
                    _slots.CopyTo(larger, 0);
                    Volatile.Write(ref _slots, larger);
                }

                slot = _usedSlots++;
            }

            _generation = _generation == uint.MaxValue ? 1 : _generation + 1;
            data = ((ulong)_generation << 32) | (uint)(slot + 1);
            socket.EventData = data;
            Volatile.Write(ref _slots[slot], socket);
        }

        if (EpollAdd(_epoll, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, data) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            Release(data);
            throw Error(errno);
        }

        return data;
    }

    /// <summary>Removes a socket before its descriptor is closed; events already taken for it are dropped.</summary>
    public void Unregister(int fd, ulong data)
    {
        EpollRemove(_epoll, fd);
        Release(data);
    }

    private void Release(ulong data)
    {
        int slot = (int)(uint)data - 1;
        lock (_slotLock)
        {
            if (_slots[slot] is { } socket && socket.EventData == data)
            {
                _slots[slot] = null;
                _freeSlots.Push(slot);
            }
        }
    }

    private void Run()
    {
        t_current = this;
        var spin = new EventSpin(_spinTicks);
        byte* events = (byte*)NativeMemory.Alloc((nuint)(MaxEvents * EpollEventSize));
        try
        {
            while (!_stopping)
            {
                int count = spin.Poll(_epoll, events, MaxEvents);
                if (count == 0)
                {
                    count = EpollWait(_epoll, events, MaxEvents, -1);
                }

                if (count < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == EINTR)
                    {
                        continue;
                    }

                    _log?.Invoke($"an epoll event thread stopped: {Marshal.GetPInvokeErrorMessage(errno)}");
                    return;
                }

                for (int i = 0; i < count; i++)
                {
                    byte* entry = events + (i * EpollEventSize);
                    uint flags = *(uint*)entry;
                    ulong data = *(ulong*)(entry + EpollDataOffset);
                    if (data == WakeData)
                    {
                        // Only Dispose writes it, to stop every thread.
                        break;
                    }

                    int slot = (int)(uint)data - 1;
                    EpollSocket?[] slots = Volatile.Read(ref _slots);
                    EpollSocket? socket = (uint)slot < (uint)slots.Length ? Volatile.Read(ref slots[slot]) : null;
                    if (socket is null || socket.EventData != data)
                    {
                        continue;
                    }

                    try
                    {
                        socket.OnEvents(flags);
                    }
                    catch (Exception e)
                    {
                        // A continuation's failure belongs to its connection; the thread serves the others.
                        _log?.Invoke("an error on an event thread: " + e);
                    }
                }
            }
        }
        finally
        {
            NativeMemory.Free(events);
            t_current = null;
            if (Interlocked.Decrement(ref _running) == 0)
            {
                lock (_state)
                {
                    // The last thread out (after Dispose's wake-up write, or fatal errors): nothing writes to these any more.
                    _closed = true;
                    Close(_wake);
                    Close(_epoll);
                }
            }
        }
    }

    /// <summary>Stops the threads (and waits for them, unless called on one, which stops after its current events).</summary>
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

        foreach (Thread thread in _threads)
        {
            if (thread != Thread.CurrentThread)
            {
                thread.Join();
            }
        }
    }
}

/// <summary>
/// An event thread's polling before it sleeps: after serving events, the thread asks the set again
/// without waiting until an event comes or the spin's time is up, and only then sleeps in
/// epoll_wait. A client that answers within that time (a benchmark's next query, a pipeline's next
/// batch) finds the thread awake, instead of paying a sleep, a wake-up and a switch for each round
/// trip; Go's scheduler and .NET's thread pool spin for the same reason. Spinning that keeps finding
/// nothing stops: after <see cref="MaxMisses"/> spins in a row without an event, the thread spins
/// again only once every <see cref="RetryEvery"/> waits, so that an idle or lightly used server
/// costs next to nothing.
/// </summary>
internal unsafe struct EventSpin(long ticks)
{
    internal const int MaxMisses = 8;
    internal const int RetryEvery = 16;

    private int _misses;
    private int _skipped;

    /// <summary>The number of events found while spinning (0: none, time to sleep).</summary>
    public int Poll(int epoll, byte* events, int maxEvents)
    {
        if (ticks <= 0)
        {
            return 0;
        }

        if (_misses >= MaxMisses && ++_skipped < RetryEvery)
        {
            return 0;
        }

        _skipped = 0;
        long until = System.Diagnostics.Stopwatch.GetTimestamp() + ticks;
        int count;
        while ((count = EpollWait(epoll, events, maxEvents, 0)) == 0)
        {
            if (System.Diagnostics.Stopwatch.GetTimestamp() >= until)
            {
                _misses++;
                return 0;
            }
        }

        // An error (negative) is left to the sleeping wait, which reports it.
        _misses = count > 0 ? 0 : _misses;
        return Math.Max(count, 0);
    }
}
