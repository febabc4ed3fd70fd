using Journal.Storage;
using Journal.Testing;

namespace Journal.Tests.Storage;

public class FaultInjectingBlockDeviceTests
{
    [Fact]
    public void A_transient_write_fault_fails_the_next_matching_writes_then_lets_them_through()
    {
        var inner = new MemoryBlockDevice(64, "disk0");
        using var dev = new FaultInjectingBlockDevice(inner);
        FaultRule rule = dev.AddRule(FaultRule.Transient(FaultOps.Write, failures: 2, firstSector: 10, sectorCount: 10));
        byte[] data = Patterns.Sectors(2, 1);

        dev.Write(0, data);                       // outside the range: unaffected
        dev.Write(20, data);                      // just past the range
        for (int i = 0; i < 2; i++)
        {
            var ex = Assert.Throws<BlockDeviceException>(() => dev.Write(19, data));   // overlaps the range's last sector
            Assert.Equal("disk0", ex.Device);
            Assert.Equal(19, ex.Sector);
            Assert.Contains("disk0", ex.Message);
            Assert.Contains("injected write error at sector 19", ex.Message);
        }
        Assert.True(Patterns.SectorEquals(inner.ToArray(), 19, new byte[512]), "a failed write reached the device");
        dev.Write(19, data);
        Assert.True(Patterns.SectorEquals(inner.ToArray(), 19, data.AsSpan(0, 512)));
        Assert.Equal(2, rule.Injected);
        Assert.Equal(0, rule.Remaining);
        Assert.Equal(new FaultCounters(0, 2, 0, 0), dev.Faults);
        dev.Read(19, new byte[512]);              // a write rule leaves reads alone
    }

    [Fact]
    public async Task A_permanent_read_fault_fails_every_read_of_its_range_until_removed()
    {
        using var dev = new FaultInjectingBlockDevice(new MemoryBlockDevice(32, "disk1"));
        FaultRule rule = dev.AddRule(FaultRule.Permanent(FaultOps.Read, firstSector: 8, sectorCount: 1));
        for (int i = 0; i < 20; i++)
            Assert.Contains("injected read error at sector 8", Assert.Throws<BlockDeviceException>(() => dev.Read(8, new byte[512])).Message);
        var ex = await Assert.ThrowsAsync<BlockDeviceException>(async () => await dev.ReadAsync(4, new byte[8 * 512]));
        Assert.Equal(4, ex.Sector);
        dev.Read(9, new byte[512]);
        dev.Write(8, new byte[512]);
        Assert.Equal(21, dev.Faults.ReadErrors);
        Assert.True(dev.RemoveRule(rule));
        dev.Read(8, new byte[512]);
    }

    [Fact]
    public void A_rate_fault_fails_about_that_share_of_operations_reproducibly()
    {
        List<bool> Run(int seed)
        {
            using var dev = new FaultInjectingBlockDevice(new MemoryBlockDevice(16), seed);
            dev.AddRule(FaultRule.AtRate(FaultOps.Write, 0.3));
            var failed = new List<bool>();
            for (int i = 0; i < 1000; i++)
            {
                try { dev.Write(i % 16, new byte[512]); failed.Add(false); }
                catch (BlockDeviceException) { failed.Add(true); }
            }
            Assert.Equal(failed.Count(f => f), dev.Faults.WriteErrors);
            return failed;
        }
        List<bool> a = Run(42);
        Assert.InRange(a.Count(f => f), 230, 370);
        Assert.Equal(a, Run(42));
        Assert.NotEqual(a, Run(43));
    }

    [Fact]
    public void A_flush_fault_does_not_flush_the_inner_device()
    {
        var inner = new MemoryBlockDevice(8);
        using var dev = new FaultInjectingBlockDevice(inner);
        dev.AddRule(FaultRule.Transient(FaultOps.Flush, 1));
        Assert.Contains("injected flush error", Assert.Throws<BlockDeviceException>(() => dev.Flush()).Message);
        Assert.Equal(0, inner.Counters.Flushes);
        dev.Flush();
        Assert.Equal(1, inner.Counters.Flushes);
        Assert.Equal(1, dev.Faults.FlushErrors);
    }

    [Fact]
    public void Write_back_rules_match_only_their_own_step_and_sharing_is_asked_of_the_inner_devices()
    {
        var log = new WriteLog();
        using var carrier = new FaultInjectingBlockDevice(new RecordingBlockDevice(new MemoryBlockDevice(8), log, "carrier", sharesFlushes: true));
        using var dev = new FaultInjectingBlockDevice(new RecordingBlockDevice(new MemoryBlockDevice(8), log, "dev", sharesFlushes: true));
        dev.Flush();
        Assert.True(dev.CanFlushThrough(carrier));                       // unwrapped on both sides
        Assert.False(dev.CanFlushThrough(new MemoryBlockDevice(8)));

        var start = dev.AddRule(FaultRule.Transient(FaultOps.StartWriteBack, 1));
        dev.Flush();
        dev.WriteBack();
        Assert.Equal(0, start.Injected);                                 // neither a flush nor a write-back matches
        Assert.Contains("injected start of write-back error", Assert.Throws<BlockDeviceException>(() => dev.StartWriteBack()).Message);
        var wait = dev.AddRule(FaultRule.Transient(FaultOps.WriteBack, 1));
        int entries = log.Count;
        dev.StartWriteBack();
        Assert.Contains("injected write-back error", Assert.Throws<BlockDeviceException>(() => dev.WriteBack()).Message);
        Assert.Equal(entries, log.Count);                                // the failed write-back reached nothing
        Assert.Equal(1, wait.Injected);
        Assert.Equal(2, dev.Faults.FlushErrors);
    }

    [Fact]
    public void The_space_limit_fails_writes_and_growth_past_it_like_a_full_device()
    {
        using var dev = new FaultInjectingBlockDevice(new MemoryBlockDevice(100, "cow"));
        dev.SpaceLimit = 100;
        dev.Write(99, new byte[512]);
        dev.Extend(100);
        var grow = Assert.Throws<DeviceFullException>(() => dev.Extend(101));
        Assert.Contains("cow", grow.Message);
        Assert.Contains("no space left", grow.Message);
        Assert.Equal(100, dev.SectorCount);

        dev.SpaceLimit = 50;
        var write = Assert.Throws<DeviceFullException>(() => dev.Write(49, new byte[1024]));
        Assert.Equal(49, write.Sector);
        Assert.Contains("injected out-of-space error", write.Message);
        Assert.IsAssignableFrom<BlockDeviceException>(write);
        Assert.Equal(2, dev.Faults.OutOfSpaceErrors);

        dev.ClearFaults();
        dev.Extend(200);
        dev.Write(150, new byte[512]);
        Assert.Equal(2, dev.Faults.Total);
    }

    [Fact]
    public void Rules_are_validated()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => FaultRule.AtRate(FaultOps.Read, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => FaultRule.AtRate(FaultOps.Read, 1.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => FaultRule.Transient(FaultOps.Read, 0));
        Assert.Throws<ArgumentException>(() => FaultRule.Permanent(FaultOps.None));
    }
}
