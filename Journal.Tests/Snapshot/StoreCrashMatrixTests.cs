using Journal.Storage;
using Journal.Testing;
using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

/// <summary>
/// Crash matrix over the whole store: every device (origin, superblock, journal log, COW files) is a recording device
/// sharing one write log; a workload of origin writes, snapshot writes, flushes, snapshot creation and deletion runs;
/// then, for crash states at every flush point (and torn/partial variants of the writes in flight), the store is
/// reopened (replaying the journal) and checked: every durable acknowledged write is visible (with write-through: every
/// acknowledged write; with block-device semantics: every write acknowledged before an acknowledged flush, or written
/// with FUA), every snapshot reads exactly its point-in-time data plus its own durable writes, and nothing else is
/// possible but a write not yet durable. The cases cover write-through and flush semantics, up to 8 snapshots,
/// concurrent writers (so commit rounds overlap: one flushes COW data while another's log force runs), and the
/// direct-area commit mode. In the cases marked "shared", the COW files share device flushes (like files on one ext4
/// file system) with the journal's log: a round writes each file's copies back and flushes the storage device once for
/// them (<see cref="BlockDevice.CanFlushThrough"/>), or lets the previous round's log force carry them (when the timing
/// gives a held round a next one; <see cref="CarriedRoundTests"/> forces each order), and the crash states make a file's
/// copies durable only through such a flush.
/// Size knob: <c>JOURNAL_SNAP_CRASH_STATES</c> (default 240 states per case).
/// </summary>
public class StoreCrashMatrixTests
{
    private static int States => int.TryParse(Environment.GetEnvironmentVariable("JOURNAL_SNAP_CRASH_STATES"), out int n) && n > 0 ? n : 240;

    private const int OriginSectors = 8 * 48;

    private enum Kind { OriginWrite, SnapshotWrite, Create, Delete, Flush }

    /// <param name="Durable">Durable when acknowledged (write-through, FUA, or a write that made a snapshot's exception).</param>
    private sealed record Op(Kind Kind, string? Snapshot, long Sector, byte[]? Data, int Start, int Ack, byte[]? Base, bool Durable);

