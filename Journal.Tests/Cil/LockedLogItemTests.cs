using Journal.Format;
using Journal.Storage;
using static Journal.Tests.Cil.JournalFixture;

namespace Journal.Tests.Cil;

/// <summary>
/// <see cref="LockedLogItem"/>: the standard write-back (try the lock, skip a pinned item, write home, record the home
/// LSN), the home device required at construction, and transactions that refuse an item whose lock is not held.
/// </summary>
public sealed class LockedLogItemTests
{
    [Fact]
    public void HomeDevice_IsRequired_ByTheBaseClassAndAtConstruction()
    {
        // A raw LogItem must name its home device (the property is abstract: a subclass that does not is a compile error).
        Assert.True(typeof(LogItem).GetProperty(nameof(LogItem.HomeDevice))!.GetMethod!.IsAbstract);
        var e = Assert.Throws<ArgumentNullException>(() => new TestItem(new NoDeviceHome(), 1));
        Assert.Equal("homeDevice", e.ParamName);
    }

    [Fact]
    public async Task WriteBack_WhileTheLockIsHeld_IsRetriedLater_ThenWritesHomeAndRecordsTheLsn()
    {
        var (j, sink) = Create();
        var home = new TestHome();
        var item = new TestItem(home, 1);
        ulong seq = await CommitAsync(j, item, 5);
        await j.ForceAsync(seq).AsTask().WaitAsync(Watchdog);
        var start = Checkpoints(sink.Crash())[0].Start;
        Assert.Equal(Lsn.Zero, item.HomeLsn);

        using (await item.LockAsync())
        {
            Assert.True(item.IsLocked);
            Assert.Equal(0, await j.WriteBackAsync().AsTask().WaitAsync(Watchdog)); // busy: left in the AIL
            Assert.True(item.IsInAil);
            Assert.False(home.TryGet(1, out _, out _));
        }
        Assert.False(item.IsLocked);

        long flushes = home.Device.Counters.Flushes;
        Assert.Equal(1, await j.WriteBackAsync().AsTask().WaitAsync(Watchdog));
        Assert.False(item.IsInAil);
        Assert.Equal(start, item.HomeLsn);
        Assert.True(home.TryGet(1, out var data, out var lsn));
        Assert.Equal(5, TestItem.VersionOf(data));
        Assert.Equal(start, lsn);                                      // WriteHomeAsync was given the checkpoint's LSN
        Assert.Equal(flushes + 1, home.Device.Counters.Flushes);       // the AIL flushed the item's home device
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task WriteBack_OfAPinnedItem_WritesNothing()
    {
        var (j, _) = Create();
        var home = new TestHome();
        var item = new TestItem(home, 1);
        await CommitAsync(j, item, 1);                                 // committed, checkpoint not durable: pinned
        Assert.True(item.IsPinned);
        Assert.False(await item.WriteBackAsync(new Lsn(1, 2), CancellationToken.None));
        Assert.Equal(0, item.WriteBacks);
        Assert.Equal(Lsn.Zero, item.HomeLsn);
        Assert.False(item.IsLocked);                                   // the write-back gave the lock back

        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        Assert.False(item.IsPinned);
        Assert.True(await item.WriteBackAsync(new Lsn(1, 2), CancellationToken.None));
        Assert.Equal(new Lsn(1, 2), item.HomeLsn);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task WriteHomeAsync_ReturningFalse_LeavesTheItemInTheAil_AndTheHomeLsnUnchanged()
    {
        var (j, _) = Create();
        var item = new TestItem(new TestHome(), 1, size: 64) { RefuseWriteBack = true };
        await j.ForceAsync(await CommitAsync(j, item, 1)).AsTask().WaitAsync(Watchdog);
        Assert.Equal(0, await j.WriteBackAsync().AsTask().WaitAsync(Watchdog));
        Assert.True(item.IsInAil);
        Assert.Equal(Lsn.Zero, item.HomeLsn);
        item.RefuseWriteBack = false;
        Assert.Equal(1, await j.WriteBackAsync().AsTask().WaitAsync(Watchdog));
        Assert.False(item.HomeLsn.IsZero);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task Joining_OrCommitting_AnItemWhoseLockIsNotHeld_IsRefused_AndCommitsNothing()
    {
        var (j, _) = Create();
        var item = new TestItem(new TestHome(), 1);
        using (var tx = await j.BeginTransactionAsync(Reserve(j, item, null)))
        {
            var e = Assert.Throws<InvalidOperationException>(() => tx.AddItem(item));
            Assert.Contains("TestItem(7:1): its lock is not held", e.Message);
            Assert.Equal(0, tx.Count);
            Assert.Null(item.Owner);
        }

        using (var tx = await j.BeginTransactionAsync(Reserve(j, item, null)))
        {
            using (item.Lock()) tx.AddItem(item);                      // released before the commit
            Assert.Throws<InvalidOperationException>(() => tx.Commit());
            await Assert.ThrowsAsync<InvalidOperationException>(async () => await tx.CommitAsync());
            Assert.True(tx.IsOpen);                                    // nothing happened: still open, item still joined
            Assert.Equal(1, tx.Count);
            Assert.Equal(0, j.Statistics.Commits);
            Assert.False(item.IsPinned);
            using (item.Lock()) tx.Commit();                           // with the lock held again, it commits
        }
        Assert.Equal(1, j.Statistics.Commits);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task ItemLock_DisposedTwice_Throws_AndDoesNotReleaseTheNextHoldersLock()
    {
        var item = new TestItem(new TestHome(), 1);
        var first = item.Lock();
        var copy = first;
        first.Dispose();
        var second = await item.LockAsync();                           // someone else holds it now
        Assert.Throws<ObjectDisposedException>(() => copy.Dispose());
        Assert.Throws<ObjectDisposedException>(() => first.Dispose());
        Assert.True(item.IsLocked);                                    // still theirs
        Assert.False(item.TryLock(out var none));
        none.Dispose();                                                // a handle that holds nothing: no effect
        Assert.Null(none.Item);
        Assert.True(item.IsLocked);
        second.Dispose();
        Assert.False(item.IsLocked);
        Assert.True(item.TryLock(out var third));
        Assert.Same(item, third.Item);
        third.Dispose();
    }

    [Fact]
    public async Task LockAsync_WaitsForTheHolder_AndHonoursCancellation()
    {
        var item = new TestItem(new TestHome(), 1);
        var held = item.Lock();
        var waiting = item.LockAsync().AsTask();
        Assert.False(waiting.IsCompleted);
        using var cts = new CancellationTokenSource();
        var cancelled = item.LockAsync(cts.Token).AsTask();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.WaitAsync(Watchdog));
        held.Dispose();
        var next = await waiting.WaitAsync(Watchdog);                 // the waiter got it; the cancelled one did not
        Assert.True(item.IsLocked);
        next.Dispose();
        Assert.False(item.IsLocked);
    }

    /// <summary>A home whose device is missing: the item refuses it at construction.</summary>
    private sealed class NoDeviceHome : ITestHome
    {
        public BlockDevice Device => null!;
        public void Write(ulong id, byte[] data, Lsn lsn) => throw new InvalidOperationException("no home");
        public bool TryGet(ulong id, out byte[] data, out Lsn lsn) { data = []; lsn = Lsn.Zero; return false; }
        public Lsn GetHomeLsn(ulong itemId) => Lsn.Zero;
        public void Apply(ulong itemId, Lsn checkpointLsn, IReadOnlyList<ReadOnlyMemory<byte>> regions) { }
    }
}
