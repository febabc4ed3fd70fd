using System.Diagnostics.Metrics;
using System.Text.RegularExpressions;
using Journal.Diagnostics;
using Journal.Format;
using Journal.Storage;
using Journal.Testing;
using Journal.Tests.Cil;
using Journal.Tests.Memory;
using static Journal.Tests.Cil.JournalFixture;
using static Journal.Tests.Diagnostics.MeterReader;

namespace Journal.Tests.Diagnostics;

/// <summary>
/// The Journal meter read through a <see cref="MeterListener"/>: each instrument reports what the journal's own
/// statistics say, per journal, under its name; closed journals are not reported; docs/metrics.md lists exactly the
/// instruments the meter publishes.
/// </summary>
public sealed class MetricsTests
{
    private const uint Blocks = 2048;

    private static JournalOptions Options(string name, Action<JournalOptionsBuilder>? tweak = null)
    {
        var o = LogIntegrationTests.RealOptions(Blocks, tweak);
        return new JournalOptions
        {
            LogSizeBytes = o.LogSizeBytes, LogBufferCount = o.LogBufferCount, LogBufferSize = o.LogBufferSize,
            MemoryBudgetBytes = o.MemoryBudgetBytes, EmergencyReserveBytes = o.EmergencyReserveBytes,
            EmergencyBufferBytes = o.EmergencyBufferBytes, EmergencyAfter = o.EmergencyAfter, Allocator = o.Allocator,
            Name = name,
        };
    }

    private static string UniqueName(string what) => $"{what}-{Guid.NewGuid():N}";

