namespace Snapshot.Copy;

/// <summary>
/// Bounds the number of copy-on-write copies in flight (pending exceptions whose data is being copied and committed).
/// </summary>
/// <remarks>
/// <para>The rule that keeps this deadlock-free: a writer over the bound waits <em>holding nothing</em> — no monitor,
/// not the store's I/O gate, no pending exception, no pool object, no throttle slot. It takes its slots with
/// <see cref="TryAcquire"/> while it holds the store's state lock (which never blocks), and if that fails it drops
/// everything it holds, awaits <see cref="WaitForRoomAsync"/>, and starts its operation again from the top. The
/// completion path (copy done, exception committed) only calls <see cref="Release"/>, which takes nothing but this
/// class's own lock; snapshot create and delete never touch the throttle. So no waiter ever holds something a
/// releaser or a snapshot create/delete needs.</para>
/// <para>Locking: <c>_lock</c> protects the counters and the FIFO of waiters. It is a leaf: held for a few
/// instructions, nothing else is taken under it, and waiters are woken after it is released.</para>
/// <para>A request for more slots than the bound is granted when nothing is in flight, so a writer that needs a copy
/// for every one of many snapshots always makes progress even with a small bound.</para>
/// </remarks>
internal sealed class CopyThrottle
{
    private readonly object _lock = new();
    private readonly int _bound; // int.MaxValue when unlimited
    private int _inFlight;
    private int _peak;
    private long _waits;
    private readonly LinkedList<(int Slots, TaskCompletionSource Tcs)> _waiters = new();

    /// <param name="bound">Most copies in flight; 0 means unlimited.</param>
    public CopyThrottle(int bound) => _bound = bound <= 0 ? int.MaxValue : bound;

    /// <summary>The bound (int.MaxValue when unlimited).</summary>
    public int Bound => _bound;

    /// <summary>Copies in flight now.</summary>
    public int InFlight { get { lock (_lock) return _inFlight; } }

    /// <summary>Most copies ever in flight at once.</summary>
    public int Peak { get { lock (_lock) return _peak; } }

    /// <summary>How many times a writer had to wait for room.</summary>
    public long Waits => Interlocked.Read(ref _waits);

    /// <summary>Writers waiting for room now.</summary>
    public int Waiting { get { lock (_lock) return _waiters.Count; } }

    private bool Fits(int slots) => _inFlight == 0 || (long)_inFlight + slots <= _bound;

    /// <summary>Takes <paramref name="slots"/> slots if they fit now; never waits.</summary>
    public bool TryAcquire(int slots)
    {
        if (slots <= 0) return true;
        lock (_lock)
        {
            if (_waiters.Count > 0 || !Fits(slots)) return false; // FIFO: do not overtake a waiter
            _inFlight += slots;
            if (_inFlight > _peak) _peak = _inFlight;
            return true;
        }
    }

    /// <summary>
    /// Completes when <paramref name="slots"/> slots would fit (it does not take them: the caller retries its whole
    /// operation and takes them with <see cref="TryAcquire"/>). The caller must hold nothing while awaiting this.
    /// </summary>
    public Task WaitForRoomAsync(int slots)
    {
        lock (_lock)
        {
            if (_waiters.Count == 0 && Fits(slots)) return Task.CompletedTask;
            Interlocked.Increment(ref _waits);
            var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.AddLast((slots, tcs));
            return tcs.Task;
        }
    }

    /// <summary>Gives back <paramref name="slots"/> slots and wakes the waiters (in FIFO order) that now fit.</summary>
    public void Release(int slots)
    {
        if (slots <= 0) return;
        List<TaskCompletionSource>? wake = null;
        lock (_lock)
        {
            _inFlight -= slots;
            if (_inFlight < 0) throw new InvalidOperationException("copy throttle released more slots than were taken");
            // Wake waiters in order while the room they need (on top of those already woken) fits. A woken waiter
            // retries from scratch; if it loses a race it simply waits again.
            long planned = _inFlight;
            while (_waiters.First is { } first && (planned == 0 || planned + first.Value.Slots <= _bound))
            {
                planned += first.Value.Slots;
                (wake ??= new()).Add(first.Value.Tcs);
                _waiters.RemoveFirst();
            }
        }
        if (wake is not null) foreach (var t in wake) t.TrySetResult();
    }

    /// <inheritdoc/>
    public override string ToString() => $"CopyThrottle(bound {(_bound == int.MaxValue ? "unlimited" : _bound)}, in flight {InFlight}, peak {Peak}, waits {Waits})";
}