    [Theory]
    [InlineData(1, 8, true, 3, 1, false)]
    [InlineData(2, 16, true, 3, 1, false, false, true)]  // shared
    [InlineData(3, 8, false, 3, 1, false)]  // block-device semantics: durable after a flush or with FUA
    [InlineData(4, 8, false, 8, 1, false, false, true)]  // 8 snapshots, shared
    [InlineData(5, 8, false, 3, 4, false, false, true)]  // 4 concurrent writers: commit rounds overlap; shared
    [InlineData(6, 8, true, 3, 2, true)]    // the direct-area commit mode
    [InlineData(7, 8, false, 3, 4, false, true)]  // deferred origin writes (DeferCopiedWrites), 4 writers
    [InlineData(8, 16, false, 8, 1, false, true, true)] // deferred origin writes, 8 snapshots, shared
    [InlineData(9, 8, false, 8, 4, false, false, true)]  // 8 snapshots, 4 writers, shared
    public async Task After_a_crash_anywhere_acknowledged_writes_and_point_in_time_contents_survive(int seed, int chunkSectors, bool writeThrough,
        int maxSnapshots, int writers, bool directArea, bool deferWrites = false, bool sharedFlushes = false)
    {
        var log = new WriteLog();
        var p = new TestDeviceProvider { Log = log, FilesShareFlushes = sharedFlushes };
        var r = new Random(seed);
        var o = p.Options(new StoreOptions
        {
            OriginSectors = OriginSectors, ChunkSectors = chunkSectors, WriteThrough = writeThrough, CowGrowthBytes = 1 << 20, LogBlocks = 2048,
            MetadataMode = directArea ? MetadataMode.DirectArea : MetadataMode.Journal, DeferCopiedWrites = deferWrites,
        });
        var store = await SnapshotStore.CreateAsync(Folder, o).AsTask().WaitAsync(Watchdog);
        int created = log.Mark("store created");
        var ops = new List<Op>();
        var origin = new byte[OriginSectors * 512];

        async Task OriginWrite(long sector, byte[] data, bool fua)
        {
            int start = log.Mark($"origin write {sector}+{data.Length / 512} start");
            await store.Origin.WriteAsync(sector, data, fua ? WriteFlags.Fua : WriteFlags.None).AsTask().WaitAsync(Watchdog);
            int ack = log.Mark("ack");
            lock (origin) data.CopyTo(origin, sector * 512);
            lock (ops) ops.Add(new Op(Kind.OriginWrite, null, sector, data, start, ack, null, writeThrough || fua));
        }

        for (long s = 0; s < OriginSectors; s += 64) await OriginWrite(s, Rand(r, 64), fua: false);
        var live = new List<string>();
        int names = 0;
        for (int i = 0; i < 60; i++)
        {
            // Now and then the journal writes the metadata segments home (the AIL's job), so crash states cover
            // segments partly home, home-LSN slots, and replay over newer home copies.
            if (i % 7 == 6 && !directArea) await store.Journal!.WriteBackAsync().AsTask().WaitAsync(Watchdog);
            int pick = r.Next(100);
            if ((i == 2 || pick < 8 + maxSnapshots) && live.Count < maxSnapshots)
            {
                string name = $"s{names++}";
                int start = log.Mark($"create {name} start");
                await store.CreateSnapshotAsync(name).AsTask().WaitAsync(Watchdog);
                ops.Add(new Op(Kind.Create, name, 0, null, start, log.Mark("ack"), (byte[])origin.Clone(), true));
                live.Add(name);
            }
            else if (pick < 11 + maxSnapshots && live.Count > 1)
            {
                string name = live[0];
                int start = log.Mark($"delete {name} start");
                await store.DeleteSnapshotAsync(name).AsTask().WaitAsync(Watchdog);
                ops.Add(new Op(Kind.Delete, name, 0, null, start, log.Mark("ack"), null, true));
                live.RemoveAt(0);
            }
            else if (pick < 35 + maxSnapshots && live.Count > 0)
            {
                string name = live[r.Next(live.Count)];
                int len = r.Next(3) == 0 ? chunkSectors : 1 + r.Next(12);
                long sector = r.Next(3) == 0 ? r.Next(OriginSectors / chunkSectors) * (long)chunkSectors : r.Next(OriginSectors - len + 1);
                if (sector + len > OriginSectors) continue;
                var data = Rand(r, len);
                bool fua = !writeThrough && r.Next(4) == 0;
                int start = log.Mark($"snapshot {name} write {sector}+{len} start");
                await store.GetSnapshot(name).WriteAsync(sector, data, fua ? WriteFlags.Fua : WriteFlags.None).AsTask().WaitAsync(Watchdog);
                ops.Add(new Op(Kind.SnapshotWrite, name, sector, data, start, log.Mark("ack"), null, writeThrough || fua));
            }
            else if (!writeThrough && pick < 45 + maxSnapshots)
            {
                int start = log.Mark("flush start");
                await store.FlushAsync().AsTask().WaitAsync(Watchdog);
                ops.Add(new Op(Kind.Flush, null, 0, null, start, log.Mark("ack"), null, true));
            }
            else if (writers > 1)
            {
                // A burst of writers on disjoint chunks, all at once: their copies and commits share overlapping rounds.
                var chunks = Enumerable.Range(0, OriginSectors / chunkSectors).OrderBy(_ => r.Next()).Take(writers).ToArray();
                var burst = chunks.Select(c =>
                {
                    int len = 1 + r.Next(chunkSectors);
                    long sector = (long)c * chunkSectors + r.Next(chunkSectors - len + 1);
                    return OriginWrite(sector, Rand(r, len), fua: !writeThrough && r.Next(4) == 0);
                }).ToArray();
                await Task.WhenAll(burst).WaitAsync(Watchdog);
            }
            else
            {
                int len = 1 + r.Next(20);
                long sector = r.Next(OriginSectors - len + 1);
                await OriginWrite(sector, Rand(r, len), fua: !writeThrough && r.Next(4) == 0);
            }
        }
        if (deferWrites)
        {
            // The workload did defer writes; the last ones finish (their I/O is in the log) before the states are cut.
            Assert.True(store.GetStatus().DeferredWrites > 0, "no origin write was deferred");
            while (store.GetStatus().DeferredWritesPending > 0) await Task.Delay(1).WaitAsync(Watchdog);
        }
        if (sharedFlushes)
            Assert.True(store.CommitStatistics.CowWriteBacks > 0, $"no COW file rode a shared flush ({store.CommitStatistics})");
        // The process dies here: no close. Every device's fate is decided by the crash state.
        int checkedStates = 0;
        foreach (var state in log.CrashStates(new CrashStateOptions { Seed = seed, FirstPoint = created + 1, MaxPoints = Math.Max(1, States / 3), MaxVariantsPerPoint = 3 }))
        {
            await CheckStateAsync(state, log, p, ops, seed);
            checkedStates++;
        }
        Assert.True(checkedStates >= Math.Min(States / 3, 20), $"only {checkedStates} crash states checked");
    }

    private static byte[] Rand(Random r, int sectors)
    {
        var b = new byte[sectors * 512];
        r.NextBytes(b);
        return b;
    }

