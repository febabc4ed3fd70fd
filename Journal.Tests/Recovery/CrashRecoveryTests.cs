using Journal.Format;
using Journal.Log;
using Journal.Recovery;
using Journal.Storage;
using Journal.Testing;
using Journal.Tests.Log;
using Xunit.Abstractions;
using static Journal.Tests.Log.LogTestUtil;

namespace Journal.Tests.Recovery;

/// <summary>
/// Crash tests: a concurrent workload runs on a recording device; the device image is rebuilt at every flush and at
/// torn variants of the writes between flushes, and recovery must find every transaction whose force returned.
/// </summary>
/// <remarks>
/// The workload runs on a <see cref="RecordingBlockDevice"/> over a device whose writes and flushes complete
/// asynchronously and out of order; <see cref="WriteLog.CrashStates"/> gives the states: just before and just after
/// every flush, each with the writes in flight kept, lost, torn or reordered.
/// Size knob: <c>JOURNAL_CRASH_STATES</c> (default 3000) is the number of crash states checked per run, split between
/// the seeds below. Each state costs one image rebuild and two recoveries; every 40th state also opens a writer on
/// the recovered log, writes more, and recovers again at crash states of that second run.
/// </remarks>
public class CrashRecoveryTests(ITestOutputHelper output)
{
    private const uint LogBlocks = 256;
    private const long LogStart = 3;
    private static readonly LogWriterOptions Options = new() { IclogCount = 4, IclogSize = 2048 };

    private static int StatesBudget =>
        int.TryParse(Environment.GetEnvironmentVariable("JOURNAL_CRASH_STATES"), out int n) && n > 0 ? n : 3000;

    private sealed class Txn
    {
        public required uint Tid;
        public required int Writer;
        public required int Seq;
        public required byte[][] Regions;
        public Lsn Start;
        public int ForcedAt = int.MaxValue;   // recording count when its force returned
    }

    private sealed class Workload
    {
        public required WriteLog Log;
        public required int DeviceId;
        public required Dictionary<uint, Txn> Txns;
        public required List<(int At, Lsn Tail)> TailMoves;
        public required uint MaxCycle;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task Every_forced_transaction_survives_a_crash_at_any_flush_or_torn_write(int seed)
    {
        var wl = await RunWorkload(seed, transactionsPerWriter: 220, writers: 3);
        Assert.True(wl.MaxCycle >= 3, $"the workload only reached cycle {wl.MaxCycle}; it must wrap at least twice");
        int budget = Math.Max(40, StatesBudget / 2);
        // Small budgets: the points around each flush. Large ones: a point after every log entry, more variants each.
        int variants = budget > 8000 ? 8 : 4;
        bool everyEntry = budget > 3000;
        var rng = new Random(seed * 1000 + 7);

        int states = 0, torn = 0, secondRuns = 0, maxInFlight = 0;
        byte[]? buffer = null;
        foreach (var st in wl.Log.CrashStates(new CrashStateOptions { Seed = seed, EveryEntry = everyEntry, MaxVariantsPerPoint = variants, MaxPoints = Math.Max(2, budget / variants) }))
        {
            st.Image(wl.DeviceId, ref buffer);
            maxInFlight = Math.Max(maxInFlight, st.InFlight.Count);
            if (st.Torn.Count > 0) torn++;
            CheckState(wl, buffer, st.Point, st.Description, rng, ref secondRuns, states);
            states++;
        }
        output.WriteLine($"seed {seed}: {wl.Log.Count} log entries, {states} crash states ({torn} with a torn write, up to {maxInFlight} writes in flight), " +
            $"{secondRuns} second runs, max cycle {wl.MaxCycle}");
        Assert.True(maxInFlight >= 2, "the workload never had two writes in flight at once");
        Assert.True(torn > 0, "no crash state tore a write");
        Assert.True(states >= Math.Min(budget / 2, 40));
    }

