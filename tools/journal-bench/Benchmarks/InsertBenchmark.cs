using System.Diagnostics;
using System.Text.Json.Serialization;
using Journal;
using Journal.Format;
using Journal.Storage;

namespace JournalBench.Benchmarks;

/// <summary>
/// <c>journal-bench insert --threads 1,2</c>: unforced commits of a 64-byte item (each thread relogs its own item), in
/// steady state: commits per second, and bytes allocated per commit (measured on each committing thread with
/// <see cref="GC.GetAllocatedBytesForCurrentThread"/> after a warm-up). Log file in the temp folder.
/// </summary>
internal static class InsertBenchmark
{
    public sealed record Row(
        [property: JsonPropertyName("threads")] int Threads,
        [property: JsonPropertyName("commits")] long Commits,
        [property: JsonPropertyName("commits_per_s")] double CommitsPerS,
        [property: JsonPropertyName("allocated_bytes_per_commit")] double AllocatedBytesPerCommit);

    public sealed record Report(
        [property: JsonPropertyName("benchmark")] string Benchmark,
        [property: JsonPropertyName("seconds")] double Seconds,
        [property: JsonPropertyName("results")] IReadOnlyList<Row> Results);

    public static async Task<Report> RunAsync(IReadOnlyList<int> threads, double seconds)
    {
        var rows = new List<Row>();
        foreach (int t in threads) rows.Add(await RunOneAsync(t, seconds));
        return new Report("insert", seconds, rows);
    }

    private static async Task<Row> RunOneAsync(int threads, double seconds)
    {
        using var files = new BenchFiles("insert");
        const uint blocks = 16 * 2048;
        using var dev = FileBlockDevice.Create(files.File("log"), blocks);
        var j = MetadataJournal.Create(new LogRegion(dev, 0, blocks), new JournalOptions { LogSizeBytes = blocks * 512L });
        long commits = 0, allocated = 0;
        double elapsed = 0;
        using var start = new Barrier(threads);
        var workers = Enumerable.Range(0, threads).Select(i => new Thread(() =>
        {
            var item = new BenchItem((ulong)i, 64);
            int reserve = (int)j.EstimateLogBytes(item.GetLogSize());
            // Warm-up: pools, the transaction cache, the item's vectors, the JIT.
            for (int k = 0; k < 20_000; k++) CommitOnce(j, item, reserve);
            start.SignalAndWait();
            var sw = Stopwatch.StartNew();
            long a0 = GC.GetAllocatedBytesForCurrentThread();
            long n = 0;
            var deadline = TimeSpan.FromSeconds(seconds);
            while (true)
            {
                for (int k = 0; k < 1000; k++) CommitOnce(j, item, reserve);
                n += 1000;
                if (sw.Elapsed >= deadline) break;
            }
            long a1 = GC.GetAllocatedBytesForCurrentThread();
            double s = sw.Elapsed.TotalSeconds;
            Interlocked.Add(ref commits, n);
            Interlocked.Add(ref allocated, a1 - a0);
            lock (start) elapsed = Math.Max(elapsed, s);
        })).ToArray();
        foreach (var w in workers) w.Start();
        foreach (var w in workers) w.Join();
        await j.CloseAsync();
        return new Row(threads, commits, Math.Round(commits / elapsed), Math.Round((double)allocated / commits, 3));
    }

    private static void CommitOnce(MetadataJournal j, BenchItem item, int reserve)
    {
        item.State[0]++;
        var vt = j.BeginTransactionAsync(reserve);
        var tx = vt.IsCompletedSuccessfully ? vt.Result : vt.AsTask().GetAwaiter().GetResult();
        tx.AddItem(item);
        tx.Commit();
        tx.Dispose();
    }

    public static string Table(Report r)
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"{"threads",8} {"commits/s",12} {"alloc B/commit",15}");
        foreach (var row in r.Results) sb.AppendLine($"{row.Threads,8} {row.CommitsPerS,12:F0} {row.AllocatedBytesPerCommit,15:F3}");
        return sb.ToString();
    }
}
