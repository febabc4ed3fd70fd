namespace Snapshot.Copy;

/// <summary>
/// Bounds copy-on-write copies in two stages: copies <b>in flight</b> (claimed, their old data being read and written to
/// the COW files: this holds the copy buffers and the I/O) and copies <b>pending</b> (claimed and not yet complete: in
/// flight, or written and waiting for their commit round, which holds only a pending exception).
/// </summary>
/// <remarks>
/// <para>A copy leaves the in-flight stage as soon as its data is written and handed to the commit pipeline
/// (<see cref="CopiesWritten"/>), and the pending stage when its exception is complete (<see cref="Release"/>). So the
/// expensive stage is bounded tightly without holding a writer back for a commit round it does not add to: a round
/// takes every copy queued, so copies waiting for one cost a few hundred bytes each, and their own, wider bound
/// (<see cref="PendingBound"/>, by default sixteen times the in-flight one) keeps memory flat if the commits fall
/// behind.</para>
/// <para>The rule that keeps this deadlock-free: a writer over a bound waits <em>holding nothing</em> — no monitor,
/// not the store's I/O gate, no pending exception, no pool object, no throttle slot. It takes its slots with
/// <see cref="TryAcquire"/> while it holds the store's state lock (which never blocks), and if that fails it drops
/// everything it holds, awaits <see cref="WaitForRoomAsync"/>, and starts its operation again from the top. The
/// completion path (copy written, exception committed) only calls <see cref="CopiesWritten"/> and
/// <see cref="Release"/>, which take nothing but this class's own lock; snapshot create and delete never touch the
/// throttle. So no waiter ever holds something a releaser or a snapshot create/delete needs, and both stages drain on
/// their own (copies end with their I/O, commits with their round).</para>
/// <para>Locking: <c>_lock</c> protects the counters and the list of waiters. It is a leaf: held for a few
/// instructions, nothing else is taken under it, and waiters are woken after it is released.</para>
/// <para>A request for more slots than a bound is granted when that stage is empty, so a writer that needs a copy for
/// every one of many snapshots always makes progress even with a small bound.</para>
/// </remarks>
internal sealed class CopyThrottle
{
    /// <summary>The pending bound, as a multiple of the in-flight bound, when none is given.</summary>
    public const int DefaultPendingFactor = 16;

    private readonly object _lock = new();
    private readonly int _bound;        // in flight; int.MaxValue when unlimited
    private readonly int _pendingBound; // pending; int.MaxValue when unlimited
    private int _inFlight, _pending;
    private int _peak, _pendingPeak;
    private long _waits;
    private readonly LinkedList<(int Slots, TaskCompletionSource Tcs)> _waiters = new();

    /// <param name="bound">Most copies in flight; 0 means unlimited.</param>
    /// <param name="pendingBound">
    /// Most copies pending (in flight or waiting for their commit); 0 means <see cref="DefaultPendingFactor"/> times
    /// <paramref name="bound"/> (unlimited when that is). Never below <paramref name="bound"/>.
    /// </param>
    public CopyThrottle(int bound, int pendingBound = 0)
    {
        _bound = bound <= 0 ? int.MaxValue : bound;
        long pb = pendingBound > 0 ? pendingBound : bound <= 0 ? int.MaxValue : (long)bound * DefaultPendingFactor;
        _pendingBound = (int)Math.Clamp(pb, _bound == int.MaxValue ? 1 : _bound, int.MaxValue);
    }

    /// <summary>The in-flight bound (int.MaxValue when unlimited).</summary>
    public int Bound => _bound;

    /// <summary>The pending bound (int.MaxValue when unlimited).</summary>
    public int PendingBound => _pendingBound;

    /// <summary>Copies in flight now (being read and written).</summary>
    public int InFlight { get { lock (_lock) return _inFlight; } }

    /// <summary>Copies pending now (in flight, or written and waiting for their commit).</summary>
    public int Pending { get { lock (_lock) return _pending; } }

    /// <summary>Most copies ever in flight at once.</summary>
    public int Peak { get { lock (_lock) return _peak; } }

    /// <summary>Most copies ever pending at once.</summary>
    public int PendingPeak { get { lock (_lock) return _pendingPeak; } }

    /// <summary>How many times a writer had to wait for room.</summary>
    public long Waits => Interlocked.Read(ref _waits);

    /// <summary>Writers waiting for room now.</summary>
    public int Waiting { get { lock (_lock) return _waiters.Count; } }

    private bool Fits(int slots) =>
        (_inFlight == 0 || (long)_inFlight + slots <= _bound) && (_pending == 0 || (long)_pending + slots <= _pendingBound);

    /// <summary>Takes <paramref name="slots"/> slots if they fit now; never waits.</summary>
    public bool TryAcquire(int slots)
    {
        if (slots <= 0) return true;
        lock (_lock)
        {
            if (!Fits(slots)) return false;
            _inFlight += slots;
            _pending += slots;
            if (_inFlight > _peak) _peak = _inFlight;
            if (_pending > _pendingPeak) _pendingPeak = _pending;
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
            // Enqueued only while a stage it does not fit holds something (an empty stage fits any request), so a
            // later release of that stage is certain to look at this waiter again.
            Interlocked.Increment(ref _waits);
            var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.AddLast((slots, tcs));
            return tcs.Task;
        }
    }

    /// <summary>
    /// Ends the in-flight stage of <paramref name="slots"/> copies (their data is written and handed to the commit
    /// pipeline, or they failed); they stay pending until <see cref="Release"/>. Wakes every waiter that now fits.
    /// </summary>
    public void CopiesWritten(int slots) => Give(slots, 0);

    /// <summary>
    /// Ends the pending stage of <paramref name="slots"/> copies whose in-flight stage has ended
    /// (<see cref="CopiesWritten"/>). Wakes every waiter that now fits.
    /// </summary>
    public void Release(int slots) => Give(0, slots);

    /// <summary>Gives back <paramref name="slots"/> slots taken and never used (both stages at once).</summary>
    public void ReleaseUnused(int slots) => Give(slots, slots);

    /// <remarks>
    /// Every waiter is checked against the counts after the release, not against a plan of who will take what: a woken
    /// waiter may find it needs nothing any more (another writer copied its chunk) and take no slots, so a plan would
    /// strand the waiters behind it with nothing in flight to wake them. A waiter that loses the race after waking
    /// waits again; it only waits while something is in a stage it does not fit, whose release wakes it once more.
    /// </remarks>
    private void Give(int inFlight, int pending)
    {
        if (inFlight <= 0 && pending <= 0) return;
        List<TaskCompletionSource>? wake = null;
        lock (_lock)
        {
            int f = _inFlight - inFlight, p = _pending - pending;
            if (f < 0 || p < 0) throw new InvalidOperationException("copy throttle released more slots than were taken");
            if (p < f) throw new InvalidOperationException("copy throttle released pending slots whose copies are still in flight");
            _inFlight = f;
            _pending = p;
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
    public override string ToString() =>
        $"CopyThrottle(bound {(_bound == int.MaxValue ? "unlimited" : _bound)}, in flight {InFlight}, peak {Peak}, pending bound {(_pendingBound == int.MaxValue ? "unlimited" : _pendingBound)}, pending {Pending}, peak {PendingPeak}, waits {Waits})";
}
