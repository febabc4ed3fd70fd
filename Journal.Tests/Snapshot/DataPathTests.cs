using System.Buffers.Binary;
using Journal.Storage;
using Journal.Testing;
using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

public class DataPathTests
{
    /// <summary>
    /// An origin whose reads complete synchronously (as a file read from the page cache does) and wait, blocking the
    /// calling thread, until two reads have been in progress at once or five seconds have passed.
    /// </summary>
    private sealed class RendezvousOrigin(Journal.Storage.BlockDevice inner) : Journal.Tests.Storage.ForwardingDevice(inner)
    {
        private int _inProgress, _peak;
        public volatile bool Armed;
        public int Peak => Volatile.Read(ref _peak);

        protected override void ReadCore(long sector, Span<byte> buffer)
        {
            if (Armed)
            {
                int n = Interlocked.Increment(ref _inProgress);
                int p;
                while ((p = Volatile.Read(ref _peak)) < n && Interlocked.CompareExchange(ref _peak, n, p) != p) { }
                SpinWait.SpinUntil(() => Volatile.Read(ref _peak) >= 2, TimeSpan.FromSeconds(20)); // once two overlapped, nobody waits
                Inner.Read(sector, buffer);
                Interlocked.Decrement(ref _inProgress);
                return;
            }
            Inner.Read(sector, buffer);
        }
    }

    /// <summary>
    /// A request larger than a run is cut into runs copied in parallel: even when the origin completes its reads on the
    /// calling thread, a second run's copy reads the origin while the first run's read is in progress (run inline, the
    /// first read would block until its twenty seconds were up, and no second one would ever overlap it; the wait is long so
    /// that a busy thread pool has time to start the second run).
    /// </summary>
    [Fact]
    public async Task The_runs_of_a_large_origin_write_are_copied_in_parallel()
    {
        var p = new TestDeviceProvider();
        RendezvousOrigin? origin = null;
        p.Wrap = (path, d) => path.EndsWith(SnapshotStore.OriginFileName, StringComparison.Ordinal) ? origin = new RendezvousOrigin(d) : d;
        await using var store = await CreateMemoryStoreAsync(p, 8 * 1024);
        await store.CreateSnapshotAsync("s");
        int runBytes = global::Snapshot.Io.DataPath.ParallelRunBytes;
        var data = Pattern(0, 4 * runBytes / 512, 3);
        origin!.Armed = true;
        await WriteAsync(store.Origin, 0, data);
        origin.Armed = false;
        Assert.True(origin.Peak >= 2, $"the runs' origin reads never overlapped (peak {origin.Peak})");
        Assert.Equal(data, await ReadAsync(store.Origin, 0, data.Length / 512));
        Assert.Equal(new byte[data.Length], await ReadAsync(store.GetSnapshot("s"), 0, data.Length / 512));
    }

    [Fact]
    public async Task Origin_writes_never_change_what_a_snapshot_reads()
    {
        var p = new TestDeviceProvider();
        await using var store = await CreateMemoryStoreAsync(p, 512);
        await WriteAsync(store.Origin, 0, Pattern(0, 512, 1));
        var s = await store.CreateSnapshotAsync("s");
        // Partial-chunk, multi-chunk and unaligned origin writes.
        await WriteAsync(store.Origin, 3, Pattern(3, 2, 2));
        await WriteAsync(store.Origin, 30, Pattern(30, 40, 3));
        await WriteAsync(store.Origin, 3, Pattern(3, 1, 4));
        Assert.Equal(Pattern(0, 512, 1), await ReadAsync(s, 0, 512));
        var origin = Pattern(0, 512, 1);
        Pattern(3, 2, 2).CopyTo(origin, 3 * 512);
        Pattern(30, 40, 3).CopyTo(origin, 30 * 512);
        Pattern(3, 1, 4).CopyTo(origin, 3 * 512);
        Assert.Equal(origin, await ReadAsync(store.Origin, 0, 512));
        // Chunks 0 and 3..8 were copied: one exception each.
        var st = store.GetStatus().Snapshots.Single();
        Assert.Equal(7, st.Exceptions);
    }

