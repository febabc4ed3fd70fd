using System.Diagnostics;
using System.Globalization;
using Journal.Storage;
using Journal.Tests.Campaign;

namespace Journal.Tests.Storage;

/// <summary>
/// A new file and a growth are written with zeros past the page cache (O_DIRECT) where the file system allows it, so
/// they leave no cached pages: pages cached by 1 MiB buffered writes sit in large folios on Linux 6.x, and each later
/// 4 KiB write into one costs several times a write into a page of its own (docs/storage.md). Where O_DIRECT is refused
/// and for the unaligned ends of a range the zeros go through the page cache as before; every way leaves zeros,
/// the exact size, and a full disk reported as <see cref="DeviceFullException"/>.
/// </summary>
public sealed class ZeroFillTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Create_and_growth_leave_no_zero_filled_page_in_the_page_cache()
    {
        if (!OperatingSystem.IsLinux()) return;
        string fs = FileSystemType(_dir.Path);
        Assert.True(fs is not ("tmpfs" or "ramfs"), $"the temp folder {_dir.Path} is on {fs}: this test needs a disk file system");
        string path = _dir.File("dev");
        const long Sectors = 16384; // 8 MiB: eight zero-fill steps
        using var dev = FileBlockDevice.Create(path, Sectors);
        Assert.Equal(0, PageCacheProbe.CachedBytes(path));
        dev.Extend(Sectors * 2);
        Assert.Equal(0, PageCacheProbe.CachedBytes(path));
        // The file reads as zeros and takes writes as before.
        var data = Patterns.Sectors(8, 3);
        dev.Write(Sectors + 8, data);
        var back = new byte[8 * 512];
        dev.Read(Sectors + 8, back);
        Assert.Equal(data, back);
        dev.Read(Sectors * 2 - 8, back);
        Assert.All(back, b => Assert.Equal(0, b));
    }

    [Fact]
    public void Unaligned_ends_are_zero_filled_and_the_data_before_a_growth_is_kept()
    {
        string path = _dir.File("dev");
        const long First = 3001, Second = 9003; // neither a multiple of 8 sectors (4 KiB)
        var data = Patterns.Sectors(3, 7);
        using (var dev = FileBlockDevice.Create(path, First))
        {
            dev.Write(First - 3, data);
            dev.Extend(Second);
            Assert.Equal(Second, dev.SectorCount);
            dev.Flush();
        }
        var image = File.ReadAllBytes(path);
        Assert.Equal(Second * 512, image.Length);
        Assert.Equal(data, image[(int)((First - 3) * 512)..(int)(First * 512)]);
        Assert.All(image[..(int)((First - 3) * 512)], b => Assert.Equal(0, b));
        Assert.All(image[(int)(First * 512)..], b => Assert.Equal(0, b));
    }

    /// <summary>
    /// A file system that refuses O_DIRECT (at once, or after part of the range: the test switch stands in for one, since
    /// tmpfs accepts O_DIRECT since Linux 6.6): the zeros go through the page cache from where the refusal came, and the
    /// file is the same.
    /// </summary>
    [Theory]
    [InlineData(0L)]
    [InlineData(1L << 20)]
    public void Where_o_direct_is_refused_the_rest_of_the_zeros_go_through_the_page_cache(long refuseAfterBytes)
    {
        string path = _dir.File("dev");
        var data = Patterns.Sectors(1, 9);
        NativeFile.TestRefuseDirectAfterBytes = refuseAfterBytes;
        try
        {
            using (var dev = FileBlockDevice.Create(path, 8192))
            {
                dev.Write(100, data);
                dev.Extend(24576);
                dev.Flush();
            }
        }
        finally
        {
            NativeFile.TestRefuseDirectAfterBytes = null;
        }
        var image = File.ReadAllBytes(path);
        Assert.Equal(24576 * 512, image.Length);
        Assert.Equal(data, image[(100 * 512)..(101 * 512)]);
        Assert.All(image[..(100 * 512)], b => Assert.Equal(0, b));
        Assert.All(image[(101 * 512)..], b => Assert.Equal(0, b));
        if (OperatingSystem.IsLinux())
        {
            // Through the page cache: what went that way is cached (all of it when refused at once).
            long cached = PageCacheProbe.CachedBytes(path);
            Assert.True(cached >= (refuseAfterBytes == 0 ? 24576L * 512 - (1 << 20) : 8L << 20), $"only {cached} bytes cached");
        }
    }

    [Fact]
    public async Task A_growth_that_runs_out_of_space_is_a_device_full_error_naming_the_file_and_the_size_is_unchanged()
    {
        using var fs = await LoopMountedFileSystem.CreateAsync(megabytes: 32);
        string path = Path.Combine(fs.MountPoint, "dev");
        using var dev = FileBlockDevice.Create(path, 2048);
        long asked = (fs.AvailableBytes + (8L << 20)) / 512;
        var e = Assert.Throws<DeviceFullException>(() => dev.Extend(asked));
        Assert.Contains(path, e.Message);
        Assert.Contains("no space left on device", e.Message);
        Assert.Equal(2048, dev.SectorCount);
        Assert.Equal(2048 * 512, new FileInfo(path).Length);
    }

    /// <summary>The type of the file system holding <paramref name="path"/> (stat -f).</summary>
    private static string FileSystemType(string path)
    {
        var psi = new ProcessStartInfo("stat") { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { "-f", "-c", "%T", path }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit(30_000);
        return output;
    }
}
