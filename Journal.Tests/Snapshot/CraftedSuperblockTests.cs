using Journal.Testing;
using Journal.Storage;
using Journal.Tests.Tools;
using Snapshot;
using Snapshot.Format;

namespace Journal.Tests.Snapshot;

/// <summary>
/// A superblock that passes its checksums but says something its files contradict must not cost a file: the store
/// removes a transient snapshot's COW file at open (its contents were only in memory), but only a file whose own
/// header says it is transient.
/// </summary>
public sealed class CraftedSuperblockTests
{
    [Fact]
    public async Task A_superblock_that_calls_a_persistent_snapshot_transient_does_not_get_its_COW_file_removed()
    {
        using var dir = new TempFolder();
        string folder = dir["store"];
        await using (var store = await SnapshotStore.CreateAsync(folder, new StoreOptions { OriginSectors = 2048, LogBlocks = 2048 }))
        {
            await store.Origin.WriteAsync(0, Enumerable.Repeat((byte)7, 4096).ToArray());
            await store.CreateSnapshotAsync("s");
            await store.Origin.WriteAsync(0, Enumerable.Repeat((byte)9, 4096).ToArray());
        }
        string cow = Path.Combine(folder, "s.cow");
        var cowBytes = File.ReadAllBytes(cow);
        using (var sbDev = FileBlockDevice.Open(Path.Combine(folder, SnapshotStore.SuperblockFileName)))
        {
            var sb = Superblock.Read(sbDev);
            var rec = Assert.Single(sb.Snapshots);
            (sb with { Generation = sb.Generation + 1, Snapshots = [rec with { Kind = SnapshotKindCode.Transient }] }).Write(sbDev);
        }

        await using (var store = await SnapshotStore.OpenAsync(folder))
        {
            var status = Assert.Single(store.GetStatus().Snapshots);
            Assert.False(status.IsValid);
        }
        Assert.True(File.Exists(cow), "the persistent snapshot's COW file was removed");
        Assert.Equal(cowBytes, File.ReadAllBytes(cow));
    }

    [Fact]
    public async Task An_area_whose_terminator_is_followed_by_entries_in_its_sector_makes_the_snapshot_unavailable_not_silently_shorter()
    {
        using var dir = new TempFolder();
        string folder = dir["store"];
        await using (var store = await SnapshotStore.CreateAsync(folder, new StoreOptions { OriginSectors = 2048, LogBlocks = 2048 }))
        {
            await store.Origin.WriteAsync(0, Enumerable.Repeat((byte)7, 8 * 4096).ToArray());
            await store.CreateSnapshotAsync("s");
            await store.Origin.WriteAsync(0, Enumerable.Repeat((byte)9, 8 * 4096).ToArray()); // 8 exceptions, one area sector
        }
        // Entry 3's new_chunk zeroed: a reader that stopped there would lose entries 3..7 and read the origin's 9s.
        string cow = Path.Combine(folder, "s.cow");
        using (var f = new FileStream(cow, FileMode.Open, FileAccess.ReadWrite))
        {
            f.Position = (long)new CowLayout(8).AreaChunk(0) * 4096 + 3 * DiskException.Size + 8;
            f.Write(new byte[8]);
        }

        await using (var store = await SnapshotStore.OpenAsync(folder))
        {
            var status = Assert.Single(store.GetStatus().Snapshots);
            Assert.False(status.IsValid);
            Assert.True(status.Unavailable);
            Assert.Contains("the terminator (new_chunk 0) is followed by an entry in the same sector", status.InvalidReason);
            await Assert.ThrowsAsync<SnapshotUnavailableException>(async () => await store.Snapshots.Single().ReadAsync(24, new byte[4096]));
        }
    }

    [Fact]
    public async Task A_superblock_whose_origin_size_is_not_the_origin_files_is_refused_and_changes_nothing()
    {
        using var dir = new TempFolder();
        string folder = dir["store"];
        await using (var store = await SnapshotStore.CreateAsync(folder, new StoreOptions { OriginSectors = 2048, LogBlocks = 2048 }))
        {
            await store.CreateSnapshotAsync("s");
            await store.Origin.WriteAsync(1024 + 8, Enumerable.Repeat((byte)9, 4096).ToArray()); // an exception past the half
        }
        string sbPath = Path.Combine(folder, SnapshotStore.SuperblockFileName);
        var original = File.ReadAllBytes(sbPath);
        foreach (long sectors in new long[] { 1024, 4096 })
        {
            using (var sbDev = FileBlockDevice.Open(sbPath))
            {
                var sb = Superblock.Read(sbDev);
                (sb with { Generation = sb.Generation + 1, OriginSectors = sectors }).Write(sbDev);
            }
            var crafted = File.ReadAllBytes(sbPath);
            var e = await Assert.ThrowsAnyAsync<JournalException>(async () => await SnapshotStore.OpenAsync(folder));
            Assert.Equal($"{Path.Combine(folder, SnapshotStore.OriginFileName)}: origin is 2048 sectors, the superblock says {sectors}", e.Message);
            Assert.Equal(crafted, File.ReadAllBytes(sbPath));
            File.WriteAllBytes(sbPath, original);
        }
        await using (var store = await SnapshotStore.OpenAsync(folder))
            Assert.True(Assert.Single(store.GetStatus().Snapshots).IsValid);
    }