    [Fact]
    public async Task Snapshot_writes_never_change_the_origin()
    {
        var p = new TestDeviceProvider();
        await using var store = await CreateMemoryStoreAsync(p, 256);
        await WriteAsync(store.Origin, 0, Pattern(0, 256, 1));
        var s = await store.CreateSnapshotAsync("s");
        await WriteAsync(s, 5, Pattern(5, 20, 9));
        Assert.Equal(Pattern(0, 256, 1), await ReadAsync(store.Origin, 0, 256));
        var expect = Pattern(0, 256, 1);
        Pattern(5, 20, 9).CopyTo(expect, 5 * 512);
        Assert.Equal(expect, await ReadAsync(s, 0, 256));
        // A later origin write to a chunk the snapshot already owns needs no copy and does not touch the snapshot.
        await WriteAsync(store.Origin, 8, Pattern(8, 8, 5));
        Assert.Equal(expect, await ReadAsync(s, 0, 256));
    }

    [Fact]
    public async Task Full_chunk_snapshot_write_needs_no_copy_from_the_origin()
    {
        var p = new TestDeviceProvider();
        await using var store = await CreateMemoryStoreAsync(p, 256);
        var s = await store.CreateSnapshotAsync("s");
        var originDev = store.OriginDevice;
        long readsBefore = originDev.Counters.Reads;
        await WriteAsync(s, 16, Pattern(16, 8, 1));     // exactly chunk 2
        Assert.Equal(readsBefore, originDev.Counters.Reads);
        await WriteAsync(s, 25, Pattern(25, 2, 1));     // part of chunk 3: copies the rest from the origin
        Assert.True(originDev.Counters.Reads > readsBefore);
        Assert.Equal(Pattern(16, 8, 1), await ReadAsync(s, 16, 8));
    }

    [Fact]
    public async Task Sixteen_snapshots_each_keep_their_point_in_time()
    {
        var p = new TestDeviceProvider();
        await using var store = await CreateMemoryStoreAsync(p, 128);
        var snaps = new List<StoreVolume>();
        for (int v = 0; v < 16; v++)
        {
            await WriteAsync(store.Origin, 0, Pattern(0, 128, v));
            snaps.Add(await store.CreateSnapshotAsync($"s{v}"));
        }
        await WriteAsync(store.Origin, 0, Pattern(0, 128, 99));
        for (int v = 0; v < 16; v++) Assert.Equal(Pattern(0, 128, v), await ReadAsync(snaps[v], 0, 128));
        Assert.Equal(16, store.GetStatus().Snapshots.Count);
        await store.CloseAsync();
        await using var again = await ReopenAsync(p);
        for (int v = 0; v < 16; v++) Assert.Equal(Pattern(0, 128, v), await ReadAsync(again.GetSnapshot($"s{v}"), 0, 128));
    }

    /// <summary>
    /// With <see cref="CowFullPolicy.FailWrite"/> a write that needs a copy into a full COW file fails with
    /// <see cref="CowFullException"/> naming the file, writes nothing, and every snapshot stays valid with its data; a
    /// write that needs no copy from it goes on. Checked for a one-chunk write and for a run of chunks.
    /// </summary>
    [Fact]
    public async Task With_FailWrite_a_full_cow_file_refuses_the_write_and_keeps_every_snapshot()
    {
        var p = new TestDeviceProvider();
        var o = p.Options(new StoreOptions { OriginSectors = 8 * 64, ChunkSectors = 8, CowGrowthBytes = 1 << 20, LogBlocks = 2048, CowFullPolicy = CowFullPolicy.FailWrite });
        await using var store = await SnapshotStore.CreateAsync(Folder, o).AsTask().WaitAsync(Watchdog);
        await WriteAsync(store.Origin, 0, Pattern(0, 8 * 64, 1));
        // Header, area, creation marks and 3 data chunks.
        var small = await store.CreateSnapshotAsync("small", new SnapshotOptions { CowSectors = 6 * 8 });
        var big = await store.CreateSnapshotAsync("big");
        var before = Pattern(0, 8 * 64, 1);

        // A run of 8 chunks needs 8 copies into small, which has room for 3: refused whole.
        var run = await Assert.ThrowsAsync<CowFullException>(() => WriteAsync(store.Origin, 0, Pattern(0, 64, 2)));
        Assert.StartsWith("/mem/store/small.cow: COW file of snapshot 'small' is full", run.Message);
        Assert.Equal("small", run.Snapshot);
        // One chunk at a time: the first 3 fit, the fourth is refused.
        for (int c = 8; c < 11; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 3));
        var one = await Assert.ThrowsAsync<CowFullException>(() => WriteAsync(store.Origin, 11 * 8, Pattern(11 * 8, 8, 3)));
        Assert.Contains("chunk 11", one.Message);

