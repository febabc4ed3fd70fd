using Journal.Storage;
using Journal.Testing;

namespace Journal.Tests.Storage;

/// <summary>
/// <see cref="RecordingBlockDevice"/>'s growth against its crash model, as <see cref="FileBlockDevice"/> does it: a
/// growth counts (and the new size shows) only once it is done and in the log, so a flush racing it never lets the
/// device ride on the strength of the growth, and no write into the new sectors is logged before the growth. A flush
/// carries other devices' write-backs only when its device qualifies itself as it begins.
/// </summary>
public class RecordingGrowthRaceTests
{
    /// <summary>Blocks inside Extend, before or after the inner growth, until released.</summary>
    private sealed class GatedExtendDevice(BlockDevice inner, bool blockAfterGrowth) : ForwardingDevice(inner)
    {
        public readonly ManualResetEventSlim Entered = new(), Release = new();
        protected override void ExtendCore(long sectorCount)
        {
            if (blockAfterGrowth) Inner.Extend(sectorCount);
            Entered.Set();
            Assert.True(Release.Wait(TimeSpan.FromSeconds(30)), "the growth was never released");
            if (!blockAfterGrowth) Inner.Extend(sectorCount);
        }
    }

    [Fact]
    public async Task A_flush_racing_a_growth_does_not_cover_it_and_the_next_own_flush_does()
    {
        var log = new WriteLog();
        using var carrier = new RecordingBlockDevice(new MemoryBlockDevice(8), log, "carrier", sharesFlushes: true);
        var gated = new GatedExtendDevice(new MemoryBlockDevice(8), blockAfterGrowth: false);
        using var rider = new RecordingBlockDevice(gated, log, "rider", sharesFlushes: true);
        carrier.Flush();
        rider.Flush();
        var grow = Task.Run(() => rider.Extend(16));
        Assert.True(gated.Entered.Wait(TimeSpan.FromSeconds(30)));
        rider.Flush();                                   // began before the growth was done
        gated.Release.Set();
        await grow.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.False(rider.CanFlushThrough(carrier), "a flush that began during the growth counted it");

        rider.Flush();                                   // covers the growth
        Assert.True(rider.CanFlushThrough(carrier));
        int written = log.Count;
        rider.Write(12, Patterns.Sectors(1, 11));        // in the new sectors
        rider.WriteBack();
        carrier.Flush();
        Assert.True(log.DurableBefore(rider.DeviceId, log.Count) > written,
            $"written back and carried, yet durable only before #{log.DurableBefore(rider.DeviceId, log.Count)}; write at #{written}");
    }

    [Fact]
    public async Task The_new_size_shows_only_once_the_growth_is_logged()
    {
        var log = new WriteLog();
        var gated = new GatedExtendDevice(new MemoryBlockDevice(8), blockAfterGrowth: true);
        using var dev = new RecordingBlockDevice(gated, log, "cow", sharesFlushes: true);
        var grow = Task.Run(() => dev.Extend(16));
        Assert.True(gated.Entered.Wait(TimeSpan.FromSeconds(30)));
        // The inner device has grown; a writer checking the size (as ExceptionStore's unlocked fast path does) must
        // not see it yet, or its write would be logged before the growth and the log could not be replayed.
        Assert.Equal(8, dev.SectorCount);
        gated.Release.Set();
        await grow.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(16, dev.SectorCount);
        dev.Write(12, Patterns.Sectors(1, 7));
        Assert.Equal(16 * 512, log.ImageAt(dev.DeviceId, log.Count).Length);
    }

    [Fact]
    public void A_flush_of_a_carrier_that_does_not_qualify_itself_makes_no_write_back_durable()
    {
        var log = new WriteLog();
        using var carrier = new RecordingBlockDevice(new MemoryBlockDevice(8), log, "carrier", sharesFlushes: true);
        using var rider = new RecordingBlockDevice(new MemoryBlockDevice(8), log, "rider", sharesFlushes: true);
        carrier.Flush();
        rider.Flush();
        carrier.Extend(16);                               // the carrier grew: its flush has a file-system commit to make
        Assert.False(carrier.CanFlushThrough(carrier));   // so it may not carry (FileBlockDevice remarks)
        int written = log.Count;
        rider.Write(1, Patterns.Sectors(1, 11));
        rider.WriteBack();
        Assert.False(carrier.FlushAsCarrier());           // says so to its caller
        Assert.True(log.DurableBefore(rider.DeviceId, log.Count) <= written,
            "the model counted a flush of a carrier that did not qualify as a shared device flush");
        rider.WriteBack();
        Assert.True(carrier.FlushAsCarrier());            // now qualified by its previous flush
        Assert.True(log.DurableBefore(rider.DeviceId, log.Count) > written);
    }
}
