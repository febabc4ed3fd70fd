using Journal.Storage;

namespace Journal.Tests.Storage;

/// <summary>
/// <see cref="FileBlockDevice"/>'s asynchronous read on a thread that must not wait (<see cref="BlockDevice.ReadsMustNotWait"/>,
/// as an NBD connection's reader sets it): what the page cache holds is read on the calling thread and the read completes
/// before it returns; a read that would wait for the device (its pages dropped from the cache here with posix_fadvise
/// DONTNEED) returns at once, unfinished, and completes on a pool thread with the right data. A read half cached
/// completes the same way. Without the setting the same uncached read blocks and completes before it returns. (The
/// calling thread of these tests is a dedicated thread.)
/// </summary>
public sealed class UncachedReadTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static T OnOwnThread<T>(Func<T> f, bool mustNotWait = true)
    {
        T result = default!;
        Exception? error = null;
        var t = new Thread(() =>
        {
            BlockDevice.ReadsMustNotWait = mustNotWait;
            try { result = f(); }
            catch (Exception e) { error = e; }
            finally { BlockDevice.ReadsMustNotWait = false; }
        });
        t.Start();
        Assert.True(t.Join(TimeSpan.FromMinutes(1)), "the read did not return");
        if (error is not null) throw new InvalidOperationException("the read failed", error);
        return result;
    }

    /// <summary>A device with 64 sectors of data at sector 64, flushed and dropped from the page cache.</summary>
    private (FileBlockDevice Device, byte[] Data) UncachedDevice(int seed)
    {
        string path = _dir.File("dev");
        var data = Patterns.Sectors(64, seed);
        var dev = FileBlockDevice.Create(path, 256);
        dev.Write(64, data);
        dev.Flush();
        PageCacheProbe.DropFrom(path, 0, 0);
        return (dev, data);
    }

    /// <summary>Starts an asynchronous read on a thread that must not wait; whether it was complete on return, and its end.</summary>
    private static (bool InlineDone, Task Done) StartRead(FileBlockDevice dev, long sector, byte[] buffer) =>
        OnOwnThread(() =>
        {
            try
            {
                var vt = dev.ReadAsync(sector, buffer);
                return (vt.IsCompleted, vt.AsTask());
            }
            catch (Exception e)
            {
                return (true, Task.FromException(e));
            }
        });

    [Fact]
    public async Task A_read_the_page_cache_holds_completes_inline_and_one_it_does_not_completes_on_the_pool_with_the_data()
    {
        if (!OperatingSystem.IsLinux()) return;
        var (dev, data) = UncachedDevice(5);
        using var _ = dev;
        await AssertSomeReadGoesOnAsync(dev, 64, data, () => PageCacheProbe.DropFrom(dev.Path, 0, 0),
            "a read of sectors out of the page cache");

        // Now cached: the same read completes before it returns.
        var again = new byte[data.Length];
        bool cachedInline = OnOwnThread(() => dev.ReadAsync(64, again).IsCompleted);
        Assert.True(cachedInline, "a read of cached sectors did not complete on the calling thread");
        Assert.Equal(data, again);
    }

    [Fact]
    public void Without_the_setting_an_uncached_read_blocks_the_calling_thread_and_completes_before_it_returns()
    {
        if (!OperatingSystem.IsLinux()) return;
        var (dev, data) = UncachedDevice(6);
        using var _ = dev;
        var back = new byte[data.Length];
        bool inlineDone = OnOwnThread(() => dev.ReadAsync(64, back).IsCompleted, mustNotWait: false);
        Assert.True(inlineDone, "a read on a thread that may wait did not complete on it");
        Assert.Equal(data, back);
    }

    [Fact]
    public async Task A_read_whose_first_part_is_cached_reads_the_rest_on_the_pool()
    {
        if (!OperatingSystem.IsLinux()) return;
        string path = _dir.File("dev");
        var data = Patterns.Sectors(32, 9);
        using var dev = FileBlockDevice.Create(path, 256);
        // 4 KiB writes into pages not cached make a page each (a larger write may make one large folio, which a drop of
        // part of it would leave cached).
        for (int s = 0; s < 32; s += 8) dev.Write(s, data.AsSpan(s * 512, 8 * 512));
        dev.Flush();
        // Keep the first 4 KiB (8 sectors) cached, drop the rest.
        await AssertSomeReadGoesOnAsync(dev, 0, data, () => PageCacheProbe.DropFrom(path, 4096, 4096),
            "a read whose tail is out of the page cache");
    }

    /// <summary>Tries of a read that should go on on the pool (see <see cref="AssertSomeReadGoesOnAsync"/>).</summary>
    private const int Attempts = 5;

    /// <summary>
    /// Drops pages with <paramref name="drop"/> and reads <paramref name="expected"/> at <paramref name="sector"/> on a
    /// thread that must not wait, until a read returns unfinished (and completes with the data on the pool).
    /// </summary>
    /// <remarks>
    /// The kernel may start reading the dropped pages for the no-wait read and find them read before it returns (a
    /// virtual disk served from the host's cache answers within microseconds): then the read rightly completes inline
    /// (1 read in 2,000 here, measured with a C program doing the same; the suite saw it in runs that were busy with
    /// other I/O). So the drop and the read are tried up to <see cref="Attempts"/> times, further apart each time; a read
    /// that never went on elsewhere fails.
    /// </remarks>
    private static async Task AssertSomeReadGoesOnAsync(FileBlockDevice dev, long sector, byte[] expected, Action drop, string what)
    {
        for (int attempt = 0; attempt < Attempts; attempt++)
        {
            if (attempt > 0) Thread.Sleep(100 * attempt); // away from whatever made the last read quick
            drop();
            var back = new byte[expected.Length];
            var (inlineDone, task) = StartRead(dev, sector, back);
            await task.WaitAsync(TimeSpan.FromMinutes(1));
            Assert.Equal(expected, back);
            if (!inlineDone) return;
        }
        Assert.Fail($"{what} completed on the calling thread {Attempts} times out of {Attempts}");
    }

    /// <summary>
    /// A file cut short underneath the device (by another program): a read that starts past the new end (the cached read
    /// finds the end of the file at once) and one that runs into it (cached part first, the rest on the pool) both fail
    /// with one line naming the file.
    /// </summary>
    [Theory]
    [InlineData(64L)]
    [InlineData(32L)]
    public async Task A_read_of_a_file_cut_short_underneath_fails_naming_the_file(long sector)
    {
        if (!OperatingSystem.IsLinux()) return;
        string path = _dir.File("dev");
        using var dev = FileBlockDevice.Create(path, 256);
        dev.Write(0, Patterns.Sectors(64, 4));
        dev.Flush();
        using (var h = File.OpenHandle(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite)) RandomAccess.SetLength(h, 48 * 512);
        var back = new byte[32 * 512];
        var (_, task) = StartRead(dev, sector, back);
        var e = await Assert.ThrowsAsync<BlockDeviceException>(() => task.WaitAsync(TimeSpan.FromMinutes(1)));
        Assert.Contains(Path.GetFullPath(path), e.Message);
        Assert.Contains("end of the file", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }
}
