using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

/// <summary>
/// Random workloads checked against an in-memory model: origin writes never change what a snapshot reads, snapshot
/// writes never change the origin or other snapshots. Size knob: <c>JOURNAL_SNAP_CONSISTENCY_ROUNDS</c> (default 3).
/// </summary>
public class ConsistencyTests
{
    private static int Rounds => int.TryParse(Environment.GetEnvironmentVariable("JOURNAL_SNAP_CONSISTENCY_ROUNDS"), out int n) && n > 0 ? n : 3;

    private const int OriginSectors = 8 * 48;

    private sealed class Model
    {
        public byte[] Origin = new byte[OriginSectors * 512];
        public Dictionary<string, byte[]> Snaps = new();
    }

    private static byte[] Data(Random r, int sectors)
    {
        var b = new byte[sectors * 512];
        r.NextBytes(b);
        return b;
    }

    [Theory]
    [InlineData(1, 8)]
    [InlineData(2, 1)]
    [InlineData(3, 32)]
    public async Task Sequential_random_workload_matches_the_model(int seed, int chunkSectors)
    {
        for (int round = 0; round < Rounds; round++)
        {
            var r = new Random(seed * 1000 + round);
            var p = new TestDeviceProvider();
            var store = await CreateMemoryStoreAsync(p, OriginSectors, chunkSectors);
            var m = new Model();
            int nextName = 0;
            for (int step = 0; step < 300; step++)
            {
                int op = r.Next(100);
                if (op < 40)
                {
                    int len = 1 + r.Next(20);
                    long at = r.Next(OriginSectors - len + 1);
                    var d = Data(r, len);
                    await WriteAsync(store.Origin, at, d);
                    d.CopyTo(m.Origin, at * 512);
                }
                else if (op < 60 && m.Snaps.Count > 0)
                {
                    string name = m.Snaps.Keys.ElementAt(r.Next(m.Snaps.Count));
                    int len = r.Next(4) == 0 ? chunkSectors : 1 + r.Next(20);
                    long at = r.Next(4) == 0 ? r.Next(OriginSectors / chunkSectors) * (long)chunkSectors : r.Next(OriginSectors - len + 1);
                    if (at + len > OriginSectors) continue;
                    var d = Data(r, len);
                    await WriteAsync(store.GetSnapshot(name), at, d);
                    d.CopyTo(m.Snaps[name], at * 512);
                }
                else if (op < 70 && m.Snaps.Count < 6)
                {
                    string name = $"s{nextName++}";
                    bool persistent = r.Next(4) != 0;
                    await store.CreateSnapshotAsync(name, new SnapshotOptions { Persistent = persistent }).AsTask().WaitAsync(Watchdog);
                    m.Snaps[name] = (byte[])m.Origin.Clone();
                }
                else if (op < 74 && m.Snaps.Count > 0)
                {
                    string name = m.Snaps.Keys.ElementAt(r.Next(m.Snaps.Count));
                    await store.DeleteSnapshotAsync(name).AsTask().WaitAsync(Watchdog);
                    m.Snaps.Remove(name);
                }
                else if (op < 77)
                {
                    await store.CloseAsync().AsTask().WaitAsync(Watchdog);
                    store = await ReopenAsync(p);
                    // Transient snapshots do not survive a close.
                    foreach (var st in store.GetStatus().Snapshots.Where(x => x.Kind == SnapshotKind.Transient))
                    {
                        await store.DeleteSnapshotAsync(st.Name);
                        m.Snaps.Remove(st.Name);
                    }
                }
                else
                {
                    int len = 1 + r.Next(40);
                    long at = r.Next(OriginSectors - len + 1);
                    Assert.Equal(m.Origin.AsSpan((int)at * 512, len * 512).ToArray(), await ReadAsync(store.Origin, at, len));
                    foreach (var (name, img) in m.Snaps)
                    {
                        var got = await ReadAsync(store.GetSnapshot(name), at, len);
                        Assert.True(img.AsSpan((int)at * 512, len * 512).SequenceEqual(got),
                            $"seed {seed} round {round} step {step}: snapshot {name} differs at sectors {at}..{at + len}");
                    }
                }
            }
            Assert.Equal(m.Origin, await ReadAsync(store.Origin, 0, OriginSectors));
            foreach (var (name, img) in m.Snaps) Assert.Equal(img, await ReadAsync(store.GetSnapshot(name), 0, OriginSectors));
            await store.CloseAsync();
        }
    }

