using System.Buffers.Binary;
using Journal.Storage;
using Journal.Testing;
using Journal.Tests.Snapshot;
using Snapshot;
using Snapshot.Nbd;
using static Snapshot.Nbd.NbdProtocol;

namespace Journal.Tests.Nbd;

/// <summary>
/// What a reply promises: durability after FLUSH (across connections) and FUA, a power cut away; snapshots taken live
/// are one point in time; reads never see half a chunk; deleting or merging an export in use; and the in-flight bound
/// that keeps a client who never reads its replies from holding anything others need.
/// </summary>
public sealed class NbdSemanticsTests
{
    private static byte[] Pattern(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    [Fact]
    public async Task A_FLUSH_on_one_connection_makes_writes_acknowledged_on_every_connection_durable()
    {
        var cut = new PowerCut();
        await using var h = await NbdHarness.StartAsync(originBytes: 4 << 20, devices: cut.Devices);
        await h.Server.CreateSnapshotAsync("before");
        await using var a = await h.OpenAsync();
        await using var b = await h.OpenAsync();
        await using var c = await h.OpenAsync();
        Assert.NotEqual(0, a.TransmissionFlags & TxCanMultiConn);
        await a.WriteAsync(0, Pattern(65536, 1));
        await b.WriteAsync(1 << 20, Pattern(65536, 2));
        await c.FlushAsync();                                   // covers a's and b's acknowledged writes
        await b.WriteAsync(2 << 20, Pattern(4096, 3), flags: CmdFlagFua); // durable by itself
        await a.WriteAsync(3 << 20, Pattern(4096, 4));          // acknowledged, never flushed

        var images = cut.CrashImages();
        await using var after = await SnapshotStore.OpenAsync(SnapTestUtil.Folder, images.Options(new StoreOptions())).AsTask().WaitAsync(RawNbdClient.Watchdog);
        Assert.Equal(Pattern(65536, 1), await SnapTestUtil.ReadAsync(after.Origin, 0, 128));
        Assert.Equal(Pattern(65536, 2), await SnapTestUtil.ReadAsync(after.Origin, (1 << 20) / 512, 128));
        Assert.Equal(Pattern(4096, 3), await SnapTestUtil.ReadAsync(after.Origin, (2 << 20) / 512, 8));
        // The crash model is real: the write nobody flushed is gone (so the assertions above could fail).
        Assert.Equal(new byte[4096], await SnapTestUtil.ReadAsync(after.Origin, (3 << 20) / 512, 8));
        // And the snapshot kept the old data of every chunk the writes displaced.
        Assert.Equal(new byte[65536], await SnapTestUtil.ReadAsync(after.GetSnapshot("before"), 0, 128));
    }

    [Fact]
    public async Task A_snapshot_taken_while_clients_write_is_one_point_in_time()
    {
        await using var h = await NbdHarness.StartAsync(originBytes: 8 << 20);
        const int Writers = 4, RegionsPerWriter = 16, RegionBytes = 8192; // a region spans two 4 KiB chunks
        long clock = 0;
        long createStart = long.MaxValue, createEnd = long.MaxValue;
        var stop = new CancellationTokenSource();
        // For every region: the versions acknowledged, with the clock when the ack arrived, and when each was sent.
        var acked = new List<(int Region, int Version, long At)>[Writers * RegionsPerWriter];
        var sent = new List<(int Region, int Version, long At)>[Writers * RegionsPerWriter];
        for (int i = 0; i < acked.Length; i++) { acked[i] = new(); sent[i] = new(); }

        static byte[] Version(int region, int version)
        {
            var b = new byte[RegionBytes];
            for (int i = 0; i < b.Length; i += 8)
            {
                BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(i), region);
                BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(i + 4), version);
            }
            return b;
        }

