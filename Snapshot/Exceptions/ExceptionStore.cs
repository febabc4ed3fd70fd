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
/// else). Allocation state has its own leaf lock in the subclasses.
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

    /// <summary>Grows the COW file (in <see cref="GrowthSectors"/> steps of written zeros) so <paramref name="chunk"/> exists.</summary>
    public async ValueTask EnsureCapacityAsync(ulong chunk, CancellationToken cancellationToken = default)
    {
        ulong last = Math.Min(LastChunkNeeded(chunk), (ulong)CapacityChunks - 1);
        long need = ((long)last + 1) * Layout.ChunkSectors;
        if (Cow.SectorCount >= need) return;
        // Waiting for another writer's growth of this file; the holder takes nothing else.
        await _growLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (Cow.SectorCount >= need) return;
            long target = Math.Min(TotalSectors, (need + GrowthSectors - 1) / GrowthSectors * GrowthSectors);
            target = Math.Max(target, need);
            // The growth writes its zeros to the device (O_DIRECT) and waits for them: on a thread that must not wait
            // (an NBD connection's reader), go on on a pool thread first.
            if (BlockDevice.ReadsMustNotWait) await Task.Yield();
            Cow.Extend(target);
        }
        finally
        {
            _growLock.Release();
        }
    }

    /// <summary>Makes every COW write that returned before the call durable (shared among concurrent callers).</summary>
    public ValueTask FlushDataAsync(CancellationToken cancellationToken = default) => _dataFlush.FlushAsync(cancellationToken);

    /// <summary>Marks the store invalid on disk (persistent: header valid = 0) and stops metadata writes. Best effort on I/O errors.</summary>
    public abstract ValueTask InvalidateAsync(CancellationToken cancellationToken = default);

    /// <summary>Closes the device.</summary>
    public virtual void Dispose()
    {
        Cow.Dispose();
        _growLock.Dispose();
    }
}
