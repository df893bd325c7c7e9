using PgSpec.Client;
using PgSpec.Protocol;

namespace PgSpec.Cli.Replicate;

/// <summary>
/// The waiting of a replication stream, logical or physical: a status update when --status-interval
/// has passed, the output handed on whenever nothing more is waiting, and the server's silence
/// watched (--timeout): a status update asking for a reply at half of it, an error at all of it.
/// The silence counts only while nothing is waiting, from when the client is ready again.
/// </summary>
internal sealed class ReplicationReceiver
{
    private readonly PgFrontendSession _session;
    private readonly ReplicateSettings _settings;
    private readonly ReplicationOutput _output;
    private readonly ReplicateSignals _signals;
    private readonly Func<bool, Task> _sendStatus;
    private DateTime _lastReceived = DateTime.UtcNow;
    private bool _pinged;

    /// <summary>Waits for <paramref name="session"/>'s stream; <paramref name="sendStatus"/> sends a standby status update (true: asking for a reply) and sets <see cref="LastStatus"/>.</summary>
    public ReplicationReceiver(PgFrontendSession session, ReplicateSettings settings, ReplicationOutput output, ReplicateSignals signals, Func<bool, Task> sendStatus)
    {
        _session = session;
        _settings = settings;
        _output = output;
        _signals = signals;
        _sendStatus = sendStatus;
    }

    /// <summary>When the last status update was sent.</summary>
    public DateTime LastStatus { get; set; } = DateTime.UtcNow;

    /// <summary>The client has handled what it received: the server's silence counts from now.</summary>
    public void Ready()
    {
        _lastReceived = DateTime.UtcNow;
        _pinged = false;
    }

    /// <summary>The next message; null when the wait was stopped (SIGINT/SIGTERM) or woken (SIGHUP), or its time came.</summary>
    public async Task<IBackendMessage?> ReceiveAsync()
    {
        TimeSpan timeout = _settings.Timeout;
        TimeSpan interval = _settings.StatusInterval;
        DateTime now = DateTime.UtcNow;
        if (interval > TimeSpan.Zero && now - LastStatus >= interval)
        {
            await _sendStatus(false).ConfigureAwait(false);
        }

        IBackendMessage? message = await _session.TryReceiveAsync(TimeSpan.Zero, CancellationToken.None).ConfigureAwait(false);
        if (message is not null)
        {
            return message;
        }

        // Nothing more for now: hand the lines written so far to the output.
        _output.Flush();
        if (timeout != Timeout.InfiniteTimeSpan)
        {
            if (DateTime.UtcNow - _lastReceived >= timeout)
            {
                throw new ReplicateException(PgSpecCommandLine.ExitTimeout, $"the server sent nothing for {timeout.TotalSeconds:0.#} s, not even the answer to a status update that asked for one (--timeout): the connection or the server is stuck");
            }

            if (!_pinged && DateTime.UtcNow - _lastReceived >= timeout / 2)
            {
                await _sendStatus(true).ConfigureAwait(false);
                _pinged = true;
            }
        }

        TimeSpan wait = Timeout.InfiniteTimeSpan;
        if (interval > TimeSpan.Zero)
        {
            wait = Shortest(wait, LastStatus + interval - now);
        }

        if (timeout != Timeout.InfiniteTimeSpan)
        {
            wait = Shortest(wait, _lastReceived + (_pinged ? timeout : timeout / 2) - now);
        }

        using var attention = CancellationTokenSource.CreateLinkedTokenSource(_signals.Stop, _signals.Wake);
        try
        {
            return await _session.TryReceiveAsync(wait, attention.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (attention.IsCancellationRequested)
        {
            // Stopped (the caller's loop ends), or woken (SIGHUP: the caller reopens the file).
            return null;
        }
    }

    private static TimeSpan Shortest(TimeSpan current, TimeSpan other)
    {
        if (other < TimeSpan.FromMilliseconds(1))
        {
            other = TimeSpan.FromMilliseconds(1);
        }

        return current == Timeout.InfiniteTimeSpan || other < current ? other : current;
    }
}
