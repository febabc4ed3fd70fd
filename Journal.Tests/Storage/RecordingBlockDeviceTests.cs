using Journal.Storage;
using Journal.Testing;

namespace Journal.Tests.Storage;

public class RecordingBlockDeviceTests
{
    // Crash states enumerated per test; raise for a longer campaign.
    private static readonly int CrashStatesCap =
        int.TryParse(Environment.GetEnvironmentVariable("JOURNAL_CRASH_STATES"), out int n) && n > 0 ? n : 1500;

    [Fact]
    public void ImageAt_each_flush_equals_what_the_inner_device_held_then()
    {
        var log = new WriteLog();
        var inner = MemoryBlockDevice.FromImage(Patterns.Sectors(128, 3), "inner");
        using var dev = new RecordingBlockDevice(inner, log, "dev");
        var random = new Random(7);
        var snapshots = new List<(int Point, byte[] Image)> { (log.Count, inner.ToArray()) };
        for (int i = 0; i < 400; i++)
        {
            int len = random.Next(1, 17);
            dev.Write(random.Next(0, 128 - len), Patterns.Random(random, len));
            if (random.Next(8) == 0)
            {
                dev.Flush();
                snapshots.Add((log.Count, inner.ToArray()));
            }
        }
        Assert.True(snapshots.Count > 20);
        foreach (var (point, image) in snapshots)
            Assert.True(image.AsSpan().SequenceEqual(log.ImageAt(dev.DeviceId, point)), $"image at point {point}");
        Assert.Equal(inner.ToArray(), log.ImageAt(dev.DeviceId, log.Count));
    }

    [Fact]
    public void ImageAt_any_point_in_any_order_equals_a_plain_replay()
    {
        // Enough data (several MiB through a 64 KiB device) for checkpoints to be taken and thinned.
        var log = new WriteLog();
        using var dev = new RecordingBlockDevice(new MemoryBlockDevice(128), log, "dev");
        var random = new Random(11);
        for (int i = 0; i < 1200; i++)
        {
            int len = random.Next(1, 17);
            dev.Write(random.Next(0, 128 - len), Patterns.Random(random, len));
            if (i % 100 == 0) dev.Extend(dev.SectorCount + 1);
            if (i % 37 == 0) dev.Flush();
        }
        IReadOnlyList<WriteLogEntry> entries = log.Entries;
        var replay = new List<byte[]> { new byte[128 * 512] };
        foreach (WriteLogEntry e in entries)
        {
            byte[] next = (byte[])replay[^1].Clone();
            if (e.Kind == WriteLogEntryKind.Extend) Array.Resize(ref next, (int)e.NewSectorCount * 512);
            if (e.Kind == WriteLogEntryKind.Write) e.Data.Span.CopyTo(next.AsSpan((int)e.Sector * 512));
            replay.Add(next);
        }
        var order = Enumerable.Range(0, entries.Count + 1).ToArray();
        random.Shuffle(order);
        foreach (int p in order.Take(300).Concat(Enumerable.Range(0, entries.Count + 1).Reverse().Take(50)))
            Assert.True(replay[p].AsSpan().SequenceEqual(log.ImageAt(dev.DeviceId, p)), $"image at point {p}");
    }

