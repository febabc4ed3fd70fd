using System.Diagnostics;
using System.Runtime.CompilerServices;
using Journal;
using Journal.Storage;
using Snapshot.Commit;
using Snapshot.Copy;
using Snapshot.Diagnostics;
using Snapshot.Exceptions;
using Snapshot.Format;
using Snapshot.Memory;
using Snapshot.Sync;

namespace Snapshot.Io;

/// <summary>
/// The data path: origin reads and writes, snapshot reads and writes, the pending exceptions of copies in flight and
/// the snapshot reads of origin chunks (tracked reads) that an origin write must wait for.
/// </summary>
/// <remarks>
/// <para><b>Origin write</b> of a request (split into runs of at most <see cref="RunChunks"/> chunks, up to four of them
/// in parallel):</para>
/// <list type="number">
/// <item>Holding nothing: wait for throttle room if the previous pass asked for it, or for the pending exception or
/// tracked reads the previous pass found.</item>
/// <item>Enter the I/O gate shared; under the state lock look at every chunk of the run in every valid snapshot: a
/// complete exception needs nothing; a pending one means another writer is copying that chunk: wait for it (back to 1,
/// releasing the gate); otherwise the snapshot needs a copy. If copies are needed, take that many throttle slots
/// without waiting (else back to 1 to wait for room), allocate the COW chunks (in chunk order, so they follow on), and
/// insert the pending exceptions: one copy plan for the run.</item>
/// <item>Run the plan (<see cref="CopyEngine"/>): read the run from the origin once, write it to every snapshot, have
/// the commit pipeline make the exceptions durable, then move them to the complete tables, wake anyone waiting on them
/// and give back the throttle slots. Look again, still inside the gate (no snapshot is created between the copies and
/// the write they protect).</item>
/// <item>With no copy needed: if snapshot reads of a chunk of the run that started before its exceptions existed are
/// still reading the origin, wait for them (back to 1); else write the whole run to the origin in one request and
/// return.</item>
/// </list>
/// <para>When the write returns, every snapshot that shared a chunk holds its old data durably, and the new data is
/// written (durable after <see cref="SnapshotStore.FlushAsync"/>, or at once with FUA or <see cref="StoreOptions.WriteThrough"/>).</para>
/// <para><b>Deferred origin write</b> (<see cref="StoreOptions.DeferCopiedWrites"/>, not FUA, at most
/// <see cref="MaxDeferredWriteBytes"/>, while the data held is under <see cref="MaxDeferredBytes"/>): step 2 also
/// registers the run as deferred (under the state lock, with the claim); step 3 copies the caller's data into a pooled
/// buffer, starts the plan (read, COW writes, queued for commit) and returns: the write is acknowledged.
/// <see cref="ContinueDeferred"/> then, in the background and holding the writer's shared hold of the gate, waits for
/// the round, for tracked reads of the run, and writes the origin. Until then an origin read of the run, and any write
/// to it, waits for it (the look finds it, as it finds a pending exception); a flush waits for every deferred write
/// registered before it; snapshot create, delete, merge and close wait for it at the gate. An error after the
/// acknowledgement is kept and fails every later flush.</para>
/// <para><b>Snapshot read</b> of chunk c: a complete exception reads the COW file; a pending one waits for it; with
/// neither, the read is tracked (so an origin write of c waits for it) and goes to the origin.</para>
/// <para><b>Snapshot write</b> of chunk c: into its COW chunk if c has a complete exception; else a new exception: a
/// full-chunk write needs no copy, a partial one copies the origin chunk around the new data; the data is flushed
/// and the exception committed before the write returns.</para>
/// <para>The lock rule (the deadlock of an early in-flight copy bound): every wait — for throttle room, for another
/// writer's pending exception, for tracked reads — happens with nothing held: no monitor, not the gate, no pool object,
/// no throttle slot (<see cref="WaitHoldingNothingAsync"/>). Snapshot create/delete need the gate exclusively, and the
/// completion path (<see cref="Complete"/>) needs only the state lock and the throttle's leaf lock, so no waiter holds
/// what they need. A writer holding the gate shared does wait for its own copies' commit rounds: the commit pipeline
/// never enters the gate nor takes the state lock. A deferred write's completion holds the gate shared while it waits for
/// its round and then for tracked reads: those readers already hold the gate and finish on their own I/O, and the round
/// needs neither the gate nor the state lock.</para>
/// <para>Lock order: I/O gate, then the state lock, then the leaves (throttle, pools, a COW file's allocation lock).
/// The state lock is never held across an await.</para>
/// </remarks>
internal sealed class DataPath : ICopyCompletion
{
    /// <summary>Snapshot reads of one origin chunk in flight; origin writes of the chunk wait for them.</summary>
    private sealed class TrackedChunk
    {
        public int Readers;
        public TaskCompletionSource? Waiters;
    }

    /// <summary>A write that waits this long for room under the in-flight copy bound is logged (a stalled COW device).</summary>
    private static readonly TimeSpan ThrottleStallWarning = TimeSpan.FromSeconds(1);

    /// <summary>Most chunk pieces of one snapshot request processed at once.</summary>
    private const int SegmentConcurrency = 16;

    private readonly SnapshotStore _store;
    private readonly Catalog.SnapshotCatalog _catalog;
    private readonly object _stateLock;
    private readonly AsyncGate _gate;
    private readonly CowLayout _layout;
    private readonly BlockDevice _origin;
    private readonly GroupFlush _originFlush;
    private readonly CopyThrottle _throttle;
    private readonly BoundedPool<PendingException> _pendingPool;
    private readonly BoundedPool<CopyPlan> _planPool;
    private readonly bool _writeThrough;
    private readonly CowFullPolicy _cowFullPolicy;
    private readonly Dictionary<ulong, TrackedChunk> _tracked = new(); // under _stateLock
    private CopyEngine _engine = null!;

    // Deferred origin writes (StoreOptions.DeferCopiedWrites). _deferredChunks maps each chunk of a deferred write's
    // run to it, _deferredLive lists them (each knows its index) and _deferredFree recycles them: all under _stateLock.
    // _deferredCount mirrors _deferredLive.Count for the lock-free look of an origin read. _deferredError is the first
    // error of a deferred write after it was acknowledged: every later flush reports it.
    private readonly bool _deferWrites;
    private readonly Dictionary<ulong, DeferredWrite> _deferredChunks = new();
    private readonly List<DeferredWrite> _deferredLive = new();
    private readonly Stack<DeferredWrite> _deferredFree = new();
    private int _deferredCount;
    private long _deferredBytes;  // data held by live deferred writes, at most MaxDeferredBytes
    private long _retainedBytes;  // buffers kept in _deferredBuffers for reuse, at most MaxDeferredBytes
    private long _peakDeferredBytes; // most data live at once since the last trim (TrimDeferredPools)
    private int _peakDeferredCount;  // most deferred writes live at once since the last trim
    private long _deferredWrites;
    private Exception? _deferredError;
    private readonly HashSet<ulong> _lostChunks = new(); // chunks of failed deferred writes: origin reads of them fail (under _stateLock)
    private int _lostCount;                              // _lostChunks.Count, for the lock-free look of an origin read
    private readonly Stack<byte[]>[] _deferredBuffers = new Stack<byte[]>[DeferredBufferClasses]; // 4 KiB << class; under _stateLock
    private readonly Action<object?> _continueDeferred; // ContinueDeferred as a commit's continuation (state: the DeferredWrite)

