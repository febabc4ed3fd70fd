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
/// <para>Locking: <c>_lock</c> protects the counters and the list of waiters. It is a leaf: held for a few
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
            if (!Fits(slots)) return false;
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
            if (Fits(slots)) return Task.CompletedTask;
            // Enqueued only while something is in flight (an empty throttle fits any request), so a later
            // Release is certain to look at this waiter again.
            Interlocked.Increment(ref _waits);
            var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.AddLast((slots, tcs));
            return tcs.Task;
        }
    }

    /// <summary>Gives back <paramref name="slots"/> slots and wakes every waiter whose request now fits.</summary>
    /// <remarks>
    /// Every waiter is checked against the count after the release, not against a plan of who will take what: a woken
    /// waiter may find it needs nothing any more (another writer copied its chunk) and take no slots, so a plan would
    /// strand the waiters behind it with nothing in flight to wake them. A waiter that loses the race after waking
    /// waits again; it only waits while something is in flight, whose release wakes it once more.
    /// </remarks>
    public void Release(int slots)
    {
        if (slots <= 0) return;
        List<TaskCompletionSource>? wake = null;
        lock (_lock)
        {
            _inFlight -= slots;
            if (_inFlight < 0) throw new InvalidOperationException("copy throttle released more slots than were taken");
            for (var node = _waiters.First; node is not null;)
            {
                var next = node.Next;
                if (Fits(node.Value.Slots))
                {
                    (wake ??= new()).Add(node.Value.Tcs);
                    _waiters.Remove(node);
                }
                node = next;
            }
        }
        if (wake is not null) foreach (var t in wake) t.TrySetResult();
    }

    /// <inheritdoc/>
    public override string ToString() => $"CopyThrottle(bound {(_bound == int.MaxValue ? "unlimited" : _bound)}, in flight {InFlight}, peak {Peak}, waits {Waits})";
}
