using Journal.Storage;
using Journal.Tests.Storage;
using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

/// <summary>
/// <see cref="StoreOptions.DeferCopiedWrites"/>: an origin write that needs copies returns once they are written and
/// queued; its origin write follows their commit. The COW file's flushes are held (a slow disk) so that the commit round
/// cannot finish while a test looks: each test would hang on its watchdog, or read the wrong data, if the rule it names
/// were broken.
/// </summary>
public class DeferredWriteTests
{
    /// <summary>An origin whose writes fail (an I/O error) once armed; reads still work; flushes are counted.</summary>
    private sealed class FailingOrigin(BlockDevice inner) : ForwardingDevice(inner)
    {
        public volatile bool FailWrites;
        public int Flushes;

        protected override void FlushCore()
        {
            Interlocked.Increment(ref Flushes);
            Inner.Flush();
        }

        protected override void WriteCore(long sector, ReadOnlySpan<byte> data)
        {
            if (FailWrites) throw new BlockDeviceException(Name, sector, "injected write error");
            Inner.Write(sector, data);
        }
    }

    /// <summary>A COW file whose flushes fail (an I/O error) once armed.</summary>
    private sealed class FailingFlushes(BlockDevice inner) : ForwardingDevice(inner)
    {
        public volatile bool Fail;

        protected override void FlushCore()
        {
            if (Fail) throw new BlockDeviceException(Name, 0, "injected flush error");
            Inner.Flush();
        }
    }

    /// <summary>An origin whose next asynchronous read, once armed, waits until the test lets it go.</summary>
    private sealed class HeldRead(BlockDevice inner) : ForwardingDevice(inner)
    {
        private TaskCompletionSource? _hold;
        public volatile bool Holding;

        public TaskCompletionSource Arm() => _hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        protected override async ValueTask ReadCoreAsync(long sector, Memory<byte> buffer, CancellationToken cancellationToken)
        {
            if (Interlocked.Exchange(ref _hold, null) is { } hold)
            {
                Holding = true;
                // Why we wait: this read stands for a slow one; the test lets it go.
                await hold.Task;
            }
            await Inner.ReadAsync(sector, buffer, cancellationToken);
        }
    }

    /// <summary>A store with a 64-sector origin of pattern 1, 4 KiB chunks, deferred writes and snapshot "s", its devices wrapped by <paramref name="wrap"/>.</summary>
    private static async Task<SnapshotStore> CreatePlainAsync(Func<string, BlockDevice, BlockDevice> wrap)
    {
        var p = new TestDeviceProvider { Wrap = wrap };
        var o = p.Options(new StoreOptions { OriginSectors = 64, ChunkSectors = 8, CowGrowthBytes = 1 << 20, LogBlocks = 2048, DeferCopiedWrites = true });
        var store = await SnapshotStore.CreateAsync(Folder, o).AsTask().WaitAsync(Watchdog);
        await WriteAsync(store.Origin, 0, Pattern(0, 64, 1));
        await store.CreateSnapshotAsync("s").AsTask().WaitAsync(Watchdog);
        return store;
    }

