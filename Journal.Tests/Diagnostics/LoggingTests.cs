using Journal.Diagnostics;
using Journal.Format;
using Journal.Storage;
using Journal.Testing;
using Journal.Tests.Cil;
using Journal.Tests.Memory;
using Microsoft.Extensions.Logging;
using static Journal.Tests.Cil.JournalFixture;

namespace Journal.Tests.Diagnostics;

/// <summary>The journal's log messages: each warning the issue names, with its event id, level and cause.</summary>
public sealed class LoggingTests
{
    private static JournalOptions Logged(JournalOptions o, ILogger? logger = null, ILoggerFactory? factory = null) => new()
    {
        LogSizeBytes = o.LogSizeBytes, LogBufferCount = o.LogBufferCount, LogBufferSize = o.LogBufferSize,
        CilSoftLimitBytes = o.CilSoftLimitBytes, CilHardLimitBytes = o.CilHardLimitBytes,
        MemoryBudgetBytes = o.MemoryBudgetBytes, EmergencyReserveBytes = o.EmergencyReserveBytes,
        EmergencyBufferBytes = o.EmergencyBufferBytes, EmergencyAfter = o.EmergencyAfter, Allocator = o.Allocator,
        CheckpointGatherWindow = o.CheckpointGatherWindow, Name = o.Name, Logger = logger, LoggerFactory = factory,
    };

    [Fact]
    public async Task StartAndCleanClose_AreInformation_ThroughTheFactoryUnderTheJournalCategory()
    {
        var factory = new ListLogger();
        var logDev = new MemoryBlockDevice(2048, "log-" + Guid.NewGuid().ToString("N"));
        var j = MetadataJournal.Create(new LogRegion(logDev, 0, 2048), Logged(LogIntegrationTests.RealOptions(), factory: factory));
        await CommitAsync(j, new TestItem(new TestHome(), 1), 1);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);

