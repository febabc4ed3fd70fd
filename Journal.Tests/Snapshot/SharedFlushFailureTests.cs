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
/// holds after the store is closed and reopened.
/// </summary>
public sealed class SharedFlushFailureTests
{
    private const int OriginSectors = 8 * 32;
    private const int Chunk = 8;
    private static readonly string[] Names = ["s0", "s1", "s2"];

    private sealed record Setup(SnapshotStore Store, TestDeviceProvider Provider, Dictionary<string, FaultInjectingBlockDevice> Cow);

    private static async Task<Setup> StoreWithThreeSharingSnapshotsAsync()
    {
        var p = new TestDeviceProvider { Log = new WriteLog(), CowFilesShareFlushes = true };
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
}
