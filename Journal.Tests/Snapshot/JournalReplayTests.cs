using Journal.Storage;
using Journal.Testing;
using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

/// <summary>The store's metadata journal: replay at open after an unclean stop, idempotent replay, clean close.</summary>
public class JournalReplayTests
{
    [Fact]
    public async Task Replay_after_an_unclean_stop_is_idempotent_and_a_clean_close_leaves_a_clean_log()
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, 8 * 600);
        await WriteAsync(store.Origin, 0, Pattern(0, 8 * 600, 1));
        var s = await store.CreateSnapshotAsync("s");
        // 300 exceptions: more than one area, some segments written home by the journal, some only in the log.
        for (int c = 0; c < 300; c++)
        {
            await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 2));
            if (c == 150) await store.Journal!.WriteBackAsync();
        }
        await WriteAsync(s, 8 * 500, Pattern(8 * 500, 8, 3));
        var expected = Pattern(0, 8 * 600, 1);
        Pattern(8 * 500, 8, 3).CopyTo(expected, 8 * 500 * 512);

        // The process stops without closing: open replays the log.
        var crashed = p.CopyAll();
        var a = await ReopenAsync(crashed);
        Assert.False(a.LogClean);
        Assert.Equal(expected, await ReadAsync(a.GetSnapshot("s"), 0, 8 * 600));
        Assert.Equal(301, a.GetStatus().Snapshots.Single().Exceptions);
        // Stop again without closing, right after the replay: replaying again gives the same store.
        var again = crashed.CopyAll();
        var b = await ReopenAsync(again);
        Assert.Equal(expected, await ReadAsync(b.GetSnapshot("s"), 0, 8 * 600));
        Assert.Equal(301, b.GetStatus().Snapshots.Single().Exceptions);
        await b.CloseAsync();
        var c2 = await ReopenAsync(again);
        Assert.True(c2.LogClean);
        Assert.Equal(expected, await ReadAsync(c2.GetSnapshot("s"), 0, 8 * 600));
        await c2.CloseAsync();
        // After the clean close the COW file alone holds every exception, as dm-snapshot would read it.
        var dm = DmCow.Read(again.Backing(Folder + "/s.cow").ToArray());
        Assert.Equal(301, dm.Exceptions.Count);
        await store.CloseAsync();
    }

    [Fact]
    public async Task Journal_bytes_per_exception_stay_small_under_concurrent_first_writes()
    {
        var p = new TestDeviceProvider();
        await using var store = await CreateMemoryStoreAsync(p, 8 * 4096);
        await store.CreateSnapshotAsync("s");
        long log0 = store.LogDeviceCounters.BytesWritten;
        await Task.WhenAll(Enumerable.Range(0, 16).Select(w => Task.Run(async () =>
        {
            for (int i = 0; i < 64; i++) await WriteAsync(store.Origin, (w * 64 + i) * 8L, Pattern(0, 8, 1));
        }))).WaitAsync(Watchdog);
        double perException = (double)(store.LogDeviceCounters.BytesWritten - log0) / 1024;
        // One chunk-sized area write per exception is 4096 bytes; the journal logs 16-byte entries in batches.
        Assert.True(perException < 4096, $"{perException:F0} journal bytes per exception");
        Assert.Equal(1024, store.GetStatus().Snapshots.Single().Exceptions);
    }

    [Fact]
    public async Task A_read_only_open_replays_in_memory_only_and_refuses_changes()
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, 8 * 64);
        await WriteAsync(store.Origin, 0, Pattern(0, 8 * 64, 1));
        await store.CreateSnapshotAsync("s");
        await WriteAsync(store.Origin, 0, Pattern(0, 8 * 64, 2));
        await store.FlushAsync();
        // The process stops without closing: the snapshot's exceptions are only in the journal.
        var crashed = p.CopyAll();
        var before = crashed.Paths.ToDictionary(x => x, x => crashed.Backing(x).ToArray());

        var ro = await SnapshotStore.OpenAsync(Folder, crashed.Options(new StoreOptions { ReadOnly = true })).AsTask().WaitAsync(Watchdog);
        Assert.True(ro.IsReadOnly);
        Assert.False(ro.LogClean);
        Assert.Equal(Pattern(0, 8 * 64, 1), await ReadAsync(ro.GetSnapshot("s"), 0, 8 * 64));
        Assert.Equal(Pattern(0, 8 * 64, 2), await ReadAsync(ro.Origin, 0, 8 * 64));
        await Assert.ThrowsAsync<StoreReadOnlyException>(() => WriteAsync(ro.Origin, 0, Pattern(0, 8, 3)));
        await Assert.ThrowsAsync<StoreReadOnlyException>(() => WriteAsync(ro.GetSnapshot("s"), 0, Pattern(0, 8, 3)));
        await Assert.ThrowsAsync<StoreReadOnlyException>(() => ro.CreateSnapshotAsync("t").AsTask());
        await Assert.ThrowsAsync<StoreReadOnlyException>(() => ro.DeleteSnapshotAsync("s").AsTask());
        await Assert.ThrowsAsync<StoreReadOnlyException>(() => ro.MergeSnapshotAsync("s").AsTask());
        await ro.CloseAsync();
        // Nothing on any device changed: the replay and the close stayed in memory.
        Assert.Equal(before.Keys.Order(), crashed.Paths.Order());
        foreach (var (path, bytes) in before) Assert.True(bytes.AsSpan().SequenceEqual(crashed.Backing(path).ToArray()), $"{path} changed");

        // A normal open still finds the log to replay, and the same contents.
        var rw = await ReopenAsync(crashed);
        Assert.False(rw.LogClean);
        Assert.Equal(Pattern(0, 8 * 64, 1), await ReadAsync(rw.GetSnapshot("s"), 0, 8 * 64));
        await rw.CloseAsync();
    }
}
