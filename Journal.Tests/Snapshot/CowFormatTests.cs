using Journal.Storage;
using Journal.Testing;
using Snapshot;
using Snapshot.Commit;
using Snapshot.Exceptions;
using Snapshot.Format;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

public class CowFormatTests
{
    [Fact]
    public void On_disk_structure_sizes_are_fixed()
    {
        Assert.Equal(16, DiskException.Size);
        Assert.Equal(128, CowHeader.Size);
        Assert.Equal(96, SnapshotRecord.Size);
        Assert.Equal(16, SegmentLogHeader.Size);
        Assert.Equal(8192, Superblock.CopyBytes);
        Assert.True(Superblock.HeaderBytes + Superblock.MaxSnapshots * SnapshotRecord.Size <= Superblock.CopyBytes);
        Assert.Equal(24, CowHeader.SlotsFor(1));
        Assert.Equal(248, CowHeader.SlotsFor(8));
        Assert.Equal(CowHeader.MaxSlots, CowHeader.SlotsFor(1 << 21));
    }

    [Fact]
    public void Area_locations_follow_the_dm_snapshot_layout()
    {
        var l = new CowLayout(8);
        Assert.Equal(256, l.ExceptionsPerArea);
        Assert.Equal(1UL, l.AreaChunk(0));
        Assert.Equal(258UL, l.AreaChunk(1));
        Assert.Equal(515UL, l.AreaChunk(2));
        Assert.True(l.IsMetadataChunk(0));
        Assert.True(l.IsMetadataChunk(1));
        Assert.True(l.IsMetadataChunk(258));
        Assert.False(l.IsMetadataChunk(2));
        Assert.False(l.IsMetadataChunk(257));
        Assert.Equal(259UL, l.SkipMetadata(258));
        Assert.Equal(0L, l.AreaOfDataChunk(257));
        Assert.Equal(1L, l.AreaOfDataChunk(259));
        var one = new CowLayout(1);
        Assert.Equal(32, one.ExceptionsPerArea);
        Assert.Equal(34UL, one.AreaChunk(1));
    }

    [Fact]
    public void Header_round_trips_and_rejects_bad_fields_with_one_line()
    {
        var h = CowHeader.New(8, 7, 0x1234_5678_9abc_def0);
        var b = new byte[512];
        h.Write(b);
        Assert.Equal(h, CowHeader.Read(b, "x.cow", 8, 7, 0x1234_5678_9abc_def0));
        Assert.Equal((0x1234_5678_9abc_def0UL, 7UL, CowHeader.KindPersistent), CowHeader.TryIdentify(b));
        var other = Assert.Throws<StoreCorruptionException>(() => CowHeader.Read(b, "x.cow", 8, 7, 0x1111));
        Assert.Contains("another store", other.Message);
        Assert.Equal("SnAp", System.Text.Encoding.ASCII.GetString(b, 0, 4));
        Assert.Contains("valid 1", h.ToString());
        var e = Assert.Throws<StoreCorruptionException>(() => CowHeader.Read(b, "x.cow", 16, 7));
        Assert.Contains("x.cow", e.Message);
        Assert.Contains("chunk size", e.Message);
        Assert.Throws<StoreCorruptionException>(() => CowHeader.Read(b, "x.cow", 8, 8));
        b[90] ^= 1; // the store id is covered by the checksum too
        Assert.Contains("checksum", Assert.Throws<StoreCorruptionException>(() => CowHeader.Read(b, "x.cow", 8, 7)).Message);
        Assert.Null(CowHeader.TryIdentify(b));
        b[90] ^= 1;
        b[72] ^= 1;
        Assert.Contains("checksum", Assert.Throws<StoreCorruptionException>(() => CowHeader.Read(b, "x.cow", 8, 7)).Message);
        b[0] = 0;
        Assert.Contains("magic", Assert.Throws<StoreCorruptionException>(() => CowHeader.Read(b, "x.cow", 8, 7)).Message);
    }

