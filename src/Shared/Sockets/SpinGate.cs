namespace PgSpec.Sockets;

/// <summary>
/// Mutual exclusion for a socket's few fields and the one non-blocking system call made while
/// they are held. The event thread makes nearly every call, so the gate is almost never
/// contended: taking it is one compare-and-swap and leaving it one store, without the owner and
/// recursion bookkeeping of <see cref="Lock"/>. Not re-entrant.
/// </summary>
internal sealed class SpinGate
{
    private int _taken;

    /// <summary>Takes the gate until the scope is disposed: <c>using (gate.Hold()) { ... }</c>.</summary>
    public Scope Hold()
    {
        if (Interlocked.CompareExchange(ref _taken, 1, 0) != 0)
        {
            WaitForTurn();
        }

        return new Scope(this);
    }

    private void WaitForTurn()
    {
        var spin = default(SpinWait);
        do
        {
            spin.SpinOnce();
        }
        while (Interlocked.CompareExchange(ref _taken, 1, 0) != 0);
    }

    /// <summary>Held until disposed.</summary>
    public readonly ref struct Scope
    {
        private readonly SpinGate _gate;

        internal Scope(SpinGate gate) => _gate = gate;

        public void Dispose() => Volatile.Write(ref _gate._taken, 0);
    }
}
