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
        // The refusal is an I/O error, not "no space": freeing space does not bring the lost pages back.
        var again = Assert.Throws<BlockDeviceException>(() => dev.Flush());
        Assert.IsNotType<DeviceFullException>(again);
        Assert.Contains("refused: an earlier flush failed", again.Message);
        Assert.Contains("no space left on device", again.Message);
    }

    [Fact]
    public async Task A_flush_waits_for_one_in_progress_so_a_failure_is_never_missed_by_a_call_already_running()
    {
        // Flush A is held inside the device, just before its fdatasync. Flush B (which fails) must wait for it: were
        // both in the kernel at once, the kernel would report the error to one and A could succeed after B's failure.
        using var dev = FileBlockDevice.Create(_dir.File("dev"), 64);
        using var inside = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        dev.TestInsideSync = () =>
        {
            dev.TestInsideSync = null; // A only
            inside.Set();
            Assert.True(release.Wait(TimeSpan.FromSeconds(30)), "flush A was never released");
        };
        var a = Task.Run(dev.Flush);
        Assert.True(inside.Wait(TimeSpan.FromSeconds(30)), "flush A never started");
        dev.TestFailNextSync = EIO;
        var b = Task.Run(dev.Flush);
        await Task.WhenAny(b, Task.Delay(200));
        Assert.False(b.IsCompleted, "flush B ran while flush A was in progress");
        release.Set();
        await a.WaitAsync(TimeSpan.FromSeconds(30));                   // A began and ended before B's failure
        await Assert.ThrowsAsync<BlockDeviceException>(() => b.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Throws<BlockDeviceException>(() => dev.Flush());
    }

    [Fact]
    public void A_device_with_lost_writes_neither_carries_nor_rides()
    {
        // A carrier that refuses its flush would fail every rider's group (and invalidate their snapshots) although their
        // write-backs worked; a rider with lost writes must be refused at its own write-back instead.
        // Files share flushes only on ext2/3/4 without data journaling; elsewhere none carries or rides, and the rule
        // below holds trivially.
        bool shares = SharedFlushTests.SharesFlushes(_dir);
        using var a = FileBlockDevice.Create(_dir.File("a"), 64);
        using var b = FileBlockDevice.Create(_dir.File("b"), 64);
        a.Flush();
        b.Flush();
        Assert.Equal(shares, a.CanFlushThrough(a) && b.CanFlushThrough(a));
        a.TestFailNextSync = EIO;
        Assert.Throws<BlockDeviceException>(() => a.Flush());
        Assert.False(a.CanFlushThrough(a), "a device that refuses every flush still qualifies as a carrier");
        Assert.False(b.CanFlushThrough(a), "a device rides on one that refuses every flush");
        Assert.False(a.CanFlushThrough(b), "a device with lost writes rides on another");
        Assert.Equal(shares, b.CanFlushThrough(b));
    }
}
