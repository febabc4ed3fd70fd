using Journal.Format;
using Journal.Log;
using Journal.Storage;
using Journal.Testing;
using static Journal.Tests.Cil.JournalFixture;
using static Journal.Tests.Cil.LogIntegrationTests;

namespace Journal.Tests.Cil;

/// <summary>
/// <see cref="MetadataJournal.CloseAsync"/>: idempotent, and whatever its token the log writer is closed and its
/// buffers go back; a close cut short writes no unmount record, so the next open replays what was forced.
/// </summary>
public sealed class CloseTests
{
    [Fact]
    public async Task ClosingTwice_AtOnceOrAfterwards_ClosesOnce()
    {
        var logDev = new MemoryBlockDevice(Blocks, "log");
        var region = new LogRegion(logDev, 0, Blocks);
        var home = new DeviceHome(new MemoryBlockDevice(DeviceHome.SectorsFor(4), "home"));
        var j = MetadataJournal.Create(region, RealOptions());
        for (int i = 0; i < 4; i++) await CommitAsync(j, new TestItem(home, (ulong)i), 7, 100);
        var first = j.CloseAsync().AsTask();
        var second = j.CloseAsync().AsTask();
        await Task.WhenAll(first, second).WaitAsync(Watchdog);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);       // after the close: returns at once
        await j.DisposeAsync().AsTask().WaitAsync(Watchdog);
        Assert.True(Journal.Recovery.LogRecovery.Recover(region).Clean);
        var j2 = MetadataJournal.Open(region, RealOptions(), Handlers(home));
        Assert.Equal(0, j2.RecoveredCheckpoints);
        await j2.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task ACancelledClose_ClosesTheLogWriter_WritesNoUnmountRecord_AndTheNextOpenReplays()
    {
        var logDev = new MemoryBlockDevice(Blocks, "log");
        var region = new LogRegion(logDev, 0, Blocks);
        var home = new DeviceHome(new MemoryBlockDevice(DeviceHome.SectorsFor(8), "home"));
        var j = MetadataJournal.Create(region, RealOptions());
        var writer = (LogWriter)j.Log;
        var items = Enumerable.Range(0, 8).Select(i => new TestItem(home, (ulong)i)).ToArray();
        foreach (var it in items) await CommitAsync(j, it, 5, 200);
        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);   // durable, in the AIL, not written home
        Assert.Equal(8, j.Ail.Count);

        var e = await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await j.CloseAsync(new CancellationToken(true)));
        Assert.Contains("without its unmount record", e.Message);

        // The writer is closed and gave back what it rented; the journal is closed.
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await writer.ForceAllAsync());
        var ws = writer.Statistics;
        Assert.Equal(ws.BuffersRented, ws.BuffersReturned);
        await Assert.ThrowsAsync<JournalException>(async () => await j.BeginTransactionAsync(0));
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);       // a second close is harmless

        Assert.False(Journal.Recovery.LogRecovery.Recover(region).Clean);
        var j2 = MetadataJournal.Open(region, RealOptions(), Handlers(home));
        Assert.True(j2.RecoveredCheckpoints >= 1);
        foreach (var it in items)
        {
            Assert.True(home.TryGet(it.ItemId, out var data, out _));
            Assert.Equal(5, TestItem.VersionOf(data));
        }
        await j2.CloseAsync().AsTask().WaitAsync(Watchdog);
        Assert.True(Journal.Recovery.LogRecovery.Recover(region).Clean);
    }

    [Fact]
    public async Task ACloseCancelledWhileItsForceWaits_FinishesWhenTheDeviceReturns_AndKeepsWhatWasFlushed()
    {
        var inner = new MemoryBlockDevice(Blocks, "log");
        var logDev = new GatedDevice(inner);
        var region = new LogRegion(logDev, 0, Blocks);
        var home = new DeviceHome(new MemoryBlockDevice(DeviceHome.SectorsFor(4), "home"));
        var j = MetadataJournal.Create(region, RealOptions());
        var writer = (LogWriter)j.Log;
        var items = Enumerable.Range(0, 4).Select(i => new TestItem(home, (ulong)i)).ToArray();
        foreach (var it in items) await CommitAsync(j, it, 9, 100);
        var gate = new TaskCompletionSource();
        logDev.FlushGate = gate.Task;                            // the close's force waits for this flush

        using var cts = new CancellationTokenSource();
        var close = j.CloseAsync(cts.Token).AsTask();
        await CommitPathTests.WaitUntil(() => Volatile.Read(ref logDev.FlushesWaiting) > 0);
        cts.Cancel();
        // The close stops waiting for the force, but the checkpoint's write and flush are already with the device:
        // the close finishes once they do, so the writer is never disposed under a running write.
        Assert.False(close.IsCompleted);
        var second = j.CloseAsync().AsTask();
        logDev.FlushGate = null;
        gate.SetResult();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => close.WaitAsync(Watchdog));
        await second.WaitAsync(Watchdog);
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await writer.ForceAllAsync());

        var j2 = MetadataJournal.Open(new LogRegion(inner, 0, Blocks), RealOptions(), Handlers(home));
        Assert.Equal(1, j2.RecoveredCheckpoints);                // the flushed checkpoint, replayed
        foreach (var it in items)
        {
            Assert.True(home.TryGet(it.ItemId, out var data, out _));
            Assert.Equal(9, TestItem.VersionOf(data));
        }
        await j2.CloseAsync().AsTask().WaitAsync(Watchdog);
    }
}
