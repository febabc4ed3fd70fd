using Journal.Testing;
using Journal.Tests.Cil;
using static Journal.Tests.Cil.CommitPathTests;
using static Journal.Tests.Cil.JournalFixture;

namespace Journal.Tests.Memory;

public sealed class MemoryPressureTests
{
    /// <summary>
    /// 64 committers grow their items (each growth needs a new, larger vector from the pool) while the allocator
    /// fails, then stalls, then recovers. The push must keep completing throughout (it only uses memory it holds or
    /// the reserve), commits must all finish, the pool must stay within its budget, and emergency use must be visible.
    /// </summary>
    /// <remarks>
    /// Run twice: over an in-memory log model, and over the real log writer on a memory device, whose in-core buffers
    /// beyond its reserve of two are rented from the same pool (and so from the same failing or stalling allocator).
    /// </remarks>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task PushCompletes_AndCommitsResume_WhileTheAllocatorFailsOrStalls(bool realLog)
    {
        var alloc = new FlakyAllocator();
        const long budget = 2 << 20;
        var options = SmallOptions(16384, b =>
        {
            b.Budget = budget;
            b.Reserve = 512 << 10;
            b.EmergencyBuffer = 16 << 10;
            b.EmergencyAfter = TimeSpan.FromMilliseconds(20);
            b.Allocator = alloc;
            b.BufferCount = 8;
        });
        using var device = new GatedDevice(new MemoryBlockDevice(16384, "log")) { AsyncFlushes = true };
        var j = realLog
            ? MetadataJournal.Create(new Journal.Format.LogRegion(device, 0, 16384), options)
            : MetadataJournal.Create(new MemoryLogSink(16384, 8192), options);
        var home = new TestHome();
        const int committers = 64;
        var items = Enumerable.Range(0, committers).Select(i => new TestItem(home, (ulong)i)).ToArray();
        var versions = new long[committers];

        async Task Round(int size)
        {
            await Task.WhenAll(Enumerable.Range(0, committers).Select(i => Task.Run(async () =>
            {
                await CommitAsync(j, items[i], ++versions[i], size);
                await CommitAsync(j, items[i], ++versions[i], size); // a relog in place
            })));
        }

        await Round(100).WaitAsync(Watchdog);
        await j.ForceAllAsync().AsTask().Within(j);

        // Phase 1: allocation fails. Growing needs new vectors: committers wait, then use the reserve.
        alloc.Set(FlakyAllocator.Mode.Fail);
        var failing = Round(1000);
        await WaitUntil(() => j.Statistics.MemoryWaits > 0);
        await j.ForceAllAsync().AsTask().Within(j); // the push completes with the allocator failing
        await failing.Within(j); // emergency buffers recycle through completed pushes
        await j.ForceAllAsync().AsTask().Within(j);
        Assert.True(j.MemoryStatistics.EmergencyMax > 0);

        // Phase 2: allocation stalls (blocks its caller, outside every journal lock).
        alloc.Set(FlakyAllocator.Mode.Stall);
        var stalling = Round(3000);
        await WaitUntil(() => Interlocked.Read(ref alloc.Stalls) > 0);
        var forceTask = j.ForceAllAsync().AsTask();
        await forceTask.Within(j); // pushes still complete
        ulong forced = await forceTask;
        Assert.True(forced <= j.DurableSequence);

        // Memory returns: every commit finishes.
        alloc.Set(FlakyAllocator.Mode.Normal);
        await stalling.Within(j);
        await Round(200).WaitAsync(Watchdog);
        await j.ForceAllAsync().AsTask().Within(j);

        var mem = j.MemoryStatistics;
        Assert.True(mem.PoolPeakBytes <= budget, $"pool peak {mem.PoolPeakBytes} over budget {budget}");
        if (realLog)
        {
            // The log's buffers were under the same pressure: writes found every held buffer in use, and renting
            // from the failing or stalled pool either failed or waited behind the allocator.
            var w = ((Journal.Log.LogWriter)j.Log).Statistics;
            Assert.Equal(2, mem.LogBuffersReserved);
            Assert.True(w.BufferMemoryWaits > 0 && w.BuffersRented > 0, w.ToString());
        }
        Assert.True(mem.EmergencyTotal > 0);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
        Assert.Equal(0, j.MemoryStatistics.EmergencyCurrent); // every emergency buffer went back
        foreach (var it in items)
        {
            Assert.True(home.TryGet(it.ItemId, out var data, out _));
            Assert.Equal(versions[it.ItemId], TestItem.VersionOf(data));
        }
    }
}
