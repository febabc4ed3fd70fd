using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Snapshot;
using static JournalBench.BenchCommon;

namespace JournalBench.Benchmarks;

/// <summary>
/// <c>journal-bench storm --snapshots 8 --gigabytes N</c>: a write storm through the origin, issued far faster than
/// copies complete. The producer writes every 4 KiB chunk of an N GiB origin once (each write needs a copy for every
/// snapshot) and, like a page-cache flush, waits only until each write is admitted (past the copy throttle), not until
/// it completes. Runs with the in-flight copy bound at 2048 and at 0 (unlimited) and reports peak process memory
/// (resident set and managed heap, sampled every 20 ms), pool peaks, emergency allocations and throughput.
/// </summary>
internal static class StormBenchmark
{
    internal sealed record Result(int Bound, double Gigabytes, int Snapshots, long Writes, double WritesPerS, long PeakRssBytes,
        long StartRssBytes, long PeakManagedBytes, int PeakCopiesInFlight, long ThrottleWaits, PoolStatistics PendingPool, PoolStatistics CopyJobPool);

    public static Command CreateCommand()
    {
        var snapshots = new Option<int>("--snapshots") { Description = "Snapshots of the origin.", DefaultValueFactory = _ => 8 };
        var gigabytes = new Option<string>("--gigabytes") { Description = "Origin sizes in GiB to write through, comma-separated (e.g. 1,4).", DefaultValueFactory = _ => "1" };
        var bounds = new Option<string>("--bounds") { Description = "In-flight copy bounds to run, comma-separated (0 = unlimited).", DefaultValueFactory = _ => "2048,0" };
        var logSize = new Option<int>("--log-mib") { Description = "Size of the store's journal in MiB (at least 1; a small log makes commit rounds split).", DefaultValueFactory = _ => 32 };
        var json = JsonOption();
        var cmd = new Command("storm", "A write storm through the origin with the in-flight copy bound on and off: peak memory, pools, throughput.")
        {
            snapshots, gigabytes, bounds, logSize, json,
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
            var results = new List<Result>();
            foreach (int b in bs)
                foreach (double g in gbs)
                    results.Add(await RunOnceAsync(s, g, b, logMib, ct).ConfigureAwait(false));
            ProgressDone();
            if (pr.GetValue(json)) PrintJson(ToJson(results));
            else Console.Out.Write(ToTable(results));
            return 0;
        });
        return cmd;
    }

    private static async Task<Result> RunOnceAsync(int snapshots, double gb, int bound, int logMib, CancellationToken ct)
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
            double wps;
            long peak = Environment.WorkingSet;
            long peakManaged = GC.GetTotalMemory(false);
            try
            {
                for (int s = 0; s < snapshots; s++) await store.CreateSnapshotAsync($"s{s}", null, ct).ConfigureAwait(false);
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
                status.ThrottleWaits, status.PendingPool, status.CopyJobPool);
        }
        finally
        {
            try { if (Directory.Exists(dir.Path)) Directory.Delete(dir.Path, true); } catch (IOException) { }
        }
    }

    private static string ToTable(IReadOnlyList<Result> results)
    {
        var header = new[] { "bound", "GiB", "writes", "writes/s", "peak RSS MiB", "peak heap MiB", "peak copies", "throttle waits", "pending peak", "pending emerg.", "jobs peak", "jobs emerg." };
        var rows = results.Select(r => (IReadOnlyList<string>)new[]
        {
            r.Bound == 0 ? "0 (off)" : r.Bound.ToString(CultureInfo.InvariantCulture), r.Gigabytes.ToString(CultureInfo.InvariantCulture), F(r.Writes),
            F(r.WritesPerS), F(r.PeakRssBytes / 1048576.0, 1), F(r.PeakManagedBytes / 1048576.0, 1), F(r.PeakCopiesInFlight), F(r.ThrottleWaits), F(r.PendingPool.PeakInUse),
            F(r.PendingPool.EmergencyTotal), F(r.CopyJobPool.PeakInUse), F(r.CopyJobPool.EmergencyTotal),
        });
        return $"journal-bench storm: {results.FirstOrDefault()?.Snapshots} snapshots, 4 KiB first writes issued without waiting for completion, in {Path.GetTempPath()}\n\n"
            + Table(header, rows)
            + "\npeak RSS / heap: resident set and managed heap sampled every 20 ms during the run; emerg.: objects handed out beyond\n"
            + "the pool's budget (from its reserve, then freshly allocated).\n";
    }

    private static JsonObject Pool(PoolStatistics p) => new()
    {
        ["budget"] = p.Budget,
        ["peak_in_use"] = p.PeakInUse,
        ["peak_emergency"] = p.PeakEmergency,
        ["emergency_total"] = p.EmergencyTotal,
    };

    private static JsonObject ToJson(IReadOnlyList<Result> results) => new()
    {
        ["benchmark"] = "storm",
        ["machine"] = Machine(),
        ["results"] = new JsonArray(results.Select(r => (JsonNode)new JsonObject
        {
            ["bound"] = r.Bound,
            ["gigabytes"] = r.Gigabytes,
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
        }).ToArray()),
    };
}