        var writers = Enumerable.Range(0, Writers).Select(w => Task.Run(async () =>
        {
            await using var c = await h.OpenAsync();
            var version = new int[RegionsPerWriter];
            var inFlight = new Dictionary<ulong, (int Region, int Version)>();
            int next = 0;
            while (!stop.IsCancellationRequested || inFlight.Count > 0)
            {
                // Keep up to 8 writes in flight, at most one per region (a region's versions are written in order).
                while (!stop.IsCancellationRequested && inFlight.Count < 8)
                {
                    int local = next++ % RegionsPerWriter;
                    int region = w * RegionsPerWriter + local;
                    if (inFlight.Values.Any(v => v.Region == region)) break;
                    int v = ++version[local];
                    long at = Interlocked.Increment(ref clock);
                    lock (sent[region]) sent[region].Add((region, v, at));
                    ulong handle = await c.SendRequestAsync(CmdWrite, (ulong)region * RegionBytes, RegionBytes, Version(region, v));
                    inFlight[handle] = (region, v);
                }
                var r = await c.ReadReplyAsync();
                Assert.Equal(0u, r.Error);
                var (reg, ver) = inFlight[r.Handle];
                inFlight.Remove(r.Handle);
                long t = Interlocked.Increment(ref clock);
                lock (acked[reg]) acked[reg].Add((reg, ver, t));
            }
            await c.DisconnectAsync();
        })).ToArray();

        await NbdHarness.EventuallyAsync(() => Interlocked.Read(ref clock) > 2000, "writers under way");
        createStart = Interlocked.Increment(ref clock);
        await h.Server.CreateSnapshotAsync("pit").WaitAsync(RawNbdClient.Watchdog);
        createEnd = Interlocked.Increment(ref clock);
        await NbdHarness.EventuallyAsync(() => Interlocked.Read(ref clock) > createEnd + 2000, "writers past the snapshot");
        stop.Cancel();
        await Task.WhenAll(writers).WaitAsync(RawNbdClient.Watchdog);

