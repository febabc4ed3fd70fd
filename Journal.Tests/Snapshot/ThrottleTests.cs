using Journal.Storage;
using Journal.Tests.Storage;
using Snapshot;
using Snapshot.Copy;
using Snapshot.Memory;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

/// <summary>
/// The in-flight copy bound and the deadlock an early version of it caused (a writer waiting on the bound while holding
/// a lock that the completion path or snapshot creation needed). Loop count knob: <c>JOURNAL_SNAP_DEADLOCK_LOOPS</c>
/// (default 8).
/// </summary>
public class ThrottleTests
{
    private static int Loops => int.TryParse(Environment.GetEnvironmentVariable("JOURNAL_SNAP_DEADLOCK_LOOPS"), out int n) && n > 0 ? n : 8;

    /// <summary>
    /// A COW device whose writes first wait for <paramref name="start"/>, then yield and sometimes sleep, so copies stay
    /// in flight and writers pile up at the bound.
    /// </summary>
    private sealed class SlowDevice(BlockDevice inner, int seed, Task start) : ForwardingDevice(inner)
    {
        private readonly Random _r = new(seed);
        protected override async ValueTask WriteCoreAsync(long sector, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
        {
            await start.ConfigureAwait(false);   // held until the test has seen a writer wait at the bound
            int d;
            lock (_r) d = _r.Next(4);
            if (d == 0) await Task.Delay(1, cancellationToken).ConfigureAwait(false);
            else await Task.Yield();
            Inner.Write(sector, data.Span);
        }
    }

    [Fact]
    public async Task Writers_held_at_the_bound_while_snapshots_are_created_and_deleted_never_deadlock()
    {
        for (int loop = 0; loop < Loops; loop++)
        {
            var p = new TestDeviceProvider();
            var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            p.Wrap = (path, d) => path.EndsWith(".cow", StringComparison.Ordinal) ? new SlowDevice(d, loop * 97 + path.Length, held.Task) : d;
            const int Bound = 4;
            var store = await CreateMemoryStoreAsync(p, 8 * 512, maxInFlight: Bound);
            await store.CreateSnapshotAsync("base");
            var stop = new CancellationTokenSource();
            // 24 writers, each keeps writing chunks no snapshot has yet (every write needs copies).
            var writers = Enumerable.Range(0, 24).Select(w => Task.Run(async () =>
            {
                var r = new Random(loop * 1000 + w);
                int n = 0;
                while (!stop.IsCancellationRequested || n < 10)
                {
                    long chunk = r.Next(512);
                    await store.Origin.WriteAsync(chunk * 8 + r.Next(8), Pattern(chunk, 1, w)).ConfigureAwait(false);
                    n++;
                }
                return n;
            })).ToArray();
            // Every loop reaches the bound: the first copies are held until a writer waits for room (the watchdog
            // fails the test if none ever does).
            var watchdog = Task.Delay(Watchdog);
            while (store.Throttle.Waiting == 0)
            {
                Assert.False(watchdog.IsCompleted, $"loop {loop}: no writer ever waited at the bound of {Bound}");
                await Task.Delay(1);
            }
            held.SetResult();
            // Meanwhile: create and delete snapshots (they quiesce I/O) while copies complete.
            var admin = Task.Run(async () =>
            {
                // At most three snapshots at once, so every write needs at most three copies (below the bound).
                for (int i = 0; i < 6; i++)
                {
                    await store.CreateSnapshotAsync($"t{i}").ConfigureAwait(false);
                    await Task.Delay(2).ConfigureAwait(false);
                    if (i > 0) await store.DeleteSnapshotAsync($"t{i - 1}").ConfigureAwait(false);
                }
            });
            // The watchdog: a hang anywhere fails the test instead of stalling the run.
            await admin.WaitAsync(Watchdog);
            stop.Cancel();
            var done = await Task.WhenAll(writers).WaitAsync(Watchdog);
            Assert.All(done, n => Assert.True(n >= 10));
            var status = store.GetStatus();
            Assert.True(status.PeakCopiesInFlight <= Bound, $"peak {status.PeakCopiesInFlight} copies in flight over the bound {Bound}");
            Assert.Equal(0, status.CopiesInFlight);
            Assert.Equal(0, status.PendingPool.InUse);
            Assert.Equal(0, status.PendingPool.EmergencyTotal);
            await store.CloseAsync().AsTask().WaitAsync(Watchdog);
        }
    }