    [Fact]
    public void Devices_sharing_a_log_are_recorded_in_one_order_and_flushes_are_per_device()
    {
        var log = new WriteLog();
        using var a = new RecordingBlockDevice(new MemoryBlockDevice(16, "a"), log);
        using var b = new RecordingBlockDevice(new MemoryBlockDevice(16, "b"), log);
        a.Write(0, Patterns.Sectors(1, 1));     // #0
        b.Write(0, Patterns.Sectors(1, 2));     // #1
        int mark = log.Mark("between");         // #2
        a.Flush();                              // #3: makes #0 durable, not #1
        b.Write(1, Patterns.Sectors(1, 3));     // #4
        a.Write(1, Patterns.Sectors(1, 4));     // #5

        IReadOnlyList<WriteLogEntry> e = log.Entries;
        Assert.Equal([a.DeviceId, b.DeviceId, -1, a.DeviceId, b.DeviceId, a.DeviceId], e.Select(x => x.DeviceId));
        Assert.Equal([WriteLogEntryKind.Write, WriteLogEntryKind.Write, WriteLogEntryKind.Mark, WriteLogEntryKind.Flush,
            WriteLogEntryKind.Write, WriteLogEntryKind.Write], e.Select(x => x.Kind));
        Assert.Equal(2, mark);
        Assert.Equal(["a", "b"], log.Devices.Select(d => d.Name));
        Assert.Equal(3, log.DurableBefore(a.DeviceId, 4));
        Assert.Equal(0, log.DurableBefore(b.DeviceId, 4));

        // Just after a's flush: a's write is durable in every state; b's is in flight and some state loses it.
        var states = log.CrashStates(new CrashStateOptions { MaxVariantsPerPoint = 8 }).Where(s => s.Point == 4).ToList();
        Assert.NotEmpty(states);
        Assert.All(states, s => Assert.True(Patterns.SectorEquals(s.Image(a.DeviceId), 0, Patterns.Sectors(1, 1)), s.Description));
        Assert.All(states, s => Assert.Equal([1], s.InFlight));
        Assert.Contains(states, s => Patterns.SectorEquals(s.Image(b.DeviceId), 0, new byte[512]));
        Assert.Contains(states, s => Patterns.SectorEquals(s.Image(b.DeviceId), 0, Patterns.Sectors(1, 2)));
    }

    [Fact]
    public void Writes_in_flight_on_several_devices_are_split_by_device_alternating_with_random_states()
    {
        // The state an ordering bug between files loses data in: the metadata written last landed, the data it points
        // at did not. The per-device states come third (after "all kept" and "all lost"), then alternate with the random ones.
        var log = new WriteLog();
        using var data = new RecordingBlockDevice(new MemoryBlockDevice(16, "data"), log);
        using var meta = new RecordingBlockDevice(new MemoryBlockDevice(16, "meta"), log);
        using var other = new RecordingBlockDevice(new MemoryBlockDevice(16, "other"), log);
        other.Write(0, Patterns.Sectors(1, 1)); // #0
        data.Write(0, Patterns.Sectors(2, 2));  // #1
        data.Write(4, Patterns.Sectors(2, 3));  // #2
        meta.Write(0, Patterns.Sectors(1, 4));  // #3, the last written
        var states = log.CrashStates(new CrashStateOptions { MaxVariantsPerPoint = 14 }).Where(s => s.Point == log.Count).ToList();
        Assert.True(states.Count >= 12, $"{states.Count} states");
        Assert.Equal([0, 1, 2, 3], states[0].InFlight);
        Assert.Empty(states[0].Lost);
        Assert.Equal([0, 1, 2, 3], states[1].Lost);
        // Then the per-device states alternate with random ones: only one device's writes kept, the device written last
        // first; then only one device's writes lost, the device written first first. With three devices they differ.
        var device = states.Where(s => s.Description.Contains("in-flight writes", StringComparison.Ordinal)).ToList();
        Assert.Equal(6, device.Count);
        Assert.Equal([2, 4, 6, 8], device.Take(4).Select(s => states.IndexOf(s)));
        Assert.Contains("only meta[", device[0].Description);
        Assert.Equal([[0, 1, 2], [0, 3], [1, 2, 3], [0], [1, 2], [3]], device.Select(s => s.Lost.ToArray()));
        Assert.Contains("only other[", device[3].Description);
        Assert.All(device, s => Assert.Empty(s.Torn));
        Assert.True(Patterns.SectorEquals(states[2].Image(meta.DeviceId), 0, Patterns.Sectors(1, 4)));
        Assert.True(Patterns.SectorEquals(states[2].Image(data.DeviceId), 0, new byte[512]));
        Assert.Contains(states, s => s.Torn.Count > 0); // and the random ones still tear writes
        // A cap of 3 keeps the first per-device state, a cap of 4 one random state after it; one device in flight gets none.
        Assert.Equal(3, log.CrashStates(new CrashStateOptions { MaxVariantsPerPoint = 3 }).Count(s => s.Point == log.Count));
        var four = log.CrashStates(new CrashStateOptions { MaxVariantsPerPoint = 4 }).Where(s => s.Point == log.Count).ToList();
        Assert.Contains("only meta[", four[2].Description);
        Assert.DoesNotContain("in-flight writes", four[3].Description);
        Assert.Equal(2, log.CrashStates(new CrashStateOptions { MaxVariantsPerPoint = 8, EveryEntry = true, LastPoint = 1 }).Count(s => s.Point == 1));
    }