    /// <summary>Most data held by deferred origin writes at once; a write that would go past it is not deferred.</summary>
    public const int MaxDeferredBytes = 32 << 20;

    /// <summary>Largest origin write (run) that is deferred; larger ones are not.</summary>
    public const int MaxDeferredWriteBytes = 4096 << (DeferredBufferClasses - 1);

    private const int DeferredBufferClasses = 9; // 4 KiB .. 1 MiB

    public DataPath(SnapshotStore store, Catalog.SnapshotCatalog catalog, AsyncGate gate, CowLayout layout, BlockDevice origin, StoreOptions options)
    {
        _store = store;
        _catalog = catalog;
        _stateLock = catalog.StateLock;
        _gate = gate;
        _layout = layout;
        _origin = origin;
        _originFlush = new GroupFlush(ct => _origin.FlushAsync(ct));
        _writeThrough = options.WriteThrough;
        _deferWrites = options.DeferCopiedWrites && !options.WriteThrough;
        _cowFullPolicy = options.CowFullPolicy;
        _throttle = new CopyThrottle(options.MaxInFlightCopies, options.MaxPendingCopies);
        // The pools hold what is pending (a plan lives as long as its exceptions): budget the pending bound.
        int budget = _throttle.PendingBound != int.MaxValue ? _throttle.PendingBound
            : StoreOptions.DefaultMaxInFlightCopies * CopyThrottle.DefaultPendingFactor;
        _pendingPool = new BoundedPool<PendingException>("pending exceptions", budget, options.PoolReserve, () => new PendingException());
        _planPool = new BoundedPool<CopyPlan>("copy jobs", budget, options.PoolReserve, () => new CopyPlan());
        _continueDeferred = state => ContinueDeferred((DeferredWrite)state!);
        if (_deferWrites) Gen2Trim.Start(this);
    }

    /// <summary>Largest run an origin write request is cut into: runs of a larger request are copied in parallel.</summary>
    public const int ParallelRunBytes = 256 * 1024;

    /// <summary>Most chunks in one run of an origin write (at least one; at most the copy engine's run).</summary>
    public int RunChunks => (int)Math.Clamp(ParallelRunBytes / _layout.ChunkBytes, 1, _engine.MaxRunChunks);

    /// <summary>Connects the copy engine (made once the commit pipeline exists).</summary>
    public void Attach(CopyEngine engine) => _engine = engine;

    public CopyThrottle Throttle => _throttle;
    public BoundedPool<PendingException> PendingPool => _pendingPool;
    public BoundedPool<CopyPlan> PlanPool => _planPool;
    public CopyEngine Engine => _engine;

