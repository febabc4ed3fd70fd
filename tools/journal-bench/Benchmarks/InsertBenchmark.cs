using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using Journal;
using Journal.Format;
using Journal.Storage;
using static JournalBench.BenchCommon;

namespace JournalBench.Benchmarks;

/// <summary>
/// <c>journal-bench insert --threads 1,2</c>: unforced commits of a 64-byte item (each thread relogs its own item:
/// begin, join, commit, dispose), in steady state: commits per second, and bytes allocated per commit measured on each
/// committing thread with <see cref="GC.GetAllocatedBytesForCurrentThread"/> after a warm-up. Log file in the system
/// temporary folder.
/// </summary>
internal static class InsertBenchmark
{
    private sealed record Row(int Threads, long Commits, double Seconds, long Allocated)
    {
        public double Rate => Commits / Seconds;
        public double AllocatedPerCommit => (double)Allocated / Commits;
    }

    public static Command CreateCommand()
    {
        var seconds = SecondsOption(2);
        var json = JsonOption();
        var threads = new Option<string>("--threads") { Description = "Comma-separated thread counts.", DefaultValueFactory = _ => "1,2" };
        var cmd = new Command("insert", "Unforced commits/s of a 64 B item, and bytes allocated per commit, in steady state.") { threads, seconds, json };
        cmd.SetAction(async (pr, ct) =>
        {
            double s = pr.GetValue(seconds);
            if (CheckBudget(s, null) is { } err) return UsageError(err);
            if (CountList.Parse(pr.GetValue(threads)!, 256) is not { } counts) return UsageError("--threads must be a comma-separated list of counts in 1..256");
            var rows = new List<Row>();
            foreach (int t in counts)
            {
                Progress($"insert: {t} threads");
                rows.Add(await RunOneAsync(t, s).ConfigureAwait(false));
            }
            ProgressDone();
            if (pr.GetValue(json)) PrintJson(ToJson(rows, s));
            else
            {
                Console.Out.WriteLine($"journal-bench insert: unforced commits of a 64 B item, {s} s per case");
                Console.Out.Write(Table(["threads", "commits/s", "allocated B/commit"],
                    rows.Select(r => (IReadOnlyList<string>)[r.Threads.ToString(), F(r.Rate), F(r.AllocatedPerCommit, 3)])));
            }
            return 0;
        });
        return cmd;
    }

    private static async Task<Row> RunOneAsync(int threads, double seconds)
    {
        using var logFile = new TempFile("insert-log");
        const long bytes = 16L << 20;
        using var dev = FileBlockDevice.Create(logFile.Path, bytes / BlockDevice.SectorSize);
        var region = LogRegion.WholeDevice(dev);
        var journal = MetadataJournal.Create(region, new JournalOptions { LogSizeBytes = region.Bytes });
        long commits = 0, allocated = 0;
        double elapsed = 0;
        using var start = new Barrier(threads);
        var workers = Enumerable.Range(0, threads).Select(i => new Thread(() =>
        {
            var item = new BenchItem((ulong)i, 64);
            int reserve = (int)journal.EstimateLogBytes(item.GetLogSize());
            for (int k = 0; k < 50_000; k++) CommitOnce(journal, item, reserve); // warm-up: pools, caches, JIT
            start.SignalAndWait();
            var limit = TimeSpan.FromSeconds(seconds);
            var sw = Stopwatch.StartNew();
            long a0 = GC.GetAllocatedBytesForCurrentThread();
            long n = 0;
            do
            {
                for (int k = 0; k < 1000; k++) CommitOnce(journal, item, reserve);
                n += 1000;
            }
            while (sw.Elapsed < limit);
            long a1 = GC.GetAllocatedBytesForCurrentThread();
            double s = sw.Elapsed.TotalSeconds;
            Interlocked.Add(ref commits, n);
            Interlocked.Add(ref allocated, a1 - a0);
            lock (start) elapsed = Math.Max(elapsed, s);
        })).ToArray();
        foreach (var w in workers) w.Start();
        foreach (var w in workers) w.Join();
        await journal.CloseAsync().ConfigureAwait(false);
        return new Row(threads, commits, elapsed, allocated);
    }

    private static void CommitOnce(MetadataJournal journal, BenchItem item, int reserve)
    {
        item.State[0]++;
        var begin = journal.BeginTransactionAsync(reserve);
        var tx = begin.IsCompletedSuccessfully ? begin.Result : begin.AsTask().GetAwaiter().GetResult();
        tx.AddItem(item);
        tx.Commit();
        tx.Dispose();
    }

    private static JsonObject ToJson(List<Row> rows, double seconds)
    {
        var results = new JsonArray();
        foreach (var r in rows)
            results.Add(new JsonObject
            {
                ["threads"] = r.Threads,
                ["commits"] = r.Commits,
                ["seconds"] = Math.Round(r.Seconds, 4),
                ["commits_per_s"] = Math.Round(r.Rate, 1),
                ["allocated_bytes_per_commit"] = Math.Round(r.AllocatedPerCommit, 3),
            });
        return new JsonObject
        {
            ["benchmark"] = "insert",
            ["settings"] = new JsonObject { ["seconds"] = seconds, ["itemBytes"] = 64 },
            ["machine"] = Machine(),
            ["results"] = results,
        };
    }
}
