using Journal;
using Microsoft.Extensions.Logging;
using Snapshot.Storage;

namespace Snapshot;

/// <summary>
/// Options of a snapshot store. <see cref="OriginSectors"/>, <see cref="ChunkSectors"/> and <see cref="LogBlocks"/>
/// are used when the store is created and are read from the store afterwards; the others apply to each open.
/// </summary>
public sealed class StoreOptions
{
    /// <summary>Default chunk size: 8 sectors (4 KiB).</summary>
    public const int DefaultChunkSectors = 8;

    /// <summary>Largest chunk size: 2^21 sectors (1 GiB).</summary>
    public const int MaxChunkSectors = 1 << 21;

    /// <summary>Default bound on copy-on-write copies in flight.</summary>
    public const int DefaultMaxInFlightCopies = 2048;

    /// <summary>Size of the origin image in 512-byte sectors (creation only; must be a whole number of chunks and at least one chunk).</summary>
    public long OriginSectors { get; init; }

    /// <summary>Chunk size in sectors: a power of two from 1 to 2^21 (creation only).</summary>
    public int ChunkSectors { get; init; } = DefaultChunkSectors;

    /// <summary>Size of the shared metadata journal in 512-byte blocks (creation only). Default 32768 (16 MiB).</summary>
    public uint LogBlocks { get; init; } = 32768;

    /// <summary>
    /// Most copy-on-write copies in flight (their old data being read and written to the COW files); 0 means
    /// unlimited. Default 2048. A copy leaves this bound once its data is written and handed to the commit pipeline.
    /// </summary>
    public int MaxInFlightCopies { get; init; } = DefaultMaxInFlightCopies;

    /// <summary>
    /// Most copies pending at once: in flight, or written and waiting for their commit round. 0 (default) means sixteen
    /// times <see cref="MaxInFlightCopies"/> (unlimited when that is); otherwise at least <see cref="MaxInFlightCopies"/>.
    /// </summary>
    public int MaxPendingCopies { get; init; }

    /// <summary>
    /// When true, every origin and snapshot write is durable when it returns (the store flushes the device it wrote,
    /// sharing flushes among concurrent writers). When false (default), a write is durable after a later
    /// <see cref="SnapshotStore.FlushAsync"/> or <see cref="SnapshotStore.CloseAsync"/>. The copy-on-write guarantee does
    /// not depend on this: when an origin write returns, the data it displaced is always durable in every snapshot.
    /// </summary>
    public bool WriteThrough { get; init; }

    /// <summary>
    /// When true (per open; ignored with <see cref="WriteThrough"/>), an origin write that needs copies returns once the
    /// copies are written to the COW files and queued for commit, instead of once they are committed and the origin is
    /// written: the origin write is issued in the background after the commit round, as a disk with a volatile write
    /// cache does. Reads see the new data at once (a read of such a chunk waits for it to reach the origin);
    /// <see cref="SnapshotStore.FlushAsync"/> waits for every such write acknowledged before it and then flushes, so
    /// durability is the same as without it. A FUA write is never deferred. If a deferred write fails after it returned
    /// (its origin write, or no space on the file system for a copy at commit), its data is not on the origin: every later flush (and close) flushes
    /// the rest and then fails with that error, and origin reads of its chunks fail until the store is reopened. The copy-on-write guarantee does not change: the origin chunk is overwritten only after its exceptions
    /// are durable. Default false.
    /// </summary>
    public bool DeferCopiedWrites { get; init; }

    /// <summary>Default of <see cref="MinThreadPoolThreads"/>.</summary>
    public const int DefaultMinThreadPoolThreads = 32;

    /// <summary>
    /// The least number of worker threads the process's .NET thread pool starts without delay (per open;
    /// <see cref="ThreadPool.SetMinThreads"/>), raised to this when it is lower and never lowered. 0 leaves the pool
    /// alone. Default <see cref="DefaultMinThreadPoolThreads"/>.
    /// </summary>
    /// <remarks>
    /// The store's file reads (an old chunk read before its copy, a snapshot or origin read) are blocking preads on the
    /// thread running the request: on Linux, .NET's asynchronous file I/O is the same blocking call on a pool thread. The
    /// pool keeps about one thread per core and adds more only slowly when they block, so reads that miss the page cache
    /// (100-200 µs) were in flight about as many at a time as the machine has cores, whatever the number of writers.
    /// Measured on 2 cores with 16 writers of first writes and one snapshot (docs/benchmarks.md): 25,249-28,610 writes/s
    /// with the pool's own sizing against 30,950-34,958 with 32 threads. qemu keeps a pool of up to 64 threads for its
    /// blocking I/O for the same reason. The minimum is the process's: a host that sets its own calls
    /// <see cref="ThreadPool.SetMinThreads"/> itself and passes 0 here (or its own value, which only raises it).
    /// </remarks>
    public int MinThreadPoolThreads { get; init; } = DefaultMinThreadPoolThreads;