    [Fact]
    public async Task Superblock_keeps_the_newest_good_copy_when_the_other_is_torn()
    {
        var dev = new MemoryBlockDevice(Superblock.FileSectors, "store.sb");
        var rec = new SnapshotRecord(3, 4096, SnapshotKindCode.Persistent, SnapshotStateCode.Valid, InvalidReasonCode.None, "s");
        var g1 = new Superblock(1, 64, 8, 4, [rec]);
        await g1.WriteAsync(dev, default);
        var g2 = g1 with { Generation = 2, Snapshots = [] };
        await g2.WriteAsync(dev, default);
        Assert.Empty(Superblock.Read(dev).Snapshots);
        // Tear copy A (generation 2): the reader falls back to generation 1.
        var garbage = new byte[512];
        Array.Fill(garbage, (byte)0xA5);
        dev.Write(3, garbage);
        var back = Superblock.Read(dev);
        Assert.Equal(1UL, back.Generation);
        Assert.Equal(rec, back.Snapshots.Single());
        dev.Write(Superblock.CopySectors + 1, garbage);
        var e = Assert.Throws<JournalException>(() => Superblock.Read(dev));
        Assert.Contains("no valid superblock copy", e.Message);
    }

    [Fact]
    public void Allocation_starts_at_chunk_2_and_steps_over_metadata_areas()
    {
        var p = new TestDeviceProvider();
        var l = new CowLayout(8);
        using var s = PersistentExceptionStore.Create(p, "/mem/a.cow", l, 8 * 1024, 2048, 1, 99, new DirectAreaCommitter());
        var got = new List<ulong>();
        for (int i = 0; i < 300; i++)
        {
            Assert.True(s.TryAllocate(out ulong c));
            got.Add(c);
        }
        Assert.Equal(Enumerable.Range(2, 256).Select(i => (ulong)i), got.Take(256));
        Assert.Equal(259UL, got[256]);
        Assert.DoesNotContain(258UL, got);
    }

    [Theory]
    [InlineData(MetadataMode.Journal)]
    [InlineData(MetadataMode.DirectArea)]
    internal async Task Cleanly_closed_cow_file_reads_back_as_dm_snapshot_would(MetadataMode mode)
    {
        var p = new TestDeviceProvider();
        var store = await SnapshotStore.CreateAsync(Folder, p.Options(new StoreOptions { OriginSectors = 8 * 600, LogBlocks = 2048, MetadataMode = mode }));
        var snap = await store.CreateSnapshotAsync("s");
        // 300 first writes: more than one area (256 entries per area with 4 KiB chunks).
        for (int c = 0; c < 300; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 1));
        string cow = store.CowPathOf("s");
        await store.CloseAsync();

