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
        // Every committer has committed and waits on a force while the first checkpoint's flush is stalled.
        await WaitUntil(() => j.Statistics.Commits == committers && j.Statistics.Forces == committers);
        flushGate.SetResult();
        var seqs = await Task.WhenAll(tasks).WaitAsync(Watchdog);
        Assert.All(seqs, s => Assert.True(s <= j.DurableSequence));
        // The commits that arrived during the stalled flush went out together: a handful of checkpoints and
        // flushes for 64 forces.
        var st = j.Statistics;
        Assert.True(sink.Flushes <= 3 && st.Checkpoints <= 3, $"{sink.Flushes} flushes and {st.Checkpoints} checkpoints for {committers} forces");
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    /// <summary>Each of <paramref name="committers"/> commits its own item and forces it, <paramref name="rounds"/> times.</summary>
    private static Task ForceLoops(MetadataJournal j, int committers, int rounds) =>
        Task.WhenAll(Enumerable.Range(0, committers).Select(i => Task.Run(async () =>
        {
            var item = new TestItem(new TestHome(), (ulong)i);
            for (int r = 1; r <= rounds; r++) await j.ForceAsync(await CommitAsync(j, item, r, 64 + r % 100));
        })));

    [Fact]
    public async Task CommittersWokenByACheckpoint_CommitIntoTheNextOneTogether()
    {
        // A slow disk (1 ms a flush) and committers that force every commit: each checkpoint's completion wakes its
        // committers, and the push keeps the next context open until they are back, so one flush carries them all
        // instead of the first few (the rest then wait for one more flush each round). The window is long (250 ms) so
        // that a committer descheduled for a while on a busy machine still comes back inside it: the test is about the
        // push waiting for its committers, not about how long they take to return (with 10 ms it failed now and then
        // under a loaded full-suite run). The thread pool never looks idle to the push here: a committer taken off the
        // pool's queue but descheduled before it commits would otherwise end a gather early.
        const int committers = 16, rounds = 40;
        var (j, sink) = Create(8192, SmallOptions(8192, b => b.GatherWindow = TimeSpan.FromMilliseconds(250)));
        j.Cil.NothingQueued = static () => false;
        sink.FlushDelay = TimeSpan.FromMilliseconds(1);
        await ForceLoops(j, committers, rounds).Within(j);
        var st = j.Statistics;
        double perCheckpoint = (double)st.Commits / st.Checkpoints;
        Assert.True(st.Gathers > 0, st.ToString());
        Assert.True(perCheckpoint >= committers * 0.6, $"{perCheckpoint:F1} commits per checkpoint for {committers} committers: {st}");
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task GatherWindowOfZero_SwitchesAtOnce()
    {
        var (j, sink) = Create(8192, SmallOptions(8192, b => b.GatherWindow = TimeSpan.Zero));
        sink.FlushDelay = TimeSpan.FromMilliseconds(1);
        await ForceLoops(j, 16, 10).Within(j);
        Assert.Equal(0, j.Statistics.Gathers);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task ALoneCommitter_IsNeverHeldForTheWindow()
    {
        // The one forcer of each checkpoint is back as soon as it commits again: every gather ends on its count, none
        // waits out the (long) window.
        var (j, sink) = Create(8192, SmallOptions(8192, b => b.GatherWindow = TimeSpan.FromMilliseconds(10)));
        await ForceLoops(j, 1, 300).Within(j);
        Assert.Equal(0, j.Statistics.GatherTimeouts);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task ForcersThatDoNotComeBack_HoldTheNextCheckpointNoLongerThanTheWindow()
    {
        // The window is the longest allowed (1 s), so that a busy machine cannot start the push after it has already
        // passed (then there is no gather to time out).
        var (j, sink) = Create(8192, SmallOptions(8192, b => b.GatherWindow = TimeSpan.FromSeconds(1)));
        await OneForcerComesBackAsync(j, sink);
        Assert.Equal(1, j.Statistics.GatherTimeouts);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    /// <summary>
    /// 16 committers force one checkpoint whose flush is held; a 17th commits into the next context and forces it. Then
    /// the flush goes through and the 16 stop. The push expects 16 back and sees one; the thread pool is made to look
    /// busy, so the push cannot tell that nobody else is coming. It must switch when the window has passed (if it did
    /// not, the 17th force would never complete and the watchdog would fail the test). Returns the 17th's sequence once
    /// every force has completed.
    /// </summary>
    internal static async Task<ulong> OneForcerComesBackAsync(MetadataJournal j, MemoryLogSink sink)
    {
        j.Cil.NothingQueued = static () => false;
        var gate = new TaskCompletionSource();
        sink.FlushGate = gate.Task;
        var home = new TestHome();
        // Commit first, then force: all 16 are in one checkpoint.
        var seqs = Enumerable.Range(0, 16).Select(i => Commit(j, new TestItem(home, (ulong)i), 1)).ToArray();
        Assert.All(seqs, s => Assert.Equal(seqs[0], s));
        var sixteen = seqs.Select(s => Task.Run(async () => await j.ForceAsync(s))).ToArray();
        await WaitUntil(() => j.Statistics.Forces == 16);
        // The push switches contexts on its own thread after the first force: until it has, a 17th commit would join
        // the 16's checkpoint (and nothing would be left to gather for).
        await WaitUntil(() => j.CurrentSequence > seqs[0]);
        ulong seq = await CommitAsync(j, new TestItem(home, 16), 1);
        Assert.True(seq > seqs[0], "the 17th commit joined the held checkpoint");
        var lone = j.ForceAsync(seq).AsTask();
        await WaitUntil(() => j.Statistics.Forces == 17);
        sink.FlushGate = null;
        gate.SetResult();
        await Task.WhenAll(sixteen).Within(j);
        await lone.Within(j);
        return seq;
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
