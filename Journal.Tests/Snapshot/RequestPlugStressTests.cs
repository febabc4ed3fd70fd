using Journal.Storage;
using Journal.Tests.Storage;
using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

/// <summary>
/// The request plugs (<c>RequestPlug</c>, <c>CommitPipeline.Expect</c>) under a random mix: multi-run origin writes
/// (some cancelled), small writes and snapshot creates at once, a close while multi-run writes are in flight, and
/// origin reads that fail in the middle of runs. Every announced run must arrive exactly once: one that never arrived
/// leaves the pump waiting (every wait here is under the watchdog, the close included), one that arrived twice leaves
/// the count of runs waited for wrong. And whatever the mix did, the first snapshot still reads its point in time.
/// </summary>
public sealed class RequestPlugStressTests
{
    private const long OriginSectors = 16384; // 8 MiB of 4 KiB chunks: a run of 256 KiB is 64 chunks

    [Theory]
    [InlineData(1, false, StoreOptions.DefaultMaxInFlightCopies)]
    [InlineData(2, true, StoreOptions.DefaultMaxInFlightCopies)]
    [InlineData(3, false, 64)]
    [InlineData(4, true, 64)]
    public async Task A_random_mix_of_requests_small_writes_and_creates_leaves_no_run_waited_for(int seed, bool deferWrites, int maxInFlight)
    {
        var store = await CreateMemoryStoreAsync(new TestDeviceProvider(), OriginSectors, 8, maxInFlight: maxInFlight, deferWrites: deferWrites);
        try
        {
            await WriteAsync(store.Origin, 0, Pattern(0, (int)OriginSectors, 1));
            await store.CreateSnapshotAsync("s0").AsTask().WaitAsync(Watchdog);
            var rnd = new Random(seed);
            var tasks = new List<Task>();
            int snapshots = 1;
            for (int i = 0; i < 120; i++)
            {
                int kind = rnd.Next(10);
                if (kind < 5)
                {
                    // A request of 512 KiB to 2 MiB: cut into 2 to 9 runs. One in four is cancelled after 0-2 ms.
                    int sectors = 1024 + rnd.Next(3072);
                    long at = rnd.Next((int)(OriginSectors - sectors));
                    var cts = rnd.Next(4) == 0 ? new CancellationTokenSource(TimeSpan.FromMilliseconds(rnd.Next(3))) : null;
                    var data = Pattern(at, sectors, 2 + i);
                    tasks.Add(Task.Run(async () =>
                    {
                        try { await store.Origin.WriteAsync(at, data, cts?.Token ?? default); }
                        catch (OperationCanceledException) { }
                    }));
                }
                else if (kind < 9)
                {
                    int sectors = 1 + rnd.Next(16);
                    long at = rnd.Next((int)(OriginSectors - sectors));
                    var data = Pattern(at, sectors, 2 + i);
                    tasks.Add(Task.Run(() => store.Origin.WriteAsync(at, data).AsTask()));
                }
                else
                {
                    string name = "s" + snapshots++;
                    tasks.Add(Task.Run(() => store.CreateSnapshotAsync(name).AsTask()));
                }
                if (rnd.Next(8) == 0) await Task.Delay(1);
            }
            await Task.WhenAll(tasks).WaitAsync(Watchdog);
            await store.FlushAsync().AsTask().WaitAsync(Watchdog);
            Assert.Equal(0, store.Pipeline.RunsWaitedFor);
            // Under a copy bound of one run, runs mostly wait for room, and arrive before they wait: rounds may then never
            // wait for runs (in about one run in eight here). With the default bound they do, every time.
            if (maxInFlight == StoreOptions.DefaultMaxInFlightCopies)
                Assert.True(store.CommitStatistics.RunWaits > 0, "no round waited for runs: the mix did not exercise the plugs");
            Assert.Equal(Pattern(0, (int)OriginSectors, 1), await ReadAsync(store.GetSnapshot("s0"), 0, (int)OriginSectors));
        }
        finally
        {
            await store.CloseAsync().AsTask().WaitAsync(Watchdog);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_close_while_multi_run_writes_are_in_flight_completes(bool deferWrites)
    {
        for (int iteration = 0; iteration < 5; iteration++)
        {
            var store = await CreateMemoryStoreAsync(new TestDeviceProvider(), OriginSectors, 8, deferWrites: deferWrites);
            await WriteAsync(store.Origin, 0, Pattern(0, (int)OriginSectors, 1));
            await store.CreateSnapshotAsync("s0").AsTask().WaitAsync(Watchdog);
            var rnd = new Random(iteration);
            var tasks = new List<Task>();
            for (int i = 0; i < 12; i++)
            {
                int sectors = 1024 + rnd.Next(3072);
                long at = rnd.Next((int)(OriginSectors - sectors));
                var data = Pattern(at, sectors, 2 + i);
                // A write the close overtakes fails with the store closed; that is the point, not an error here. Any
                // other failure is.
                tasks.Add(Task.Run(async () =>
                {
                    try { await store.Origin.WriteAsync(at, data); }
                    catch (Exception e) when (e is JournalException or ObjectDisposedException or OperationCanceledException) { }
                }));
            }
            await Task.Delay(rnd.Next(3));
            await store.CloseAsync().AsTask().WaitAsync(Watchdog);
            await Task.WhenAll(tasks).WaitAsync(Watchdog);
            Assert.Equal(0, store.Pipeline.RunsWaitedFor);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Origin_reads_failing_in_the_middle_of_runs_leave_no_run_waited_for(bool deferWrites)
    {
        var (store, origin) = await CreateWithSnapshotAsync((int)OriginSectors, SnapshotStore.OriginFileName, d => new FlakyReadDevice(d), deferWrites: deferWrites);
        try
        {
            origin.Armed = true;
            var rnd = new Random(7);
            var tasks = new List<Task>();
            int failed = 0;
            for (int i = 0; i < 40; i++)
            {
                int sectors = 1024 + rnd.Next(3072);
                long at = rnd.Next((int)(OriginSectors - sectors));
                var data = Pattern(at, sectors, 2 + i);
                tasks.Add(Task.Run(async () =>
                {
                    try { await store.Origin.WriteAsync(at, data); }
                    catch (Exception e) when (e is IOException or BlockDeviceException) { Interlocked.Increment(ref failed); }
                }));
            }
            await Task.WhenAll(tasks).WaitAsync(Watchdog);
            Assert.True(failed > 0, "no write saw a failed read");
            origin.Armed = false;
            // The store still works: a create (it waits for the gate and a round) and a write of the whole origin.
            await store.CreateSnapshotAsync("s1").AsTask().WaitAsync(Watchdog);
            await WriteAsync(store.Origin, 0, Pattern(0, (int)OriginSectors, 99)).WaitAsync(Watchdog);
            Assert.Equal(0, store.Pipeline.RunsWaitedFor);
            Assert.Equal(Pattern(0, (int)OriginSectors, 99), await ReadAsync(store.Origin, 0, (int)OriginSectors));
        }
        finally
        {
            await store.CloseAsync().AsTask().WaitAsync(Watchdog);
        }
    }

    /// <summary>Once armed, fails every third asynchronous read (after a yield, so that runs are under way).</summary>
    private sealed class FlakyReadDevice(BlockDevice inner) : ForwardingDevice(inner)
    {
        public volatile bool Armed;
        private int _reads;

        protected override async ValueTask ReadCoreAsync(long sector, Memory<byte> buffer, CancellationToken cancellationToken)
        {
            await Task.Yield();
            if (Armed && Interlocked.Increment(ref _reads) % 3 == 0) throw new IOException("injected read failure");
            Inner.Read(sector, buffer.Span);
        }
    }
}
