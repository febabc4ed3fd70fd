using Journal.Storage;

namespace Journal.Tests.Storage;

public sealed class FileBlockDeviceTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Create_makes_a_zero_filled_file_of_exactly_the_size_asked_for()
    {
        string path = _dir.File("dev");
        const long Sectors = 3000;   // 1.46 MiB: more than one zero-fill step, not a multiple of it
        using (var dev = FileBlockDevice.Create(path, Sectors))
        {
            Assert.Equal(Sectors, dev.SectorCount);
            Assert.Equal(Path.GetFullPath(path), dev.Name);
        }
        Assert.Equal(Sectors * 512, new FileInfo(path).Length);
        Assert.All(File.ReadAllBytes(path), b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task Writes_read_back_sync_and_async_and_survive_reopen()
    {
        string path = _dir.File("dev");
        byte[] a = Patterns.Sectors(8, 1), b = Patterns.Sectors(3, 50), c = Patterns.Sectors(1, 99);
        using (var dev = FileBlockDevice.Create(path, 64))
        {
            dev.Write(0, a);
            await dev.WriteAsync(20, b);
            dev.Write(63, c);
            var back = new byte[8 * 512];
            await dev.ReadAsync(0, back);
            Assert.Equal(a, back);
            back = new byte[3 * 512];
            dev.Read(20, back);
            Assert.Equal(b, back);
            dev.Flush();
        }
        using (var dev = FileBlockDevice.Open(path, readOnly: true))
        {
            Assert.True(dev.IsReadOnly);
            var image = new byte[64 * 512];
            dev.Read(0, image);
            Assert.Equal(a, image[..(8 * 512)]);
            Assert.Equal(b, image[(20 * 512)..(23 * 512)]);
            Assert.Equal(c, image[(63 * 512)..]);
            Assert.All(image[(8 * 512)..(20 * 512)], x => Assert.Equal(0, x));
            var ex = Assert.Throws<BlockDeviceException>(() => dev.Write(0, a));
            Assert.Contains("read-only", ex.Message);
        }
    }

    [Fact]
    public void Create_refuses_an_existing_file_and_leaves_it_alone()
    {
        string path = _dir.File("existing");
        File.WriteAllBytes(path, [1, 2, 3]);
        var ex = Assert.Throws<DeviceOpenException>(() => FileBlockDevice.Create(path, 8));
        Assert.Equal(DeviceOpenError.AlreadyExists, ex.Error);
        AssertOneLineNaming(ex, path);
        Assert.Contains("already exists", ex.Message);
        Assert.Equal(new byte[] { 1, 2, 3 }, File.ReadAllBytes(path));
    }

    [Fact]
    public void Create_in_a_missing_directory_names_it()
    {
        string path = Path.Combine(_dir.Path, "nope", "dev");
        var ex = Assert.Throws<DeviceOpenException>(() => FileBlockDevice.Create(path, 8));
        Assert.Equal(DeviceOpenError.Missing, ex.Error);
        AssertOneLineNaming(ex, path);
    }

    [Fact]
    public void Open_of_a_missing_file_says_so_in_one_line()
    {
        string path = _dir.File("missing");
        var ex = Assert.Throws<DeviceOpenException>(() => FileBlockDevice.Open(path));
        Assert.Equal(DeviceOpenError.Missing, ex.Error);
        AssertOneLineNaming(ex, path);
        Assert.Contains("no such file", ex.Message);
    }

    [Fact]
    public void Open_of_a_directory_says_so_in_one_line()
    {
        var ex = Assert.Throws<DeviceOpenException>(() => FileBlockDevice.Open(_dir.Path));
        Assert.Equal(DeviceOpenError.IsDirectory, ex.Error);
        AssertOneLineNaming(ex, _dir.Path);
        Assert.Contains("directory", ex.Message);
        var ex2 = Assert.Throws<DeviceOpenException>(() => FileBlockDevice.Create(_dir.Path, 8));
        Assert.Equal(DeviceOpenError.IsDirectory, ex2.Error);
    }

    [Fact]
    public void Open_of_a_file_that_is_not_whole_sectors_names_the_path_and_length()
    {
        string path = _dir.File("odd");
        File.WriteAllBytes(path, new byte[1000]);
        var ex = Assert.Throws<DeviceOpenException>(() => FileBlockDevice.Open(path));
        Assert.Equal(DeviceOpenError.BadLength, ex.Error);
        AssertOneLineNaming(ex, path);
        Assert.Contains("1000", ex.Message);
        // The refused open released its handle: the file can be replaced.
        File.Delete(path);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void Extend_appends_zeros_and_the_size_survives_reopen()
    {
        string path = _dir.File("grow");
        byte[] last = Patterns.Sectors(1, 7);
        using (var dev = FileBlockDevice.Create(path, 16))
        {
            dev.Write(15, last);
            dev.Extend(16 + 2500);
            Assert.Equal(2516, dev.SectorCount);
            var grown = new byte[2500 * 512];
            dev.Read(16, grown);
            Assert.All(grown, b => Assert.Equal(0, b));
            dev.Write(2515, last);
            dev.Extend(100);     // never shrinks
            Assert.Equal(2516, dev.SectorCount);
            dev.Flush();
        }
        Assert.Equal(2516L * 512, new FileInfo(path).Length);
        using var reopened = FileBlockDevice.Open(path);
        var buf = new byte[512];
        reopened.Read(15, buf);
        Assert.Equal(last, buf);
        reopened.Read(2515, buf);
        Assert.Equal(last, buf);
    }

    [Fact]
    public async Task Flushes_are_counted()
    {
        using var dev = FileBlockDevice.Create(_dir.File("dev"), 8);
        dev.Write(0, Patterns.Sectors(1, 3));
        dev.Flush();
        await dev.FlushAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30));
        DeviceCounters c = dev.Counters;
        Assert.Equal(2, c.Flushes);
        Assert.Equal(1, c.Writes);
        Assert.Equal(512, c.BytesWritten);
    }

    [Fact]
    public void A_second_exclusive_open_is_refused_as_in_use_until_the_first_is_closed()
    {
        string path = _dir.File("store");
        using (var created = FileBlockDevice.Create(path, 8, lockExclusive: true))
        {
            Assert.True(created.IsLockedExclusive);
            var ex = Assert.Throws<DeviceOpenException>(() => FileBlockDevice.Open(path, lockExclusive: true));
            Assert.Equal(DeviceOpenError.InUse, ex.Error);
            AssertOneLineNaming(ex, path);
            Assert.Contains("in use", ex.Message);
        }
        using (var first = FileBlockDevice.Open(path, lockExclusive: true))
        {
            var ex = Assert.Throws<DeviceOpenException>(() => FileBlockDevice.Open(path, readOnly: true, lockExclusive: true));
            Assert.Equal(DeviceOpenError.InUse, ex.Error);
        }
        using var again = FileBlockDevice.Open(path, lockExclusive: true);
        Assert.True(again.IsLockedExclusive);
    }

    [Fact]
    public void IO_past_the_end_names_the_file_and_sector()
    {
        string path = _dir.File("dev");
        using var dev = FileBlockDevice.Create(path, 8);
        var ex = Assert.Throws<BlockDeviceException>(() => dev.Write(7, new byte[1024]));
        Assert.Equal(Path.GetFullPath(path), ex.Device);
        Assert.Equal(7, ex.Sector);
        Assert.Contains(Path.GetFullPath(path), ex.Message);
    }

    [Fact]
    public void A_negative_size_is_refused_and_leaves_no_file()
    {
        string path = _dir.File("neg");
        Assert.Throws<JournalArgumentException>(() => FileBlockDevice.Create(path, -1));
        Assert.False(File.Exists(path));
    }

    private static void AssertOneLineNaming(Exception ex, string path)
    {
        Assert.Contains(Path.GetFullPath(path), ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
        Assert.DoesNotContain('\r', ex.Message);
    }
}