    private static async Task<Workload> RunWorkload(int seed, int transactionsPerWriter, int writers)
    {
        var inner = new TestMemoryDevice(LogStart + LogBlocks + 2, "crash");
        LogWriter.Format(new LogRegion(inner, LogStart, LogBlocks));
        var gateRng = new Random(seed);
        // Writes finish asynchronously and out of order; flushes are slow, so several records are usually written
        // between two flushes.
        inner.WriteGate = _ => { int r; lock (gateRng) r = gateRng.Next(4); return r == 0 ? Task.Delay(1) : Task.Run(() => { }); };
        inner.FlushGate = () => { int r; lock (gateRng) r = gateRng.Next(4); return r == 0 ? Task.Run(() => { }) : Task.Delay(1); };
        var log = new WriteLog();
        var dev = new RecordingBlockDevice(inner, log, "crash", leaveOpen: true);
        var region = new LogRegion(dev, LogStart, LogBlocks);

        var txns = new Dictionary<uint, Txn>();
        var tailMoves = new List<(int, Lsn)>();
        var inFlight = new SortedSet<(Lsn Start, uint Tid)>();
        var forcedStarts = new List<Lsn>();
        var sync = new object();
        uint maxCycle = 0;
        await using (var w = LogWriter.Open(region, Options))
        {
            async Task Writer(int id)
            {
                var rng = new Random(seed * 100 + id);
                for (int seq = 0; seq < transactionsPerWriter; seq++)
                {
                    int nRegions = rng.Next(1, 4);
                    var regions = new byte[nRegions][];
                    for (int r = 0; r < nRegions; r++)
                    {
                        int size = rng.Next(10) switch { < 4 => 64, < 7 => 512, < 9 => 2000, _ => 5000 };
                        regions[r] = new byte[size + rng.Next(0, 50)];
                        rng.NextBytes(regions[r]);
                    }
                    uint tid = w.AllocateTransactionId();
                    var t = new Txn { Tid = tid, Writer = id, Seq = seq, Regions = regions };
                    // Register before writing so the tail never passes a transaction being written.
                    lock (sync) { txns[tid] = t; t.Start = w.Head; inFlight.Add((t.Start, tid)); }
                    var start = await w.WriteAsync(tid, regions.Select(b => (ReadOnlyMemory<byte>)b).ToArray(), start: true);
                    lock (sync) { inFlight.Remove((t.Start, tid)); t.Start = start; inFlight.Add((start, tid)); }
                    var commit = await w.WriteCommitAsync(tid);
                    if (rng.Next(3) != 0)
                    {
                        await w.ForceAsync(commit);
                        int at = log.Mark($"force returned for transaction {tid:x}");
                        lock (sync) { t.ForcedAt = at; forcedStarts.Add(t.Start); }
                    }
                    lock (sync)
                    {
                        inFlight.Remove((t.Start, tid));
                        maxCycle = Math.Max(maxCycle, commit.Cycle);
                        // Keep the last few forced transactions; never pass one still being written.
                        if (forcedStarts.Count > 6)
                        {
                            var cand = forcedStarts.OrderDescending().ElementAt(5);
                            if (inFlight.Count > 0 && inFlight.Min.Start < cand) cand = inFlight.Min.Start;
                            if (cand > w.Tail)
                            {
                                tailMoves.Add((log.Mark($"tail moved to {cand}"), cand));
                                w.MoveTail(cand);
                            }
                        }
                    }
                }
            }
            await Task.WhenAll(Enumerable.Range(0, writers).Select(i => Task.Run(() => Writer(i)))).WaitAsync(TimeSpan.FromSeconds(60));
            // The unmount record declares everything before it written home: no transaction is required after it.
            tailMoves.Add((log.Mark("unmount"), new Lsn(uint.MaxValue, 0)));
            await w.WriteUnmountAsync().AsTask().WaitAsync(Watchdog);
        }
        return new Workload { Log = log, DeviceId = dev.DeviceId, Txns = txns, TailMoves = tailMoves, MaxCycle = maxCycle };
    }

    /// <summary>Recovers one crash image and checks every promise; sometimes continues writing on it and crashes again.</summary>
    private static void CheckState(Workload wl, byte[] img, int point, string what, Random rng, ref int secondRuns, int stateNo)
    {
        var dev = MemoryBlockDevice.Wrap(img, "crash");
        var region = new LogRegion(dev, LogStart, LogBlocks);
        List<RecoveredTransaction> got;
        RecoveryResult res;
        try
        {
            got = RecoverAll(region, out res);
        }
        catch (Exception e)
        {
            throw new Xunit.Sdk.XunitException($"{what}: recovery threw {e.GetType().Name}: {e.Message}");
        }
        Assert.True(dev.Counters.Writes == 0, $"{what}: recovery wrote to the device");
        CheckDelivered(wl, got, point, what);

        // Recovering twice gives the same answer.
        var again = RecoverAll(region, out var res2);
        Assert.Equal(Describe(got), Describe(again));
        Assert.Equal(res.ToString(), res2.ToString());

        if (stateNo % 40 == 0)
        {
            secondRuns++;
            SecondRun(wl, (byte[])img.Clone(), got, res, what, rng);
        }
    }

