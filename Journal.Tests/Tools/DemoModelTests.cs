using Journal.Storage;
using Journal.Tools;
using SnapCtl.Demo;

namespace Journal.Tests.Tools;

/// <summary>
/// The pieces the demo's verdict rests on: the sector pattern identifies exactly which write a sector came from,
/// the content model accepts after a crash exactly what a crash may leave, and the crash switch cuts all devices
/// at one instant.
/// </summary>
public class DemoModelTests
{
    [Fact]
    public void A_sector_pattern_identifies_its_version_and_rejects_anything_else()
    {
        var sector = new byte[512];
        SectorPattern.FillSector(sector, 1234, 77);
        Assert.Equal(77, SectorPattern.Identify(sector, 1234));
        Assert.Equal(-1, SectorPattern.Identify(sector, 1235));   // right data, wrong place
        sector[300] ^= 1;
        Assert.Equal(-1, SectorPattern.Identify(sector, 1234));   // one flipped bit
        Assert.Equal(0, SectorPattern.Identify(new byte[512], 9)); // zeros are version 0
    }

    [Fact]
    public void Different_versions_and_sectors_give_different_content()
    {
        var a = new byte[1024];
        var b = new byte[1024];
        SectorPattern.Fill(a, 10, 1);
        SectorPattern.Fill(b, 10, 2);
        Assert.NotEqual(a.AsSpan(16, 496).ToArray(), b.AsSpan(16, 496).ToArray());
        Assert.NotEqual(a.AsSpan(16, 496).ToArray(), a.AsSpan(512 + 16, 496).ToArray());
    }

    [Fact]
    public void Durable_writes_are_required_and_uncertain_ones_are_optional()
    {
        var m = new ContentModel("origin", 16);
        m.Issue(0, 4, 1);
        m.Completed(1);
        m.Durable(m.CompletedVersions());
        m.Issue(2, 4, 2);              // in flight at the crash
        Assert.Equal([1], m.Acceptable(0));
        Assert.Equal([1, 2], m.Acceptable(3).Order());
        Assert.Equal([0, 2], m.Acceptable(5).Order());
        Assert.Equal([0], m.Acceptable(6));
    }

    [Fact]
    public void A_completed_write_stays_uncertain_until_a_later_flush_returns()
    {
        var m = new ContentModel("origin", 8);
        m.Issue(0, 1, 1);
        m.Completed(1);
        Assert.Equal([0, 1], m.Acceptable(0).Order());
        var flushed = m.CompletedVersions();
        m.Issue(0, 1, 2);             // issued after the flush began: not covered by it
        m.Durable(flushed);
        Assert.Equal([1, 2], m.Acceptable(0).Order());
    }

    [Fact]
    public void A_snapshot_captures_durable_content_and_treats_writes_during_creation_as_uncertain()
    {
        var origin = new ContentModel("origin", 8);
        origin.Issue(0, 2, 1); origin.Completed(1); origin.Durable([1]);
        using var capture = origin.BeginCapture("snap");
        origin.Issue(1, 2, 2);        // issued while the snapshot was being created
        var snap = capture.Finish();
        origin.Issue(4, 1, 3);        // after: not the snapshot's business
        origin.Completed(2); origin.Completed(3); origin.Durable([2, 3]);

        Assert.Equal([1], snap.Acceptable(0));
        Assert.Equal([1, 2], snap.Acceptable(1).Order());
        Assert.Equal([0, 2], snap.Acceptable(2).Order());
        Assert.Equal([0], snap.Acceptable(4));
        Assert.Equal([3], origin.Acceptable(4));
    }

    [Fact]
    public async Task The_verifier_counts_every_sector_outside_the_model()
    {
        var m = new ContentModel("t", 4096);
        m.Issue(100, 8, 5); m.Completed(5); m.Durable([5]);
        var image = new byte[4096 * 512];
        SectorPattern.Fill(image.AsSpan(100 * 512, 8 * 512), 100, 5);
        Task Read(long offset, Memory<byte> buffer) { image.AsMemory((int)offset, buffer.Length).CopyTo(buffer); return Task.CompletedTask; }

        var good = await Verifier.VerifyAsync(m, Read);
        Assert.True(good.Ok);
        Assert.Equal(8, good.Written);

        SectorPattern.FillSector(image.AsSpan(103 * 512, 512), 103, 4); // an older write resurfacing
        image[3000 * 512] = 1;                                          // garbage where zeros belong
        var bad = await Verifier.VerifyAsync(m, Read);
        Assert.Equal(2, bad.Mismatches);
        Assert.Equal("t: sector 103: expected version 5, found version 4", bad.Examples[0]);
        Assert.Equal("t: sector 3000: expected version 0, found unrecognised data", bad.Examples[1]);
    }

