using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using JournalBench.Measure;
using Snapshot;
using static JournalBench.BenchCommon;

namespace JournalBench.Benchmarks;

/// <summary>
/// <c>journal-bench storm --snapshots 8 --gigabytes N</c>: a write storm through the origin, issued far faster than
/// copies complete. The producer writes every 4 KiB chunk of an N GiB origin once (each write needs a copy for every
/// snapshot) and, like a page-cache flush, waits only until each write is admitted (past the copy throttle), not until
/// it completes. Runs with the in-flight copy bound at 2048 and at 0 (unlimited) and reports peak process memory
/// (resident set and managed heap, sampled every 20 ms), pool peaks, emergency allocations, throughput and the commit
/// pipeline's rounds over the run. Unbounded runs larger than <c>--unbounded-max-gigabytes</c> are skipped (their memory
/// grows with the data written: about 1.5 GiB of RSS per GiB).
/// </summary>
internal static class StormBenchmark
{
    internal sealed record Result(int Bound, double Gigabytes, int Snapshots, long Writes, double WritesPerS, long PeakRssBytes,
        long StartRssBytes, long PeakManagedBytes, int PeakCopiesInFlight, long ThrottleWaits, PoolStatistics PendingPool, PoolStatistics CopyJobPool,
        CommitDelta Commit)
    {
        /// <summary>Which pass of the cases this run was (1-based).</summary>
        public int Pass { get; init; } = 1;
    }

    /// <summary>Size of a warm-up pass's origin in GiB (32 MiB).</summary>
    private const double WarmUpGigabytes = 1.0 / 32;

    public static Command CreateCommand()
    {
        var snapshots = new Option<int>("--snapshots") { Description = "Snapshots of the origin.", DefaultValueFactory = _ => 8 };
        var gigabytes = new Option<string>("--gigabytes") { Description = "Origin sizes in GiB to write through, comma-separated (e.g. 1,4).", DefaultValueFactory = _ => "1" };
        var bounds = new Option<string>("--bounds") { Description = "In-flight copy bounds to run, comma-separated (0 = unlimited).", DefaultValueFactory = _ => "2048,0" };
        var logSize = new Option<int>("--log-mib") { Description = "Size of the store's journal in MiB (at least 1; a small log makes commit rounds split).", DefaultValueFactory = _ => 32 };
        var passes = new Option<int>("--passes") { Description = "Times every case runs, in alternating order (the order of --bounds, then reversed, ...); writes/s side by side is each case's median.", DefaultValueFactory = _ => 2 };
        var unboundedMax = new Option<double>("--unbounded-max-gigabytes") { Description = "Largest size run with the bound off (0); larger unbounded runs are skipped, since their memory grows with the data written.", DefaultValueFactory = _ => 1 };
        var json = JsonOption();
        var cmd = new Command("storm", "A write storm through the origin with the in-flight copy bound on and off: peak memory, pools, throughput, commit rounds.")
        {
            snapshots, gigabytes, bounds, logSize, passes, unboundedMax, json,
        };
        cmd.SetAction(async (pr, ct) =>
        {
            int s = pr.GetValue(snapshots);
            if (s is < 1 or > SnapshotStore.MaxSnapshots) return UsageError($"--snapshots must be in 1..{SnapshotStore.MaxSnapshots}");
            double[] gbs;
            int[] bs;
            try
            {
                gbs = pr.GetValue(gigabytes)!.Split(',').Select(x => double.Parse(x, CultureInfo.InvariantCulture)).ToArray();
                bs = pr.GetValue(bounds)!.Split(',').Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray();
            }
            catch (FormatException) { return UsageError("--gigabytes and --bounds must be comma-separated lists of numbers"); }
            if (gbs.Any(g => g is <= 0 or > 64 || double.IsNaN(g))) return UsageError("--gigabytes must be in (0, 64]");
            if (bs.Any(b => b < 0)) return UsageError("--bounds must not be negative");
            int logMib = pr.GetValue(logSize);
            if (logMib is < 1 or > 4096) return UsageError("--log-mib must be in 1..4096");
            double maxUnbounded = pr.GetValue(unboundedMax);
            if (double.IsNaN(maxUnbounded) || maxUnbounded < 0) return UsageError("--unbounded-max-gigabytes must not be negative");
            int passCount = pr.GetValue(passes);
            if (passCount is < 1 or > 10) return UsageError("--passes must be in 1..10");
            var load = LoadAverage.Read();
            var results = new List<Result>();
            var skipped = new List<string>();
            var cases = new List<(int Bound, double Gigabytes)>();
            foreach (int b in bs)
                foreach (double g in gbs)
                {
                    if (b == 0 && g > maxUnbounded)
                    {
                        string why = string.Create(CultureInfo.InvariantCulture, $"bound 0 (off) at {g} GiB skipped: larger than --unbounded-max-gigabytes {maxUnbounded}");
                        skipped.Add(why);
                        Console.Error.WriteLine($"journal-bench: storm: {why}");
                        continue;
                    }
                    cases.Add((b, g));
                }
            // Untimed warm-up of every bound on a small origin, so no case is timed while the JIT compiles what all
            // of them share (the first case of a run would otherwise be the slow one).
            Progress("storm: warm-up");
            var warm = await JitWarmUp.RunAsync(async () =>
            {
                foreach (int b in bs.Distinct()) await RunOnceAsync(s, WarmUpGigabytes, b, logMib, ct).ConfigureAwait(false);
            }).ConfigureAwait(false);
            // Alternating order (A B, then B A, ...): whatever favours a place in the sequence (the disk's background
            // writeback of the previous case, the load of a shared machine drifting) is spread over the cases.
            for (int pass = 1; pass <= passCount; pass++)
            {
                var order = pass % 2 == 1 ? cases : Enumerable.Reverse(cases).ToList();
                foreach (var (b, g) in order) results.Add(await RunOnceAsync(s, g, b, logMib, ct).ConfigureAwait(false) with { Pass = pass });
            }
            results = results.OrderBy(r => cases.IndexOf((r.Bound, r.Gigabytes))).ThenBy(r => r.Pass).ToList();
            ProgressDone();
            var loadEnd = LoadAverage.Read();
            if (pr.GetValue(json)) PrintJson(ToJson(results, skipped, load, loadEnd, warm));
            else Console.Out.Write(ToTable(results, skipped, load, loadEnd, warm));
            return 0;
        });
        return cmd;
    }

