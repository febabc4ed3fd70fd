using Journal;
using Journal.Storage;
using Snapshot.Copy;
using Snapshot.Exceptions;
using Snapshot.Format;

namespace Snapshot;

/// <summary>
/// The data path: origin reads and writes, snapshot reads and writes.
/// </summary>
/// <remarks>
/// <para><b>Origin write</b> of chunk c (a request spanning chunks is split at chunk boundaries):</para>
/// <list type="number">
/// <item>Holding nothing: wait for throttle room if the previous pass asked for it, or for the pending exception or
/// tracked reads the previous pass found.</item>
/// <item>Enter the I/O gate shared; under the state lock look at every valid snapshot: a complete exception for c
/// needs nothing; a pending one means someone is copying c: wait for it (back to 1, releasing the gate); otherwise the
/// snapshot needs a copy. If copies are needed, take that many throttle slots without waiting (else back to 1 to wait
/// for room), allocate a COW chunk in each snapshot (a full COW file invalidates that snapshot) and insert the pending
/// exceptions.</item>
/// <item>Run the copy job (<see cref="CopyEngine"/>): read the origin chunk once, write it to every COW chunk, flush
/// the COW files, commit the exceptions (durably), then move them to the complete tables, wake anyone waiting on them
/// and give back the throttle slots. Look again, still inside the gate (so no snapshot is created between the copy
/// and the write it protects).</item>
/// <item>With no copy needed: if snapshot reads of c that started before its exceptions existed are still reading the
/// origin, wait for them (back to 1); else write the origin and return.</item>
/// </list>
/// <para><b>Snapshot read</b> of chunk c: a complete exception reads the COW file; a pending one waits for it; with
/// neither, the read is tracked (so an origin write of c waits for it) and goes to the origin.</para>
/// <para><b>Snapshot write</b> of chunk c: into its COW chunk if c has a complete exception; else a new exception: a
/// full-chunk write needs no copy, a partial one copies the origin chunk around the new data; the data is flushed
/// and the exception committed before the write returns.</para>
/// <para>The lock rule (the deadlock of an early in-flight copy bound): every wait — for throttle room, for another
/// writer's pending exception, for tracked reads — happens with nothing held: no monitor, not the gate, no pool object,
/// no throttle slot. Snapshot create/delete need the gate exclusively, and the completion path needs only the state
/// lock and the throttle's leaf lock, so no waiter holds what they need.</para>
/// </remarks>
public sealed partial class SnapshotStore
{
    /// <summary>Snapshot reads of one origin chunk in flight; origin writes of the chunk wait for them.</summary>
    private sealed class TrackedChunk
    {
        public int Readers;
        public TaskCompletionSource? Waiters;
    }