        var expectedOrigin = (byte[])before.Clone();
        for (int c = 8; c < 11; c++) Pattern(c * 8L, 8, 3).CopyTo(expectedOrigin, c * 8 * 512);
        Assert.Equal(expectedOrigin, await ReadAsync(store.Origin, 0, 8 * 64));   // nothing of the refused writes landed
        Assert.Equal(before, await ReadAsync(small, 0, 8 * 64));
        Assert.Equal(before, await ReadAsync(big, 0, 8 * 64));
        Assert.All(store.GetStatus().Snapshots, s => Assert.True(s.IsValid, s.Name));
        // A chunk small already holds needs no copy into it: writing it again goes on.
        await WriteAsync(store.Origin, 8 * 8, Pattern(8 * 8, 8, 4));
        Assert.Equal(before, await ReadAsync(small, 0, 8 * 64));
    }

    [Fact]
    public async Task A_full_cow_file_invalidates_only_its_snapshot()
    {
        var p = new TestDeviceProvider();
        await using var store = await CreateMemoryStoreAsync(p, 8 * 64);
        await WriteAsync(store.Origin, 0, Pattern(0, 8 * 64, 1));
        // Header + area + 4 data chunks.
        var small = await store.CreateSnapshotAsync("small", new SnapshotOptions { CowSectors = 6 * 8 });
        var big = await store.CreateSnapshotAsync("big");
        for (int c = 0; c < 10; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 2));
        var status = store.GetStatus();
        var sm = status.Snapshots.Single(x => x.Name == "small");
        Assert.False(sm.IsValid);
        Assert.Equal("Invalid", sm.DmStatus);
        Assert.Equal("COW file is full", sm.InvalidReason);
        var e = await Assert.ThrowsAsync<SnapshotInvalidException>(() => ReadAsync(small, 0, 8));
        Assert.Contains("small.cow", e.Message);
        Assert.Contains("full", e.Message);
        await Assert.ThrowsAsync<SnapshotInvalidException>(() => WriteAsync(small, 0, Pattern(0, 8, 3)));
        // On disk: header valid = 0.
        var header = new byte[512];
        p.Backing(store.CowPathOf("small")).Read(0, header);
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4)));
        // The origin and the other snapshot keep working.
        Assert.Equal(Pattern(0, 8 * 64, 1), await ReadAsync(big, 0, 8 * 64));
        await WriteAsync(store.Origin, 100 * 8 % (8 * 64), Pattern(0, 8, 7));
        Assert.True(store.GetStatus().Snapshots.Single(x => x.Name == "big").IsValid);
        await store.CloseAsync();
        await using var again = await ReopenAsync(p);
        Assert.False(again.GetStatus().Snapshots.Single(x => x.Name == "small").IsValid);
        Assert.Equal(Pattern(0, 8 * 64, 1), await ReadAsync(again.GetSnapshot("big"), 0, 8 * 64));
    }

    [Fact]
    public async Task Status_reports_allocated_total_and_metadata_sectors_like_dmsetup()
    {
        var p = new TestDeviceProvider();
        await using var store = await CreateMemoryStoreAsync(p, 8 * 1024);
        await store.CreateSnapshotAsync("s", new SnapshotOptions { CowSectors = 8 * 2000 });
        var st = store.GetStatus().Snapshots.Single();
        // Empty: header, area 0 and the creation-marks chunk (chunk 2) are allocated (next free chunk is 3), metadata is
        // header + one area + the marks chunk.
        Assert.Equal("24/16000 24", st.DmStatus);
        for (int c = 0; c < 300; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 1, 1));
        st = store.GetStatus().Snapshots.Single();
        // 300 data chunks + header + 2 areas + the marks chunk = chunk 304 is the next free; metadata = header + areas 0
        // and 1 + the marks chunk.
        Assert.Equal($"{304 * 8}/16000 {4 * 8}", st.DmStatus);
        Assert.Equal(300, st.Exceptions);
        string json = store.GetStatus().ToJson();
        Assert.Contains("\"sectors_allocated\":2432", json);
        Assert.Contains("\"total_sectors\":16000", json);
        Assert.Contains("\"metadata_sectors\":32", json);
        Assert.Contains("\"log_clean\":true", json);
        Assert.Contains("\"status\":\"2432/16000 32\"", json);
    }

    [Fact]
    public async Task Cow_files_grow_in_large_zeroed_steps_up_to_their_configured_size()
    {
        var p = new TestDeviceProvider();
        await using var store = await CreateMemoryStoreAsync(p, 8 * 2048);
        await store.CreateSnapshotAsync("s", new SnapshotOptions { CowSectors = 8 * 700 });
        var cow = p.Backing(store.CowPathOf("s"));
        long initial = cow.SectorCount;
        Assert.Equal(2048, initial); // 1 MiB
        int growths = 0;
        long last = initial;
        for (int c = 0; c < 690; c++)
        {
            await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 1, 1));
            if (cow.SectorCount != last) { growths++; Assert.True(cow.SectorCount - last >= 2048 || cow.SectorCount == 8 * 700); last = cow.SectorCount; }
        }
        Assert.True(growths <= 3, $"{growths} growths");
        Assert.True(cow.SectorCount <= 8 * 700);
    }

    [Fact]
    public async Task A_snapshot_read_never_sees_a_half_copied_chunk()
    {
        var p = new TestDeviceProvider();
        GatedDevice? gated = null;
        p.Wrap = (path, d) => path.EndsWith(".cow", StringComparison.Ordinal) ? gated = new GatedDevice(d) : d;
        await using var store = await CreateMemoryStoreAsync(p, 64);
        await WriteAsync(store.Origin, 0, Pattern(0, 64, 1));
        var s = await store.CreateSnapshotAsync("s");
        gated!.Close();
        var write = store.Origin.WriteAsync(0, Pattern(0, 8, 2)).AsTask();
        // The copy of chunk 0 claimed and its COW write held (not some other write to the COW file, such as a write home).
        while (gated.HeldWrites == 0 || store.Throttle.InFlight == 0) await Task.Delay(1).WaitAsync(Watchdog);
        // The copy of chunk 0 is in flight: a read of chunk 0 waits for it, a read of another chunk does not.
        var readPending = ReadAsync(s, 0, 8);
        Assert.Equal(Pattern(8, 8, 1), await ReadAsync(s, 8, 8));
        await Task.Delay(20);
        Assert.False(readPending.IsCompleted);
        Assert.False(write.IsCompleted);
        gated.Open();
        await write.WaitAsync(Watchdog);
        Assert.Equal(Pattern(0, 8, 1), await readPending);
        Assert.Equal(Pattern(0, 8, 2), await ReadAsync(store.Origin, 0, 8));
    }

    [Fact]
    public async Task Writes_to_a_chunk_queue_behind_its_pending_exception()
    {
        var p = new TestDeviceProvider();
        GatedDevice? gated = null;
        p.Wrap = (path, d) => path.EndsWith(".cow", StringComparison.Ordinal) ? gated = new GatedDevice(d) : d;
        await using var store = await CreateMemoryStoreAsync(p, 64);
        await WriteAsync(store.Origin, 0, Pattern(0, 64, 1));
        var s = await store.CreateSnapshotAsync("s");
        gated!.Close();
        var w1 = store.Origin.WriteAsync(0, Pattern(0, 8, 2)).AsTask();
        // The copy of chunk 0 claimed and its COW write held (not some other write to the COW file, such as a write home).
        while (gated.HeldWrites == 0 || store.Throttle.InFlight == 0) await Task.Delay(1).WaitAsync(Watchdog);
        var w2 = store.Origin.WriteAsync(2, Pattern(2, 1, 3)).AsTask();
        var w3 = s.WriteAsync(4, Pattern(4, 1, 4)).AsTask();
        await Task.Delay(20);
        Assert.False(w2.IsCompleted);
        Assert.False(w3.IsCompleted);
        // Still exactly one exception for chunk 0 in flight.
        Assert.Equal(1, store.Throttle.InFlight);
        gated.Open();
        await Task.WhenAll(w1, w2, w3).WaitAsync(Watchdog);
        var snapExpect = Pattern(0, 8, 1);
        Pattern(4, 1, 4).CopyTo(snapExpect, 4 * 512);
        Assert.Equal(snapExpect, await ReadAsync(s, 0, 8));
        // w1 and w2 overlap and were in flight together, so either may land last (a block device orders no concurrent
        // requests; once the copy is committed, w2 goes on while w1 writes the origin): sector 2 is one of the two.
        var origin = await ReadAsync(store.Origin, 0, 8);
        var w1Data = Pattern(0, 8, 2);
        var sector2 = origin.AsSpan(2 * 512, 512).ToArray();
        Assert.True(sector2.AsSpan().SequenceEqual(Pattern(2, 1, 3)) || sector2.AsSpan().SequenceEqual(w1Data.AsSpan(2 * 512, 512)),
            "origin sector 2 holds neither w1's nor w2's data");
        sector2.CopyTo(w1Data, 2 * 512); // the rest is w1's
        Assert.Equal(w1Data, origin);
        Assert.Equal(1, store.GetStatus().Snapshots.Single().Exceptions);
    }

    [Fact]
    public async Task When_an_origin_write_returns_the_old_data_and_its_exception_are_durable()
    {
        // The COW file and the journal log are crash-simulating devices. After each origin write returns, a crash that
        // loses everything not flushed on them must still leave the old data reachable: the store reopened on those
        // images (replaying the journal) reads the old data through the snapshot.
        var p = new TestDeviceProvider();
        var crashDevs = new Dictionary<string, CrashSimBlockDevice>();
        p.Wrap = (path, d) =>
        {
            if (!path.EndsWith(".cow", StringComparison.Ordinal) && !path.EndsWith(".log", StringComparison.Ordinal)) return d;
            var c = new CrashSimBlockDevice(d.SectorCount, path);
            var buf = new byte[d.Length];
            d.Read(0, buf);
            c.Write(0, buf);
            c.Flush();
            crashDevs[path] = c;
            return c;
        };
        await using var store = await CreateMemoryStoreAsync(p, 8 * 40);
        await WriteAsync(store.Origin, 0, Pattern(0, 8 * 40, 1));
        await store.CreateSnapshotAsync("s");
        for (int c = 0; c < 12; c++)
        {
            await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 2));
            var crashed = new TestDeviceProvider();
            foreach (var path in p.Paths)
            {
                byte[] image = crashDevs.TryGetValue(path, out var cd) ? cd.CrashImageLosingAll() : p.Backing(path).ToArray();
                crashed.Replace(path, MemoryBlockDevice.FromImage(image, path));
            }
            await using var after = await SnapshotStore.OpenAsync(Folder, crashed.Options(new StoreOptions())).AsTask().WaitAsync(Watchdog);
            Assert.False(after.LogClean);
            Assert.Equal(Pattern(0, 8 * (c + 1), 1), await ReadAsync(after.GetSnapshot("s"), 0, 8 * (c + 1)));
            Assert.Equal(c + 1, after.GetStatus().Snapshots.Single().Exceptions);
        }
    }
}
