using System.Diagnostics;
using System.Runtime.CompilerServices;
using Journal.Format;
using Journal.Memory;
using Microsoft.Extensions.ObjectPool;

namespace Journal.Cil;

// The push and force paths of the CIL.
//
// Push (one background loop, PushLoopAsync):
//   1. Wait for a request (soft limit, hard limit, force, memory or log-space pressure). If the previous checkpoint
//      is not durable yet, wait for that first (unless committers are throttled at the hard limit): commits arriving
//      meanwhile gather into one checkpoint for the next flush (group commit at the checkpoint level). If it became
//      durable moments ago, give the committers its completion woke a short, bounded window to commit again
//      (GatherAsync), so they share the next flush instead of waiting for the one after.
//   2. Outside the lock, take the spare context prepared after the previous switch (around the header the checkpoint
//      before gave back to the pool, else by a background task that may call the allocator). If it is not ready, build
//      one around a header the pool has cached, or, if none is (allocator failing or stalling), around a push slot of
//      the emergency reserve: the push never waits for the allocator.
//   3. Take the context lock EXCLUSIVE, make the spare current (sequence + 1), detach the old context, release.
//      Nothing else happens under the exclusive lock. Wake committers throttled at the hard limit.
//   4. Outside the lock (WriteCheckpointAsync, up to MaxPushesInFlight at once when committers are throttled): register
//      the checkpoint with the AIL (the tail may not pass the log head as of now), wait for the previous checkpoint's
//      start record, write the checkpoint header and each vector in list (= commit) order as one log transaction (one
//      call: the region list is preallocated with the context and walks its vectors), wait for the previous
//      checkpoint's commit record, write this commit record. Commit records therefore reach the log in sequence
//      order. The vectors, the header and the region list are memory the old context already owns.
//   5. Release the checkpoint's log reservation (the log now accounts those bytes), force the commit LSN (concurrent
//      forces share one device flush), wait for the previous checkpoint to complete, then move the items into the AIL
//      at the start LSN, unpin them, free the vectors and the header, and mark the sequence durable.
//
// Force (ForceAsync): a sequence at or below the durable sequence returns at once (no I/O). Otherwise find its
// context: if it is the current one and empty, force the one before; else register a pooled waiter, request a push up
// to it and wait for the waiter, which step 5 completes once the sequence is durable. Many forcers of one sequence wait
// for one device flush.
internal sealed partial class CommittedItemList
{
    /// <summary>Checkpoints being written at once (their vectors are held until each completes).</summary>
    public const int MaxPushesInFlight = EmergencyReserve.PushSlots;

    private readonly AsyncSignal _pushSignal = new(); // the push loop's (WaitOneAsync): a push was requested (or stop)
    private readonly AsyncSignal _pushWake = new();   // the push loop's (WaitOneAsync): set when a checkpoint completes and when a committer starts waiting at the hard limit
    private readonly SemaphoreSlim _pushSlots = new(MaxPushesInFlight, MaxPushesInFlight);
    private long _pushTarget;                 // highest sequence someone asked to push
    private ulong _durableSeq;                // every sequence at or below it is durable
    private Task _pushLoop = Task.CompletedTask;
    private ValueTask<CilContext> _spare;     // next context, prepared outside the lock after each switch (when _hasSpare)
    private bool _hasSpare;                   // push loop only (and the constructor, and StopAsync once it has ended)
    private Task _lastCompletion = Task.CompletedTask;
    private volatile bool _stopping;
    private Exception? _shutdown;

    // Contexts kept for reuse (Recycle, RentContext). _freeContextsLock protects the array and the count: a leaf, held for
    // a few instructions, never with another lock.
    private readonly object _freeContextsLock = new();
    private readonly CilContext?[] _freeContexts = new CilContext?[MaxPushesInFlight + 2];
    private int _freeContextCount;

    /// <summary>Contexts made anew for a switch (not reused), since the journal was opened; for tests.</summary>
    internal long ContextsCreated;

