using Journal.Testing;
using Journal.Storage;
using Journal.Tests.Snapshot;
using Snapshot;
using Snapshot.Changes;
using Snapshot.Format;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Changes;

/// <summary>
/// What a map costs and when it is an error: metadata alone when no snapshot was written (entries read up to the mark,
/// from memory or from the areas), contents compared only for chunks both snapshots hold after the mark when one of
/// them was written; the written flag committed once, before the first write returns, and kept across a crash; a COW
/// file without marks falls back to comparing and stays exact; damaged marks are an error naming the file; invalid,
/// merging, deleted and merged snapshots are errors, never an empty map; an unfinished merge shows in the origin's map.
/// </summary>
public class ChangeMapSemanticsTests
{
    private const int OriginSectors = 8 * 4096; // 4096 chunks of 4 KiB

    private static async Task<Dictionary<string, byte[]>> ImagesAsync(SnapshotStore store)
    {
        var images = new Dictionary<string, byte[]> { ["origin"] = await ReadAsync(store.Origin, 0, (int)store.OriginSectors) };
        foreach (var v in store.Snapshots) images[v.Name] = await ReadAsync(v, 0, (int)store.OriginSectors);
        return images;
    }

    [Fact]
    public async Task Without_writes_into_snapshots_a_map_reads_only_metadata_up_to_the_mark()
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, OriginSectors);
        await store.CreateSnapshotAsync("a").AsTask().WaitAsync(Watchdog);
        for (int c = 0; c < 600; c++)
        {
            await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 1, 1));
            if (c == 300) await store.Journal!.WriteBackAsync().AsTask().WaitAsync(Watchdog); // part home, part in memory
        }
        await store.CreateSnapshotAsync("b").AsTask().WaitAsync(Watchdog);
        for (int c = 400; c < 900; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 1, 2)); // 400..599: both hold, after b
        var images = await ImagesAsync(store);
        var live = await ChangeCheck.CheckPairAsync(store, "a", "b", images, null, exact: true, "live");
        Assert.Equal(600, live.Chunks);
        Assert.Equal((900L + 500L, 600L, 0L, 0L), (live.Cost.ExceptionsConsidered, live.Cost.MetadataEntriesRead, live.Cost.ChunksCompared, live.Cost.BytesCompared));
        Assert.True(live.Cost.MetadataBytesRead < 600 * 16, $"{live.Cost.MetadataBytesRead} bytes read: the entries not yet home should come from memory");
        Assert.False(live.FromWritten || live.ToWritten);
        var origin = await ChangeCheck.CheckPairAsync(store, "a", null, images, null, exact: true, "live");
        Assert.Equal((900L, 0L, 0L), (origin.Chunks, origin.Cost.MetadataEntriesRead, origin.Cost.MetadataBytesRead));
        await store.CloseAsync().AsTask().WaitAsync(Watchdog);

        store = await ReopenAsync(p);
        var reopened = await ChangeCheck.CheckPairAsync(store, "a", "b", images, null, exact: true, "reopened");
        Assert.Equal(live.Extents, reopened.Extents);
        // Everything is home now: 600 entries are areas 0 and 1 (4 KiB each) and 88 entries of area 2 (3 sectors).
        Assert.Equal(2 * 4096 + 3 * 512, reopened.Cost.MetadataBytesRead);
        Assert.Equal(0, reopened.Cost.ChunksCompared);
        await store.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task A_written_snapshot_has_only_the_chunks_both_hold_after_the_mark_compared()
    {
        var p = new TestDeviceProvider();
        await using var store = await CreateMemoryStoreAsync(p, OriginSectors);
        await store.CreateSnapshotAsync("a").AsTask().WaitAsync(Watchdog);
        for (int c = 0; c < 100; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 1));
        await store.CreateSnapshotAsync("b").AsTask().WaitAsync(Watchdog);
        for (int c = 50; c < 250; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 2)); // 100..249: both hold after b
        var before = await store.GetChangedExtentsAsync("a", "b").AsTask().WaitAsync(Watchdog);
        Assert.Equal(0, before.Cost.ChunksCompared);

        var sb = store.SuperblockLogItem.Current;
        long commits = store.Journal!.Statistics.Commits;
        await WriteAsync(store.GetSnapshot("b"), 120 * 8, Pattern(120 * 8, 1, 9)); // into a chunk both hold after the mark
        Assert.NotSame(sb, store.SuperblockLogItem.Current);
        Assert.Equal(SnapshotRecordFlags.Written, store.SuperblockLogItem.Current.Snapshots.Single(r => r.Name == "b").Flags);
        Assert.Equal(SnapshotRecordFlags.None, store.SuperblockLogItem.Current.Snapshots.Single(r => r.Name == "a").Flags);
        Assert.Equal(commits + 1, store.Journal!.Statistics.Commits); // the flag; the chunk already had its exception
        // Further writes, 16 at once, into chunks b already holds: no further commit at all.
        sb = store.SuperblockLogItem.Current;
        await Task.WhenAll(Enumerable.Range(0, 16).Select(i => WriteAsync(store.GetSnapshot("b"), (130 + i) * 8L, Pattern(i, 2, 9))));
        Assert.Same(sb, store.SuperblockLogItem.Current);
        Assert.Equal(commits + 1, store.Journal!.Statistics.Commits);

        var images = await ImagesAsync(store);
        var after = await ChangeCheck.CheckPairAsync(store, "a", "b", images, null, exact: true, "b written");
        Assert.True(after.ToWritten);
        Assert.Equal(150, after.Cost.ChunksCompared); // 100..249: only the chunks both hold after b was created
        Assert.Equal(100 + 17, after.Chunks);          // 0..99 (before the mark) and the 17 chunks b's writes changed
        Assert.Equal(150 * 2 * 4096L, after.Cost.BytesCompared); // each compared chunk read from both
    }

    [Fact]
    public async Task The_first_write_into_a_snapshot_is_not_acknowledged_before_its_flag_is_durable()
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, OriginSectors);
        await store.CreateSnapshotAsync("a").AsTask().WaitAsync(Watchdog);
        await store.CreateSnapshotAsync("b").AsTask().WaitAsync(Watchdog);
        // Memory devices keep every write: "crash" right after the acknowledgement (no close, nothing written home).
        await WriteAsync(store.GetSnapshot("b"), 8, Pattern(8, 8, 3));
        p.BreakLocks();
        var reopened = await ReopenAsync(p);
        Assert.False(reopened.LogClean);
        var map = await reopened.GetChangedExtentsAsync("a", "b").AsTask().WaitAsync(Watchdog);
        Assert.True(map.ToWritten);
        Assert.False(map.FromWritten);
        Assert.Equal([new ChangedExtent(8, 8)], map.Extents);
        await reopened.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task A_cow_file_without_marks_is_compared_and_stays_exact_and_damaged_marks_are_an_error()
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, OriginSectors);
        await store.CreateSnapshotAsync("a").AsTask().WaitAsync(Watchdog);
        for (int c = 0; c < 40; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 1));
        await store.CreateSnapshotAsync("b").AsTask().WaitAsync(Watchdog);
        for (int c = 20; c < 60; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 2));
        var images = await ImagesAsync(store);
        string cowB = store.CowPathOf("b");
        await store.CloseAsync().AsTask().WaitAsync(Watchdog);
        var good = p.Backing(cowB).ToArray();

        // As a COW file made before marks existed: header fields zero (checksum recomputed), chunk 2 unused.
        var old = (byte[])good.Clone();
        CowHeader.SetMarks(old, 0, 0);
        p.Replace(cowB, MemoryBlockDevice.FromImage(old, cowB));
        store = await ReopenAsync(p);
        var map = await ChangeCheck.CheckPairAsync(store, "a", "b", images, null, exact: true, "no marks");
        Assert.Equal(40, map.Chunks);
        Assert.Equal(40, map.Cost.ChunksCompared); // 20..59: every chunk both hold, with no mark to tell when it was copied
        await store.CloseAsync().AsTask().WaitAsync(Watchdog);

        // A damaged table: the snapshot still reads, its map against an older snapshot is an error naming the file.
        var damaged = (byte[])good.Clone();
        damaged[2 * 4096 + 16] ^= 0x40;
        // The store's stamp moved on since the good copy was taken (the reopen above wrote b's header): the copy gets the
        // current stamp, or it would be refused as an older copy of the file.
        CowHeader.SetStamp(damaged, System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(p.Backing(cowB).ToArray().AsSpan(CowHeader.StampOffset)));
        p.Replace(cowB, MemoryBlockDevice.FromImage(damaged, cowB));
        store = await ReopenAsync(p);
        Assert.Equal(images["b"], await ReadAsync(store.GetSnapshot("b"), 0, OriginSectors));
        var e = await Assert.ThrowsAsync<ChangeTrackingException>(() => store.GetChangedExtentsAsync("a", "b").AsTask().WaitAsync(Watchdog));
        Assert.StartsWith($"{cowB}: snapshot 'b': creation-marks table: checksum mismatch", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Equal(60, (await store.GetChangedExtentsAsync("a").AsTask().WaitAsync(Watchdog)).Chunks); // against the origin: no marks needed
        await store.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task Bad_pairs_and_unusable_snapshots_are_errors_never_an_empty_map()
    {
        var p = new TestDeviceProvider();
        await using var store = await CreateMemoryStoreAsync(p, OriginSectors);
        await store.CreateSnapshotAsync("a").AsTask().WaitAsync(Watchdog);
        await store.CreateSnapshotAsync("b").AsTask().WaitAsync(Watchdog);
        await store.CreateSnapshotAsync("small", new SnapshotOptions { CowSectors = 8 * 4 }).AsTask().WaitAsync(Watchdog);

        var e1 = await Assert.ThrowsAsync<JournalArgumentException>(() => store.GetChangedExtentsAsync("nope").AsTask());
        Assert.Equal("/mem/store/nope.cow: no snapshot named 'nope'", e1.Message);
        var e2 = await Assert.ThrowsAsync<JournalArgumentException>(() => store.GetChangedExtentsAsync("b", "a").AsTask());
        Assert.Equal("/mem/store/b.cow: snapshot 'b' is newer than 'a': give the older snapshot first", e2.Message);
        Assert.Empty((await store.GetChangedExtentsAsync("a", "a")).Extents);

        // COW full: invalid, an error from then on (also as the newer of a pair).
        for (int c = 0; c < 8; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c, 8, 1));
        Assert.False(store.GetStatus().Snapshots.Single(s => s.Name == "small").IsValid);
        var e3 = await Assert.ThrowsAsync<SnapshotInvalidException>(() => store.GetChangedExtentsAsync("small").AsTask());
        Assert.Equal("/mem/store/small.cow: snapshot 'small' is invalid: COW file is full", e3.Message);
        await Assert.ThrowsAsync<SnapshotInvalidException>(() => store.GetChangedExtentsAsync("a", "small").AsTask());

        await store.DeleteSnapshotAsync("small").AsTask().WaitAsync(Watchdog);
        await store.MergeSnapshotAsync("b").AsTask().WaitAsync(Watchdog);
        Assert.Equal("/mem/store/b.cow: no snapshot named 'b'", (await Assert.ThrowsAsync<JournalArgumentException>(() => store.GetChangedExtentsAsync("a", "b").AsTask())).Message);
        Assert.Equal("/mem/store/small.cow: no snapshot named 'small'", (await Assert.ThrowsAsync<JournalArgumentException>(() => store.GetChangedExtentsAsync("small").AsTask())).Message);
    }

    [Fact]
    public async Task While_a_merge_is_unfinished_the_merging_snapshot_is_an_error_and_the_origin_map_includes_its_chunks()
    {
        var p = new TestDeviceProvider();
        FaultInjectingBlockDevice? originFaults = null;
        p.Wrap = (path, d) => path.EndsWith("origin.img", StringComparison.Ordinal) ? originFaults = new FaultInjectingBlockDevice(d) : d;
        await using var store = await CreateMemoryStoreAsync(p, OriginSectors);
        await store.CreateSnapshotAsync("a").AsTask().WaitAsync(Watchdog);
        for (int c = 0; c < 10; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 1));
        await store.CreateSnapshotAsync("m").AsTask().WaitAsync(Watchdog);
        for (int c = 30; c < 40; c++) await WriteAsync(store.GetSnapshot("m"), c * 8L, Pattern(c * 8L, 8, 2)); // m's own chunks
        // The merge of m fails part way: the origin reads as m until it is run again.
        originFaults!.AddRule(FaultRule.Permanent(FaultOps.Write, firstSector: 35 * 8));
        await Assert.ThrowsAsync<JournalException>(() => store.MergeSnapshotAsync("m").AsTask().WaitAsync(Watchdog));
        originFaults.ClearFaults();

        var e = await Assert.ThrowsAsync<ChangeTrackingException>(() => store.GetChangedExtentsAsync("m").AsTask());
        Assert.Equal("/mem/store/m.cow: snapshot 'm' is being merged into the origin; its changes cannot be listed (run the merge again to finish it)", e.Message);
        await Assert.ThrowsAsync<ChangeTrackingException>(() => store.GetChangedExtentsAsync("a", "m").AsTask());
        // a against the origin (which reads as m where m holds a chunk): a's chunks and m's, and exactly the differences.
        var images = new Dictionary<string, byte[]>
        {
            ["origin"] = await ReadAsync(store.Origin, 0, OriginSectors),
            ["a"] = await ReadAsync(store.GetSnapshot("a"), 0, OriginSectors),
        };
        var map = await ChangeCheck.CheckPairAsync(store, "a", null, images, null, exact: true, "merge unfinished");
        Assert.Equal(20, map.Chunks);
        await store.MergeSnapshotAsync("m").AsTask().WaitAsync(Watchdog);
        images["origin"] = await ReadAsync(store.Origin, 0, OriginSectors);
        Assert.Equal(20, (await ChangeCheck.CheckPairAsync(store, "a", null, images, null, exact: true, "merged")).Chunks);
    }
}
