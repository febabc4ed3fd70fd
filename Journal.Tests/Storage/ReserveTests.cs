using Journal.Storage;
using Journal.Tests.Campaign;
using Journal.Tests.Tools;
using Snapshot;

namespace Journal.Tests.Storage;

/// <summary>
/// A reservation the file system cannot give takes nothing: a failed fallocate keeps the blocks it took (ext4), so
/// an open that reserves a COW file's space again, or a reservation asked of a nearly full file system, must leave
/// the free space as it found it.
/// </summary>
public sealed class ReserveTests
{
    /// <summary>Slack for the file system's own metadata between two readings of the free space.</summary>
    private const long Slack = 1 << 20;

    [Fact]
    public async Task A_reservation_larger_than_the_free_space_fails_as_device_full_and_takes_nothing()
    {
        using var fs = await LoopMountedFileSystem.CreateAsync(megabytes: 32);
        string path = Path.Combine(fs.MountPoint, "dev");
        using var dev = FileBlockDevice.Create(path, 2048);
        long before = fs.AvailableBytes;
        long asked = (before + (8L << 20)) / 512;
        var e = Assert.Throws<DeviceFullException>(() => dev.Reserve(asked));
        Assert.Contains(path, e.Message);
        Assert.True(fs.AvailableBytes >= before - Slack, $"free space fell from {before} to {fs.AvailableBytes} bytes");
        // What fits is still reserved.
        Assert.True(dev.Reserve(8192)); // 4 MiB: 3 MiB past the file's 1 MiB
        Assert.True(fs.AvailableBytes < before - (1L << 20), "a reservation that fits took no space");
    }

    [Fact]
    public async Task Opening_a_copied_store_whose_COW_reservation_does_not_fit_leaves_the_free_space_alone()
    {
        using var fs = await LoopMountedFileSystem.CreateAsync(megabytes: 96);
        string original = Path.Combine(fs.MountPoint, "st");
        await using (var store = await SnapshotStore.CreateAsync(original, new StoreOptions { OriginSectors = 16384, LogBlocks = 2048 }))
        {
            await store.CreateSnapshotAsync("s1", new SnapshotOptions { CowSectors = 40L << 11 });
            await store.Origin.WriteAsync(0, new byte[65536]);
        }
        // A copy holds the files' data but not the blocks reserved past their ends; there is no room for 40 MiB more.
        string copy = Path.Combine(fs.MountPoint, "st2");
        Directory.CreateDirectory(copy);
        foreach (var f in Directory.GetFiles(original)) File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
        long before = fs.AvailableBytes;
        Assert.True(before < 40L << 20, $"the test needs less than 40 MiB free, has {before}");
        await using (var store = await SnapshotStore.OpenAsync(copy))
        {
            Assert.True(fs.AvailableBytes >= before - Slack, $"open took {before - fs.AvailableBytes} bytes of {before} free");
            Assert.True(store.GetStatus().Snapshots.Single().IsValid);
        }
        Assert.True(fs.AvailableBytes >= before - Slack, $"free space fell from {before} to {fs.AvailableBytes} bytes");
    }

    [Fact]
    public async Task A_reservation_that_fallocate_refuses_gives_back_what_it_took()
    {
        using var fs = await LoopMountedFileSystem.CreateAsync(megabytes: 32);
        string path = Path.Combine(fs.MountPoint, "dev");
        using var dev = FileBlockDevice.Create(path, 2048);
        long before = fs.AvailableBytes;
        NativeFile.TestSkipReserveCheck = true; // past the free-space check, so fallocate itself fails part way
        try
        {
            Assert.Throws<DeviceFullException>(() => dev.Reserve((before + (8L << 20)) / 512));
        }
        finally
        {
            NativeFile.TestSkipReserveCheck = false;
        }
        Assert.True(fs.AvailableBytes >= before - Slack, $"free space fell from {before} to {fs.AvailableBytes} bytes");
    }

    [Fact]
    public async Task A_snapshot_deleted_while_the_store_stays_open_gives_its_space_and_reservation_back_at_once()
    {
        using var fs = await LoopMountedFileSystem.CreateAsync(megabytes: 96);
        string folder = Path.Combine(fs.MountPoint, "st");
        await using var store = await SnapshotStore.CreateAsync(folder, new StoreOptions { OriginSectors = 16 << 11, LogBlocks = 2048 });
        await store.Origin.WriteAsync(0, new byte[16 << 20]);
        await store.FlushAsync();
        long before = fs.AvailableBytes;
        for (int round = 0; round < 3; round++)
        {
            // A COW file of 32 MiB, reserved in full; 4 MiB of it written by first writes.
            await store.CreateSnapshotAsync("s", new SnapshotOptions { CowSectors = 32 << 11 });
            await store.Origin.WriteAsync(0, Enumerable.Repeat((byte)(round + 1), 4 << 20).ToArray());
            await store.FlushAsync();
            Assert.True(fs.AvailableBytes < before - (31L << 20), $"round {round}: the snapshot took {before - fs.AvailableBytes} bytes");
            await store.DeleteSnapshotAsync("s");
            Assert.True(fs.AvailableBytes >= before - (2L << 20), $"round {round}: {before - fs.AvailableBytes} bytes still taken after the delete");
        }
    }

    [Fact]
    public async Task A_deleted_snapshots_file_that_its_user_moved_elsewhere_keeps_its_data()
    {
        using var dir = new TempFolder();
        string folder = dir["st"];
        await using var store = await SnapshotStore.CreateAsync(folder, new StoreOptions { OriginSectors = 2048, LogBlocks = 2048 });
        await store.Origin.WriteAsync(0, Enumerable.Repeat((byte)7, 65536).ToArray());
        await store.CreateSnapshotAsync("s");
        await store.Origin.WriteAsync(0, Enumerable.Repeat((byte)9, 65536).ToArray());
        await store.FlushAsync();
        string kept = dir["kept.cow"];
        File.Move(Path.Combine(folder, "s.cow"), kept);
        var bytes = File.ReadAllBytes(kept);
        await store.DeleteSnapshotAsync("s");
        Assert.Equal(bytes, File.ReadAllBytes(kept));
    }
}
