using Journal.Storage;
using JournalBench.Measure;
using Snapshot;
using Snapshot.Commit;
using static JournalBench.BenchCommon;

namespace JournalBench.Benchmarks;

/// <summary>How the store of one copy-on-write run is made.</summary>
/// <param name="Snapshots">Persistent snapshots taken before the writes.</param>
/// <param name="OriginSectors">Size of the origin.</param>
/// <param name="ChunkSectors">Chunk size.</param>
/// <param name="Mode">How exception metadata is committed (the journal, or the dm-snapshot area scheme).</param>
/// <param name="WriteThrough">Each origin write durable when it returns (else block-device semantics: one flush at the end).</param>
/// <param name="CowSectors">Size of each COW file (null: a full copy of the origin, the store's default).</param>
/// <param name="ColdCache">Drop the store's files from the page cache before the timed part.</param>
/// <param name="DeferWrites">Open the store with <see cref="StoreOptions.DeferCopiedWrites"/>.</param>
/// <param name="Preallocate">Create the snapshots with <see cref="SnapshotOptions.Preallocate"/> (untimed, like the rest of creation).</param>
internal sealed record CowStoreSetup(int Snapshots, long OriginSectors, int ChunkSectors, MetadataMode Mode, bool WriteThrough, long? CowSectors, bool ColdCache,
    bool Preallocate = false, bool DeferWrites = false)
{
    /// <summary>Size of the store's journal: 32 MiB.</summary>
    public const uint LogBlocks = 65536;
}

/// <summary>Commit-pipeline counters over the timed part (differences of <see cref="SnapshotStore.CommitStatistics"/>).</summary>
internal readonly record struct CommitDelta(string Committer, long Rounds, long Exceptions, long CowFlushes, long Transactions, long DurabilityWaits,
    long LargestRound, TimeSpan WaitTime, long FailedRounds, long CowWriteBacks, TimeSpan FlushTime, TimeSpan CommitTime, long CarriedRounds,
    long RunWaits)
{
    public static CommitDelta Between(CommitPipelineStatistics before, CommitPipelineStatistics after) => new(after.Committer,
        after.Rounds - before.Rounds, after.Exceptions - before.Exceptions, after.CowFlushes - before.CowFlushes,
        after.Transactions - before.Transactions, after.DurabilityWaits - before.DurabilityWaits, after.LargestRound,
        after.WaitTime - before.WaitTime, after.FailedRounds - before.FailedRounds, after.CowWriteBacks - before.CowWriteBacks,
        after.FlushTime - before.FlushTime, after.CommitTime - before.CommitTime, after.CarriedRounds - before.CarriedRounds,
        after.RunWaits - before.RunWaits);

    /// <summary>Mean time of a round's step 1 (COW data durable), in µs.</summary>
    public double FlushMicrosPerRound => Rounds == 0 ? 0 : FlushTime.TotalMicroseconds / Rounds;

    /// <summary>Mean time of a round's step 2 (commit), in µs.</summary>
    public double CommitMicrosPerRound => Rounds == 0 ? 0 : CommitTime.TotalMicroseconds / Rounds;

    public double ExceptionsPerRound => Rounds == 0 ? 0 : (double)Exceptions / Rounds;

    public double AverageRoundWaitMs => Rounds == 0 ? 0 : WaitTime.TotalMilliseconds / Rounds;
}