    /// <summary>Raises the thread pool's minimum worker threads to <see cref="MinThreadPoolThreads"/> (see there).</summary>
    internal void ApplyThreadPoolMinimum()
    {
        if (MinThreadPoolThreads <= 0) return;
        ThreadPool.GetMinThreads(out int workers, out int completion);
        ThreadPool.GetMaxThreads(out int maxWorkers, out _);
        int want = Math.Min(MinThreadPoolThreads, maxWorkers);
        if (workers < want) ThreadPool.SetMinThreads(want, completion);
    }

    /// <summary>
    /// What happens when a write needs a copy and a snapshot's COW file has reached its configured size:
    /// <see cref="Snapshot.CowFullPolicy.InvalidateSnapshot"/> (default, as dm-snapshot does) or
    /// <see cref="Snapshot.CowFullPolicy.FailWrite"/>. Either way nothing acknowledged is lost. (A file system with no
    /// space left is not a full COW file: that write fails and the snapshot stays valid, whatever the policy.)
    /// </summary>
    public CowFullPolicy CowFullPolicy { get; init; } = CowFullPolicy.InvalidateSnapshot;

    /// <summary>COW files grow in steps of this many bytes of zeros (at least 1 MiB, rounded up to whole chunks). Default 4 MiB.</summary>
    public long CowGrowthBytes { get; init; } = 4 << 20;

    /// <summary>Pending exceptions and copy jobs kept in a preallocated emergency reserve. Default 16.</summary>
    public int PoolReserve { get; init; } = 16;

    /// <summary>
    /// What the open does with a snapshot whose COW file is missing or does not read back (bad header, bad metadata,
    /// truncated). Default <see cref="CowUnreadablePolicy.KeepSnapshot"/>: nothing is committed, the snapshot shows as
    /// unavailable and the origin refuses writes until the file is back or the snapshot is deleted.
    /// </summary>
    public CowUnreadablePolicy CowUnreadablePolicy { get; init; } = CowUnreadablePolicy.KeepSnapshot;

    /// <summary>
    /// Open the store read-only (per open): its files are only read (the store's lock is taken shared, which works on a
    /// read-only file system), a journal that needs replay is replayed in memory only, and writes, snapshot changes and
    /// merges are refused with <see cref="StoreReadOnlyException"/>. Closing writes nothing.
    /// </summary>
    public bool ReadOnly { get; init; }

    /// <summary>
    /// Where the store and its journal log (per open): the store under the category <c>Snapshot</c> (events 2000-2099,
    /// docs/metrics.md), the journal under its own categories, named by the store's folder. Null (the default): no
    /// logging.
    /// </summary>
    public ILoggerFactory? LoggerFactory { get; init; }

    /// <summary>Where devices come from (tests substitute memory or recording devices).</summary>
    internal IDeviceProvider DeviceProvider { get; init; } = FileDeviceProvider.Instance;

    /// <summary>The new store's identity (creation only; tests pin it for byte-exact golden files). Null: random.</summary>
    internal ulong? StoreId { get; init; }

    /// <summary>How persistent exception metadata is committed.</summary>
    internal MetadataMode MetadataMode { get; init; } = MetadataMode.Journal;

    /// <summary>These options with another device provider (a read-only open runs over an overlay).</summary>
    internal StoreOptions WithProvider(IDeviceProvider provider) => Copy(provider, LoggerFactory);

    /// <summary>These options without logging (a store built aside, in a staging folder, says nothing).</summary>
    internal StoreOptions WithoutLogging() => Copy(DeviceProvider, null);

    private StoreOptions Copy(IDeviceProvider provider, ILoggerFactory? loggerFactory) => new()
    {
        OriginSectors = OriginSectors, ChunkSectors = ChunkSectors, LogBlocks = LogBlocks, MaxInFlightCopies = MaxInFlightCopies, MaxPendingCopies = MaxPendingCopies,
        WriteThrough = WriteThrough, DeferCopiedWrites = DeferCopiedWrites, MinThreadPoolThreads = MinThreadPoolThreads, CowFullPolicy = CowFullPolicy, CowGrowthBytes = CowGrowthBytes, PoolReserve = PoolReserve,
        ReadOnly = ReadOnly, LoggerFactory = loggerFactory, DeviceProvider = provider, MetadataMode = MetadataMode, StoreId = StoreId,
    };

    /// <summary>Checks the chunk size alone; throws <see cref="JournalArgumentException"/> naming <paramref name="where"/>.</summary>
    public static void ValidateChunkSectors(long chunkSectors, string where)
    {
        if (chunkSectors <= 0)
            throw new SnapshotArgumentException($"{where}: chunk size {chunkSectors} sectors is invalid: it must be a power of two from 1 to {MaxChunkSectors} sectors");
        if ((chunkSectors & (chunkSectors - 1)) != 0)
            throw new SnapshotArgumentException($"{where}: chunk size {chunkSectors} sectors is not a power of two");
        if (chunkSectors > MaxChunkSectors)
            throw new SnapshotArgumentException($"{where}: chunk size {chunkSectors} sectors is too large: at most {MaxChunkSectors} sectors (2^21)");
    }

