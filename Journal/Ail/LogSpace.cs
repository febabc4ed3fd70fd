using Journal.Cil;
using Journal.Log;

namespace Journal.Ail;

/// <summary>
/// Log-space reservations (the grant head). Free space is the log's capacity minus the bytes between its tail and
/// head (<see cref="ILogSink.UsedBytes"/>) minus what is reserved and not yet written: open transactions'
/// reservations and the reservations checkpoints took from them. A reservation that does not fit waits, in FIFO order,
/// and is granted as the tail moves or reservations are released; it never fails for lack of space.
/// </summary>
/// <remarks>
/// <para>Capacity is the log size minus headroom (1/8 of the log, at least 16 KiB) for the log's own record headers,
/// block padding, the unmount record and commits that reserved too little (they take the rest without waiting, see
/// <see cref="ReserveWithoutWaiting"/>).</para>
/// <para>Locking: <c>_lock</c> protects the waiter queue and serialises grants to waiters. <see cref="TryReserve"/>
/// and <see cref="Release"/> are lock-free (a compare-and-swap on the outstanding bytes; the log's used bytes are read
/// from a copy refreshed at the points listed on <see cref="RefreshUsed"/>), and send callers to the queue whenever
/// someone waits. Nothing is awaited under the lock. When a waiter
/// queues, the pressure callback pushes the AIL (to move the tail) and the CIL (whose reservations only turn into
/// written, then reclaimable, log once pushed); a waiter re-checks every 100 ms and pushes again, so a missed wake-up
/// costs latency, never liveness.</para>
/// </remarks>
internal sealed class LogSpace
{
    private readonly ILogSink _sink;
    private readonly JournalCounters _counters;
    private readonly object _lock = new();
    private readonly LinkedList<Waiter> _waiters = new();
    private long _outstanding;
    private long _used;                      // the log's UsedBytes as of the last RefreshUsed
    private int _waiterCount;
    private Exception? _failed;
    private Action _pressure = static () => { };

    public LogSpace(ILogSink sink, JournalCounters counters)
    {
        _sink = sink;
        _counters = counters;
        long log = (long)sink.LogBlocks * 512;
        Capacity = log - Math.Max(16384, log / 8);
        MaxReservation = Capacity / 2;
        RefreshUsed();
    }

    /// <summary>Bytes that may be between tail and head plus reserved.</summary>
    public long Capacity { get; }

    /// <summary>The largest single reservation.</summary>
    public long MaxReservation { get; }

    /// <summary>Reserved and not yet written.</summary>
    public long Outstanding => Interlocked.Read(ref _outstanding);

    /// <summary>Free log space as of the last <see cref="RefreshUsed"/>.</summary>
    public long Free => Capacity - Volatile.Read(ref _used) - Outstanding;

    /// <summary>
    /// Re-reads the log's used bytes. Called after a checkpoint is written (before its reservation is released, so
    /// the bytes are never counted as free in between), after the tail moves, and on every slow path. Between
    /// refreshes the copy can only be high (the tail moved: conservative) or low by what a reservation still covers.
    /// </summary>
    public void RefreshUsed() => Volatile.Write(ref _used, _sink.UsedBytes);

    /// <summary>True when a reservation waits.</summary>
    public bool HasWaiters => Volatile.Read(ref _waiterCount) != 0;

    /// <summary>Space in use or reserved, as a fraction of capacity.</summary>
    public double Fullness => (double)(_sink.UsedBytes + Outstanding) / Capacity;

    /// <summary>Sets what to do when a reservation must wait (push the AIL and the CIL).</summary>
    public void SetPressureCallback(Action pressure) => _pressure = pressure;