    [Fact]
    public void Crash_states_differ_from_the_full_image_only_in_sectors_in_flight_and_never_lose_flushed_data()
    {
        var log = new WriteLog();
        using var journal = new RecordingBlockDevice(new MemoryBlockDevice(256, "log"), log);
        using var data = new RecordingBlockDevice(MemoryBlockDevice.FromImage(Patterns.Sectors(64, 9), "data"), log);
        var random = new Random(5);
        for (int i = 0; i < 600; i++)
        {
            RecordingBlockDevice d = random.Next(3) == 0 ? data : journal;
            int len = random.Next(1, 9);
            d.Write(random.Next(0, (int)d.SectorCount - len), Patterns.Random(random, len));
            if (random.Next(10) == 0) d.Flush();
        }

        int states = 0, torn = 0, differing = 0;
        foreach (CrashState s in log.CrashStates(new CrashStateOptions { Seed = 1, MaxVariantsPerPoint = 6 }).Take(CrashStatesCap))
        {
            states++;
            if (s.Torn.Count > 0) torn++;
            foreach (RecordingBlockDevice d in new[] { journal, data })
            {
                byte[] full = log.ImageAt(d.DeviceId, s.Point);
                byte[] durable = log.ImageAt(d.DeviceId, s.DurableBefore(d.DeviceId));
                byte[] image = s.Image(d.DeviceId);
                Assert.Equal(full.Length, image.Length);
                var inFlight = s.InFlight.Select(i => log[i]).Where(x => x.DeviceId == d.DeviceId).ToList();
                for (long sector = 0; sector < d.SectorCount; sector++)
                {
                    var writers = inFlight.Where(w => sector >= w.Sector && sector < w.Sector + w.SectorCount).ToList();
                    if (writers.Count == 0)
                    {
                        Assert.True(Patterns.SectorEquals(image, sector, Patterns.Sector(full, sector)),
                            $"{d.Name} sector {sector} changed though nothing was in flight there: {s}");
                        continue;
                    }
                    bool ok = Patterns.SectorEquals(image, sector, Patterns.Sector(durable, sector))
                        || writers.Any(w => Patterns.SectorEquals(image, sector, w.Data.Span.Slice((int)(sector - w.Sector) * 512, 512)));
                    Assert.True(ok, $"{d.Name} sector {sector} holds data neither durable nor in flight: {s}");
                }
                if (!s.KeepsEverything && !image.AsSpan().SequenceEqual(full)) differing++;
            }
            if (s.KeepsEverything)
                Assert.Equal(log.ImageAt(journal.DeviceId, s.Point), s.Image(journal.DeviceId));
        }
        Assert.True(states >= 300, $"only {states} crash states");
        Assert.True(torn > 50, $"only {torn} states tear a write");
        Assert.True(differing > 50, $"only {differing} device images differ from the keep-everything image");
    }