    // Forces waiting for durability (ForceAsync). _waitersLock protects _waiters only: held for a few instructions,
    // nothing is taken under it, and waiters are completed after it is released. A leaf: never held with another lock.
    private readonly object _waitersLock = new();
    private DurabilityWaiter? _waiters;
    private readonly ObjectPool<DurabilityWaiter> _waiterPool = DurabilityWaiter.NewPool(retained: 256);

    // Throttle at the hard limit. _throttleLock protects _throttleTcs only; waiters check their condition and register
    // under it, wakers change the condition first and then swap the task out under it, so no wake-up is lost.
    private readonly object _throttleLock = new();
    private TaskCompletionSource? _throttleTcs;

    /// <summary>Every sequence at or below this one is durable.</summary>
    public ulong DurableSequence => Volatile.Read(ref _durableSeq);

    /// <summary>The error that shut the journal down, if any.</summary>
    public Exception? ShutdownError => Volatile.Read(ref _shutdown);

    internal void SetDurableSequence(ulong seq) => _durableSeq = seq;

    /// <summary>Asks the push loop to push every context up to <paramref name="sequence"/>.</summary>
    public void RequestPush(ulong sequence)
    {
        long s = (long)sequence, cur;
        while ((cur = Volatile.Read(ref _pushTarget)) < s && Interlocked.CompareExchange(ref _pushTarget, s, cur) != cur) { }
        _pushSignal.Set();
    }

    private async Task PushLoopAsync()
    {
        while (true)
        {
            await _pushSignal.WaitOneAsync().ConfigureAwait(false);
            if (_shutdown is not null) return;
            try
            {
                while (true)
                {
                    var cur = Volatile.Read(ref _current);
                    if ((ulong)Volatile.Read(ref _pushTarget) < cur.Sequence || cur.IsEmpty) break;
                    // Why we wait: the previous checkpoint is not durable yet. Commits arriving meanwhile gather in
                    // the current context and go out as one checkpoint when it is (its flush must finish before the
                    // next one can start anyway), instead of as many tiny ones. Committers throttled at the hard limit
                    // end the wait at once: then pushes overlap (their commit records still go out in order).
                    var prev = cur.Previous;
                    if (prev is not null && Volatile.Read(ref _throttleTcs) is null)
                    {
                        if (!prev.Durable.IsCompleted)
                        {
                            // Both wake-ups set _pushWake; a set with nobody waiting stays set, so neither is lost
                            // between the check above and this wait (a stale one costs a look, nothing else).
                            await _pushWake.WaitOneAsync().ConfigureAwait(false);
                            continue;
                        }
                        if (!cur.Gathered)
                        {
                            cur.Gathered = true;
                            await GatherAsync(cur, prev).ConfigureAwait(false);
                            continue;
                        }
                    }
                    // Why we wait: at most MaxPushesInFlight checkpoints are written at once; a slot frees when one
                    // has written its commit record.
                    await _pushSlots.WaitAsync().ConfigureAwait(false);
                    var next = await TakeSpareAsync().ConfigureAwait(false);
                    var old = Switch(next);
                    if (old is null)
                    {
                        SetSpare(new ValueTask<CilContext>(next));
                        _pushSlots.Release();
                        break;
                    }
                    if (!_hasSpare) SetSpare(NextSpare()); // one preparation at a time
                    _lastCompletion = WriteCheckpointAsync(old);
                }
            }
            catch (Exception e)
            {
                Shutdown(e);
                return;
            }
            if (_stopping) return;
        }
    }