        await using var s = await h.OpenAsync("pit");
        for (int region = 0; region < Writers * RegionsPerWriter; region++)
        {
            var data = await s.ReadAsync((ulong)region * RegionBytes, RegionBytes);
            int v0 = BinaryPrimitives.ReadInt32LittleEndian(data.AsSpan(4));
            for (int i = 0; i < data.Length; i += 8)
            {
                // Whole: both chunks of a write are on the same side of the snapshot.
                int reg = BinaryPrimitives.ReadInt32LittleEndian(data.AsSpan(i));
                int ver = BinaryPrimitives.ReadInt32LittleEndian(data.AsSpan(i + 4));
                Assert.True((reg == region && ver == v0) || (reg == 0 && ver == 0 && v0 == 0), $"region {region}: torn at byte {i}: {reg}/{ver} vs version {v0}");
            }
            int ackedBefore = acked[region].Where(a => a.At < createStart).Select(a => a.Version).DefaultIfEmpty(0).Max();
            int sentAfter = sent[region].Where(a => a.At > createEnd).Select(a => a.Version).DefaultIfEmpty(int.MaxValue).Min();
            Assert.True(v0 >= ackedBefore, $"region {region}: the snapshot holds version {v0}, but version {ackedBefore} was acknowledged before the create began");
            Assert.True(v0 < sentAfter, $"region {region}: the snapshot holds version {v0}, but version {sentAfter} was sent after the create returned");
        }
    }

    [Fact]
    public async Task A_read_never_returns_a_half_written_chunk()
    {
        await using var h = await NbdHarness.StartAsync(originBytes: 4 << 20);
        const int Bytes = 256 * 1024; // 64 chunks
        var versions = new[] { Pattern(Bytes, 1), Pattern(Bytes, 2) };
        await using (var init = await h.OpenAsync()) await init.WriteAsync(0, versions[0]);
        var stop = new CancellationTokenSource();
        var writer = Task.Run(async () =>
        {
            await using var c = await h.OpenAsync();
            for (int i = 1; !stop.IsCancellationRequested; i++) await c.WriteAsync(0, versions[i % 2]);
        });
        await using var reader = await h.OpenAsync();
        for (int round = 0; round < 300; round++)
        {
            // Several overlapping reads in flight at once, of chunk-aligned and unaligned-to-chunk ranges.
            var handles = new List<(ulong Handle, int Offset)>();
            for (int k = 0; k < 4; k++)
            {
                int off = k * 4096 + (k % 2) * 2048;
                handles.Add((await reader.SendRequestAsync(CmdRead, (ulong)off, 65536), off));
            }
            for (int k = 0; k < handles.Count; k++)
            {
                var r = await reader.ReadReplyAsync();
                int off = handles.Single(x => x.Handle == r.Handle).Offset;
                for (int c = 0; c < 65536; c += 4096)
                {
                    // Each 4 KiB of the read lies in one or two chunks; every chunk's bytes come from one version.
                    int at = off + c;
                    int chunkStart = at / 4096 * 4096;
                    var slice = r.Data!.AsSpan(c, Math.Min(4096, 65536 - c));
                    bool a = slice.SequenceEqual(versions[0].AsSpan(at, slice.Length)), b = slice.SequenceEqual(versions[1].AsSpan(at, slice.Length));
                    if (!a && !b)
                    {
                        // A window spanning two chunks may mix versions at the chunk boundary only.
                        int split = chunkStart + 4096 - at;
                        Assert.True(split > 0 && split < slice.Length, $"read at {off}: bytes {c}..{c + slice.Length} mix two versions inside chunk {chunkStart / 4096}");
                        bool first = slice[..split].SequenceEqual(versions[0].AsSpan(at, split)) || slice[..split].SequenceEqual(versions[1].AsSpan(at, split));
                        bool second = slice[split..].SequenceEqual(versions[0].AsSpan(at + split, slice.Length - split)) || slice[split..].SequenceEqual(versions[1].AsSpan(at + split, slice.Length - split));
                        Assert.True(first && second, $"read at {off}: a chunk mixes two versions");
                    }
                }
            }
        }
        stop.Cancel();
        await writer.WaitAsync(RawNbdClient.Watchdog);
    }

    [Fact]
    public async Task Deleting_or_merging_a_snapshot_in_use_fails_unless_forced_which_disconnects_its_clients()
    {
        await using var h = await NbdHarness.StartAsync();
        await using (var o = await h.OpenAsync()) await o.WriteAsync(0, Pattern(4096, 1));
        await h.Server.CreateSnapshotAsync("s1");
        await h.Server.CreateSnapshotAsync("s2");
        await using var a = await h.OpenAsync("s1");
        await using var b = await h.OpenAsync("s1");
        await using var other = await h.OpenAsync("s2");
        Assert.Equal(2, h.Server.ConnectionsTo("s1"));
        var e = await Assert.ThrowsAsync<NbdExportInUseException>(() => h.Server.DeleteSnapshotAsync("s1", force: false));
        Assert.Equal(2, e.Connections);
        Assert.EndsWith("snapshot 's1' is in use by 2 connections", e.Message);
        Assert.Contains(h.Store.Snapshots, v => v.Name == "s1");
        Assert.Equal(Pattern(4096, 1), await a.ReadAsync(0, 4096)); // the refused delete left them alone

        await h.Server.DeleteSnapshotAsync("s1", force: true).WaitAsync(RawNbdClient.Watchdog);
        Assert.True(await a.ServerClosesAsync());
        Assert.True(await b.ServerClosesAsync());
        Assert.DoesNotContain(h.Store.Snapshots, v => v.Name == "s1");
        Assert.True(h.Log.Contains("export s1: disconnecting 2 connections"));

        var m = await Assert.ThrowsAsync<NbdExportInUseException>(() => h.Server.MergeSnapshotAsync("s2", force: false));
        Assert.Equal(1, m.Connections);
        await using (var o = await h.OpenAsync()) await o.WriteAsync(0, Pattern(4096, 2));
        await h.Server.MergeSnapshotAsync("s2", force: true).WaitAsync(RawNbdClient.Watchdog);
        Assert.True(await other.ServerClosesAsync());
        await using (var o = await h.OpenAsync()) Assert.Equal(Pattern(4096, 1), await o.ReadAsync(0, 4096));
        Assert.Empty(h.Store.Snapshots);
        await Assert.ThrowsAsync<SnapshotArgumentException>(() => h.Server.DeleteSnapshotAsync("origin", force: true));
    }

    [Fact]
    public async Task A_client_that_never_reads_replies_is_held_at_its_bound_and_holds_nothing_others_need()
    {
        const int MaxRequests = 8;
        const long MaxBytes = NbdServerOptions.MaxRequestBytes;
        await using var h = await NbdHarness.StartAsync(originBytes: 128 << 20, maxRequestsInFlight: MaxRequests, maxBytesInFlight: MaxBytes);
        await h.Server.CreateSnapshotAsync("base");
        var stuck = await h.OpenAsync();
        stuck.Socket.ReceiveBufferSize = 4096;
        // Writes (to chunks the snapshot shares: each needs a copy) and 1 MiB reads, far more than the bound, never
        // reading a reply. The sends block once the server stops reading, so they run in the background.
        var pushing = Task.Run(async () =>
        {
            try
            {
                var block = Pattern(1 << 20, 5);
                for (int i = 0; i < 64; i++) await stuck.SendRequestAsync(CmdWrite, (ulong)i << 20, 1 << 20, block, watchdog: false);
                for (int i = 0; i < 1000; i++) await stuck.SendRequestAsync(CmdRead, (ulong)(i % 64) << 20, 1 << 20, watchdog: false);
            }
            catch (Exception e) when (e is System.Net.Sockets.SocketException or ObjectDisposedException or OperationCanceledException) { }
        });
        await NbdHarness.EventuallyAsync(() => h.Server.InFlightStatistics.BoundWaits > 0, "the stuck connection reaching its bound");

        // Everyone else carries on: another client's I/O (past the 64 MiB the stuck client writes, whose writes keep
        // completing while their small replies fit the socket's buffer), and snapshot create, delete and merge (which
        // need the store's I/O gate and the server's write gate exclusively). A broken rule hangs here, and the
        // watchdog fails.
        await using (var c = await h.OpenAsync())
        {
            for (int i = 0; i < 20; i++)
            {
                await c.WriteAsync((ulong)(64 + i) << 20, Pattern(65536, i)).WaitAsync(RawNbdClient.Watchdog);
                Assert.Equal(Pattern(65536, i), await c.ReadAsync((ulong)(64 + i) << 20, 65536).WaitAsync(RawNbdClient.Watchdog));
            }
            await c.FlushAsync().WaitAsync(RawNbdClient.Watchdog);
            await h.Server.CreateSnapshotAsync("during").WaitAsync(RawNbdClient.Watchdog);
            await c.WriteAsync(74 << 20, Pattern(4096, 99)).WaitAsync(RawNbdClient.Watchdog);
            await h.Server.MergeSnapshotAsync("during", force: false).WaitAsync(RawNbdClient.Watchdog);
            await h.Server.DeleteSnapshotAsync("base", force: false).WaitAsync(RawNbdClient.Watchdog);
            Assert.Equal(Pattern(65536, 10).AsSpan(0, 4096).ToArray(), await c.ReadAsync(74 << 20, 4096));
        }
        var (peakRequests, peakBytes, waits) = h.Server.InFlightStatistics;
        Assert.InRange(peakRequests, 1, MaxRequests);
        Assert.InRange(peakBytes, 1, MaxBytes);
        Assert.True(waits > 0);
        // The stuck client goes away; its connection ends and gives everything back.
        stuck.Socket.Dispose();
        await pushing.WaitAsync(RawNbdClient.Watchdog);

        await NbdHarness.EventuallyAsync(() => h.Server.ConnectionCount == 0, "the stuck connection closing");
    }
}
