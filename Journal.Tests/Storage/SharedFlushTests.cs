using System.Diagnostics;
using Journal.Storage;
using Journal.Tests.Tools;
using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Storage;

/// <summary>
/// Shared device flushes (<see cref="FileBlockDevice.CanFlushThrough"/>): a file's written-back data may be made durable
/// by another file's fdatasync only on ext2/3/4 without data journaling, when the file is fully written (no hole, no
/// reserved-but-unwritten block) and has not grown since its own last fdatasync. Each rule has a case here that turns
/// it off; the store's commit rounds use it for every COW file but one.
/// </summary>
[Collection(Journal.Tests.Cil.AllocationMeasurement.Name)]
public sealed class SharedFlushTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>True when the test folder's file system shares flushes (ext2/3/4 without data=journal); the expectations follow it.</summary>
    private bool TempSharesFlushes() => SharesFlushes(_dir);

    /// <summary>True when the file system of <paramref name="dir"/> shares flushes (see <see cref="TempSharesFlushes"/>).</summary>
    internal static bool SharesFlushes(TempDirectory dir)
    {
        using var probe = File.OpenHandle(dir.File("probe"), FileMode.CreateNew, FileAccess.ReadWrite);
        var device = NativeFile.DeviceOf(probe);
        Assert.True(device is not null, "statx of an open file failed");
        string? type = NativeFile.MountTypeOf(device!.Value);
        Assert.True(type is not null, $"device {device >> 32}:{device & 0xFFFFFFFF} is not in /proc/self/mountinfo");
        return type is "ext4" or "ext3" or "ext2" && NativeFile.Ext4Options(device.Value) is { } options
            && !options.Contains("data=journal") && !NativeFile.JournalsData(probe);
    }

    [Fact]
    public void Created_files_share_until_one_grows_and_again_after_its_own_flush()
    {
        bool shares = TempSharesFlushes();
        using var a = FileBlockDevice.Create(_dir.File("a"), 64);
        using var b = FileBlockDevice.Create(_dir.File("b"), 64);
        Assert.Equal(shares, b.CanFlushThrough(a));
        Assert.Equal(shares, a.CanFlushThrough(b));
        Assert.Equal(shares, a.CanFlushThrough(a));

        // Growth: new blocks and a new size, which only b's own fdatasync makes durable.
        b.Extend(128);
        Assert.False(b.CanFlushThrough(a));
        Assert.Equal(shares, a.CanFlushThrough(b)); // a did not grow
        b.Write(100, new byte[512]);
        Assert.False(b.CanFlushThrough(a));
        b.Flush();
        Assert.Equal(shares, b.CanFlushThrough(a));
    }

    [Fact]
    public async Task A_flush_counts_as_carrying_for_a_write_back_only_when_it_began_after_it_and_qualified()
    {
        bool shares = TempSharesFlushes();
        using var log = FileBlockDevice.Create(_dir.File("log"), 64);
        using var cow = FileBlockDevice.Create(_dir.File("cow"), 64);
        cow.Write(8, new byte[512]);
        cow.WriteBack();
        long begun = log.FlushesBegun;
        Assert.False(log.HasCarriedSince(begun)); // nothing has begun since
        log.Flush();                              // plain Flush, as the journal's log writer calls it
        Assert.Equal(shares, log.HasCarriedSince(begun));
        Assert.Equal(begun + 1, log.FlushesBegun);
        // An asynchronous flush counts the same way.
        begun = log.FlushesBegun;
        await log.FlushAsync().AsTask().WaitAsync(Watchdog);
        Assert.Equal(shares, log.HasCarriedSince(begun));
        // A carrier that grew does not qualify as it begins: its flush (with a journal commit) carries nothing.
        log.Extend(128);
        begun = log.FlushesBegun;
        log.Flush();
        Assert.False(log.HasCarriedSince(begun));
        // Its next flush does again.
        begun = log.FlushesBegun;
        log.Flush();
        Assert.Equal(shares, log.HasCarriedSince(begun));
        // The number is taken before the fdatasync: a flush already running when a caller reads the count is not one
        // that began after it.
        begun = log.FlushesBegun;
        long inside = -1;
        log.TestInsideSync = () => inside = log.FlushesBegun;
        log.Flush();
        log.TestInsideSync = null;
        Assert.Equal(begun + 1, inside);
    }

    [Fact]
    public void A_reopened_file_shares_only_after_its_first_own_flush_and_never_when_read_only()
    {
        bool shares = TempSharesFlushes();
        using var a = FileBlockDevice.Create(_dir.File("a"), 64);
        FileBlockDevice.Create(_dir.File("b"), 64).Dispose();
        using (var b = FileBlockDevice.Open(_dir.File("b")))
        {
            Assert.False(b.CanFlushThrough(a)); // nothing known about it until its own fdatasync
            b.Flush();
            Assert.Equal(shares, b.CanFlushThrough(a));
        }
        using var ro = FileBlockDevice.Open(_dir.File("b"), readOnly: true);
        ro.Flush();
        Assert.False(ro.CanFlushThrough(a));
        Assert.False(a.CanFlushThrough(ro));
    }

    [Fact]
    public void A_sparse_file_shares_only_once_every_block_is_written()
    {
        bool shares = TempSharesFlushes();
        using var a = FileBlockDevice.Create(_dir.File("a"), 64);
        using (var f = File.Create(_dir.File("sparse"))) f.SetLength(1 << 20); // one hole, 1 MiB
        using var sparse = FileBlockDevice.Open(_dir.File("sparse"));
        sparse.Flush();
        Assert.False(sparse.CanFlushThrough(a)); // a write would allocate a block

        sparse.Write(0, new byte[512 * 1024]); // half of it
        sparse.Flush();
        Assert.False(sparse.CanFlushThrough(a));
        sparse.Write(1024, new byte[512 * 1024]); // the rest
        sparse.Flush();
        Assert.Equal(shares, sparse.CanFlushThrough(a));
    }

    [Fact]
    public void Reserved_but_unwritten_blocks_inside_the_file_stop_it_sharing()
    {
        TempSharesFlushes();
        using var a = FileBlockDevice.Create(_dir.File("a"), 64);
        // fallocate(1) without --keep-size: blocks allocated as unwritten, the size set; a write converts them (metadata).
        var p = Process.Start(new ProcessStartInfo("fallocate", ["-l", "1M", _dir.File("reserved")]) { RedirectStandardError = true })!;
        p.WaitForExit(30_000);
        Assert.True(p.ExitCode == 0, "fallocate -l 1M failed: " + p.StandardError.ReadToEnd());
        using var reserved = FileBlockDevice.Open(_dir.File("reserved"));
        reserved.Flush();
        Assert.False(reserved.CanFlushThrough(a));
    }

    [Fact]
    public void Files_on_different_file_systems_do_not_share()
    {
        Assert.True(Directory.Exists("/dev/shm"), "/dev/shm (tmpfs) is missing");
        string other = Path.Combine("/dev/shm", "journal-tests-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var a = FileBlockDevice.Create(_dir.File("a"), 64);
            using var b = FileBlockDevice.Create(other, 64);
            Assert.False(b.CanFlushThrough(a));
            Assert.False(a.CanFlushThrough(b));
        }
        finally
        {
            File.Delete(other);
        }
    }

    [Fact]
    public void Write_backs_allocate_nothing_are_not_flushes_and_leave_the_data_readable()
    {
        using var dev = FileBlockDevice.Create(_dir.File("dev"), 64);
        var data = new byte[4096];
        const int Warm = 200, Count = 1000, Trials = 5;
        double perCall = double.MaxValue;
        long before = 0;
        for (int i = 0; i < Warm + Trials * Count; i++)
        {
            if (i >= Warm && (i - Warm) % Count == 0)
            {
                long now = GC.GetTotalAllocatedBytes(precise: true);
                if (i > Warm) perCall = Math.Min(perCall, (double)(now - before) / Count);
                before = GC.GetTotalAllocatedBytes(precise: true);
            }
            data[0] = (byte)i;
            dev.Write(i % 8 * 8, data);
            if (i % 2 == 0) dev.StartWriteBack();
            dev.WriteBack();
        }
        perCall = Math.Min(perCall, (double)(GC.GetTotalAllocatedBytes(precise: true) - before) / Count);
        Assert.True(perCall < 16, $"{perCall:F1} bytes allocated per write-back (lowest of {Trials} trials)");
        Assert.Equal(0, dev.Counters.Flushes); // a write-back is not a flush
        var back = new byte[4096];
        int last = Warm + Trials * Count - 1;
        dev.Read(last % 8 * 8, back);
        Assert.Equal((byte)last, back[0]);
    }

    [Fact]
    public async Task Preallocated_cow_files_never_flush_on_their_own_and_fill_no_hole()
    {
        bool shares = TempSharesFlushes();
        using var dir = new TempFolder();
        string folder = dir["store"];
        // 1,500 chunks of 4 KiB: past the first 4 MiB growth step of a file grown on demand.
        const int Chunks = 1500;
        var store = await SnapshotStore.CreateAsync(folder, new StoreOptions { OriginSectors = Chunks * 8, LogBlocks = 4096 }).AsTask().WaitAsync(Watchdog);
        try
        {
            for (int s = 0; s < 2; s++)
                await store.CreateSnapshotAsync($"p{s}", new SnapshotOptions { Preallocate = true }).AsTask().WaitAsync(Watchdog);
            foreach (var st in store.Catalog.Snapshots)
            {
                var cow = Assert.IsType<FileBlockDevice>(st.Store!.Cow);
                Assert.Equal(st.Store.TotalSectors, cow.SectorCount);
                using var h = File.OpenHandle(st.CowPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
                Assert.True(NativeFile.IsFullyWritten(h, cow.Length)); // written in full: no hole, nothing reserved but unwritten
            }
            var before = store.CommitStatistics;
            await Parallel.ForEachAsync(Enumerable.Range(0, Chunks), new ParallelOptions { MaxDegreeOfParallelism = 16 },
                async (c, _) => await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 1)));
            var after = store.CommitStatistics;
            long rounds = after.Rounds - before.Rounds, flushes = after.CowFlushes - before.CowFlushes;
            long writeBacks = after.CowWriteBacks - before.CowWriteBacks;
            // A round holds the exceptions queued since the last one: usually both files', sometimes one file's (the
            // pump can take a round between the two exceptions of a copy). Each file in a round is flushed or rides.
            Assert.InRange(flushes + writeBacks, rounds, 2 * rounds);
            long carried = after.CarriedRounds - before.CarriedRounds;
            if (shares)
            {
                // No file ever grew, so every round made its files durable with one device flush: a COW file's
                // fdatasync, or the previous round's log force (the log shares the file system).
                Assert.Equal(rounds, flushes + carried);
                Assert.True(carried > 0, $"no round rode a log force in {rounds} rounds");
                Assert.True(writeBacks > rounds / 2, $"{writeBacks} write-backs in {rounds} rounds");
            }
            else
            {
                Assert.Equal(0, writeBacks);
                Assert.Equal(0, carried);
            }
            await store.CloseAsync().AsTask().WaitAsync(Watchdog);
            store = await SnapshotStore.OpenAsync(folder).AsTask().WaitAsync(Watchdog);
            for (int c = 0; c < Chunks; c += 97)
            {
                Assert.Equal(new byte[8 * 512], await ReadAsync(store.GetSnapshot("p1"), c * 8L, 8));
                Assert.Equal(Pattern(c * 8L, 8, 1), await ReadAsync(store.Origin, c * 8L, 8));
            }
        }
        finally
        {
            await store.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_round_with_eight_cow_files_flushes_the_device_once_for_them()
    {
        bool shares = TempSharesFlushes();
        using var dir = new TempFolder();
        string folder = dir["store"];
        const int Snapshots = 8, Chunks = 256;
        var store = await SnapshotStore.CreateAsync(folder, new StoreOptions { OriginSectors = Chunks * 8, LogBlocks = 4096 }).AsTask().WaitAsync(Watchdog);
        try
        {
            for (int s = 0; s < Snapshots; s++) await store.CreateSnapshotAsync($"s{s}").AsTask().WaitAsync(Watchdog);
            var before = store.CommitStatistics;
            // Sixteen writers at once, so rounds take several exceptions of every file.
            await Parallel.ForEachAsync(Enumerable.Range(0, Chunks), new ParallelOptions { MaxDegreeOfParallelism = 16 },
                async (c, _) => await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 1)));
            var after = store.CommitStatistics;
            long rounds = after.Rounds - before.Rounds;
            long flushes = after.CowFlushes - before.CowFlushes, writeBacks = after.CowWriteBacks - before.CowWriteBacks;
            // Each file in a round was flushed or written back once (a round holds what was queued since the last one:
            // usually all eight files' exceptions, sometimes fewer).
            Assert.InRange(flushes + writeBacks, rounds, rounds * Snapshots);
            if (shares)
            {
                // Only growth (the first round of each file after it grew) makes a file flush itself.
                Assert.True(writeBacks > flushes, $"{flushes} COW flushes, {writeBacks} write-backs in {rounds} rounds");
            }
            else
            {
                Assert.Equal(0, writeBacks);
            }
            await store.CloseAsync().AsTask().WaitAsync(Watchdog);
            store = await SnapshotStore.OpenAsync(folder).AsTask().WaitAsync(Watchdog);
            for (int s = 0; s < Snapshots; s++)
                for (int c = 0; c < Chunks; c += 37)
                    Assert.Equal(new byte[8 * 512], await ReadAsync(store.GetSnapshot($"s{s}"), c * 8L, 8));
            for (int c = 0; c < Chunks; c += 37)
                Assert.Equal(Pattern(c * 8L, 8, 1), await ReadAsync(store.Origin, c * 8L, 8));
        }
        finally
        {
            await store.DisposeAsync();
        }
    }
}
