using Journal.Storage;
using Journal.Testing;

namespace Journal.Tests.Storage;

public class CrashSimBlockDeviceTests
{
    private const int Seeds = 300;

    // A device with flushed history and, on top, unflushed writes that overlap each other and the flushed data.
    private static (CrashSimBlockDevice Dev, byte[] Durable, List<(long Sector, byte[] Data)> Pending) Workload(int seed)
    {
        var random = new Random(seed);
        var dev = new CrashSimBlockDevice(64, "sim");
        for (int round = 0; round < 5; round++)
        {
            for (int i = 0; i < 6; i++)
            {
                int n = random.Next(1, 6);
                dev.Write(random.Next(0, 64 - n), Patterns.Random(random, n));
            }
            dev.Flush();
        }
        byte[] durable = dev.ToArray();
        var pending = new List<(long, byte[])>();
        for (int i = 0; i < 8; i++)
        {
            int n = random.Next(1, 6);
            long sector = random.Next(0, 32 - n);      // only the first half: the second half must stay as flushed
            byte[] data = Patterns.Random(random, n);
            dev.Write(sector, data);
            pending.Add((sector, data));
        }
        return (dev, durable, pending);
    }

    [Fact]
    public void Flushed_writes_are_never_lost_and_every_sector_holds_some_version_of_itself()
    {
        var (dev, durable, pending) = Workload(1);
        using var _ = dev;
        Assert.Equal(8, dev.PendingCount);
        for (int seed = 0; seed < Seeds; seed++)
        {
            byte[] image = dev.CrashImage(seed);
            Assert.Equal(durable.Length, image.Length);
            for (long s = 0; s < 64; s++)
            {
                var versions = pending.Where(p => s >= p.Sector && s < p.Sector + p.Data.Length / 512)
                    .Select(p => p.Data.AsSpan((int)(s - p.Sector) * 512, 512).ToArray()).ToList();
                if (versions.Count == 0)
                    Assert.True(Patterns.SectorEquals(image, s, Patterns.Sector(durable, s)), $"seed {seed}: flushed sector {s} changed");
                else
                    Assert.True(Patterns.SectorEquals(image, s, Patterns.Sector(durable, s)) || versions.Any(v => Patterns.SectorEquals(image, s, v)),
                        $"seed {seed}: sector {s} holds data never written there");
            }
        }
    }

    [Fact]
    public void The_same_seed_gives_the_same_image_and_seeds_differ()
    {
        var (dev, _, _) = Workload(2);
        using var __ = dev;
        var distinct = new HashSet<string>();
        for (int seed = 0; seed < 50; seed++)
        {
            byte[] a = dev.CrashImage(seed), b = dev.CrashImage(seed);
            Assert.Equal(a, b);
            Assert.Equal(dev.DescribeCrash(seed), dev.DescribeCrash(seed));
            distinct.Add(Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(a)));
        }
        Assert.True(distinct.Count > 10, $"only {distinct.Count} distinct crash images over 50 seeds");
    }

    [Fact]
    public void Unflushed_writes_are_sometimes_kept_lost_torn_and_reordered()
    {
        using var dev = new CrashSimBlockDevice(16);
        dev.Flush();
        byte[] big = Patterns.Sectors(8, 1);        // op 0: sectors 0..7
        byte[] first = Patterns.Sectors(1, 100);     // op 1: sector 10
        byte[] second = Patterns.Sectors(1, 200);    // op 2: sector 10 again
        dev.Write(0, big);
        dev.Write(10, first);
        dev.Write(10, second);

        bool kept = false, lost = false, torn = false, reordered = false;
        for (int seed = 0; seed < Seeds; seed++)
        {
            byte[] image = dev.CrashImage(seed);
            int landed = Enumerable.Range(0, 8).Count(s => Patterns.SectorEquals(image, s, big.AsSpan(s * 512, 512)));
            kept |= landed == 8;
            lost |= landed == 0;
            torn |= landed is > 0 and < 8;
            // The later write survived (the account says so) yet the earlier one is what the sector holds:
            // it landed after the later one.
            if (Patterns.SectorEquals(image, 10, first) && dev.DescribeCrash(seed).Contains("2=write@10+1 kept"))
                reordered = true;
        }
        Assert.True(kept, "no seed kept the 8-sector write whole");
        Assert.True(lost, "no seed lost the 8-sector write");
        Assert.True(torn, "no seed tore the 8-sector write");
        Assert.True(reordered, "no seed applied the later write to sector 10 before the earlier one");
    }

    [Fact]
    public void Keeping_all_is_the_current_image_and_losing_all_is_the_flushed_one()
    {
        var (dev, durable, _) = Workload(3);
        using var _ = dev;
        Assert.Equal(dev.ToArray(), dev.CrashImageKeepingAll());
        Assert.Equal(durable, dev.CrashImageLosingAll());
        dev.Flush();
        Assert.Equal(0, dev.PendingCount);
        Assert.Equal(dev.ToArray(), dev.CrashImage(5));
    }

    [Fact]
    public void SimulateCrash_replaces_the_content_with_the_crash_image()
    {
        var (dev, _, _) = Workload(4);
        using var _ = dev;
        byte[] expected = dev.CrashImage(9);
        string account = dev.SimulateCrash(9);
        Assert.Contains("sim", account);
        Assert.Equal(0, dev.PendingCount);
        var image = new byte[dev.Length];
        dev.Read(0, image);
        Assert.Equal(expected, image);
        Assert.Equal(expected, dev.CrashImageLosingAll());
    }

    [Fact]
    public void An_unflushed_growth_may_be_lost_and_a_flushed_one_never_is()
    {
        using var dev = new CrashSimBlockDevice(8);
        dev.Extend(16);
        dev.Write(12, Patterns.Sectors(1, 4));
        var sizes = Enumerable.Range(0, 100).Select(seed => dev.CrashImage(seed).Length / 512).ToHashSet();
        Assert.Equal(new HashSet<int> { 8, 16 }, sizes);
        dev.Flush();
        Assert.All(Enumerable.Range(0, 50), seed =>
        {
            byte[] image = dev.CrashImage(seed);
            Assert.Equal(16 * 512, image.Length);
            Assert.True(Patterns.SectorEquals(image, 12, Patterns.Sectors(1, 4)));
        });
    }
}
