using System.Globalization;

namespace PgSpec.Proxy;

/// <summary>Counts of connections and messages, updated as the proxy runs.</summary>
public sealed class ProxyStatistics
{
    private long _accepted;
    private long _closed;
    private long _failed;
    private long _cancelRequests;
    private long _refused;
    private long _frontendMessages;
    private long _backendMessages;
    private long _frontendBytes;
    private long _backendBytes;
    private long _largestBuffer;

    /// <summary>Connections accepted.</summary>
    public long Accepted => Interlocked.Read(ref _accepted);

    /// <summary>Connections that ended normally.</summary>
    public long Closed => Interlocked.Read(ref _closed);

    /// <summary>Connections closed because of an error (malformed traffic, timeouts, an unreachable server).</summary>
    public long Failed => Interlocked.Read(ref _failed);

    /// <summary>Connections refused because the proxy already served its maximum (also counted as closed).</summary>
    public long Refused => Interlocked.Read(ref _refused);

    /// <summary>Cancel requests received.</summary>
    public long CancelRequests => Interlocked.Read(ref _cancelRequests);

    /// <summary>Messages from clients.</summary>
    public long FrontendMessages => Interlocked.Read(ref _frontendMessages);

    /// <summary>Messages from servers.</summary>
    public long BackendMessages => Interlocked.Read(ref _backendMessages);

    /// <summary>Bytes from clients.</summary>
    public long FrontendBytes => Interlocked.Read(ref _frontendBytes);

    /// <summary>Bytes from servers.</summary>
    public long BackendBytes => Interlocked.Read(ref _backendBytes);

    /// <summary>
    /// The largest receive buffer a connection has had, in bytes: buffers grow with the bytes that
    /// arrive (not with the length a message declares), and a message is held whole until it is
    /// checked, so this follows the largest message held (streamed messages are not held).
    /// </summary>
    public long LargestBuffer => Interlocked.Read(ref _largestBuffer);

    internal void OnBuffer(long size)
    {
        long known = Interlocked.Read(ref _largestBuffer);
        while (size > known)
        {
            long seen = Interlocked.CompareExchange(ref _largestBuffer, size, known);
            if (seen == known)
            {
                return;
            }

            known = seen;
        }
    }

    internal void OnAccepted() => Interlocked.Increment(ref _accepted);

    internal void OnClosed() => Interlocked.Increment(ref _closed);

    internal void OnFailed() => Interlocked.Increment(ref _failed);

    internal void OnRefused() => Interlocked.Increment(ref _refused);

    internal void OnCancelRequest() => Interlocked.Increment(ref _cancelRequests);

    internal void OnMessages(bool frontend, long messages, long bytes)
    {
        if (frontend)
        {
            Interlocked.Add(ref _frontendMessages, messages);
            Interlocked.Add(ref _frontendBytes, bytes);
        }
        else
        {
            Interlocked.Add(ref _backendMessages, messages);
            Interlocked.Add(ref _backendBytes, bytes);
        }
    }

    /// <summary>One line: connections and messages.</summary>
    public override string ToString() => string.Create(
        CultureInfo.InvariantCulture,
        $"connections: {Accepted} accepted, {Closed} closed, {Failed} failed, {Refused} refused over the limit, {CancelRequests} cancel requests; messages: {FrontendMessages} from clients ({FrontendBytes} bytes), {BackendMessages} from servers ({BackendBytes} bytes); largest buffer {LargestBuffer} bytes");
}