    /// <summary>
    /// The gather window of step 1. The forcers of <paramref name="prev"/> were woken when it became durable, and a
    /// committer that forces in a loop commits again at once; on a machine with few cores they come back one after
    /// another over tens of microseconds. Switching at the first arrival would send a checkpoint holding a few of them
    /// and leave the rest to wait for it and for one more flush; waiting for them lets one flush carry them all.
    /// </summary>
    /// <remarks>
    /// Why we wait, and why it ends: the wait yields the thread (the woken committers run on it) and never sleeps or
    /// blocks. It ends as soon as as many forcers as <paramref name="prev"/> had wait on <paramref name="cur"/>, when
    /// the thread pool has had nothing queued for two looks in a row (everyone woken has run), or when
    /// <see cref="JournalOptions.CheckpointGatherWindow"/> has passed since <paramref name="prev"/> became durable,
    /// whichever comes first. A completion older than the window gathers nothing: nobody is on the way. A window of 0
    /// turns gathering off.
    /// </remarks>
    private async ValueTask GatherAsync(CilContext cur, CilContext prev)
    {
        long window = _gatherWindowTicks;
        if (window <= 0) return;
        long deadline = prev.DurableTimestamp + window;
        int expected = prev.Forcers, idle = 0;
        bool counted = false;
        while (Volatile.Read(ref cur.Forcers) < expected && !_stopping)
        {
            if (Stopwatch.GetTimestamp() >= deadline)
            {
                if (counted)
                {
                    Interlocked.Increment(ref _counters.GatherTimeouts);
                    Diagnostics.GatherTimedOut(cur.Sequence, Volatile.Read(ref cur.Forcers), expected, _options.CheckpointGatherWindow);
                }
                return;
            }
            if (NothingQueued()) { if (++idle == 2) return; }
            else idle = 0;
            if (!counted) { counted = true; Interlocked.Increment(ref _counters.Gathers); }
            await Task.Yield();
        }
    }

    /// <summary>Whether the thread pool has nothing queued (the gather's "everyone woken has run"); tests replace it.</summary>
    internal Func<bool> NothingQueued = static () => ThreadPool.PendingWorkItemCount == 0;

    /// <summary>
    /// The next context: the prepared spare; if it is not ready (the allocator stalls, or its task has not run yet on a
    /// busy thread pool), one built around a header the pool has cached; else one built around an emergency push slot.
    /// </summary>
    private async ValueTask<CilContext> TakeSpareAsync()
    {
        bool had = _hasSpare;
        var t = _spare;
        _hasSpare = false;
        _spare = default;
        if (had && t.IsCompletedSuccessfully) return t.Result;
        if (_pool.TryRentCached(CheckpointHeader.Size) is { } cached)
        {
            if (had) SetSpare(t); // still being prepared: it will serve a later switch
            return RentContext(cached, pooled: true);
        }
        var header = _pool.Reserve.TryTakePush(CheckpointHeader.Size);
        if (header is not null)
        {
            if (had) SetSpare(t); // still being prepared (allocator failing or stalled): it will serve a later switch
            return RentContext(header, pooled: true);
        }
        // Every push slot is out, which needs MaxPushesInFlight emergency pushes still completing; the spare is our
        // only way forward, so wait for it (it waits for the pool, which those completions refill).
        return await (had ? t : new ValueTask<CilContext>(PrepareSpareAsync())).ConfigureAwait(false);
    }

    /// <summary>
    /// The spare for the next switch: at once around a header the pool has cached (the previous checkpoint gave its
    /// header back before this push could start), else prepared in the background. Never calls the allocator itself.
    /// </summary>
    /// <remarks>A ready spare is a value (no task is allocated for it); one being prepared wraps its task.</remarks>
    private ValueTask<CilContext> NextSpare() =>
        _pool.TryRentCached(CheckpointHeader.Size) is { } cached ? new ValueTask<CilContext>(RentContext(cached, pooled: true)) : new ValueTask<CilContext>(PrepareSpareAsync());

    private void SetSpare(ValueTask<CilContext> spare)
    {
        _spare = spare;
        _hasSpare = true;
    }

    /// <summary>Builds a context whose header buffer comes from the pool (may wait for memory). Never under a lock.</summary>
    private async Task<CilContext> PrepareSpareAsync()
    {
        await Task.Yield(); // the allocator may stall: never on the push loop's own path
        while (true)
        {
            var header = _pool.TryRent(CheckpointHeader.Size);
            if (header is not null) return RentContext(header, pooled: true);
            if (_shutdown is not null || _stopping) return RentContext(new byte[CheckpointHeader.Size], pooled: false);
            // Why we wait: the pool is at its budget or the allocator failed; completions return buffers.
            await Task.WhenAny(_pool.WaitForReturnAsync(), Task.Delay(10)).ConfigureAwait(false);
        }
    }