    [Fact]
    public async Task A_writer_waiting_at_the_bound_holds_nothing_so_snapshot_creation_proceeds_as_copies_complete()
    {
        var p = new TestDeviceProvider();
        var gates = new List<GatedDevice>();
        p.Wrap = (path, d) =>
        {
            if (!path.EndsWith(".cow", StringComparison.Ordinal)) return d;
            var g = new GatedDevice(d);
            lock (gates) gates.Add(g);
            return g;
        };
        var store = await CreateMemoryStoreAsync(p, 8 * 64, maxInFlight: 1);
        await store.CreateSnapshotAsync("s");
        var gate = gates.Single();
        gate.Close();
        // Writer A takes the only slot and its copy is held in flight.
        var a = store.Origin.WriteAsync(0, Pattern(0, 8, 1)).AsTask();
        while (gate.HeldWrites == 0) await Task.Delay(1).WaitAsync(Watchdog);
        // Writers B and C need copies of other chunks: they wait at the bound.
        var b = store.Origin.WriteAsync(8, Pattern(8, 8, 1)).AsTask();
        var c = store.Origin.WriteAsync(16, Pattern(16, 8, 1)).AsTask();
        while (store.Throttle.Waiting < 2) await Task.Delay(1).WaitAsync(Watchdog);
        // While they wait they hold nothing: only A (running its copy) is inside the I/O gate.
        Assert.Equal(1, store.GateSharedHolders);
        Assert.Equal(1, store.GetStatus().PendingPool.InUse);
        // Snapshot creation (its COW file made first, outside the gate) queues behind A's copy only; releasing the copy
        // lets everything finish.
        var create = store.CreateSnapshotAsync("t").AsTask();
        while (store.GateExclusiveWaiters == 0) await Task.Delay(1).WaitAsync(Watchdog);
        Assert.False(create.IsCompleted);
        gate.Open();
        await Task.WhenAll(a, b, c, create).WaitAsync(Watchdog);
        // The creation got the gate before the woken writers came back (writer preference): "t" has A's write and
        // not B's or C's, which were copied into both snapshots.
        var t = store.GetSnapshot("t");
        Assert.Equal(Pattern(0, 8, 1), await ReadAsync(t, 0, 8));
        Assert.Equal(new byte[16 * 512], await ReadAsync(t, 8, 16));
        Assert.Equal(Pattern(8, 8, 1), await ReadAsync(store.Origin, 8, 8));
        Assert.Equal(new byte[8 * 512], await ReadAsync(store.GetSnapshot("s"), 8, 8));
        Assert.True(store.GetStatus().ThrottleWaits >= 2);
        await store.CloseAsync();
    }

    [Fact]
    public async Task Throttle_grants_in_bound_requests_and_an_oversized_one_when_idle()
    {
        var t = new CopyThrottle(4);
        Assert.True(t.TryAcquire(3));
        Assert.False(t.TryAcquire(2));
        var w = t.WaitForRoomAsync(2);
        Assert.False(w.IsCompleted);
        t.ReleaseUnused(1);
        await w.WaitAsync(Watchdog);
        Assert.True(t.TryAcquire(2));
        Assert.Equal(4, t.InFlight);
        Assert.False(t.TryAcquire(8));
        var big = t.WaitForRoomAsync(8);
        var small = t.WaitForRoomAsync(1);
        t.ReleaseUnused(2);
        await small.WaitAsync(Watchdog);     // 2 + 1 fits
        Assert.False(big.IsCompleted);
        t.ReleaseUnused(2);
        await big.WaitAsync(Watchdog);       // nothing in flight: any request fits
        Assert.True(t.TryAcquire(8));
        Assert.Equal(8, t.Peak);
        t.ReleaseUnused(8);
        Assert.Equal(0, t.InFlight);
        Assert.Throws<InvalidOperationException>(() => t.ReleaseUnused(1));
        var unlimited = new CopyThrottle(0);
        Assert.True(unlimited.TryAcquire(100000));
        Assert.Equal(int.MaxValue, unlimited.Bound);
    }

