using System.Collections.Concurrent;
using Journal.Format;
using static Journal.Tests.Cil.JournalFixture;

namespace Journal.Tests.Cil;

/// <summary>
/// A random concurrent workload (commits, relogs of growing and shrinking items, forces, background pushes, AIL
/// write-back) runs while every flush of the log and of the home device is recorded in one global order. Every
/// recorded point is a crash state (durable log as of that point, durable home copies as of that point); recovery
/// from each must yield exactly the committed state of some prefix of checkpoints that contains every checkpoint
/// whose force had returned by then.
/// </summary>
/// <remarks>Size knob: JOURNAL_CRASH_COMMITS (default 1500 commits, a few hundred crash states).</remarks>
public sealed class CheckpointCrashMatrixTests
{
    private abstract record Event;
    private sealed record LogFlush(long Durable) : Event;
    private sealed record HomeFlush(Dictionary<ulong, (byte[] Data, Lsn Lsn)> Durable) : Event;
    private sealed record ForceReturned(ulong Sequence) : Event;

    [Fact]
    public async Task EveryFlushPoint_RecoversAPrefixOfCheckpoints_ContainingEveryForcedOne()
    {
        int commits = int.TryParse(Environment.GetEnvironmentVariable("JOURNAL_CRASH_COMMITS"), out var n) ? n : 1500;
        var events = new List<Event>();
        var sink = new MemoryLogSink(4096, 4096);
        var j = MetadataJournal.Create(sink, SmallOptions(4096, b => b.Soft = 24 << 10));
        var home = new TestHome();
        sink.OnFlushed = d => { lock (events) events.Add(new LogFlush(d)); };
        home.OnFlushed = d => { lock (events) events.Add(new HomeFlush(d)); };

        const int workers = 4, perWorker = 6;
        var items = Enumerable.Range(0, workers * perWorker).Select(i => new TestItem(home, (ulong)i) { Regions = 1 + i % 3 }).ToArray();
        var committed = new ConcurrentBag<(ulong Item, long Version, ulong Seq)>();
        using var stop = new CancellationTokenSource();

        var writer = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await j.WriteBackAsync();
                await Task.Delay(2);
            }
        });
        var tasks = Enumerable.Range(0, workers).Select(w => Task.Run(async () =>
        {
            var rnd = new Random(100 + w);
            var versions = new long[perWorker];
            for (int i = 0; i < commits / workers; i++)
            {
                int k = rnd.Next(perWorker);
                var item = items[w * perWorker + k];
                long v = ++versions[k];
                ulong seq = await CommitAsync(j, item, v, 8 + rnd.Next(600));
                committed.Add((item.ItemId, v, seq));
                if (rnd.Next(10) == 0)
                {
                    await j.ForceAsync(seq);
                    lock (events) events.Add(new ForceReturned(seq));
                }
                if (w == 0 && i % 50 == 49) await j.WriteBackAsync(); // write-back interleaved with commits, for sure
            }
        })).ToArray();
        await Task.WhenAll(tasks).Within(j, TimeSpan.FromSeconds(120));
        stop.Cancel();
        await writer.WaitAsync(Watchdog);
        sink.OnFlushed = null;
        home.OnFlushed = null;

        // The committed state of each prefix of checkpoints.
        var byItem = committed.GroupBy(c => c.Item).ToDictionary(g => g.Key, g => g.OrderBy(c => c.Version).ToArray());
        long ModelVersion(ulong item, ulong prefix)
        {
            long v = 0;
            foreach (var c in byItem[item]) if (c.Seq <= prefix) v = Math.Max(v, c.Version);
            return v;
        }
        ulong maxSeq = committed.Max(c => c.Seq);

        Event[] log;
        lock (events) log = [.. events];
        long durable = -1;
        var homeState = new Dictionary<ulong, (byte[] Data, Lsn Lsn)>();
        ulong forced = 0;
        int states = 0;
        foreach (var e in log)
        {
            switch (e)
            {
                case ForceReturned f: forced = Math.Max(forced, f.Sequence); continue;
                case LogFlush lf: durable = lf.Durable; break;
                case HomeFlush hf: homeState = hf.Durable; break;
            }
            states++;
            var image = sink.ImageAt(durable);
            var recovered = TestHome.FromDurable(homeState);
            var reader = new Journal.Recovery.CheckpointReader("memory-log");
            var checkpoints = new List<Journal.Recovery.Checkpoint>();
            image.Recover((start, regions) => checkpoints.Add(reader.Read(0, start, start, regions)));
            Journal.Recovery.JournalRecovery.Replay("memory-log", checkpoints, new Dictionary<ushort, IItemRecoveryHandler> { [TestHome.ItemType] = recovered });
            recovered.Complete();

            var got = byItem.Keys.ToDictionary(id => id, id => recovered.TryGet(id, out var d, out _) ? TestItem.VersionOf(d) : 0);
            bool matched = false;
            for (ulong p = forced; p <= maxSeq && !matched; p++)
                matched = byItem.Keys.All(id => got[id] == ModelVersion(id, p));
            Assert.True(matched, $"crash state {states}: recovered {string.Join(",", got.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key}:{kv.Value}"))} is no prefix of checkpoints >= {forced}");
        }
        Assert.True(states > 50, $"only {states} crash states");
        Assert.True(log.OfType<HomeFlush>().Any() && log.OfType<ForceReturned>().Any());
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }
}