    /// <summary>Step 3 of a push: the exclusive section. Returns the detached context, or null if it was empty.</summary>
    private CilContext? Switch(CilContext next)
    {
        CilContext old;
        _ctxLock.EnterWriteLock();
        long allocated = MeasureLockAllocations ? GC.GetAllocatedBytesForCurrentThread() : 0;
        try
        {
            old = _current;
            if (old.IsEmpty) return null;
            next.Sequence = old.Sequence + 1;
            next.Previous = old;
            Volatile.Write(ref _current, next);
        }
        finally
        {
            if (MeasureLockAllocations)
            {
                Interlocked.Add(ref LockAllocatedBytes, GC.GetAllocatedBytesForCurrentThread() - allocated);
                Interlocked.Increment(ref LockedSections);
            }
            _ctxLock.ExitWriteLock();
        }
        Interlocked.Increment(ref _counters.Pushes);
        WakeThrottled();
        return old;
    }

    /// <summary>Steps 4 and 5 of a push, for one detached context.</summary>
    /// <remarks>
    /// The context is reused only once both this push and its successor's are done with it (see <see cref="Recycle"/>):
    /// two references, one given back at the end of this method and one by the successor's push once it is durable. Once
    /// <c>Durable</c> completes, the successor may finish before this method does; without this method's own reference it
    /// could recycle the context under it, and the waiters completed below would be those of the reused context's new
    /// sequence, before it was durable.
    /// </remarks>
    private async Task WriteCheckpointAsync(CilContext ctx)
    {
        Volatile.Write(ref ctx.RecycleRefs, 2);
        ulong sequence = ctx.Sequence;
        bool slotHeld = true;
        try
        {
            _ail.RegisterInFlight(ctx);
            var prev = ctx.Previous;
            if (prev is not null) await prev.StartWritten.Task.ConfigureAwait(false);
            ThrowIfShutdown();

            new CheckpointHeader(ctx.Sequence, (uint)ctx.ItemCount, (uint)ctx.RegionCount, (ulong)ctx.PayloadBytes).Write(ctx.Header);
            uint tid = _sink.AllocateTransactionId();
            // One write for the whole checkpoint: the header, then every vector's regions in list (commit) order.
            ctx.StartLsn = await _sink.WriteAsync(tid, ctx.Regions, start: true).ConfigureAwait(false);
            ctx.StartWritten.TrySetResult();

            // Commit records in sequence order.
            if (prev is not null) await prev.CommitWritten.Task.ConfigureAwait(false);
            ThrowIfShutdown();
            ctx.CommitLsn = await _sink.WriteCommitAsync(tid).ConfigureAwait(false);
            ctx.CommitWritten.TrySetResult();
            Interlocked.Increment(ref _counters.Checkpoints);
            Interlocked.Add(ref _counters.CheckpointBytes, CheckpointHeader.Size + ctx.PayloadBytes);

            // The log accounts these bytes now (they are between its tail and head).
            _space.RefreshUsed();
            _space.Release(Interlocked.Exchange(ref ctx.Reserved, 0));
            _pushSlots.Release();
            slotHeld = false;

            await _sink.ForceAsync(ctx.CommitLsn).ConfigureAwait(false);
            if (prev is not null) await prev.Durable.Task.ConfigureAwait(false);

            _ail.InsertCheckpoint(ctx);
            FreeVectors(ctx);
            Volatile.Write(ref _durableSeq, sequence);
            ctx.Previous = null;
            ctx.DurableTimestamp = Stopwatch.GetTimestamp();
            ctx.Durable.TrySetResult();
            AfterDurableForTests?.Invoke(ctx);
            CompleteWaiters(sequence);
            _pushWake.Set();
            _ail.CheckpointCompleted();
            if (prev is not null) ReleaseContext(prev);
        }
        catch (Exception e)
        {
            if (slotHeld) _pushSlots.Release();
            var err = e as JournalException ?? new JournalException($"journal shut down: writing checkpoint {sequence} failed: {e.Message}", e);
            Shutdown(err);
            ctx.StartWritten.TrySetException(err);
            ctx.CommitWritten.TrySetException(err);
            ctx.Durable.TrySetException(err);
            _pushWake.Set();
        }
        finally
        {
            // A failed push's context keeps its other reference (its successor fails too) and goes to the collector.
            ReleaseContext(ctx);
        }
    }

