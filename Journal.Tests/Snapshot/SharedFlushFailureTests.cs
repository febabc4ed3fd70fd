using Journal.Testing;
using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

/// <summary>
/// Failures inside a commit round's shared device flush (<see cref="global::Journal.Storage.BlockDevice.CanFlushThrough"/>):
/// three snapshots whose COW files share flushes, so a round writes the riders back and flushes the storage device once
/// through the carrier. A failed start of a write-back or a failed write-back fails that file's exceptions alone; a
/// failed carrier flush fails every file that rode on it. Each failure invalidates exactly the snapshots whose copies
/// were not made durable, the origin write goes on, the other snapshots keep their point-in-time data, and all of it
/// holds after the store is closed and reopened. And a carrier that stops qualifying between being chosen and being
/// flushed (a writer grew it) carries nothing: the riders are then flushed on their own.
/// </summary>
public sealed class SharedFlushFailureTests
{
    private const int OriginSectors = 8 * 32;
    private const int Chunk = 8;
    private static readonly string[] Names = ["s0", "s1", "s2"];

    private sealed record Setup(SnapshotStore Store, TestDeviceProvider Provider, Dictionary<string, FaultInjectingBlockDevice> Cow);

    private static async Task<Setup> StoreWithThreeSharingSnapshotsAsync()
    {
        var p = new TestDeviceProvider { Log = new WriteLog(), FilesShareFlushes = true };
        var cow = new Dictionary<string, FaultInjectingBlockDevice>(StringComparer.Ordinal);
        p.Wrap = (path, d) => path.EndsWith(SnapshotStore.CowExtension, StringComparison.Ordinal)
            ? cow[Path.GetFileNameWithoutExtension(path)] = new FaultInjectingBlockDevice(d)
            : d;
        var store = await CreateMemoryStoreAsync(p, OriginSectors, Chunk);
        await WriteAsync(store.Origin, 0, Pattern(0, OriginSectors, 1));
        foreach (string name in Names) await store.CreateSnapshotAsync(name).AsTask().WaitAsync(Watchdog);
        // Copies until the files ride (each file's first round may flush it on its own).
        for (int c = 0; store.CommitStatistics.CowWriteBacks == 0; c++)
        {
            Assert.True(c < 4, $"no COW file rode a shared flush after {c} copies ({store.CommitStatistics})");
            await WriteAsync(store.Origin, c * Chunk, Pattern(c * Chunk, Chunk, 2));
        }
        return new Setup(store, p, cow);
    }

    private static async Task CheckAsync(SnapshotStore store, long chunkWritten, IReadOnlyCollection<string> invalid, string when)
    {
        var status = store.GetStatus().Snapshots.ToDictionary(s => s.Name);
        foreach (string name in Names)
        {
            if (invalid.Contains(name))
            {
                Assert.False(status[name].IsValid, $"{name} is still valid {when}");
                Assert.Equal("I/O error on the COW file", status[name].InvalidReason);
                continue;
            }
            Assert.True(status[name].IsValid, $"{name} was invalidated {when} ({status[name].InvalidReason})");
            Assert.Equal(Pattern(chunkWritten, Chunk, 1), await ReadAsync(store.GetSnapshot(name), chunkWritten, Chunk));
        }
        Assert.Equal(Pattern(chunkWritten, Chunk, 3), await ReadAsync(store.Origin, chunkWritten, Chunk));
    }

    [Theory]
    [InlineData(FaultOps.StartWriteBack)]
    [InlineData(FaultOps.WriteBack)]
    public async Task A_file_whose_write_back_fails_invalidates_its_own_snapshot_alone(FaultOps op)
    {
        var (store, p, cow) = await StoreWithThreeSharingSnapshotsAsync();
        long ridersBefore = store.CommitStatistics.CowWriteBacks;
        var rule = cow["s1"].AddRule(FaultRule.Transient(op, 1));
        const long Sector = 20 * Chunk;
        // The origin write goes on: a COW I/O error costs the snapshot, not the write.
        await WriteAsync(store.Origin, Sector, Pattern(Sector, Chunk, 3));
        Assert.Equal(1, rule.Injected);
        Assert.Equal(ridersBefore + 2, store.CommitStatistics.CowWriteBacks); // the failing round shared its flush
        await CheckAsync(store, Sector, ["s1"], "after the round");
        await store.CloseAsync().AsTask().WaitAsync(Watchdog);

        var reopened = await ReopenAsync(p);
        try { await CheckAsync(reopened, Sector, ["s1"], "after reopening"); }
        finally { await reopened.CloseAsync().AsTask().WaitAsync(Watchdog); }
    }