    [Fact]
    public async Task A_written_copy_frees_its_in_flight_slot_and_keeps_its_pending_one_until_complete()
    {
        var t = new CopyThrottle(2, 4);
        Assert.Equal(4, t.PendingBound);
        Assert.True(t.TryAcquire(2));
        Assert.False(t.TryAcquire(1));                 // the in-flight stage is full
        var w = t.WaitForRoomAsync(1);
        Assert.False(w.IsCompleted);
        Assert.Throws<InvalidOperationException>(() => t.Release(1)); // still in flight: refused, nothing changed
        t.CopiesWritten(2);                            // data written: room in flight, still pending
        await w.WaitAsync(Watchdog);
        Assert.Equal((0, 2), (t.InFlight, t.Pending));
        Assert.True(t.TryAcquire(2));
        t.CopiesWritten(2);
        Assert.Equal((0, 4), (t.InFlight, t.Pending));
        Assert.False(t.TryAcquire(1));                 // nothing in flight, but the pending stage is full
        var big = t.WaitForRoomAsync(6);               // larger than the pending bound: granted once nothing is pending
        var small = t.WaitForRoomAsync(1);
        t.Release(1);
        await small.WaitAsync(Watchdog);
        Assert.False(big.IsCompleted);
        t.Release(3);
        await big.WaitAsync(Watchdog);
        Assert.True(t.TryAcquire(6));
        Assert.Equal((6, 6), (t.Peak, t.PendingPeak));
        t.ReleaseUnused(6);
        Assert.Equal((0, 0), (t.InFlight, t.Pending));
        Assert.Throws<InvalidOperationException>(() => t.CopiesWritten(1));
        Assert.Equal(2048 * CopyThrottle.DefaultPendingFactor, new CopyThrottle(2048).PendingBound);
        Assert.Equal(int.MaxValue, new CopyThrottle(0).PendingBound);
    }

    /// <summary>
    /// The in-flight bound holds the copy (read and write of the old data), not the commit: with the commit round held
    /// (its COW flush gated), writers whose copies are written wait for the round holding only pending slots, so more
    /// copies run meanwhile, up to the pending bound; past it a writer waits, and the round's completion lets it go.
    /// </summary>
    [Fact]
    public async Task Copies_waiting_for_their_commit_leave_the_in_flight_bound_and_stop_at_the_pending_one()
    {
        var p = new TestDeviceProvider();
        var flushGate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Cil.GatedDevice? cow = null;
        p.Wrap = (path, d) => path.EndsWith(".cow", StringComparison.Ordinal) ? cow = new Cil.GatedDevice(d) : d;
        var store = await CreateMemoryStoreAsync(p, 8 * 64, maxInFlight: 1, maxPending: 3);
        await store.CreateSnapshotAsync("s");
        cow!.FlushGate = flushGate.Task;
        // Three writers, three chunks: one copy in flight at a time, all three written and waiting for the held round.
        var writes = Enumerable.Range(0, 3).Select(i => store.Origin.WriteAsync(i * 8, Pattern(i * 8, 8, 1)).AsTask()).ToList();
        var watchdog = Task.Delay(Watchdog);
        while (store.Throttle.Pending < 3 || store.Throttle.InFlight > 0)
        {
            Assert.False(watchdog.IsCompleted, $"copies did not leave the in-flight stage while their commit was held: {store.Throttle}");
            await Task.Delay(1);
        }
        Assert.All(writes, w => Assert.False(w.IsCompleted));
        // A fourth writer needs one more copy: the pending stage is full, so it waits (holding nothing).
        writes.Add(store.Origin.WriteAsync(3 * 8, Pattern(3 * 8, 8, 1)).AsTask());
        while (store.Throttle.Waiting == 0)
        {
            Assert.False(watchdog.IsCompleted, $"the fourth writer never waited at the pending bound: {store.Throttle}");
            await Task.Delay(1);
        }
        flushGate.SetResult();
        await Task.WhenAll(writes).WaitAsync(Watchdog);
        var status = store.GetStatus();
        Assert.Equal((1, 3), (status.PeakCopiesInFlight, status.PeakCopiesPending));
        Assert.Equal((0, 0), (status.CopiesInFlight, status.CopiesPending));
        string json = status.ToJson();
        Assert.Contains("\"pending_copy_bound\":3", json);
        Assert.Contains("\"peak_copies_pending\":3", json);
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(Pattern(i * 8, 8, 1), await ReadAsync(store.Origin, i * 8, 8));
            Assert.Equal(new byte[8 * 512], await ReadAsync(store.GetSnapshot("s"), i * 8, 8));
        }
        await store.CloseAsync();
    }