    internal static async Task<Result> RunOnceAsync(int snapshots, double gb, int bound, int logMib, CancellationToken ct)
    {
        using var dir = new TempFile("storm");
        long chunks = (long)(gb * (1L << 30)) / 4096;
        try
        {
            GC.Collect(2, GCCollectionMode.Aggressive, true, true);
            long start = Environment.WorkingSet;
            var options = new StoreOptions { OriginSectors = chunks * 8, ChunkSectors = 8, MaxInFlightCopies = bound, LogBlocks = (uint)logMib * 2048 };
            var store = await SnapshotStore.CreateAsync(dir.Path, options, ct).ConfigureAwait(false);
            StoreStatus status;
            CommitDelta commit;
            double wps;
            long peak = Environment.WorkingSet;
            long peakManaged = GC.GetTotalMemory(false);
            try
            {
                for (int s = 0; s < snapshots; s++) await store.CreateSnapshotAsync($"s{s}", null, ct).ConfigureAwait(false);
                // Every case starts from the same state: its files durable and out of the page cache (the creation's
                // dirty pages would otherwise be written back during whichever case runs first).
                await store.FlushAsync(ct).ConfigureAwait(false);
                PageCache.DropFolder(dir.Path);
                var data = new byte[4096];
                Random.Shared.NextBytes(data);
                using var stop = new CancellationTokenSource();
                var sampler = Task.Run(async () =>
                {
                    while (!stop.IsCancellationRequested)
                    {
                        long ws = Environment.WorkingSet;
                        if (ws > Interlocked.Read(ref peak)) Interlocked.Exchange(ref peak, ws);
                        long managed = GC.GetTotalMemory(false);
                        if (managed > Interlocked.Read(ref peakManaged)) Interlocked.Exchange(ref peakManaged, managed);
                        try { await Task.Delay(20, stop.Token).ConfigureAwait(false); } catch (OperationCanceledException) { }
                    }
                }, CancellationToken.None);
                long outstanding = 1;
                Exception? error = null;
                var allDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                var commit0 = store.CommitStatistics;
                var sw = Stopwatch.StartNew();
                for (long c = 0; c < chunks; c++)
                {
                    ct.ThrowIfCancellationRequested();
                    Interlocked.Increment(ref outstanding);
                    // Waits for admission only: held at the copy bound when it is on, never when it is off.
                    await store.SubmitOriginWrite(c * 8, data, out var completion).ConfigureAwait(false);
                    _ = completion.ContinueWith(t =>
                    {
                        if (t.Exception is not null) Interlocked.CompareExchange(ref error, t.Exception.InnerException, null);
                        if (Interlocked.Decrement(ref outstanding) == 0) allDone.TrySetResult();
                    }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
                    if ((c & 16383) == 16383) Progress($"storm: bound {bound}, {gb} GiB: {c + 1:N0}/{chunks:N0} writes issued");
                }
                if (Interlocked.Decrement(ref outstanding) == 0) allDone.TrySetResult();
                await allDone.Task.ConfigureAwait(false);
                wps = chunks / sw.Elapsed.TotalSeconds;
                commit = CommitDelta.Between(commit0, store.CommitStatistics);
                stop.Cancel();
                await sampler.ConfigureAwait(false);
                if (error is not null) throw new IOException($"storm: an origin write failed: {error.Message}", error);
                status = store.GetStatus();
            }
            finally
            {
                await store.CloseAsync(CancellationToken.None).ConfigureAwait(false);
            }
            return new Result(bound, gb, snapshots, chunks, wps, Interlocked.Read(ref peak), start, Interlocked.Read(ref peakManaged), status.PeakCopiesInFlight,
                status.ThrottleWaits, status.PendingPool, status.CopyJobPool, commit);
        }
        finally
        {
            try { if (Directory.Exists(dir.Path)) Directory.Delete(dir.Path, true); } catch (IOException) { }
        }
    }

    /// <summary>Median writes/s of the runs of one case.</summary>
    internal static double MedianWritesPerS(IEnumerable<Result> runs)
    {
        var v = runs.Select(r => r.WritesPerS).Order().ToArray();
        if (v.Length == 0) return double.NaN;
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }

    /// <summary>One line per bounded case and size: its median writes/s and largest peak RSS beside the unbounded run's.</summary>
    internal static List<string> SideBySide(IReadOnlyList<Result> results)
    {
        var side = new List<string>();
        foreach (var g in results.Select(r => r.Gigabytes).Distinct())
        {
            var off = results.Where(r => r.Gigabytes == g && r.Bound == 0).ToList();
            if (off.Count == 0) continue;
            double offWps = MedianWritesPerS(off);
            long offRss = off.Max(r => r.PeakRssBytes);
            foreach (var b in results.Where(r => r.Gigabytes == g && r.Bound > 0).Select(r => r.Bound).Distinct())
            {
                var on = results.Where(r => r.Gigabytes == g && r.Bound == b).ToList();
                double onWps = MedianWritesPerS(on);
                side.Add(string.Create(CultureInfo.InvariantCulture, $"{g} GiB: bound {b} {F(onWps)} writes/s, peak RSS {F(on.Max(r => r.PeakRssBytes) / 1048576.0, 1)} MiB; bound off {F(offWps)} writes/s, peak RSS {F(offRss / 1048576.0, 1)} MiB; bounded/unbounded {F(onWps / offWps, 2)}x (medians of {on.Count} and {off.Count} runs)"));
            }
        }
        return side;
    }

    private static string ToTable(IReadOnlyList<Result> results, IReadOnlyList<string> skipped, LoadAverage? load, LoadAverage? loadEnd, JitWarmUp.Report warm)
    {
        var header = new[] { "bound", "GiB", "pass", "writes", "writes/s", "peak RSS MiB", "peak heap MiB", "peak copies", "throttle waits", "pending peak", "pending emerg.", "jobs peak", "jobs emerg." };
        var rows = results.Select(r => (IReadOnlyList<string>)new[]
        {
            r.Bound == 0 ? "0 (off)" : r.Bound.ToString(CultureInfo.InvariantCulture), r.Gigabytes.ToString(CultureInfo.InvariantCulture), F(r.Pass), F(r.Writes),
            F(r.WritesPerS), F(r.PeakRssBytes / 1048576.0, 1), F(r.PeakManagedBytes / 1048576.0, 1), F(r.PeakCopiesInFlight), F(r.ThrottleWaits), F(r.PendingPool.PeakInUse),
            F(r.PendingPool.EmergencyTotal), F(r.CopyJobPool.PeakInUse), F(r.CopyJobPool.EmergencyTotal),
        });
        var commitHeader = new[] { "bound", "GiB", "pass", "writes/s", "rounds", "exc/round", "largest round", "COW flushes", "log forces", "transactions", "round wait ms" };
        var commitRows = results.Select(r => (IReadOnlyList<string>)new[]
        {
            r.Bound == 0 ? "0 (off)" : r.Bound.ToString(CultureInfo.InvariantCulture), r.Gigabytes.ToString(CultureInfo.InvariantCulture), F(r.Pass), F(r.WritesPerS),
            F(r.Commit.Rounds), F(r.Commit.ExceptionsPerRound, 1), F(r.Commit.LargestRound), F(r.Commit.CowFlushes), F(r.Commit.DurabilityWaits),
            F(r.Commit.Transactions), F(r.Commit.AverageRoundWaitMs, 2),
        });
        var side = SideBySide(results);
        int passCount = results.Count == 0 ? 0 : results.Max(r => r.Pass);
        return $"journal-bench storm: {results.FirstOrDefault()?.Snapshots} snapshots, 4 KiB first writes issued without waiting for completion, in {Path.GetTempPath()}\n"
            + $"{warm.Describe()}; {passCount} pass(es) over the cases, in alternating order\n"
            + $"{LoadAverage.Describe(load)} at start, {LoadAverage.Describe(loadEnd)} at end\n\n"
            + Table(header, rows)
            + "\npeak RSS / heap: resident set and managed heap sampled every 20 ms during the run; emerg.: objects handed out beyond\n"
            + "the pool's budget (from its reserve, then freshly allocated).\n\n"
            + Table(commitHeader, commitRows)
            + "\nrounds: commit rounds during the run; exc/round: exceptions per round; COW flushes: fdatasyncs of COW files (one a round for\n"
            + "the files that share a device flush, plus one per file flushed on its own, after it grew); log forces:\n"
            + "one per round (more when a round was split to fit the log); round wait: from a round's first exception queued to its completion.\n"
            + (side.Count > 0 ? "\n" + string.Join("\n", side) + "\n" : "")
            + (skipped.Count > 0 ? "\n" + string.Join("\n", skipped) + "\n" : "");
    }

    private static JsonObject Pool(PoolStatistics p) => new()
    {
        ["budget"] = p.Budget,
        ["peak_in_use"] = p.PeakInUse,
        ["peak_emergency"] = p.PeakEmergency,
        ["emergency_total"] = p.EmergencyTotal,
    };

    private static JsonObject ToJson(IReadOnlyList<Result> results, IReadOnlyList<string> skipped, LoadAverage? load, LoadAverage? loadEnd, JitWarmUp.Report warm) => new()
    {
        ["benchmark"] = "storm",
        ["warm_up"] = warm.Describe(),
        ["side_by_side"] = new JsonArray(SideBySide(results).Select(x => (JsonNode)JsonValue.Create(x)).ToArray()),
        ["machine"] = Machine(),
        ["load_average_start"] = load?.ToString(),
        ["load_average_end"] = loadEnd?.ToString(),
        ["skipped"] = new JsonArray(skipped.Select(x => (JsonNode)JsonValue.Create(x)).ToArray()),
        ["results"] = new JsonArray(results.Select(r => (JsonNode)new JsonObject
        {
            ["bound"] = r.Bound,
            ["gigabytes"] = r.Gigabytes,
            ["pass"] = r.Pass,
            ["snapshots"] = r.Snapshots,
            ["writes"] = r.Writes,
            ["writes_per_s"] = Math.Round(r.WritesPerS, 1),
            ["peak_rss_bytes"] = r.PeakRssBytes,
            ["start_rss_bytes"] = r.StartRssBytes,
            ["peak_managed_bytes"] = r.PeakManagedBytes,
            ["peak_copies_in_flight"] = r.PeakCopiesInFlight,
            ["throttle_waits"] = r.ThrottleWaits,
            ["pending_pool"] = Pool(r.PendingPool),
            ["copy_job_pool"] = Pool(r.CopyJobPool),
            ["commit_rounds"] = r.Commit.Rounds,
            ["commit_exceptions"] = r.Commit.Exceptions,
            ["exceptions_per_round"] = Math.Round(r.Commit.ExceptionsPerRound, 2),
            ["largest_round"] = r.Commit.LargestRound,
            ["cow_flushes"] = r.Commit.CowFlushes,
            ["cow_write_backs"] = r.Commit.CowWriteBacks,
            ["log_forces"] = r.Commit.DurabilityWaits,
            ["commit_transactions"] = r.Commit.Transactions,
            ["average_round_wait_ms"] = Math.Round(r.Commit.AverageRoundWaitMs, 3),
        }).ToArray()),
    };
}
