using Journal.Storage;
using Journal.Testing;
using Journal.Tests.Snapshot;
using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Changes;

/// <summary>
/// Changed-block maps after a crash anywhere: every device of the store (origin, superblock, journal log, COW files) is
/// a recording device sharing one write log; a random workload of origin writes, snapshot writes (the first into each
/// snapshot commits its written flag), snapshot creates (each writes its creation marks) and deletes runs, with the
/// journal writing segments home now and then (so the entry order comes partly from the areas on disk, partly from the
/// replayed log). Then, for crash states at flush points spread evenly over all of them (and torn or lost variants of
/// the writes in flight), the store is reopened through its recovery and <see cref="ChangeCheck"/> runs for every
/// snapshot against the origin and every pair: a full copy of the older plus the reported extents of the newer is the newer byte for byte, and no reported
/// chunk lies outside what the workload wrote (writes that had started by the crash point). Size knob:
/// <c>JOURNAL_CBT_CRASH_STATES</c> (default 150 states per case: half as many points, two variants each; a large value
/// visits every flush point).
/// </summary>
public class ChangeCrashMatrixTests
{
    private static int States => int.TryParse(Environment.GetEnvironmentVariable("JOURNAL_CBT_CRASH_STATES"), out int n) && n > 0 ? n : 150;

    private const int OriginSectors = 8 * 48;

    private enum Kind { OriginWrite, SnapshotWrite, Create, Delete }

    private sealed record Op(Kind Kind, string Volume, long Sector, int Sectors, int Start);

    [Theory]
    [InlineData(11, 8)]
    [InlineData(12, 16)]
    [InlineData(13, 1)]
    public async Task After_a_crash_anywhere_every_map_covers_every_difference_and_only_what_was_written(int seed, int chunkSectors)
    {
        var log = new WriteLog();
        var p = new TestDeviceProvider { Log = log };
        var r = new Random(seed);
        var o = p.Options(new StoreOptions { OriginSectors = OriginSectors, ChunkSectors = chunkSectors, WriteThrough = true, CowGrowthBytes = 1 << 20, LogBlocks = 2048 });
        var store = await SnapshotStore.CreateAsync(Folder, o).AsTask().WaitAsync(Watchdog);
        var ops = new List<Op>();
        for (long s = 0; s < OriginSectors; s += 64) await WriteAsync(store.Origin, s, Rand(r, 64));
        int created = log.Mark("store filled");
        var live = new List<string>();
        int names = 0;
        for (int i = 0; i < 70; i++)
        {
            if (i % 6 == 5) await store.Journal!.WriteBackAsync().AsTask().WaitAsync(Watchdog);
            int pick = r.Next(100);
            if ((i == 1 || pick < 10) && live.Count < 4)
            {
                string name = $"s{names++}";
                ops.Add(new Op(Kind.Create, name, 0, 0, log.Mark($"create {name}")));
                await store.CreateSnapshotAsync(name).AsTask().WaitAsync(Watchdog);
                live.Add(name);
            }
            else if (pick < 13 && live.Count > 2)
            {
                string name = live[r.Next(live.Count)];
                ops.Add(new Op(Kind.Delete, name, 0, 0, log.Mark($"delete {name}")));
                await store.DeleteSnapshotAsync(name).AsTask().WaitAsync(Watchdog);
                live.Remove(name);
            }
            else if (pick < 33 && live.Count > 0)
            {
                string name = live[r.Next(live.Count)];
                int len = r.Next(3) == 0 ? chunkSectors : 1 + r.Next(2 * chunkSectors);
                long sector = r.Next(OriginSectors - len + 1);
                ops.Add(new Op(Kind.SnapshotWrite, name, sector, len, log.Mark($"write {name} {sector}+{len}")));
                await WriteAsync(store.GetSnapshot(name), sector, Rand(r, len));
            }
            else
            {
                int len = 1 + r.Next(3 * chunkSectors);
                long sector = r.Next(OriginSectors - len + 1);
                ops.Add(new Op(Kind.OriginWrite, "origin", sector, len, log.Mark($"write origin {sector}+{len}")));
                await WriteAsync(store.Origin, sector, Rand(r, len));
            }
        }
        // The process dies here: no close.
        int checkedStates = 0, maps = 0;
        foreach (var state in log.CrashStates(new CrashStateOptions { Seed = seed, FirstPoint = created + 1, MaxPoints = Math.Max(1, States / 2), MaxVariantsPerPoint = 2 }))
        {
            maps += await CheckStateAsync(state, log, p, ops, chunkSectors, seed);
            checkedStates++;
        }
        Assert.True(checkedStates >= Math.Min(States / 2, 20), $"only {checkedStates} crash states checked");
        Assert.True(maps > checkedStates, $"only {maps} maps checked in {checkedStates} states");
    }

    private static byte[] Rand(Random r, int sectors)
    {
        var b = new byte[sectors * 512];
        r.NextBytes(b);
        return b;
    }

    private static async Task<int> CheckStateAsync(CrashState state, WriteLog log, TestDeviceProvider recorded, IReadOnlyList<Op> ops, int chunkSectors, int seed)
    {
        int point = state.Point;
        var p = new TestDeviceProvider();
        foreach (var dev in log.Devices)
        {
            bool deleted = recorded.Deletions.Any(d => d.Path == dev.Name && d.Position < point);
            if (dev.RegisteredAt > point || deleted) continue;
            if (log.Devices.Any(x => x.Name == dev.Name && x.RegisteredAt > dev.RegisteredAt && x.RegisteredAt <= point)) continue;
            p.Replace(dev.Name, state.Device(dev.Id));
        }
        // What the workload had started by the crash point is all a map may report.
        var history = new WriteHistory(chunkSectors);
        foreach (var op in ops.Where(x => x.Start < point))
        {
            if (op.Kind == Kind.Create) history.Created(op.Volume);
            else if (op.Kind is Kind.OriginWrite or Kind.SnapshotWrite) history.Wrote(op.Volume, op.Sector, op.Sectors);
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
            foreach (var s in store.GetStatus().Snapshots)
                Assert.True(s.IsValid, $"snapshot {s.Name} invalid ({s.InvalidReason}) at {where}");
            return await ChangeCheck.CheckAllAsync(store, history, exact: false, where);
        }
        finally
        {
            await store.CloseAsync().AsTask().WaitAsync(Watchdog);
        }
    }
}