        var started = Assert.Single(factory.WithId(JournalEventIds.Started));
        Assert.Equal(LogLevel.Information, started.Level);
        Assert.Equal(JournalLogCategories.Journal, started.Category);
        Assert.Contains($"journal {j.Name}: started on {logDev.Name} (1048576 bytes of log), first checkpoint sequence 1", started.Message);
        var closed = Assert.Single(factory.WithId(JournalEventIds.Closed));
        Assert.Equal(LogLevel.Information, closed.Level);
        Assert.Contains("closed cleanly", closed.Message);
        Assert.True(!factory.Entries.Any(e => e.Level >= LogLevel.Warning), string.Join(" | ", factory.Entries.Select(e => e.Message)));
    }

    [Fact]
    public async Task Shutdown_IsAWarningCarryingItsCause()
    {
        var logger = new ListLogger();
        var (j, _) = Create(2048, Logged(SmallOptions(), logger));
        using (var tx = await j.BeginTransactionAsync(0))
        {
            tx.AddItem(new OverrunningItem());
            Assert.Throws<JournalException>(() => tx.Commit());
        }
        var e = Assert.Single(logger.WithId(JournalEventIds.Shutdown));
        Assert.Equal(LogLevel.Warning, e.Level);
        Assert.Contains("shut down, every later call fails: journal shut down: formatting a log item failed", e.Message);
        Assert.NotNull(e.Exception);
        Assert.Same(j.Cil.ShutdownError, e.Exception);
        await Assert.ThrowsAsync<JournalException>(async () => await j.CloseAsync());
        var closed = Assert.Single(logger.WithId(JournalEventIds.ClosedUnclean));
        Assert.Equal(LogLevel.Warning, closed.Level);
        Assert.Contains("closed without the unmount record (shut down: journal shut down: formatting a log item failed", closed.Message);
    }

    [Fact]
    public async Task EmergencyAllocation_IsAWarningOncePerEpisode()
    {
        var logger = new ListLogger();
        var allocator = new FlakyAllocator();
        var (j, _) = Create(2048, Logged(SmallOptions(2048, b => { b.Allocator = allocator; b.EmergencyAfter = TimeSpan.Zero; }), logger));
        allocator.Set(FlakyAllocator.Mode.Fail);
        var home = new TestHome();
        for (int i = 0; i < 3; i++) await CommitAsync(j, new TestItem(home, (ulong)i), 1, 1000);
        var e = Assert.Single(logger.WithId(JournalEventIds.EmergencyAllocation));
        Assert.Equal(LogLevel.Warning, e.Level);
        Assert.Contains("could not serve the committers' log vectors in time; using the emergency reserve (1 emergency buffers out", e.Message);
        Assert.Equal(3, j.MemoryStatistics.EmergencyTotal);
        allocator.Set(FlakyAllocator.Mode.Normal);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task AJournalUnderNoMemoryPressure_TakesAnEmergencyBufferForAPushRarelyIfEver()
    {
        // Every push takes a prepared spare, or the header the previous checkpoint gave back to the pool: the push
        // slots of the reserve are for an allocator that fails or stalls. The one other way to one is a push that comes
        // before its spare's task has run and while every cached header is still in flight (a saturated thread pool on
        // a busy machine): rare, never the rule. 8 committers commit and force in a loop: many pushes, each right after
        // the previous one. (Taking a push slot for every push, as a journal without spares would, fails this.)
        var logger = new ListLogger();
        var logDev = new MemoryBlockDevice(4096, "log");
        var j = MetadataJournal.Create(new LogRegion(logDev, 0, 4096), Logged(LogIntegrationTests.RealOptions(4096), logger));
        var home = new TestHome();
        await Task.WhenAll(Enumerable.Range(0, 8).Select(t => Task.Run(async () =>
        {
            var item = new TestItem(home, (ulong)t);
            for (int i = 0; i < 50; i++) await j.ForceAsync(await CommitAsync(j, item, i, 64 + i));
        }))).WaitAsync(Watchdog);
        Assert.True(j.Statistics.Checkpoints >= 20, $"only {j.Statistics.Checkpoints} checkpoints");
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
        var detail = $"{j.MemoryStatistics} {j.Statistics} " + string.Join(" | ", logger.Entries.Select(e => e.Message));
        Assert.True(j.MemoryStatistics.EmergencyTotal * 20 <= j.Statistics.Checkpoints, detail);
    }

    [Fact]
    public async Task GatherTimeout_IsAWarningNamingTheCheckpointAndTheCommittersBack()
    {
        // As ForceTests.ForcersThatDoNotComeBack_HoldTheNextCheckpointNoLongerThanTheWindow: 16 forcers of one
        // checkpoint, one comes back, the thread pool looks busy, the window (the longest allowed) runs out.
        var logger = new ListLogger();
        var (j, sink) = Create(8192, Logged(SmallOptions(8192, b => b.GatherWindow = TimeSpan.FromSeconds(1)), logger));
        ulong seq = await ForceTests.OneForcerComesBackAsync(j, sink);
        Assert.Equal(1, j.Statistics.GatherTimeouts);
        var e = Assert.Single(logger.WithId(JournalEventIds.GatherTimeout));
        Assert.Equal(LogLevel.Warning, e.Level);
        Assert.Contains($"checkpoint {seq} gathered 1 of the 16 committers the previous checkpoint woke before the 1000000 µs gather window ran out (0 more", e.Message);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public void RepeatedReports_AreHeldBackAndCounted()
    {
        var limit = new LogRateLimit(TimeSpan.FromHours(1));
        Assert.True(limit.TryReport(out long first));
        Assert.Equal(0, first);
        for (int i = 0; i < 5; i++) Assert.False(limit.TryReport(out _));
        var zero = new LogRateLimit(TimeSpan.Zero);   // an interval of 0 lets every report through
        Assert.True(zero.TryReport(out _));
        Assert.True(zero.TryReport(out long none));
        Assert.Equal(0, none);
    }

    [Fact]
    public void Options_RejectABadName_AndPrintTheLoggingChoice()
    {
        foreach (var bad in new[] { "", "  ", "a\nb", new string('x', 201) })
        {
            var e = Assert.Throws<JournalArgumentException>(() => new JournalOptions { Name = bad }.Validate());
            Assert.Equal("journal options: Name must be 1 to 200 characters, not blank, without control characters", e.Message);
        }
        Assert.EndsWith("Name=store-a Logging=ILogger", new JournalOptions { Name = "store-a", Logger = new ListLogger() }.ToString());
        Assert.EndsWith("Name=(log device) Logging=ILoggerFactory", new JournalOptions { LoggerFactory = new ListLogger() }.ToString());
    }

    /// <summary>Formats more than it reported: the commit path shuts the journal down.</summary>
    private sealed class OverrunningItem() : LogItem(TestHome.ItemType, 99)
    {
        public override LogItemSize GetLogSize() => new(1, 10);
        public override void FormatLog(LogVectorWriter writer) => writer.AddRegion(20);
        public override ValueTask<bool> WriteBackAsync(Lsn lsn, CancellationToken cancellationToken) => ValueTask.FromResult(true);
        public override Journal.Storage.BlockDevice? HomeDevice => null; // no home copy
    }
}
