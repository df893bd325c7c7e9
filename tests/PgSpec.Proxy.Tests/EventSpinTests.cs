using System.Diagnostics;
using System.Runtime.InteropServices;
using PgSpec.Sockets;
using static PgSpec.Sockets.LinuxInterop;

namespace PgSpec.Proxy.Tests;

/// <summary>
/// An event thread's polling before it sleeps (<see cref="EventSpin"/>): it finds an event that is
/// there, stops polling after enough polls found nothing (an idle server does not spin), tries
/// again now and then, and never polls when its time is zero. An epoll set with an eventfd stands
/// for the sockets: the eventfd is level-triggered, so an event stays there until it is read, and
/// whether a poll looked at all is seen from whether it found it.
/// </summary>
public sealed unsafe class EventSpinTests : IDisposable
{
    private const int MaxEvents = 4;
    private readonly int _epoll;
    private readonly int _eventFd;
    private readonly byte* _events;

    public EventSpinTests()
    {
        _epoll = EpollCreate(EPOLL_CLOEXEC);
        _eventFd = EventFd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        Assert.True(_epoll >= 0 && _eventFd >= 0, "epoll and eventfd are available");
        Assert.Equal(0, EpollAdd(_epoll, _eventFd, EPOLLIN, 7));
        _events = (byte*)NativeMemory.Alloc((nuint)(MaxEvents * EpollEventSize));
    }

    [Fact]
    public void Poll_FindsAnEventThatIsThere()
    {
        var spin = new EventSpin(Ticks(TimeSpan.FromSeconds(5)));
        Signal();

        Assert.Equal(1, spin.Poll(_epoll, _events, MaxEvents));
        Assert.Equal(7UL, *(ulong*)(_events + EpollDataOffset));
    }

    [Fact]
    public void Poll_WithNothingToFind_ReturnsWhenItsTimeIsUp()
    {
        var spin = new EventSpin(Ticks(TimeSpan.FromMilliseconds(2)));
        long started = Stopwatch.GetTimestamp();

        Assert.Equal(0, spin.Poll(_epoll, _events, MaxEvents));
        Assert.True(Stopwatch.GetElapsedTime(started) >= TimeSpan.FromMilliseconds(2), "it polled for its whole time");
    }

    [Fact]
    public void Poll_AfterPollsThatFoundNothing_StopsPollingAndTriesAgainOnceInAWhile()
    {
        var spin = new EventSpin(Ticks(TimeSpan.FromMilliseconds(1)));
        for (int i = 0; i < EventSpin.MaxMisses; i++)
        {
            Assert.Equal(0, spin.Poll(_epoll, _events, MaxEvents));
        }

        // An event is there now, but the thread has stopped polling: it sleeps in epoll_wait, which
        // finds the event at once, instead of spinning.
        Signal();
        for (int i = 1; i < EventSpin.RetryEvery; i++)
        {
            Assert.Equal(0, spin.Poll(_epoll, _events, MaxEvents));
        }

        // The try that comes once in RetryEvery waits finds it, and polling goes on from then.
        Assert.Equal(1, spin.Poll(_epoll, _events, MaxEvents));
        Assert.Equal(1, spin.Poll(_epoll, _events, MaxEvents));
    }

    [Fact]
    public void Poll_WithNoTime_NeverPolls()
    {
        var spin = new EventSpin(0);
        Signal();

        Assert.Equal(0, spin.Poll(_epoll, _events, MaxEvents));
    }

    public void Dispose()
    {
        NativeMemory.Free(_events);
        _ = Close(_eventFd);
        _ = Close(_epoll);
    }

    private static long Ticks(TimeSpan time) => (long)(time.TotalSeconds * Stopwatch.Frequency);

    private void Signal()
    {
        ulong one = 1;
        Assert.Equal(8, (int)Write(_eventFd, (byte*)&one, 8));
    }
}
