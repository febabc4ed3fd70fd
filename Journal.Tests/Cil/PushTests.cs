using static Journal.Tests.Cil.CommitPathTests;
using static Journal.Tests.Cil.JournalFixture;

namespace Journal.Tests.Cil;

public sealed class PushTests
{
    [Fact]
    public async Task BackgroundPush_StartsAtTheSoftLimit_WithoutAnyForce()
    {
        var sink = new MemoryLogSink(2048, 8192);
        var j = MetadataJournal.Create(sink, SmallOptions(2048, b => b.Soft = 16 << 10));
        var home = new TestHome();
        long cost = j.Cil.CostModel.ItemCost(new LogItemSize(1, 256));
        int needed = (int)((16 << 10) / cost) + 1;
        for (int i = 0; i < needed - 1; i++) Commit(j, new TestItem(home, (ulong)i), i, 256);
        Assert.Equal(0, j.Statistics.Pushes); // below the soft limit nothing is pushed
        Commit(j, new TestItem(home, 10_000), 1, 256);
        await WaitUntil(() => j.Statistics.Checkpoints >= 1 && j.DurableSequence >= 1);
        Assert.Equal(0, j.Statistics.Forces);
        Assert.Equal(2UL, j.CurrentSequence);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task CommitRecords_OfOverlappingPushes_ReachTheLogInSequenceOrder()
    {
        var sink = new MemoryLogSink(4096, 8192);
        var j = MetadataJournal.Create(sink, SmallOptions(4096, b => { b.Soft = 16 << 10; b.Hard = 32 << 10; }));
        var home = new TestHome();
        var commits = new List<(uint Tid, Journal.Format.Lsn Lsn)>();
        sink.OnCommitWritten = (tid, lsn) => { lock (commits) commits.Add((tid, lsn)); };
        var gate = new TaskCompletionSource();
        sink.WriteGate = gate.Task;
        for (int k = 0; k < 3; k++)
        {
            // Each checkpoint gets a different number of items, so their writes take different times; a committer
            // over the hard limit makes the push switch although the previous checkpoint is still stalled.
            for (int i = 0; i < 5 * (2 - k); i++) Commit(j, new TestItem(home, (ulong)(k * 100 + i)), k, 128);
            ulong seq = j.CurrentSequence;
            await Task.Run(() => Commit(j, new TestItem(home, (ulong)(k * 100 + 99)), k, 40_000)).WaitAsync(Watchdog);
            Assert.Equal(seq + 1, j.CurrentSequence);
        }
        // Three checkpoints switched out, all stalled in the log: release them together.
        gate.SetResult();
        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        var cps = Checkpoints(sink.Crash());
        Assert.Equal([1UL, 2UL, 3UL], cps.Select(c => c.Sequence));
        Assert.Equal([11, 6, 1], cps.Select(c => c.Items.Count));
        Assert.Equal(3, commits.Count);
        Assert.True(commits[0].Lsn <= commits[1].Lsn && commits[1].Lsn <= commits[2].Lsn);
        Assert.True(cps[0].Start <= cps[1].Start && cps[1].Start <= cps[2].Start);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task ForcedPushes_WaitForThePreviousCheckpoint_SoConcurrentCommitsGoOutTogether()
    {
        var (j, sink) = Create();
        var home = new TestHome();
        var gate = new TaskCompletionSource();
        sink.FlushGate = gate.Task;
        ulong s1 = Commit(j, new TestItem(home, 1), 1);
        var f1 = j.ForceAsync(s1).AsTask();
        await WaitUntil(() => j.CurrentSequence == s1 + 1);
        // While checkpoint 1 waits for its flush, forced commits gather in the next context instead of being pushed
        // one by one.
        var forces = new List<Task>();
        for (int i = 2; i <= 10; i++) forces.Add(j.ForceAsync(Commit(j, new TestItem(home, (ulong)i), 1)).AsTask());
        await Task.Delay(50);
        Assert.Equal(s1 + 1, j.CurrentSequence);
        Assert.Equal(9, j.Cil.Current.ItemCount);
        gate.SetResult();
        await Task.WhenAll(forces).WaitAsync(Watchdog);
        await f1.WaitAsync(Watchdog);
        Assert.Equal(2, j.Statistics.Checkpoints);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task Committer_OverTheHardLimit_WaitsUntilThePushSwitchesContexts()
    {
        var sink = new MemoryLogSink(2048, 8192);
        var j = MetadataJournal.Create(sink, SmallOptions(2048, b => { b.Soft = 32 << 10; b.Hard = 64 << 10; }));
        var home = new TestHome();
        var gate = new TaskCompletionSource();
        sink.WriteGate = gate.Task;
        await FillPushSlots(j, home);
        long waits = j.Statistics.HardLimitWaits;

        // The push cannot switch now (every push slot is busy), so crossing the hard limit must block.
        var big = Enumerable.Range(0, 3).Select(i => new TestItem(home, (ulong)(500 + i))).ToArray();
        Commit(j, big[0], 1, 30_000);
        Commit(j, big[1], 1, 30_000);
        var blocked = Task.Run(() => Commit(j, big[2], 1, 30_000));
        await WaitUntil(() => j.Statistics.HardLimitWaits == waits + 1);
        Assert.False(blocked.IsCompleted);

        gate.SetResult(); // slots free up, the push switches, the committer is woken
        ulong seq = await blocked.WaitAsync(Watchdog);
        Assert.True(j.CurrentSequence > seq);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task ThrottledCommitter_IsWoken_WhenARelogShrinksTheContextBelowTheHardLimit()
    {
        var sink = new MemoryLogSink(2048, 8192);
        var j = MetadataJournal.Create(sink, SmallOptions(2048, b => { b.Soft = 32 << 10; b.Hard = 64 << 10; }));
        var home = new TestHome();
        var gate = new TaskCompletionSource();
        sink.WriteGate = gate.Task;
        await FillPushSlots(j, home);
        long waits = j.Statistics.HardLimitWaits;

        var y = new TestItem(home, 600);
        var x = new TestItem(home, 601);
        Commit(j, y, 1, 50_000);
        var blocked = Task.Run(() => Commit(j, x, 1, 20_000));
        await WaitUntil(() => j.Statistics.HardLimitWaits == waits + 1);
        Assert.False(blocked.IsCompleted);

        Commit(j, y, 2, 1000); // space goes backwards, below the hard limit
        await blocked.WaitAsync(Watchdog); // woken while the log is still stalled
        Assert.False(gate.Task.IsCompleted);
        gate.SetResult();
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task ManyCommitters_AtTheHardLimit_AllComplete_AndEveryCommitIsLogged()
    {
        var sink = new MemoryLogSink(4096, 8192) { WriteDelay = TimeSpan.FromMilliseconds(1) };
        var j = MetadataJournal.Create(sink, SmallOptions(4096, b => { b.Soft = 8 << 10; b.Hard = 16 << 10; }));
        var home = new TestHome();
        var items = Enumerable.Range(0, 64).Select(i => new TestItem(home, (ulong)i)).ToArray();
        var tasks = items.Select(item => Task.Run(async () =>
        {
            for (int v = 1; v <= 40; v++) await CommitAsync(j, item, v, 200 + v * 10);
        })).ToArray();
        await Task.WhenAll(tasks).WaitAsync(Watchdog);
        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        Assert.Equal(64 * 40, j.Statistics.Commits);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
        foreach (var item in items)
        {
            Assert.True(home.TryGet(item.ItemId, out var data, out _));
            Assert.Equal(40, TestItem.VersionOf(data));
        }
    }

    /// <summary>
    /// Switches out <see cref="Journal.Cil.CommittedItemList.MaxPushesInFlight"/> contexts while the log is gated: each
    /// holds one item larger than the hard limit, so its committer is throttled, which makes the push switch although
    /// the previous checkpoint is stalled.
    /// </summary>
    internal static async Task FillPushSlots(MetadataJournal j, TestHome home)
    {
        for (int k = 0; k < Journal.Cil.CommittedItemList.MaxPushesInFlight; k++)
        {
            ulong seq = j.CurrentSequence;
            int size = (int)j.Cil.HardLimit + 1000;
            await Task.Run(() => Commit(j, new TestItem(home, (ulong)(1000 + k)), 1, size)).WaitAsync(Watchdog);
            Assert.Equal(seq + 1, j.CurrentSequence);
        }
    }
}
