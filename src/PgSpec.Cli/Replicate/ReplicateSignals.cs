namespace PgSpec.Cli.Replicate;

/// <summary>
/// What reaches a running stream from outside: the request to stop (SIGINT, SIGTERM, or the caller's
/// token), and SIGHUP's request to reopen the output file, which also wakes a stream waiting for the server.
/// </summary>
internal sealed class ReplicateSignals(CancellationToken stop)
{
    private readonly Lock _lock = new();
    private CancellationTokenSource _wake = new();
    private bool _reopen;

    /// <summary>Cancelled when the stream should stop.</summary>
    public CancellationToken Stop { get; } = stop;

    /// <summary>Cancelled when something asks the stream's attention (SIGHUP); renewed by <see cref="TakeReopen"/>.</summary>
    public CancellationToken Wake
    {
        get
        {
            lock (_lock)
            {
                return _wake.Token;
            }
        }
    }

    /// <summary>SIGHUP: reopen the output file.</summary>
    public void RequestReopen()
    {
        lock (_lock)
        {
            _reopen = true;
            _wake.Cancel();
        }
    }

    /// <summary>Whether a reopening was asked for since the last call (and the wake token is renewed).</summary>
    public bool TakeReopen()
    {
        lock (_lock)
        {
            if (!_reopen)
            {
                return false;
            }

            _reopen = false;
            _wake.Dispose();
            _wake = new CancellationTokenSource();
            return true;
        }
    }
}
