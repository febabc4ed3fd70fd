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
        const int chunks = 8192;
        var p = new TestDeviceProvider();
        await using var store = await CreateMemoryStoreAsync(p, chunks * 8L);
        await store.CreateSnapshotAsync("s").AsTask().WaitAsync(Watchdog);
        // The memory device reallocates its array when the COW file grows: grow it once up front, so what is measured
        // is the write path, not the test device.
        p.Backing(store.CowPathOf("s")).Extend(store.FullCopyCowSectors);
        var data = new byte[4096];
        // Warm up the pools, the journal and the thread pool on the first half.
        await WriteChunksAsync(store, data, 0, chunks / 2);
        long before = GC.GetTotalAllocatedBytes(precise: true);
        await WriteChunksAsync(store, data, chunks / 2, chunks);
        long firstWrites = GC.GetTotalAllocatedBytes(precise: true) - before;
        before = GC.GetTotalAllocatedBytes(precise: true);
        await WriteChunksAsync(store, data, 0, chunks);
        long overwrites = GC.GetTotalAllocatedBytes(precise: true) - before;
        double perFirst = (double)firstWrites / (chunks / 2), perOver = (double)overwrites / chunks;
        output.WriteLine($"first writes: {perFirst:F1} B/write; overwrites: {perOver:F1} B/write");
        Assert.True(perFirst < 600, $"{perFirst:F1} bytes allocated per first write");
        Assert.True(perOver < 64, $"{perOver:F1} bytes allocated per overwrite");
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
                    await store.Origin.WriteAsync(c * 8L, data);
            });
        await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromMinutes(2));
    }
}
