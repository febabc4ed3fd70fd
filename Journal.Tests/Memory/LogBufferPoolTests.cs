using Journal.Format;
using Journal.Log;
using Journal.Memory;
using Journal.Storage;
using Journal.Testing;
using Journal.Tests.Cil;
using static Journal.Tests.Cil.CommitPathTests;
using static Journal.Tests.Cil.JournalFixture;

namespace Journal.Tests.Memory;

/// <summary>
/// The log writer's in-core buffers under a journal: a reserve of two held from open to close, the rest rented from
/// the journal's budgeted pool when busy and given back when idle; writes never wait for the allocator.
/// </summary>
public sealed class LogBufferPoolTests
{
    private const int BufferSize = 4096; // small buffers: a checkpoint of 100 KiB spans dozens of records

    /// <summary>A journal on a memory device whose flushes wait for <see cref="GatedDevice.FlushGate"/> (a slow disk).</summary>
    private static (MetadataJournal Journal, GatedDevice Device) CreateJournal(FlakyAllocator alloc, long budget = 4 << 20)
    {
        var dev = new GatedDevice(new MemoryBlockDevice(8192, "log"));
        var j = MetadataJournal.Create(new LogRegion(dev, 0, 8192), new JournalOptions
        {
            LogSizeBytes = 8192 * 512,
            LogBufferCount = 8,
            LogBufferSize = BufferSize,
            MemoryBudgetBytes = budget,
            Allocator = alloc,
        });
        return (j, dev);
    }

    /// <summary>Commits <paramref name="count"/> items of 1000 bytes without forcing (one large checkpoint).</summary>
    private static void CommitMany(MetadataJournal j, TestHome home, int count, long version)
    {
        for (int i = 0; i < count; i++) Commit(j, new TestItem(home, (ulong)i), version, 1000);
    }

    private static LogWriterStatistics Writer(MetadataJournal j) => ((LogWriter)j.Log).Statistics;

    [Fact]
    public void Pool_ServesTheLogBufferSizeExactly_AndRecyclesIt()
    {
        var alloc = new FlakyAllocator();
        int size = new LogWriterOptions().BufferBytes; // 32 KiB + a header block: not a power of two
        var pool = new BoundedBufferPool(1 << 20, 0, 4096, alloc, exactBufferBytes: size);
        var a = pool.TryRent(size)!;
        Assert.Equal(size, a.Length);
        Assert.Equal(size, pool.CurrentBytes);
        pool.Return(a);
        Assert.Same(a, pool.TryRent(size));
        Assert.Equal(1, alloc.Allocations);
        Assert.Equal(128, pool.TryRent(100)!.Length); // other sizes keep their power-of-two classes
    }

    [Fact]
    public void AStandaloneWriter_HoldsAllItsBuffers()
    {
        using var dev = new MemoryBlockDevice(8192, "log");
        var region = new LogRegion(dev, 0, 8192);
        LogWriter.Format(region);
        using var w = LogWriter.Open(region);
        var st = w.Statistics;
        Assert.Equal(8, st.BuffersHeld);
        Assert.Equal(8, st.BuffersReserved);
    }

    [Fact]
    public async Task AJournalsWriter_HoldsTwoAtRest_RentsForABurst_AndGivesThemBackWhenIdle()
    {
        var alloc = new FlakyAllocator();
        var (j, dev) = CreateJournal(alloc);
        Assert.Equal(2, j.MemoryStatistics.LogBuffersHeld);
        Assert.Equal(2, j.MemoryStatistics.LogBuffersReserved);

        // Flushes held: no buffer comes back from the disk, so a checkpoint of dozens of records rents until the
        // writer holds all eight, then waits.
        var gate = new TaskCompletionSource();
        dev.FlushGate = gate.Task;
        var home = new TestHome();
        CommitMany(j, home, 100, 1);
        var force = j.ForceAllAsync().AsTask();
        await WaitUntil(() => Writer(j).BuffersHeld == 8 && Writer(j).BufferMemoryWaits > 0);
        Assert.Equal(6, Writer(j).BuffersRented);
        Assert.True(j.MemoryStatistics.PoolCurrentBytes >= 6 * (LogFormat.BlockSize + BufferSize));
        Assert.False(force.IsCompleted);

        gate.SetResult();
        await force.Within(j);
        var w = Writer(j);
        Assert.True(w.Records > 20, w.ToString());
        // Idle now: every rented buffer went back to the pool, the reserve stays.
        Assert.Equal(w.BuffersRented, w.BuffersReturned);
        Assert.Equal(2, j.MemoryStatistics.LogBuffersHeld);
        var mem = j.MemoryStatistics;
        Assert.True(mem.PoolPeakBytes <= mem.BudgetBytes, mem.ToString());
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Theory]
    [InlineData(FlakyAllocator.Mode.Fail)]
    [InlineData(FlakyAllocator.Mode.Stall)]
    public async Task LogWrites_ProgressOnTheReserve_WhileTheAllocatorCannotServeLogBuffers(FlakyAllocator.Mode mode)
    {
        // Only log-buffer requests fail or stall, from the start (so the pool has none cached), and the first flush is
        // held until a rent has been tried: a checkpoint spanning dozens of records must still be written and forced
        // on the two buffers the writer holds, while the allocator is still failing or stalled.
        var alloc = new FlakyAllocator { OnlyLength = LogFormat.BlockSize + BufferSize };
        var (j, dev) = CreateJournal(alloc);
        alloc.Set(mode);
        var home = new TestHome();
        try
        {
            var gate = new TaskCompletionSource();
            dev.FlushGate = gate.Task;
            CommitMany(j, home, 100, 1);
            var force = j.ForceAllAsync().AsTask();
            if (mode == FlakyAllocator.Mode.Fail) await WaitUntil(() => Writer(j).RentFailures > 0);
            else await WaitUntil(() => Interlocked.Read(ref alloc.Stalls) > 0); // a rent is blocked in the allocator
            gate.SetResult();
            await force.Within(j);
            var w = Writer(j);
            Assert.True(w.Records > 20, w.ToString());
            Assert.Equal(0, w.BuffersRented);
            Assert.Equal(2, w.BuffersHeld);
            if (mode == FlakyAllocator.Mode.Stall) Assert.True(((LogWriter)j.Log).RentRunning); // still stalled
        }
        finally
        {
            alloc.Set(FlakyAllocator.Mode.Normal);
        }
        // Memory is back: the next burst (flushes held again) rents.
        await WaitUntil(() => !((LogWriter)j.Log).RentRunning);
        var gate2 = new TaskCompletionSource();
        dev.FlushGate = gate2.Task;
        CommitMany(j, home, 100, 2);
        var force2 = j.ForceAllAsync().AsTask();
        await WaitUntil(() => Writer(j).BuffersRented > 0);
        gate2.SetResult();
        await force2.Within(j);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
        foreach (var id in Enumerable.Range(0, 100))
        {
            Assert.True(home.TryGet((ulong)id, out var data, out _));
            Assert.Equal(2, TestItem.VersionOf(data));
        }
    }
}
