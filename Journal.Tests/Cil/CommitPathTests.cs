using Journal.Format;
using static Journal.Tests.Cil.JournalFixture;

namespace Journal.Tests.Cil;

public sealed class CommitPathTests
{
    [Fact]
    public async Task Commit_ReturnsCurrentSequence_AndForceMakesItDurable()
    {
        var (j, sink) = Create();
        var home = new TestHome();
        var item = new TestItem(home, 1);
        ulong seq = await CommitAsync(j, item, 42);
        Assert.Equal(1UL, seq);
        Assert.True(item.IsPinned);
        await j.ForceAsync(seq).AsTask().WaitAsync(Watchdog);
        Assert.Equal(1UL, j.DurableSequence);
        Assert.False(item.IsPinned);
        Assert.True(item.IsInAil);
        var cps = Checkpoints(sink.Crash());
        Assert.Single(cps);
        Assert.Equal(1UL, cps[0].Sequence);
        Assert.Equal([(1UL, 42L, 64)], cps[0].Items);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
        Assert.True(home.TryGet(1, out var data, out var lsn));
        Assert.Equal(42, TestItem.VersionOf(data));
        Assert.Equal(cps[0].Start, lsn);
    }

    [Fact]
    public async Task RelogWithinOneCheckpoint_OverwritesInPlace_AndCostsOneItem()
    {
        var (j, sink) = Create();
        var item = new TestItem(new TestHome(), 9);
        ulong seq = 0;
        for (int i = 1; i <= 1000; i++) seq = Commit(j, item, i);
        var ctx = j.Cil.Current;
        Assert.Equal(seq, ctx.Sequence);
        Assert.Equal(1, ctx.ItemCount);
        Assert.Equal(j.Cil.CostModel.ItemCost(new LogItemSize(1, 64)), ctx.SpaceUsed);
        Assert.Equal(999, j.Statistics.Relogs);
        await j.ForceAsync(seq).AsTask().WaitAsync(Watchdog);
        var cps = Checkpoints(sink.Crash());
        Assert.Single(cps);
        Assert.Equal([(9UL, 1000L, 64)], cps[0].Items);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task GrowingItem_SwapsInTheShadow_AndKeepsTheOldVectorAsNextShadow()
    {
        var (j, _) = Create();
        var item = new TestItem(new TestHome(), 3);
        Commit(j, item, 1, 64);
        var first = item.Active;
        Assert.NotNull(first);
        Assert.Null(item.Shadow);

        Commit(j, item, 2, 1000);
        Assert.NotSame(first, item.Active);
        Assert.Same(first, item.Shadow);
        Assert.True(item.Active!.Buffer.Length >= 1000);

        var big = item.Active;
        Commit(j, item, 3, 100); // fits the big active vector: in place; the shadow stays
        Assert.Same(big, item.Active);
        Assert.Same(first, item.Shadow);
        Assert.Equal(1, j.Cil.Current.ItemCount);
        Assert.Equal(j.Cil.CostModel.ItemCost(new LogItemSize(1, 100)), j.Cil.Current.SpaceUsed);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task ItemRelogged_WhileItsCheckpointIsBeingWritten_LeavesTheWrittenCopyIntact()
    {
        var (j, sink) = Create();
        var item = new TestItem(new TestHome(), 5);
        var gate = new TaskCompletionSource();
        sink.WriteGate = gate.Task;

        ulong s1 = Commit(j, item, 1, 64);
        var force1 = j.ForceAsync(s1).AsTask();
        await WaitUntil(() => j.CurrentSequence == s1 + 1);
        // Checkpoint 1 is switched out and stalled in the log write; relog into the new context, same size and larger.
        ulong s2 = Commit(j, item, 2, 64);
        Assert.Equal(s1 + 1, s2);
        Commit(j, item, 3, 64);
        Commit(j, item, 4, 4000);
        Assert.False(force1.IsCompleted);

        gate.SetResult();
        await force1.WaitAsync(Watchdog);
        await j.ForceAsync(s2).AsTask().WaitAsync(Watchdog);
        var cps = Checkpoints(sink.Crash());
        Assert.Equal(2, cps.Count);
        Assert.Equal([(5UL, 1L, 64)], cps[0].Items);
        Assert.Equal([(5UL, 4L, 4000)], cps[1].Items);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task ItemJoinedToAnOpenTransaction_CannotJoinAnother()
    {
        var (j, _) = Create();
        var item = new TestItem(new TestHome(), 1);
        using var a = await j.BeginTransactionAsync(0);
        using var b = await j.BeginTransactionAsync(0);
        using (item.Lock())
        {
            a.AddItem(item);
            a.AddItem(item); // twice in the same one is fine
            Assert.Equal(1, a.Count);
            Assert.Throws<InvalidOperationException>(() => b.AddItem(item));
            a.Commit();
            b.AddItem(item); // free again after commit
            b.Commit();
        }
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task DisposeWithoutCommit_CancelsAndReturnsTheReservation()
    {
        var (j, _) = Create();
        var item = new TestItem(new TestHome(), 1);
        var tx = await j.BeginTransactionAsync(5000);
        Assert.Equal(5000, j.Space.Outstanding);
        using (item.Lock())
        {
            tx.AddItem(item);
            tx.Dispose();
        }
        Assert.Equal(0, j.Space.Outstanding);
        Assert.Equal(0, j.Statistics.Commits);
        Assert.False(item.IsPinned);
        using var tx2 = await j.BeginTransactionAsync(0);
        using (item.Lock()) tx2.AddItem(item); // the cancelled transaction released it
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task CommittedTransaction_KeepsOnlyItsCheckpointsReservation()
    {
        var (j, _) = Create();
        var item = new TestItem(new TestHome(), 1);
        long estimate = j.EstimateLogBytes(item.GetLogSize());
        using (var tx = await j.BeginTransactionAsync((int)estimate * 3))
        using (item.Lock())
        {
            tx.AddItem(item);
            tx.Commit();
        }
        // What is left reserved is exactly what the checkpoint needs: the item and the checkpoint's overhead.
        Assert.Equal(estimate, j.Space.Outstanding);
        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        Assert.Equal(0, j.Space.Outstanding);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task ItemThatFormatsMoreThanItReported_ShutsTheJournalDown()
    {
        var (j, _) = Create();
        var liar = new LyingItem();
        using var tx = await j.BeginTransactionAsync(0);
        tx.AddItem(liar);
        var e = Assert.Throws<JournalException>(() => tx.Commit());
        Assert.Contains("shut down", e.Message);
        await Assert.ThrowsAsync<JournalException>(async () => await j.BeginTransactionAsync(0));
        await Assert.ThrowsAsync<JournalException>(async () => await j.CloseAsync());
    }

    [Fact]
    public async Task ItemReportingAnImpossibleSize_IsRejectedBeforeAnythingChanges()
    {
        var (j, _) = Create();
        var item = new TestItem(new TestHome(), 1) { Regions = 70000 };
        using (var tx = await j.BeginTransactionAsync(0))
        using (item.Lock())
        {
            tx.AddItem(item);
            var e = Assert.Throws<JournalArgumentException>(() => tx.Commit());
            Assert.Contains("log item 7:1", e.Message);
        }
        Assert.Equal(0, j.Cil.Current.ItemCount);
        item.Regions = 1;
        Commit(j, item, 1);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    internal static async Task WaitUntil(Func<bool> condition, string? what = null)
    {
        var deadline = DateTime.UtcNow + Watchdog;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) Assert.Fail(what ?? "condition not reached before the watchdog");
            await Task.Delay(1);
        }
    }

    private sealed class LyingItem() : LogItem(TestHome.ItemType, 99)
    {
        public override LogItemSize GetLogSize() => new(1, 10);
        public override void FormatLog(LogVectorWriter writer) => writer.AddRegion(20);
        public override ValueTask<bool> WriteBackAsync(Lsn lsn, CancellationToken cancellationToken) => ValueTask.FromResult(true);
        public override Journal.Storage.BlockDevice? HomeDevice => null; // no home copy
    }
}

/// <summary>
/// The zero-allocation rule of the context lock. These run alone (not in parallel with other test classes) and measure
/// a second pass of their workload only: GC.GetAllocatedBytesForCurrentThread counts what the runtime does on the
/// calling thread too (the JIT compiling a method the first time it runs, allocation-context bookkeeping while other
/// threads allocate heavily), which is not the commit path allocating.
/// </summary>
[Collection(AllocationMeasurement.Name)]
public sealed class ContextLockAllocationTests
{
    [Fact]
    public async Task CommittingThread_AllocatesNothing_WhileHoldingTheContextLock()
    {
        var (j, _) = Create(8192);
        var home = new TestHome();
        var items = Enumerable.Range(0, 16).Select(i => new TestItem(home, (ulong)i) { Regions = 1 + i % 4 }).ToArray();
        const int commits = 6000;
        async Task Pass()
        {
            var rnd = new Random(5);
            for (int i = 0; i < commits; i++)
            {
                var item = items[i % items.Length];
                // Sizes grow and shrink: a sawtooth plus noise, 16 B .. ~3 KiB.
                int size = 16 + (i * 37 % 3000) + rnd.Next(64);
                Commit(j, item, i, size);
                if (i % 250 == 0) await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
            }
            await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        }
        await Pass();
        long pushes = j.Statistics.Pushes, relogs = j.Statistics.Relogs;
        j.Cil.MeasureLockAllocations = true;
        await Pass();
        j.Cil.MeasureLockAllocations = false;
        var stats = j.Statistics;
        Assert.True(j.Cil.LockedSections >= commits, $"only {j.Cil.LockedSections} locked sections measured");
        Assert.True(stats.Pushes - pushes >= 20, $"only {stats.Pushes - pushes} pushes");
        Assert.True(stats.Relogs - relogs > commits / 2, $"only {stats.Relogs - relogs} relogs");
        Assert.Equal(0, j.Cil.LockAllocatedBytes);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task ConcurrentCommitters_AllocateNothing_WhileHoldingTheContextLock()
    {
        var (j, _) = Create(8192);
        var home = new TestHome();
        var items = Enumerable.Range(0, 4).Select(t => Enumerable.Range(0, 8).Select(i => new TestItem(home, (ulong)(t * 100 + i)) { Regions = 1 + i % 3 }).ToArray()).ToArray();
        Task Pass() => Task.WhenAll(Enumerable.Range(0, 4).Select(t => Task.Run(async () =>
        {
            for (int i = 0; i < 2000; i++)
            {
                Commit(j, items[t][i % 8], i, 16 + (i * 53 % 1500));
                if (i % 300 == 0) await j.ForceAllAsync();
            }
        })));
        await Pass().WaitAsync(Watchdog);
        j.Cil.MeasureLockAllocations = true;
        await Pass().WaitAsync(Watchdog);
        j.Cil.MeasureLockAllocations = false;
        Assert.True(j.Cil.LockedSections >= 8000);
        Assert.Equal(0, j.Cil.LockAllocatedBytes);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

}

/// <summary>Tests that measure allocations run alone: no other test class runs beside them.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AllocationMeasurement
{
    public const string Name = "allocation measurement";
}