    /// <summary>The store and its held COW flushes; disposing opens the gate (a failed assertion must not leave the close waiting on it).</summary>
    private sealed record Setup(SnapshotStore Store, Cil.GatedDevice Cow, TaskCompletionSource Gate, FailingOrigin Origin) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            Gate.TrySetResult();
            try { await Store.DisposeAsync().AsTask().WaitAsync(Watchdog); }
            catch (IOException) { } // a test that failed the origin's writes
        }
    }

    /// <summary>A store with <paramref name="sectors"/> of pattern 1 and snapshot "s", whose COW flushes wait for the gate once it is closed.</summary>
    private static async Task<Setup> CreateAsync(long sectors = 64, int chunkSectors = 8)
    {
        var p = new TestDeviceProvider();
        Cil.GatedDevice? cow = null;
        FailingOrigin? origin = null;
        p.Wrap = (path, d) =>
            path.EndsWith(".cow", StringComparison.Ordinal) ? cow = new Cil.GatedDevice(d)
            : path.EndsWith(SnapshotStore.OriginFileName, StringComparison.Ordinal) ? origin = new FailingOrigin(d)
            : d;
        var o = p.Options(new StoreOptions
        {
            OriginSectors = sectors, ChunkSectors = chunkSectors, CowGrowthBytes = 1 << 20, LogBlocks = 2048, DeferCopiedWrites = true,
        });
        var store = await SnapshotStore.CreateAsync(Folder, o).AsTask().WaitAsync(Watchdog);
        await WriteAsync(store.Origin, 0, Pattern(0, (int)sectors, 1));
        await store.CreateSnapshotAsync("s").AsTask().WaitAsync(Watchdog);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        cow!.FlushGate = gate.Task;
        return new Setup(store, cow, gate, origin!);
    }

    /// <summary>A store as <see cref="CreateAsync"/> makes it, after a deferred write of chunk 0 (pattern 2) whose round is held.</summary>
    private static async Task<Setup> DeferredWriteHeldAsync()
    {
        var setup = await CreateAsync();
        await WriteAsync(setup.Store.Origin, 0, Pattern(0, 8, 2));
        await RoundHeldAsync(setup.Cow);
        return setup;
    }

    /// <summary>Waits until the commit pipeline is held in the COW file's flush (a round is in step 1).</summary>
    private static async Task RoundHeldAsync(Cil.GatedDevice cow)
    {
        var deadline = DateTime.UtcNow + Watchdog;
        while (Volatile.Read(ref cow.FlushesWaiting) == 0)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("no commit round reached the COW flush");
            await Task.Delay(1);
        }
    }

    /// <summary>
    /// <paramref name="operation"/> must still be waiting while the round is held (<paramref name="why"/> otherwise);
    /// then the round is let go and it must finish.
    /// </summary>
    private static async Task HeldUntilTheRoundAsync(Task operation, TaskCompletionSource gate, string why)
    {
        await Task.Delay(20);
        Assert.False(operation.IsCompleted, why);
        gate.TrySetResult();
        await operation.WaitAsync(Watchdog);
    }

    /// <summary>
    /// A map of a snapshot against the origin is a moment, like a read: a deferred write that has returned is in it while
    /// its copy's round is still held (the chunk is not yet in the snapshot's table), and stays in it after the round.
    /// </summary>
    [Fact]
    public async Task A_deferred_write_that_returned_is_in_the_origin_map_before_its_round_commits()
    {
        await using var setup = await DeferredWriteHeldAsync();
        var (store, _, gate, _) = setup;
        var held = await store.GetChangedExtentsAsync("s").AsTask().WaitAsync(Watchdog);
        Assert.Equal([new global::Snapshot.Changes.ChangedExtent(0, 8)], held.Extents);
        var again = await store.GetChangedExtentsAsync("s").AsTask().WaitAsync(Watchdog); // the cached map, the copy laid over it
        Assert.Equal(held.Extents, again.Extents);
        gate.TrySetResult();
        await store.FlushAsync().AsTask().WaitAsync(Watchdog);
        var after = await store.GetChangedExtentsAsync("s").AsTask().WaitAsync(Watchdog);
        Assert.Equal([new global::Snapshot.Changes.ChangedExtent(0, 8)], after.Extents);
        Assert.Equal(1, store.GetStatus().Snapshots.Single(x => x.Name == "s").Exceptions);
    }

    [Fact]
    public async Task A_write_that_needs_a_copy_returns_before_its_round_commits_and_a_read_of_it_waits_for_the_origin_write()
    {
        await using var setup = await CreateAsync();
        var (store, cow, gate, _) = setup;
        // Returns while the round that commits its copy is held in the COW flush: the write was deferred.
        await WriteAsync(store.Origin, 0, Pattern(0, 8, 2));
        await RoundHeldAsync(cow);
        var originRead = ReadAsync(store.Origin, 0, 8);
        var snapshotRead = ReadAsync(store.GetSnapshot("s"), 0, 8);
        var flush = store.FlushAsync().AsTask();
        // A chunk with no deferred write reads at once.
        Assert.Equal(Pattern(8, 8, 1), await ReadAsync(store.Origin, 8, 8));
        await Task.Delay(20);
        Assert.False(originRead.IsCompleted, "an origin read returned before the acknowledged write reached the origin");
        Assert.False(snapshotRead.IsCompleted, "a snapshot read of a chunk whose copy is not committed returned");
        Assert.False(flush.IsCompleted, "a flush returned before an acknowledged write reached the origin");
        gate.TrySetResult();
        Assert.Equal(Pattern(0, 8, 2), await originRead);
        Assert.Equal(Pattern(0, 8, 1), await snapshotRead);
        await flush.WaitAsync(Watchdog);
        Assert.Equal(1, store.GetStatus().DeferredWrites);
    }

    [Fact]
    public async Task A_later_write_to_a_chunk_with_a_deferred_write_lands_after_it()
    {
        await using var setup = await DeferredWriteHeldAsync();
        var (store, cow, gate, _) = setup;
        // Sector 2 of the same chunk: no copy needed any more, but it must not reach the origin before the whole chunk
        // of the first write does (which would then overwrite it).
        var later = WriteAsync(store.Origin, 2, Pattern(2, 1, 3));
        await Task.Delay(20);
        Assert.False(later.IsCompleted, "a write overlapping a deferred one went ahead of it");
        gate.TrySetResult();
        await later;
        var expect = Pattern(0, 8, 2);
        Pattern(2, 1, 3).CopyTo(expect, 2 * 512);
        Assert.Equal(expect, await ReadAsync(store.Origin, 0, 8));
        Assert.Equal(Pattern(0, 8, 1), await ReadAsync(store.GetSnapshot("s"), 0, 8));
    }

    [Fact]
    public async Task A_later_write_waits_for_a_deferred_write_whose_copy_is_committed_but_whose_origin_write_is_not_done()
    {
        // The origin's writes are held instead of the COW flushes: the deferred write's copy commits (the chunk has a
        // complete exception and needs no copy any more), and its origin write waits at the device.
        var p = new TestDeviceProvider();
        GatedDevice? origin = null;
        p.Wrap = (path, d) => path.EndsWith(SnapshotStore.OriginFileName, StringComparison.Ordinal) ? origin = new GatedDevice(d) : d;
        var o = p.Options(new StoreOptions { OriginSectors = 64, ChunkSectors = 8, CowGrowthBytes = 1 << 20, LogBlocks = 2048, DeferCopiedWrites = true });
        var store = await SnapshotStore.CreateAsync(Folder, o).AsTask().WaitAsync(Watchdog);
        try
        {
            await WriteAsync(store.Origin, 0, Pattern(0, 64, 1));
            await store.CreateSnapshotAsync("s").AsTask().WaitAsync(Watchdog);
            origin!.Close();
            await WriteAsync(store.Origin, 0, Pattern(0, 8, 2));
            while (origin.HeldWrites == 0) await Task.Delay(1).WaitAsync(Watchdog);
            var later = WriteAsync(store.Origin, 2, Pattern(2, 1, 3));
            var read = ReadAsync(store.Origin, 0, 8);
            await Task.Delay(20);
            Assert.Equal(1, origin.HeldWrites); // the later write was not issued ahead of the deferred one
            Assert.False(later.IsCompleted);
            Assert.False(read.IsCompleted, "an origin read returned before the acknowledged write reached the origin");
            origin.Open();
            await later;
            var expect = Pattern(0, 8, 2);
            Pattern(2, 1, 3).CopyTo(expect, 2 * 512);
            // The read was issued after the later write, which had not completed: it may return either, but never
            // the data from before the deferred write.
            var first = await read;
            Assert.True(first.AsSpan().SequenceEqual(Pattern(0, 8, 2)) || first.AsSpan().SequenceEqual(expect),
                "the read issued while the deferred write was held returned neither it nor it with the later write");
            Assert.Equal(expect, await ReadAsync(store.Origin, 0, 8));
        }
        finally
        {
            origin?.Open();
            await store.DisposeAsync().AsTask().WaitAsync(Watchdog);
        }
    }

    [Fact]
    public async Task Deleting_a_snapshot_waits_for_a_deferred_write_that_copied_to_it()
    {
        await using var setup = await DeferredWriteHeldAsync();
        var (store, cow, gate, _) = setup;
        // The deferred write holds the I/O gate shared until its origin write is done, as a write without the option
        // does until it returns: a delete (which quiesces I/O) waits for it.
        await HeldUntilTheRoundAsync(store.DeleteSnapshotAsync("s").AsTask(), gate, "a snapshot was deleted under a copy to it that is not committed");
        Assert.Equal(Pattern(0, 8, 2), await ReadAsync(store.Origin, 0, 8));
    }

    [Fact]
    public async Task A_FUA_write_is_not_deferred()
    {
        await using var setup = await CreateAsync();
        var (store, cow, gate, _) = setup;
        var fua = store.Origin.WriteAsync(0, Pattern(0, 8, 2), WriteFlags.Fua).AsTask();
        await RoundHeldAsync(cow);
        await HeldUntilTheRoundAsync(fua, gate, "a FUA write returned before its copy was committed");
        Assert.Equal(0, store.GetStatus().DeferredWrites);
    }

    [Fact]
    public async Task A_snapshot_created_after_a_deferred_write_returned_holds_its_data()
    {
        await using var setup = await DeferredWriteHeldAsync();
        var (store, cow, gate, _) = setup;
        // The create waits for the deferred write (it holds the I/O gate shared until its origin write is done).
        await HeldUntilTheRoundAsync(store.CreateSnapshotAsync("t").AsTask(), gate, "a snapshot was created while an acknowledged write had not reached the origin");
        Assert.Equal(Pattern(0, 8, 2), await ReadAsync(store.GetSnapshot("t"), 0, 8));
        Assert.Equal(Pattern(0, 8, 1), await ReadAsync(store.GetSnapshot("s"), 0, 8));
    }

    [Fact]
    public async Task A_deferred_write_that_fails_after_it_returned_fails_every_later_flush_and_reads_of_its_chunk()
    {
        await using var setup = await CreateAsync();
        var (store, cow, gate, origin) = setup;
        await WriteAsync(store.Origin, 0, Pattern(0, 8, 2));
        await RoundHeldAsync(cow);
        origin.FailWrites = true;
        gate.TrySetResult();
        var e1 = await Assert.ThrowsAsync<IOException>(() => store.FlushAsync().AsTask().WaitAsync(Watchdog));
        Assert.Contains("acknowledged before its copies were committed did not reach the origin", e1.Message);
        Assert.Contains("injected write error", e1.Message);
        origin.FailWrites = false;
        // A read of the chunk must not return the older data as if the acknowledged write had never happened.
        var lost = await Assert.ThrowsAsync<IOException>(() => ReadAsync(store.Origin, 0, 8));
        Assert.Contains("chunk 0 does not hold the data of a write acknowledged", lost.Message);
        Assert.Equal(Pattern(8, 8, 1), await ReadAsync(store.Origin, 8, 8));
        // Other writes are still made durable by a flush, which then reports the lost write again (sticky).
        await WriteAsync(store.Origin, 16, Pattern(16, 8, 3));
        int flushes = origin.Flushes;
        await Assert.ThrowsAsync<IOException>(() => store.FlushAsync().AsTask().WaitAsync(Watchdog));
        Assert.True(origin.Flushes > flushes, "the origin was not flushed because of an earlier lost write");
        // The snapshot kept its data (its exception was committed).
        Assert.Equal(Pattern(0, 8, 1), await ReadAsync(store.GetSnapshot("s"), 0, 8));
        flushes = origin.Flushes;
        await Assert.ThrowsAsync<IOException>(() => store.CloseAsync().AsTask().WaitAsync(Watchdog));
        Assert.True(origin.Flushes > flushes, "the close did not flush the origin");
    }

    [Fact]
    public async Task A_deferred_write_whose_round_fails_invalidates_the_snapshot_and_still_reaches_the_origin()
    {
        // The round's COW flush fails after the write was acknowledged: the copy is not durable, so the snapshot is
        // invalidated (with the reason recorded), and the write, which no valid snapshot needs held back any more, goes
        // on to the origin; the flush after it reports nothing lost.
        FailingFlushes? cow = null;
        var store = await CreatePlainAsync((path, d) => path.EndsWith(".cow", StringComparison.Ordinal) ? cow = new FailingFlushes(d) : d);
        try
        {
            cow!.Fail = true;
            await WriteAsync(store.Origin, 0, Pattern(0, 8, 2));
            Assert.Equal(1, store.GetStatus().DeferredWrites);
            // A flush before the invalidation would flush the snapshot's COW file too, and fail with it.
            var deadline = DateTime.UtcNow + Watchdog;
            while (store.GetStatus().Snapshots.Single().IsValid)
            {
                if (DateTime.UtcNow > deadline) throw new TimeoutException("the snapshot whose copy did not become durable is still valid");
                await Task.Delay(1);
            }
            Assert.Equal("I/O error on the COW file", store.GetStatus().Snapshots.Single().InvalidReason);
            await store.FlushAsync().AsTask().WaitAsync(Watchdog);
            Assert.Equal(Pattern(0, 8, 2), await ReadAsync(store.Origin, 0, 8));
            await WriteAsync(store.Origin, 8, Pattern(8, 8, 3));
            Assert.Equal(Pattern(8, 8, 3), await ReadAsync(store.Origin, 8, 8));
        }
        finally
        {
            cow!.Fail = false;
            await store.DisposeAsync().AsTask().WaitAsync(Watchdog);
        }
    }

    [Fact]
    public async Task A_deferred_write_waits_for_a_snapshot_read_of_the_old_data_before_it_writes_the_origin()
    {
        // A snapshot read of chunk 0 reads the origin (no copy yet) and is held at the device; a deferred write of the
        // chunk then copies it and is acknowledged. Its round commits, but its origin write must wait for the read:
        // written at once, the read would return the new data as the snapshot's.
        HeldRead? origin = null;
        var store = await CreatePlainAsync((path, d) => path.EndsWith(SnapshotStore.OriginFileName, StringComparison.Ordinal) ? origin = new HeldRead(d) : d);
        try
        {
            var hold = origin!.Arm();
            var snapshotRead = ReadAsync(store.GetSnapshot("s"), 0, 8);
            while (!origin.Holding) await Task.Delay(1).WaitAsync(Watchdog);
            long rounds = store.CommitStatistics.Rounds;
            await WriteAsync(store.Origin, 0, Pattern(0, 8, 2));
            Assert.Equal(1, store.GetStatus().DeferredWrites);
            var deadline = DateTime.UtcNow + Watchdog;
            while (store.CommitStatistics.Rounds == rounds)
            {
                if (DateTime.UtcNow > deadline) throw new TimeoutException("the deferred write's round did not commit");
                await Task.Delay(1);
            }
            await Task.Delay(20); // time for an origin write that broke the rule to land
            Assert.False(snapshotRead.IsCompleted);
            hold.TrySetResult();
            Assert.Equal(Pattern(0, 8, 1), await snapshotRead.WaitAsync(Watchdog));
            await store.FlushAsync().AsTask().WaitAsync(Watchdog);
            Assert.Equal(Pattern(0, 8, 2), await ReadAsync(store.Origin, 0, 8));
            Assert.Equal(Pattern(0, 8, 1), await ReadAsync(store.GetSnapshot("s"), 0, 8));
        }
        finally
        {
            await store.DisposeAsync().AsTask().WaitAsync(Watchdog);
        }
    }

    [Fact]
    public async Task An_empty_read_does_not_wait_for_deferred_writes()
    {
        await using var setup = await CreateAsync();
        var (store, cow, _, _) = setup;
        await WriteAsync(store.Origin, 56, Pattern(56, 8, 2));
        await RoundHeldAsync(cow);
        await store.Origin.ReadAsync(0, Memory<byte>.Empty).AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task Deferred_writes_hold_at_most_their_bound_of_data()
    {
        // 1 MiB chunks: each first write of a chunk is a deferred write of 1 MiB; with the round held, the bound lets
        // MaxDeferredBytes / 1 MiB of them return, and the next one waits for its commit like a write without the option.
        int chunkSectors = 2048;
        int bound = global::Snapshot.Io.DataPath.MaxDeferredBytes >> 20;
        await using var setup = await CreateAsync(sectors: (long)chunkSectors * (bound + 2), chunkSectors: chunkSectors);
        var (store, cow, gate, _) = setup;
        for (int c = 0; c < bound; c++) await WriteAsync(store.Origin, (long)c * chunkSectors, Pattern((long)c * chunkSectors, chunkSectors, 2));
        var over = WriteAsync(store.Origin, (long)bound * chunkSectors, Pattern((long)bound * chunkSectors, chunkSectors, 2));
        await RoundHeldAsync(cow);
        await Task.Delay(20);
        Assert.False(over.IsCompleted, "a write past the bound of deferred data was deferred");
        Assert.Equal((long)global::Snapshot.Io.DataPath.MaxDeferredBytes, store.GetStatus().DeferredBytesHeld);
        gate.TrySetResult();
        await over;
        Assert.Equal(bound, store.GetStatus().DeferredWrites);
        await store.FlushAsync().AsTask().WaitAsync(Watchdog);
        var status = store.GetStatus();
        Assert.Equal(0, status.DeferredBytesHeld);
        Assert.Equal((long)global::Snapshot.Io.DataPath.MaxDeferredBytes, status.DeferredBytesKept); // every buffer back in the pool
        for (int c = 0; c <= bound; c++)
            Assert.Equal(Pattern((long)c * chunkSectors, chunkSectors, 2), await ReadAsync(store.Origin, (long)c * chunkSectors, chunkSectors));
    }
}
