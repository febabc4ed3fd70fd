using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

public class SnapshotStoreLifecycleTests
{
    [Fact]
    public async Task Reopen_after_clean_close_keeps_snapshot_contents_and_origin_writes()
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, 256);
        await WriteAsync(store.Origin, 0, Pattern(0, 256, 1));
        var snap = await store.CreateSnapshotAsync("s1");
        await WriteAsync(store.Origin, 8, Pattern(8, 24, 2));
        await WriteAsync(snap, 100, Pattern(100, 3, 3));
        await store.CloseAsync();

        store = await ReopenAsync(p);
        Assert.True(store.LogClean);
        snap = store.GetSnapshot("s1");
        var expectedSnap = Pattern(0, 256, 1);
        Pattern(100, 3, 3).CopyTo(expectedSnap, 100 * 512);
        Assert.Equal(expectedSnap, await ReadAsync(snap, 0, 256));
        var expectedOrigin = Pattern(0, 256, 1);
        Pattern(8, 24, 2).CopyTo(expectedOrigin, 8 * 512);
        Assert.Equal(expectedOrigin, await ReadAsync(store.Origin, 0, 256));
        await store.CloseAsync();
    }

    [Fact]
    public async Task Second_opener_gets_in_use_error_at_once_with_real_files()
    {
        string folder = Path.Combine(Path.GetTempPath(), "snaptest-" + Guid.NewGuid().ToString("N"));
        try
        {
            await using var store = await SnapshotStore.CreateAsync(folder, new StoreOptions { OriginSectors = 64, LogBlocks = 2048 });
            var e = await Assert.ThrowsAsync<StoreInUseException>(() => SnapshotStore.OpenAsync(folder).AsTask().WaitAsync(Watchdog));
            Assert.Contains("in use", e.Message);
            Assert.Contains(folder, e.Message);
            Assert.DoesNotContain('\n', e.Message);
            await store.CloseAsync();
            await using var again = await SnapshotStore.OpenAsync(folder).AsTask().WaitAsync(Watchdog);
            Assert.Equal(64, again.OriginSectors);
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, true);
        }
    }

    [Theory]
    [InlineData(0, "invalid")]
    [InlineData(-8, "invalid")]
    [InlineData(3, "not a power of two")]
    [InlineData(24, "not a power of two")]
    [InlineData(1 << 22, "too large")]
    public async Task Bad_chunk_size_is_refused_with_one_line_and_nothing_is_created(int chunk, string words)
    {
        string folder = Path.Combine(Path.GetTempPath(), "snaptest-" + Guid.NewGuid().ToString("N"));
        var e = await Assert.ThrowsAsync<SnapshotArgumentException>(() =>
            SnapshotStore.CreateAsync(folder, new StoreOptions { OriginSectors = 1 << 23, ChunkSectors = chunk }).AsTask());
        Assert.Contains(words, e.Message);
        Assert.Contains(folder, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.False(Directory.Exists(folder));
    }

    /// <summary>
    /// Too little free space for a new store: refused before anything is written, and the figure it names is what it
    /// compared with the free space (a free space above the stated need is never refused).
    /// </summary>
    [Fact]
    public async Task A_create_without_space_names_the_whole_need_and_creates_nothing()
    {
        var p = new TestDeviceProvider();
        var options = new StoreOptions { OriginSectors = 8 * 1024, ChunkSectors = 8, LogBlocks = 2048 };
        long files = (8 * 1024 + 2048) * 512L; // origin and log
        p.FreeBytes = files + (1 << 20); // enough for the files, short of the whole need
        var e = await Assert.ThrowsAsync<global::Journal.Storage.DeviceFullException>(() => SnapshotStore.CreateAsync(Folder, p.Options(options)).AsTask());
        var m = System.Text.RegularExpressions.Regex.Match(e.Message, @"it needs (\d+) bytes \(origin 4194304, log 1048576, superblock \d+, and 1048576 for the first COW files and the folder\), the file system has (\d+)$");
        Assert.True(m.Success, e.Message);
        Assert.True(long.Parse(m.Groups[1].Value) > long.Parse(m.Groups[2].Value), e.Message);
        Assert.Empty(p.Paths);
        p.FreeBytes = long.Parse(m.Groups[1].Value);
        await using var store = await SnapshotStore.CreateAsync(Folder, p.Options(options)).AsTask().WaitAsync(Watchdog);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(8)]
    [InlineData(1 << 21)]
    public void Chunk_sizes_that_are_powers_of_two_up_to_2_pow_21_are_accepted(int chunk)
    {
        StoreOptions.ValidateChunkSectors(chunk, "test");
    }

    [Fact]
    public async Task Cow_file_too_small_for_header_and_first_area_is_refused_and_not_created()
    {
        var p = new TestDeviceProvider();
        await using var store = await CreateMemoryStoreAsync(p, 64);
        var e = await Assert.ThrowsAsync<SnapshotArgumentException>(() =>
            store.CreateSnapshotAsync("small", new SnapshotOptions { CowSectors = 15 }).AsTask());
        Assert.Contains("too small", e.Message);
        Assert.Contains("small.cow", e.Message);
        Assert.False(p.Exists(store.CowPathOf("small")));
        // Exactly header + first area is accepted (and fills at the first exception).
        var tiny = await store.CreateSnapshotAsync("tiny", new SnapshotOptions { CowSectors = 16 });
        await WriteAsync(store.Origin, 0, Pattern(0, 8, 1));
        Assert.False(store.GetStatus().Snapshots.Single().IsValid);
        await Assert.ThrowsAsync<SnapshotInvalidException>(() => ReadAsync(tiny, 0, 8));
    }

    [Theory]
    [InlineData("")]
    [InlineData("a/b")]
    [InlineData("a\\b")]
    [InlineData("..")]
    [InlineData("a..b")]
    [InlineData(".hidden")]
    [InlineData("white space")]
    [InlineData("origin")]
    [InlineData("0123456789012345678901234567890123456789012345678901234567890123456789")]
    public void Bad_snapshot_names_are_refused(string name)
    {
        var e = Assert.Throws<SnapshotArgumentException>(() => SnapshotStore.ValidateSnapshotName(name));
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("s")]
    [InlineData("snap-1.x_y")]
    [InlineData("0123456789012345678901234567890123456789012345678901234567890123")]
    public void Good_snapshot_names_are_accepted(string name) => SnapshotStore.ValidateSnapshotName(name);

    [Fact]
    public async Task Origin_with_no_snapshots_reads_and_writes()
    {
        var p = new TestDeviceProvider();
        await using var store = await CreateMemoryStoreAsync(p, 128);
        await WriteAsync(store.Origin, 3, Pattern(3, 50, 7));
        Assert.Equal(Pattern(3, 50, 7), await ReadAsync(store.Origin, 3, 50));
        Assert.Empty(store.GetStatus().Snapshots);
    }

    [Fact]
    public async Task Transient_snapshot_works_while_open_and_is_invalid_after_reopen()
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, 64);
        await WriteAsync(store.Origin, 0, Pattern(0, 64, 1));
        var t = await store.CreateSnapshotAsync("t", new SnapshotOptions { Persistent = false });
        await WriteAsync(store.Origin, 0, Pattern(0, 64, 2));
        Assert.Equal(Pattern(0, 64, 1), await ReadAsync(t, 0, 64));
        var st = store.GetStatus().Snapshots.Single();
        Assert.Equal(SnapshotKind.Transient, st.Kind);
        Assert.Equal(8, st.MetadataSectors); // the header chunk that names the store and the snapshot
        Assert.Equal($"{72}/{72} 8", st.DmStatus);
        await store.CloseAsync();
        Assert.DoesNotContain("/mem/store/t.cow", p.Paths); // its scratch file, removed at close

        store = await ReopenAsync(p);
        var after = store.GetStatus().Snapshots.Single();
        Assert.False(after.IsValid);
        Assert.Equal("Invalid", after.DmStatus);
        await Assert.ThrowsAsync<SnapshotInvalidException>(() => ReadAsync(store.GetSnapshot("t"), 0, 8));
        await store.DeleteSnapshotAsync("t");
        Assert.Empty(store.GetStatus().Snapshots);
        await store.CloseAsync();
    }

    [Fact]
    public async Task Delete_removes_the_cow_file_and_the_name_can_be_reused()
    {
        var p = new TestDeviceProvider();
        await using var store = await CreateMemoryStoreAsync(p, 64);
        await WriteAsync(store.Origin, 0, Pattern(0, 64, 1));
        await store.CreateSnapshotAsync("a");
        await WriteAsync(store.Origin, 0, Pattern(0, 64, 2));
        await store.DeleteSnapshotAsync("a");
        Assert.False(p.Exists(store.CowPathOf("a")));
        var again = await store.CreateSnapshotAsync("a");
        Assert.Equal(Pattern(0, 64, 2), await ReadAsync(again, 0, 64));
        await Assert.ThrowsAsync<SnapshotArgumentException>(() => store.DeleteSnapshotAsync("nope").AsTask());
        await Assert.ThrowsAsync<SnapshotArgumentException>(() => store.CreateSnapshotAsync("a").AsTask());
    }

    [Fact]
    public async Task Creating_a_store_where_one_exists_is_refused()
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, 64);
        await store.CloseAsync();
        var e = await Assert.ThrowsAsync<JournalException>(() => CreateMemoryStoreAsync(p, 64));
        Assert.Contains("already exists", e.Message);
    }

    [Fact]
    public async Task Opening_a_folder_without_a_store_says_so()
    {
        var p = new TestDeviceProvider();
        var e = await Assert.ThrowsAsync<StoreNotFoundException>(() => ReopenAsync(p));
        Assert.Contains("store.sb", e.Message);
    }

    [Fact]
    public async Task Io_after_close_is_refused()
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, 64);
        var origin = store.Origin;
        await store.CloseAsync();
        await store.CloseAsync();
        await Assert.ThrowsAsync<JournalException>(() => ReadAsync(origin, 0, 1));
    }

    [Fact]
    public async Task Unaligned_or_out_of_range_io_is_refused_with_one_line()
    {
        var p = new TestDeviceProvider();
        await using var store = await CreateMemoryStoreAsync(p, 64);
        var e1 = await Assert.ThrowsAsync<SnapshotArgumentException>(() => store.Origin.WriteAsync(0, new byte[100]).AsTask());
        Assert.Contains("not a whole number", e1.Message);
        var e2 = await Assert.ThrowsAsync<SnapshotArgumentException>(() => store.Origin.ReadAsync(60, new byte[8 * 512]).AsTask());
        Assert.Contains("beyond the end", e2.Message);
    }

    [Fact]
    public async Task A_cancelled_close_releases_everything_and_a_second_close_does_nothing()
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, 64);
        await store.CreateSnapshotAsync("s");
        await WriteAsync(store.Origin, 0, Pattern(0, 64, 1));
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => store.CloseAsync(cancelled.Token).AsTask());
        await store.CloseAsync();          // a second close: nothing more, no error
        store.Dispose();                   // and the synchronous one too
        // The lock was released: the store opens again in this process; the unclean close replays, nothing is lost.
        await using var again = await ReopenAsync(p);
        Assert.False(again.LogClean);
        Assert.Equal(Pattern(0, 64, 1), await ReadAsync(again.Origin, 0, 64));
        Assert.Equal(new byte[64 * 512], await ReadAsync(again.GetSnapshot("s"), 0, 64));
    }

    [Fact]
    public async Task A_cancelled_open_releases_the_lock_and_every_file_and_the_next_open_recovers_and_reports_it()
    {
        using var folder = new Journal.Tests.Tools.TempFolder();
        string path = folder["store"];
        var store = await SnapshotStore.CreateAsync(path, new StoreOptions { OriginSectors = 512, LogBlocks = 4096 }).AsTask().WaitAsync(Watchdog);
        Assert.Null(store.RecoveryReport);
        await store.CreateSnapshotAsync("s").AsTask().WaitAsync(Watchdog);
        await WriteAsync(store.Origin, 0, Pattern(0, 64, 1));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => store.CloseAsync(new CancellationToken(canceled: true)).AsTask().WaitAsync(Watchdog));

        // Cancelled before recovery runs: nothing stays open, so the next open takes the lock at once.
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => SnapshotStore.OpenAsync(path, null, new CancellationToken(canceled: true)).AsTask().WaitAsync(Watchdog));
        await using var again = await SnapshotStore.OpenAsync(path).AsTask().WaitAsync(Watchdog);
        var report = Assert.IsType<global::Snapshot.Recovery.StoreRecoveryReport>(again.RecoveryReport);
        Assert.False(report.Clean);
        Assert.True(report.Checkpoints >= 1, report.ToString());
        Assert.True(report.ItemsApplied >= 1, report.ToString());
        Assert.True(report.Elapsed > TimeSpan.Zero);
        Assert.Equal(Pattern(0, 64, 1), await ReadAsync(again.Origin, 0, 64));
        Assert.Equal(new byte[64 * 512], await ReadAsync(again.GetSnapshot("s"), 0, 64));
    }
}
