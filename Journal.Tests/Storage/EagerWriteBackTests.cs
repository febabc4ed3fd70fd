using System.Runtime.InteropServices;
using Journal.Storage;
using Microsoft.Win32.SafeHandles;

namespace Journal.Tests.Storage;

/// <summary>
/// <see cref="FileBlockDevice.EagerWriteBackBytes"/>: a write of at least that size starts its own write-back at once,
/// a smaller one stays dirty in the page cache until a flush. Observed with cachestat(2) (Linux 6.5), which counts a
/// file's dirty pages.
/// </summary>
public sealed partial class EagerWriteBackTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void A_large_write_starts_its_write_back_and_a_small_one_stays_dirty_until_the_flush()
    {
        const int large = 1 << 20, small = 64 << 10, attempts = 5;
        var data = Patterns.Sectors(large / 512, 7);
        // A write-back of the whole machine (a `sync` of another test running beside this one, the kernel's periodic
        // write-back) may clean the pages that should stay dirty: then the scenario is tried again on new files. What
        // must never happen, an eager write left dirty, is checked every time.
        for (int attempt = 0; attempt < attempts; attempt++)
        {
            string lazyPath = _dir.File($"lazy{attempt}"), eagerPath = _dir.File($"eager{attempt}");
            using var eager = FileBlockDevice.Create(eagerPath, 2 * large / 512);
            using var lazy = FileBlockDevice.Create(lazyPath, 2 * large / 512);
            eager.EagerWriteBackBytes = 256 << 10;

            lazy.Write(0, data);
            eager.Write(0, data);
            eager.Write(large / 512, data.AsSpan(0, small)); // below the threshold

            Assert.Equal(0, DirtyPages(eagerPath, 0, large)); // sent: under write-back or written
            if (DirtyPages(lazyPath, 0, large) != large / 4096 || DirtyPages(eagerPath, large, small) != small / 4096) continue;

            eager.Flush();
            Assert.Equal(0, DirtyPages(eagerPath, 0, 2 * large));
            var back = new byte[large];
            eager.Read(0, back);
            Assert.Equal(data, back);
            return;
        }
        Assert.Fail($"writes without eager write-back never stayed dirty until their flush in {attempts} tries");
    }

    [Fact]
    public void A_negative_threshold_is_refused()
    {
        using var dev = FileBlockDevice.Create(_dir.File("dev"), 8);
        Assert.Throws<ArgumentOutOfRangeException>(() => dev.EagerWriteBackBytes = -1);
        Assert.Equal(0, dev.EagerWriteBackBytes);
    }

    // cachestat(2): x86-64 and arm64 both number it 451.
    private const int SysCachestat = 451;

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static unsafe partial long Syscall(long number, int fd, long* range, long* stat, uint flags);

    /// <summary>Dirty pages of <paramref name="length"/> bytes at <paramref name="offset"/> of the file, by cachestat.</summary>
    private static unsafe long DirtyPages(string path, long offset, long length)
    {
        using SafeFileHandle h = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        long* range = stackalloc long[2] { offset, length };
        long* stat = stackalloc long[5]; // cache, dirty, writeback, evicted, recently evicted
        long r = Syscall(SysCachestat, (int)h.DangerousGetHandle(), range, stat, 0);
        Assert.True(r == 0, $"cachestat failed: errno {Marshal.GetLastPInvokeError()} (needs Linux 6.5)");
        return stat[1];
    }
}
