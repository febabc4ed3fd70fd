using Journal.Storage;
using Snapshot.Commit;
using Snapshot.Exceptions;
using Snapshot.Format;

namespace Snapshot.Copy;

/// <summary>
/// Runs copy-on-write jobs (the kcopyd role): copies an origin chunk into the COW chunk of each snapshot that needs
/// it, makes the data durable, commits the exceptions durably, and completes them.
/// </summary>
/// <remarks>
/// <para>Order, for every job: (1) grow each COW file if the chunk is past its end; (2) read the origin chunk (in
/// pieces of at most <see cref="PieceBytes"/>) and write each piece to every COW chunk; (3) flush the COW files —
/// shared with concurrent jobs; (4) commit each exception — durable when the commit returns (journal force or area
/// write, shared with concurrent jobs); (5) complete: move the exceptions to the complete tables, wake their waiters,
/// give back the throttle slots. Step 3 before step 4 means an exception on disk never points at data that is not.</para>
/// <para>Errors: an origin read error fails the job (no exception is committed, the chunks are freed, the caller's
/// write fails). No space left on the file system under a COW file (growth, write or flush) drops that exception and
/// frees its chunk, leaves the snapshot valid, and fails the caller's write with the no-space error naming the COW file
/// (the origin chunk is not overwritten, so nothing the snapshot needs is lost; the write can be retried once there is
/// space). Any other COW write, flush or commit error invalidates only that snapshot; the others and the origin go on.
/// Completion always runs, so waiters are always woken and slots always given back.</para>
/// <para>The engine holds no lock across any await; completion takes the store's state lock briefly.</para>
/// </remarks>
internal sealed class CopyEngine
{
    /// <summary>Largest piece copied at once (chunks larger than this are copied in pieces).</summary>
    public const int PieceBytes = 64 * 1024;

    private readonly SnapshotStore _store;
    private readonly BlockDevice _origin;
    private readonly CowLayout _layout;
    private readonly CommitPipeline _pipeline;
    private long _jobs, _chunksCopied;

    public CopyEngine(SnapshotStore store, BlockDevice origin, CowLayout layout, CommitPipeline pipeline)
    {
        _store = store;
        _origin = origin;
        _layout = layout;
        _pipeline = pipeline;
    }

    /// <summary>Jobs run since open.</summary>
    public long Jobs => Interlocked.Read(ref _jobs);

    /// <summary>Chunk copies written since open (one per snapshot per job).</summary>
    public long ChunksCopied => Interlocked.Read(ref _chunksCopied);

