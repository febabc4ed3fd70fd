using Journal.Tests.Cil;
using static Journal.Tests.Cil.CommitPathTests;
using static Journal.Tests.Cil.JournalFixture;

namespace Journal.Tests.Ail;

public sealed class AilTests
{
    [Fact]
    public async Task ItemsOfADurableCheckpoint_EnterTheAilAtItsStartLsn_AndRelogsMoveThem()
    {
        var (j, sink) = Create();
        var home = new TestHome();
        var a = new TestItem(home, 1);
        var b = new TestItem(home, 2);
        Commit(j, a, 1);
        ulong s1 = Commit(j, b, 1);
        await j.ForceAsync(s1).AsTask().WaitAsync(Watchdog);
        var cps = Checkpoints(sink.Crash());
        Assert.True(a.IsInAil && b.IsInAil);
        Assert.Equal(cps[0].Start, a.AilLsn);
        Assert.Equal(cps[0].Start, b.AilLsn);
        Assert.Equal(2, j.Statistics.AilItems);

        ulong s2 = Commit(j, a, 2);
        Assert.True(a.IsPinned); // in a context not yet durable
        Assert.Equal(cps[0].Start, a.AilLsn); // stays at the old LSN until the new checkpoint is durable
        await j.ForceAsync(s2).AsTask().WaitAsync(Watchdog);
        cps = Checkpoints(sink.Crash());
        Assert.Equal(cps[1].Start, a.AilLsn);
        Assert.Equal(cps[0].Start, b.AilLsn);
        Assert.Equal(cps[0].Start, j.Ail.OldestLsn);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task WriteBack_SkipsPinnedItems_FlushesTheHomeDevice_RemovesItems_AndMovesTheTail()
    {
        var (j, sink) = Create();
        var home = new TestHome();
        var items = Enumerable.Range(0, 10).Select(i => new TestItem(home, (ulong)i)).ToArray();
        foreach (var it in items) Commit(j, it, 1);
        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        var firstStart = Checkpoints(sink.Crash())[0].Start;
        Assert.Equal(firstStart, j.Ail.OldestLsn);

        Commit(j, items[0], 2); // pinned by the new, not yet durable, context
        long flushesBefore = home.Device.Counters.Flushes;
        long written = await j.WriteBackAsync().AsTask().WaitAsync(Watchdog);
        Assert.Equal(9, written);
        Assert.Equal(flushesBefore + 1, home.Device.Counters.Flushes); // one flush for the whole batch
        Assert.False(home.TryGet(0, out _, out _));
        for (int i = 1; i < 10; i++)
        {
            Assert.True(home.TryGet((ulong)i, out var data, out var lsn));
            Assert.Equal(1, TestItem.VersionOf(data));
            Assert.Equal(firstStart, lsn);
            Assert.False(items[i].IsInAil);
            Assert.Null(items[i].Shadow); // idle items hold no journal memory
        }
        Assert.True(items[0].IsInAil);
        Assert.Equal(1, j.Statistics.AilItems);
        Assert.Equal(firstStart, sink.Tail); // item 0 still holds the tail at the first checkpoint

        ulong s2 = await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        var cps = Checkpoints(sink.Crash());
        Assert.Equal(cps[^1].Start, items[0].AilLsn);
        Assert.Equal(1, await j.WriteBackAsync().AsTask().WaitAsync(Watchdog));
        Assert.Equal(0, j.Statistics.AilItems);
        Assert.True(sink.Tail > cps[^1].Start); // nothing left: the tail moves to the head
        Assert.True(j.Statistics.TailMoves >= 1);

        // Later records carry the moved tail.
        var tail = sink.Tail;
        Commit(j, items[1], 3);
        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        var image = sink.Crash();
        Assert.Equal(tail, new Journal.Format.Lsn((uint)(image.Records[^1].Tail / sink.LogBlocks), (uint)(image.Records[^1].Tail % sink.LogBlocks)));
        // Recovery from that image starts at the tail: only the last checkpoint is replayed.
        Assert.Equal([s2 + 1], Checkpoints(image).Select(c => c.Sequence));
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task Reservation_WaitsWhileTheLogIsFull_AndProceedsWhenTheTailMoves()
    {
        const uint blocks = 256; // 128 KiB log
        var sink = new MemoryLogSink(blocks, 4096);
        var j = MetadataJournal.Create(sink, SmallOptions(blocks));
        var home = new TestHome();
        // Fill most of the log with durable checkpoints of distinct items that cannot be written home yet (nothing
        // is relogged, so nothing can move the tail).
        var items = new List<TestItem>();
        while (j.Space.Free > 40_000)
        {
            for (int i = 0; i < 8; i++)
            {
                var it = new TestItem(home, (ulong)items.Count) { RefuseWriteBack = true };
                items.Add(it);
                Commit(j, it, 1, 1500);
            }
            await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        }
        await j.WriteBackAsync().AsTask().WaitAsync(Watchdog);
        Assert.True(j.Space.Free <= 40_000);
        var waiting = j.BeginTransactionAsync(50_000).AsTask();
        await WaitUntil(() => j.Statistics.SpaceWaits == 1);
        await Task.Delay(50);
        Assert.False(waiting.IsCompleted);

        foreach (var it in items) it.RefuseWriteBack = false;
        var tx = await waiting.WaitAsync(Watchdog); // the AIL writes back, moves the tail, grants
        Assert.Equal(50_000, tx.ReservedBytes);
        Assert.True(j.Statistics.TailMoves >= 1);
        tx.Dispose();
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    /// <summary>Size knob: JOURNAL_AIL_WORKLOAD_COMMITS (default 20,000 commits on a 128 KiB log).</summary>
    [Fact]
    public async Task WorkloadManyTimesLargerThanTheLog_Completes()
    {
        int commits = int.TryParse(Environment.GetEnvironmentVariable("JOURNAL_AIL_WORKLOAD_COMMITS"), out var n) ? n : 20_000;
        const uint blocks = 256;
        var sink = new MemoryLogSink(blocks, 4096);
        var j = MetadataJournal.Create(sink, SmallOptions(blocks));
        var home = new TestHome();
        var items = Enumerable.Range(0, 300).Select(i => new TestItem(home, (ulong)i)).ToArray();
        var latest = new long[items.Length];
        var workers = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            var rnd = new Random(w);
            for (int i = 0; i < commits / 4; i++)
            {
                int k = rnd.Next(items.Length / 4) * 4 + w; // each worker owns a quarter of the items
                long ver = latest[k] + 1;
                await CommitAsync(j, items[k], ver, 100 + rnd.Next(400));
                latest[k] = ver;
                if (rnd.Next(50) == 0) await j.ForceAllAsync();
            }
        })).ToArray();
        try { await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(20)); }
        catch (TimeoutException)
        {
            Assert.Fail($"hang: {j.Statistics} free={j.Space.Free} outstanding={j.Space.Outstanding} used={sink.UsedBytes} head={sink.Head} tail={sink.Tail} durable={sink.DurableLsn} ail={j.Ail.Count} oldest={j.Ail.OldestLsn} cur={j.Cil.Current} pinned={items.Count(i => i.IsPinned)} waiters={j.Space.HasWaiters} tailwaits={sink.TailWaits} shutdown={j.Cil.ShutdownError}");
        }
        Assert.True(sink.BytesWritten > 10L * blocks * 512, $"only {sink.BytesWritten} log bytes for a {blocks * 512}-byte log");
        Assert.True(j.Statistics.TailMoves > 10);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
        for (int k = 0; k < items.Length; k++)
        {
            if (latest[k] == 0) continue;
            Assert.True(home.TryGet((ulong)k, out var data, out _));
            Assert.Equal(latest[k], TestItem.VersionOf(data));
        }
    }
}
