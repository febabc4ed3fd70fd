using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Snapshot;

namespace JournalBench.Benchmarks;

/// <summary>
/// <c>journal-bench storm --snapshots 8 --gigabytes N</c>: a write storm through the origin, issued far faster than
/// copies complete. The producer writes every 4 KiB chunk of an N GiB origin once (each write needs a copy for every
/// snapshot) and, like a page-cache flush, waits only until each write is admitted (past the copy throttle), not until
/// it completes. Run with the in-flight copy bound at 2048 and at 0 (unlimited): peak process memory (resident set,
/// sampled every 20 ms), pool peaks and emergency allocations, throughput. With the bound on, memory stays flat
/// whatever N is; with it off, every write's copy state is in memory at once.
/// </summary>
internal static class StormBenchmark
{
    internal sealed record Result(int Bound, double Gigabytes, int Snapshots, long Writes, double WritesPerS, long PeakRssBytes,
        long BaselineRssBytes, int PeakCopiesInFlight, long ThrottleWaits, PoolStatistics PendingPool, PoolStatistics CopyJobPool);

    internal static async Task<IReadOnlyList<Result>> RunAsync(int snapshots, IReadOnlyList<double> gigabytes, IReadOnlyList<int> bounds, string root,
        Action<string>? progress = null)
    {
        var results = new List<Result>();
        foreach (int bound in bounds)
            foreach (double gb in gigabytes)
                results.Add(await RunOnceAsync(snapshots, gb, bound, root, progress).ConfigureAwait(false));
        return results;
    }

    private static async Task<Result> RunOnceAsync(int snapshots, double gb, int bound, string root, Action<string>? progress)
    {
        string folder = Path.Combine(root, $"storm-{Guid.NewGuid():N}");
        long chunks = (long)(gb * (1L << 30)) / 4096;
        try
        {
            GC.Collect(2, GCCollectionMode.Aggressive, true, true);
            long baseline = Environment.WorkingSet;
            var options = new StoreOptions { OriginSectors = chunks * 8, ChunkSectors = 8, MaxInFlightCopies = bound, LogBlocks = 65536 };
            var store = await SnapshotStore.CreateAsync(folder, options).ConfigureAwait(false);
            for (int s = 0; s < snapshots; s++) await store.CreateSnapshotAsync($"s{s}").ConfigureAwait(false);
            var data = new byte[4096];
            Random.Shared.NextBytes(data);
            long peak = Environment.WorkingSet;
            using var stop = new CancellationTokenSource();
            var sampler = Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    long ws = Environment.WorkingSet;
                    if (ws > Interlocked.Read(ref peak)) Interlocked.Exchange(ref peak, ws);
                    try { await Task.Delay(20, stop.Token).ConfigureAwait(false); } catch (OperationCanceledException) { }
                }
            });
            long outstanding = 0;
            Exception? error = null;
            var allDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Interlocked.Increment(ref outstanding);
            var sw = Stopwatch.StartNew();
            for (long c = 0; c < chunks; c++)
            {
                Interlocked.Increment(ref outstanding);
                // Waiting for admission only (held at the copy bound when it is on).
                await store.SubmitOriginWrite(c * 8, data, out var completion).ConfigureAwait(false);
                _ = completion.ContinueWith(t =>
                {
                    if (t.Exception is not null) Interlocked.CompareExchange(ref error, t.Exception.InnerException, null);
                    if (Interlocked.Decrement(ref outstanding) == 0) allDone.TrySetResult();
                }, TaskScheduler.Default);
                if (progress is not null && c % 65536 == 65535) progress($"bound {bound}, {gb} GiB: {c + 1}/{chunks} writes issued");
            }
            if (Interlocked.Decrement(ref outstanding) == 0) allDone.TrySetResult();
            await allDone.Task.ConfigureAwait(false);
            double wps = chunks / sw.Elapsed.TotalSeconds;
            stop.Cancel();
            await sampler.ConfigureAwait(false);
            if (error is not null) throw new InvalidOperationException($"storm write failed: {error.Message}", error);
            var status = store.GetStatus();
            await store.CloseAsync().ConfigureAwait(false);
            return new Result(bound, gb, snapshots, chunks, wps, Interlocked.Read(ref peak), baseline, status.PeakCopiesInFlight, status.ThrottleWaits,
                status.PendingPool, status.CopyJobPool);
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, true);
        }
    }

    internal static string Table(IReadOnlyList<Result> results)
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append(c, $"{"bound",6} {"GiB",5} {"writes",8} {"writes/s",9} {"peak RSS MiB",12} {"peak copies",11} {"waits",8} {"pending peak",12} {"pending emerg",13} {"jobs peak",9} {"jobs emerg",10}\n");
        foreach (var r in results)
            sb.Append(c, $"{r.Bound,6} {r.Gigabytes,5} {r.Writes,8} {r.WritesPerS,9:F0} {r.PeakRssBytes / 1048576.0,12:F1} {r.PeakCopiesInFlight,11} {r.ThrottleWaits,8} {r.PendingPool.PeakInUse,12} {r.PendingPool.EmergencyTotal,13} {r.CopyJobPool.PeakInUse,9} {r.CopyJobPool.EmergencyTotal,10}\n");
        return sb.ToString();
    }

    internal static string Json(IReadOnlyList<Result> results)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteString("benchmark", "storm");
            w.WriteStartArray("results");
            foreach (var r in results)
            {
                w.WriteStartObject();
                w.WriteNumber("bound", r.Bound);
                w.WriteNumber("gigabytes", r.Gigabytes);
                w.WriteNumber("snapshots", r.Snapshots);
                w.WriteNumber("writes", r.Writes);
                w.WriteNumber("writes_per_s", Math.Round(r.WritesPerS, 1));
                w.WriteNumber("peak_rss_bytes", r.PeakRssBytes);
                w.WriteNumber("baseline_rss_bytes", r.BaselineRssBytes);
                w.WriteNumber("peak_copies_in_flight", r.PeakCopiesInFlight);
                w.WriteNumber("throttle_waits", r.ThrottleWaits);
                foreach (var (name, p) in new[] { ("pending_pool", r.PendingPool), ("copy_job_pool", r.CopyJobPool) })
                {
                    w.WriteStartObject(name);
                    w.WriteNumber("budget", p.Budget);
                    w.WriteNumber("peak_in_use", p.PeakInUse);
                    w.WriteNumber("peak_emergency", p.PeakEmergency);
                    w.WriteNumber("emergency_total", p.EmergencyTotal);
                    w.WriteEndObject();
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }
}
