using System.Collections.Concurrent;
using Journal.Format;
using Journal.Storage;
using Journal.Testing;
using static Journal.Tests.Cil.JournalFixture;
using static Journal.Tests.Cil.LogIntegrationTests;

namespace Journal.Tests.Cil;

/// <summary>
/// The crash matrix on the real log: the log and the items' home device are recording devices sharing one write log.
/// A random concurrent workload (commits, relogs of growing and shrinking items, forces, background pushes, AIL
/// write-back, and a clean close at the end) runs once; then every crash state the write log yields (at every flush
/// point, with the writes in flight kept, lost, torn or reordered) is recovered with <see cref="MetadataJournal.Open"/>,
/// and the items' home copies must equal the committed state of some prefix of checkpoints that contains every
/// checkpoint whose force had returned before the crash point.
/// </summary>
/// <remarks>
/// Size knobs: JOURNAL_CRASH_COMMITS (default 2000 commits: about 250 flushes, 950 crash states, 2 s) and
/// JOURNAL_CRASH_STATES (the most crash points to visit, evenly spaced; default all of them, up to 3 variants each).
/// </remarks>
public sealed class RecordingCrashMatrixTests
{
    private const uint LogBlocks = 1024;
    private const int Workers = 4, PerWorker = 6;

    [Fact]
    public async Task EveryCrashState_RecoversAPrefixOfCheckpoints_ContainingEveryForcedOne()
    {
        int commits = int.TryParse(Environment.GetEnvironmentVariable("JOURNAL_CRASH_COMMITS"), out var c) ? c : 2000;
        int points = int.TryParse(Environment.GetEnvironmentVariable("JOURNAL_CRASH_STATES"), out var p) ? p : int.MaxValue;
        var wlog = new WriteLog();
        var logRec = new RecordingBlockDevice(new MemoryBlockDevice(LogBlocks, "log"), wlog, "log");
        var homeRec = new RecordingBlockDevice(new MemoryBlockDevice(DeviceHome.SectorsFor(Workers * PerWorker), "home"), wlog, "home");
        var options = RealOptions(LogBlocks, b => b.Soft = 16 << 10);
        var j = MetadataJournal.Create(new LogRegion(logRec, 0, LogBlocks), options);
        var home = new DeviceHome(homeRec);
        var items = Enumerable.Range(0, Workers * PerWorker).Select(i => new TestItem(home, (ulong)i) { Regions = 1 + i % 3 }).ToArray();
        var committed = new ConcurrentBag<(ulong Item, long Version, ulong Seq)>();
        int firstPoint = wlog.Count; // after the format

        using (var stop = new CancellationTokenSource())
        {
            var writer = Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    await j.WriteBackAsync();
                    await Task.Delay(3);
                }
            });
            var tasks = Enumerable.Range(0, Workers).Select(w => Task.Run(async () =>
            {
                var rnd = new Random(7 + w);
                var versions = new long[PerWorker];
                for (int i = 0; i < commits / Workers; i++)
                {
                    int k = rnd.Next(PerWorker);
                    var item = items[w * PerWorker + k];
                    long v = ++versions[k];
                    ulong seq = await CommitAsync(j, item, v, 8 + rnd.Next(DeviceHome.MaxData - 8));
                    committed.Add((item.ItemId, v, seq));
                    if (rnd.Next(8) == 0)
                    {
                        await j.ForceAsync(seq);
                        wlog.Mark($"forced {seq}");
                    }
                    if (w == 0 && i % 50 == 49) await j.WriteBackAsync(); // write-back interleaved with commits, for sure
                }
            })).ToArray();
            await Task.WhenAll(tasks).Within(j, TimeSpan.FromSeconds(120));
            stop.Cancel();
            await writer.WaitAsync(Watchdog);
        }
        ulong last = await j.ForceAllAsync();
        wlog.Mark($"forced {last}");
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);

        var byItem = committed.GroupBy(x => x.Item).ToDictionary(g => g.Key, g => g.ToArray());
        long Model(ulong item, ulong prefix) => byItem.TryGetValue(item, out var list) ? list.Where(x => x.Seq <= prefix).Select(x => x.Version).DefaultIfEmpty(0).Max() : 0;
        ulong maxSeq = committed.Max(x => x.Seq);
        var entries = wlog.Entries;
        var forcedAt = new ulong[entries.Count + 1];
        for (int i = 0; i < entries.Count; i++)
        {
            forcedAt[i + 1] = forcedAt[i];
            if (entries[i].Kind == WriteLogEntryKind.Mark && entries[i].Note!.StartsWith("forced "))
                forcedAt[i + 1] = Math.Max(forcedAt[i], ulong.Parse(entries[i].Note!["forced ".Length..]));
        }

        int states = 0, torn = 0, replayedSome = 0;
        foreach (var state in wlog.CrashStates(new CrashStateOptions { Seed = 3, MaxVariantsPerPoint = 3, MaxPoints = points, FirstPoint = firstPoint }))
        {
            states++;
            if (state.Torn.Count > 0) torn++;
            ulong forced = forcedAt[state.Point];
            var logDev = state.Device(logRec.DeviceId);
            var recoveredHome = new DeviceHome(state.Device(homeRec.DeviceId));
            MetadataJournal j2;
            try
            {
                j2 = MetadataJournal.Open(new LogRegion(logDev, 0, LogBlocks), options, Handlers(recoveredHome));
            }
            catch (Exception e)
            {
                Assert.Fail($"crash state {state}: recovery failed: {e.Message}");
                throw;
            }
            if (j2.RecoveredCheckpoints > 0) replayedSome++;
            await j2.CloseAsync().AsTask().WaitAsync(Watchdog);

            var got = items.ToDictionary(it => it.ItemId, it => recoveredHome.TryGet(it.ItemId, out var d, out _) ? TestItem.VersionOf(d) : 0);
            bool matched = false;
            for (ulong pfx = forced; pfx <= maxSeq && !matched; pfx++)
                matched = items.All(it => got[it.ItemId] == Model(it.ItemId, pfx));
            Assert.True(matched, $"crash state {state}: recovered {string.Join(",", got.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key}:{kv.Value}"))} is no prefix of checkpoints containing {forced}");
        }
        Assert.True(states >= 50, $"only {states} crash states");
        Assert.True(torn > 0 && replayedSome > 0, $"{states} states, {torn} torn, {replayedSome} replayed checkpoints");
    }
}