    [Fact]
    public void After_a_crash_no_device_behind_the_switch_accepts_io()
    {
        var sw = new CrashSwitch();
        using var inner = new TestDevice(64);
        using var dev = new SwitchedDevice(inner, sw);
        dev.Write(0, new byte[512]);
        sw.Crash();
        var e = Assert.Throws<BlockDeviceException>(() => dev.Write(1, new byte[512]));
        Assert.Contains("crashed", e.Message);
        Assert.Throws<BlockDeviceException>(() => dev.Flush());
        Assert.Throws<BlockDeviceException>(() => dev.Read(0, new byte[512]));
        Assert.Equal(1, inner.Counters.Writes);
    }

    [Fact]
    public async Task The_crash_waits_for_an_operation_already_running()
    {
        var sw = new CrashSwitch();
        using var inner = new TestDevice(64) { Gate = new SemaphoreSlim(0) };
        using var dev = new SwitchedDevice(inner, sw);
        var write = Task.Run(() => dev.Write(0, new byte[512]));
        await inner.Entered.WaitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        var crash = Task.Run(sw.Crash);
        await Task.Delay(50);
        Assert.False(crash.IsCompleted);   // the write is inside the device: the cut waits for it
        inner.Gate.Release();
        await Task.WhenAll(write, crash).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(1, inner.Counters.Writes);
    }

    [Theory]
    [InlineData("4096", 4096L)]
    [InlineData("4K", 4096L)]
    [InlineData("4k", 4096L)]
    [InlineData("4KiB", 4096L)]
    [InlineData("64M", 64L << 20)]
    [InlineData("1G", 1L << 30)]
    [InlineData("2T", 2L << 40)]
    [InlineData("8s", 4096L)]
    [InlineData(" 1 M ", 1L << 20)]
    public void Sizes_accept_binary_suffixes(string text, long bytes)
    {
        Assert.True(Sizes.TryParse(text, out long parsed, out _));
        Assert.Equal(bytes, parsed);
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("-1", "negative")]
    [InlineData("1.5M", "unknown suffix")]
    [InlineData("4X", "unknown suffix")]
    [InlineData("16777216T", "too large")]
    public void Sizes_reject_garbage_with_a_reason(string text, string reason)
    {
        Assert.False(Sizes.TryParse(text, out _, out string error));
        Assert.Contains(reason, error);
    }

    [Theory]
    [InlineData(4096L, "4K")]
    [InlineData(1536L, "1536")]
    [InlineData(3L << 30, "3G")]
    public void Sizes_format_with_the_largest_exact_unit(long bytes, string text) => Assert.Equal(text, Sizes.Format(bytes));

    /// <summary>A memory device that can hold a write inside the device until released.</summary>
    private sealed class TestDevice(long sectors) : BlockDevice
    {
        private readonly byte[] _data = new byte[sectors * SectorSize];
        public SemaphoreSlim? Gate { get; init; }
        public SemaphoreSlim Entered { get; } = new(0);
        public override string Name => "test";
        public override long SectorCount => _data.Length / SectorSize;
        protected override void ReadCore(long sector, Span<byte> buffer) => _data.AsSpan((int)(sector * SectorSize), buffer.Length).CopyTo(buffer);
        protected override void WriteCore(long sector, ReadOnlySpan<byte> data)
        {
            Entered.Release();
            Gate?.Wait(TimeSpan.FromSeconds(30));
            data.CopyTo(_data.AsSpan((int)(sector * SectorSize)));
        }
        protected override void FlushCore() { }
        protected override void ExtendCore(long sectorCount) => throw new NotSupportedException();
    }
}