/// <summary>What one timed run of writes through a store measured.</summary>
/// <param name="Setup">How the store was made.</param>
/// <param name="Writes">Origin write requests.</param>
/// <param name="Bytes">Bytes written to the origin.</param>
/// <param name="Seconds">From the first write to the end of the closing flush (write-through: to the last write's return).</param>
/// <param name="FlushSeconds">The closing <see cref="SnapshotStore.FlushAsync"/> alone.</param>
/// <param name="Latency">Time of each write request, from the call to its return (the closing flush excluded).</param>
/// <param name="LogBytes">Bytes the journal wrote to its log.</param>
/// <param name="CowMetadataBytes">COW bytes written other than the data copies (segments written home, area rewrites, stamps).</param>
/// <param name="Commit">Commit rounds, their exceptions, COW flushes and durability waits.</param>
/// <param name="LogDeviceFlushes">Flushes of the log file (concurrent log forces share one).</param>
/// <param name="OriginFlushes">Flushes of the origin file (the closing flush's, or write-through's shared flushes).</param>
/// <param name="Usage">Wall time, CPU time of the whole process and bytes allocated by every thread, over the timed part.</param>
/// <param name="KeptBytes">
/// Growth of the managed heap over the timed part, each end measured after a full collection: what the run allocated
/// and still holds at its end (the exception tables' new entries, pools grown to the number of writes outstanding).
/// The rest of <see cref="ProcessMeter.Usage.AllocatedBytes"/> is garbage.
/// </param>
internal sealed record CowStoreResult(CowStoreSetup Setup, long Writes, long Bytes, double Seconds, double FlushSeconds, LatencyHistogram Latency,
    long LogBytes, long CowMetadataBytes, CommitDelta Commit, long LogDeviceFlushes, long OriginFlushes, ProcessMeter.Usage Usage, long KeptBytes)
{
    public double WritesPerS => Writes / Seconds;
    public double BytesPerS => Bytes / Seconds;

    /// <summary>COW flushes of the commit rounds, plus log forces (or durable area writes), plus origin flushes, per write.</summary>
    public double FlushesPerWrite => (Commit.CowFlushes + Commit.DurabilityWaits + OriginFlushes) / (double)Writes;

    public double AllocatedBytesPerWrite => Usage.AllocatedBytes / (double)Writes;

    /// <summary>Bytes a write that the run still holds at its end (<see cref="KeptBytes"/> per write).</summary>
    public double KeptBytesPerWrite => KeptBytes / (double)Writes;

    public double CpuMicrosPerWrite => Usage.Cpu.TotalMicroseconds / Writes;

    /// <summary>Voluntary context switches of every thread per write: a thread blocking for I/O or for work another thread hands it.</summary>
    public double SwitchesPerWrite => Usage.VoluntarySwitches / (double)Writes;

    /// <summary>Involuntary context switches (threads preempted) per write.</summary>
    public double PreemptionsPerWrite => Usage.InvoluntarySwitches / (double)Writes;

    /// <summary>Thread-pool work items completed per write: pieces of work handed from one thread to another.</summary>
    public double WorkItemsPerWrite => Usage.WorkItems / (double)Writes;
}

/// <summary>
/// One timed run of origin writes through a fresh store in the system temporary folder: make the store and its
/// snapshots, make everything durable and (cold) drop it from the page cache, run the writes, then (unless
/// write-through) one <see cref="SnapshotStore.FlushAsync"/>, all timed; check every snapshot is still valid and holds
/// an exception per chunk written; close and remove the store.
/// </summary>
internal static class CowStoreRun
{
    /// <summary>The writes: issues them on the store's origin and records each request's latency; returns (requests, bytes).</summary>
    public delegate Task<(long Writes, long Bytes)> Workload(SnapshotStore store, LatencyHistogram latency, CancellationToken ct);

    /// <summary>
    /// COW size (sectors) that holds <paramref name="chunks"/> copied chunks with their metadata areas and header, plus
    /// 1 MiB, rounded up to whole MiB: what a run that copies that many chunks into each snapshot needs.
    /// </summary>
    public static long CowSectorsFor(long chunks, int chunkSectors)
    {
        long chunkBytes = (long)chunkSectors * BlockDevice.SectorSize;
        long perArea = chunkBytes / 16;
        long areas = (chunks + perArea - 1) / perArea + 1;
        long bytes = (chunks + areas + 2) * chunkBytes + (1 << 20);
        long mib = (bytes + (1 << 20) - 1) >> 20;
        long sectors = (mib << 20) / BlockDevice.SectorSize;
        return (sectors + chunkSectors - 1) / chunkSectors * chunkSectors;
    }

    /// <summary>Whether runs print their timed part's bounds (off during a warm-up).</summary>
    public static volatile bool MarkTimedParts = true;