    private static void CheckDelivered(Workload wl, List<RecoveredTransaction> got, int point, string what)
    {
        var seen = new HashSet<uint>();
        var lastSeqByWriter = new Dictionary<int, int>();
        Lsn prevCommit = Lsn.Zero;
        foreach (var g in got)
        {
            Assert.True(wl.Txns.TryGetValue(g.TransactionId, out var t), $"{what}: unknown transaction {g.TransactionId:x}");
            Assert.True(seen.Add(g.TransactionId), $"{what}: transaction {g.TransactionId:x} delivered twice");
            Assert.True(g.CommitLsn >= prevCommit, $"{what}: delivered out of commit order");
            prevCommit = g.CommitLsn;
            Assert.True(!lastSeqByWriter.TryGetValue(t!.Writer, out int ps) || ps < t.Seq, $"{what}: writer {t.Writer} transactions out of order");
            lastSeqByWriter[t.Writer] = t.Seq;
            Assert.True(g.Regions.Count == t.Regions.Length, $"{what}: transaction {g.TransactionId:x} has {g.Regions.Count} regions, wrote {t.Regions.Length}");
            for (int i = 0; i < t.Regions.Length; i++)
                Assert.True(g.Regions[i].Span.SequenceEqual(t.Regions[i]), $"{what}: transaction {g.TransactionId:x} region {i} differs");
            Assert.Equal(t.Start, g.StartLsn);
        }
        Lsn movedTo = Lsn.Zero;
        foreach (var (at, tail) in wl.TailMoves) if (at < point) movedTo = Lsn.Max(movedTo, tail);
        foreach (var t in wl.Txns.Values)
        {
            if (t.ForcedAt < point && t.Start >= movedTo)
                Assert.True(seen.Contains(t.Tid), $"{what}: forced transaction {t.Tid:x} (start {t.Start}, force returned at entry {t.ForcedAt}) is missing; tail moved to {movedTo}");
        }
    }

    /// <summary>
    /// Opens a writer on the recovered log, writes more with recording on, and recovers at crash states of that run:
    /// the first recovery's transactions come back unchanged, followed by whatever of the new ones was forced.
    /// </summary>
    private static void SecondRun(Workload wl, byte[] img, List<RecoveredTransaction> first, RecoveryResult firstResult, string what, Random rng)
    {
        var log = new WriteLog();
        var dev = new RecordingBlockDevice(MemoryBlockDevice.Wrap(img, "crash2"), log, "crash2");
        var region = new LogRegion(dev, LogStart, LogBlocks);
        var res = LogRecovery.Recover(region);
        var added = new List<(uint Tid, byte[] Data, int ForcedAt)>();
        using (var w = LogWriter.Open(region, res, Options))
        {
            Assert.True(w.Tail == firstResult.TailLsn, $"{what}: writer tail {w.Tail} is not the recovered tail {firstResult.TailLsn}");
            for (int i = 0; i < 4; i++)
            {
                uint tid = w.AllocateTransactionId();
                Assert.True(first.All(f => f.TransactionId != tid), $"{what}: reused transaction id {tid:x}");
                var data = Payload(999, i, 300 + 1500 * i);
                var lsn = w.WriteTransactionAsync(tid, [data]).AsTask().WaitAsync(Watchdog).GetAwaiter().GetResult();
                int forcedAt = int.MaxValue;
                if (i % 2 == 1)
                {
                    w.ForceAsync(lsn).AsTask().WaitAsync(Watchdog).GetAwaiter().GetResult();
                    forcedAt = log.Mark($"force returned for {tid:x}");
                }
                added.Add((tid, data, forcedAt));
            }
        }
        foreach (var st in log.CrashStates(new CrashStateOptions { Seed = rng.Next(), MaxVariantsPerPoint = 3, MaxPoints = 4 }))
        {
            var got = RecoverAll(new LogRegion(st.Device(dev.DeviceId), LogStart, LogBlocks), out _);
            string w2 = $"{what}; second run: {st.Description}";
            Assert.True(got.Count >= first.Count, $"{w2}: {got.Count} transactions, first recovery had {first.Count}");
            Assert.Equal(Describe(first), Describe(got.Take(first.Count)));
            var extra = got.Skip(first.Count).ToList();
            foreach (var e in extra)
            {
                var a = added.Single(x => x.Tid == e.TransactionId);
                Assert.True(e.Regions[0].Span.SequenceEqual(a.Data), $"{w2}: new transaction differs");
            }
            foreach (var a in added.Where(a => a.ForcedAt < st.Point))
                Assert.True(extra.Any(e => e.TransactionId == a.Tid), $"{w2}: forced new transaction {a.Tid:x} missing");
        }
    }

    private static string Describe(IEnumerable<RecoveredTransaction> ts) =>
        string.Join("\n", ts.Select(t => $"{t} {Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(t.Regions.SelectMany(r => r.ToArray()).ToArray()))}"));
}
