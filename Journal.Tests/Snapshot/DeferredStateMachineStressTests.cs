using Journal.Storage;
using Journal.Tests.Storage;
using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

/// <summary>
/// Deferred origin writes (<see cref="StoreOptions.DeferCopiedWrites"/>) under concurrency, on devices whose reads, writes
/// and flushes complete at random at once, after a yield or after a millisecond: each step of a deferred write's
/// background half (the commit wait, the plan's completion, tracked reads, the origin write) is taken both with and
/// without suspending. Concurrent writers, snapshot readers, snapshot create and delete: the origin and every snapshot
/// must equal a model after each phase, and no deferred write or shared hold of the I/O gate may be left. With COW flushes
/// and origin writes failing at random, every deferred write must still end and give the gate back.
/// </summary>
public class DeferredStateMachineStressTests
{
    /// <summary>A device whose I/O completes at random: at once, after a yield or after a millisecond.</summary>
    private sealed class Jittery(BlockDevice inner, int seed, bool slowFlush) : ForwardingDevice(inner)
    {
        private readonly Random _rng = new(seed);
        private readonly object _lock = new();
        private int Next(int n) { lock (_lock) return _rng.Next(n); }

        protected override void FlushCore()
        {
            if (slowFlush && Next(3) == 0) Thread.Sleep(Next(2));
            Inner.Flush();
        }

        protected override async ValueTask ReadCoreAsync(long sector, Memory<byte> buffer, CancellationToken cancellationToken)
        {
            int r = Next(4);
            if (r == 0) await Task.Yield();
            else if (r == 1) await Task.Delay(1);
            Inner.Read(sector, buffer.Span);
        }

        protected override async ValueTask WriteCoreAsync(long sector, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
        {
            int r = Next(4);
            if (r == 0) await Task.Yield();
            else if (r == 1) await Task.Delay(1);
            Inner.Write(sector, data.Span);
        }
    }

    private static bool Same(byte[] a, int offset, byte[] b) => a.AsSpan(offset, b.Length).SequenceEqual(b);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task Deferred_writes_under_concurrency_keep_origin_and_snapshots_right_and_release_the_gate(int seed)
    {
        const int sectors = 2048, chunk = 8, writers = 8, phases = 6, writesPerPhase = 150;
        var p = new TestDeviceProvider
        {
            Wrap = (path, d) =>
                path.EndsWith(".cow", StringComparison.Ordinal) ? new Jittery(d, seed * 31 + path.Length, slowFlush: true)
                : path.EndsWith(SnapshotStore.OriginFileName, StringComparison.Ordinal) ? new Jittery(d, seed * 17, slowFlush: false)
                : d,
        };
        var o = p.Options(new StoreOptions { OriginSectors = sectors, ChunkSectors = chunk, CowGrowthBytes = 1 << 20, LogBlocks = 2048, DeferCopiedWrites = true });
        var store = await SnapshotStore.CreateAsync(Folder, o).AsTask().WaitAsync(Watchdog);
        try
        {
            var expected = new byte[sectors * 512];
            Pattern(0, sectors, 1).CopyTo(expected, 0);
            await WriteAsync(store.Origin, 0, Pattern(0, sectors, 1));
            var snaps = new List<(string Name, byte[] Data)>();
            int version = 10;
            var rng = new Random(seed);
            for (int phase = 0; phase < phases; phase++)
            {
                string name = "s" + phase;
                await store.CreateSnapshotAsync(name).AsTask().WaitAsync(Watchdog);
                snaps.Add((name, (byte[])expected.Clone()));
                if (snaps.Count > 3)
                {
                    await store.DeleteSnapshotAsync(snaps[0].Name).AsTask().WaitAsync(Watchdog);
                    snaps.RemoveAt(0);
                }
                var tasks = new List<Task>();
                for (int w = 0; w < writers; w++)
                {
                    int wi = w;
                    int wseed = rng.Next();
                    int vbase = version + w * 100000;
                    tasks.Add(Task.Run(async () =>
                    {
                        var r = new Random(wseed);
                        for (int i = 0; i < writesPerPhase; i++)
                        {
                            // chunks owned by this writer: c % writers == wi
                            long c = r.Next(sectors / chunk / writers) * writers + wi;
                            int off = r.Next(2) == 0 ? 0 : r.Next(chunk);
                            int len = Math.Max(1, r.Next(1, chunk - off + 1));
                            long s = c * chunk + off;
                            int v = vbase + i;
                            var data = Pattern(s, len, v);
                            await WriteAsync(store.Origin, s, data);
                            lock (expected) data.CopyTo(expected, (int)(s * 512));
                            if (r.Next(4) == 0)
                            {
                                var back = await ReadAsync(store.Origin, c * chunk, chunk);
                                byte[] want;
                                lock (expected) want = expected.AsSpan((int)(c * chunk * 512), chunk * 512).ToArray();
                                Assert.True(Same(want, 0, back), $"origin chunk {c} wrong after own write");
                            }
                            if (r.Next(50) == 0) await store.FlushAsync().AsTask().WaitAsync(Watchdog);
                        }
                    }));
                }
                // snapshot readers
                var snapshotList = snaps.ToArray();
                for (int rd = 0; rd < 4; rd++)
                {
                    int rseed = rng.Next();
                    tasks.Add(Task.Run(async () =>
                    {
                        var r = new Random(rseed);
                        for (int i = 0; i < 120; i++)
                        {
                            var (n, data) = snapshotList[r.Next(snapshotList.Length)];
                            long c = r.Next(sectors / chunk);
                            var got = await ReadAsync(store.GetSnapshot(n), c * chunk, chunk);
                            Assert.True(Same(data, (int)(c * chunk * 512), got), $"snapshot {n} chunk {c} wrong");
                        }
                    }));
                }
                await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(60));
                version += 1000000;
                await store.FlushAsync().AsTask().WaitAsync(Watchdog);
                Assert.Equal(0, store.GetStatus().DeferredWritesPending);
                Assert.Equal(0, store.GateSharedHolders);
                var all = await ReadAsync(store.Origin, 0, sectors);
                Assert.True(Same(expected, 0, all), "origin wrong after phase");
                foreach (var (n, data) in snaps)
                {
                    var got = await ReadAsync(store.GetSnapshot(n), 0, sectors);
                    Assert.True(Same(data, 0, got), $"snapshot {n} wrong after phase");
                }
            }
            Assert.True(store.DataPath.DeferredWrites > 0, "nothing was deferred");
        }
        finally
        {
            await store.DisposeAsync().AsTask().WaitAsync(Watchdog);
        }
    }

