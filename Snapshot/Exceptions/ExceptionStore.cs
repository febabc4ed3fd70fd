using Journal.Storage;
using Snapshot.Format;
using Snapshot.Sync;

namespace Snapshot.Exceptions;

/// <summary>Space use of one exception store, in sectors, as <c>dmsetup status</c> reports it.</summary>
internal readonly record struct StoreUsage(long SectorsAllocated, long TotalSectors, long MetadataSectors);

/// <summary>
/// Where one snapshot keeps its exceptions (the dm-exception-store idea): allocation of COW chunks, committing an
/// exception (old chunk -> new chunk) durably, reading the committed exceptions back at open, invalidation.
/// <see cref="PersistentExceptionStore"/> keeps them in the COW file in the dm-snapshot persistent format;
/// <see cref="TransientExceptionStore"/> keeps nothing on disk.
/// </summary>
/// <remarks>
/// Order of a copy-on-write, which every caller follows: allocate (<see cref="TryAllocate"/>, under the store's state
/// lock), <see cref="EnsureCapacityAsync"/>, write the data into the chunk, then (persistent) hand the exception to the
/// store's commit pipeline, which flushes the COW file before it commits (the data is durable before any metadata can
/// point at it) and completes the exception when both are durable.
/// Locking: <c>_growLock</c> serialises file growth only (an async mutex held across the zero-fill; takes nothing
/// else), by writers and by the background grower alike; the grower's flush runs after it is released. The grower
/// takes the process-wide <c>s_growersGate</c> first (order: gate, then a file's grow lock; nothing else nests).
/// Allocation state has its own leaf lock in the subclasses.
/// </remarks>
internal abstract class ExceptionStore : IDisposable
{
    private readonly SemaphoreSlim _growLock = new(1, 1);
    private readonly GroupFlush _dataFlush;

    protected ExceptionStore(BlockDevice cow, CowLayout layout, long totalSectors, long growthSectors)
    {
        Cow = cow;
        Layout = layout;
        CapacityChunks = totalSectors / layout.ChunkSectors;
        TotalSectors = CapacityChunks * layout.ChunkSectors;
        GrowthSectors = Math.Max(layout.ChunkSectors, (growthSectors + layout.ChunkSectors - 1) / layout.ChunkSectors * layout.ChunkSectors);
        _dataFlush = new GroupFlush(ct => Cow.FlushAsync(ct));
        // Every copy starts its own write-back as soon as it is in the page cache. Copies land in new chunks taken in
        // order, so the writes go to the disk in file order while the round gathers, and the round's own write-back
        // (before the flush that makes them durable, see CommitPipeline) finds them written or under way: 77 µs a
        // round instead of 278 with 1 snapshot in journal-bench cow. Origin writes stay with the page cache (random,
        // they would compete with the copies' reads).
        if (cow is FileBlockDevice file) file.EagerWriteBackBytes = 1;
    }

    /// <summary>The COW device.</summary>
    public BlockDevice Cow { get; }

    /// <summary>Chunk geometry.</summary>
    public CowLayout Layout { get; }

    /// <summary>Configured size in sectors (whole chunks).</summary>
    public long TotalSectors { get; }

    /// <summary>Configured size in chunks.</summary>
    public long CapacityChunks { get; }

    /// <summary>Growth step in sectors.</summary>
    public long GrowthSectors { get; }

    /// <summary>True for the persistent store.</summary>
    public abstract bool IsPersistent { get; }

    /// <summary>COW flushes issued through <see cref="FlushDataAsync"/> (shared among concurrent callers).</summary>
    public long DataFlushes => _dataFlush.Rounds;

    /// <summary>Allocates a COW chunk for a new exception; false when the COW file is full. Never does I/O.</summary>
    public abstract bool TryAllocate(out ulong newChunk);

    /// <summary>Returns a chunk allocated for an exception that will never be committed.</summary>
    public abstract void Free(ulong newChunk);

    /// <summary>Space use now.</summary>
    public abstract StoreUsage Usage { get; }

    /// <summary>The last chunk that must exist for data chunk <paramref name="chunk"/> to be written (and its metadata read back).</summary>
    protected virtual ulong LastChunkNeeded(ulong chunk) => chunk;