    [Fact]
    public async Task A_superblock_with_a_non_zero_reserved_field_is_refused()
    {
        using var dir = new TempFolder();
        string folder = dir["store"];
        await (await SnapshotStore.CreateAsync(folder, new StoreOptions { OriginSectors = 2048, LogBlocks = 2048 })).DisposeAsync();
        string sbPath = Path.Combine(folder, SnapshotStore.SuperblockFileName);
        var bytes = File.ReadAllBytes(sbPath);
        // Both copies: offset 40 set, the checksum (offset 44, CRC-32C of the copy with it zeroed) made good again.
        for (int copy = 0; copy < 2; copy++)
        {
            var b = bytes.AsSpan(copy * Superblock.CopyBytes, Superblock.CopyBytes);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(b[40..], 1);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(b[44..], 0);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(b[44..], System.IO.Hashing.Crc32.HashToUInt32(System.IO.Hashing.Crc32ParameterSet.Crc32C, b));
        }
        File.WriteAllBytes(sbPath, bytes);
        var e = await Assert.ThrowsAnyAsync<JournalException>(async () => await SnapshotStore.OpenAsync(folder));
        Assert.Contains("the reserved field at offset 40 is 0x00000001, expected 0", e.Message);
    }

    [Fact]
    public async Task A_superblock_whose_cow_stamp_is_ahead_of_the_file_makes_it_an_older_copy_and_loses_nothing()
    {
        using var dir = new TempFolder();
        string folder = dir["store"];
        await using (var store = await SnapshotStore.CreateAsync(folder, new StoreOptions { OriginSectors = 2048, LogBlocks = 2048 }))
        {
            await store.Origin.WriteAsync(0, Enumerable.Repeat((byte)7, 8 * 4096).ToArray());
            await store.CreateSnapshotAsync("s");
            await store.Origin.WriteAsync(0, Enumerable.Repeat((byte)9, 8 * 4096).ToArray());
        }
        string sbPath = Path.Combine(folder, SnapshotStore.SuperblockFileName);
        var bytes = File.ReadAllBytes(sbPath);
        var sb = Superblock.ReadHome(MemoryBlockDevice.FromImage(bytes, sbPath)).Current;
        uint stamp = Assert.Single(sb.Snapshots).CowStamp;
        Assert.Equal(2u, stamp); // 1 at create, 2 at the close (the file was written to)
        // Both copies: the record's stamp (bits 17..31 of its kind field, offset 64 + 16) moved two ahead, the checksum
        // (offset 44) made good again.
        for (int copy = 0; copy < 2; copy++)
        {
            var b = bytes.AsSpan(copy * Superblock.CopyBytes, Superblock.CopyBytes);
            uint kind = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(b[80..]);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(b[80..], kind & 0x1ffff | (stamp + 2) << 17);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(b[44..], 0);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(b[44..], System.IO.Hashing.Crc32.HashToUInt32(System.IO.Hashing.Crc32ParameterSet.Crc32C, b));
        }
        File.WriteAllBytes(sbPath, bytes);
        var cowBefore = File.ReadAllBytes(Path.Combine(folder, "s.cow"));

        await using (var store = await SnapshotStore.OpenAsync(folder))
        {
            var status = Assert.Single(store.GetStatus().Snapshots);
            Assert.True(status.Unavailable);
            Assert.Contains("it is an older copy of the file", status.InvalidReason);
            await Assert.ThrowsAsync<SnapshotUnavailableException>(async () => await store.Origin.WriteAsync(0, new byte[4096]));
        }
        Assert.Equal(cowBefore, File.ReadAllBytes(Path.Combine(folder, "s.cow")));
    }

    [Fact]
    public async Task A_superblock_that_gives_a_COW_file_a_size_smaller_than_it_uses_is_refused_and_changes_nothing()
    {
        using var dir = new TempFolder();
        string folder = dir["store"];
        await using (var store = await SnapshotStore.CreateAsync(folder, new StoreOptions { OriginSectors = 2048, LogBlocks = 2048 }))
        {
            await store.CreateSnapshotAsync("s");
            await store.Origin.WriteAsync(0, Enumerable.Repeat((byte)9, 40 * 4096).ToArray());
        }
        string sbPath = Path.Combine(folder, SnapshotStore.SuperblockFileName);
        var original = File.ReadAllBytes(sbPath);
        using (var sbDev = FileBlockDevice.Open(sbPath))
        {
            var sb = Superblock.Read(sbDev);
            var rec = Assert.Single(sb.Snapshots);
            (sb with { Generation = sb.Generation + 1, Snapshots = [rec with { CowSectors = 16 * 8 }] }).Write(sbDev);
        }
        var crafted = File.ReadAllBytes(sbPath);
        var e = await Assert.ThrowsAnyAsync<JournalException>(async () => await SnapshotStore.OpenAsync(folder));
        Assert.Contains("the file uses chunks past the COW size the superblock gives it (128 sectors); the store was not opened and nothing was changed", e.Message);
        Assert.Equal(crafted, File.ReadAllBytes(sbPath));
        File.WriteAllBytes(sbPath, original);
        await using (var store = await SnapshotStore.OpenAsync(folder))
            Assert.True(Assert.Single(store.GetStatus().Snapshots).IsValid);
    }
}
