using System.Buffers;
using System.Runtime.CompilerServices;
using Journal.Storage;
using Microsoft.Extensions.Logging;
using Snapshot.Commit;
using Snapshot.Diagnostics;
using Snapshot.Exceptions;
using Snapshot.Format;
using Snapshot.Memory;

namespace Snapshot.Copy;

/// <summary>
/// Runs copy-on-write jobs (the kcopyd role): copies a run of origin chunks into the COW chunks of each snapshot that
/// needs them, hands the exceptions to the commit pipeline, waits until they are durable, and reports completion.
/// </summary>
/// <remarks>
/// <para>Order, for every plan: (1) grow each COW file if a chunk is past its end; (2) read the run from the origin in
/// one request (a chunk larger than <see cref="MaxRunBytes"/> in pieces of <see cref="PieceBytes"/>) and write it to
/// each snapshot, one request per stretch of consecutive new chunks; (3) queue the exceptions to the commit pipeline,
/// which flushes the COW files and then commits (shared with every concurrent copy); (4) wait for them; (5) report
/// completion (<see cref="ICopyCompletion"/>). Step 3's flush before commit means an exception on disk never points
/// at data that is not there.</para>
/// <para>Errors: an origin read error fails the plan (no exception is committed, the chunks are freed, the caller's
/// write fails). No space left on the file system under a COW file (growth, write or flush) drops that exception and
/// frees its chunk, leaves the snapshot valid, and fails the caller's write with the no-space error naming the COW file
/// (the origin chunk is not overwritten, so nothing the snapshot needs is lost; the write can be retried once there is
/// space). Any other COW write, flush or commit error invalidates only that snapshot; the others and the origin go on.
/// Completion always runs, so waiters are always woken and slots always given back.</para>
/// <para>The engine holds no lock, and no cancellation token: a copy once claimed runs to its end (a commit given up
/// half way could leave its exception committed while its chunk went back to the free list).</para>
/// </remarks>
internal sealed class CopyEngine
{
    /// <summary>Largest piece of one chunk copied at once when a chunk is larger than <see cref="MaxRunBytes"/>.</summary>
    public const int PieceBytes = 64 * 1024;

    /// <summary>Largest run read from the origin in one request (1 MiB: 256 chunks of 4 KiB).</summary>
    public const int MaxRunBytes = 1 << 20;

    private readonly BlockDevice _origin;
    private readonly CowLayout _layout;
    private readonly CommitPipeline _pipeline;
    private readonly ICopyCompletion _completion;
    private readonly BoundedPool<CopyPlan> _plans;
    private readonly ILogger _logger;
    private readonly string _storeName;
    private long _jobs, _chunksCopied;

    public CopyEngine(BlockDevice origin, CowLayout layout, CommitPipeline pipeline, ICopyCompletion completion, BoundedPool<CopyPlan> plans,
        ILogger logger, string storeName)
    {
        _origin = origin;
        _layout = layout;
        _pipeline = pipeline;
        _completion = completion;
        _plans = plans;
        _logger = logger;
        _storeName = storeName;
    }

    /// <summary>Most chunks in one run: a run is read in one request of at most <see cref="MaxRunBytes"/>.</summary>
    public int MaxRunChunks => (int)Math.Max(1, MaxRunBytes / _layout.ChunkBytes);

    /// <summary>The commit pipeline the copies are queued to.</summary>
    public CommitPipeline Pipeline => _pipeline;

    /// <summary>Plans run since open.</summary>
    public long Jobs => Interlocked.Read(ref _jobs);

    /// <summary>Chunk copies written and committed since open (one per snapshot per chunk).</summary>
    public long ChunksCopied => Interlocked.Read(ref _chunksCopied);

    /// <summary>Runs an origin copy plan and completes it (the plan goes back to its pool).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask RunOriginCopyAsync(CopyPlan plan)
    {
        await StartOriginCopyAsync(plan).ConfigureAwait(false);
        await FinishOriginCopyAsync(plan).ConfigureAwait(false);
    }

