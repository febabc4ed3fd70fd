using Journal.Format;
using Journal.Log;
using Journal.Recovery;
using Journal.Tests.Log;
using Xunit.Abstractions;
using static Journal.Tests.Log.LogTestUtil;

namespace Journal.Tests.Recovery;

/// <summary>
/// Crash tests: a concurrent workload runs on a recording device; the device image is rebuilt at every flush and at
/// torn variants of the writes between flushes, and recovery must find every transaction whose force returned.
/// </summary>
/// <remarks>
/// Size knob: <c>JOURNAL_CRASH_STATES</c> (default 3000) is the number of crash states checked per run, split between
/// the seeds below. Each state costs one image rebuild and one recovery; every 40th state also opens a writer on the
/// recovered log, writes more, and recovers again at crash points of that second run.
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
        public required byte[] BaseImage;
        public required List<DeviceOp> Ops;
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
        int budget = Math.Max(50, StatesBudget / 2);
        var rng = new Random(seed * 1000 + 7);

        var flushes = new List<int>();
        for (int i = 0; i < wl.Ops.Count; i++) if (wl.Ops[i].IsFlush) flushes.Add(i);
        // A third of the budget for the states right after a flush, the rest for torn variants between flushes.
        int flushStates = Math.Min(flushes.Count, budget / 3);
        double extraChance = (double)flushStates / Math.Max(1, flushes.Count);
        int windowsWithWrites = 0;
        { int lf = -1; foreach (int f in flushes.Append(wl.Ops.Count)) { if (f > lf + 1) windowsWithWrites++; lf = f; } }
        double perWindow = (double)(budget - flushStates) / Math.Max(1, windowsWithWrites);

        int states = 0, torn = 0, secondRuns = 0;
        // Walk the operations once, keeping the image as of the last flush.
        var durable = (byte[])wl.BaseImage.Clone();
        int applied = 0, lastFlush = -1;
        foreach (int f in flushes.Append(wl.Ops.Count))
        {
            int windowStart = lastFlush + 1;              // ops [windowStart, f) are unflushed until f
            // Torn variants inside the window.
            int variants = f > windowStart ? (int)perWindow + (rng.NextDouble() < perWindow % 1 ? 1 : 0) : 0;
            for (int v = 0; v < variants; v++)
            {
                int k = rng.Next(windowStart + 1, f + 1);
                double p = (v % 3) switch { 0 => 0.5, 1 => 0.9, _ => 0.1 };
                var keep = new Dictionary<(int, long), bool>();
                var img = BuildFrom(durable, wl.Ops, windowStart, k, (i, s) =>
                {
                    if (!keep.TryGetValue((i, s), out bool b)) keep[(i, s)] = b = rng.NextDouble() < p;
                    return b;
                });
                CheckState(wl, img, k, $"seed {seed} torn state at op {k} (window {windowStart}..{f}, p={p})", rng, ref secondRuns, states);
                states++; torn++;
            }
            // Apply the window and the flush itself: the state right after the flush.
            for (; applied < Math.Min(f + 1, wl.Ops.Count); applied++) ApplyOp(durable, wl.Ops[applied]);
            if (f < wl.Ops.Count && rng.NextDouble() < extraChance)
            {
                CheckState(wl, (byte[])durable.Clone(), f + 1, $"seed {seed} state after flush at op {f}", rng, ref secondRuns, states);
                states++;
            }
            lastFlush = f;
        }
        int maxWritesBetweenFlushes = 0;
        { int lf = -1; foreach (int f in flushes) { maxWritesBetweenFlushes = Math.Max(maxWritesBetweenFlushes, f - lf - 1); lf = f; } }
        output.WriteLine($"seed {seed}: {wl.Ops.Count} device ops, {flushes.Count} flushes (up to {maxWritesBetweenFlushes} writes between two), " +
            $"{states} states ({torn} torn), {secondRuns} second runs, max cycle {wl.MaxCycle}");
        Assert.True(maxWritesBetweenFlushes >= 2, "the workload never had two writes in flight at once");
        Assert.True(states >= Math.Min(budget, 50));
    }

    private static async Task<Workload> RunWorkload(int seed, int transactionsPerWriter, int writers)
    {
        var dev = new TestMemoryDevice(LogStart + LogBlocks + 2, "crash");
        var region = new LogRegion(dev, LogStart, LogBlocks);
        LogWriter.Format(region);
        var baseImage = dev.Image();
        var ops = new List<DeviceOp>();
        dev.Recording = ops;
        var gateRng = new Random(seed);
        // Writes and flushes finish asynchronously and out of order.
        dev.WriteGate = _ => { int r; lock (gateRng) r = gateRng.Next(4); return r == 0 ? Task.Delay(1) : Task.Run(() => { }); };
        // Flushes are slow, so several records are usually written between two flushes.
        dev.FlushGate = () => { int r; lock (gateRng) r = gateRng.Next(4); return r == 0 ? Task.Run(() => { }) : Task.Delay(1); };

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
                    lock (sync) txns[tid] = t;
                    // Register before writing so the tail never passes a transaction being written.
                    lock (sync) { t.Start = w.Head; inFlight.Add((t.Start, tid)); }
                    var start = await w.WriteAsync(tid, regions.Select(b => (ReadOnlyMemory<byte>)b).ToArray(), start: true);
                    lock (sync) { inFlight.Remove((t.Start, tid)); t.Start = start; inFlight.Add((start, tid)); }
                    var commit = await w.WriteCommitAsync(tid);
                    bool force = rng.Next(3) != 0;
                    if (force)
                    {
                        await w.ForceAsync(commit);
                        int at = dev.RecordingCount;
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
                                tailMoves.Add((dev.RecordingCount, cand));
                                w.MoveTail(cand);
                            }
                        }
                    }
                }
            }
            await Task.WhenAll(Enumerable.Range(0, writers).Select(i => Task.Run(() => Writer(i)))).WaitAsync(TimeSpan.FromSeconds(60));
            // The unmount record declares everything before it written home: no transaction is required after it.
            tailMoves.Add((dev.RecordingCount, new Lsn(uint.MaxValue, 0)));
            await w.WriteUnmountAsync().AsTask().WaitAsync(Watchdog);
        }
        dev.Recording = null;
        return new Workload { BaseImage = baseImage, Ops = ops, Txns = txns, TailMoves = tailMoves, MaxCycle = maxCycle };
    }

    private static void ApplyOp(byte[] img, DeviceOp op)
    {
        if (!op.IsFlush) op.Data!.CopyTo(img.AsSpan((int)(op.Sector * 512)));
    }

    private static byte[] BuildFrom(byte[] durable, List<DeviceOp> ops, int from, int to, Func<int, long, bool> keep)
    {
        var img = (byte[])durable.Clone();
        for (int i = from; i < to; i++)
        {
            var op = ops[i];
            if (op.IsFlush) continue;
            for (int s = 0; s < op.Data!.Length / 512; s++)
                if (keep(i, op.Sector + s))
                    op.Data.AsSpan(s * 512, 512).CopyTo(img.AsSpan((int)((op.Sector + s) * 512)));
        }
        return img;
    }

    /// <summary>Recovers one crash image and checks every promise; sometimes continues writing on it and crashes again.</summary>
    private static void CheckState(Workload wl, byte[] img, int k, string what, Random rng, ref int secondRuns, int stateNo)
    {
        var dev = new TestMemoryDevice(img, "crash");
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
        CheckDelivered(wl, got, k, what);

        // Recovering twice gives the same answer.
        var again = RecoverAll(region, out var res2);
        Assert.Equal(Describe(got), Describe(again));
        Assert.Equal(res.ToString(), res2.ToString());

        if (stateNo % 40 == 0)
        {
            secondRuns++;
            SecondRun(wl, img, got, res, what, rng);
        }
    }

    private static void CheckDelivered(Workload wl, List<RecoveredTransaction> got, int k, string what)
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
        foreach (var (at, tail) in wl.TailMoves) if (at <= k) movedTo = Lsn.Max(movedTo, tail);
        foreach (var t in wl.Txns.Values)
        {
            if (t.ForcedAt <= k && t.Start >= movedTo)
                Assert.True(seen.Contains(t.Tid), $"{what}: forced transaction {t.Tid:x} (start {t.Start}, forced at op {t.ForcedAt}) is missing; tail moved to {movedTo}");
        }
    }

    /// <summary>
    /// Opens a writer on the recovered log, writes more with recording on, and recovers at crash points of that run:
    /// the first recovery's transactions come back unchanged, followed by whatever of the new ones was forced.
    /// </summary>
    private static void SecondRun(Workload wl, byte[] img, List<RecoveredTransaction> first, RecoveryResult firstResult, string what, Random rng)
    {
        var dev = new TestMemoryDevice((byte[])img.Clone(), "crash2");
        var region = new LogRegion(dev, LogStart, LogBlocks);
        var baseImage = dev.Image();
        var ops = new List<DeviceOp>();
        dev.Recording = ops;
        var res = LogRecovery.Recover(region);
        var added = new List<(uint Tid, byte[] Data, int ForcedAt)>();
        using (var w = LogWriter.Open(region, res, Options))
        {
            Assert.True(w.Tail == firstResult.TailLsn, $"{what}: writer tail {w.Tail} is not the recovered tail {firstResult.TailLsn}");
            for (int i = 0; i < 4; i++)
            {
                uint tid = w.AllocateTransactionId();
                Assert.True(!wl.Txns.ContainsKey(tid) || first.All(f => f.TransactionId != tid), $"{what}: reused transaction id {tid:x}");
                var data = Payload(999, i, 300 + 1500 * i);
                var lsn = w.WriteTransactionAsync(tid, [data]).AsTask().WaitAsync(Watchdog).GetAwaiter().GetResult();
                int forcedAt = int.MaxValue;
                if (i % 2 == 1)
                {
                    w.ForceAsync(lsn).AsTask().WaitAsync(Watchdog).GetAwaiter().GetResult();
                    forcedAt = dev.RecordingCount;
                }
                added.Add((tid, data, forcedAt));
            }
        }
        dev.Recording = null;
        var points = new List<int> { ops.Count };
        for (int i = 0; i < 4; i++) points.Add(rng.Next(0, ops.Count + 1));
        foreach (int k in points)
        {
            int lastFlush = -1;
            for (int i = 0; i < k; i++) if (ops[i].IsFlush) lastFlush = i;
            var crashImg = RecordedImage.Build(baseImage, ops, k, (i, _) => i <= lastFlush || rng.Next(2) == 0);
            var got = RecoverAll(new LogRegion(new TestMemoryDevice(crashImg, "crash2"), LogStart, LogBlocks), out _);
            string w2 = $"{what}, second run crashed at op {k} of {ops.Count}";
            Assert.True(got.Count >= first.Count, $"{w2}: {got.Count} transactions, first recovery had {first.Count}");
            Assert.Equal(Describe(first), Describe(got.Take(first.Count)));
            var extra = got.Skip(first.Count).ToList();
            foreach (var e in extra)
            {
                var a = added.Single(x => x.Tid == e.TransactionId);
                Assert.True(e.Regions[0].Span.SequenceEqual(a.Data), $"{w2}: new transaction differs");
            }
            foreach (var a in added.Where(a => a.ForcedAt <= k))
                Assert.True(extra.Any(e => e.TransactionId == a.Tid), $"{w2}: forced new transaction {a.Tid:x} missing");
        }
    }

    private static string Describe(IEnumerable<RecoveredTransaction> ts) =>
        string.Join("\n", ts.Select(t => $"{t} {Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(t.Regions.SelectMany(r => r.ToArray()).ToArray()))}"));
}
