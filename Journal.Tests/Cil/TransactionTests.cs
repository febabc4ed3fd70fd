using static Journal.Tests.Cil.JournalFixture;

namespace Journal.Tests.Cil;

/// <summary>
/// Misuse of pooled transactions: a transaction handle that was disposed (its state went back to the journal's pool)
/// throws <see cref="ObjectDisposedException"/> on every use, and never reaches the state of the caller the pool
/// handed it to next.
/// </summary>
public class TransactionTests
{
    [Fact]
    public async Task StaleDispose_AfterThePoolReusedTheTransaction_ThrowsAndLeavesTheNewOwnerAlone()
    {
        var (j, _) = Create();
        var item = new TestItem(new TestHome(), 1);
        var first = await j.BeginTransactionAsync(1000);
        first.Dispose();
        var second = await j.BeginTransactionAsync(3000);     // the pool hands out the same transaction state
        var held = item.Lock();
        second.AddItem(item);

        Assert.Throws<ObjectDisposedException>(() => first.Dispose());

        Assert.True(second.IsOpen);
        Assert.Equal(1, second.Count);
        Assert.Equal(3000, j.Space.Outstanding);               // the new owner's reservation is intact
        var third = await j.BeginTransactionAsync(0);          // and its state was not put back in the pool
        Assert.Throws<InvalidOperationException>(() => third.AddItem(item)); // the item is still joined to the second
        third.Dispose();
        second.Commit();
        held.Dispose();
        second.Dispose();
        Assert.Equal(1, j.Statistics.Commits);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task EveryUseOfADisposedHandle_ThrowsObjectDisposed_WhileTheStateServesAnotherCaller()
    {
        var (j, _) = Create();
        var home = new TestHome();
        var mine = new TestItem(home, 1);
        var theirs = new TestItem(home, 2);
        var stale = await j.BeginTransactionAsync(500);
        var copy = stale;                                       // a copy of the handle dies with it
        stale.Dispose();
        using var current = await j.BeginTransactionAsync(700);
        var held = await theirs.LockAsync();
        current.AddItem(theirs);

        Assert.Throws<ObjectDisposedException>(() => stale.AddItem(mine));
        Assert.Throws<ObjectDisposedException>(() => stale.Commit());
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await stale.CommitAsync());
        Assert.Throws<ObjectDisposedException>(() => stale.Count);
        Assert.Throws<ObjectDisposedException>(() => stale.ReservedBytes);
        Assert.Throws<ObjectDisposedException>(() => copy.Dispose());
        Assert.False(stale.IsOpen);
        Assert.False(copy.IsOpen);

        Assert.True(current.IsOpen);
        Assert.Equal(1, current.Count);
        Assert.Equal(700, current.ReservedBytes);
        Assert.Null(mine.Owner);                                // the stale AddItem joined nothing
        Assert.Equal(0, j.Statistics.Commits);                  // and the stale commits committed nothing
        current.Commit();
        held.Dispose();
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task DisposingAfterCommit_ReturnsTheStateOnce()
    {
        var (j, _) = Create();
        var item = new TestItem(new TestHome(), 1);
        var tx = await j.BeginTransactionAsync(Reserve(j, item, null));
        using (item.Lock())
        {
            tx.AddItem(item);
            tx.Commit();
        }
        Assert.False(tx.IsOpen);
        Assert.Throws<InvalidOperationException>(() => tx.Commit()); // committed, not yet disposed: not open
        tx.Dispose();
        Assert.Throws<ObjectDisposedException>(() => tx.Dispose());
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public void DefaultHandle_IsDisposed()
    {
        Transaction none = default;
        Assert.False(none.IsOpen);
        Assert.Throws<ObjectDisposedException>(() => none.Dispose());
        Assert.Throws<ObjectDisposedException>(() => none.Count);
    }

    [Fact]
    public async Task RacingDisposesOfCopies_ReturnTheStateExactlyOnce()
    {
        var (j, _) = Create();
        for (int round = 0; round < 200; round++)
        {
            var tx = await j.BeginTransactionAsync(100);
            var copy = tx;
            using var go = new Barrier(2);
            int disposed = 0, refused = 0;
            void Race(Transaction t)
            {
                go.SignalAndWait();
                try { t.Dispose(); Interlocked.Increment(ref disposed); }
                catch (ObjectDisposedException) { Interlocked.Increment(ref refused); }
            }
            var a = Task.Run(() => Race(tx));
            var b = Task.Run(() => Race(copy));
            await Task.WhenAll(a, b).WaitAsync(Watchdog);
            Assert.Equal(1, disposed);
            Assert.Equal(1, refused);
            Assert.Equal(0, j.Space.Outstanding);               // released once, not twice
        }
        // Two open transactions at once get two different states (none was pooled twice).
        using var x = await j.BeginTransactionAsync(10);
        using var y = await j.BeginTransactionAsync(20);
        Assert.Equal(30, j.Space.Outstanding);
        var item = new TestItem(new TestHome(), 1);
        using (item.Lock())
        {
            x.AddItem(item);
            Assert.Throws<InvalidOperationException>(() => y.AddItem(item));
        }
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task DisposeWhileACommitIsWaiting_IsRefused_AndTheCommitCompletes()
    {
        // A commit that waits (for memory here: the allocator fails and there is no emergency reserve) still owns the
        // transaction: disposing it then would hand its state to another caller while the commit path uses it.
        var allocator = new Journal.Tests.Memory.FlakyAllocator();
        var (j, _) = Create(2048, SmallOptions(2048, b => { b.Allocator = allocator; b.Reserve = 0; }));
        var item = new TestItem(new TestHome(), 1);
        allocator.Set(Journal.Tests.Memory.FlakyAllocator.Mode.Fail);
        var tx = await j.BeginTransactionAsync(Reserve(j, item, null));
        var held = item.Lock();
        tx.AddItem(item);
        var commit = tx.CommitAsync();
        Assert.False(commit.IsCompleted);
        Assert.Throws<InvalidOperationException>(() => tx.Dispose());
        allocator.Set(Journal.Tests.Memory.FlakyAllocator.Mode.Normal);
        ulong seq = await commit.AsTask().WaitAsync(Watchdog);
        held.Dispose();
        tx.Dispose();
        await j.ForceAsync(seq).AsTask().WaitAsync(Watchdog);
        Assert.Equal(1, j.Statistics.Commits);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }
}
