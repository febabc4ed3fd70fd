using Journal.Storage;
using Journal.Tests.Storage;
using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

/// <summary>
/// An origin write cut into runs copied in parallel announces its runs to the commit pipeline
/// (<c>CommitPipeline.Expect</c>): a round that holds copies of the request waits for its other runs and takes all their
/// copies, so a request costs one round, not one per run as each arrives; a round that holds none waits for none. A run
/// that has to wait for something a round provides arrives first (the pump would otherwise wait for it while it waits
/// for the pump). Every wait here, the store's close included, is under the watchdog: with that rule broken, the store
/// cannot close either.
/// </summary>
public sealed class RequestRoundTests
{
    private const int Chunk = 8;             // 4 KiB chunks: a run of 256 KiB is 64 chunks
    private const int RequestSectors = 2048; // 1 MiB: four runs

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Each_request_of_four_runs_is_committed_by_one_round(bool deferWrites)
    {
        const int Requests = 6;
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, Requests * RequestSectors, Chunk, deferWrites: deferWrites);
        try
        {
            await WriteAsync(store.Origin, 0, Pattern(0, Requests * RequestSectors, 1));
            await store.CreateSnapshotAsync("s").AsTask().WaitAsync(Watchdog);
            for (int r = 0; r < Requests; r++)
            {
                var before = store.CommitStatistics;
                await WriteAsync(store.Origin, (long)r * RequestSectors, Pattern((long)r * RequestSectors, RequestSectors, 2)).WaitAsync(Watchdog);
                // A deferred write returns once its copies are queued; the flush waits for the round and the origin write.
                await store.FlushAsync().AsTask().WaitAsync(Watchdog);
                var after = store.CommitStatistics;
                Assert.Equal(RequestSectors / Chunk, after.Exceptions - before.Exceptions);
                Assert.Equal(1, after.Rounds - before.Rounds);
            }
            var snap = store.GetSnapshot("s");
            Assert.Equal(Pattern(0, Requests * RequestSectors, 1), await ReadAsync(snap, 0, Requests * RequestSectors));
            Assert.Equal(Pattern(0, Requests * RequestSectors, 2), await ReadAsync(store.Origin, 0, Requests * RequestSectors));
        }
        finally
        {
            await store.CloseAsync().AsTask().WaitAsync(Watchdog);
        }
    }

    [Fact]
    public async Task A_run_that_waits_for_room_under_the_copy_bound_does_not_hold_back_the_round_it_waits_for()
    {
        // Bounds of one run's copies: the first run of each request takes them all, and the other three wait for its
        // round to commit. Each arrives before it waits, so the round does not wait for them; a run that waited first
        // would leave this write to the watchdog.
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, 2 * RequestSectors, Chunk, maxInFlight: 64, maxPending: 64);
        try
        {
            await WriteAsync(store.Origin, 0, Pattern(0, 2 * RequestSectors, 1));
            await store.CreateSnapshotAsync("s").AsTask().WaitAsync(Watchdog);
            await WriteAsync(store.Origin, 0, Pattern(0, 2 * RequestSectors, 2)).WaitAsync(Watchdog);
            Assert.True(store.CommitStatistics.Rounds >= 8, $"{store.CommitStatistics.Rounds} rounds for 8 runs under a bound of one run");
            Assert.Equal(Pattern(0, 2 * RequestSectors, 1), await ReadAsync(store.GetSnapshot("s"), 0, 2 * RequestSectors));
            Assert.Equal(Pattern(0, 2 * RequestSectors, 2), await ReadAsync(store.Origin, 0, 2 * RequestSectors));
        }
        finally
        {
            await store.CloseAsync().AsTask().WaitAsync(Watchdog);
        }
    }

    [Fact]
    public async Task A_run_that_waits_for_another_writers_copy_does_not_hold_back_the_round_that_copy_needs()
    {
        // Another writer's copy of a chunk in the request's second run is written but not yet queued when the request
        // starts (its COW write is held): the second run finds that chunk pending and waits for it, the other runs
        // queue their copies. The round must not wait for the second run: the held copy is released only once the
        // other runs are committed, and the second run's wait ends only after that copy's own round.
        var (store, cow) = await CreateWithSnapshotAsync(RequestSectors, SnapshotStore.CowExtension, d => new HeldWriteDevice(d));
        try
        {
            const long Contended = 64 + 5; // in the second run (chunks 64..127)
            var held = cow.HoldNextWrite();
            var other = WriteAsync(store.Origin, Contended * Chunk, Pattern(Contended * Chunk, Chunk, 3));
            await held.WaitAsync(Watchdog);
            var before = store.CommitStatistics;
            var request = WriteAsync(store.Origin, 0, Pattern(0, RequestSectors, 2));
            // The three runs that do not wait are committed while the other writer's copy is still held.
            await Journal.Tests.Cil.CommitPathTests.WaitUntil(() => store.CommitStatistics.Exceptions - before.Exceptions >= 3 * 64,
                "the runs that do not wait were never committed: the round waited for the run that waits");
            Assert.False(other.IsCompleted);
            Assert.False(request.IsCompleted);
            cow.Release();
            await other.WaitAsync(Watchdog);
            await request.WaitAsync(Watchdog);
            var expected = Pattern(0, RequestSectors, 2);
            Assert.Equal(expected, await ReadAsync(store.Origin, 0, RequestSectors));
            var snap = await ReadAsync(store.GetSnapshot("s"), 0, RequestSectors);
            Assert.Equal(Pattern(0, RequestSectors, 1), snap);
        }
        finally
        {
            await store.CloseAsync().AsTask().WaitAsync(Watchdog);
        }
    }

    // A writer W holds the gate shared with its copy written but not yet queued; a snapshot create waits for the gate
    // exclusively; a 1 MiB request's four runs are announced and block on the gate. Once W's copy is queued, the round
    // must not wait for the runs (they wait for the create, which waits for W, which waits for the round).
    [Fact]
    public async Task Runs_blocked_on_the_gate_behind_a_snapshot_create_do_not_hold_back_the_round_it_waits_for()
    {
        var (store, cowS) = await CreateWithSnapshotAsync(2 * RequestSectors, SnapshotStore.CowExtension, d => new HeldWriteDevice(d));
        try
        {
            const long Other = 300; // in the second MiB
            var held = cowS.HoldNextWrite();
            var other = WriteAsync(store.Origin, Other * Chunk, Pattern(Other * Chunk, Chunk, 3));
            await held.WaitAsync(Watchdog);
            var create = store.CreateSnapshotAsync("t").AsTask();
            // The create waits for the gate, which the other writer holds shared until its copy's round.
            await Task.Delay(200);
            Assert.False(create.IsCompleted);
            var request = store.Origin.WriteAsync(0, Pattern(0, RequestSectors, 2)).AsTask();
            // The request's runs queue up behind the create at the gate (a delay: nothing to observe it by).
            await Task.Delay(200);
            cowS.Release();
            await other.WaitAsync(Watchdog);
            await create.WaitAsync(Watchdog);
            await request.WaitAsync(Watchdog);
            Assert.Equal(Pattern(0, RequestSectors, 2), await ReadAsync(store.Origin, 0, RequestSectors));
            Assert.Equal(Pattern(0, RequestSectors, 1), await ReadAsync(store.GetSnapshot("s"), 0, RequestSectors));
        }
        finally
        {
            await store.CloseAsync().AsTask().WaitAsync(Watchdog);
        }
    }

    // A 1 MiB request's four runs are announced and then held in their reads of the origin, before any queues a copy. A
    // one-chunk write elsewhere must be committed meanwhile: its round holds none of the request's copies, so it does
    // not wait for the request's runs. A pipeline that waited for every announced run in the store would leave that
    // write to the watchdog. Once released, the request still costs one round.
    [Fact]
    public async Task A_round_that_holds_none_of_a_requests_copies_does_not_wait_for_its_runs()
    {
        var (store, origin) = await CreateWithSnapshotAsync(2 * RequestSectors, SnapshotStore.OriginFileName, d => new HeldReadDevice(d));
        try
        {
            var held = origin.HoldReadsBelow(RequestSectors, count: RequestSectors / Chunk / 64);
            var request = WriteAsync(store.Origin, 0, Pattern(0, RequestSectors, 2));
            await held.WaitAsync(Watchdog); // all four runs are in their origin reads
            var before = store.CommitStatistics;
            const long Other = 300; // in the second MiB
            await WriteAsync(store.Origin, Other * Chunk, Pattern(Other * Chunk, Chunk, 3)).WaitAsync(Watchdog);
            var between = store.CommitStatistics;
            Assert.Equal(1, between.Exceptions - before.Exceptions);
            Assert.False(request.IsCompleted);
            origin.Release();
            await request.WaitAsync(Watchdog);
            var after = store.CommitStatistics;
            Assert.Equal(RequestSectors / Chunk, after.Exceptions - between.Exceptions);
            Assert.Equal(1, after.Rounds - between.Rounds);
            Assert.Equal(Pattern(0, RequestSectors, 2), await ReadAsync(store.Origin, 0, RequestSectors));
            var snap = await ReadAsync(store.GetSnapshot("s"), 0, 2 * RequestSectors);
            Assert.Equal(Pattern(0, 2 * RequestSectors, 1), snap);
        }
        finally
        {
            origin.Release();
            await store.CloseAsync().AsTask().WaitAsync(Watchdog);
        }
    }

    /// <summary>Holds asynchronous reads that start below a sector (once armed) until released.</summary>
    private sealed class HeldReadDevice(BlockDevice inner) : ForwardingDevice(inner)
    {
        private TaskCompletionSource? _reached;
        private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private long _below = -1;
        private int _toReach;

        /// <summary>Arms the hold; the task completes once <paramref name="count"/> reads are held.</summary>
        public Task HoldReadsBelow(long sector, int count)
        {
            _reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _toReach = count;
            Volatile.Write(ref _below, sector);
            return _reached.Task;
        }

        public void Release()
        {
            Volatile.Write(ref _below, -1);
            _release.TrySetResult();
        }

        protected override async ValueTask ReadCoreAsync(long sector, Memory<byte> buffer, CancellationToken cancellationToken)
        {
            if (sector < Volatile.Read(ref _below))
            {
                if (Interlocked.Decrement(ref _toReach) == 0) _reached!.SetResult();
                // Why we wait: the test holds the request's runs in their reads, before they queue copies; it releases them.
                await _release.Task.ConfigureAwait(false);
            }
            Inner.Read(sector, buffer.Span);
        }
    }

    /// <summary>Holds the next asynchronous write (once armed) until released.</summary>
    private sealed class HeldWriteDevice(BlockDevice inner) : ForwardingDevice(inner)
    {
        private TaskCompletionSource? _arrived, _release;
        private int _armed;

        /// <summary>Arms the hold; the task completes when the next write reaches it.</summary>
        public Task HoldNextWrite()
        {
            _arrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Volatile.Write(ref _armed, 1);
            return _arrived.Task;
        }

        public void Release() => _release!.SetResult();

        protected override async ValueTask WriteCoreAsync(long sector, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
        {
            if (Interlocked.CompareExchange(ref _armed, 0, 1) == 1)
            {
                _arrived!.SetResult();
                // Why we wait: the test holds this one write to order it against the request; it releases it.
                await _release!.Task.ConfigureAwait(false);
            }
            Inner.Write(sector, data.Span);
        }
    }
}
