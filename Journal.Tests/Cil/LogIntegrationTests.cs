using Journal.Format;
using Journal.Storage;
using Journal.Testing;
using static Journal.Tests.Cil.CommitPathTests;
using static Journal.Tests.Cil.JournalFixture;

namespace Journal.Tests.Cil;

/// <summary>The journal on the real log writer and recovery, on memory block devices.</summary>
public sealed class LogIntegrationTests
{
    internal const uint Blocks = 2048;

    internal static JournalOptions RealOptions(uint blocks = Blocks, Action<JournalOptionsBuilder>? tweak = null)
    {
        var b = new JournalOptionsBuilder { LogSizeBytes = blocks * 512L };
        tweak?.Invoke(b);
        var o = b.Build();
        return new JournalOptions
        {
            LogSizeBytes = o.LogSizeBytes, LogBufferCount = 4, LogBufferSize = 8192,
            CilSoftLimitBytes = o.CilSoftLimitBytes, CilHardLimitBytes = o.CilHardLimitBytes,
            MemoryBudgetBytes = o.MemoryBudgetBytes, EmergencyReserveBytes = o.EmergencyReserveBytes,
            EmergencyBufferBytes = o.EmergencyBufferBytes, EmergencyAfter = o.EmergencyAfter, Allocator = o.Allocator,
        };
    }

    internal static Dictionary<ushort, IItemRecoveryHandler> Handlers(IItemRecoveryHandler home) => new() { [TestHome.ItemType] = home };

