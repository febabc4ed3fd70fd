using Journal.Storage;
using Snapshot.Format;

namespace Snapshot.Exceptions;

/// <summary>
/// A transient exception store (dm-snap-transient): nothing is written but data; chunks are allocated from chunk 0
/// upward; the exceptions live only in the snapshot's in-memory table and are lost when the store closes.
/// </summary>
internal sealed class TransientExceptionStore : ExceptionStore
{
    private readonly object _allocLock = new(); // leaf: protects _nextFree and _holes
    private ulong _nextFree;
    private readonly Stack<ulong> _holes = new();

    public TransientExceptionStore(BlockDevice cow, CowLayout layout, long totalSectors, long growthSectors)
        : base(cow, layout, totalSectors, growthSectors) { }

    public override bool IsPersistent => false;

    public override bool TryAllocate(out ulong newChunk)
    {
        lock (_allocLock)
        {
            if (_holes.Count > 0) { newChunk = _holes.Pop(); return true; }
            if (_nextFree >= (ulong)CapacityChunks) { newChunk = 0; return false; }
            newChunk = _nextFree++;
            return true;
        }
    }

    public override void Free(ulong newChunk)
    {
        lock (_allocLock) _holes.Push(newChunk);
    }

    public override StoreUsage Usage
    {
        get { lock (_allocLock) return new StoreUsage(((long)_nextFree - _holes.Count) * Layout.ChunkSectors, TotalSectors, 0); }
    }

    public override ValueTask CommitAsync(ulong oldChunk, ulong newChunk, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public override ValueTask InvalidateAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public override ValueTask CloseAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;
}
