using static Journal.Tests.Cil.CommitPathTests;
using static Journal.Tests.Cil.JournalFixture;

namespace Journal.Tests.Cil;

public sealed class ForceTests
{
    [Fact]
    public async Task ForcingADurableSequence_DoesNoIo()
    {
        var (j, sink) = Create();
        var item = new TestItem(new TestHome(), 1);
        ulong seq = Commit(j, item, 1);
        await j.ForceAsync(seq).AsTask().WaitAsync(Watchdog);
        long flushes = sink.Flushes, records = sink.RecordsWritten, forces = j.Statistics.Forces;
        for (int i = 0; i < 100; i++)
        {
            var t = j.ForceAsync(seq);
            Assert.True(t.IsCompletedSuccessfully); // synchronous: nothing to wait for
        }
        Assert.Equal(seq, await j.ForceAllAsync());
        Assert.Equal(flushes, sink.Flushes);
        Assert.Equal(records, sink.RecordsWritten);
        Assert.Equal(forces, j.Statistics.Forces);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task ForceAll_WithNothingCommitted_ReturnsZeroWithoutIo()
    {
        var (j, sink) = Create();
        Assert.Equal(0UL, await j.ForceAllAsync().AsTask().WaitAsync(Watchdog));
        Assert.Equal(0, sink.Flushes);
        Assert.Equal(0, sink.RecordsWritten);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task ConcurrentForces_ShareDeviceFlushes()
    {
        var (j, sink) = Create(8192);
        var home = new TestHome();
        var flushGate = new TaskCompletionSource();
        sink.FlushGate = flushGate.Task;
        const int committers = 64;
        var tasks = Enumerable.Range(0, committers).Select(i => Task.Run(async () =>
        {
            ulong seq = await CommitAsync(j, new TestItem(home, (ulong)i), i, 64 + i * 3);
            await j.ForceAsync(seq);
            return seq;
        })).ToArray();
        // Every committer has committed and is waiting on a force while the device's first flush is stalled.
        // Wait until every context is switched out and its commit record written (only the flushes are stalled).
        await WaitUntil(() =>
        {
            var st = j.Statistics;
            return st.Commits == committers && st.Forces == committers && j.Cil.Current.IsEmpty && st.Checkpoints == st.Pushes;
        });
        flushGate.SetResult();
        var seqs = await Task.WhenAll(tasks).WaitAsync(Watchdog);
        Assert.All(seqs, s => Assert.True(s <= j.DurableSequence));
        // One flush for the checkpoint stalled at first, one for everything written meanwhile, however many
        // checkpoints that was.
        Assert.True(sink.Flushes <= 2, $"{sink.Flushes} flushes for {committers} forces over {j.Statistics.Checkpoints} checkpoints");
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task ForceAll_MakesEverythingCommittedDurable_AndReturnsItsSequence()
    {
        var (j, sink) = Create();
        var home = new TestHome();
        Commit(j, new TestItem(home, 1), 1);
        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        Commit(j, new TestItem(home, 2), 1);
        ulong last = Commit(j, new TestItem(home, 3), 1);
        ulong durable = await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        Assert.Equal(last, durable);
        Assert.Equal(last, j.DurableSequence);
        var cps = Checkpoints(sink.Crash());
        Assert.Equal([1UL, 2UL], cps.Select(c => c.Sequence));
        Assert.Equal([2UL, 3UL], cps[1].Items.Select(i => i.Id));
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task ForcingASequenceNotYetIssued_IsRefused()
    {
        var (j, _) = Create();
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await j.ForceAsync(5));
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task ForcingTheCurrentEmptySequence_ForcesThePreviousOne()
    {
        var (j, sink) = Create();
        ulong seq = Commit(j, new TestItem(new TestHome(), 1), 1);
        await j.ForceAsync(seq).AsTask().WaitAsync(Watchdog);
        long flushes = sink.Flushes;
        await j.ForceAsync(j.CurrentSequence).AsTask().WaitAsync(Watchdog); // nothing committed into it
        Assert.Equal(flushes, sink.Flushes);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }
}
