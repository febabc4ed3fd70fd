using Journal.Storage;
using Journal.Testing;
using Journal.Tests.Storage;
using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

/// <summary>
/// One device flush for two rounds (<c>CommitPipeline.CarryAsync</c>): the pump holds a committed round, writes the
/// next round's COW data back, and only then asks for the held round's log force, whose flush (the log and the COW
/// file share the device, <see cref="BlockDevice.CanFlushThrough"/>) makes both durable. The next round counts as
/// carried only when a log flush began after its write-backs returned (<see cref="BlockDevice.HasCarriedSince"/>);
/// when the held round was made durable by an earlier flush, the round flushes its own data before its metadata is
/// committed. Both orders are forced here with hooks on the devices and the pump, and the snapshot's data is checked
/// after a reopen.
/// </summary>
public sealed class CarriedRoundTests
{
    private const int OriginSectors = 8 * 32;
    private const int Chunk = 8;

    /// <summary>Forwards everything, the shared-flush calls included, with hooks around the log's flush and the carrier read.</summary>
    private sealed class HookDevice(BlockDevice inner) : ForwardingDevice(inner)
    {
        public Action? BeforeFlush;
        public Action? AfterBegunRead;

        protected override void FlushCore() { BeforeFlush?.Invoke(); Inner.Flush(); }
        protected override bool FlushAsCarrierCore() { BeforeFlush?.Invoke(); return Inner.FlushAsCarrier(); }
        protected override ValueTask FlushCoreAsync(CancellationToken cancellationToken) { BeforeFlush?.Invoke(); return Inner.FlushAsync(cancellationToken); }
        public override bool CanFlushThrough(BlockDevice carrier) => Inner.CanFlushThrough(carrier is HookDevice h ? h.Inner : carrier);
        public override void StartWriteBack() => Inner.StartWriteBack();
        public override void WriteBack() => Inner.WriteBack();
        public override bool HasCarriedSince(long begun) => Inner.HasCarriedSince(begun);

        public override long FlushesBegun
        {
            get
            {
                long n = Inner.FlushesBegun;
                AfterBegunRead?.Invoke();
                return n;
            }
        }
    }

    private sealed record Setup(SnapshotStore Store, TestDeviceProvider Provider, HookDevice Log);

    private static async Task<Setup> StoreWithOneSharingSnapshotAsync()
    {
        var p = new TestDeviceProvider { Log = new WriteLog(), FilesShareFlushes = true };
        HookDevice? log = null, cow = null;
        p.Wrap = (path, d) => path.EndsWith(SnapshotStore.CowExtension, StringComparison.Ordinal) ? cow = new HookDevice(d)
            : Path.GetFileName(path) == SnapshotStore.JournalFileName ? log = new HookDevice(d) : d;
        var store = await CreateMemoryStoreAsync(p, OriginSectors, Chunk);
        await WriteAsync(store.Origin, 0, Pattern(0, OriginSectors, 1));
        await store.CreateSnapshotAsync("s").AsTask().WaitAsync(Watchdog);
        Assert.NotNull(log);
        Assert.NotNull(cow);
        // Copies until the COW file may ride the log's flush (its first rounds flush it on its own: it grew).
        for (int c = 0; !cow.CanFlushThrough(log) || !log.CanFlushThrough(log); c++)
        {
            Assert.True(c < 4, $"the COW file cannot ride the log's flush after {c} copies ({store.CommitStatistics})");
            await WriteAsync(store.Origin, c * Chunk, Pattern(c * Chunk, Chunk, 2));
        }
        return new Setup(store, p, log);
    }

    /// <summary>
    /// Writes chunk <paramref name="first"/>, and once its round is committed and held, chunk <paramref name="second"/>;
    /// <paramref name="whileHeld"/> runs on the pump while the first round is held, before the second is queued.
    /// </summary>
    private static async Task TwoRoundsAsync(SnapshotStore store, long first, long second, Action whileHeld)
    {
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var pipeline = store.Pipeline;
        pipeline.AfterHoldForTests = () =>
        {
            pipeline.AfterHoldForTests = null; // once
            whileHeld();
            held.SetResult();
            // Why we wait: for the second write's exception, so that it rides this round's force (bounded: the test
            // queues it as soon as it sees the hold).
            Assert.True(SpinWait.SpinUntil(() => pipeline.QueuedCount > 0, TimeSpan.FromSeconds(30)), "the second round never came");
        };
        var a = WriteAsync(store.Origin, first * Chunk, Pattern(first * Chunk, Chunk, 3));
        await held.Task.WaitAsync(Watchdog);
        await WriteAsync(store.Origin, second * Chunk, Pattern(second * Chunk, Chunk, 3));
        await a.WaitAsync(Watchdog);
    }

    private static async Task CheckAfterReopenAsync(Setup s, params long[] chunks)
    {
        await s.Store.CloseAsync().AsTask().WaitAsync(Watchdog);
        var reopened = await ReopenAsync(s.Provider);
        try
        {
            foreach (long c in chunks)
            {
                Assert.Equal(Pattern(c * Chunk, Chunk, 1), await ReadAsync(reopened.GetSnapshot("s"), c * Chunk, Chunk));
                Assert.Equal(Pattern(c * Chunk, Chunk, 3), await ReadAsync(reopened.Origin, c * Chunk, Chunk));
            }
        }
        finally
        {
            await reopened.CloseAsync().AsTask().WaitAsync(Watchdog);
        }
    }

    [Fact]
    public async Task A_round_written_back_before_the_held_rounds_log_flush_rides_it()
    {
        var s = await StoreWithOneSharingSnapshotAsync();
        var begunRead = new ManualResetEventSlim();
        // The log's flushes wait until the pump has read FlushesBegun after the second round's write-back: the held
        // round's flush then begins after it, whatever the threads' timing.
        s.Log.AfterBegunRead = begunRead.Set;
        s.Log.BeforeFlush = () => Assert.True(begunRead.Wait(TimeSpan.FromSeconds(30)), "the pump never read the carrier's flush count");
        var before = s.Store.CommitStatistics;
        await TwoRoundsAsync(s.Store, 10, 20, () => { });
        s.Log.BeforeFlush = null;
        var after = s.Store.CommitStatistics;
        Assert.Equal(before.Rounds + 2, after.Rounds);
        Assert.Equal(before.CarriedRounds + 1, after.CarriedRounds);
        // The first round had no held round before it and flushed its file itself; the second only wrote it back.
        Assert.Equal(before.CowFlushes + 1, after.CowFlushes);
        Assert.Equal(before.CowWriteBacks + 1, after.CowWriteBacks);
        await CheckAfterReopenAsync(s, 10, 20);
    }

    [Fact]
    public async Task A_round_whose_held_round_was_already_durable_flushes_its_own_data()
    {
        var s = await StoreWithOneSharingSnapshotAsync();
        var journal = s.Store.Journal!;
        var before = s.Store.CommitStatistics;
        // While the first round is held, a force of everything makes it durable: the log's flush then began before the
        // second round's write-back, and the held round's force has nothing left to flush.
        await TwoRoundsAsync(s.Store, 10, 20, () => journal.ForceAllAsync().AsTask().Wait(Watchdog));
        var after = s.Store.CommitStatistics;
        Assert.Equal(before.Rounds + 2, after.Rounds);
        Assert.Equal(before.CarriedRounds, after.CarriedRounds);
        Assert.Equal(before.CowFlushes + 2, after.CowFlushes); // each round flushed its file itself
        await CheckAfterReopenAsync(s, 10, 20);
    }
}