    [Theory]
    [InlineData(-1, 4, "pending copy bound -1 is negative")]
    [InlineData(2, 4, "pending copy bound 2 is below the in-flight copy bound 4")]
    public async Task A_bad_pending_bound_is_refused_naming_the_folder(int pending, int inFlight, string message)
    {
        var p = new TestDeviceProvider();
        var e = await Assert.ThrowsAsync<SnapshotArgumentException>(() => CreateMemoryStoreAsync(p, 8 * 64, maxInFlight: inFlight, maxPending: pending));
        Assert.Contains(message, e.Message);
        Assert.StartsWith(Folder, e.Message);
    }

    [Fact]
    public async Task Opening_a_store_raises_the_thread_pool_minimum_and_never_lowers_it()
    {
        // The minimum is the process's, shared with every other test: this test only raises it, and checks the rule
        // with values relative to whatever it is when the test runs.
        ThreadPool.GetMinThreads(out int before, out int completionBefore);
        var p = new TestDeviceProvider();
        var o = p.Options(new StoreOptions { OriginSectors = 64, ChunkSectors = 8, MinThreadPoolThreads = before + 3 });
        var store = await SnapshotStore.CreateAsync(Folder, o).AsTask().WaitAsync(Watchdog);
        ThreadPool.GetMinThreads(out int created, out int completion);
        Assert.True(created >= before + 3, $"minimum {created} after a create asking for {before + 3}");
        Assert.Equal(completionBefore, completion);
        await store.CloseAsync();

        // A lower value (and 0) leaves it where it is.
        foreach (int lower in new[] { 1, 0 })
        {
            store = await SnapshotStore.OpenAsync(Folder, p.Options(new StoreOptions { MinThreadPoolThreads = lower })).AsTask().WaitAsync(Watchdog);
            ThreadPool.GetMinThreads(out int now, out _);
            Assert.True(now >= before + 3, $"minimum {now} after an open with {lower}: lowered");
            await store.CloseAsync();
        }

        var e = await Assert.ThrowsAsync<SnapshotArgumentException>(
            () => SnapshotStore.OpenAsync(Folder, p.Options(new StoreOptions { MinThreadPoolThreads = -1 })).AsTask());
        Assert.Contains("thread-pool minimum -1 is negative", e.Message);
        Assert.StartsWith(Folder, e.Message);
    }

    [Fact]
    public void Pool_hands_out_reserve_then_fresh_emergency_objects_and_counts_them()
    {
        int made = 0;
        var pool = new BoundedPool<object>("test", budget: 2, reserve: 1, () => { made++; return new object(); });
        Assert.Equal(1, made); // the reserve is preallocated
        var xs = Enumerable.Range(0, 4).Select(_ => pool.Rent()).ToList();
        var s = pool.Statistics;
        Assert.Equal(4, s.InUse);
        Assert.Equal(4, s.PeakInUse);
        Assert.Equal(2, s.Emergency);
        Assert.Equal(2, s.PeakEmergency);
        Assert.Equal(2, s.EmergencyTotal);
        Assert.Equal(4, made); // 1 reserve + 2 pooled + 1 fresh emergency
        foreach (var x in xs) pool.Return(x);
        s = pool.Statistics;
        Assert.Equal(0, s.InUse);
        Assert.Equal(0, s.Emergency);
        Assert.Equal(2, s.PeakEmergency);
        var again = Enumerable.Range(0, 3).Select(_ => pool.Rent()).ToList();
        Assert.Equal(4, made); // pooled objects and the refilled reserve are reused
        foreach (var x in again) pool.Return(x);
        Assert.Throws<InvalidOperationException>(() => pool.Return(new object()));
    }
}