    [Fact]
    public void A_torn_write_keeps_exactly_the_sectors_its_state_names()
    {
        var log = new WriteLog();
        using var dev = new RecordingBlockDevice(new MemoryBlockDevice(32), log, "dev");
        dev.Flush();
        byte[] big = Patterns.Sectors(16, 40);
        dev.Write(8, big);
        var tornStates = log.CrashStates(new CrashStateOptions { MaxVariantsPerPoint = 10 }).Where(s => s.Torn.Count > 0).ToList();
        Assert.NotEmpty(tornStates);
        foreach (CrashState s in tornStates)
        {
            IReadOnlyList<bool> kept = s.TornSectorsKept(1);
            Assert.Contains(true, kept);
            Assert.Contains(false, kept);
            byte[] image = s.Image(dev.DeviceId);
            for (int i = 0; i < 16; i++)
                Assert.Equal(kept[i], Patterns.SectorEquals(image, 8 + i, big.AsSpan(i * 512, 512)));
        }
    }

    [Fact]
    public void Crash_states_are_reproducible_from_the_seed()
    {
        var log = new WriteLog();
        using var dev = new RecordingBlockDevice(new MemoryBlockDevice(64), log, "dev");
        var random = new Random(3);
        for (int i = 0; i < 100; i++)
        {
            int len = random.Next(1, 9);
            dev.Write(random.Next(0, 64 - len), Patterns.Random(random, len));
            if (i % 9 == 0) dev.Flush();
        }
        string Run(int seed) => string.Join("\n", log.CrashStates(new CrashStateOptions { Seed = seed })
            .Select(s => s.Description + Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(s.Image(dev.DeviceId)))));
        Assert.Equal(Run(1), Run(1));
        Assert.NotEqual(Run(1), Run(2));
    }

    [Fact]
    public void Points_are_around_flushes_variants_are_capped_and_points_can_be_thinned()
    {
        var log = new WriteLog();
        using var dev = new RecordingBlockDevice(new MemoryBlockDevice(64), log, "dev");
        for (int i = 0; i < 40; i++)
        {
            dev.Write(i, Patterns.Sectors(2, i));
            if (i % 10 == 9) dev.Flush();
        }
        // Flushes at #10, #21, #32, #43; the log ends at 44.
        var points = log.CrashStates().Select(s => s.Point).Distinct().ToList();
        Assert.Equal([10, 11, 21, 22, 32, 33, 43, 44], points);
        Assert.All(log.CrashStates(new CrashStateOptions { MaxVariantsPerPoint = 3 }).GroupBy(s => s.Point),
            g => Assert.InRange(g.Count(), 1, 3));
        Assert.Equal(45, log.CrashStates(new CrashStateOptions { EveryEntry = true, MaxVariantsPerPoint = 1 }).Count());
        Assert.Equal([10, 22, 44], log.CrashStates(new CrashStateOptions { MaxPoints = 3, MaxVariantsPerPoint = 1 }).Select(s => s.Point));
        // Right after a flush nothing of that device is in flight: one state only.
        Assert.Single(log.CrashStates(new CrashStateOptions { FirstPoint = 11, LastPoint = 11 }));
    }

    [Fact]
    public void A_write_that_races_with_a_flush_is_not_made_durable_by_it()
    {
        var log = new WriteLog();
        RecordingBlockDevice? outer = null;
        var inner = new HookDevice(new MemoryBlockDevice(8), onFlush: () => outer!.Write(5, Patterns.Sectors(1, 55)));
        using var dev = outer = new RecordingBlockDevice(inner, log, "dev");
        dev.Write(1, Patterns.Sectors(1, 11));   // #0 completes before the flush is issued
        dev.Flush();                            // #1 is the racing write, #2 the flush
        Assert.Equal(WriteLogEntryKind.Flush, log[2].Kind);
        Assert.Equal(1, log[2].DurableBefore);
        var states = log.CrashStates(new CrashStateOptions { FirstPoint = 3, MaxVariantsPerPoint = 4 }).ToList();
        Assert.All(states, s => Assert.True(Patterns.SectorEquals(s.Image(dev.DeviceId), 1, Patterns.Sectors(1, 11))));
        Assert.All(states, s => Assert.Equal([1], s.InFlight));
        Assert.Contains(states, s => Patterns.SectorEquals(s.Image(dev.DeviceId), 5, new byte[512]));
    }

    [Fact]
    public void A_write_back_is_durable_after_a_later_flush_of_a_device_sharing_flushes_and_only_then()
    {
        var log = new WriteLog();
        using var carrier = new RecordingBlockDevice(new MemoryBlockDevice(8), log, "carrier", sharesFlushes: true);
        using var rider = new RecordingBlockDevice(new MemoryBlockDevice(8), log, "rider", sharesFlushes: true);
        using var alone = new RecordingBlockDevice(new MemoryBlockDevice(8), log, "alone");
        // Nothing is known about a new device until its own flush, as for a new file.
        Assert.False(rider.CanFlushThrough(carrier));
        carrier.Flush();                             // qualifies the carrier (its own flush, nothing uncovered)
        rider.Flush();                               // #0
        Assert.True(rider.CanFlushThrough(carrier));
        Assert.False(rider.CanFlushThrough(alone));  // alone does not share
        Assert.False(alone.CanFlushThrough(carrier));

        rider.Write(1, Patterns.Sectors(1, 11));     // #1: written back below
        rider.WriteBack();                           // #2
        rider.Write(2, Patterns.Sectors(1, 22));     // #3: after the write-back began, so not covered
        int beforeFlush = log.Count;
        Assert.Equal(WriteLogEntryKind.WriteBack, log[3].Kind);
        Assert.Equal(3, log[3].DurableBefore);
        Assert.Equal(1, log.DurableBefore(rider.DeviceId, beforeFlush)); // written back, but no flush yet
        carrier.Flush();                             // #4: flushes the storage device for both
        Assert.Equal(3, log.DurableBefore(rider.DeviceId, log.Count));
        var after = log.CrashStates(new CrashStateOptions { FirstPoint = log.Count, MaxVariantsPerPoint = 4 }).ToList();
        Assert.All(after, s => Assert.True(Patterns.SectorEquals(s.Image(rider.DeviceId), 1, Patterns.Sectors(1, 11))));
        Assert.Contains(after, s => Patterns.SectorEquals(s.Image(rider.DeviceId), 2, new byte[512]));
        var before = log.CrashStates(new CrashStateOptions { FirstPoint = beforeFlush, LastPoint = beforeFlush, MaxVariantsPerPoint = 4 }).ToList();
        Assert.Contains(before, s => Patterns.SectorEquals(s.Image(rider.DeviceId), 1, new byte[512]));

        // A flush of a device that does not share covers nothing else.
        rider.WriteBack();
        alone.Flush();
        Assert.Equal(3, log.DurableBefore(rider.DeviceId, log.Count));
    }

    [Fact]
    public void A_growth_rides_no_shared_flush_and_stops_the_device_riding_until_its_own_flush()
    {
        var log = new WriteLog();
        using var carrier = new RecordingBlockDevice(new MemoryBlockDevice(8), log, "carrier", sharesFlushes: true);
        using var rider = new RecordingBlockDevice(new MemoryBlockDevice(8), log, "rider", sharesFlushes: true);
        carrier.Flush();
        rider.Flush();                               // #0
        rider.Write(1, Patterns.Sectors(1, 11));     // #1
        rider.Extend(12);                            // #2: not durable without rider's own flush
        Assert.False(rider.CanFlushThrough(carrier));
        rider.Write(10, Patterns.Sectors(1, 33));    // #3
        rider.WriteBack();                           // #4
        carrier.Flush();                             // #5
        // The write before the growth rode; the growth and everything after it did not.
        Assert.Equal(3, log.DurableBefore(rider.DeviceId, log.Count));
        var sizes = log.CrashStates(new CrashStateOptions { FirstPoint = log.Count, MaxVariantsPerPoint = 4 })
            .Select(s => s.Image(rider.DeviceId).Length / 512).ToHashSet();
        Assert.Equal(new HashSet<int> { 8, 12 }, sizes);
        rider.Flush();                               // its own flush covers the growth
        Assert.True(rider.CanFlushThrough(carrier));
        Assert.Equal(log.Count - 1, log.DurableBefore(rider.DeviceId, log.Count));
    }

    [Fact]
    public void Growth_is_recorded_and_an_unflushed_growth_may_be_lost()
    {
        var log = new WriteLog();
        using var dev = new RecordingBlockDevice(new MemoryBlockDevice(8), log, "dev");
        dev.Flush();
        dev.Extend(12);
        dev.Write(10, Patterns.Sectors(1, 1));
        Assert.Equal(12 * 512, log.ImageAt(dev.DeviceId, log.Count).Length);
        Assert.Equal(8 * 512, log.ImageAt(dev.DeviceId, 1).Length);
        var sizes = log.CrashStates(new CrashStateOptions { MaxVariantsPerPoint = 4 }).Where(s => s.Point == log.Count)
            .Select(s => s.Image(dev.DeviceId).Length / 512).ToHashSet();
        Assert.Equal(new HashSet<int> { 8, 12 }, sizes);
        using MemoryBlockDevice rebuilt = log.DeviceAt(dev.DeviceId, log.Count);
        Assert.Equal(12, rebuilt.SectorCount);
        Assert.Equal("dev", rebuilt.Name);
    }

    [Fact]
    public void Images_rebuilt_into_a_reused_buffer_equal_fresh_ones()
    {
        var log = new WriteLog();
        using var dev = new RecordingBlockDevice(new MemoryBlockDevice(32), log, "dev");
        var random = new Random(9);
        for (int i = 0; i < 60; i++)
        {
            int len = random.Next(1, 5);
            dev.Write(random.Next(0, 32 - len), Patterns.Random(random, len));
            if (i % 7 == 0) dev.Flush();
            if (i == 30) dev.Extend(40);
        }
        byte[]? buffer = null;
        int reused = 0;
        foreach (CrashState s in log.CrashStates(new CrashStateOptions { MaxVariantsPerPoint = 5 }))
        {
            byte[]? before = buffer;
            s.Image(dev.DeviceId, ref buffer);
            if (ReferenceEquals(before, buffer)) reused++;
            Assert.Equal(s.Image(dev.DeviceId), buffer);
            using MemoryBlockDevice mounted = MemoryBlockDevice.Wrap(buffer, "dev");
            var first = new byte[512];
            mounted.Read(0, first);
            Assert.True(Patterns.SectorEquals(buffer, 0, first));
        }
        Assert.True(reused > 10, $"the buffer was reused only {reused} times");
        log.ImageAt(dev.DeviceId, 5, ref buffer);
        Assert.Equal(log.ImageAt(dev.DeviceId, 5), buffer);
    }

    [Fact]
    public void Reads_pass_through_and_the_initial_image_is_captured()
    {
        var log = new WriteLog();
        byte[] initial = Patterns.Sectors(4, 8);
        using var dev = new RecordingBlockDevice(MemoryBlockDevice.FromImage(initial, "m"), log);
        var buf = new byte[2048];
        dev.Read(0, buf);
        Assert.Equal(initial, buf);
        Assert.Equal(0, log.Count);
        Assert.Equal(initial, log.ImageAt(dev.DeviceId, 0));
        Assert.Equal("m", dev.Name);
    }

    /// <summary>Passes through to an inner device, running a hook inside each flush.</summary>
    private sealed class HookDevice(BlockDevice inner, Action onFlush) : ForwardingDevice(inner)
    {
        private bool _inHook;
        protected override void FlushCore()
        {
            if (!_inHook) { _inHook = true; onFlush(); _inHook = false; }
            Inner.Flush();
        }
    }
}