    internal async ValueTask OriginReadAsync(long sector, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        ThrowIfClosed();
        // Inside the gate, so that a merge (which holds it exclusively) never runs under a read.
        await _gate.EnterSharedAsync().ConfigureAwait(false);
        try
        {
            var m = Volatile.Read(ref _merging);
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
        long cowSector = CowSector(newChunk, chunk, sector);
        await m.Store!.Cow.ReadAsync(cowSector, buffer, cancellationToken).ConfigureAwait(false);
    }

    internal async ValueTask OriginWriteAsync(long sector, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        ThrowIfClosed();
        await ForEachChunkAsync(sector, data.Length, (c, s, off, len) => OriginWriteChunkAsync(c, s, data.Slice(off, len), cancellationToken)).ConfigureAwait(false);
        if (_options.WriteThrough) await _originFlush.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    internal async ValueTask SnapshotReadAsync(SnapshotState st, long sector, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        ThrowIfClosed();
        await ForEachChunkAsync(sector, buffer.Length, (c, s, off, len) => SnapshotReadChunkAsync(st, c, s, buffer.Slice(off, len), cancellationToken)).ConfigureAwait(false);
    }

    internal async ValueTask SnapshotWriteAsync(SnapshotState st, long sector, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        ThrowIfClosed();
        await ForEachChunkAsync(sector, data.Length, (c, s, off, len) => SnapshotWriteChunkAsync(st, c, s, data.Slice(off, len), cancellationToken)).ConfigureAwait(false);
    }

    /// <summary>Most chunk segments of one request processed at once.</summary>
    private const int SegmentConcurrency = 16;

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

    /// <summary>
    /// Starts an origin write of at most one chunk and returns once it is <i>admitted</i> — past the copy throttle, its
    /// copies (if any) started — together with the task of its completion. A producer that awaits admission but not
    /// completion behaves like a page-cache flush issuing writes: with the bound on it is held at the bound; with the
    /// bound off nothing holds it. Used by the write-storm benchmark.
    /// </summary>
    internal Task SubmitOriginWrite(long sector, ReadOnlyMemory<byte> data, out Task completion)
    {
        ThrowIfClosed();
        if (((sector + (data.Length >> BlockDevice.SectorShift) - 1) >> _layout.ChunkShift) != sector >> _layout.ChunkShift)
            throw new ArgumentException("a submitted write must stay within one chunk", nameof(data));
        var admitted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        completion = OriginWriteChunkAsync((ulong)(sector >> _layout.ChunkShift), sector, data, CancellationToken.None, admitted).AsTask();
        return admitted.Task;
    }

    private async ValueTask OriginWriteChunkAsync(ulong chunk, long sector, ReadOnlyMemory<byte> data, CancellationToken cancellationToken,
        TaskCompletionSource? admitted = null)
    {
        try
        {
            await OriginWriteChunkCoreAsync(chunk, sector, data, cancellationToken, admitted).ConfigureAwait(false);
        }
        finally
        {
            admitted?.TrySetResult();
        }
    }

    /// <summary>
    /// The one place a write waits. The caller holds nothing: no lock, not the I/O gate, no copy slot. So neither the
    /// copy completion path nor snapshot creation can be stuck behind a waiting writer (the deadlock of throttling
    /// while holding a lock). Waits for <paramref name="wantSlots"/> slots of room under the in-flight copy bound
    /// (none when 0), then for <paramref name="wait"/> (a pending exception or a copy) when there is one.
    /// </summary>
    private async ValueTask WaitHoldingNothingAsync(int wantSlots, Task? wait, CancellationToken cancellationToken)
    {
        if (wantSlots > 0) await _throttle.WaitForRoomAsync(wantSlots).WaitAsync(cancellationToken).ConfigureAwait(false);
        if (wait is not null) await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <param name="chunk">The origin chunk written.</param>
    /// <param name="sector">First sector written (inside <paramref name="chunk"/>).</param>
    /// <param name="data">Whole sectors.</param>
    /// <param name="cancellationToken">Cancels waits and I/O.</param>
    /// <param name="admitted">Completed once the write is past the throttle (see <see cref="SubmitOriginWrite"/>).</param>
    /// <param name="merge">
    /// A merge's write of the merging snapshot's chunk home: the merge holds the gate exclusively (so no I/O is in
    /// flight, nothing is pending or tracked, and the throttle grants any request), and the write goes to the origin
    /// itself, after the copies the other snapshots need, instead of being redirected into the merging snapshot.
    /// </param>
    private async ValueTask OriginWriteChunkCoreAsync(ulong chunk, long sector, ReadOnlyMemory<byte> data, CancellationToken cancellationToken,
        TaskCompletionSource? admitted, bool merge = false)
    {
        int wantSlots = 0;
        Task? wait = null;
        while (true)
        {
            // Every wait happens here, at the top, holding nothing. What is waited for: room under the in-flight
            // copy bound, another writer's pending exception for this chunk, or snapshot reads of the old data.
            if (merge && (wantSlots > 0 || wait is not null))
                throw new InvalidOperationException($"merge write of chunk {chunk} would wait while holding the gate");
            await WaitHoldingNothingAsync(wantSlots, wait, cancellationToken).ConfigureAwait(false);
            wantSlots = 0;
            wait = null;
            ThrowIfClosed();
            if (!merge) await _gate.EnterSharedAsync().ConfigureAwait(false);
            try
            {
                while (true) // within one hold of the gate: after our own copies, look again without letting a snapshot in between
                {
                    CopyJob? job = null;
                    List<SnapshotState>? full = null;
                    SnapshotState? redirectTo = null;
                    ulong redirectChunk = 0;
                    lock (_stateLock)
                    {
                        int need = 0;
                        // An unfinished merge: the origin reads as the merging snapshot, so a chunk it still holds is
                        // written into its COW chunk (the merge copies it home later); the origin chunk (which the other
                        // snapshots still share) is not touched, so they need no copy.
                        var m = _merging;
                        if (!merge && m is not null && m.Complete.TryLookup(chunk, out redirectChunk)) redirectTo = m;
                        else foreach (var s in _snapshots)
                        {
                            if (!s.IsValid || s.Merging || s.Complete.Contains(chunk)) continue;
                            if (s.Pending.TryGetValue(chunk, out var pe)) { wait = pe.WaitTask; break; }
                            need++;
                        }
                        if (wait is null && need > 0)
                        {
                            if (!_throttle.TryAcquire(need))
                            {
                                wantSlots = need;
                            }
                            else
                            {
                                job = _jobPool.Rent();
                                job.OldChunk = chunk;
                                job.Slots = need;
                                foreach (var s in _snapshots)
                                {
                                    if (!s.IsValid || s.Merging || s.Complete.Contains(chunk)) continue;
                                    if (!s.Store!.TryAllocate(out ulong newChunk))
                                    {
                                        (full ??= []).Add(s);
                                        if (_options.CowFullPolicy == CowFullPolicy.FailWrite) break;
                                        continue;
                                    }
                                    var pe = _pendingPool.Rent();
                                    pe.Snapshot = s;
                                    pe.OldChunk = chunk;
                                    pe.NewChunk = newChunk;
                                    s.Pending.Add(chunk, pe);
                                    job.Pending.Add(pe);
                                }
                                if (full is not null && _options.CowFullPolicy == CowFullPolicy.FailWrite)
                                {
                                    // The write fails and every snapshot keeps what it has: undo the copies claimed so far.
                                    foreach (var pe in job.Pending)
                                    {
                                        pe.Snapshot!.Pending.Remove(chunk);
                                        pe.Snapshot.Store!.Free(pe.NewChunk);
                                        pe.Reset();
                                        _pendingPool.Return(pe);
                                    }
                                    job.Pending.Clear();
                                }
                                if (job.Pending.Count < need)
                                {
                                    _throttle.Release(need - job.Pending.Count);
                                    job.Slots = job.Pending.Count;
                                }
                                if (job.Pending.Count == 0)
                                {
                                    job.Reset();
                                    _jobPool.Return(job);
                                    job = null;
                                }
                            }
                        }
                        if (wait is null && job is null && wantSlots == 0 && full is null && redirectTo is null
                            && _tracked.TryGetValue(chunk, out var tracked) && tracked.Readers > 0)
                        {
                            tracked.Waiters ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                            wait = tracked.Waiters.Task;
                        }
                    }
                    if (full is not null && _options.CowFullPolicy == CowFullPolicy.FailWrite)
                        throw new CowFullException(full[0].CowPath, full[0].Name, chunk);
                    if (full is not null)
                    {
                        foreach (var s in full) await InvalidateAsync(s, InvalidReasonCode.CowFull).ConfigureAwait(false);
                        if (job is null) continue; // look again (the full snapshots are skipped now)
                    }
                    if (redirectTo is not null)
                    {
                        admitted?.TrySetResult();
                        long cowSector = CowSector(redirectChunk, chunk, sector);
                        await redirectTo.Store!.Cow.WriteAsync(cowSector, data, cancellationToken).ConfigureAwait(false);
                        if (_options.WriteThrough) await redirectTo.Store.FlushDataAsync(cancellationToken).ConfigureAwait(false);
                        return;
                    }
                    if (wait is not null || wantSlots > 0) break; // leave the gate, wait at the top
                    admitted?.TrySetResult();
                    if (job is not null)
                    {
                        // A copy once claimed runs to its end whatever the caller's token says: a commit given up half way
                        // could leave its exception committed while the chunk it points at went back to the free list.
                        // Cancellation is honoured at the waits, where nothing is held.
                        await _engine.RunOriginCopyAsync(job, CancellationToken.None).ConfigureAwait(false);
                        continue; // look again: the copies are complete now
                    }
                    await _origin.WriteAsync(sector, data, cancellationToken).ConfigureAwait(false);
                    return;
                }
            }
            finally
            {
                if (!merge) _gate.ExitShared();
            }
        }
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
            ThrowIfClosed();
            await _gate.EnterSharedAsync().ConfigureAwait(false);
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
                    long cowSector = CowSector(newChunk, chunk, sector);
                    await st.Store!.Cow.ReadAsync(cowSector, buffer, cancellationToken).ConfigureAwait(false);
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
            await WaitHoldingNothingAsync(wantSlots, wait, cancellationToken).ConfigureAwait(false);
            wantSlots = 0;
            wait = null;
            ThrowIfClosed();
            await _gate.EnterSharedAsync().ConfigureAwait(false);
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
                        _throttle.Release(slots);
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
                    if (_options.CowFullPolicy == CowFullPolicy.FailWrite) throw new CowFullException(st.CowPath, st.Name, chunk);
                    await InvalidateAsync(st, InvalidReasonCode.CowFull).ConfigureAwait(false);
                    ThrowIfUnusable(st);
                }
                if (wait is not null || wantSlots > 0) continue;
                int offsetInChunk = (int)((sector - ((long)chunk << _layout.ChunkShift)) << BlockDevice.SectorShift);
                if (existing)
                {
                    try
                    {
                        await st.Store!.Cow.WriteAsync(_layout.ChunkToSector(newChunk) + (offsetInChunk >> BlockDevice.SectorShift), data, cancellationToken).ConfigureAwait(false);
                        if (_options.WriteThrough) await st.Store.FlushDataAsync(cancellationToken).ConfigureAwait(false);
                    }
                    catch (IOException e) when (e is not DeviceFullException)
                    {
                        // No space (a file system without reservations) fails this write alone; any other error the snapshot.
                        await InvalidateAsync(st, InvalidReasonCode.IoError).ConfigureAwait(false);
                        throw new SnapshotInvalidException(st.CowPath, st.Name, $"{ReasonText(InvalidReasonCode.IoError)}: {e.Message}");
                    }
                    return;
                }
                // As for an origin copy: once claimed, the exception is written and committed to the end (see above).
                await _engine.RunSnapshotWriteAsync(pe!, slots, offsetInChunk, data, CancellationToken.None).ConfigureAwait(false);
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
    private void ThrowIfUnusable(SnapshotState st)
    {
        if (st.Deleted) throw new Journal.JournalArgumentException($"{st.CowPath}: snapshot '{st.Name}' has been deleted");
        if (st.Merging) throw new Journal.JournalArgumentException($"{st.CowPath}: snapshot '{st.Name}' is being merged into the origin; read the origin instead");
        if (!st.IsValid) throw new SnapshotInvalidException(st.CowPath, st.Name, st.InvalidReason!);
    }

    /// <summary>
    /// Invalidates a snapshot (once): status Invalid at once, then on disk: header valid = 0 and the superblock.
    /// I/O errors during invalidation are ignored (the snapshot is unusable either way). Caller holds the gate shared
    /// or exclusive, and no lock.
    /// </summary>
    internal Task InvalidateAsync(SnapshotState st, InvalidReasonCode code)
    {
        lock (_stateLock)
        {
            if (st.Invalidation is not null) return st.Invalidation;
            if (st.InvalidReason is null)
            {
                st.InvalidCode = code;
                st.InvalidReason = ReasonText(code);
            }
            st.Invalidation = Task.Run(async () =>
            {
                try { if (st.Store is not null) await st.Store.InvalidateAsync().ConfigureAwait(false); }
                catch (IOException) { }
                try { await CommitSuperblockAsync().ConfigureAwait(false); }
                catch (Exception e) when (e is IOException or JournalException or ObjectDisposedException or InvalidOperationException) { }
            });
            return st.Invalidation;
        }
    }

    /// <summary>
    /// Completion of a copy or snapshot write: moves each pending exception to its complete table (or drops it if it
    /// failed or its snapshot is no longer valid, freeing the chunk), wakes its waiters, returns it to the pool, and
    /// gives back the throttle slots. Takes the state lock; never waits.
    /// </summary>
    internal void CompletePending(IReadOnlyList<PendingException> pending, int slots)
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
}