    /// <summary>
    /// Makes every origin write that returned before the call durable (shared among concurrent callers): waits for the
    /// deferred writes acknowledged so far to reach the origin, then flushes it. Throws if a deferred write failed after
    /// it was acknowledged (then, and at every later flush: its data is not on the origin).
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask FlushOriginAsync(CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _deferredCount) > 0)
        {
            Task[] waits;
            lock (_stateLock)
            {
                waits = new Task[_deferredLive.Count];
                for (int i = 0; i < waits.Length; i++) waits[i] = _deferredLive[i].WaitTask;
            }
            // Why we wait: the deferred writes acknowledged before this flush must be on the origin before it is flushed;
            // each finishes on its own (its commit round, then its origin write) and holds nothing this caller holds.
            await Task.WhenAll(waits).WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        // Flushed even after a deferred write failed (the other writes are durable as promised), then that is reported.
        await _originFlush.FlushAsync(cancellationToken).ConfigureAwait(false);
        ThrowIfDeferredFailed();
    }

    /// <summary>Throws the error of a deferred write that failed after it was acknowledged, if one did.</summary>
    public void ThrowIfDeferredFailed()
    {
        var e = Volatile.Read(ref _deferredError);
        if (e is not null)
            throw new IOException($"{_origin.Name}: an origin write acknowledged before its copies were committed did not reach the origin: {e.Message}", e);
    }

    /// <summary>
    /// Fails an origin read that touches a chunk whose deferred write failed after it was acknowledged: the origin holds
    /// older data there than a write that returned, so the read must not succeed (until the store is reopened).
    /// </summary>
    private void ThrowIfLost(ulong first, ulong last)
    {
        lock (_stateLock)
        {
            if (last - first >= (ulong)_lostChunks.Count)
            {
                ulong hit = ulong.MaxValue;
                foreach (ulong c in _lostChunks) if (c >= first && c <= last && c < hit) hit = c;
                if (hit != ulong.MaxValue) first = last = hit;
                else return;
            }
            for (ulong c = first; c <= last; c++)
                if (_lostChunks.Contains(c))
                    throw new IOException($"{_origin.Name}: chunk {c} does not hold the data of a write acknowledged before its copies were committed " +
                        $"(it did not reach the origin: {Volatile.Read(ref _deferredError)?.Message}); its reads fail until the store is reopened");
        }
    }

    /// <summary>Origin writes deferred (acknowledged before their copies' commit) since open.</summary>
    public long DeferredWrites => Interlocked.Read(ref _deferredWrites);

    /// <summary>Deferred origin writes not yet on the origin.</summary>
    public int DeferredWritesPending => Volatile.Read(ref _deferredCount);

    // ---- origin -------------------------------------------------------------------------------------------------

    public async ValueTask OriginReadAsync(long sector, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        _store.ThrowIfClosed();
        if (buffer.Length == 0) return;
        ulong firstChunk = (ulong)(sector >> _layout.ChunkShift);
        ulong lastChunk = (ulong)((sector + (buffer.Length >> BlockDevice.SectorShift) - 1) >> _layout.ChunkShift);
        while (Volatile.Read(ref _deferredCount) > 0)
        {
            Task? deferred;
            lock (_stateLock) deferred = DeferredOverlapLocked(firstChunk, lastChunk);
            if (deferred is null) break;
            // Why we wait (holding nothing): an acknowledged write of a chunk read here has not reached the origin yet;
            // it does once its copies are committed, without needing anything a reader holds.
            await deferred.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        if (Volatile.Read(ref _lostCount) > 0) ThrowIfLost(firstChunk, lastChunk);
        // Inside the gate, so that a merge (which holds it exclusively) never runs under a read.
        await EnterOpenAsync().ConfigureAwait(false);
        try
        {
            var m = _catalog.MergingUnsafe;
            if (m is null) await _origin.ReadAsync(sector, buffer, cancellationToken).ConfigureAwait(false);
            else await ForEachChunkAsync(sector, buffer.Length, (c, s, off, len) => MergingOriginReadChunkAsync(m, c, s, buffer.Slice(off, len), cancellationToken)).ConfigureAwait(false);
        }
        finally
        {
            _gate.ExitShared();
        }
    }

    /// <summary>
    /// An origin read while the merge of <paramref name="m"/> is unfinished: the origin reads as that snapshot, so a
    /// chunk it still holds an exception for is read from its COW file. Caller holds the gate shared.
    /// </summary>
    private async ValueTask MergingOriginReadChunkAsync(SnapshotState m, ulong chunk, long sector, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        ulong newChunk;
        bool redirect;
        lock (_stateLock) redirect = m.Complete.TryLookup(chunk, out newChunk);
        if (!redirect)
        {
            await _origin.ReadAsync(sector, buffer, cancellationToken).ConfigureAwait(false);
            return;
        }
        await m.Store!.Cow.ReadAsync(CowSector(newChunk, chunk, sector), buffer, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// An origin write: returns once every snapshot that shared a chunk of it holds the old data durably and the new
    /// data is written; with <paramref name="fua"/> (or <see cref="StoreOptions.WriteThrough"/>) also durable.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask OriginWriteAsync(long sector, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken)
    {
        _store.ThrowIfClosed();
        if (data.Length == 0) return;
        long first = sector >> _layout.ChunkShift;
        long end = sector + (data.Length >> BlockDevice.SectorShift);
        int runChunks = RunChunks;
        long last = (end - 1) >> _layout.ChunkShift;
        if (last - first < runChunks)
        {
            await WriteRunAsync((ulong)first, (ulong)last, sector, data, cancellationToken, admitted: null, fua: fua).ConfigureAwait(false);
        }
        else
        {
            // Runs of at most runChunks chunks, aligned to run boundaries, up to four at once. Each starts on the thread
            // pool: the file device completes a read from the page cache inline, so runs started on this thread would
            // copy one after another (measured in docs/benchmarks.md: 1 MiB sequential requests, +32%).
            var running = new List<Task>(4);
            // The first runs (as many as go at once) are all announced before any starts, so that a round cannot take
            // the first run's copies before the others are announced (the caller may be preempted between starts).
            // Later runs are announced as each starts.
            var plug = _engine.Pipeline.BeginRequest();
            var announced = new RunTicket[(int)Math.Min(running.Capacity, last / runChunks - first / runChunks + 1)];
            for (int i = 0; i < announced.Length; i++) announced[i] = _engine.Pipeline.Expect(plug);
            int started = 0;
            long s = sector;
            try
            {
                while (s < end)
                {
                    long c = s >> _layout.ChunkShift;
                    long runEnd = Math.Min(end, ((c / runChunks + 1) * runChunks) << _layout.ChunkShift);
                    int off = (int)((s - sector) << BlockDevice.SectorShift);
                    int len = (int)((runEnd - s) << BlockDevice.SectorShift);
                    var expected = started < announced.Length ? announced[started] : _engine.Pipeline.Expect(plug);
                    started++;
                    running.Add(StartRun((ulong)c, (ulong)((runEnd - 1) >> _layout.ChunkShift), s, data.Slice(off, len), fua, expected, cancellationToken));
                    if (running.Count == running.Capacity)
                    {
                        var done = await Task.WhenAny(running).ConfigureAwait(false);
                        running.Remove(done);
                        await done.ConfigureAwait(false);
                    }
                    s = runEnd;
                }
            }
            catch
            {
                // Announced runs that never started arrive now (the round waits for them).
                for (int i = started; i < announced.Length; i++) _engine.Pipeline.Arrived(announced[i]);
                // Why we wait: the other runs still read the caller's buffer; the write returns (failed) only once
                // none does. Their own errors are dropped: the first one is reported.
                try { await Task.WhenAll(running).ConfigureAwait(false); }
                catch { }
                throw;
            }
            await Task.WhenAll(running).ConfigureAwait(false);
        }
        if (fua || _writeThrough) await _originFlush.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// One run of a multi-run origin write, started on the thread pool (its own method, so the closure is made only for
    /// such writes and not on every write's path).
    /// </summary>
    /// <remarks>
    /// The run was announced to the commit pipeline by the caller, before it starts (<paramref name="expected"/>, see
    /// <see cref="Snapshot.Commit.CommitPipeline.Expect"/>): a round then waits for the runs of the request under way and
    /// takes all their copies, one round for the request instead of one per run as each arrives.
    /// </remarks>
    private Task StartRun(ulong first, ulong last, long sector, ReadOnlyMemory<byte> data, bool fua, RunTicket expected, CancellationToken cancellationToken)
    {
        try
        {
            return Task.Run(() => WriteRunAsync(first, last, sector, data, cancellationToken, admitted: null, fua: fua, expected: expected).AsTask(), CancellationToken.None);
        }
        catch
        {
            _engine.Pipeline.Arrived(expected);
            throw;
        }
    }

    /// <summary>
    /// Starts an origin write of at most one chunk and returns once it is <i>admitted</i> — past the copy throttle, its
    /// copies (if any) started — together with the task of its completion. Used by the write-storm benchmark.
    /// </summary>
    public Task SubmitOriginWrite(long sector, ReadOnlyMemory<byte> data, out Task completion)
    {
        _store.ThrowIfClosed();
        ulong chunk = (ulong)(sector >> _layout.ChunkShift);
        if (((sector + (data.Length >> BlockDevice.SectorShift) - 1) >> _layout.ChunkShift) != (long)chunk)
            throw new ArgumentException("a submitted write must stay within one chunk", nameof(data));
        var admitted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        completion = SubmittedAsync(chunk, sector, data, admitted);
        return admitted.Task;
    }

    private async Task SubmittedAsync(ulong chunk, long sector, ReadOnlyMemory<byte> data, TaskCompletionSource admitted)
    {
        try
        {
            await WriteRunAsync(chunk, chunk, sector, data, CancellationToken.None, admitted).ConfigureAwait(false);
        }
        finally
        {
            admitted.TrySetResult();
        }
    }

    /// <summary>
    /// The one place a write waits. The caller holds nothing: no lock, not the I/O gate, no copy slot. So neither the
    /// copy completion path nor snapshot creation can be stuck behind a waiting writer (the deadlock of throttling
    /// while holding a lock). Waits for <paramref name="wantSlots"/> slots of room under the in-flight copy bound
    /// (none when 0), then for <paramref name="wait"/> (a pending exception or tracked reads) when there is one.
    /// </summary>
    private async ValueTask WaitHoldingNothingAsync(int wantSlots, Task? wait, CancellationToken cancellationToken)
    {
        if (wantSlots > 0)
        {
            long start = Stopwatch.GetTimestamp();
            await _throttle.WaitForRoomAsync(wantSlots).WaitAsync(cancellationToken).ConfigureAwait(false);
            var waited = Stopwatch.GetElapsedTime(start);
            if (waited >= ThrottleStallWarning) SnapshotLog.ThrottleStall(_store.Logger, _store.Folder, (long)waited.TotalMilliseconds, _throttle.Bound);
        }
        if (wait is not null) await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>What the look at a run found (under the state lock).</summary>
    private enum Look
    {
        /// <summary>Nothing to copy, nobody to wait for: write the origin.</summary>
        Write,
        /// <summary>A copy plan was made: run it, then look again.</summary>
        Copy,
        /// <summary>Wait (holding nothing) for a pending exception, tracked reads or throttle room, then look again.</summary>
        Wait,
        /// <summary>A COW file is full: invalidate (or fail the write), then look again.</summary>
        Full,
        /// <summary>A merge is unfinished and the run spans chunks: write chunk by chunk.</summary>
        Split,
        /// <summary>A single chunk the merging snapshot holds: write it into its COW chunk.</summary>
        Redirect,
    }

    /// <param name="first">First origin chunk of the run.</param>
    /// <param name="last">Last origin chunk of the run (inclusive).</param>
    /// <param name="sector">First sector written (inside <paramref name="first"/>).</param>
    /// <param name="data">Whole sectors, ending inside <paramref name="last"/>.</param>
    /// <param name="cancellationToken">Cancels waits (copies once started run to their end).</param>
    /// <param name="admitted">Completed once the write is past the throttle (see <see cref="SubmitOriginWrite"/>).</param>
    /// <param name="merge">
    /// A merge's write of the merging snapshot's chunk home: the merge holds the gate exclusively (so no I/O is in
    /// flight, nothing is pending or tracked, and the throttle grants any request), and the write goes to the origin
    /// itself, after the copies the other snapshots need, instead of being redirected into the merging snapshot.
    /// </param>
    /// <param name="fua">
    /// The write must be durable when it returns: the caller flushes the origin afterwards, and a chunk redirected into
    /// an unfinished merge's snapshot is flushed here (its COW file is not the origin).
    /// </param>
    /// <param name="expected">
    /// The run's ticket when it was announced to the commit pipeline (<see cref="Snapshot.Commit.CommitPipeline.Expect"/>),
    /// else none. The run then arrives exactly once, since a round that holds copies of its request may wait for it: its
    /// copy plan takes the ticket (the copy engine hands it in with the copies it queues), or the run arrives itself
    /// before any wait (the throttle, another writer's exception, tracked reads, the I/O gate, an invalidation) and on
    /// every other way out.
    /// </param>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    internal async ValueTask WriteRunAsync(ulong first, ulong last, long sector, ReadOnlyMemory<byte> data, CancellationToken cancellationToken,
        TaskCompletionSource? admitted, bool merge = false, bool fua = false, RunTicket expected = default)
    {
        try
        {
            // What a copy of this run may defer (0: nothing; see StoreOptions.DeferCopiedWrites).
            int deferBytes = _deferWrites && !merge && !fua && admitted is null && data.Length <= MaxDeferredWriteBytes ? data.Length : 0;
            int wantSlots = 0;
            Task? wait = null;
            while (true)
            {
                // Every wait happens here, at the top, holding nothing. What is waited for: room under the in-flight
                // copy bound, another writer's pending exception for a chunk of the run, or snapshot reads of the old data.
                if (merge && (wantSlots > 0 || wait is not null))
                    throw new InvalidOperationException($"merge write of chunk {first} would wait while holding the gate");
                if (wantSlots > 0 || wait is not null)
                {
                    Arrive(ref expected);
                    await WaitHoldingNothingAsync(wantSlots, wait, cancellationToken).ConfigureAwait(false);
                }
                wantSlots = 0;
                wait = null;
                _store.ThrowIfClosed();
                if (!merge)
                {
                    ValueTask enter = _gate.EnterSharedAsync();
                    if (!enter.IsCompleted) Arrive(ref expected); // waiting for a snapshot operation, which waits for rounds
                    await enter.ConfigureAwait(false);
                    LeaveIfClosed();
                }
                bool handedOff = false; // the gate's shared hold went to a deferred write's completion
                try
                {
                    while (true) // within one hold of the gate: after our own copies, look again without letting a snapshot in between
                    {
                        CopyPlan? plan = null;
                        DeferredWrite? deferred = null;
                        List<SnapshotState>? full = null;
                        SnapshotState? redirectTo = null;
                        ulong redirectChunk = 0;
                        Look look;
                        lock (_stateLock)
                            look = LookLocked(first, last, merge, deferBytes, ref plan, ref deferred, ref full, ref redirectTo, ref redirectChunk, ref wantSlots, ref wait);
                        switch (look)
                        {
                            case Look.Split:
                                break;
                            case Look.Full:
                                if (_cowFullPolicy == CowFullPolicy.FailWrite) throw new CowFullException(full![0].CowPath, full[0].Name, first);
                                Arrive(ref expected);
                                foreach (var s in full!) await _catalog.InvalidateAsync(s, InvalidReasonCode.CowFull).ConfigureAwait(false);
                                continue; // look again (the full snapshots are skipped now)
                            case Look.Redirect:
                                Arrive(ref expected);
                                admitted?.TrySetResult();
                                await redirectTo!.Store!.Cow.WriteAsync(CowSector(redirectChunk, first, sector), data, cancellationToken).ConfigureAwait(false);
                                if (_writeThrough || fua) await redirectTo.Store.FlushDataAsync(cancellationToken).ConfigureAwait(false);
                                return;
                            case Look.Wait:
                                break;
                            case Look.Copy:
                                admitted?.TrySetResult();
                                // The plan takes the expectation: the copy engine reports the run once its copies are queued.
                                plan!.Expected = expected;
                                expected = default;
                                // A copy once claimed runs to its end whatever the caller's token says; cancellation is
                                // honoured at the waits, where nothing is held.
                                if (deferred is not null)
                                {
                                    await StartDeferredAsync(deferred, plan!, sector, data).ConfigureAwait(false);
                                    handedOff = true;
                                    return;
                                }
                                await _engine.RunOriginCopyAsync(plan!).ConfigureAwait(false);
                                continue; // look again: the copies are complete now
                            default:
                                Arrive(ref expected);
                                admitted?.TrySetResult();
                                await _origin.WriteAsync(sector, data, cancellationToken).ConfigureAwait(false);
                                return;
                        }
                        break; // Wait or Split: leave the gate
                    }
                }
                finally
                {
                    if (!merge && !handedOff) _gate.ExitShared();
                }
                if (wait is null && wantSlots == 0)
                {
                    // Split: an unfinished merge redirects chunk by chunk.
                    Arrive(ref expected);
                    long s = sector;
                    long end = sector + (data.Length >> BlockDevice.SectorShift);
                    for (ulong c = first; c <= last; c++)
                    {
                        long chunkEnd = Math.Min(end, (long)(c + 1) << _layout.ChunkShift);
                        int off = (int)((s - sector) << BlockDevice.SectorShift);
                        await WriteRunAsync(c, c, s, data.Slice(off, (int)((chunkEnd - s) << BlockDevice.SectorShift)), cancellationToken, admitted, merge, fua).ConfigureAwait(false);
                        s = chunkEnd;
                    }
                    return;
                }
            }
        }
        finally
        {
            // Any other way out (an error, a cancelled wait) before the copies were queued.
            Arrive(ref expected);
        }
    }

    /// <summary>
    /// Enters the I/O gate shared for a request. A close holds the gate exclusively while it disposes the store's
    /// devices, so a request that waited behind it finds the store closed once in: it leaves the gate and fails with
    /// the store's "closed" error instead of touching the disposed devices.
    /// </summary>
    private async ValueTask EnterOpenAsync()
    {
        // Why we wait: a snapshot create, delete, merge or close holds the gate; each finishes on its own I/O.
        await _gate.EnterSharedAsync().ConfigureAwait(false);
        LeaveIfClosed();
    }

    /// <summary>Leaves the gate (held shared) and throws when the store was closed while the caller waited for it.</summary>
    private void LeaveIfClosed()
    {
        if (!_store.IsClosed) return;
        _gate.ExitShared();
        _store.ThrowIfClosed();
    }

    /// <summary>Reports an announced run (<paramref name="expected"/> its ticket, none when not announced) as arrived, once.</summary>
    private void Arrive(ref RunTicket expected)
    {
        _engine.Pipeline.Arrived(expected);
        expected = default;
    }

    /// <summary>
    /// The look at a run, under the state lock (never waits, never does I/O): decides what the writer does next and,
    /// for <see cref="Look.Copy"/>, claims the copies (throttle slots, COW chunks, pending exceptions, a plan).
    /// </summary>
    private Look LookLocked(ulong first, ulong last, bool merge, int deferBytes, ref CopyPlan? plan, ref DeferredWrite? deferred,
        ref List<SnapshotState>? full, ref SnapshotState? redirectTo, ref ulong redirectChunk, ref int wantSlots, ref Task? wait)
    {
        // An acknowledged write of a chunk of the run has not reached the origin yet: this write goes after it.
        if (DeferredOverlapLocked(first, last) is { } before) { wait = before; return Look.Wait; }
        var snapshots = _catalog.SnapshotsUnsafe;
        // An unfinished merge: the origin reads as the merging snapshot, so a chunk it still holds is written into its
        // COW chunk (the merge copies it home later); the origin chunk (which the other snapshots still share) is not
        // touched, so they need no copy.
        var m = _catalog.MergingUnsafe;
        if (!merge && m is not null)
        {
            if (first != last) return Look.Split;
            if (m.Complete.TryLookup(first, out redirectChunk)) { redirectTo = m; return Look.Redirect; }
        }
        int need = 0;
        foreach (var s in snapshots)
        {
            if (!s.IsValid || s.Merging) continue;
            for (ulong c = first; c <= last; c++)
            {
                if (s.Complete.Contains(c)) continue;
                if (s.Pending.TryGetValue(c, out var other)) { wait = other.WaitTask; return Look.Wait; }
                need++;
            }
        }
        if (need > 0)
        {
            if (!_throttle.TryAcquire(need)) { wantSlots = need; return Look.Wait; }
            var p = _planPool.Rent();
            p.Slots = need;
            ulong lo = ulong.MaxValue, hi = 0;
            foreach (var s in snapshots)
            {
                if (!s.IsValid || s.Merging) continue;
                bool sFull = false;
                for (ulong c = first; c <= last && !sFull; c++)
                {
                    if (s.Complete.Contains(c)) continue;
                    if (!s.Store!.TryAllocate(out ulong newChunk)) { (full ??= []).Add(s); sFull = true; continue; }
                    var pe = _pendingPool.Rent();
                    pe.Snapshot = s;
                    pe.OldChunk = c;
                    pe.NewChunk = newChunk;
                    s.Pending.Add(c, pe);
                    p.Pending.Add(pe);
                    if (c < lo) lo = c;
                    if (c > hi) hi = c;
                }
                if (sFull && _cowFullPolicy == CowFullPolicy.FailWrite) break;
            }
            if (full is not null && _cowFullPolicy == CowFullPolicy.FailWrite)
            {
                // The write fails and every snapshot keeps what it has: undo the copies claimed so far.
                foreach (var pe in p.Pending)
                {
                    pe.Snapshot!.Pending.Remove(pe.OldChunk);
                    pe.Snapshot.Store!.Free(pe.NewChunk);
                    pe.Reset();
                    _pendingPool.Return(pe);
                }
                p.Pending.Clear();
            }
            if (p.Pending.Count < need)
            {
                _throttle.ReleaseUnused(need - p.Pending.Count);
                p.Slots = p.Pending.Count;
            }
            if (p.Pending.Count == 0)
            {
                p.Reset();
                _planPool.Return(p);
                return full is not null ? Look.Full : Look.Write;
            }
            p.FirstChunk = lo;
            p.LastChunk = hi;
            plan = p;
            if (deferBytes > 0 && full is null) deferred = TryRegisterDeferredLocked(first, last, deferBytes);
            // Copies claimed for the other snapshots run first; a full one is invalidated after them (look again).
            return Look.Copy;
        }
        if (full is not null) return Look.Full;
        if (TrackedReadsLocked(first, last) is { } reads) { wait = reads; return Look.Wait; }
        return Look.Write;
    }

    /// <summary>
    /// The snapshot reads of a chunk of <paramref name="first"/>..<paramref name="last"/> that are still reading the
    /// origin's old data (an origin write of the chunk waits for them), or null. Under the state lock.
    /// </summary>
    private Task? TrackedReadsLocked(ulong first, ulong last)
    {
        if (_tracked.Count == 0) return null;
        for (ulong c = first; c <= last; c++)
        {
            if (_tracked.TryGetValue(c, out var tracked) && tracked.Readers > 0)
            {
                tracked.Waiters ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                return tracked.Waiters.Task;
            }
        }
        return null;
    }

    // ---- deferred origin writes ---------------------------------------------------------------------------------

    /// <summary>
    /// An origin write acknowledged before its copies were committed (<see cref="StoreOptions.DeferCopiedWrites"/>): its
    /// run's chunks, its data (a pooled copy of the caller's), and who waits for it to reach the origin. Recycled.
    /// </summary>
    private sealed class DeferredWrite
    {
        public DeferredWrite(DataPath owner) => Resume = () => owner.ContinueDeferred(this);

        public ulong First, Last;
        public long Sector;
        public byte[]? Buffer;
        public int Length;
        public int Index; // in _deferredLive
        public int Class; // the buffer's size class
        public TaskCompletionSource? Waiters;

        // The background half (ContinueDeferred), a state machine of its own so that an outstanding write holds no
        // async state beyond this pooled object.
        public DeferredStage Stage;
        public CopyPlan? Plan;     // until the copies are completed
        public int Next;           // the plan's first exception whose commit outcome is not recorded yet
        public ValueTask Awaited;  // the step being waited for, consumed when the write resumes
        public Exception? Error;   // a commit error kept while the plan completes
        public readonly Action Resume; // resumes ContinueDeferred (made once per object)

        /// <summary>Completes when the write is on the origin (or failed). Under the state lock.</summary>
        public Task WaitTask => (Waiters ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
    }

    /// <summary>Where a deferred write's background half stands (see <see cref="ContinueDeferred"/>).</summary>
    private enum DeferredStage
    {
        /// <summary>Waiting for the copies' commit rounds.</summary>
        Commits,
        /// <summary>Completing the copy plan (invalidations of failed snapshots, the plan back to its pool).</summary>
        Complete,
        /// <summary>Waiting for snapshot reads of the old data.</summary>
        Reads,
        /// <summary>Writing the origin.</summary>
        Write,
    }

    /// <summary>A deferred write of a chunk of <paramref name="first"/>..<paramref name="last"/> not yet on the origin, or null. Under the state lock.</summary>
    private Task? DeferredOverlapLocked(ulong first, ulong last)
    {
        int live = _deferredLive.Count;
        if (live == 0) return null;
        if (last - first < (ulong)live * 4)
        {
            for (ulong c = first; c <= last; c++)
                if (_deferredChunks.TryGetValue(c, out var d)) return d.WaitTask;
        }
        else
        {
            foreach (var d in _deferredLive)
                if (d.First <= last && d.Last >= first) return d.WaitTask;
        }
        return null;
    }

    /// <summary>
    /// Registers a deferred write of <paramref name="bytes"/> to the run <paramref name="first"/>..<paramref name="last"/>
    /// (none of whose chunks has one), with a data buffer from the pool when it has one; null when the data held by
    /// deferred writes would pass <see cref="MaxDeferredBytes"/>. Under the state lock.
    /// </summary>
    private DeferredWrite? TryRegisterDeferredLocked(ulong first, ulong last, int bytes)
    {
        int cls = BufferClass(bytes);
        int size = 4096 << cls;
        if (_deferredBytes + size > MaxDeferredBytes) return null;
        _deferredBytes += size;
        var d = _deferredFree.Count > 0 ? _deferredFree.Pop() : new DeferredWrite(this);
        d.First = first;
        d.Last = last;
        d.Class = cls;
        if (_deferredBuffers[cls] is { Count: > 0 } stack)
        {
            d.Buffer = stack.Pop();
            _retainedBytes -= size;
        }
        else
        {
            d.Buffer = null; // allocated outside the lock
            // Live and kept buffers together stay within the bound: drop kept buffers of other sizes to make room.
            DropKeptBuffersLocked(MaxDeferredBytes - _deferredBytes);
        }
        d.Index = _deferredLive.Count;
        _deferredLive.Add(d);
        if (_deferredBytes > _peakDeferredBytes) _peakDeferredBytes = _deferredBytes;
        if (_deferredLive.Count > _peakDeferredCount) _peakDeferredCount = _deferredLive.Count;
        for (ulong c = first; c <= last; c++) _deferredChunks[c] = d;
        Volatile.Write(ref _deferredCount, _deferredLive.Count);
        return d;
    }

    /// <summary>Data buffers held by the deferred writes pending now, in bytes (their size classes).</summary>
    internal long DeferredBytesHeld { get { lock (_stateLock) return _deferredBytes; } }

    /// <summary>Data buffers kept for reuse by later deferred writes, in bytes (at most <see cref="MaxDeferredBytes"/> with those in use).</summary>
    internal long DeferredBytesKept { get { lock (_stateLock) return _retainedBytes; } }

    /// <summary>Deferred-write objects kept for reuse.</summary>
    internal int DeferredObjectsKept { get { lock (_stateLock) return _deferredFree.Count; } }

    /// <summary>
    /// Gives back what the deferred-write pools keep beyond what the busiest moment since the last trim needed: data
    /// buffers and objects past the peak in use, less what is in use now (those come back to the pools as their
    /// writes end). A store idle since the last trim keeps nothing. Run at every full (gen 2) garbage collection
    /// (<see cref="Gen2Trim"/>), as the runtime's shared array pool trims itself: a burst of deferred writes leaves up to
    /// <see cref="MaxDeferredBytes"/> of buffers behind, kept while writes keep coming and released once they stop and
    /// the process collects. Under the state lock, for the few instructions it takes.
    /// </summary>
    internal void TrimDeferredPools()
    {
        lock (_stateLock)
        {
            DropKeptBuffersLocked(Math.Max(0, _peakDeferredBytes - _deferredBytes));
            int keepObjects = Math.Max(0, _peakDeferredCount - _deferredLive.Count);
            while (_deferredFree.Count > keepObjects) _deferredFree.Pop();
            _peakDeferredBytes = _deferredBytes;
            _peakDeferredCount = _deferredLive.Count;
        }
    }

    /// <summary>Drops kept data buffers, largest first, until at most <paramref name="keepBytes"/> are kept. Under the state lock.</summary>
    private void DropKeptBuffersLocked(long keepBytes)
    {
        for (int cls = DeferredBufferClasses - 1; cls >= 0 && _retainedBytes > keepBytes; cls--)
            while (_deferredBuffers[cls] is { Count: > 0 } kept && _retainedBytes > keepBytes)
                _retainedBytes -= kept.Pop().Length;
    }

    /// <summary>
    /// Calls <see cref="TrimDeferredPools"/> after every full collection, for as long as the data path is alive: an
    /// object nothing refers to, whose finalizer (run on the finalizer thread after each collection that finds it,
    /// which is every gen 2 collection once it has been promoted there) trims and registers it for finalization again.
    /// </summary>
    private sealed class Gen2Trim
    {
        // A weak GC handle, not a WeakReference: a WeakReference is finalizable itself, and when this object becomes
        // unreachable so does its WeakReference, whose finalizer may run first and clear it.
        private System.Runtime.InteropServices.GCHandle _target;

        private Gen2Trim(DataPath target) => _target = System.Runtime.InteropServices.GCHandle.Alloc(target, System.Runtime.InteropServices.GCHandleType.Weak);

        public static void Start(DataPath target) => _ = new Gen2Trim(target);

        ~Gen2Trim()
        {
            if (_target.Target is not DataPath target)
            {
                _target.Free(); // the data path is gone: stop
                return;
            }
            try { target.TrimDeferredPools(); }
            catch (Exception) { } // a finalizer must not throw; the next collection tries again
            GC.ReRegisterForFinalize(this);
        }
    }

    /// <summary>The size class (4 KiB &lt;&lt; class) of a buffer for <paramref name="bytes"/> bytes.</summary>
    private static int BufferClass(int bytes) => Math.Max(0, 32 - System.Numerics.BitOperations.LeadingZeroCount((uint)(bytes - 1)) - 12);

    /// <summary>
    /// Removes <paramref name="d"/> (its write is on the origin, failed, or was not deferred), wakes its waiters and
    /// recycles it: the caller must not touch it afterwards.
    /// </summary>
    private void UnregisterDeferred(DeferredWrite d)
    {
        TaskCompletionSource? waiters;
        lock (_stateLock)
        {
            for (ulong c = d.First; c <= d.Last; c++)
                if (_deferredChunks.TryGetValue(c, out var x) && ReferenceEquals(x, d)) _deferredChunks.Remove(c);
            int lastIndex = _deferredLive.Count - 1;
            var moved = _deferredLive[lastIndex];
            _deferredLive[d.Index] = moved;
            moved.Index = d.Index;
            _deferredLive.RemoveAt(lastIndex);
            Volatile.Write(ref _deferredCount, _deferredLive.Count);
            _deferredBytes -= 4096 << d.Class;
            if (d.Buffer is not null)
            {
                var stack = _deferredBuffers[d.Class] ??= new Stack<byte[]>();
                if (_deferredBytes + _retainedBytes + d.Buffer.Length <= MaxDeferredBytes)
                {
                    stack.Push(d.Buffer);
                    _retainedBytes += d.Buffer.Length;
                }
            }
            waiters = d.Waiters;
            d.Waiters = null;
            d.Buffer = null;
            // Kept up to the most that can be live at once (one per 4 KiB of the bound): a few hundred bytes each.
            if (_deferredFree.Count < MaxDeferredBytes / 4096) _deferredFree.Push(d);
        }
        waiters?.TrySetResult();
    }

    /// <summary>
    /// Starts <paramref name="plan"/>'s copies and, once they are written and queued for commit, keeps a copy of the
    /// caller's data and hands the origin write to <see cref="ContinueDeferred"/> (which owns the caller's shared hold
    /// of the gate from then on): the write is acknowledged when this returns. Throws, with nothing deferred and the
    /// plan completed, for an origin read error, for a COW file without space (the origin is not written), or when the
    /// data cannot be kept (its copies still complete; the origin is not written).
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask StartDeferredAsync(DeferredWrite d, CopyPlan plan, long sector, ReadOnlyMemory<byte> data)
    {
        try
        {
            await _engine.StartOriginCopyAsync(plan).ConfigureAwait(false); // on an error, the plan is completed
        }
        catch
        {
            UnregisterDeferred(d);
            throw;
        }
        Exception? notKept = null;
        bool noSpace = CopyEngine.HasNoSpace(plan);
        if (!noSpace)
        {
            try
            {
                // The caller's buffer is still valid: nothing was acknowledged yet.
                d.Sector = sector;
                d.Length = data.Length;
                d.Buffer ??= GC.AllocateUninitializedArray<byte>(4096 << d.Class);
                data.Span.CopyTo(d.Buffer);
            }
            catch (Exception e)
            {
                notKept = e;
            }
        }
        if (noSpace || notKept is not null)
        {
            UnregisterDeferred(d);
            await _engine.FinishOriginCopyAsync(plan).ConfigureAwait(false); // throws the no-space error, if that was it
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(notKept!);
        }
        Interlocked.Increment(ref _deferredWrites);
        d.Stage = DeferredStage.Commits;
        d.Plan = plan;
        d.Next = 0;
        ContinueDeferred(d);
    }

    /// <summary>
    /// A deferred write's second half, in the background: waits for its copies' commit, completes the plan, waits for
    /// snapshot reads still reading the old data, then writes the origin; an error is kept for the next flush (the write
    /// was acknowledged). Holds the gate shared (handed over by the writer) until done, so snapshot create, delete and
    /// close wait for it. Written as a state machine over <paramref name="d"/> (<see cref="DeferredWrite.Stage"/>), not
    /// an async method: each of thousands of outstanding writes would otherwise hold a state box of its own. Runs until
    /// a step is not complete, registers itself as that step's continuation and returns; never throws.
    /// </summary>
    private void ContinueDeferred(DeferredWrite d)
    {
        try
        {
            while (true)
            {
                switch (d.Stage)
                {
                    case DeferredStage.Commits:
                        bool recorded;
                        PendingException? waitFor;
                        try
                        {
                            recorded = _engine.PollOriginCommits(d.Plan!, ref d.Next, out waitFor);
                        }
                        catch (Exception e)
                        {
                            d.Error = e; // the plan is completed all the same
                            recorded = true;
                            waitFor = null;
                        }
                        if (!recorded)
                        {
                            // Why we wait: the exceptions must be durable before the origin chunks they protect are
                            // overwritten. The round holds nothing this write holds (it never enters the gate).
                            waitFor!.OnCommitCompleted(_continueDeferred, d);
                            return;
                        }
                        d.Stage = DeferredStage.Complete;
                        if (Suspend(d, _engine.CompleteOriginCopyAsync(d.Plan!))) return;
                        break;
                    case DeferredStage.Complete:
                        d.Plan = null;
                        Consume(d); // the no-space error, if that was it
                        if (d.Error is { } error) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
                        d.Stage = DeferredStage.Reads;
                        break;
                    case DeferredStage.Reads:
                        Consume(d); // nothing yet, or the reads waited for
                        Task? reads;
                        lock (_stateLock) reads = TrackedReadsLocked(d.First, d.Last);
                        if (reads is not null)
                        {
                            // Why we wait (holding the gate shared): snapshot reads of the old data finish on their own.
                            if (Suspend(d, new ValueTask(reads))) return;
                            break;
                        }
                        d.Stage = DeferredStage.Write;
                        if (Suspend(d, _origin.WriteAsync(d.Sector, d.Buffer.AsMemory(0, d.Length), CancellationToken.None))) return;
                        break;
                    case DeferredStage.Write:
                        Consume(d);
                        EndDeferred(d, null);
                        return;
                }
            }
        }
        catch (Exception e)
        {
            EndDeferred(d, e);
        }
    }

    /// <summary>
    /// Makes <paramref name="step"/> the step <paramref name="d"/> waits for: true when it is still running (the write
    /// resumes once it completes), false when it is done (go on at once). Either way <see cref="Consume"/> takes its result.
    /// </summary>
    private bool Suspend(DeferredWrite d, ValueTask step)
    {
        d.Awaited = step;
        if (step.IsCompleted) return false;
        step.ConfigureAwait(false).GetAwaiter().UnsafeOnCompleted(d.Resume);
        return true;
    }

    /// <summary>Takes the result of the step <paramref name="d"/> waited for (throws its error).</summary>
    private static void Consume(DeferredWrite d)
    {
        var step = d.Awaited;
        d.Awaited = default;
        step.GetAwaiter().GetResult();
    }

    /// <summary>
    /// Ends a deferred write: keeps <paramref name="error"/> (the write's data did not reach the origin; its chunks read
    /// as lost and the next flush fails), unregisters and recycles <paramref name="d"/>, and gives back the gate.
    /// </summary>
    private void EndDeferred(DeferredWrite d, Exception? error)
    {
        try
        {
            if (error is not null)
            {
                Interlocked.CompareExchange(ref _deferredError, error, null);
                lock (_stateLock)
                {
                    for (ulong c = d.First; c <= d.Last; c++) _lostChunks.Add(c);
                    Volatile.Write(ref _lostCount, _lostChunks.Count);
                }
                SnapshotLog.DeferredWriteFailed(_store.Logger, _store.Folder, d.Sector, d.Length, error.Message);
            }
        }
        finally
        {
            // Whatever the logger does, the write ends: its waiters are woken and the gate is given back.
            d.Plan = null;
            d.Awaited = default;
            d.Error = null;
            UnregisterDeferred(d);
            _gate.ExitShared();
        }
    }

    // ---- snapshots ----------------------------------------------------------------------------------------------

    public async ValueTask SnapshotReadAsync(SnapshotState st, long sector, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        _store.ThrowIfClosed();
        await ForEachChunkAsync(sector, buffer.Length, (c, s, off, len) => SnapshotReadChunkAsync(st, c, s, buffer.Slice(off, len), cancellationToken)).ConfigureAwait(false);
    }

    public async ValueTask SnapshotWriteAsync(SnapshotState st, long sector, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken)
    {
        _store.ThrowIfClosed();
        await ForEachChunkAsync(sector, data.Length, (c, s, off, len) => SnapshotWriteChunkAsync(st, c, s, data.Slice(off, len), cancellationToken)).ConfigureAwait(false);
        if (fua && !_writeThrough && st.Store is { } cow) await cow.FlushDataAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Splits [sector, sector + bytes) at chunk boundaries and runs <paramref name="op"/> for each piece (several at once).</summary>
    private async ValueTask ForEachChunkAsync(long sector, int bytes, Func<ulong, long, int, int, ValueTask> op)
    {
        if (bytes == 0) return;
        long first = sector >> _layout.ChunkShift;
        long last = (sector + (bytes >> BlockDevice.SectorShift) - 1) >> _layout.ChunkShift;
        if (first == last)
        {
            await op((ulong)first, sector, 0, bytes).ConfigureAwait(false);
            return;
        }
        var running = new List<Task>();
        long s = sector;
        int off = 0;
        for (long c = first; c <= last; c++)
        {
            long end = Math.Min((c + 1) << _layout.ChunkShift, sector + (bytes >> BlockDevice.SectorShift));
            int len = (int)((end - s) << BlockDevice.SectorShift);
            running.Add(op((ulong)c, s, off, len).AsTask());
            if (running.Count >= SegmentConcurrency)
            {
                var done = await Task.WhenAny(running).ConfigureAwait(false);
                running.Remove(done);
                await done.ConfigureAwait(false);
            }
            s = end;
            off += len;
        }
        await Task.WhenAll(running).ConfigureAwait(false);
    }

    private async ValueTask SnapshotReadChunkAsync(SnapshotState st, ulong chunk, long sector, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        Task? wait = null;
        while (true)
        {
            if (wait is not null)
            {
                // The chunk is being copied into this snapshot; read it once it is complete. Nothing is held.
                await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
                wait = null;
            }
            _store.ThrowIfClosed();
            await EnterOpenAsync().ConfigureAwait(false);
            try
            {
                ulong newChunk = 0;
                bool fromCow = false;
                lock (_stateLock)
                {
                    ThrowIfUnusable(st);
                    if (st.Complete.TryLookup(chunk, out newChunk)) fromCow = true;
                    else if (st.Pending.TryGetValue(chunk, out var pe)) wait = pe.WaitTask;
                    else
                    {
                        if (!_tracked.TryGetValue(chunk, out var t)) _tracked[chunk] = t = new TrackedChunk();
                        t.Readers++;
                    }
                }
                if (wait is not null) continue;
                if (fromCow)
                {
                    await st.Store!.Cow.ReadAsync(CowSector(newChunk, chunk, sector), buffer, cancellationToken).ConfigureAwait(false);
                    return;
                }
                try
                {
                    await _origin.ReadAsync(sector, buffer, cancellationToken).ConfigureAwait(false);
                }
                finally
                {
                    TaskCompletionSource? wake = null;
                    lock (_stateLock)
                    {
                        var t = _tracked[chunk];
                        if (--t.Readers == 0)
                        {
                            _tracked.Remove(chunk);
                            wake = t.Waiters;
                        }
                    }
                    wake?.TrySetResult();
                }
                return;
            }
            finally
            {
                _gate.ExitShared();
            }
        }
    }

    private async ValueTask SnapshotWriteChunkAsync(SnapshotState st, ulong chunk, long sector, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        int wantSlots = 0;
        Task? wait = null;
        bool fullChunk = data.Length == _layout.ChunkBytes;
        while (true)
        {
            // Every wait happens here, holding nothing: room under the in-flight copy bound (a partial write copies
            // the rest of the chunk), or the copy of this chunk into this snapshot.
            if (wantSlots > 0 || wait is not null) await WaitHoldingNothingAsync(wantSlots, wait, cancellationToken).ConfigureAwait(false);
            wantSlots = 0;
            wait = null;
            _store.ThrowIfClosed();
            await EnterOpenAsync().ConfigureAwait(false);
            try
            {
                PendingException? pe = null;
                ulong newChunk = 0;
                bool existing = false, isFull = false;
                int slots = fullChunk ? 0 : 1;
                lock (_stateLock)
                {
                    ThrowIfUnusable(st);
                    if (st.Complete.TryLookup(chunk, out newChunk)) existing = true;
                    else if (st.Pending.TryGetValue(chunk, out var other)) wait = other.WaitTask;
                    else if (!_throttle.TryAcquire(slots)) wantSlots = slots;
                    else if (!st.Store!.TryAllocate(out newChunk))
                    {
                        _throttle.ReleaseUnused(slots);
                        isFull = true;
                    }
                    else
                    {
                        pe = _pendingPool.Rent();
                        pe.Snapshot = st;
                        pe.OldChunk = chunk;
                        pe.NewChunk = newChunk;
                        st.Pending.Add(chunk, pe);
                    }
                }
                if (isFull)
                {
                    if (_cowFullPolicy == CowFullPolicy.FailWrite) throw new CowFullException(st.CowPath, st.Name, chunk);
                    await _catalog.InvalidateAsync(st, InvalidReasonCode.CowFull).ConfigureAwait(false);
                    ThrowIfUnusable(st);
                }
                if (wait is not null || wantSlots > 0) continue;
                int offsetInChunk = (int)((sector - ((long)chunk << _layout.ChunkShift)) << BlockDevice.SectorShift);
                if (existing)
                {
                    try
                    {
                        await st.Store!.Cow.WriteAsync(_layout.ChunkToSector(newChunk) + (offsetInChunk >> BlockDevice.SectorShift), data, cancellationToken).ConfigureAwait(false);
                        if (_writeThrough) await st.Store.FlushDataAsync(cancellationToken).ConfigureAwait(false);
                    }
                    catch (IOException e) when (e is not DeviceFullException)
                    {
                        // No space (a file system without reservations) fails this write alone; any other error the snapshot.
                        await _catalog.InvalidateAsync(st, InvalidReasonCode.IoError).ConfigureAwait(false);
                        throw new SnapshotInvalidException(st.CowPath, st.Name, $"{SnapshotStore.ReasonText(InvalidReasonCode.IoError)}: {e.Message}");
                    }
                    return;
                }
                // As for an origin copy: once claimed, the exception is written and committed to the end.
                var plan = _planPool.Rent();
                plan.Pending.Add(pe!);
                try
                {
                    await _engine.RunSnapshotWriteAsync(plan.Pending, slots, offsetInChunk, data).ConfigureAwait(false);
                }
                finally
                {
                    plan.Reset();
                    _planPool.Return(plan);
                }
                return;
            }
            finally
            {
                _gate.ExitShared();
            }
        }
    }

    /// <summary>The COW sector holding <paramref name="sector"/> of origin chunk <paramref name="chunk"/>, whose exception is COW chunk <paramref name="newChunk"/>.</summary>
    private long CowSector(ulong newChunk, ulong chunk, long sector) =>
        _layout.ChunkToSector(newChunk) + (sector - ((long)chunk << _layout.ChunkShift));

    /// <summary>Throws for a deleted or invalid snapshot. Call under the state lock or after an invalidation.</summary>
    private static void ThrowIfUnusable(SnapshotState st)
    {
        if (st.Deleted) throw new SnapshotArgumentException($"{st.CowPath}: snapshot '{st.Name}' has been deleted");
        if (st.Merging) throw new SnapshotArgumentException($"{st.CowPath}: snapshot '{st.Name}' is being merged into the origin; read the origin instead");
        if (!st.IsValid) throw st.NotValidError();
    }

    // ---- completion ---------------------------------------------------------------------------------------------

    /// <inheritdoc/>
    public void CopiesWritten(int slots) => _throttle.CopiesWritten(slots);

    /// <inheritdoc/>
    public void Complete(List<PendingException> pending, int slots)
    {
        List<TaskCompletionSource>? wake = null;
        lock (_stateLock)
        {
            foreach (var pe in pending)
            {
                var s = pe.Snapshot!;
                s.Pending.Remove(pe.OldChunk);
                if (pe.Committed && !pe.Failed && s.IsValid && !s.Deleted) s.Complete.Insert(pe.OldChunk, pe.NewChunk);
                else if (!pe.Committed && !s.Deleted) s.Store?.Free(pe.NewChunk);
                if (pe.Waiters is not null) (wake ??= []).Add(pe.Waiters);
                pe.Reset();
                _pendingPool.Return(pe);
            }
        }
        _throttle.Release(slots);
        if (wake is not null) foreach (var w in wake) w.TrySetResult();
    }

    /// <inheritdoc/>
    public Task InvalidateAsync(SnapshotState snapshot, InvalidReasonCode code) => _catalog.InvalidateAsync(snapshot, code);
}
