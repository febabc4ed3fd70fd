using Journal.Testing;
using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;
using Journal.Tests.Snapshot;

namespace Journal.Tests.Changes;

/// <summary>
/// Random workloads of origin writes, snapshot writes, snapshot creates, deletes and reopens (memory devices), with
/// every map checked after every few steps (<see cref="ChangeCheck"/>): for each snapshot against the origin and every
/// pair, the reported chunks are exactly those whose contents differ (the data is random, so no write of identical data
/// happens by chance), a copy of the older volume plus the reported extents is the newer, and nothing outside what the
/// workload wrote is reported. Runs in journal mode and in direct-area mode (whose metadata is all on disk), with chunk
/// sizes of 1, 8 and 32 sectors (512-byte chunks take two chunks of creation marks). Size knob:
/// <c>JOURNAL_CBT_MODEL_ROUNDS</c> (default 2).
/// </summary>
public class ChangeMapModelTests
{
    private static int Rounds => int.TryParse(Environment.GetEnvironmentVariable("JOURNAL_CBT_MODEL_ROUNDS"), out int n) && n > 0 ? n : 2;

    private const int OriginSectors = 8 * 64;

    private static byte[] Data(Random r, int sectors)
    {
        var b = new byte[sectors * 512];
        r.NextBytes(b);
        return b;
    }

    [Theory]
    [InlineData(1, 8, false)]
    [InlineData(2, 1, false)]
    [InlineData(3, 32, false)]
    [InlineData(4, 8, true)]
    public async Task Maps_are_exact_for_every_pair_and_against_the_origin(int seed, int chunkSectors, bool directArea)
    {
        var mode = directArea ? MetadataMode.DirectArea : MetadataMode.Journal;
        for (int round = 0; round < Rounds; round++)
        {
            var r = new Random(seed * 1000 + round);
            var p = new TestDeviceProvider();
            var o = p.Options(new StoreOptions { OriginSectors = OriginSectors, ChunkSectors = chunkSectors, MetadataMode = mode, LogBlocks = 2048 });
            var store = await SnapshotStore.CreateAsync(Folder, o).AsTask().WaitAsync(Watchdog);
            var history = new WriteHistory(chunkSectors);
            var live = new List<string>();
            int names = 0, maps = 0;
            try
            {
                for (long s = 0; s < OriginSectors; s += 64) await WriteAsync(store.Origin, s, Data(r, 64));
                for (int step = 0; step < 160; step++)
                {
                    int op = r.Next(100);
                    if (op < 45)
                    {
                        int len = 1 + r.Next(3 * chunkSectors);
                        long at = r.Next(OriginSectors - len + 1);
                        history.Wrote("origin", at, len);
                        await WriteAsync(store.Origin, at, Data(r, len));
                    }
                    else if (op < 60 && live.Count > 0)
                    {
                        string name = live[r.Next(live.Count)];
                        int len = r.Next(3) == 0 ? chunkSectors : 1 + r.Next(2 * chunkSectors);
                        long at = r.Next(3) == 0 ? r.Next(OriginSectors / chunkSectors) * (long)chunkSectors : r.Next(OriginSectors - len + 1);
                        if (at + len > OriginSectors) continue;
                        history.Wrote(name, at, len);
                        await WriteAsync(store.GetSnapshot(name), at, Data(r, len));
                    }
                    else if (op < 72 && live.Count < 6)
                    {
                        string name = $"s{names++}";
                        history.Created(name);
                        bool persistent = r.Next(5) != 0;
                        await store.CreateSnapshotAsync(name, new SnapshotOptions { Persistent = persistent }).AsTask().WaitAsync(Watchdog);
                        live.Add(name);
                    }
                    else if (op < 76 && live.Count > 0)
                    {
                        string name = live[r.Next(live.Count)];
                        await store.DeleteSnapshotAsync(name).AsTask().WaitAsync(Watchdog);
                        live.Remove(name);
                    }
                    else if (op < 80)
                    {
                        await store.CloseAsync().AsTask().WaitAsync(Watchdog);
                        store = await SnapshotStore.OpenAsync(Folder, p.Options(new StoreOptions { MetadataMode = mode })).AsTask().WaitAsync(Watchdog);
                        // Transient snapshots come back invalid: their maps are errors (checked), and they go.
                        foreach (var gone in store.GetStatus().Snapshots.Where(x => !x.IsValid).Select(x => x.Name).ToList())
                        {
                            await ChangeCheck.CheckAllAsync(store, history, exact: true, $"seed {seed} round {round} step {step} (reopened)");
                            await store.DeleteSnapshotAsync(gone).AsTask().WaitAsync(Watchdog);
                            live.Remove(gone);
                        }
                    }
                    if (step % 8 == 7) maps += await ChangeCheck.CheckAllAsync(store, history, exact: true, $"seed {seed} round {round} step {step}");
                }
                maps += await ChangeCheck.CheckAllAsync(store, history, exact: true, $"seed {seed} round {round} end");
                Assert.True(maps > 20, $"only {maps} maps checked");
            }
            finally
            {
                await store.CloseAsync().AsTask().WaitAsync(Watchdog);
            }
        }
    }
}
