using System.Diagnostics;
using Journal.Ail;
using Journal.Format;
using Journal.Log;
using Journal.Memory;
using Microsoft.Extensions.ObjectPool;

namespace Journal.Cil;

/// <summary>
/// The committed-item list (CIL): the commit path (this file) and the push and force paths (CilPush.cs).
/// </summary>
/// <remarks>
/// <para><b>The context lock</b> (<c>_ctxLock</c>, a <see cref="ReaderWriterLockSlim"/> without recursion) protects
/// which context is current (<c>_current</c>) and, for the current context, the items' <c>Active</c>/<c>ActiveSeq</c>
/// fields and the vectors they point to.</para>
/// <list type="bullet">
/// <item><b>Shared</b>: committers, for step 2 of a commit only (format, link, account).</item>
/// <item><b>Exclusive</b>: the push, only to swap in the next context (prepared beforehand) and detach the old one.
/// Writers are preferred: once a push waits, new committers queue behind it, so a push is never starved.</item>
/// <item><b>Never while holding it, on either side</b>: allocate memory, wait for anything, call the log, or call user
/// code other than <see cref="LogItem.FormatLog"/>. A push is what frees memory; if a committer allocated (and so
/// could wait for memory) while holding the lock shared, the push could never take it exclusive: deadlock. Tests
/// measure the bytes allocated inside the locked sections (<see cref="LockAllocatedBytes"/>).</item>
/// </list>
/// <para><b>Commit path.</b> (1) Outside any lock: size each item (<see cref="LogItem.GetLogSize"/>), take its shadow
/// vector and make sure it can hold that size (renting a bigger one from the pool if not; this may wait for memory or,
/// after <see cref="JournalOptions.EmergencyAfter"/>, use the emergency reserve), and make sure the transaction's log
/// reservation covers the worst case (an under-reserved transaction takes the rest at once, without waiting: the caller
/// may hold item locks the AIL needs to move the tail). (2) Shared lock: for each item, if its
/// active vector belongs to the current context and can hold the new size, format over it in place (a relog costs
/// nothing new); otherwise format into the shadow and make it the active vector. Move the vector to the tail of the
/// context's list, pin the item if it is new to the context, account the space difference and take that much of the
/// transaction's reservation (interlocked adds). (3) Release; give leftover vectors back to their items as shadows;
/// start a background push above the soft limit; wait for the push above the hard limit.</para>
/// <para><b>Vector ownership (the rule that makes pushes safe without copying).</b> A vector belongs to exactly one
/// owner: the item (as its shadow, or as a leftover after step 2) or the context whose sequence the item's
/// <c>ActiveSeq</c> names (as the item's active vector, linked on that context's list). A committer may format into
/// <c>item.Active</c> only if <c>item.ActiveSeq</c> equals the current sequence, checked under the shared lock. So
/// once the push has switched contexts, every vector on the old context's list is frozen: a committer relogging such
/// an item sees a stale sequence, formats into the item's shadow instead, and simply forgets the old vector (the old
/// context frees it after writing it). When the active vector is replaced within the same context, the old vector
/// becomes the item's next shadow. Because of this rule, step 1 always prepares a shadow big enough for the new
/// state, whatever the active vector looks like then: a switch between steps 1 and 2 cannot leave a committer
/// without a vector.</para>
/// <para>Items are serialised by their users (see <see cref="LogItem"/>): one open transaction per item, so the
/// commit path never races itself on one item's fields.</para>
/// </remarks>
internal sealed partial class CommittedItemList
{
    private readonly ReaderWriterLockSlim _ctxLock = new(LockRecursionPolicy.NoRecursion);
    private CilContext _current;

    private readonly ILogSink _sink;
    private readonly JournalOptions _options;
    private readonly BoundedBufferPool _pool;
    private readonly ObjectPool<LogVector> _shells = new DefaultObjectPool<LogVector>(new DefaultPooledObjectPolicy<LogVector>(), 4096);
    private readonly LogCostModel _cost;
    private readonly LogSpace _space;
    private readonly JournalCounters _counters;
    private readonly long _soft, _hard;
    private readonly long _gatherWindowTicks;   // JournalOptions.CheckpointGatherWindow in Stopwatch ticks
    private ActiveItemList _ail = null!;

    /// <summary>Where the push reports gather timeouts and the shutdown (never while the context lock is held).</summary>
    internal Journal.Diagnostics.JournalDiagnostics Diagnostics { get; set; } = Journal.Diagnostics.JournalDiagnostics.None;

