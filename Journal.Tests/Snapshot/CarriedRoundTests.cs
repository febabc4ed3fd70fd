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
/// when the held round was made durable by an earlier flush (another force's, begun before the write-backs returned
/// or before they started), the round flushes its own data before its metadata is committed. Each order is forced here with hooks on the devices and
/// the pump; the snapshot's point-in-time data is checked in crash states cut from the write log (no close) and after a
/// reopen.
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
        public Action? BeforeWriteBack;

        protected override void FlushCore() { BeforeFlush?.Invoke(); Inner.Flush(); }
        protected override bool FlushAsCarrierCore() { BeforeFlush?.Invoke(); return Inner.FlushAsCarrier(); }
        protected override ValueTask FlushCoreAsync(CancellationToken cancellationToken) { BeforeFlush?.Invoke(); return Inner.FlushAsync(cancellationToken); }
        public override bool CanFlushThrough(BlockDevice carrier) => Inner.CanFlushThrough(carrier is HookDevice h ? h.Inner : carrier);
        public override void StartWriteBack() => Inner.StartWriteBack();
        public override void WriteBack() { BeforeWriteBack?.Invoke(); Inner.WriteBack(); }
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

    private sealed record Setup(SnapshotStore Store, TestDeviceProvider Provider, HookDevice Log, HookDevice Cow);

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
        return new Setup(store, p, log, cow);
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

    /// <summary>
    /// Crash states from <paramref name="from"/> (a mark in the write log) on, before any close: in each, the snapshot
    /// still reads its point-in-time data in <paramref name="chunks"/>, and each origin sector the old data or the new.
    /// </summary>
    private static async Task CheckCrashStatesAsync(Setup s, int from, params long[] chunks)
    {
        var log = s.Provider.Log!;
        int states = 0;
        foreach (var state in log.CrashStates(new CrashStateOptions { Seed = 1, FirstPoint = from, MaxPoints = 40, MaxVariantsPerPoint = 3 }))
        {
            var p = new TestDeviceProvider();
            foreach (var dev in log.Devices)
                if (dev.RegisteredAt <= state.Point) p.Replace(dev.Name, state.Device(dev.Id));
            var store = await ReopenAsync(p);
            try
            {
                foreach (long c in chunks)
                {
                    var snap = await ReadAsync(store.GetSnapshot("s"), c * Chunk, Chunk);
                    Assert.True(snap.AsSpan().SequenceEqual(Pattern(c * Chunk, Chunk, 1)),
                        $"snapshot chunk {c} lost its point-in-time data at {state.Description}");
                    // The origin writes were not flushed (block-device semantics): each sector is old or new.
                    byte[] origin = await ReadAsync(store.Origin, c * Chunk, Chunk), old = Pattern(c * Chunk, Chunk, 1), now = Pattern(c * Chunk, Chunk, 3);
                    for (int k = 0; k < Chunk; k++)
                    {
                        var sector = origin.AsSpan(k * 512, 512);
                        Assert.True(sector.SequenceEqual(old.AsSpan(k * 512, 512)) || sector.SequenceEqual(now.AsSpan(k * 512, 512)),
                            $"origin sector {c * Chunk + k} holds neither its old nor its new data at {state.Description}");
                    }
                }
            }
            finally
            {
                await store.CloseAsync().AsTask().WaitAsync(Watchdog);
            }
            states++;
        }
        Assert.True(states >= 10, $"only {states} crash states checked");
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
        int from = s.Provider.Log!.Mark("two rounds start");
        await TwoRoundsAsync(s.Store, 10, 20, () => { });
        s.Log.BeforeFlush = null;
        var after = s.Store.CommitStatistics;
        Assert.Equal(before.Rounds + 2, after.Rounds);
        Assert.Equal(before.CarriedRounds + 1, after.CarriedRounds);
        // The first round had no held round before it and flushed its file itself; the second only wrote it back.
        Assert.Equal(before.CowFlushes + 1, after.CowFlushes);
        Assert.Equal(before.CowWriteBacks + 1, after.CowWriteBacks);
        await CheckCrashStatesAsync(s, from, 10, 20);
        await CheckAfterReopenAsync(s, 10, 20);
    }

    /// <summary>
    /// Two rounds where the second must not count as carried (<paramref name="whileHeld"/>, given the setup, arranges
    /// that on the pump while the first is held): each flushes its own COW data, and the snapshot keeps its data.
    /// </summary>
    private static async Task SecondRoundFlushesItsOwnDataAsync(Func<Setup, Action> whileHeld)
    {
        var s = await StoreWithOneSharingSnapshotAsync();
        var before = s.Store.CommitStatistics;
        int from = s.Provider.Log!.Mark("two rounds start");
        await TwoRoundsAsync(s.Store, 10, 20, whileHeld(s));
        var after = s.Store.CommitStatistics;
        Assert.Equal(before.Rounds + 2, after.Rounds);
        Assert.Equal(before.CarriedRounds, after.CarriedRounds);
        Assert.Equal(before.CowFlushes + 2, after.CowFlushes); // each round flushed its file itself
        await CheckCrashStatesAsync(s, from, 10, 20);
        await CheckAfterReopenAsync(s, 10, 20);
    }

    // While the first round is held, a force of everything makes it durable: the log's flush then began before the
    // second round's write-back, and the held round's force has nothing left to flush.
    [Fact]
    public Task A_round_whose_held_round_was_already_durable_flushes_its_own_data() =>
        SecondRoundFlushesItsOwnDataAsync(s => () => s.Store.Journal!.ForceAllAsync().AsTask().Wait(Watchdog));

    // While the second round's write-back is under way, another force makes the held round durable: its log flush
    // began before the write-back returned, so it carried nothing of the round, and the held round's own force then
    // has nothing left to flush. The count of flushes begun must be read after the write-backs for the pipeline to see
    // that.
    [Fact]
    public Task A_round_whose_write_backs_returned_after_another_forces_log_flush_began_flushes_its_own_data() =>
        SecondRoundFlushesItsOwnDataAsync(s => () =>
        {
            var journal = s.Store.Journal!;
            s.Cow.BeforeWriteBack = () =>
            {
                s.Cow.BeforeWriteBack = null;
                journal.ForceAllAsync().AsTask().Wait(Watchdog);
            };
        });

    [Fact]
    public async Task Nothing_is_held_where_the_files_cannot_ride()
    {
        // Memory devices that share no flushes: a round's force is asked for as soon as it is committed, as before.
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, OriginSectors, Chunk);
        try
        {
            await WriteAsync(store.Origin, 0, Pattern(0, OriginSectors, 1));
            await store.CreateSnapshotAsync("s").AsTask().WaitAsync(Watchdog);
            int holds = 0;
            store.Pipeline.AfterHoldForTests = () => Interlocked.Increment(ref holds);
            await Task.WhenAll(Enumerable.Range(0, 16).Select(c => WriteAsync(store.Origin, c * Chunk, Pattern(c * Chunk, Chunk, 3)))).WaitAsync(Watchdog);
            Assert.Equal(0, Volatile.Read(ref holds));
            Assert.Equal(0, store.CommitStatistics.CarriedRounds);
            Assert.True(store.CommitStatistics.Rounds > 0);
        }
        finally
        {
            await store.CloseAsync().AsTask().WaitAsync(Watchdog);
        }
    }
}
