using Journal.Storage;
using Journal.Tests.Snapshot;
using Journal.Tests.Storage;
using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Changes;

/// <summary>
/// A snapshot deleted while a changed-block map reads its metadata (its file given back, so it reads as zeros) makes
/// the map fail as "deleted", the error it gives when asked after the delete, never as damage in the COW file.
/// </summary>
public class ChangeMapDeleteRaceTests
{
    /// <summary>Once armed, every read waits for <see cref="Release"/> and then returns zeros (a discarded file).</summary>
    private sealed class DiscardedOnRelease(BlockDevice inner) : ForwardingDevice(inner)
    {
        public volatile bool Armed;
        public int Blocked;
        public readonly ManualResetEventSlim Release = new(false);

        protected override void ReadCore(long sector, Span<byte> buffer)
        {
            if (!Armed)
            {
                Inner.Read(sector, buffer);
                return;
            }
            Interlocked.Increment(ref Blocked);
            Assert.True(Release.Wait(Watchdog), "never released");
            buffer.Clear();
        }
    }

    [Fact]
    public async Task A_map_whose_older_snapshot_is_deleted_while_it_reads_reports_the_delete()
    {
        DiscardedOnRelease? aCow = null;
        var p = new TestDeviceProvider();
        // The last device opened on a.cow is the store's own (the open's recovery reads the file's header before it).
        p.Wrap = (path, dev) => path.EndsWith("a.cow", StringComparison.Ordinal) ? aCow = new DiscardedOnRelease(dev) : dev;
        var store = await CreateMemoryStoreAsync(p, 8 * 4096);
        await store.CreateSnapshotAsync("a").AsTask().WaitAsync(Watchdog);
        for (int c = 0; c < 600; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 1, 1));
        await store.CreateSnapshotAsync("b").AsTask().WaitAsync(Watchdog);
        for (int c = 0; c < 600; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 1, 2));
        // Closed and opened again: a's first areas (entries 0..511) are then only in its COW file, where the map reads them.
        await store.DisposeAsync();
        aCow = null;
        store = await SnapshotStore.OpenAsync(Folder, p.Options()).AsTask().WaitAsync(Watchdog);
        Assert.NotNull(aCow);

        try
        {
            aCow!.Armed = true;
            var map = Task.Run(() => store.GetChangedExtentsAsync("a", "b").AsTask());
            var deadline = DateTime.UtcNow + Watchdog;
            while (Volatile.Read(ref aCow.Blocked) == 0)
            {
                Assert.False(map.IsCompleted, "the map read nothing of a's COW file");
                Assert.True(DateTime.UtcNow < deadline, "the map never read a's COW file");
                await Task.Delay(1);
            }
            await store.DeleteSnapshotAsync("a").AsTask().WaitAsync(Watchdog);
            aCow.Release.Set();
            var e = await Assert.ThrowsAnyAsync<Exception>(() => map.WaitAsync(Watchdog));
            Assert.Contains("no snapshot named 'a' (it was deleted)", e.Message);
        }
        finally
        {
            aCow!.Release.Set(); // a failed assertion must not leave the map's read blocked, nor the store open
            await store.DisposeAsync();
        }
    }
}