    /// <summary>When set, bytes allocated by threads inside locked sections are added to <see cref="LockAllocatedBytes"/>.</summary>
    internal bool MeasureLockAllocations;
    internal long LockAllocatedBytes;
    internal long LockedSections;

    public CommittedItemList(ILogSink sink, JournalOptions options, BoundedBufferPool pool, LogCostModel cost, LogSpace space,
        JournalCounters counters, ulong firstSequence)
    {
        _sink = sink;
        _options = options;
        _pool = pool;
        _cost = cost;
        _space = space;
        _counters = counters;
        long logBytes = (long)sink.LogBlocks * 512;
        _soft = options.EffectiveSoftLimit(logBytes);
        _gatherWindowTicks = (long)(options.CheckpointGatherWindow.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
        _hard = options.EffectiveHardLimit(logBytes);
        // Pooled when the pool can serve it now: its checkpoint gives the header back, for the spare after the next switch.
        var header = pool.TryRent(CheckpointHeader.Size);
        _current = new CilContext(header ?? new byte[CheckpointHeader.Size], pooled: header is not null) { Sequence = Math.Max(1, firstSequence) };
    }

    internal void Attach(ActiveItemList ail)
    {
        _ail = ail;
        // The first push takes a prepared spare like every later one; without it, it would take an emergency push slot
        // and count (and report) an emergency on a journal under no memory pressure at all. Prepared here, before the
        // journal runs, when the pool can serve it at once; else in the background as after every switch.
        var header = _pool.TryRent(CheckpointHeader.Size);
        SetSpare(header is not null ? new ValueTask<CilContext>(new CilContext(header, pooled: true)) : new ValueTask<CilContext>(PrepareSpareAsync()));
        _pushLoop = Task.Run(PushLoopAsync);
    }

    public long SoftLimit => _soft;
    public long HardLimit => _hard;
    public LogCostModel CostModel => _cost;

    /// <summary>The context collecting commits now.</summary>
    internal CilContext Current => Volatile.Read(ref _current);

    /// <summary>Sequence of the context collecting commits now.</summary>
    public ulong CurrentSequence => Volatile.Read(ref _current).Sequence;

    // ---------------------------------------------------------------------------------------------------------------
    // Commit
    // ---------------------------------------------------------------------------------------------------------------

    /// <summary>Commits the transaction's items into the current context; returns its sequence.</summary>
    public async ValueTask<ulong> CommitAsync(TransactionState tx, CancellationToken cancellationToken)
    {
        ThrowIfShutdown();
        if (tx.ItemCount == 0) return CurrentSequence;

        // Step 1: outside every lock.
        try
        {
            await PrepareAsync(tx, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            GiveBackPrepared(tx);
            throw;
        }

        // Step 2: the shared context lock.
        ulong seq = Insert(tx, out CilContext ctx, out long diff);

        // Step 3: after the lock.
        GiveBackPrepared(tx);
        Interlocked.Increment(ref _counters.Commits);
        Interlocked.Add(ref _counters.ItemsCommitted, tx.ItemCount);

        long used = Volatile.Read(ref ctx.SpaceUsed);
        if (diff < 0 && used < _hard && Volatile.Read(ref _throttleTcs) is not null) WakeThrottled();
        if (used >= _soft) RequestPush(seq);
        if (used >= _hard && ReferenceEquals(Volatile.Read(ref _current), ctx))
            await ThrottleAsync(ctx).ConfigureAwait(false);
        return seq;
    }

    /// <summary>
    /// Step 1: sizes every item, prepares a shadow that can hold it, and makes the reservation cover the worst case.
    /// Completes synchronously (allocating nothing) when shadows are big enough and the reservation suffices.
    /// </summary>
    private async ValueTask PrepareAsync(TransactionState tx, CancellationToken cancellationToken)
    {
        long needed = _cost.ContextOverhead;
        for (int i = 0; i < tx.ItemCount; i++)
        {
            var item = tx.Items[i];
            var size = item.GetLogSize();
            ValidateSize(item, size);
            tx.Sizes[i] = size;
            needed += _cost.ItemCost(size);

            var shadow = Interlocked.Exchange(ref item.Shadow, null);
            if (shadow is not null && !shadow.CanHold(size))
            {
                ReleaseVector(shadow);
                shadow = null;
            }
            shadow ??= TryRentVector(LogVector.CapacityFor(size), emergency: false)
                       ?? await RentVectorSlowAsync(LogVector.CapacityFor(size), cancellationToken).ConfigureAwait(false);
            tx.Prepared[i] = shadow;
        }

        if (needed > tx.Reserved)
        {
            // Under-reserved: take the rest at once, from the log's headroom if need be. Never wait here: the caller
            // may hold item locks, and the AIL must be able to write items home for the tail (and space) to move.
            _space.ReserveWithoutWaiting(needed - tx.Reserved);
            Interlocked.Increment(ref _counters.ReservationOverruns);
            tx.Reserved = needed;
        }
    }

    private static void ValidateSize(LogItem item, LogItemSize size)
    {
        if (size.Regions < 0 || size.Regions > ItemHeader.MaxRegions || size.Bytes < 0
            || (long)size.Bytes + ItemHeader.SizeFor(size.Regions) > BoundedBufferPool.MaxBufferBytes)
            throw new JournalArgumentException(
                $"log item {item.ItemType}:{item.ItemId}: size {size.Regions} regions / {size.Bytes} bytes is outside 0..{ItemHeader.MaxRegions} regions and {BoundedBufferPool.MaxBufferBytes} bytes with its header");
    }

    /// <summary>
    /// Step 2, under the shared context lock. Allocates nothing: every vector it may need was prepared in step 1, the
    /// list is intrusive, the counters are interlocked.
    /// </summary>
    private ulong Insert(TransactionState tx, out CilContext ctx, out long diff)
    {
        Exception? formatError = null;
        ulong seq;
        _ctxLock.EnterReadLock();
        long allocated = MeasureLockAllocations ? GC.GetAllocatedBytesForCurrentThread() : 0;
        try
        {
            ctx = _current;
            seq = ctx.Sequence;
            long dCost = 0, dBytes = 0;
            int dRegions = 0, newItems = 0, relogs = 0;
            try
            {
                for (int i = 0; i < tx.ItemCount; i++)
                {
                    var item = tx.Items[i];
                    var size = tx.Sizes[i];
                    var active = item.Active;
                    bool owned = active is not null && item.ActiveSeq == seq;
                    LogVector v;
                    if (owned && active!.CanHold(size))
                    {
                        // Relog within this context: overwrite in place.
                        dCost -= active.Cost; dRegions -= active.Count; dBytes -= active.TotalBytes;
                        Format(active, item, size);
                        v = active;
                        MoveToTail(ctx, v);
                        relogs++;
                    }
                    else
                    {
                        v = tx.Prepared[i]!;
                        tx.Prepared[i] = null;
                        v.Sequence = seq;
                        Format(v, item, size);
                        if (owned)
                        {
                            // Too small: the shadow takes its place; the old vector is the item's next shadow.
                            dCost -= active!.Cost; dRegions -= active.Count; dBytes -= active.TotalBytes;
                            Replace(ctx, active, v);
                            tx.Prepared[i] = active;
                            relogs++;
                        }
                        else
                        {
                            // New to this context (any older vector belongs to an older context: forget it).
                            Append(ctx, v);
                            Interlocked.Increment(ref item.PinCount);
                            newItems++;
                        }
                        item.Active = v;
                        item.ActiveSeq = seq;
                    }
                    dCost += v.Cost; dRegions += v.Count; dBytes += v.TotalBytes;
                }
            }
            catch (Exception e)
            {
                // A half-formatted vector may be on the list: nothing more may be written. Under the lock only the
                // raw exception is recorded as the shutdown error (no allocation), so every push fails from now on;
                // the shutdown itself allocates and takes other locks, so it runs after the lock is released.
                formatError = e;
                Interlocked.CompareExchange(ref _shutdown, e, null);
            }

            diff = dCost;
            if (formatError is null)
            {
                Interlocked.Add(ref ctx.SpaceUsed, dCost);
                if (dRegions != 0) Interlocked.Add(ref ctx.RegionCount, dRegions);
                if (dBytes != 0) Interlocked.Add(ref ctx.PayloadBytes, dBytes);
                if (newItems != 0) Interlocked.Add(ref ctx.ItemCount, newItems);
                if (relogs != 0) Interlocked.Add(ref _counters.Relogs, relogs);
                long stolen = dCost;
                if (Volatile.Read(ref ctx.OverheadPaid) == 0 && Interlocked.Exchange(ref ctx.OverheadPaid, 1) == 0)
                    stolen += _cost.ContextOverhead;
                Interlocked.Add(ref ctx.Reserved, stolen);
                tx.Reserved -= stolen;
            }
        }
        finally
        {
            if (MeasureLockAllocations)
            {
                Interlocked.Add(ref LockAllocatedBytes, GC.GetAllocatedBytesForCurrentThread() - allocated);
                Interlocked.Increment(ref LockedSections);
            }
            _ctxLock.ExitReadLock();
        }
        if (formatError is not null)
        {
            var err = new JournalException($"journal shut down: formatting a log item failed: {formatError.Message}", formatError);
            Shutdown(err, marker: formatError);
            throw err;
        }
        return seq;
    }

    private void Format(LogVector v, LogItem item, LogItemSize size)
    {
        v.Item = item;
        v.Reset(size);
        item.FormatLog(new LogVectorWriter(v));
        v.FinishHeader(item.ItemType, item.ItemId);
        v.Cost = _cost.Cost(v.Count, v.TotalBytes);
    }

    private static void Append(CilContext ctx, LogVector v)
    {
        ctx.ListLock.Enter();
        LinkTail(ctx, v);
        ctx.ListLock.Exit();
    }

    private static void MoveToTail(CilContext ctx, LogVector v)
    {
        ctx.ListLock.Enter();
        if (ctx.Tail != v)
        {
            Unlink(ctx, v);
            LinkTail(ctx, v);
        }
        ctx.ListLock.Exit();
    }

    private static void Replace(CilContext ctx, LogVector old, LogVector v)
    {
        ctx.ListLock.Enter();
        Unlink(ctx, old);
        LinkTail(ctx, v);
        ctx.ListLock.Exit();
    }

    private static void LinkTail(CilContext ctx, LogVector v)
    {
        v.Next = null;
        v.Prev = ctx.Tail;
        if (ctx.Tail is null) ctx.Head = v; else ctx.Tail.Next = v;
        ctx.Tail = v;
    }

    private static void Unlink(CilContext ctx, LogVector v)
    {
        if (v.Prev is null) ctx.Head = v.Next; else v.Prev.Next = v.Next;
        if (v.Next is null) ctx.Tail = v.Prev; else v.Next.Prev = v.Prev;
        v.Prev = v.Next = null;
    }

    /// <summary>Step 3: vectors left in the transaction go back to their items as shadows (or to the pool).</summary>
    private void GiveBackPrepared(TransactionState tx)
    {
        for (int i = 0; i < tx.ItemCount; i++)
        {
            var v = tx.Prepared[i];
            if (v is null) continue;
            tx.Prepared[i] = null;
            v.Prev = v.Next = null;
            if (Interlocked.CompareExchange(ref tx.Items[i].Shadow, v, null) is not null) ReleaseVector(v);
        }
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Vectors and memory
    // ---------------------------------------------------------------------------------------------------------------

    /// <summary>A vector with a buffer of at least <paramref name="capacity"/> bytes, or null. Outside the locks only.</summary>
    internal LogVector? TryRentVector(int capacity, bool emergency)
    {
        var buffer = _pool.TryRent(capacity);
        if (buffer is null && emergency) buffer = _pool.Reserve.TryTakeGeneral(capacity);
        if (buffer is null) return null;
        var v = _shells.Get();
        v.Buffer = buffer;
        v.Item = null;
        v.Sequence = 0;
        v.Prev = v.Next = null;
        return v;
    }

    /// <summary>
    /// Waits for pool memory: a push frees the vectors of the context it writes, so ask for one, then wait for a
    /// buffer to come back. After <see cref="JournalOptions.EmergencyAfter"/> the emergency reserve may serve it.
    /// </summary>
    private async ValueTask<LogVector> RentVectorSlowAsync(int capacity, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _counters.MemoryWaits);
        long start = Stopwatch.GetTimestamp();
        while (true)
        {
            ThrowIfShutdown();
            bool emergency = Stopwatch.GetElapsedTime(start) >= _options.EmergencyAfter;
            var v = TryRentVector(capacity, emergency);
            if (v is not null) return v;
            var cur = Volatile.Read(ref _current);
            if (!cur.IsEmpty) RequestPush(cur.Sequence);
            // Why we wait: memory comes back when a checkpoint completes (its vectors) or the AIL drops shadows; the
            // timeout re-checks the emergency deadline and retries an allocator that failed transiently.
            await Task.WhenAny(_pool.WaitForReturnAsync(), Task.Delay(10, cancellationToken)).ConfigureAwait(false);
            cancellationToken.ThrowIfCancellationRequested();
        }
    }

    /// <summary>Returns a vector's buffer to the pool and its shell for reuse. Outside the locks only.</summary>
    internal void ReleaseVector(LogVector v)
    {
        var b = v.Buffer;
        v.Buffer = Array.Empty<byte>();
        v.Item = null;
        v.Prev = v.Next = null;
        _pool.Return(b);
        _shells.Return(v);
    }
}