    /// <summary>Called between a checkpoint's <c>Durable</c> completion and the completion of its waiters; tests only.</summary>
    internal Action<CilContext>? AfterDurableForTests;

    /// <summary>Gives back one of a context's two references (its own push's, its successor's); the last one recycles it.</summary>
    private void ReleaseContext(CilContext ctx)
    {
        if (Interlocked.Decrement(ref ctx.RecycleRefs) == 0) Recycle(ctx);
    }

    /// <summary>A context for the next switch around <paramref name="header"/>: a recycled one if any, else a new one.</summary>
    private CilContext RentContext(byte[] header, bool pooled)
    {
        CilContext? ctx = null;
        lock (_freeContextsLock)
        {
            if (_freeContextCount > 0)
            {
                ctx = _freeContexts[--_freeContextCount];
                _freeContexts[_freeContextCount] = null;
            }
        }
        if (ctx is null)
        {
            Interlocked.Increment(ref ContextsCreated);
            return new CilContext(header, pooled);
        }
        ctx.Reset(header, pooled);
        return ctx;
    }

    /// <summary>
    /// Keeps <paramref name="ctx"/> for reuse (a context and its region list cost about a kilobyte a checkpoint when
    /// made anew). Called when both its own push and its successor's have ended (<see cref="ReleaseContext"/>): by then
    /// the context is durable, its vectors and header are given back, nothing links to it (the successor dropped its
    /// <c>Previous</c>, the AIL dropped it when it became durable), no push step waits on it and none still uses it.
    /// </summary>
    /// <remarks>
    /// Readers that took it before may still hold it: a force or a status read that walked the chain from the current
    /// context moments ago. They only read its sequence and counters and then re-check against the durable sequence
    /// (forces wait by sequence, on <see cref="DurabilityWaiter"/>s, never on a context), so a reused context costs them
    /// at most a second look; a force that counts itself on it after reuse makes one gather wait up to its window.
    /// </remarks>
    private void Recycle(CilContext ctx)
    {
        lock (_freeContextsLock)
        {
            if (_freeContextCount < _freeContexts.Length) _freeContexts[_freeContextCount++] = ctx;
        }
    }

