using Journal.Tests.Storage;
using Snapshot;
using Xunit.Abstractions;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

/// <summary>
/// The steady origin write path allocates (almost) nothing per write: pending exceptions, copy plans, commit rounds
/// and completions are pooled, and the hot async methods use pooled state machines. Measured over many first writes
/// (each copying a chunk into one snapshot) and many overwrites on a store on memory devices.
/// </summary>
[Collection(Journal.Tests.Cil.AllocationMeasurement.Name)]
public sealed class WritePathAllocationTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Origin_writes_allocate_almost_nothing_per_write()
    {
        // The lowest of three trials: other tests' leftovers (a server or kicker finishing) allocate on their own
        // threads, and the process-wide counter sees them; the write path's own cost is the floor.
        double perFirst = double.MaxValue, perOver = double.MaxValue;
        for (int trial = 0; trial < 3; trial++)
        {
            var (first, over) = await MeasureAsync();
            perFirst = Math.Min(perFirst, first);
            perOver = Math.Min(perOver, over);
        }
        output.WriteLine($"first writes: {perFirst:F1} B/write; overwrites: {perOver:F1} B/write");
        // A first write allocates nothing of its own (pooled exceptions, plans, rounds, completions; pooled state
        // machines), and neither do its commit round and journal checkpoint (reused contexts, pooled force waiters).
        // What remains is the new exception's own metadata, kept while the snapshot lives: its run in the exception
        // table (24 bytes; the table grows by pages, so growth leaves no garbage) and its share of the table's buckets,
        // and its 16-byte entry in a metadata segment until the segment is home. 79 bytes a write before the
        // checkpoints were made allocation-free.
        Assert.True(perFirst < 64, $"{perFirst:F1} bytes allocated per first write");
        Assert.True(perOver < 16, $"{perOver:F1} bytes allocated per overwrite");
    }

    /// <summary>
    /// The same with <see cref="StoreOptions.DeferCopiedWrites"/>: a deferred write's data buffer comes from the store's
    /// pool (a 4 KiB buffer per write, the smallest size class, would show as 4,096 bytes a write or more), and its
    /// background half is a state machine on the pooled deferred-write object, not an async method (each of thousands
    /// outstanding would hold a state box: about 530 bytes a write here when it was one). On memory devices the writers
    /// outrun the rounds, so deferred writes pile up to their bound during the measurement. 512-byte chunks and writes
    /// (so the bound holds 8,192 of them), three quarters of 32,768 chunks as warm-up.
    /// </summary>
    [Fact]
    public async Task Deferred_origin_writes_allocate_almost_nothing_per_write()
    {
        double perFirst = double.MaxValue;
        for (int trial = 0; trial < 3; trial++) perFirst = Math.Min(perFirst, (await MeasureAsync(deferWrites: true)).First);
        output.WriteLine($"deferred first writes: {perFirst:F1} B/write");
        // As for a first write without deferral, plus the thread-pool work item that resumes the write after its round.
        Assert.True(perFirst < 160, $"{perFirst:F1} bytes allocated per deferred first write");
    }

    /// <summary>
    /// The data buffers of deferred writes go back to the store's pool for the next ones (so a steady stream allocates
    /// none), and the pool gives them back at full collections once deferred writes stop: the first collection after a
    /// burst keeps what the burst needed, the next, with no deferred write in between, keeps nothing. Writes after that
    /// are still deferred and still land. (In this collection: the forced collections would disturb the measurements
    /// of the tests above if they ran at the same time.)
    /// </summary>
    [Fact]
    public async Task Deferred_write_buffers_kept_for_reuse_are_given_back_at_full_collections_once_writes_stop()
    {
        const int chunks = 64, chunkSectors = 8;
        await using var store = await CreateMemoryStoreAsync(new TestDeviceProvider(), chunks * chunkSectors, chunkSectors, deferWrites: true);
        await store.CreateSnapshotAsync("s").AsTask().WaitAsync(Watchdog);
        var data = new byte[chunkSectors * 512];
        await WriteChunksAsync(store, data, 0, chunks / 2);
        await store.FlushAsync().AsTask().WaitAsync(Watchdog);
        var path = store.DataPath;
        Assert.True(store.GetStatus().DeferredWrites > 0, "no write was deferred");
        Assert.True(store.GetStatus().DeferredBytesKept > 0, "no data buffer was kept for reuse");
        for (int i = 0; i < 2; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        output.WriteLine($"kept after two full collections: {path.DeferredBytesKept} bytes, {path.DeferredObjectsKept} objects");
        Assert.Equal(0, store.GetStatus().DeferredBytesKept);
        Assert.Equal(0, path.DeferredObjectsKept);
        long deferred = store.GetStatus().DeferredWrites;
        data.AsSpan().Fill(7);
        await WriteChunksAsync(store, data, chunks / 2, chunks);
        await store.FlushAsync().AsTask().WaitAsync(Watchdog);
        Assert.True(store.GetStatus().DeferredWrites > deferred, "no write was deferred after the pools were trimmed");
        var back = new byte[data.Length];
        await store.Origin.ReadAsync((long)(chunks - 1) * chunkSectors, back).AsTask().WaitAsync(Watchdog);
        Assert.Equal(data, back);
    }

    private static async Task<(double First, double Over)> MeasureAsync(bool deferWrites = false)
    {
        int chunks = deferWrites ? 32768 : 8192;
        int chunkSectors = deferWrites ? 1 : 8;
        int warm = deferWrites ? chunks * 3 / 4 : chunks / 2;
        // A COW flush that takes a millisecond, as a disk's does, so a commit round gathers the writers that queue
        // meanwhile (on memory devices a flush takes no time and rounds hold a write or two, which would measure the
        // per-round cost, not the per-write one).
        var p = new TestDeviceProvider { Wrap = (path, d) => path.EndsWith(".cow", StringComparison.Ordinal) ? new SlowFlushDevice(d) : d };
        await using var store = await CreateMemoryStoreAsync(p, (long)chunks * chunkSectors, chunkSectors, deferWrites: deferWrites);
        await store.CreateSnapshotAsync("s").AsTask().WaitAsync(Watchdog);
        // The memory device reallocates its array when the COW file grows: grow it once up front, so what is measured
        // is the write path, not the test device.
        p.Backing(store.CowPathOf("s")).Extend(store.FullCopyCowSectors);
        var data = new byte[chunkSectors * 512];
        // Warm up the pools, the journal and the thread pool on the first part.
        await WriteChunksAsync(store, data, 0, warm);
        long before = GC.GetTotalAllocatedBytes(precise: true);
        await WriteChunksAsync(store, data, warm, chunks);
        long firstWrites = GC.GetTotalAllocatedBytes(precise: true) - before;
        if (deferWrites) return ((double)firstWrites / (chunks - warm), 0);
        before = GC.GetTotalAllocatedBytes(precise: true);
        await WriteChunksAsync(store, data, 0, chunks);
        long overwrites = GC.GetTotalAllocatedBytes(precise: true) - before;
        return ((double)firstWrites / (chunks - warm), (double)overwrites / chunks);
    }

    /// <summary>
    /// A device whose flush takes about a millisecond: the asynchronous one waits, the synchronous one (the commit
    /// pipeline's, on its own thread) blocks its thread, as a disk's fdatasync does.
    /// </summary>
    private sealed class SlowFlushDevice(Journal.Storage.BlockDevice inner) : Journal.Tests.Storage.ForwardingDevice(inner)
    {
        protected override void FlushCore()
        {
            Thread.Sleep(1);
            Inner.Flush();
        }

        protected override async ValueTask FlushCoreAsync(CancellationToken cancellationToken)
        {
            await Task.Delay(1, cancellationToken);
            Inner.Flush();
        }
    }

    private static async Task WriteChunksAsync(SnapshotStore store, byte[] data, int from, int to)
    {
        const int writers = 64;
        int next = from - 1;
        var tasks = new Task[writers];
        for (int w = 0; w < writers; w++)
            tasks[w] = Task.Run(async () =>
            {
                int c;
                while ((c = Interlocked.Increment(ref next)) < to)
                    await store.Origin.WriteAsync((long)c * (data.Length / 512), data);
            });
        await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromMinutes(2));
    }
}