    [Fact]
    public async Task EveryInstrument_ReportsWhatTheJournalsStatisticsSay()
    {
        string name = UniqueName("metrics");
        using var reader = new MeterReader(name);
        var logDev = new MemoryBlockDevice(Blocks, "log");
        var region = new LogRegion(logDev, 0, Blocks);
        var j = MetadataJournal.Create(region, Options(name));
        Assert.Equal(name, j.Name);
        var home = new DeviceHome(new MemoryBlockDevice(DeviceHome.SectorsFor(8), "home"));
        var items = Enumerable.Range(0, 8).Select(i => new TestItem(home, (ulong)i)).ToArray();
        for (int round = 1; round <= 5; round++)
        {
            foreach (var it in items) await CommitAsync(j, it, round * 10 + (long)it.ItemId, 100);
            await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        }
        foreach (var it in items) await CommitAsync(j, it, 99, 100);  // one more checkpoint, not forced yet

        var m = reader.Collect();
        var s = j.Statistics;
        var mem = j.MemoryStatistics;
        var w = ((Journal.Log.LogWriter)j.Log).Statistics;
        Assert.Equal(s.Commits, Single(m, "journal.commits"));
        Assert.Equal(48, s.Commits);
        Assert.Equal(s.Relogs, Single(m, "journal.relogs"));
        Assert.Equal(s.Checkpoints, Single(m, "journal.checkpoints"));
        Assert.True(s.Checkpoints >= 5);
        Assert.Equal(s.CheckpointBytes, Single(m, "journal.checkpoint.io"));
        Assert.Equal(s.Forces, Single(m, "journal.forces"));
        Assert.Equal(s.Gathers, Single(m, "journal.checkpoint.gathers"));
        Assert.Equal(s.GatherTimeouts, Single(m, "journal.checkpoint.gather.timeouts"));
        Assert.Equal(s.ReservationOverruns, Single(m, "journal.reservation.overruns"));
        Assert.Equal(s.SpaceWaits, Single(m, "journal.waits", JournalMetrics.WaitReasonTag, "log_space"));
        Assert.Equal(s.HardLimitWaits, Single(m, "journal.waits", JournalMetrics.WaitReasonTag, "hard_limit"));
        Assert.Equal(s.MemoryWaits, Single(m, "journal.waits", JournalMetrics.WaitReasonTag, "memory"));
        Assert.Equal(w.Flushes, Single(m, "journal.log.flushes"));
        Assert.True(w.Flushes >= 5);
        Assert.Equal(w.BytesWritten, Single(m, "journal.log.io"));
        Assert.Equal(w.BuffersHeld, Single(m, "journal.log.buffer.count"));

        // Log space: used and free add up to the limit; used is the written log plus what is reserved (the last
        // checkpoint's reservation, as it is not written yet); the tail lag is the written part.
        long used = Single(m, "journal.log.usage", JournalMetrics.LogStateTag, "used");
        long free = Single(m, "journal.log.usage", JournalMetrics.LogStateTag, "free");
        long limit = Single(m, "journal.log.limit");
        long lag = Single(m, "journal.log.tail.lag");
        Assert.Equal(j.Space.Capacity, limit);
        Assert.Equal(limit, used + free);
        Assert.Equal(j.Log.UsedBytes, lag);
        Assert.Equal(lag + j.Space.Outstanding, used);
        Assert.True(j.Space.Outstanding > 0, "the unforced checkpoint holds a reservation");
        Assert.True(lag > 0, "forced checkpoints are between the tail and the head until written home");

        Assert.Equal(j.Ail.Count, Single(m, "journal.ail.item.count"));
        Assert.Equal(8, j.Ail.Count);
        Assert.Equal(s.AilWriteBacks, Single(m, "journal.ail.writebacks"));
        Assert.Equal(mem.PoolCurrentBytes, Single(m, "journal.pool.usage"));
        Assert.Equal(mem.BudgetBytes, Single(m, "journal.pool.limit"));
        Assert.Equal(mem.PoolPeakBytes, Single(m, "journal.pool.peak_usage"));
        Assert.Equal(mem.PoolFailures, Single(m, "journal.pool.failures"));
        Assert.Equal(mem.EmergencyCurrent, Single(m, "journal.pool.emergency.count"));
        Assert.Equal(mem.EmergencyMax, Single(m, "journal.pool.emergency.peak_count"));
        Assert.Equal(mem.EmergencyTotal, Single(m, "journal.pool.emergency.allocations"));

        // Write-back empties the AIL and moves the tail: the instruments follow.
        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        await j.WriteBackAsync().AsTask().WaitAsync(Watchdog);
        m = reader.Collect();
        Assert.Equal(0, Single(m, "journal.ail.item.count"));
        Assert.Equal(j.Statistics.AilWriteBacks, Single(m, "journal.ail.writebacks"));
        Assert.True(Single(m, "journal.ail.writebacks") >= 8);
        Assert.Equal(j.Log.UsedBytes, Single(m, "journal.log.tail.lag"));
        Assert.True(Single(m, "journal.log.tail.lag") < lag, "the tail moved");
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task TwoJournalsWithOneName_AreReportedApart_AndAClosedJournalIsNotReported()
    {
        string name = UniqueName("twins");
        var (a, _) = Create(2048, WithName(name));
        var (b, _) = Create(2048, WithName(name));
        Assert.Equal(name, a.Name);
        Assert.Equal(name + "#2", b.Name);
        using var ra = new MeterReader(a.Name);
        using var rb = new MeterReader(b.Name);
        var home = new TestHome();
        for (int i = 0; i < 7; i++) await CommitAsync(a, new TestItem(home, (ulong)i), 1);
        for (int i = 0; i < 3; i++) await CommitAsync(b, new TestItem(home, 100 + (ulong)i), 1);
        Assert.Equal(7, Single(ra.Collect(), "journal.commits"));
        Assert.Equal(3, Single(rb.Collect(), "journal.commits"));
        // A journal on a sink that is not a log writer has no log-writer instruments (nothing is made up).
        Assert.False(ra.Collect().ContainsKey("journal.log.flushes"));

        await a.CloseAsync().AsTask().WaitAsync(Watchdog);
        Assert.Empty(ra.Collect());
        Assert.Equal(3, Single(rb.Collect(), "journal.commits"));
        // The closed journal's name is free again: a journal opened now gets it.
        var (c, _) = Create(2048, WithName(name));
        Assert.Equal(name, c.Name);
        await b.CloseAsync().AsTask().WaitAsync(Watchdog);
        await c.CloseAsync().AsTask().WaitAsync(Watchdog);
        Assert.Empty(rb.Collect());
    }

    [Fact]
    public async Task AJournalWithoutAName_IsNamedAfterItsLogDevice()
    {
        string device = UniqueName("dev");
        var logDev = new MemoryBlockDevice(Blocks, device);
        var j = MetadataJournal.Create(new LogRegion(logDev, 0, Blocks), LogIntegrationTests.RealOptions());
        Assert.Equal(device, j.Name);
        using var reader = new MeterReader(device);
        Assert.Equal(0, Single(reader.Collect(), "journal.commits"));
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task EmergencyBuffers_AreCountedNowAtMostAndInTotal()
    {
        // The allocator fails and the committer may use the reserve at once: its vector is an emergency buffer, out
        // until the checkpoint completes.
        var allocator = new FlakyAllocator();
        string name = UniqueName("emergency");
        var (j, sink) = Create(2048, SmallOptions(2048, b => { b.Allocator = allocator; b.EmergencyAfter = TimeSpan.Zero; }).WithName(name));
        using var reader = new MeterReader(name);
        allocator.Set(FlakyAllocator.Mode.Fail);
        var gate = new TaskCompletionSource();
        sink.FlushGate = gate.Task;                              // hold the checkpoint: its vectors stay out
        var home = new TestHome();
        ulong seq = 0;
        for (int i = 0; i < 3; i++) seq = await CommitAsync(j, new TestItem(home, (ulong)i), 1, 1000);
        var m = reader.Collect();
        Assert.Equal(3, Single(m, "journal.pool.emergency.count"));
        Assert.Equal(3, Single(m, "journal.pool.emergency.peak_count"));
        Assert.Equal(3, Single(m, "journal.pool.emergency.allocations"));
        Assert.True(Single(m, "journal.pool.failures") >= 3);
        var force = j.ForceAsync(seq).AsTask();
        sink.FlushGate = null;
        gate.SetResult();
        await force.WaitAsync(Watchdog);
        allocator.Set(FlakyAllocator.Mode.Normal);
        await j.WriteBackAsync().AsTask().WaitAsync(Watchdog); // written home: shadows dropped, emergency buffers back
        m = reader.Collect();
        // What is still out is at most the push slot the next checkpoint's header came from (the pool was failing
        // when the push switched contexts).
        Assert.Equal(j.MemoryStatistics.EmergencyCurrent, Single(m, "journal.pool.emergency.count"));
        Assert.True(Single(m, "journal.pool.emergency.count") <= 1);
        Assert.True(Single(m, "journal.pool.emergency.peak_count") >= 3);
        Assert.True(Single(m, "journal.pool.emergency.allocations") >= 3);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public void TheDocumentedInstruments_AreExactlyThoseTheMeterPublishes()
    {
        // docs/metrics.md has one table row per instrument: | `name` | type | `unit` | meaning |
        var doc = File.ReadAllText(Path.Combine(RepoRoot(), "docs", "metrics.md"));
        var documented = Regex.Matches(doc, @"^\| `(journal\.[a-z_.]+)` \| ([a-z -]+) \| `([^`]+)` \|", RegexOptions.Multiline)
            .ToDictionary(x => x.Groups[1].Value, x => (Type: x.Groups[2].Value.Trim(), Unit: x.Groups[3].Value));
        _ = JournalMetrics.Meter; // the instruments exist
        using var reader = new MeterReader("(none)");
        var published = reader.Instruments.Values.ToDictionary(i => i.Name, i => (Type: Kind(i), Unit: i.Unit ?? ""));
        Assert.Equal(published.Keys.Order(), documented.Keys.Order());
        foreach (var (n, p) in published) Assert.True(p == documented[n], $"{n}: published {p}, documented {documented[n]}");
        foreach (var i in reader.Instruments.Values) Assert.False(string.IsNullOrWhiteSpace(i.Description), $"{i.Name} has no description");
    }

    private static string Kind(Instrument i) => i switch
    {
        ObservableCounter<long> => "counter",
        ObservableUpDownCounter<long> => "up-down counter",
        ObservableGauge<long> => "gauge",
        _ => i.GetType().Name,
    };

    internal static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Journal.sln"))) return d.FullName;
        throw new InvalidOperationException("Journal.sln not found above " + AppContext.BaseDirectory);
    }

    private static JournalOptions WithName(string name) => SmallOptions(2048).WithName(name);
}

internal static class JournalOptionsNaming
{
    /// <summary>The same options with <see cref="JournalOptions.Name"/> set.</summary>
    public static JournalOptions WithName(this JournalOptions o, string name) => new()
    {
        LogSizeBytes = o.LogSizeBytes, LogBufferCount = o.LogBufferCount, LogBufferSize = o.LogBufferSize,
        CilSoftLimitBytes = o.CilSoftLimitBytes, CilHardLimitBytes = o.CilHardLimitBytes,
        MemoryBudgetBytes = o.MemoryBudgetBytes, EmergencyReserveBytes = o.EmergencyReserveBytes,
        EmergencyBufferBytes = o.EmergencyBufferBytes, EmergencyAfter = o.EmergencyAfter, Allocator = o.Allocator,
        CheckpointGatherWindow = o.CheckpointGatherWindow, Name = name, Logger = o.Logger, LoggerFactory = o.LoggerFactory,
    };
}