    private void FreeVectors(CilContext ctx)
    {
        var v = ctx.Head;
        ctx.Head = ctx.Tail = null;
        while (v is not null)
        {
            var next = v.Next;
            var item = v.Item;
            if (item is not null) Interlocked.CompareExchange(ref item.Active, null, v);
            ReleaseVector(v);
            v = next;
        }
        if (ctx.HeaderPooled) _pool.Return(ctx.Header);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Force
    // ---------------------------------------------------------------------------------------------------------------

    /// <summary>Completes once checkpoint <paramref name="sequence"/> and every earlier one are durable.</summary>
    /// <remarks>
    /// A force that has to wait registers a pooled <see cref="DurabilityWaiter"/> (the push completes it once the sequence
    /// is durable), so a waiting force without a cancellation token allocates nothing: no task, no completion source, no
    /// state machine. One with a token waits for the same waiter through a task.
    /// </remarks>
    public ValueTask ForceAsync(ulong sequence, CancellationToken cancellationToken)
    {
        while (true)
        {
            if (sequence <= Volatile.Read(ref _durableSeq)) return default;
            if (Volatile.Read(ref _shutdown) is not null) return ValueTask.FromException(ShutdownException());
            var cur = Volatile.Read(ref _current);
            if (sequence > cur.Sequence)
            {
                // Confirmed under the lock: a context read just as it was reused reads a sequence of 0.
                ulong current = ReadCurrent().Sequence;
                if (sequence <= current) continue;
                return ValueTask.FromException(new ArgumentOutOfRangeException(nameof(sequence), sequence, $"checkpoint sequence {sequence} has not been issued yet (current is {current})"));
            }
            CilContext? ctx = cur;
            while (ctx is not null && ctx.Sequence > sequence) ctx = ctx.Previous;
            if (ctx is null || ctx.Sequence != sequence) continue; // completed (or reused) meanwhile: re-check the durable sequence
            if (ReferenceEquals(ctx, cur) && cur.IsEmpty)
            {
                // Nothing was committed into it: everything committed so far is in the sequences before it.
                sequence--;
                continue;
            }
            Interlocked.Increment(ref _counters.Forces);
            // For the gather window only (see GatherAsync). A context recycled since it was read above (durable, two
            // checkpoints ago) may count one forcer too many: its gather then waits at most the window.
            Interlocked.Increment(ref ctx.Forcers);
            var waiter = RegisterWaiter(sequence);
            if (waiter is null) continue; // durable or shut down meanwhile: the checks above answer
            RequestPush(sequence);
            // Why we wait: the push writes the context and forces its commit record; the waiter completes then.
            var wait = new ValueTask(waiter, waiter.Version);
            return cancellationToken.CanBeCanceled ? new ValueTask(wait.AsTask().WaitAsync(cancellationToken)) : wait;
        }
    }

    /// <summary>
    /// Registers a waiter for <paramref name="sequence"/>; null when it is durable or the journal is shut down by now.
    /// </summary>
    /// <remarks>
    /// The push publishes the durable sequence before it takes the waiter list (<see cref="CompleteWaiters"/>), and the
    /// shutdown publishes its error before it does (<see cref="FailWaiters"/>); a registration checks both under the
    /// same lock, so either it sees them or its waiter is on the list they take.
    /// </remarks>
    private DurabilityWaiter? RegisterWaiter(ulong sequence)
    {
        lock (_waitersLock)
        {
            if (sequence <= Volatile.Read(ref _durableSeq) || Volatile.Read(ref _shutdown) is not null) return null;
            var w = _waiterPool.Get();
            w.Sequence = sequence;
            w.Next = _waiters;
            _waiters = w;
            return w;
        }
    }

    /// <summary>Completes every waiter of a sequence at or below <paramref name="durable"/> (after it is published).</summary>
    private void CompleteWaiters(ulong durable)
    {
        DurabilityWaiter? done = null;
        lock (_waitersLock)
        {
            DurabilityWaiter? keep = null;
            for (var w = _waiters; w is not null;)
            {
                var next = w.Next;
                if (w.Sequence <= durable) { w.Next = done; done = w; }
                else { w.Next = keep; keep = w; }
                w = next;
            }
            _waiters = keep;
        }
        while (done is not null)
        {
            var next = done.Next; // read first: a completed waiter may be taken again at once
            done.Next = null;
            done.Complete(null);
            done = next;
        }
    }

    /// <summary>Fails every waiter with <paramref name="error"/> (after the shutdown error is published).</summary>
    private void FailWaiters(Exception error)
    {
        DurabilityWaiter? all;
        lock (_waitersLock)
        {
            all = _waiters;
            _waiters = null;
        }
        while (all is not null)
        {
            var next = all.Next;
            all.Next = null;
            all.Complete(error);
            all = next;
        }
    }

    /// <summary>
    /// The current context's sequence and whether it is empty, read together under the shared context lock (the context
    /// cannot be switched out, let alone reused, meanwhile). For the rare paths that must not see a stale context.
    /// </summary>
    private (ulong Sequence, bool Empty) ReadCurrent()
    {
        _ctxLock.EnterReadLock();
        try
        {
            var cur = _current;
            return (cur.Sequence, cur.IsEmpty);
        }
        finally
        {
            _ctxLock.ExitReadLock();
        }
    }

    /// <summary>Forces everything committed so far; returns the sequence that is now durable.</summary>
    public async ValueTask<ulong> ForceAllAsync(CancellationToken cancellationToken)
    {
        var (current, empty) = ReadCurrent();
        ulong seq = empty ? current - 1 : current;
        if (seq == 0 || seq <= Volatile.Read(ref _durableSeq)) return Math.Max(seq, 0);
        await ForceAsync(seq, cancellationToken).ConfigureAwait(false);
        return seq;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Hard-limit throttle
    // ---------------------------------------------------------------------------------------------------------------

    private async ValueTask ThrottleAsync(CilContext ctx)
    {
        Interlocked.Increment(ref _counters.HardLimitWaits);
        while (true)
        {
            Task t;
            lock (_throttleLock)
            {
                if (!ReferenceEquals(Volatile.Read(ref _current), ctx) || Volatile.Read(ref ctx.SpaceUsed) < _hard || _shutdown is not null)
                    return;
                _throttleTcs ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                t = _throttleTcs.Task;
            }
            _pushWake.Set();
            RequestPush(ctx.Sequence);
            // Why we wait: the context is over the hard limit; the push switching it out (or a relog shrinking it
            // below the limit) wakes us.
            await t.ConfigureAwait(false);
        }
    }

    private void WakeThrottled()
    {
        TaskCompletionSource? t;
        lock (_throttleLock)
        {
            t = _throttleTcs;
            _throttleTcs = null;
        }
        t?.TrySetResult();
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Shutdown and stop
    // ---------------------------------------------------------------------------------------------------------------

    /// <summary>
    /// Stops the journal after an unrecoverable error: later calls fail with it; waiters are released. A committer that
    /// failed under the context lock first records its raw exception as <paramref name="marker"/> (allocation-free, so
    /// that no push writes the damaged context meanwhile) and calls this after releasing the lock: the marker is then
    /// replaced by <paramref name="error"/> and the shutdown goes ahead.
    /// </summary>
    public void Shutdown(Exception error, Exception? marker = null)
    {
        var prior = Interlocked.CompareExchange(ref _shutdown, error, marker);
        if (prior is not null && !ReferenceEquals(prior, marker)) return;
        WakeThrottled();
        var err = error as JournalException ?? new JournalException($"journal shut down: {error.Message}", error);
        for (var c = Volatile.Read(ref _current); c is not null; c = c.Previous) c.Durable.TrySetException(err);
        FailWaiters(err);
        _space.Fail(err);
        _pushSignal.Set();
        _pushWake.Set();
        Diagnostics.ShutDown(error);
    }

    /// <summary>A one-line description of the push machinery, for diagnosing hangs in tests.</summary>
    internal string DescribeState()
    {
        var sb = new System.Text.StringBuilder();
        sb.Append($"target={Volatile.Read(ref _pushTarget)} durable={DurableSequence} slots={_pushSlots.CurrentCount} spare={(!_hasSpare ? "none" : _spare.IsCompleted ? "ready" : "preparing")} stopping={_stopping} loop={_pushLoop.Status} throttled={Volatile.Read(ref _throttleTcs) is not null}");
        for (var c = Volatile.Read(ref _current); c is not null; c = c.Previous)
            sb.Append($" | {c} started={c.StartWritten.Status} committed={c.CommitWritten.Status} durable={c.Durable.Status}");
        return sb.ToString();
    }

    public void ThrowIfShutdown()
    {
        if (Volatile.Read(ref _shutdown) is not null) throw ShutdownException();
    }

    /// <summary>The error to fail with once shut down.</summary>
    private JournalException ShutdownException()
    {
        var e = Volatile.Read(ref _shutdown)!;
        return e as JournalException ?? new JournalException($"journal shut down: {e.Message}", e);
    }

    /// <summary>Stops the push loop after the last checkpoint completed.</summary>
    public async Task StopAsync()
    {
        _stopping = true;
        _pushSignal.Set();
        try { await _pushLoop.ConfigureAwait(false); } catch { /* reported through Shutdown */ }
        try { await _lastCompletion.ConfigureAwait(false); } catch { /* reported through Shutdown */ }
        // Give back the header buffers of the (empty) current context and of the spare.
        var cur = Volatile.Read(ref _current);
        if (cur.IsEmpty && cur.HeaderPooled) _pool.Return(cur.Header);
        bool had = _hasSpare;
        var spare = _spare;
        _hasSpare = false;
        _spare = default;
        if (had)
        {
            var ctx = await spare.ConfigureAwait(false);
            if (ctx.HeaderPooled) _pool.Return(ctx.Header);
        }
    }
}