        var image = p.Backing(cow).ToArray();
        var dm = DmCow.Read(image);
        Assert.Equal(0x70416e53u, dm.Magic);
        Assert.Equal(1u, dm.Valid);
        Assert.Equal(1u, dm.Version);
        Assert.Equal(8u, dm.ChunkSectors);
        Assert.Equal(2, dm.AreasRead);
        Assert.Equal(Enumerable.Range(0, 300).Select(i => (ulong)i).ToHashSet(), dm.Exceptions.Select(e => e.Old).ToHashSet());
        // Every new chunk is a data chunk holding the origin's old data (zeros here, since the origin started empty).
        foreach (var (_, n) in dm.Exceptions) Assert.False(new CowLayout(8).IsMetadataChunk(n));
        Assert.Equal(dm.Exceptions.Count, dm.Exceptions.Select(e => e.New).Distinct().Count());
    }

    [Fact]
    public async Task A_chunk_allocated_for_an_exception_that_never_committed_is_reused_after_reopen()
    {
        var p = new TestDeviceProvider();
        var l = new CowLayout(8);
        using (var s = PersistentExceptionStore.Create(p, "/mem/h.cow", l, 8 * 1024, 2048, 1, 99, new DirectAreaCommitter()))
        {
            Assert.True(s.TryAllocate(out ulong a));
            Assert.True(s.TryAllocate(out ulong b));
            Assert.True(s.TryAllocate(out ulong c));
            Assert.Equal((2UL, 3UL, 4UL), (a, b, c));
            await s.EnsureCapacityAsync(c);
            await CommitDirectAsync(s, 10, a);
            await CommitDirectAsync(s, 11, c); // b was allocated but its exception never committed (a crash, say)
        }
        using (var s = PersistentExceptionStore.Open(p, "/mem/h.cow", l, 8 * 1024, 2048, 1, 99, out var header, new DirectAreaCommitter()))
        {
            Assert.True(header.IsValid);
            var seen = new List<(ulong, ulong)>();
            s.Load(1000, (o, n) => { seen.Add((o, n)); return true; });
            Assert.Equal([(10UL, 2UL), (11UL, 4UL)], seen);
            Assert.Equal(1, s.HoleCount);
            Assert.True(s.TryAllocate(out ulong again));
            Assert.Equal(3UL, again);
            Assert.True(s.TryAllocate(out ulong next));
            Assert.Equal(5UL, next);
            Assert.Equal(new StoreUsage(6 * 8, 8 * 1024, 2 * 8), s.Usage);
        }
    }

    [Fact]
    public async Task Corrupt_entries_are_refused_naming_file_and_entry()
    {
        var p = new TestDeviceProvider();
        var l = new CowLayout(8);
        using (var s = PersistentExceptionStore.Create(p, "/mem/c.cow", l, 8 * 1024, 2048, 1, 99, new DirectAreaCommitter()))
        {
            Assert.True(s.TryAllocate(out ulong a));
            await s.EnsureCapacityAsync(a);
            await CommitDirectAsync(s, 5, a);
        }
        // Point entry 1 at a metadata chunk.
        var entry = new byte[512];
        p.Backing("/mem/c.cow").Read(8, entry);
        new DiskException(6, 258).Write(entry.AsSpan(16));
        p.Backing("/mem/c.cow").Write(8, entry);
        using var s2 = PersistentExceptionStore.Open(p, "/mem/c.cow", l, 8 * 1024, 2048, 1, 99, out _, new DirectAreaCommitter());
        var e = Assert.Throws<StoreCorruptionException>(() => s2.Load(1000, (_, _) => true));
        Assert.Contains("/mem/c.cow", e.Message);
        Assert.Contains("area 0 entry 1", e.Message);
        Assert.Equal(8 * 512 + 16, e.Offset);       // area 0 is chunk 1 (sector 8); entry 1 is 16 bytes in
        Assert.Equal("258", e.Actual);
        Assert.Contains("offset 4112: ", e.Message);
    }

    /// <summary>Commits one exception the dm-snapshot way (area rewritten, flushed), as a commit round would.</summary>
    private static Task CommitDirectAsync(PersistentExceptionStore s, ulong oldChunk, ulong newChunk) =>
        ((AreaMetadata)s.Metadata).CommitAsync([new PendingException { OldChunk = oldChunk, NewChunk = newChunk }], default).AsTask();

    [Fact]
    public void Complete_table_folds_consecutive_chunks_into_runs()
    {
        var t = new ExceptionTable();
        for (ulong i = 0; i < 1000; i++) t.Insert(i, 5000 + i);
        Assert.Equal(1000, t.Count);
        Assert.Equal((1000 + ExceptionTable.GroupSize - 1) / ExceptionTable.GroupSize, t.RunCount);   // one run per group of chunks
        for (ulong i = 0; i < 1000; i++)
        {
            Assert.True(t.TryLookup(i, out ulong n));
            Assert.Equal(5000 + i, n);
        }
        Assert.False(t.Contains(1000));
        // Backwards extension and scattered inserts.
        t.Insert(2000, 10);
        t.Insert(1999, 9);
        t.Insert(77777, 3);
        Assert.True(t.TryLookup(1999, out ulong m) && m == 9);
        Assert.Throws<InvalidOperationException>(() => t.Insert(5, 1));
        var rnd = new Random(5);
        var model = new Dictionary<ulong, ulong>();
        var t2 = new ExceptionTable();
        for (int i = 0; i < 20000; i++)
        {
            ulong o = (ulong)rnd.Next(100000);
            if (model.ContainsKey(o)) continue;
            model[o] = (ulong)i + 2;
            t2.Insert(o, (ulong)i + 2);
        }
        foreach (var (o, n) in model) Assert.True(t2.TryLookup(o, out ulong got) && got == n);
        Assert.Equal(model.Count, t2.Count);
    }
}
