using Journal.Format;
using Journal.Recovery;
using Journal.Storage;
using Journal.Testing;
using static Journal.Tests.Cil.JournalFixture;

namespace Journal.Tests.Cil;

/// <summary>
/// A log item whose <see cref="LogItem.FormatLog"/> throws inside the commit's locked section: the journal shuts down
/// (after the context lock is released), the half-formatted context never reaches the log, and the next open replays
/// only what was committed before.
/// </summary>
public sealed class FormatFailureTests
{
    private sealed class FailingItem(ulong id) : LogItem(TestHome.ItemType, id)
    {
        public static readonly InvalidOperationException Failure = new("format exploded");
        public override LogItemSize GetLogSize() => new(1, 64);
        public override void FormatLog(LogVectorWriter writer)
        {
            writer.AddRegion(new byte[8]);   // part of the item formatted, then the failure
            throw Failure;
        }
        public override ValueTask<bool> WriteBackAsync(Lsn lsn, CancellationToken cancellationToken) => ValueTask.FromResult(true);
        public override BlockDevice? HomeDevice => null; // no home copy
    }

    [Fact]
    public async Task A_failing_format_shuts_the_journal_down_and_the_damaged_context_never_reaches_the_log()
    {
        const uint Blocks = LogIntegrationTests.Blocks;
        var log = new MemoryBlockDevice(Blocks, "log");
        var region = new LogRegion(log, 0, Blocks);
        var j = MetadataJournal.Create(region, LogIntegrationTests.RealOptions());
        var home = new TestHome();
        var good = new TestItem(home, 1);
        await CommitAsync(j, good, 1);
        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        await CommitAsync(j, new TestItem(home, 2), 1);   // committed into the context the failure damages

        var bad = new FailingItem(3);
        using (var tx = await j.BeginTransactionAsync((int)j.EstimateLogBytes(bad.GetLogSize())))
        {
            tx.AddItem(bad);
            var e = await Assert.ThrowsAsync<JournalException>(async () => await tx.CommitAsync());
            Assert.Equal("journal shut down: formatting a log item failed: format exploded", e.Message);
            Assert.Same(FailingItem.Failure, e.InnerException);
        }

        // Shut down: everything after fails with the same error, and nothing more is written to the log.
        Assert.Same(FailingItem.Failure, j.Cil.ShutdownError?.InnerException);
        var writesAfter = log.Counters.Writes;
        await Assert.ThrowsAsync<JournalException>(async () => await j.ForceAllAsync());
        await Assert.ThrowsAsync<JournalException>(async () => await j.BeginTransactionAsync(100));
        await Assert.ThrowsAsync<JournalException>(async () => await j.CloseAsync());
        Assert.Equal(writesAfter, log.Counters.Writes);

        // The log holds the checkpoint forced before the failure and nothing of the damaged context.
        var recovered = JournalRecovery.Scan(new LogRegion(MemoryBlockDevice.FromImage(log.ToArray(), "log"), 0, Blocks));
        Assert.False(recovered.Clean);
        var item = Assert.Single(Assert.Single(recovered.Checkpoints).Items);
        Assert.Equal(1UL, item.ItemId);
    }
}
