using System.Diagnostics;
using System.Text.Json.Serialization;
using Journal;
using Journal.Format;
using Journal.Storage;
using Microsoft.Win32.SafeHandles;

namespace JournalBench.Benchmarks;

/// <summary>
/// <c>journal-bench commit --committers 1,4,16,64</c>: each committer commits one item of 64..256 bytes and forces it,
/// in a loop; durable commits per second through the journal (log file in the temp folder, group commit), against a
/// baseline in the same run that appends the same bytes to a plain file and fdatasyncs after every commit.
/// </summary>
internal static class CommitBenchmark
{
    public sealed record Row(
        [property: JsonPropertyName("committers")] int Committers,
        [property: JsonPropertyName("commits")] long Commits,
        [property: JsonPropertyName("commits_per_s")] double CommitsPerS,
        [property: JsonPropertyName("baseline_commits")] long BaselineCommits,
        [property: JsonPropertyName("baseline_commits_per_s")] double BaselineCommitsPerS,
        [property: JsonPropertyName("ratio")] double Ratio,
        [property: JsonPropertyName("device_flushes")] long DeviceFlushes,
        [property: JsonPropertyName("checkpoints")] long Checkpoints);

    public sealed record Report(
        [property: JsonPropertyName("benchmark")] string Benchmark,
        [property: JsonPropertyName("seconds")] double Seconds,
        [property: JsonPropertyName("results")] IReadOnlyList<Row> Results);

    public static async Task<Report> RunAsync(IReadOnlyList<int> committers, double seconds, Action<string>? progress = null)
    {
        var rows = new List<Row>();
        foreach (int c in committers)
        {
            progress?.Invoke($"commit: {c} committers, journal");
            var (commits, flushes, checkpoints, jt) = await JournalAsync(c, seconds);
            progress?.Invoke($"commit: {c} committers, baseline");
            var (baseline, bt) = await BaselineAsync(c, seconds);
            double cps = commits / jt, bps = baseline / bt;
            rows.Add(new Row(c, commits, Math.Round(cps, 1), baseline, Math.Round(bps, 1), Math.Round(cps / bps, 2), flushes, checkpoints));
        }
        return new Report("commit", seconds, rows);
    }

    private static async Task<(long Commits, long Flushes, long Checkpoints, double Seconds)> JournalAsync(int committers, double seconds)
    {
        using var files = new BenchFiles("commit");
        const uint blocks = 64 * 2048; // 64 MiB log
        using var dev = FileBlockDevice.Create(files.File("log"), blocks);
        var j = MetadataJournal.Create(new LogRegion(dev, 0, blocks), new JournalOptions { LogSizeBytes = blocks * 512L });
        long flushesBefore = dev.Counters.Flushes;
        long total = 0;
        var sw = Stopwatch.StartNew();
        var deadline = TimeSpan.FromSeconds(seconds);
        var tasks = Enumerable.Range(0, committers).Select(i => Task.Run(async () =>
        {
            var rnd = new Random(i);
            var item = new BenchItem((ulong)i, 64);
            long n = 0;
            while (sw.Elapsed < deadline)
            {
                item.Resize(64 + rnd.Next(193));
                rnd.NextBytes(item.State);
                using var tx = await j.BeginTransactionAsync((int)j.EstimateLogBytes(item.GetLogSize()));
                tx.AddItem(item);
                ulong seq = tx.Commit();
                await j.ForceAsync(seq);
                n++;
            }
            Interlocked.Add(ref total, n);
        })).ToArray();
        await Task.WhenAll(tasks);
        double elapsed = sw.Elapsed.TotalSeconds;
        long flushes = dev.Counters.Flushes - flushesBefore;
        long checkpoints = j.Statistics.Checkpoints;
        await j.CloseAsync();
        return (total, flushes, checkpoints, elapsed);
    }

    private static async Task<(long Commits, double Seconds)> BaselineAsync(int committers, double seconds)
    {
        using var files = new BenchFiles("commit-baseline");
        using SafeFileHandle handle = File.OpenHandle(files.File("wal"), FileMode.CreateNew, FileAccess.ReadWrite);
        object appendLock = new();
        long end = 0, total = 0;
        var sw = Stopwatch.StartNew();
        var deadline = TimeSpan.FromSeconds(seconds);
        var tasks = Enumerable.Range(0, committers).Select(i => Task.Run(() =>
        {
            var rnd = new Random(i);
            long n = 0;
            var buf = new byte[256 + 16];
            while (sw.Elapsed < deadline)
            {
                int len = 16 + 64 + rnd.Next(193); // a small record header and the item
                rnd.NextBytes(buf.AsSpan(0, len));
                lock (appendLock)
                {
                    RandomAccess.Write(handle, buf.AsSpan(0, len), end);
                    end += len;
                }
                int rc = NativeFile.DataSync(handle);
                if (rc != 0) throw new IOException($"fdatasync failed: {NativeFile.Describe(rc)}");
                n++;
            }
            Interlocked.Add(ref total, n);
        })).ToArray();
        await Task.WhenAll(tasks);
        return (total, sw.Elapsed.TotalSeconds);
    }

    public static string Table(Report r)
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"{"committers",10} {"commits/s",12} {"baseline/s",12} {"ratio",8} {"flushes",9} {"checkpoints",12}");
        foreach (var row in r.Results)
            sb.AppendLine($"{row.Committers,10} {row.CommitsPerS,12:F0} {row.BaselineCommitsPerS,12:F0} {row.Ratio,8:F2} {row.DeviceFlushes,9} {row.Checkpoints,12}");
        return sb.ToString();
    }
}
