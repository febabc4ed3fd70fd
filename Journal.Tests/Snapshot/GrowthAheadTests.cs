using Journal.Storage;
using Journal.Tests.Storage;
using Journal.Testing;
using Journal.Tests.Cil;
using Journal.Tests.Diagnostics;
using Snapshot;
using Snapshot.Commit;
using Snapshot.Diagnostics;
using Snapshot.Exceptions;
using Snapshot.Format;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

/// <summary>
/// A COW file grows ahead of its copies (<see cref="ExceptionStore.EnsureCapacityAsync"/>): a chunk needed within one
/// growth step of the file's end starts a background growth of the next step, the writer does not wait for it, a writer
/// that outruns it waits for it, a failed growth ahead reaches only the writer that needs the space, and closing the
/// store waits for a growth in progress.
/// </summary>
public class GrowthAheadTests
{
    private static readonly TimeSpan Watchdog = TimeSpan.FromSeconds(30);

    // 4 KiB chunks, growth in steps of 256 sectors (32 chunks), 1,024 chunks configured.
    private static readonly CowLayout Layout = new(8);
    private const long Step = 256, Total = 8 * 1024;

    /// <summary>Holds every growth inside Extend until released (counting the attempts); counts flushes; can refuse growths.</summary>
    private sealed class HeldGrowth(BlockDevice inner) : ForwardingDevice(inner)
    {
        public readonly ManualResetEventSlim Release = new(true);
        public readonly SemaphoreSlim Entered = new(0);
        public volatile bool Full;
        public int Flushes;
        public volatile bool ExtendDone, DisposedAfterExtend;

        protected override void ExtendCore(long sectorCount)
        {
            Entered.Release();
            Assert.True(Release.Wait(Watchdog), "a growth was never released");
            if (Full) throw new DeviceFullException(Name, SectorCount, "no space left on device (test)");
            Inner.Extend(sectorCount);
            ExtendDone = true;
        }

        protected override void FlushCore()
        {
            Interlocked.Increment(ref Flushes);
            base.FlushCore();
        }

        protected override void Dispose(bool disposing)
        {
            DisposedAfterExtend = ExtendDone && Release.IsSet;
            base.Dispose(disposing);
        }
    }

    private static (PersistentExceptionStore Store, HeldGrowth Cow) NewStore()
    {
        HeldGrowth? cow = null;
        var p = new TestDeviceProvider { Wrap = (path, d) => cow = new HeldGrowth(d) };
        var store = PersistentExceptionStore.Create(p, "/mem/g.cow", Layout, Total, Step, 1, 99, new DirectAreaCommitter());
        return (store, cow!);
    }

    private static ulong LastChunkOf(long sectors) => (ulong)(sectors / Layout.ChunkSectors) - 1;

    [Fact]
    public async Task A_chunk_near_the_end_grows_the_file_ahead_and_the_writer_does_not_wait_for_it()
    {
        var (store, cow) = NewStore();
        using var _ = store;
        long size = cow.SectorCount;
        int flushes = Volatile.Read(ref cow.Flushes);
        cow.Release.Reset();
        // The file's last chunk: within one step of the end. The call returns at once, the growth held meanwhile.
        var ensure = store.EnsureCapacityAsync(LastChunkOf(size)).AsTask();
        Assert.True(await cow.Entered.WaitAsync(Watchdog), "no growth ahead started");
        Assert.True(ensure.IsCompletedSuccessfully, "the writer waited for a growth it did not need");
        cow.Release.Set();
        await CommitPathTests.WaitUntil(() => store.GrowthsAhead == 1, "the growth ahead never finished");
        Assert.Equal(size + Step, cow.SectorCount);
        // Persistent: the grower flushed the file (its new size and blocks durable before any copy lands there).
        await CommitPathTests.WaitUntil(() => Volatile.Read(ref cow.Flushes) > flushes, "the grower did not flush the file");
    }

    [Fact]
    public async Task A_file_one_step_ahead_of_its_copies_grows_no_further()
    {
        var (store, cow) = NewStore();
        using var _ = store;
        long size = cow.SectorCount;
        // A new file is one step long, so its first copy starts a growth ahead; then the file is a step ahead.
        await store.EnsureCapacityAsync(2);
        await CommitPathTests.WaitUntil(() => store.GrowthsAhead == 1, "the first copy started no growth ahead");
        Assert.Equal(size + Step, cow.SectorCount);
        for (ulong c = 3; c <= LastChunkOf(size); c++) await store.EnsureCapacityAsync(c);
        await Task.Delay(50);
        Assert.Equal(1, store.GrowthsAhead);
        Assert.Equal(size + Step, cow.SectorCount);
    }

    [Fact]
    public async Task A_writer_that_outruns_the_grower_waits_for_it_and_then_finds_its_chunk()
    {
        var (store, cow) = NewStore();
        using var _ = store;
        long size = cow.SectorCount;
        cow.Release.Reset();
        await store.EnsureCapacityAsync(LastChunkOf(size));
        Assert.True(await cow.Entered.WaitAsync(Watchdog));
        // Past the end: this writer must wait for the growth in progress (it holds the grow lock).
        var past = store.EnsureCapacityAsync(LastChunkOf(size) + 1).AsTask();
        await Task.Delay(50);
        Assert.False(past.IsCompleted, "a writer went on before its chunk existed");
        cow.Release.Set();
        await past.WaitAsync(Watchdog);
        Assert.True(cow.SectorCount >= size + Layout.ChunkSectors);
    }

