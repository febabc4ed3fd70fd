namespace Journal.Cil;

/// <summary>
/// A minimal spin lock for the few pointer updates committers make to a context's vector list while they all hold the
/// context lock shared. Allocation-free on every path, including contention (unlike <see cref="SpinLock"/>, whose
/// contended path initialises tracing on first use, and <see cref="Lock"/>, which creates a wait event on first
/// contention), because it is taken inside the shared context lock.
/// </summary>
/// <remarks>Holders never block, allocate or call out while holding it; waiters spin briefly, then yield the CPU.</remarks>
internal struct ListSpinLock
{
    private int _held;

    public void Enter()
    {
        if (Interlocked.CompareExchange(ref _held, 1, 0) != 0) EnterContended();
    }

    private void EnterContended()
    {
        for (int spins = 0; ; spins++)
        {
            if (Volatile.Read(ref _held) == 0 && Interlocked.CompareExchange(ref _held, 1, 0) == 0) return;
            if (spins < 8) Thread.SpinWait(4 << spins);
            else Thread.Yield();
        }
    }

    public void Exit() => Volatile.Write(ref _held, 0);
}
