using Journal.Testing;
using System.Buffers.Binary;
using System.Text;
using Journal.Tests.Golden;
using Journal.Tests.Snapshot;
using Snapshot;
using Snapshot.Changes;
using Snapshot.Format;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Changes;

/// <summary>
/// The on-disk parts of changed-block tracking: the creation-marks table (chunk 2 of a COW file, named by the header at
/// offsets 100..111) pinned byte for byte by a golden file, a COW file that still reads back as dm-snapshot reads it
/// (no exception points at the marks), and every field read back checked as a create writes it — the header's marks
/// fields, the table, and the written flag in the superblock record's kind field.
/// </summary>
public class ChangeFormatTests
{
    private static byte[] ChunkText(string text, int chunkSectors)
    {
        var b = new byte[chunkSectors * 512];
        Encoding.ASCII.GetBytes(text).AsSpan(0, Math.Min(text.Length, b.Length)).CopyTo(b);
        return b;
    }

    [Theory]
    [InlineData(8, "changes-marks-4k")]
    [InlineData(1, "changes-marks-512")]
    public async Task Creation_marks_are_pinned_byte_for_byte_and_the_cow_file_stays_a_dm_snapshot_device(int chunkSectors, string golden)
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, 16 * chunkSectors, chunkSectors);
        for (int c = 0; c < 16; c++) await WriteAsync(store.Origin, c * (long)chunkSectors, ChunkText($"origin chunk {c:D2} v1\n", chunkSectors));
        await store.CreateSnapshotAsync("a").AsTask().WaitAsync(Watchdog);
        foreach (int c in new[] { 3, 4, 5 }) await WriteAsync(store.Origin, c * (long)chunkSectors, ChunkText($"origin chunk {c:D2} v2\n", chunkSectors));
        await store.CreateSnapshotAsync("t", new SnapshotOptions { Persistent = false }).AsTask().WaitAsync(Watchdog); // transient: never in marks
        await store.CreateSnapshotAsync("b").AsTask().WaitAsync(Watchdog);
        foreach (int c in new[] { 9, 1 }) await WriteAsync(store.Origin, c * (long)chunkSectors, ChunkText($"origin chunk {c:D2} v3\n", chunkSectors));
        await store.CreateSnapshotAsync("c").AsTask().WaitAsync(Watchdog);
        string cow = store.CowPathOf("c");
        await store.CloseAsync().AsTask().WaitAsync(Watchdog);

        var image = p.Backing(cow).ToArray();
        int chunkBytes = chunkSectors * 512;
        var dm = DmCow.Read(image);
        Assert.Equal(1u, dm.Valid);
        Assert.Empty(dm.Exceptions); // c was taken last: nothing copied into it yet
        var header = CowHeader.Read(image.AsSpan(0, Math.Max(chunkBytes, CowHeader.Size)), cow, chunkSectors, 4, 0x5354_4f52_4531_0001);
        Assert.Equal(2UL, header.MarksChunk);
        Assert.Equal(2u, header.MarksCount);
        int marksChunks = ChangeMarks.ChunksFor(chunkSectors);
        var marks = ChangeMarks.TryRead(image.AsSpan(2 * chunkBytes, marksChunks * chunkBytes), 4, header.MarksCount, out string? problem);
        Assert.Null(problem);
        // a (id 1) had 3 exceptions when c was created (chunks 3, 4, 5; 9 and 1 went in later), b (id 3) 2 (9 and 1).
        Assert.Equal([(1UL, 5L), (3UL, 2L)], marks!.Entries);

        var sb = new StringBuilder();
        sb.Append($"COW file c.cow, chunk {chunkBytes} bytes: snapshots a (persistent, id 1), t (transient, id 2), b (id 3), c (id 4)\n");
        sb.Append($"header: {header}\n");
        sb.Append("chunk 0, bytes 0..127 (dm-snapshot header, the store's fields, the marks fields at 100..111):\n");
        sb.Append(GoldenFile.HexDump(image.AsSpan(0, 128)));
        sb.Append($"chunks 2..{1 + marksChunks} (creation marks: {marks}):\n");
        sb.Append(GoldenFile.HexDump(image.AsSpan(2 * chunkBytes, marksChunks * chunkBytes)));
        GoldenFile.Verify(golden, sb.ToString());
    }

    [Fact]
    public void A_table_is_checked_as_it_was_written_and_only_good_in_its_own_file()
    {
        var marks = new ChangeMarks(9, [(2UL, 10L), (5UL, 0L)]);
        var table = new byte[ChangeMarks.MaxBytes];
        marks.Write(table);
        Assert.Equal([(2UL, 10L), (5UL, 0L)], ChangeMarks.TryRead(table, 9, 2, out _)!.Entries);

        void Refused(byte[] t, ulong owner, uint count, string words)
        {
            Assert.Null(ChangeMarks.TryRead(t, owner, count, out string? problem));
            Assert.Contains(words, problem);
        }
        Refused(table, 8, 2, "checksum");                 // another snapshot's file
        Refused(table, 9, 1, "the COW header says 1");    // count disagrees with the header
        var bad = (byte[])table.Clone();
        bad[0] ^= 1;
        Refused(bad, 9, 2, "magic");
        bad = (byte[])table.Clone();
        bad[16] ^= 1;                                       // an entry changed: the checksum catches it
        Refused(bad, 9, 2, "checksum");
        bad = (byte[])table.Clone();
        bad[100] = 1;                                       // a byte after the entries
        Refused(bad, 9, 2, "not zero");
        // Ids out of order or not below the owner's are refused even with a good checksum.
        var backwards = new byte[ChangeMarks.MaxBytes];
        new ChangeMarks(9, [(5UL, 1L), (2UL, 1L)]).Write(backwards);
        Refused(backwards, 9, 2, "ascend");
        var above = new byte[ChangeMarks.MaxBytes];
        new ChangeMarks(9, [(9UL, 1L)]).Write(above);
        Refused(above, 9, 1, "below the owner");
    }

    [Fact]
    public void Header_marks_fields_are_checked_as_a_create_writes_them()
    {
        var chunk0 = new byte[4096];
        CowHeader.New(8, 7, 42).Write(chunk0);
        Assert.Equal(0UL, CowHeader.Read(chunk0, "x.cow", 8, 7, 42).MarksChunk); // a header from before the fields: no table
        CowHeader.SetMarks(chunk0, 2, 3);
        var h = CowHeader.Read(chunk0, "x.cow", 8, 7, 42);
        Assert.Equal((2UL, 3u), (h.MarksChunk, h.MarksCount));

        void Refused(ulong chunk, uint count, string words)
        {
            var b = new byte[4096];
            CowHeader.New(8, 7, 42).Write(b);
            CowHeader.SetMarks(b, chunk, count); // a good checksum: only the values are wrong
            var e = Assert.Throws<StoreCorruptionException>(() => CowHeader.Read(b, "x.cow", 8, 7, 42));
            Assert.StartsWith("x.cow: ", e.Message);
            Assert.Contains(words, e.Message);
        }
        Refused(3, 1, "chunk 3");
        Refused(0, 1, "with 1 entries");
        Refused(2, 64, "at most 63");
        var reserved = new byte[4096];
        CowHeader.New(8, 7, 42).Write(reserved);
        reserved[120] = 1;
        BinaryPrimitives.WriteUInt32LittleEndian(reserved.AsSpan(84), 0);
        CowHeader.SetMarks(reserved, 0, 0); // recomputes the checksum over the changed byte
        Assert.Contains("offset 120: a reserved COW header byte (116..127) is not zero", Assert.Throws<StoreCorruptionException>(() => CowHeader.Read(reserved, "x.cow", 8, 7, 42)).Message);
    }

    [Fact]
    public void The_written_flag_and_the_cow_stamp_ride_in_the_kind_field()
    {
        var rec = new SnapshotRecord(3, 64, SnapshotKindCode.Persistent, SnapshotStateCode.Valid, InvalidReasonCode.None, "s") { Flags = SnapshotRecordFlags.Written };
        var b = new byte[SnapshotRecord.Size];
        rec.Write(b);
        Assert.Equal(0x0001_0001u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(16)));
        Assert.Equal(rec, SnapshotRecord.Read(b, "store.sb", 0));
        // Bits 17..31: the COW stamp (15 bits).
        var stamped = rec with { CowStamp = CowHeader.MaxStamp };
        stamped.Write(b);
        Assert.Equal(0xffff_0001u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(16)));
        Assert.Equal(stamped, SnapshotRecord.Read(b, "store.sb", 0));
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(16), 0x0002_0001u);
        Assert.Equal(1u, SnapshotRecord.Read(b, "store.sb", 0).CowStamp);
        Assert.Equal(SnapshotRecordFlags.None, SnapshotRecord.Read(b, "store.sb", 0).Flags);
        Assert.Equal(1u, CowHeader.NextStamp(CowHeader.MaxStamp));
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(16), 0x0001_0003u);
        Assert.Contains("kind 3", Assert.Throws<JournalException>(() => SnapshotRecord.Read(b, "store.sb", 0)).Message);
    }

    [Fact]
    public async Task The_allocator_never_hands_out_the_marks_chunks_and_an_entry_pointing_at_them_is_refused()
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, 64 * 8);
        await store.CreateSnapshotAsync("s").AsTask().WaitAsync(Watchdog);
        for (int c = 0; c < 40; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 1));
        string cow = store.CowPathOf("s");
        await store.CloseAsync().AsTask().WaitAsync(Watchdog);
        var image = p.Backing(cow).ToArray();
        Assert.DoesNotContain(DmCow.Read(image).Exceptions, e => e.New == 2);
        // Reopened, more copies: still never chunk 2 (the header names it).
        store = await ReopenAsync(p);
        for (int c = 40; c < 60; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 1));
        await store.CloseAsync().AsTask().WaitAsync(Watchdog);
        image = p.Backing(cow).ToArray();
        var dm = DmCow.Read(image);
        Assert.Equal(60, dm.Exceptions.Count);
        Assert.DoesNotContain(dm.Exceptions, e => e.New == 2);
        // A forged entry pointing at the marks chunk: the snapshot is refused as damaged at open, naming the entry.
        BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(4096 + 8), 2);
        p.Replace(cow, Journal.Testing.MemoryBlockDevice.FromImage(image, cow));
        store = await ReopenAsync(p);
        var st = store.GetStatus().Snapshots.Single();
        Assert.False(st.IsValid);
        Assert.Contains("creation-marks table", st.InvalidReason);
        await store.CloseAsync().AsTask().WaitAsync(Watchdog);
    }
}
