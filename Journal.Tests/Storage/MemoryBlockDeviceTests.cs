using Journal.Storage;
using Journal.Testing;

namespace Journal.Tests.Storage;

public class MemoryBlockDeviceTests
{
    [Fact]
    public void FromImage_copies_and_ToArray_returns_the_content()
    {
        byte[] image = Patterns.Sectors(4, 10);
        using var dev = MemoryBlockDevice.FromImage(image, "img");
        image[0] = 0;   // the device holds its own copy
        Assert.Equal(4, dev.SectorCount);
        Assert.Equal("img", dev.Name);
        Assert.Equal(Patterns.Sectors(4, 10), dev.ToArray());
        dev.Write(1, Patterns.Sectors(1, 77));
        Assert.Equal(Patterns.Sectors(1, 77), dev.ToArray()[512..1024]);
    }

    [Fact]
    public void Wrap_uses_the_callers_array_as_storage()
    {
        byte[] image = Patterns.Sectors(2, 1);
        using var dev = MemoryBlockDevice.Wrap(image, "wrapped");
        dev.Write(1, Patterns.Sectors(1, 60));
        Assert.Equal(Patterns.Sectors(1, 60), image[512..]);
    }

    [Fact]
    public void An_image_that_is_not_whole_sectors_is_refused()
    {
        Assert.Throws<ArgumentException>(() => MemoryBlockDevice.FromImage(new byte[100]));
        Assert.Throws<ArgumentException>(() => MemoryBlockDevice.Wrap(new byte[513]));
    }

    [Fact]
    public void Extend_keeps_content_and_zero_fills()
    {
        using var dev = new MemoryBlockDevice(2);
        dev.Write(0, Patterns.Sectors(2, 5));
        dev.Extend(10);
        byte[] all = dev.ToArray();
        Assert.Equal(10 * 512, all.Length);
        Assert.Equal(Patterns.Sectors(2, 5), all[..1024]);
        Assert.All(all[1024..], b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task Concurrent_writes_to_disjoint_ranges_all_land_even_across_growth()
    {
        const int Threads = 4, PerThread = 200;
        using var dev = new MemoryBlockDevice(Threads * PerThread / 2);
        var tasks = Enumerable.Range(0, Threads).Select(t => Task.Run(() =>
        {
            for (int i = 0; i < PerThread; i++)
            {
                long sector = (long)i * Threads + t;
                if (t == 0 && i % 50 == 0) dev.Extend(dev.SectorCount + 64);
                while (sector >= dev.SectorCount) dev.Extend(sector + 1);
                dev.Write(sector, Patterns.Sectors(1, (int)sector));
            }
        })).ToArray();
        await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(30));
        byte[] image = dev.ToArray();
        for (long s = 0; s < Threads * PerThread; s++)
            Assert.True(Patterns.SectorEquals(image, s, Patterns.Sectors(1, (int)s)), $"sector {s}");
    }
}