    /// <summary>
    /// Reserves at once if it fits and nobody waits; allocates nothing. A reservation of 0 succeeds unless the log is
    /// overcommitted (free space below zero) or someone waits.
    /// </summary>
    public bool TryReserve(long bytes)
    {
        if (bytes < 0) bytes = 0;
        // Lock-free: a compare-and-swap on the outstanding bytes. Nobody may overtake a waiter, so any waiter sends
        // the caller to the queue (a waiter that queues concurrently is at worst overtaken once).
        while (true)
        {
            if (Volatile.Read(ref _waiterCount) != 0) return false;
            long o = Interlocked.Read(ref _outstanding);
            long free = Capacity - Volatile.Read(ref _used) - o;
            if (free < bytes || free < 0) return false;
            if (bytes == 0 || Interlocked.CompareExchange(ref _outstanding, o + bytes, o) == o) return true;
        }
    }

    /// <summary>
    /// Reserves at once even if that overcommits the log (eating into the headroom). For commits that reserved too
    /// little: they may hold item locks, so they must not wait. Later reservations wait until the log is no longer
    /// overcommitted.
    /// </summary>
    public void ReserveWithoutWaiting(long bytes)
    {
        if (bytes > 0) Interlocked.Add(ref _outstanding, bytes);
    }

    /// <summary>Reserves <paramref name="bytes"/>, waiting (without limit) for space.</summary>
    public async ValueTask ReserveAsync(long bytes, CancellationToken cancellationToken)
    {
        if (bytes < 0) bytes = 0;
        if (bytes > MaxReservation)
            throw new JournalArgumentException($"log reservation of {bytes} bytes is larger than the {MaxReservation}-byte maximum for this log ({_sink.LogBlocks} blocks)");
        if (_failed is not null) throw _failed;
        RefreshUsed();
        if (TryReserve(bytes)) return;
        Interlocked.Increment(ref _counters.SpaceWaits);
        var w = new Waiter(bytes);
        LinkedListNode<Waiter> node;
        lock (_lock)
        {
            node = _waiters.AddLast(w);
            _waiterCount++;
        }
        Kick();
        try
        {
            while (!w.Done.Task.IsCompleted)
            {
                _pressure();
                // Why we wait: the log is full; the AIL moving the tail, or a reservation being released, grants us.
                try { await w.Done.Task.WaitAsync(TimeSpan.FromMilliseconds(100), cancellationToken).ConfigureAwait(false); }
                catch (TimeoutException) { Kick(); }
            }
            await w.Done.Task.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            bool granted;
            lock (_lock)
            {
                granted = w.Granted;
                if (!granted && node.List is not null) { _waiters.Remove(node); _waiterCount--; }
            }
            if (granted) Release(bytes);
            Kick();
            throw;
        }
    }

    /// <summary>Gives reserved space back (written to the log, or not needed).</summary>
    public void Release(long bytes)
    {
        if (bytes == 0) return;
        Interlocked.Add(ref _outstanding, -bytes);
        if (Volatile.Read(ref _waiterCount) != 0) Kick();
    }

    /// <summary>Grants waiting reservations, in order, while they fit.</summary>
    public void Kick()
    {
        if (Volatile.Read(ref _waiterCount) == 0) return;
        List<Waiter>? granted = null;
        RefreshUsed();
        lock (_lock)
        {
            while (_waiters.First is { } first && Free >= first.Value.Bytes && Free >= 0)
            {
                Interlocked.Add(ref _outstanding, first.Value.Bytes);
                first.Value.Granted = true;
                _waiters.RemoveFirst();
                _waiterCount--;
                (granted ??= new()).Add(first.Value);
            }
        }
        if (granted is not null) foreach (var w in granted) w.Done.TrySetResult();
    }

    /// <summary>Fails every waiter and later reservation (the journal shut down).</summary>
    public void Fail(Exception error)
    {
        List<Waiter> all;
        lock (_lock)
        {
            _failed = error;
            all = [.. _waiters];
            _waiters.Clear();
            _waiterCount = 0;
        }
        foreach (var w in all) w.Done.TrySetException(error);
    }

    private sealed class Waiter(long bytes)
    {
        public readonly long Bytes = bytes;
        public bool Granted;
        public readonly TaskCompletionSource Done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