    /// <summary>As <see cref="Jittery"/>, and while armed, flushes and writes fail one in N at random.</summary>
    private sealed class Flaky(BlockDevice inner, int seed, int flushFailOneIn, int writeFailOneIn) : ForwardingDevice(inner)
    {
        private readonly Random _rng = new(seed);
        private readonly object _lock = new();
        public volatile bool Armed = true;
        private int Next(int n) { lock (_lock) return _rng.Next(n); }

        protected override void FlushCore()
        {
            if (Next(3) == 0) Thread.Sleep(Next(2));
            if (Armed && flushFailOneIn > 0 && Next(flushFailOneIn) == 0) throw new BlockDeviceException(Name, 0, "injected flush error");
            Inner.Flush();
        }

        protected override async ValueTask ReadCoreAsync(long sector, Memory<byte> buffer, CancellationToken cancellationToken)
        {
            if (Next(3) == 0) await Task.Yield();
            Inner.Read(sector, buffer.Span);
        }

        protected override async ValueTask WriteCoreAsync(long sector, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
        {
            int r = Next(4);
            if (r == 0) await Task.Yield();
            else if (r == 1) await Task.Delay(1);
            if (Armed && writeFailOneIn > 0 && Next(writeFailOneIn) == 0) throw new BlockDeviceException(Name, sector, "injected write error");
            Inner.Write(sector, data.Span);
        }
    }

    [Theory]
    [InlineData(1, 40, 0)]
    [InlineData(2, 0, 60)]
    [InlineData(3, 30, 60)]
    public async Task Deferred_writes_with_failing_rounds_and_origin_writes_all_end_and_release_the_gate(int seed, int cowFlushFail, int originWriteFail)
    {
        const int sectors = 1024, chunk = 8, writers = 6;
        var devices = new List<Flaky>();
        var p = new TestDeviceProvider
        {
            Wrap = (path, d) =>
            {
                Flaky f;
                if (path.EndsWith(".cow", StringComparison.Ordinal)) f = new Flaky(d, seed * 31 + path.Length, cowFlushFail, 0);
                else if (path.EndsWith(SnapshotStore.OriginFileName, StringComparison.Ordinal)) f = new Flaky(d, seed * 17, 0, originWriteFail);
                else return d;
                f.Armed = false;
                lock (devices) devices.Add(f);
                return f;
            },
        };
        var o = p.Options(new StoreOptions { OriginSectors = sectors, ChunkSectors = chunk, CowGrowthBytes = 1 << 20, LogBlocks = 2048, DeferCopiedWrites = true });
        var store = await SnapshotStore.CreateAsync(Folder, o).AsTask().WaitAsync(Watchdog);
        try
        {
            await WriteAsync(store.Origin, 0, Pattern(0, sectors, 1));
            for (int round = 0; round < 5; round++)
            {
                lock (devices) foreach (var d in devices) d.Armed = false;
                try { await store.CreateSnapshotAsync("r" + round).AsTask().WaitAsync(Watchdog); } catch (IOException) { }
                lock (devices) foreach (var d in devices) d.Armed = true;
                var tasks = new List<Task>();
                for (int w = 0; w < writers; w++)
                {
                    int wseed = seed * 1000 + round * 10 + w;
                    tasks.Add(Task.Run(async () =>
                    {
                        var r = new Random(wseed);
                        for (int i = 0; i < 150; i++)
                        {
                            long c = r.Next(sectors / chunk);
                            try { await WriteAsync(store.Origin, c * chunk, Pattern(c * chunk, chunk, i)); }
                            catch (IOException) { }
                            if (r.Next(8) == 0)
                            {
                                try { await ReadAsync(store.Origin, c * chunk, chunk); } catch (IOException) { }
                            }
                            if (r.Next(40) == 0)
                            {
                                try { await store.FlushAsync().AsTask().WaitAsync(Watchdog); } catch (IOException) { }
                            }
                        }
                    }));
                }
                await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(60));
                lock (devices) foreach (var d in devices) d.Armed = false;
                try { await store.FlushAsync().AsTask().WaitAsync(Watchdog); } catch (IOException) { }
                Assert.Equal(0, store.GetStatus().DeferredWritesPending);
                Assert.Equal(0, store.GateSharedHolders);
            }
        }
        finally
        {
            lock (devices) foreach (var d in devices) d.Armed = false;
            try { await store.DisposeAsync().AsTask().WaitAsync(Watchdog); } catch (IOException) { }
        }
    }
}