    /// <summary>The timed part's bounds on standard error (local time), for a profiler that records the whole command.</summary>
    private static void MarkTimedPart(string edge, CowStoreSetup setup)
    {
        if (MarkTimedParts)
            Console.Error.WriteLine($"timed part: {edge} {DateTime.Now:HH:mm:ss.fff} ({setup.Snapshots} snapshots, {setup.Mode})");
    }

    public static async Task<CowStoreResult> RunAsync(CowStoreSetup setup, long expectedChunksPerSnapshot, Workload workload, CancellationToken ct)
    {
        using var dir = new TempFile("cow-store");
        try
        {
            var options = new StoreOptions
            {
                OriginSectors = setup.OriginSectors, ChunkSectors = setup.ChunkSectors, WriteThrough = setup.WriteThrough,
                LogBlocks = CowStoreSetup.LogBlocks, MetadataMode = setup.Mode, DeferCopiedWrites = setup.DeferWrites,
            };
            var store = await SnapshotStore.CreateAsync(dir.Path, options, ct).ConfigureAwait(false);
            try
            {
                for (int s = 0; s < setup.Snapshots; s++)
                    await store.CreateSnapshotAsync($"s{s}", new SnapshotOptions { CowSectors = setup.CowSectors, Preallocate = setup.Preallocate }, ct).ConfigureAwait(false);
                await store.FlushAsync(ct).ConfigureAwait(false);
                if (setup.ColdCache) PageCache.DropFolder(dir.Path);

                var latency = new LatencyHistogram();
                long log0 = store.LogDeviceCounters.BytesWritten, logFlush0 = store.LogDeviceCounters.Flushes;
                long cow0 = store.CowBytesWritten, origin0 = store.OriginDevice.Counters.Flushes;
                var commit0 = store.CommitStatistics;
                long heap0 = GC.GetTotalMemory(forceFullCollection: true); // untimed
                var meter = ProcessMeter.Start();
                MarkTimedPart("start", setup);
                var (writes, bytes) = await workload(store, latency, ct).ConfigureAwait(false);
                long written = System.Diagnostics.Stopwatch.GetTimestamp();
                if (!setup.WriteThrough) await store.FlushAsync(ct).ConfigureAwait(false);
                var usage = meter.Stop();
                MarkTimedPart("end", setup);
                long kept = GC.GetTotalMemory(forceFullCollection: true) - heap0; // untimed
                double flushSeconds = System.Diagnostics.Stopwatch.GetElapsedTime(written).TotalSeconds;
                var commit = CommitDelta.Between(commit0, store.CommitStatistics);
                long logBytes = store.LogDeviceCounters.BytesWritten - log0;
                long logFlushes = store.LogDeviceCounters.Flushes - logFlush0;
                long originFlushes = store.OriginDevice.Counters.Flushes - origin0;
                long copies = commit.Exceptions * setup.ChunkSectors * (long)BlockDevice.SectorSize;
                long cowMeta = store.CowBytesWritten - cow0 - copies;
                CheckSnapshots(store, expectedChunksPerSnapshot, setup);
                return new CowStoreResult(setup, writes, bytes, usage.Wall.TotalSeconds, flushSeconds, latency, logBytes, cowMeta, commit, logFlushes, originFlushes, usage, kept);
            }
            finally
            {
                await store.CloseAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        finally
        {
            try { if (Directory.Exists(dir.Path)) Directory.Delete(dir.Path, true); } catch (IOException) { }
        }
    }

    /// <summary>A run whose snapshot lost its point-in-time data (a full COW file) measured something else: refuse it.</summary>
    private static void CheckSnapshots(SnapshotStore store, long expectedChunks, CowStoreSetup setup)
    {
        foreach (var s in store.GetStatus().Snapshots)
        {
            if (!s.IsValid)
                throw new IOException($"snapshot {s.Name} became invalid during the run ({s.InvalidReason}); COW size {setup.CowSectors?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "full copy"} sectors");
            if (s.Exceptions != expectedChunks)
                throw new IOException($"snapshot {s.Name} holds {s.Exceptions} exceptions after the run, expected {expectedChunks} (one per chunk written)");
        }
    }
}