    [Theory]
    [InlineData(11, 8, 2048)]
    [InlineData(12, 8, 3)]
    [InlineData(13, 4, 0)]
    [InlineData(14, 8, 2048, true)] // deferred origin writes: each writer reads its write back at once
    public async Task Concurrent_writers_and_readers_match_the_model(int seed, int chunkSectors, int bound, bool deferWrites = false)
    {
        const int Tasks = 8;
        for (int round = 0; round < Rounds; round++)
        {
            var r = new Random(seed * 1000 + round);
            var p = new TestDeviceProvider();
            await using var store = await CreateMemoryStoreAsync(p, OriginSectors, chunkSectors, maxInFlight: bound, deferWrites: deferWrites);
            var m = new Model();
            int nextName = 0;
            for (int phase = 0; phase < 6; phase++)
            {
                // Between phases: create or delete snapshots (their point in time is exactly the model's origin now).
                if (m.Snaps.Count < 4 || r.Next(3) > 0)
                {
                    string name = $"s{nextName++}";
                    await store.CreateSnapshotAsync(name).AsTask().WaitAsync(Watchdog);
                    m.Snaps[name] = (byte[])m.Origin.Clone();
                }
                else
                {
                    string name = m.Snaps.Keys.First();
                    await store.DeleteSnapshotAsync(name).AsTask().WaitAsync(Watchdog);
                    m.Snaps.Remove(name);
                }
                // Half the snapshots are written in this phase, the others only read (and must not change at all).
                var written = m.Snaps.Keys.Where((_, i) => (i + phase) % 2 == 0).ToArray();
                var readOnly = m.Snaps.Keys.Except(written).ToArray();
                var snapshotImages = readOnly.ToDictionary(n => n, n => (byte[])m.Snaps[n].Clone());
                var stop = new CancellationTokenSource();
                var readers = Enumerable.Range(0, 2).Select(t => Task.Run(async () =>
                {
                    var rr = new Random(seed + t + phase * 7);
                    int checks = 0;
                    while (!stop.IsCancellationRequested || checks < 5)
                    {
                        if (readOnly.Length == 0) break;
                        string name = readOnly[rr.Next(readOnly.Length)];
                        int len = 1 + rr.Next(24);
                        long at = rr.Next(OriginSectors - len + 1);
                        var got = await ReadAsync(store.GetSnapshot(name), at, len);
                        Assert.True(snapshotImages[name].AsSpan((int)at * 512, len * 512).SequenceEqual(got),
                            $"seed {seed}: read-only snapshot {name} changed at sectors {at}..{at + len} while the origin was written");
                        checks++;
                    }
                })).ToArray();
                // Writers: task t owns sectors with sector % Tasks == t (so chunks are shared and copies race).
                var writers = Enumerable.Range(0, Tasks).Select(t => Task.Run(async () =>
                {
                    var wr = new Random(seed * 31 + t + phase * 101);
                    for (int i = 0; i < 30; i++)
                    {
                        long sector = wr.Next(OriginSectors / Tasks) * Tasks + t;
                        var d = Data(wr, 1);
                        if (written.Length > 0 && wr.Next(3) == 0)
                        {
                            string name = written[wr.Next(written.Length)];
                            await WriteAsync(store.GetSnapshot(name), sector, d);
                            lock (m) d.CopyTo(m.Snaps[name], sector * 512);
                        }
                        else
                        {
                            await WriteAsync(store.Origin, sector, d);
                            lock (m) d.CopyTo(m.Origin, sector * 512);
                            // This task alone writes this sector: a read now must return what was just acknowledged.
                            var back = await ReadAsync(store.Origin, sector, 1);
                            Assert.True(d.AsSpan().SequenceEqual(back),
                                $"seed {seed}: origin sector {sector} read back right after its write returned differs");
                        }
                    }
                })).ToArray();
                await Task.WhenAll(writers).WaitAsync(Watchdog);
                stop.Cancel();
                await Task.WhenAll(readers).WaitAsync(Watchdog);
                Assert.Equal(m.Origin, await ReadAsync(store.Origin, 0, OriginSectors));
                foreach (var (name, img) in m.Snaps) Assert.Equal(img, await ReadAsync(store.GetSnapshot(name), 0, OriginSectors));
            }
            var status = store.GetStatus();
            if (deferWrites) Assert.True(status.DeferredWrites > 0 && status.DeferredWritesPending == 0, $"deferred {status.DeferredWrites}, pending {status.DeferredWritesPending}");
            if (bound > 0) Assert.True(status.PeakCopiesInFlight <= Math.Max(bound, m.Snaps.Count + 1), $"peak {status.PeakCopiesInFlight} over bound {bound}");
            Assert.Equal(0, status.CopiesInFlight);
            Assert.Equal(0, status.PendingPool.InUse);
            Assert.Equal(0, status.CopyJobPool.InUse);
        }
    }
}
