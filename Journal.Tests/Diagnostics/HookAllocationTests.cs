using Journal.Tests.Cil;
using static Journal.Tests.Cil.JournalFixture;

namespace Journal.Tests.Diagnostics;

/// <summary>
/// Metrics and logging add nothing to the commit path: with a <see cref="System.Diagnostics.Metrics.MeterListener"/>
/// collecting every Journal instrument in a loop on another thread and a logger with every level enabled, a committing
/// thread allocates 0 bytes per commit and nothing under the context lock. Runs alone (see
/// <see cref="ContextLockAllocationTests"/> for why) and measures a second pass only.
/// </summary>
[Collection(AllocationMeasurement.Name)]
public sealed class HookAllocationTests
{
    [Fact]
    public async Task Commits_AllocateNothing_WhileMetricsAreCollectedAndLoggingIsOn()
    {
        var logger = new ListLogger();
        var o = SmallOptions(8192);
        var options = new JournalOptions
        {
            LogSizeBytes = o.LogSizeBytes, LogBufferCount = o.LogBufferCount, LogBufferSize = o.LogBufferSize,
            MemoryBudgetBytes = o.MemoryBudgetBytes, EmergencyReserveBytes = o.EmergencyReserveBytes,
            EmergencyBufferBytes = o.EmergencyBufferBytes, Name = "alloc-" + Guid.NewGuid().ToString("N"), Logger = logger,
        };
        var (j, _) = Create(8192, options);
        using var reader = new MeterReader(j.Name);
        using var stop = new CancellationTokenSource();
        long collections = 0;
        var collector = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                var m = reader.Collect();
                Assert.True(m.ContainsKey("journal.commits"));
                Interlocked.Increment(ref collections);
            }
        });

        var items = Enumerable.Range(0, 4).Select(i => new TestItem(new TestHome(), (ulong)i)).ToArray();
        int reserve = Reserve(j, items[0], null);
        const int commits = 20_000;
        long allocated = -1;
        void Pass()
        {
            for (int i = 0; i < commits; i++)
            {
                var item = items[i % items.Length];
                var begin = j.BeginTransactionAsync(reserve);
                var tx = begin.Result;                               // completes synchronously: log space is free
                using (item.Lock())
                {
                    tx.AddItem(item);
                    tx.Commit();
                }
                tx.Dispose();
            }
        }
        var thread = new Thread(() =>
        {
            Pass();                                                  // warm-up: JIT, pools, shadows
            j.Cil.MeasureLockAllocations = true;
            long before = GC.GetAllocatedBytesForCurrentThread();
            Pass();
            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            j.Cil.MeasureLockAllocations = false;
        });
        thread.Start();
        await Task.Run(thread.Join).WaitAsync(Watchdog);
        await CommitPathTests.WaitUntil(() => Interlocked.Read(ref collections) >= 3);
        stop.Cancel();
        await collector.WaitAsync(Watchdog);

        Assert.Equal(0, allocated);
        Assert.Equal(0, j.Cil.LockAllocatedBytes);
        Assert.True(j.Cil.LockedSections >= commits);
        Assert.Equal(2L * commits, j.Statistics.Commits);
        Assert.Contains(logger.Entries, e => e.EventId.Id == Journal.Diagnostics.JournalEventIds.Started); // the logger is live
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }
}