    /// <summary>Runs an origin copy job and completes it (the job goes back to its pool).</summary>
    public async ValueTask RunOriginCopyAsync(CopyJob job, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _jobs);
        try
        {
            foreach (var pe in job.Pending) await GrowAsync(pe).ConfigureAwait(false);
            long originSector = _layout.ChunkToSector(job.OldChunk);
            int piece = job.Buffer.Length;
            for (long off = 0; off < _layout.ChunkBytes; off += piece)
            {
                var buf = job.Buffer.AsMemory(0, piece);
                // An origin read error fails the whole job (and the caller's write).
                await _origin.ReadAsync(originSector + (off >> BlockDevice.SectorShift), buf, cancellationToken).ConfigureAwait(false);
                foreach (var pe in job.Pending)
                {
                    if (pe.Failed || pe.NoSpace is not null) continue;
                    try
                    {
                        await pe.Snapshot!.Store!.Cow.WriteAsync(_layout.ChunkToSector(pe.NewChunk) + (off >> BlockDevice.SectorShift), buf, cancellationToken).ConfigureAwait(false);
                    }
                    catch (IOException e) { Fail(pe, e); }
                }
            }
            foreach (var pe in job.Pending) Enqueue(pe);
            foreach (var pe in job.Pending) await AwaitCommitAsync(pe).ConfigureAwait(false);
            Interlocked.Add(ref _chunksCopied, job.Pending.Count(p => p.Committed));
        }
        finally
        {
            await InvalidateFailedAsync(job.Pending).ConfigureAwait(false);
            var noSpace = job.Pending.Select(p => p.NoSpace).FirstOrDefault(e => e is not null);
            _store.CompletePending(job.Pending, job.Slots);
            job.Reset();
            _store.JobPool.Return(job);
            if (noSpace is not null) throw NoSpaceError(noSpace);
        }
    }

    /// <summary>Records a COW I/O error on <paramref name="pe"/>: no space is the write's failure, anything else the snapshot's.</summary>
    private static void Fail(PendingException pe, IOException e)
    {
        if (e is DeviceFullException full) pe.NoSpace ??= full;
        else pe.Failed = true;
    }

    /// <summary>The error a write that needed a copy fails with when a COW file had no space (a new object per failure, thrown once).</summary>
    private static DeviceFullException NoSpaceError(DeviceFullException e) =>
        new(e.Device, e.Sector, $"no space left on device for a copy-on-write copy; nothing was written (the snapshot keeps its data): {e.Message}", e);

    /// <summary>
    /// A write to a snapshot chunk that has no exception: writes the new data (and, for a partial write, the rest of
    /// the chunk copied from the origin) into the newly allocated chunk, makes it durable and commits the exception.
    /// </summary>
    public async ValueTask RunSnapshotWriteAsync(PendingException pe, int slots, int offsetInChunk, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        var st = pe.Snapshot!;
        var list = new[] { pe };
        CopyJob? job = null;
        try
        {
            await GrowAsync(pe).ConfigureAwait(false);
            long cowSector = _layout.ChunkToSector(pe.NewChunk);
            if (data.Length == _layout.ChunkBytes)
            {
                await WriteCowAsync(pe, cowSector, data, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                job = _store.JobPool.Rent();
                long originSector = _layout.ChunkToSector(pe.OldChunk);
                int piece = job.Buffer.Length;
                for (long off = 0; off < _layout.ChunkBytes && !pe.Failed && pe.NoSpace is null; off += piece)
                {
                    var buf = job.Buffer.AsMemory(0, piece);
                    long pieceEnd = off + piece;
                    long dataEnd = offsetInChunk + data.Length;
                    if (offsetInChunk <= off && dataEnd >= pieceEnd)
                    {
                        buf = MemoryMarshalSlice(data, (int)(off - offsetInChunk), piece);
                    }
                    else
                    {
                        await _origin.ReadAsync(originSector + (off >> BlockDevice.SectorShift), buf, cancellationToken).ConfigureAwait(false);
                        long from = Math.Max(off, offsetInChunk), to = Math.Min(pieceEnd, dataEnd);
                        if (from < to) data.Span.Slice((int)(from - offsetInChunk), (int)(to - from)).CopyTo(buf.Span.Slice((int)(from - off)));
                    }
                    await WriteCowAsync(pe, cowSector + (off >> BlockDevice.SectorShift), buf, cancellationToken).ConfigureAwait(false);
                }
            }
            Enqueue(pe);
            await AwaitCommitAsync(pe).ConfigureAwait(false);
        }
        finally
        {
            bool failed = pe.Failed;
            var noSpace = pe.NoSpace;
            await InvalidateFailedAsync(list).ConfigureAwait(false);
            _store.CompletePending(list, slots);
            if (job is not null)
            {
                job.Reset();
                _store.JobPool.Return(job);
            }
            if (failed) throw new SnapshotInvalidException(st.CowPath, st.Name, SnapshotStore.ReasonText(InvalidReasonCode.IoError));
            if (noSpace is not null) throw NoSpaceError(noSpace);
        }
    }

    private static Memory<byte> MemoryMarshalSlice(ReadOnlyMemory<byte> data, int start, int length) =>
        System.Runtime.InteropServices.MemoryMarshal.AsMemory(data.Slice(start, length));

    private static async ValueTask WriteCowAsync(PendingException pe, long sector, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        try
        {
            await pe.Snapshot!.Store!.Cow.WriteAsync(sector, data, cancellationToken).ConfigureAwait(false);
        }
        catch (IOException e) { Fail(pe, e); }
    }

    private static async ValueTask GrowAsync(PendingException pe)
    {
        try
        {
            await pe.Snapshot!.Store!.EnsureCapacityAsync(pe.NewChunk).ConfigureAwait(false);
        }
        catch (IOException e) { Fail(pe, e); }
    }

    /// <summary>
    /// Hands a written copy to the commit pipeline (which flushes its COW file, then commits it durably, batched with
    /// every other copy of the round). A transient snapshot keeps nothing on disk: its copy is complete at once. A copy
    /// that already failed, or whose snapshot was invalidated meanwhile, is not committed.
    /// </summary>
    private void Enqueue(PendingException pe)
    {
        if (pe.Failed || pe.NoSpace is not null) return;
        var s = pe.Snapshot!;
        if (!s.IsValid) return;
        if (!s.Store!.IsPersistent) { pe.Committed = true; return; }
        pe.Queued = true;
        _pipeline.Enqueue(pe);
    }

    /// <summary>Waits for <paramref name="pe"/>'s round (if it was queued) and records the outcome.</summary>
    private static async ValueTask AwaitCommitAsync(PendingException pe)
    {
        if (!pe.Queued) return;
        try
        {
            // Why we wait: the exception must be durable before the write that needed it goes on. The round holds
            // nothing this writer holds (the pipeline never enters the gate nor takes the state lock).
            await pe.CommitTask.ConfigureAwait(false);
            pe.Committed = true;
        }
        catch (IOException e) { Fail(pe, e); }
    }

    private async ValueTask InvalidateFailedAsync(IReadOnlyList<PendingException> pending)
    {
        foreach (var pe in pending)
            if (pe.Failed) await _store.InvalidateAsync(pe.Snapshot!, InvalidReasonCode.IoError).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public override string ToString() => $"CopyEngine({Jobs} jobs, {ChunksCopied} chunk copies)";
}
