using Journal.Storage;
using Snapshot.Format;

namespace Snapshot.Exceptions;

/// <summary>
/// A transient exception store (dm-snap-transient): nothing is written but data and, in chunk 0, a header naming the
/// store and the snapshot (kind transient), so the file is recognisably the store's own when it is removed; data chunks
/// are allocated from chunk 1 upward; the exceptions live only in the snapshot's in-memory table and are lost when the
/// store closes.
/// </summary>
internal sealed class TransientExceptionStore : ExceptionStore
{
    /// <summary>First data chunk (chunk 0 holds the header).</summary>
    public const ulong FirstDataChunk = 1;

    private readonly object _allocLock = new(); // leaf: protects _nextFree and _holes
    private ulong _nextFree = FirstDataChunk;
    private readonly Stack<ulong> _holes = new();

    private TransientExceptionStore(BlockDevice cow, CowLayout layout, long totalSectors, long growthSectors)
        : base(cow, layout, totalSectors, growthSectors) { }

    /// <summary>Smallest COW size (in sectors): the header chunk and one data chunk.</summary>
    public static long MinimumSectors(int chunkSectors) => 2L * chunkSectors;

    /// <summary>Creates the scratch file with its header (flushed, so its identity is on disk before it is named).</summary>
    public static TransientExceptionStore Create(BlockDevice cow, CowLayout layout, long totalSectors, long growthSectors, ulong snapshotId, ulong storeId)
    {
        var s = new TransientExceptionStore(cow, layout, totalSectors, growthSectors);
        try
        {
            var header = new byte[BlockDevice.SectorSize];
            CowHeader.New(layout.ChunkSectors, snapshotId, storeId, CowHeader.KindTransient).Write(header);
            cow.Write(0, header);
            cow.Flush();
            return s;
        }
        catch
        {
            s.Dispose();
            throw;
        }
    }

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
        get { lock (_allocLock) return new StoreUsage(((long)_nextFree - _holes.Count) * Layout.ChunkSectors, TotalSectors, Layout.ChunkSectors); }
    }

    public override ValueTask InvalidateAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;
}