    /// <summary>Checks every option for creating a store; throws <see cref="JournalArgumentException"/> naming <paramref name="where"/>.</summary>
    public void ValidateForCreate(string where)
    {
        ValidateChunkSectors(ChunkSectors, where);
        if (OriginSectors <= 0)
            throw new SnapshotArgumentException($"{where}: origin size {OriginSectors} sectors is invalid: it must be at least one chunk ({ChunkSectors} sectors)");
        if (OriginSectors % ChunkSectors != 0)
            throw new SnapshotArgumentException($"{where}: origin size {OriginSectors} sectors is not a whole number of {ChunkSectors}-sector chunks");
        if (LogBlocks < Recovery.StoreJournal.MinLogBlocks)
            throw new SnapshotArgumentException($"{where}: log size {LogBlocks} blocks is too small: at least {Recovery.StoreJournal.MinLogBlocks} blocks (1 MiB)");
        ValidateForOpen(where);
    }

    /// <summary>Checks the options that apply to each open.</summary>
    public void ValidateForOpen(string where)
    {
        if (MaxInFlightCopies < 0)
            throw new SnapshotArgumentException($"{where}: in-flight copy bound {MaxInFlightCopies} is negative (0 means unlimited)");
        if (MaxPendingCopies < 0)
            throw new SnapshotArgumentException($"{where}: pending copy bound {MaxPendingCopies} is negative (0 means sixteen times the in-flight bound)");
        if (MaxPendingCopies > 0 && MaxInFlightCopies > 0 && MaxPendingCopies < MaxInFlightCopies)
            throw new SnapshotArgumentException($"{where}: pending copy bound {MaxPendingCopies} is below the in-flight copy bound {MaxInFlightCopies}");
        if (CowGrowthBytes < (1 << 20))
            throw new SnapshotArgumentException($"{where}: COW growth step {CowGrowthBytes} bytes is too small: at least 1 MiB");
        if (PoolReserve < 0)
            throw new SnapshotArgumentException($"{where}: pool reserve {PoolReserve} is negative");
        if (MinThreadPoolThreads < 0)
            throw new SnapshotArgumentException($"{where}: thread-pool minimum {MinThreadPoolThreads} is negative (0 leaves the pool alone)");
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"StoreOptions(origin {OriginSectors} sectors, chunk {ChunkSectors} sectors, log {LogBlocks} blocks, in-flight copies {(MaxInFlightCopies == 0 ? "unlimited" : MaxInFlightCopies)}, pending copies {(MaxPendingCopies == 0 ? "default" : MaxPendingCopies)}, write-through {WriteThrough}, defer copied writes {DeferCopiedWrites}, thread-pool minimum {MinThreadPoolThreads}, COW growth {CowGrowthBytes} bytes, pool reserve {PoolReserve}, COW full: {CowFullPolicy}, COW unreadable: {CowUnreadablePolicy}, read-only {ReadOnly})";
}

/// <summary>What a write that needs a copy does when a snapshot's COW file is full (<see cref="StoreOptions.CowFullPolicy"/>).</summary>
public enum CowFullPolicy
{
    /// <summary>The snapshot is invalidated (status <c>Invalid</c>, "COW file is full"); the write proceeds. dm-snapshot's choice.</summary>
    InvalidateSnapshot,

    /// <summary>The write fails with <see cref="CowFullException"/>; the snapshot stays valid and nothing is written.</summary>
    FailWrite,
}

/// <summary>
/// What opening a store does with a snapshot whose COW file is missing or does not read back
/// (<see cref="StoreOptions.CowUnreadablePolicy"/>). A snapshot being merged is never dropped: its loss refuses the open.
/// </summary>
public enum CowUnreadablePolicy
{
    /// <summary>
    /// The snapshot is kept and nothing is committed: status shows it <c>Unavailable</c> with the reason, and reading it,
    /// origin writes and merges fail with <see cref="SnapshotUnavailableException"/> (each of the last two would need a
    /// copy into the file). The origin and the other
    /// snapshots read as before; new snapshots can be made. Restoring the file and reopening brings the snapshot back
    /// whole; deleting the snapshot gives the origin back its writes.
    /// </summary>
    KeepSnapshot,

    /// <summary>
    /// The snapshot is invalidated for good (recorded in the superblock, "COW file is missing" or "COW file is damaged")
    /// and the origin opens for writing without it: availability first, as dm-snapshot invalidates a snapshot it cannot
    /// use. A file restored later is not read again.
    /// </summary>
    InvalidateSnapshot,
}

/// <summary>How persistent exception metadata reaches disk.</summary>
internal enum MetadataMode
{
    /// <summary>Through the store's metadata journal; areas are written home by the journal's write-back.</summary>
    Journal,

    /// <summary>The dm-snapshot scheme: every commit rewrites the area in the COW file and flushes (no journal).</summary>
    DirectArea,
}