    [Fact]
    public async Task CleanClose_WritesEverythingHome_AndReopensWithNothingToReplay()
    {
        var logDev = new MemoryBlockDevice(Blocks, "log");
        var homeDev = new MemoryBlockDevice(DeviceHome.SectorsFor(16), "home");
        var home = new DeviceHome(homeDev);
        var region = new LogRegion(logDev, 0, Blocks);
        var j = MetadataJournal.Create(region, RealOptions());
        var items = Enumerable.Range(0, 16).Select(i => new TestItem(home, (ulong)i) { Regions = 1 + i % 3 }).ToArray();
        for (int v = 1; v <= 5; v++)
            foreach (var it in items) await CommitAsync(j, it, v * 100 + (long)it.ItemId, 50 + v * 30);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
        Assert.True(Journal.Recovery.LogRecovery.Recover(region).Clean);

        var j2 = MetadataJournal.Open(region, RealOptions(), Handlers(home));
        Assert.Equal(0, j2.RecoveredCheckpoints);
        foreach (var it in items)
        {
            Assert.True(home.TryGet(it.ItemId, out var data, out _));
            Assert.Equal(500 + (long)it.ItemId, TestItem.VersionOf(data));
        }
        await j2.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task AfterACrash_OpenReplaysForcedCheckpoints_AndContinuesTheLog()
    {
        var logDev = new MemoryBlockDevice(Blocks, "log");
        var homeDev = new MemoryBlockDevice(DeviceHome.SectorsFor(8), "home");
        var region = new LogRegion(logDev, 0, Blocks);
        var j = MetadataJournal.Create(region, RealOptions());
        var items = Enumerable.Range(0, 8).Select(i => new TestItem(new DeviceHome(homeDev), (ulong)i)).ToArray();
        ulong seq = 0;
        for (int v = 1; v <= 3; v++)
        {
            foreach (var it in items) seq = await CommitAsync(j, it, v, 100 * v);
            await j.ForceAsync(seq).AsTask().WaitAsync(Watchdog);
        }
        // Crash: copy the devices as they are now (everything forced is on them).
        var logCopy = MemoryBlockDevice.FromImage(logDev.ToArray(), "log-after-crash");
        var homeCopy = new DeviceHome(MemoryBlockDevice.FromImage(homeDev.ToArray(), "home-after-crash"));
        var region2 = new LogRegion(logCopy, 0, Blocks);

        var j2 = MetadataJournal.Open(region2, RealOptions(), Handlers(homeCopy));
        Assert.Equal(3, j2.RecoveredCheckpoints);
        Assert.Equal(1, homeCopy.Completes);
        foreach (var it in items)
        {
            Assert.True(homeCopy.TryGet(it.ItemId, out var data, out _));
            Assert.Equal(3, TestItem.VersionOf(data));
            Assert.Equal(300, data.Length);
        }
        Assert.Equal(seq + 1, j2.CurrentSequence);
        // The reopened journal keeps working on the same log, and its next recovery sees only new work.
        var again = new TestItem(homeCopy, 2);
        ulong s2 = await CommitAsync(j2, again, 4, 64);
        await j2.ForceAsync(s2).AsTask().WaitAsync(Watchdog);
        await j2.CloseAsync().AsTask().WaitAsync(Watchdog);
        Assert.True(homeCopy.TryGet(2, out var d2, out _));
        Assert.Equal(4, TestItem.VersionOf(d2));
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task ForcingADurableSequence_DoesNoDeviceIo()
    {
        var logDev = new MemoryBlockDevice(Blocks, "log");
        var j = MetadataJournal.Create(new LogRegion(logDev, 0, Blocks), RealOptions());
        ulong seq = await CommitAsync(j, new TestItem(new TestHome(), 1), 1);
        await j.ForceAsync(seq).AsTask().WaitAsync(Watchdog);
        var before = logDev.Counters;
        Assert.True(j.Statistics.LogBytesWritten > 0);
        for (int i = 0; i < 50; i++) await j.ForceAsync(seq);
        Assert.Equal(seq, await j.ForceAllAsync());
        Assert.Equal(before, logDev.Counters);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task ConcurrentForces_ShareDeviceFlushes()
    {
        var inner = new MemoryBlockDevice(8192, "log");
        var logDev = new GatedDevice(inner);
        var j = MetadataJournal.Create(new LogRegion(logDev, 0, 8192), RealOptions(8192));
        var home = new TestHome();
        var gate = new TaskCompletionSource();
        long flushesBefore = logDev.Counters.Flushes;
        logDev.FlushGate = gate.Task;
        const int committers = 64;
        var tasks = Enumerable.Range(0, committers).Select(i => Task.Run(async () =>
        {
            ulong s = await CommitAsync(j, new TestItem(home, (ulong)i), i, 64 + i * 3);
            await j.ForceAsync(s);
        })).ToArray();
        // Every committer has committed and waits on a force while the first device flush is stalled.
        await WaitUntil(() => j.Statistics.Commits == committers && j.Statistics.Forces == committers && logDev.FlushesWaiting == 1);
        gate.SetResult();
        await Task.WhenAll(tasks).Within(j);
        long flushes = logDev.Counters.Flushes - flushesBefore;
        Assert.True(flushes <= 3 && j.Statistics.Checkpoints <= 3, $"{flushes} device flushes for {committers} forces over {j.Statistics.Checkpoints} checkpoints");
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    /// <summary>Size knob: JOURNAL_AIL_WORKLOAD_COMMITS (default 20,000 commits on a 256 KiB log).</summary>
    [Fact]
    public async Task WorkloadManyTimesLargerThanTheLog_CompletesOnTheRealLog_AndRecoversClean()
    {
        int commits = int.TryParse(Environment.GetEnvironmentVariable("JOURNAL_AIL_WORKLOAD_COMMITS"), out var n) ? n : 20_000;
        const uint blocks = 512;
        var logDev = new MemoryBlockDevice(blocks, "log");
        var homeDev = new MemoryBlockDevice(DeviceHome.SectorsFor(200), "home");
        var home = new DeviceHome(homeDev);
        var region = new LogRegion(logDev, 0, blocks);
        var j = MetadataJournal.Create(region, RealOptions(blocks));
        var items = Enumerable.Range(0, 200).Select(i => new TestItem(home, (ulong)i)).ToArray();
        var latest = new long[items.Length];
        var workers = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            var rnd = new Random(w);
            for (int i = 0; i < commits / 4; i++)
            {
                int k = rnd.Next(items.Length / 4) * 4 + w;
                long ver = latest[k] + 1;
                await CommitAsync(j, items[k], ver, 100 + rnd.Next(400));
                latest[k] = ver;
                if (rnd.Next(50) == 0) await j.ForceAllAsync();
            }
        })).ToArray();
        await Task.WhenAll(workers).Within(j, TimeSpan.FromSeconds(120));
        long logBytes = logDev.Counters.BytesWritten;
        Assert.True(logBytes > 10L * blocks * 512, $"only {logBytes} log bytes written for a {blocks * 512}-byte log");
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);

        var j2 = MetadataJournal.Open(region, RealOptions(blocks), Handlers(home));
        Assert.Equal(0, j2.RecoveredCheckpoints);
        for (int k = 0; k < items.Length; k++)
        {
            if (latest[k] == 0) continue;
            Assert.True(home.TryGet((ulong)k, out var data, out _));
            Assert.Equal(latest[k], TestItem.VersionOf(data));
        }
        await j2.CloseAsync().AsTask().WaitAsync(Watchdog);
    }
}