    private static async Task CheckStateAsync(CrashState state, WriteLog log, TestDeviceProvider recorded, IReadOnlyList<Op> ops, int seed)
    {
        int point = state.Point;
        var p = new TestDeviceProvider();
        foreach (var dev in log.Devices)
        {
            bool deleted = recorded.Deletions.Any(d => d.Path == dev.Name && d.Position < point);
            if (dev.RegisteredAt > point || deleted) continue;
            // A recreated path (same name, new device) is the later registration.
            var later = log.Devices.Where(x => x.Name == dev.Name && x.RegisteredAt > dev.RegisteredAt && x.RegisteredAt <= point);
            if (later.Any()) continue;
            p.Replace(dev.Name, state.Device(dev.Id));
        }
        string where = $"seed {seed}, {state.Description}";
        SnapshotStore store;
        try
        {
            store = await ReopenAsync(p);
        }
        catch (Exception e)
        {
            throw new Xunit.Sdk.XunitException($"open failed at {where}: {e.Message}");
        }
        try
        {
            // The origin: each sector holds its last acknowledged value, or the value of the write in flight.
            var originGot = await ReadAsync(store.Origin, 0, OriginSectors);
            var baseImage = new byte[OriginSectors * 512];
            int flushedAt = DurableBefore(ops, point);
            CheckVolume("origin", originGot, baseImage, ops.Where(o => o.Kind == Kind.OriginWrite), point, flushedAt, where);

            var present = store.GetStatus().Snapshots.ToDictionary(s => s.Name);
            foreach (var create in ops.Where(o => o.Kind == Kind.Create && o.Start < point))
            {
                string name = create.Snapshot!;
                var delete = ops.FirstOrDefault(o => o.Kind == Kind.Delete && o.Snapshot == name);
                bool mustExist = create.Ack < point && (delete is null || delete.Start >= point);
                bool mustNotExist = delete is not null && delete.Ack < point;
                bool exists = present.ContainsKey(name);
                if (mustExist && !exists) throw new Xunit.Sdk.XunitException($"snapshot {name} (created, acknowledged) is missing at {where}");
                if (mustNotExist && exists) throw new Xunit.Sdk.XunitException($"snapshot {name} (deleted, acknowledged) is back at {where}");
                if (!exists) continue;
                Assert.True(present[name].IsValid, $"snapshot {name} invalid ({present[name].InvalidReason}) at {where}");
                var got = await ReadAsync(store.GetSnapshot(name), 0, OriginSectors);
                CheckVolume(name, got, create.Base!, ops.Where(o => o.Kind == Kind.SnapshotWrite && o.Snapshot == name), point, flushedAt, where);
            }
            foreach (var name in present.Keys)
                Assert.True(ops.Any(o => o.Kind == Kind.Create && o.Snapshot == name && o.Start < point), $"snapshot {name} exists before it was created at {where}");
        }
        finally
        {
            await store.CloseAsync().AsTask().WaitAsync(Watchdog);
        }
    }

    /// <summary>
    /// The log position before which every acknowledged write is durable: the start of the last flush (or snapshot
    /// create, which flushes first) acknowledged before <paramref name="point"/>; -1 if none.
    /// </summary>
    private static int DurableBefore(IReadOnlyList<Op> ops, int point) =>
        ops.Where(o => o.Kind is Kind.Flush or Kind.Create && o.Ack < point).Select(o => o.Start).DefaultIfEmpty(-1).Max();

    /// <summary>
    /// Each sector must hold its last durable value (a write acknowledged before the crash point that was durable when
    /// acknowledged, or acknowledged before a completed flush began), or the value of a write not yet durable.
    /// </summary>
    private static void CheckVolume(string volume, byte[] got, byte[] baseImage, IEnumerable<Op> writes, int point, int flushedAt, string where)
    {
        int sectors = got.Length / 512;
        var definite = (byte[])baseImage.Clone();
        var maybe = new List<Op>();
        foreach (var w in writes.OrderBy(w => w.Ack))
        {
            if (w.Ack < point && (w.Durable || w.Ack < flushedAt)) w.Data!.CopyTo(definite, w.Sector * 512);
            else if (w.Start < point) maybe.Add(w);
        }
        for (int s = 0; s < sectors; s++)
        {
            var g = got.AsSpan(s * 512, 512);
            if (g.SequenceEqual(definite.AsSpan(s * 512, 512))) continue;
            bool ok = false;
            foreach (var w in maybe)
                if (s >= w.Sector && s < w.Sector + w.Data!.Length / 512 && g.SequenceEqual(w.Data.AsSpan((int)(s - w.Sector) * 512, 512))) ok = true;
            if (!ok) throw new Xunit.Sdk.XunitException($"{volume} sector {s} holds neither its acknowledged data nor a write in flight at {where}");
        }
    }
}