    [Fact]
    public async Task A_failed_carrier_flush_fails_every_file_that_rode_on_it()
    {
        var (store, p, cow) = await StoreWithThreeSharingSnapshotsAsync();
        // Which file carries: a round flushes it alone (the riders are written back).
        var flushesBefore = Names.ToDictionary(n => n, n => cow[n].Counters.Flushes);
        await WriteAsync(store.Origin, 10 * Chunk, Pattern(10 * Chunk, Chunk, 2));
        string[] flushed = Names.Where(n => cow[n].Counters.Flushes > flushesBefore[n]).ToArray();
        Assert.True(flushed.Length == 1, $"files flushed in a shared round: {string.Join(", ", flushed)}");
        long ridersBefore = store.CommitStatistics.CowWriteBacks;
        var rule = cow[flushed[0]].AddRule(FaultRule.Transient(FaultOps.Flush, 1));
        const long Sector = 21 * Chunk;
        await WriteAsync(store.Origin, Sector, Pattern(Sector, Chunk, 3));
        Assert.Equal(1, rule.Injected);
        Assert.Equal(ridersBefore + 2, store.CommitStatistics.CowWriteBacks);
        await CheckAsync(store, Sector, Names, "after the round");
        await store.CloseAsync().AsTask().WaitAsync(Watchdog);

        var reopened = await ReopenAsync(p);
        try { await CheckAsync(reopened, Sector, Names, "after reopening"); }
        finally { await reopened.CloseAsync().AsTask().WaitAsync(Watchdog); }
    }

    /// <summary>
    /// Passes everything to a recording COW file; when armed, grows it as its write-back starts, as a writer extending
    /// the carrier after the round chose it would.
    /// </summary>
    private sealed class GrowingCow(RecordingBlockDevice recording) : Journal.Tests.Storage.ForwardingDevice(recording)
    {
        public volatile bool GrowOnWriteBack;
        public RecordingBlockDevice Recording => recording;
        public override bool CanFlushThrough(global::Journal.Storage.BlockDevice carrier) =>
            recording.CanFlushThrough(carrier is GrowingCow g ? g.Recording : carrier);
        public override void StartWriteBack()
        {
            if (GrowOnWriteBack)
            {
                GrowOnWriteBack = false;
                recording.Extend(recording.SectorCount + 8);
            }
            recording.StartWriteBack();
        }
        public override void WriteBack() => recording.WriteBack();
        protected override bool FlushAsCarrierCore() => recording.FlushAsCarrier();
    }

    [Fact]
    public async Task A_carrier_that_grew_after_it_was_chosen_carries_nothing_and_the_riders_flush_on_their_own()
    {
        var log = new WriteLog();
        var p = new TestDeviceProvider { Log = log, FilesShareFlushes = true };
        var cow = new Dictionary<string, GrowingCow>(StringComparer.Ordinal);
        p.Wrap = (path, d) => path.EndsWith(SnapshotStore.CowExtension, StringComparison.Ordinal)
            ? cow[Path.GetFileNameWithoutExtension(path)] = new GrowingCow((RecordingBlockDevice)d)
            : d;
        var store = await CreateMemoryStoreAsync(p, OriginSectors, Chunk);
        try
        {
            await WriteAsync(store.Origin, 0, Pattern(0, OriginSectors, 1));
            foreach (string name in Names) await store.CreateSnapshotAsync(name).AsTask().WaitAsync(Watchdog);
            for (int c = 0; store.CommitStatistics.CowWriteBacks == 0; c++)
            {
                Assert.True(c < 4, $"no COW file rode a shared flush after {c} copies ({store.CommitStatistics})");
                await WriteAsync(store.Origin, c * Chunk, Pattern(c * Chunk, Chunk, 2));
            }
            var flushesBefore = Names.ToDictionary(n => n, n => cow[n].Counters.Flushes);
            await WriteAsync(store.Origin, 10 * Chunk, Pattern(10 * Chunk, Chunk, 2));
            string carrier = Names.Single(n => cow[n].Counters.Flushes > flushesBefore[n]);

            cow[carrier].GrowOnWriteBack = true;
            var before = store.CommitStatistics;
            const long Sector = 22 * Chunk;
            await WriteAsync(store.Origin, Sector, Pattern(Sector, Chunk, 3));
            int acknowledged = log.Mark("acknowledged");
            var after = store.CommitStatistics;
            Assert.False(cow[carrier].GrowOnWriteBack, "the carrier's write-back never started");
            Assert.Equal(before.CowWriteBacks, after.CowWriteBacks);   // no file rode in the end
            Assert.Equal(before.CowFlushes + Names.Length, after.CowFlushes);
            // And the crash model agrees: every file's copy is durable once the write returned.
            foreach (string name in Names)
            {
                int id = cow[name].Recording.DeviceId;
                int lastWrite = log.Entries.Last(e => e.DeviceId == id && e.Kind == WriteLogEntryKind.Write && e.Index < acknowledged).Index;
                Assert.True(log.DurableBefore(id, acknowledged) > lastWrite, $"{name}'s copy is not durable when the write returned");
            }
            await CheckAsync(store, Sector, [], "after the round");
        }
        finally { await store.CloseAsync().AsTask().WaitAsync(Watchdog); }
    }
}