    /// <summary>
    /// The first half of an origin copy: grows the COW files, reads the run and writes it to every snapshot, and queues
    /// the exceptions for commit (steps 1-3). If it throws (an origin read error), the plan has been completed and
    /// returned to its pool; otherwise <see cref="FinishOriginCopyAsync"/> must follow.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask StartOriginCopyAsync(CopyPlan plan)
    {
        Interlocked.Increment(ref _jobs);
        byte[]? buffer = null;
        int inFlight = plan.Slots; // throttle slots in their in-flight stage, ended once the copies are handed over
        try
        {
            var pending = plan.Pending;
            for (int i = 0; i < pending.Count; i++) await GrowAsync(pending[i]).ConfigureAwait(false);
            long chunkBytes = _layout.ChunkBytes;
            if (plan.ChunkCount * chunkBytes <= MaxRunBytes)
            {
                int bytes = (int)(plan.ChunkCount * chunkBytes);
                buffer = ArrayPool<byte>.Shared.Rent(bytes);
                // An origin read error fails the whole plan (and the caller's write).
                await _origin.ReadAsync(_layout.ChunkToSector(plan.FirstChunk), buffer.AsMemory(0, bytes), CancellationToken.None).ConfigureAwait(false);
                await WriteStretchesAsync(plan, buffer).ConfigureAwait(false);
            }
            else
            {
                buffer = ArrayPool<byte>.Shared.Rent(PieceBytes);
                await CopyInPiecesAsync(plan, buffer).ConfigureAwait(false);
            }
            // The plan's exceptions (every snapshot's copy of every chunk of the run) go into one round together: a
            // crash never finds one snapshot's copy of a chunk committed and another's not.
            for (int i = 0; i < pending.Count; i++) MarkForCommit(pending[i]);
            _pipeline.EnqueueMarked(pending, plan.Expected);
            plan.Expected = default;
            ArrayPool<byte>.Shared.Return(buffer);
            buffer = null;
            _completion.CopiesWritten(inFlight);
            inFlight = 0;
        }
        catch
        {
            Arrive(plan); // before the plan goes back to its pool, and before any wait in CompleteAsync
            if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer);
            if (inFlight > 0) _completion.CopiesWritten(inFlight);
            await CompleteAsync(plan).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Reports <paramref name="plan"/>'s run to the commit pipeline as arrived, if it was expected (once).</summary>
    private void Arrive(CopyPlan plan)
    {
        var run = plan.Expected;
        plan.Expected = default;
        _pipeline.Arrived(run);
    }

    /// <summary>
    /// The second half of an origin copy (after <see cref="StartOriginCopyAsync"/>): waits for the exceptions' commit
    /// round (steps 4-5), completes them and returns the plan to its pool. Throws the no-space error when a COW file had
    /// no space for a copy (the caller must not overwrite the origin).
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask FinishOriginCopyAsync(CopyPlan plan)
    {
        try
        {
            var pending = plan.Pending;
            for (int i = 0; i < pending.Count; i++) await AwaitCommitAsync(pending[i]).ConfigureAwait(false);
            CountCommitted(pending);
        }
        finally
        {
            await CompleteAsync(plan).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The wait of <see cref="FinishOriginCopyAsync"/> without an async method, for a caller that drives its own
    /// continuation (a deferred write, so that thousands of them outstanding hold no async state each): records the
    /// outcome of each of <paramref name="plan"/>'s commits from <paramref name="next"/> on while they are complete.
    /// Returns true once every one is recorded (<see cref="CompleteOriginCopyAsync"/> must follow, also when this
    /// throws); false with the first exception whose commit is still running in <paramref name="waitFor"/> (call again
    /// once it completes: <see cref="PendingException.OnCommitCompleted"/>).
    /// </summary>
    public bool PollOriginCommits(CopyPlan plan, ref int next, out PendingException? waitFor)
    {
        var pending = plan.Pending;
        for (; next < pending.Count; next++)
        {
            var pe = pending[next];
            if (!pe.Queued) continue;
            if (!pe.CommitCompleted) { waitFor = pe; return false; }
            try
            {
                pe.ConsumeCommit();
                pe.Committed = true;
            }
            catch (IOException e) { Fail(pe, e); }
        }
        CountCommitted(pending);
        waitFor = null;
        return true;
    }

    /// <summary>
    /// Completes <paramref name="plan"/> after <see cref="PollOriginCommits"/> (the last step of
    /// <see cref="FinishOriginCopyAsync"/>): the plan goes back to its pool. Throws the no-space error.
    /// </summary>
    public ValueTask CompleteOriginCopyAsync(CopyPlan plan) => CompleteAsync(plan);

    private void CountCommitted(List<PendingException> pending)
    {
        int committed = 0;
        for (int i = 0; i < pending.Count; i++)
            if (pending[i].Committed) committed++;
        Interlocked.Add(ref _chunksCopied, committed);
    }

    /// <summary>True when a COW file had no space for one of <paramref name="plan"/>'s copies (known once it is started).</summary>
    public static bool HasNoSpace(CopyPlan plan) => FirstNoSpace(plan.Pending) is not null;

    /// <summary>Invalidates failed snapshots, completes the plan's exceptions, returns the plan; throws the no-space error.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask CompleteAsync(CopyPlan plan)
    {
        await InvalidateFailedAsync(plan.Pending).ConfigureAwait(false);
        var noSpace = FirstNoSpace(plan.Pending);
        _completion.Complete(plan.Pending, plan.Slots);
        plan.Reset();
        _plans.Return(plan);
        if (noSpace is not null) throw NoSpaceError(noSpace);
    }

    /// <summary>
    /// Writes the run in <paramref name="buffer"/> (chunk <see cref="CopyPlan.FirstChunk"/> at offset 0) to every
    /// snapshot: one write per stretch of exceptions whose old and new chunks both follow on.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteStretchesAsync(CopyPlan plan, byte[] buffer)
    {
        var pending = plan.Pending;
        long chunkBytes = _layout.ChunkBytes;
        int i = 0;
        while (i < pending.Count)
        {
            var first = pending[i];
            bool ok = !first.Failed && first.NoSpace is null;
            int j = i;
            // A stretch ends where a copy's state changes too: a copy whose file could not grow for it (no space) must
            // not be written with the ones before it (its chunk lies past the file's end).
            while (j + 1 < pending.Count && ReferenceEquals(pending[j + 1].Snapshot, first.Snapshot)
                && pending[j + 1].OldChunk == pending[j].OldChunk + 1 && pending[j + 1].NewChunk == pending[j].NewChunk + 1
                && (!pending[j + 1].Failed && pending[j + 1].NoSpace is null) == ok)
                j++;
            if (ok)
            {
                int offset = (int)((first.OldChunk - plan.FirstChunk) * (ulong)chunkBytes);
                int length = (int)((j - i + 1) * chunkBytes);
                try
                {
                    await first.Snapshot!.Store!.Cow.WriteAsync(_layout.ChunkToSector(first.NewChunk), buffer.AsMemory(offset, length), CancellationToken.None).ConfigureAwait(false);
                }
                catch (IOException e)
                {
                    for (int k = i; k <= j; k++) Fail(pending[k], e);
                }
            }
            i = j + 1;
        }
    }

    /// <summary>A chunk larger than a run: read and written piece by piece (the plan holds one chunk).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask CopyInPiecesAsync(CopyPlan plan, byte[] buffer)
    {
        long originSector = _layout.ChunkToSector(plan.FirstChunk);
        for (long off = 0; off < _layout.ChunkBytes; off += PieceBytes)
        {
            var piece = buffer.AsMemory(0, PieceBytes);
            await _origin.ReadAsync(originSector + (off >> BlockDevice.SectorShift), piece, CancellationToken.None).ConfigureAwait(false);
            foreach (var pe in plan.Pending)
            {
                if (pe.Failed || pe.NoSpace is not null) continue;
                try
                {
                    await pe.Snapshot!.Store!.Cow.WriteAsync(_layout.ChunkToSector(pe.NewChunk) + (off >> BlockDevice.SectorShift), piece, CancellationToken.None).ConfigureAwait(false);
                }
                catch (IOException e) { Fail(pe, e); }
            }
        }
    }

    /// <summary>
    /// A write to a snapshot chunk that has no exception: writes the new data (and, for a partial write, the rest of
    /// the chunk copied from the origin) into the newly allocated chunk, makes it durable and commits the exception.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask RunSnapshotWriteAsync(List<PendingException> list, int slots, int offsetInChunk, ReadOnlyMemory<byte> data)
    {
        var pe = list[0];
        var st = pe.Snapshot!;
        byte[]? buffer = null;
        int inFlight = slots; // as in RunOriginCopyAsync
        try
        {
            await GrowAsync(pe).ConfigureAwait(false);
            long cowSector = _layout.ChunkToSector(pe.NewChunk);
            if (pe.Failed || pe.NoSpace is not null)
            {
                // The file could not grow for the chunk (no space): nothing is written past its end; the write fails
                // below with the no-space error and the snapshot keeps what it has.
            }
            else if (data.Length == _layout.ChunkBytes)
            {
                await WriteCowAsync(pe, cowSector, data).ConfigureAwait(false);
            }
            else
            {
                int piece = (int)Math.Min(_layout.ChunkBytes, PieceBytes);
                buffer = ArrayPool<byte>.Shared.Rent(piece);
                long originSector = _layout.ChunkToSector(pe.OldChunk);
                for (long off = 0; off < _layout.ChunkBytes && !pe.Failed && pe.NoSpace is null; off += piece)
                {
                    var buf = buffer.AsMemory(0, piece);
                    long pieceEnd = off + piece;
                    long dataEnd = offsetInChunk + data.Length;
                    if (offsetInChunk <= off && dataEnd >= pieceEnd)
                    {
                        buf = System.Runtime.InteropServices.MemoryMarshal.AsMemory(data.Slice((int)(off - offsetInChunk), piece));
                    }
                    else
                    {
                        await _origin.ReadAsync(originSector + (off >> BlockDevice.SectorShift), buf, CancellationToken.None).ConfigureAwait(false);
                        long from = Math.Max(off, offsetInChunk), to = Math.Min(pieceEnd, dataEnd);
                        if (from < to) data.Span.Slice((int)(from - offsetInChunk), (int)(to - from)).CopyTo(buf.Span.Slice((int)(from - off)));
                    }
                    await WriteCowAsync(pe, cowSector + (off >> BlockDevice.SectorShift), buf).ConfigureAwait(false);
                }
            }
            if (MarkForCommit(pe)) _pipeline.Enqueue(pe);
            _completion.CopiesWritten(inFlight);
            inFlight = 0;
            await AwaitCommitAsync(pe).ConfigureAwait(false);
        }
        finally
        {
            if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer);
            if (inFlight > 0) _completion.CopiesWritten(inFlight);
            bool failed = pe.Failed;
            var noSpace = pe.NoSpace;
            await InvalidateFailedAsync(list).ConfigureAwait(false);
            _completion.Complete(list, slots);
            if (failed) throw new SnapshotInvalidException(st.CowPath, st.Name, SnapshotStore.ReasonText(InvalidReasonCode.IoError));
            if (noSpace is not null) throw NoSpaceError(noSpace);
        }
    }

    /// <summary>Records a COW I/O error on <paramref name="pe"/>: no space is the write's failure, anything else the snapshot's.</summary>
    private static void Fail(PendingException pe, IOException e)
    {
        if (e is DeviceFullException full) pe.NoSpace ??= full;
        else pe.Failed = true;
    }

    private static DeviceFullException? FirstNoSpace(List<PendingException> pending)
    {
        foreach (var pe in pending) if (pe.NoSpace is not null) return pe.NoSpace;
        return null;
    }

    /// <summary>
    /// The error a write that needed a copy fails with when a COW file had no space (a new object per failure, thrown
    /// once), logged as a warning.
    /// </summary>
    private DeviceFullException NoSpaceError(DeviceFullException e)
    {
        var error = new DeviceFullException(e.Device, e.Sector, $"no space left on device for a copy-on-write copy; the chunks that needed it were not written (the snapshot keeps its data): {e.Message}", e);
        SnapshotLog.NoSpace(_logger, _storeName, error.Message);
        return error;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private static async ValueTask WriteCowAsync(PendingException pe, long sector, ReadOnlyMemory<byte> data)
    {
        try
        {
            await pe.Snapshot!.Store!.Cow.WriteAsync(sector, data, CancellationToken.None).ConfigureAwait(false);
        }
        catch (IOException e) { Fail(pe, e); }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
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
    /// <summary>
    /// Marks <paramref name="pe"/> to be committed by the pipeline (<see cref="PendingException.Queued"/>) and returns
    /// true, unless it failed, its snapshot is invalid, or its snapshot is transient (committed at once, nothing on disk).
    /// </summary>
    private static bool MarkForCommit(PendingException pe)
    {
        if (pe.Failed || pe.NoSpace is not null) return false;
        var s = pe.Snapshot!;
        if (!s.IsValid) return false;
        if (!s.Store!.IsPersistent) { pe.Committed = true; return false; }
        pe.Queued = true;
        return true;
    }

    /// <summary>Waits for <paramref name="pe"/>'s round (if it was queued) and records the outcome.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
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

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask InvalidateFailedAsync(List<PendingException> pending)
    {
        foreach (var pe in pending)
            if (pe.Failed) await _completion.InvalidateAsync(pe.Snapshot!, InvalidReasonCode.IoError).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public override string ToString() => $"CopyEngine({Jobs} jobs, {ChunksCopied} chunk copies)";
}