    /// <summary>
    /// Grows the COW file (in <see cref="GrowthSectors"/> steps of written zeros) so <paramref name="chunk"/> exists.
    /// </summary>
    /// <remarks>
    /// <para>The file is grown <b>ahead</b> of its copies: once a chunk is needed within one step of the file's end, the
    /// next step is zero-filled (and the file flushed) by a background grower, so a writer finds its chunk already there
    /// instead of waiting for 4 MiB of zeros to reach the device (with eight snapshots the eight files cross their ends
    /// together, and every writer stopped for them). A writer waits only when it outruns the grower: then it takes
    /// <c>_growLock</c> and grows the file itself, as the grower would.</para>
    /// <para>The grower's flush makes the new blocks and size durable off the writers' path, so the file can share a
    /// commit round's device flush again once that flush has completed (a grown file must be flushed on its own first:
    /// copies may land in the new sectors before it, and the file does not ride until its own flush covered the growth; see
    /// <see cref="BlockDevice.CanFlushThrough"/>). A failed growth ahead is dropped (the file keeps its old size; the
    /// writer that needs the space grows it and gets the error), reported once through <see cref="GrowthAheadFailed"/>,
    /// and none is tried again until a writer's own growth succeeds. A failed flush of the grower's is dropped here too:
    /// a <see cref="FileBlockDevice"/> keeps it and refuses every later flush and write-back of the file (one at a time,
    /// so none already running can succeed over it), and stops sharing flushes, so the next round's own flush of the
    /// file fails with it. A device without that rule reports a flush error only to its own caller.</para>
    /// </remarks>
    public async ValueTask EnsureCapacityAsync(ulong chunk, CancellationToken cancellationToken = default)
    {
        ulong last = Math.Min(LastChunkNeeded(chunk), (ulong)CapacityChunks - 1);
        long need = ((long)last + 1) * Layout.ChunkSectors;
        long size = Cow.SectorCount;
        if (size >= need)
        {
            GrowAheadIfNear(size, need);
            return;
        }
        // Waiting for another writer's growth of this file, or the grower's; the holder takes nothing else.
        await _growLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (Cow.SectorCount < need)
            {
                // The growth writes its zeros to the device (O_DIRECT) and waits for them: on a thread that must not
                // wait (an NBD connection's reader), go on on a pool thread first.
                if (BlockDevice.ReadsMustNotWait) await Task.Yield();
                Cow.Extend(NextSize(need));
                _aheadFailed = false; // the file grew again: growing ahead may work again too
            }
        }
        finally
        {
            _growLock.Release();
        }
        GrowAheadIfNear(Cow.SectorCount, need);
    }

    /// <summary>The size a growth to at least <paramref name="need"/> sectors makes: whole steps, at most the configured size.</summary>
    private long NextSize(long need) => Math.Max(need, Math.Min(TotalSectors, (need + GrowthSectors - 1) / GrowthSectors * GrowthSectors));

    // The grower (see EnsureCapacityAsync): _growingAhead is 1 from the moment a growth ahead is started until it has
    // finished (compare-exchange), so at most one runs per file; _growerDone completes when it finishes. Dispose takes
    // the flag for good once no grower runs, before the device closes; a grower that has not begun sees Disposed and stops.
    private int _growingAhead;

    /// <summary>
    /// One growth ahead at a time in the process, whatever its file: a growth writes its step of zeros to the disk
    /// (1 MiB writes, 4 MiB a step by default) and every other write and flush of the store queues behind them there.
    /// Eight snapshots' files reach their ends together; eight growths at once put 32 MiB ahead of the commit rounds'
    /// writes and flushes (about 32 ms on a 1 GB/s disk), one at a time at most 1 MiB. Growth ahead starts a whole step
    /// before it is needed, so the files' growths have time to run one after another. Lock order: this gate, then a
    /// file's <c>_growLock</c>; a writer's own growth takes only the latter.
    /// </summary>
    private static readonly SemaphoreSlim s_growersGate = new(1, 1);
    private Task _growerDone = Task.CompletedTask;
    private int _disposeStarted; // 1 once Dispose began (exchange: it runs once)

    private bool Disposed => Volatile.Read(ref _disposeStarted) != 0;
    private readonly CancellationTokenSource _closing = new(); // cancelled by Dispose: a grower waiting for the gate gives up

    /// <summary>Growths made ahead of need (see <see cref="EnsureCapacityAsync"/>), counted once finished (and flushed, for a persistent file).</summary>
    public long GrowthsAhead => Interlocked.Read(ref _growthsAhead);

    /// <summary>Growths ahead that failed, in the growth or its flush (dropped; see <see cref="EnsureCapacityAsync"/>), counted once reported.</summary>
    public long FailedGrowthsAhead => Interlocked.Read(ref _failedGrowthsAhead);

    private long _growthsAhead, _failedGrowthsAhead;

    // Set when a growth ahead failed, cleared when a writer's own growth succeeds: until then no growth ahead is tried
    // (on a full disk every copy near the end would otherwise start one, each writing zeros until the disk refuses and
    // cutting the file back), and the failure is reported once (GrowthAheadFailed).
    private volatile bool _aheadFailed;

    /// <summary>
    /// Called (on the grower's thread) when a growth ahead fails, with the error; once per failure: none is tried again
    /// until a writer's own growth of the file succeeds. The store logs it.
    /// </summary>
    public Action<Exception>? GrowthAheadFailed { get; set; }

    /// <summary>
    /// Starts the grower when <paramref name="need"/> sectors lie within one step of the file's <paramref name="size"/>,
    /// the file can still grow, no growth ahead has failed since a writer's own last growth, and none is running.
    /// Never waits.
    /// </summary>
    private void GrowAheadIfNear(long size, long need)
    {
        if (size - need >= GrowthSectors || size >= TotalSectors || _aheadFailed || Disposed) return;
        if (Interlocked.CompareExchange(ref _growingAhead, 1, 0) != 0) return;
        Volatile.Write(ref _growerDone, Task.Run(GrowAheadAsync));
    }

    private async Task GrowAheadAsync()
    {
        bool grew = false, failed = false;
        try
        {
            // Why we wait: for the growth ahead of another file to finish (see s_growersGate); the holder takes only
            // its own file's grow lock.
            await s_growersGate.WaitAsync(_closing.Token).ConfigureAwait(false);
            try
            {
                // Why we wait: for a writer's own growth of this file (it outran the grower); it takes nothing else.
                await _growLock.WaitAsync().ConfigureAwait(false);
                try
                {
                    long size = Cow.SectorCount;
                    if (!Disposed && size < TotalSectors)
                    {
                        Cow.Extend(NextSize(size + 1));
                        grew = true;
                    }
                }
                finally
                {
                    _growLock.Release();
                }
            }
            finally
            {
                s_growersGate.Release();
            }
            // Outside the grow lock: a writer that outruns the grower need not wait for this flush too.
            if (grew && IsPersistent && !Disposed) Cow.Flush();
        }
        catch (OperationCanceledException)
        {
            // The store is closing: a growth not begun is not needed.
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // Dropped: the writer that needs the space grows the file itself and gets the error (a flush error is kept
            // by the device, see the remarks on EnsureCapacityAsync).
            failed = true;
            if (!Disposed)
            {
                _aheadFailed = true;
                try { GrowthAheadFailed?.Invoke(e); } catch (Exception) { } // a report must not fault the grower
            }
        }
        finally
        {
            Volatile.Write(ref _growingAhead, 0);
            // Counted last: whoever sees a growth ahead counted sees it finished (reported, flushed, and the next one
            // free to start).
            if (failed) Interlocked.Increment(ref _failedGrowthsAhead);
            else if (grew) Interlocked.Increment(ref _growthsAhead);
        }
    }

    /// <summary>Makes every COW write that returned before the call durable (shared among concurrent callers).</summary>
    public ValueTask FlushDataAsync(CancellationToken cancellationToken = default) => _dataFlush.FlushAsync(cancellationToken);

    /// <summary>Marks the store invalid on disk (persistent: header valid = 0) and stops metadata writes. Best effort on I/O errors.</summary>
    public abstract ValueTask InvalidateAsync(CancellationToken cancellationToken = default);

    /// <summary>Closes the device.</summary>
    private int _stopGrowthStarted, _growthStopped; // StopGrowingAheadAsync: begun (exchange), and the flag claimed for good

    /// <summary>
    /// Ends growth ahead of the file for good, once one running has finished: a deleted snapshot's file has its space
    /// given back next, and a growth after that would take a step of it again until the store closes. Why we wait: as
    /// in <see cref="Dispose"/>, a growth ahead that is running ends within one step's I/O and a flush and takes no lock
    /// the caller holds (the store's gate, held by a delete, is not among the grower's). Once only; later calls return.
    /// </summary>
    public async ValueTask StopGrowingAheadAsync()
    {
        if (Interlocked.Exchange(ref _stopGrowthStarted, 1) != 0) return;
        try { _closing.Cancel(); } catch (ObjectDisposedException) { } // a grower waiting for the gate gives up
        while (Interlocked.CompareExchange(ref _growingAhead, 1, 0) != 0)
        {
            try { await Volatile.Read(ref _growerDone).ConfigureAwait(false); } catch (Exception) { }
            await Task.Yield();
        }
        Volatile.Write(ref _growthStopped, 1);
    }

    public virtual void Dispose()
    {
        if (Interlocked.Exchange(ref _disposeStarted, 1) != 0) return; // once, even when called twice at once
        _closing.Cancel();
        // Claims the grower's flag for good, so none starts after this. Why we wait: a growth ahead is running (one
        // still waiting for the gate gives up at once); it ends within one growth step's I/O and a flush, and takes no
        // lock the caller could hold (only _growLock, which no one holds across a call into the store). Between a
        // grower's claim and its task being published the old (finished) task is seen, hence the loop. When
        // StopGrowingAheadAsync began first, it claims the flag: wait for that instead (the same running growth).
        if (Volatile.Read(ref _stopGrowthStarted) != 0)
        {
            while (Volatile.Read(ref _growthStopped) == 0) Thread.Sleep(1);
        }
        else
        {
            while (Interlocked.CompareExchange(ref _growingAhead, 1, 0) != 0)
            {
                try { Volatile.Read(ref _growerDone).Wait(); } catch (AggregateException) { }
                Thread.Yield();
            }
        }
        Cow.Dispose();
        _growLock.Dispose();
        _closing.Dispose();
    }
}
