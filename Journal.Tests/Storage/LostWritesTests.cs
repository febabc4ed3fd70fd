using Journal.Storage;

namespace Journal.Tests.Storage;

/// <summary>
/// A failed fdatasync or write-back of a <see cref="FileBlockDevice"/> fails every later one. Linux reports a write-back
/// error to one call per open file and marks the failed pages clean, so without this a later flush (the commit
/// pipeline's, after a background grower's flush saw the error) would succeed over data that never reached the device.
/// The kernel cannot be made to fail on demand here, so the first failure is a test switch on the device; what follows
/// it is the device's own rule against the real kernel calls.
/// </summary>
public sealed class LostWritesTests : IDisposable
{
    private const int EIO = 5, ENOSPC = 28;
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task After_a_failed_flush_every_later_flush_and_write_back_fails_naming_the_file_and_the_first_failure()
    {
        string path = _dir.File("dev");
        using var dev = FileBlockDevice.Create(path, 64);
        dev.Write(0, new byte[4096]);
        dev.Flush();                                       // the real call succeeds
        dev.TestFailNextSync = EIO;
        var first = Assert.Throws<BlockDeviceException>(() => dev.Flush());
        Assert.IsNotType<DeviceFullException>(first);
        Assert.StartsWith(dev.Path + ": fdatasync failed", first.Message);

        // The kernel would now say yes; the device does not.
        var again = Assert.Throws<BlockDeviceException>(() => dev.Flush());
        Assert.StartsWith(dev.Path + ": refused: an earlier flush failed", again.Message);
        Assert.Contains("fdatasync failed", again.Message);
        Assert.DoesNotContain('\n', again.Message);
        Assert.Same(first, again.InnerException);
        Assert.Throws<BlockDeviceException>(() => dev.WriteBack());
        Assert.Throws<BlockDeviceException>(() => dev.StartWriteBack());
        Assert.Throws<BlockDeviceException>(() => dev.FlushAsCarrier());
        await Assert.ThrowsAsync<BlockDeviceException>(() => dev.FlushAsync().AsTask());
        // Reads and writes go on (the data path reports its own errors); only durability is refused.
        dev.Write(8, new byte[4096]);
        Assert.Throws<BlockDeviceException>(() => dev.Flush());

        // A new open of the file starts clean (what is on the device is then for recovery to judge).
        dev.Dispose();
        using var reopened = FileBlockDevice.Open(path);
        reopened.Flush();
    }

    [Fact]
    public void A_failed_write_back_is_kept_as_well_and_no_space_stays_a_device_full_error()
    {
        using var dev = FileBlockDevice.Create(_dir.File("dev"), 64);
        dev.Write(0, new byte[4096]);
        dev.TestFailNextSync = ENOSPC;
        var first = Assert.Throws<DeviceFullException>(() => dev.WriteBack());
        Assert.Contains("write-back (sync_file_range) failed", first.Message);
        var again = Assert.Throws<DeviceFullException>(() => dev.Flush());
        Assert.Contains("refused: an earlier flush failed", again.Message);
        Assert.Contains("no space left on device", again.Message);
    }
}