    [Fact]
    public async Task A_failed_growth_ahead_is_dropped_and_the_writer_that_needs_the_space_gets_the_error()
    {
        var (store, cow) = NewStore();
        using var _ = store;
        var reported = new List<Exception>();
        store.GrowthAheadFailed = e => { lock (reported) reported.Add(e); };
        long size = cow.SectorCount;
        cow.Full = true;
        await store.EnsureCapacityAsync(LastChunkOf(size));
        await CommitPathTests.WaitUntil(() => store.FailedGrowthsAhead == 1, "the failed growth ahead was not counted");
        Assert.Equal(size, cow.SectorCount);
        // No retry (each would write zeros until the disk refused) and one report, however many copies come near the end.
        for (int i = 0; i < 20; i++) await store.EnsureCapacityAsync(LastChunkOf(size) - (ulong)(i % 4));
        await Task.Delay(50);
        Assert.Equal(1, store.FailedGrowthsAhead);
        Assert.Equal(1, cow.Entered.CurrentCount); // one attempt to grow
        lock (reported) Assert.IsType<DeviceFullException>(Assert.Single(reported));
        var e = await Assert.ThrowsAsync<DeviceFullException>(() => store.EnsureCapacityAsync(LastChunkOf(size) + 1).AsTask());
        Assert.Contains("no space left", e.Message);
        // Space again: the next writer grows the file, and growing ahead resumes.
        cow.Full = false;
        await store.EnsureCapacityAsync(LastChunkOf(size) + 1);
        Assert.True(cow.SectorCount > size);
        await CommitPathTests.WaitUntil(() => store.GrowthsAhead == 1, "growing ahead did not resume after a writer's growth succeeded");
    }

    [Fact]
    public async Task Closing_waits_for_a_growth_ahead_in_progress()
    {
        var (store, cow) = NewStore();
        cow.Release.Reset();
        await store.EnsureCapacityAsync(LastChunkOf(cow.SectorCount));
        Assert.True(await cow.Entered.WaitAsync(Watchdog));
        var dispose = Task.Run(store.Dispose);
        await Task.Delay(50);
        Assert.False(dispose.IsCompleted, "the store closed its COW file under a growth in progress");
        cow.Release.Set();
        await dispose.WaitAsync(Watchdog);
        Assert.True(cow.DisposedAfterExtend, "the device was disposed before the growth finished");
    }

    [Fact]
    public async Task No_growth_ahead_past_the_configured_size()
    {
        var (store, cow) = NewStore();
        using var _ = store;
        // Walk the file to its configured size, chunk by chunk, as copies would.
        for (ulong c = 2; c < (ulong)(Total / Layout.ChunkSectors); c++) await store.EnsureCapacityAsync(c);
        await CommitPathTests.WaitUntil(() => cow.SectorCount == Total);
        await Task.Delay(50);
        Assert.Equal(Total, cow.SectorCount);
        Assert.Equal(0, store.FailedGrowthsAhead);
    }

    [Fact]
    public async Task A_store_logs_a_failed_growth_ahead_once_and_its_writes_go_on()
    {
        // Every COW file may not grow past its size at creation (a full disk for it): the first copy starts a growth
        // ahead (a new file is one growth step long; the COW size, a copy of the 4 MiB origin, is larger), which fails. The store logs it once, naming the snapshot; the writes that fit go on.
        var log = new ListLogger();
        var p = new TestDeviceProvider
        {
            Wrap = (path, d) => path.EndsWith(SnapshotStore.CowExtension, StringComparison.Ordinal)
                ? new FaultInjectingBlockDevice(d) { SpaceLimit = d.SectorCount }
                : d,
        };
        var store = await SnapshotStore.CreateAsync(Folder, p.Options(new StoreOptions { OriginSectors = 8 * 1024, LogBlocks = 2048, LoggerFactory = log }));
        await store.CreateSnapshotAsync("s");
        for (int c = 0; c < 32; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 1));
        await CommitPathTests.WaitUntil(() => log.WithId(SnapshotEventIds.GrowthAheadFailed).Any(), "no GrowthAheadFailed logged");
        for (int c = 32; c < 64; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 1));
        var entry = Assert.Single(log.WithId(SnapshotEventIds.GrowthAheadFailed));
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Warning, entry.Level);
        Assert.Contains("snapshot 's'", entry.Message);
        Assert.Contains("no space left on device", entry.Message);
        Assert.DoesNotContain('\n', entry.Message);
        var snap = store.GetSnapshot("s");
        for (int c = 0; c < 64; c += 9) Assert.Equal(new byte[4096], await ReadAsync(snap, c * 8L, 8));
        await store.CloseAsync();
    }
}
