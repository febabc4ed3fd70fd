using Journal.Storage;
using Journal.Tests.Storage;
using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

/// <summary>
/// A COW file that cannot grow (no space left, on a file system where its space could not be reserved at create):
/// the origin write that needed the copy fails with no space, and the snapshot loses nothing: it stays valid, reads
/// its point-in-time data, and takes copies again once the file can grow.
/// </summary>
public class GrowthNoSpaceTests
{
    /// <summary>A COW file that cannot grow past <see cref="LimitSectors"/> while <see cref="Full"/>.</summary>
    private sealed class NoSpaceAbove(BlockDevice inner) : ForwardingDevice(inner)
    {
        public volatile bool Full = true;
        public long LimitSectors = 4096;

        protected override void ExtendCore(long sectorCount)
        {
            if (Full && sectorCount > LimitSectors)
                throw new DeviceFullException(Name, SectorCount, $"no space left on device: zero-fill at sector {SectorCount} failed (test)");
            Inner.Extend(sectorCount);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_write_whose_copy_cannot_grow_the_file_fails_and_the_snapshot_keeps_its_data(bool deferWrites)
    {
        const int sectors = 8 * 3072; // 12 MiB
        var (store, cow) = await CreateWithSnapshotAsync(sectors, ".cow", d => new NoSpaceAbove(d), deferWrites: deferWrites);
        await using var _ = store;
        var s = Pattern(0, sectors, 1);
        var origin = (byte[])s.Clone();
        Exception? failure = null;
        int written = 0;
        for (int mib = 0; mib < 12 && failure is null; mib++)
        {
            var data = Pattern(mib * 2048L, 2048, 2);
            try
            {
                await store.Origin.WriteAsync(mib * 2048L, data).AsTask().WaitAsync(Watchdog);
                data.CopyTo(origin, mib * 2048 * 512);
                written++;
            }
            catch (Exception e) { failure = e; }
        }
        var full = Assert.IsType<DeviceFullException>(failure);
        Assert.Contains("no space left on device for a copy-on-write copy; the chunks that needed it were not written", full.Message);
        Assert.InRange(written, 1, 11);
        // The failed request: each chunk is the old data or the new, never a mixture (runs whose copies fit were written).
        var now = await ReadAsync(store.Origin, written * 2048L, 2048);
        var tried = Pattern(written * 2048L, 2048, 2);
        int oldChunks = 0;
        for (int c = 0; c < 256; c++)
        {
            var got = now.AsSpan(c * 4096, 4096);
            bool isOld = got.SequenceEqual(s.AsSpan(written * 2048 * 512 + c * 4096, 4096));
            Assert.True(isOld || got.SequenceEqual(tried.AsSpan(c * 4096, 4096)), $"chunk {c} of the failed request is neither old nor new");
            if (isOld) oldChunks++;
        }
        Assert.True(oldChunks > 0, "every chunk of the failed request was written");
        now.CopyTo(origin, written * 2048 * 512);
        var status = store.GetStatus().Snapshots.Single(x => x.Name == "s");
        Assert.True(status.IsValid, $"snapshot invalidated: {status.InvalidReason}");
        Assert.Equal(s, await ReadAsync(store.GetSnapshot("s"), 0, sectors));

        // Space again: the writes go through, and the snapshot still reads as it was.
        cow.Full = false;
        for (int mib = written; mib < 12; mib++)
        {
            var data = Pattern(mib * 2048L, 2048, 3);
            await store.Origin.WriteAsync(mib * 2048L, data).AsTask().WaitAsync(Watchdog);
            data.CopyTo(origin, mib * 2048 * 512);
        }
        await store.FlushAsync().AsTask().WaitAsync(Watchdog);
        Assert.Equal(origin, await ReadAsync(store.Origin, 0, sectors));
        Assert.Equal(s, await ReadAsync(store.GetSnapshot("s"), 0, sectors));
        Assert.True(store.GetStatus().Snapshots.Single(x => x.Name == "s").IsValid);
    }

    /// <summary>
    /// The same for a write into a writable snapshot whose chunk needs the file to grow: it fails with no space, for a
    /// whole chunk and for part of one, and the snapshot stays valid with its data.
    /// </summary>
    [Fact]
    public async Task A_write_into_a_snapshot_whose_file_cannot_grow_fails_and_the_snapshot_keeps_its_data()
    {
        const int sectors = 8 * 3072; // 12 MiB
        var (store, cow) = await CreateWithSnapshotAsync(sectors, ".cow", d => new NoSpaceAbove(d) { LimitSectors = 2048 });
        await using var _ = store;
        var s = Pattern(0, sectors, 1);
        var snap = store.GetSnapshot("s");
        // Fill what the file holds without growing, chunk by chunk, until a write needs it to grow.
        int chunk = 0;
        Exception? failure = null;
        for (; chunk < 3072 && failure is null; chunk++)
        {
            var data = Pattern(chunk * 8L, 8, 4);
            try
            {
                await snap.WriteAsync(chunk * 8L, data).AsTask().WaitAsync(Watchdog);
                data.CopyTo(s, chunk * 8 * 512);
            }
            catch (Exception e) { failure = e; }
        }
        Assert.Contains("no space left on device", Assert.IsType<DeviceFullException>(failure).Message);
        // Part of a chunk too (its rest is copied from the origin first).
        var part = Pattern(chunk * 8L + 1, 2, 5);
        Assert.Contains("no space left on device", (await Assert.ThrowsAsync<DeviceFullException>(() => snap.WriteAsync(chunk * 8L + 1, part).AsTask().WaitAsync(Watchdog))).Message);
        var status = store.GetStatus().Snapshots.Single(x => x.Name == "s");
        Assert.True(status.IsValid, $"snapshot invalidated: {status.InvalidReason}");
        Assert.Equal(s, await ReadAsync(snap, 0, sectors));

        cow.Full = false;
        await snap.WriteAsync(chunk * 8L + 1, part).AsTask().WaitAsync(Watchdog);
        part.CopyTo(s, (chunk * 8 + 1) * 512);
        Assert.Equal(s, await ReadAsync(snap, 0, sectors));
    }
}
