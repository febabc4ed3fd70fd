using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using Journal;
using Journal.Format;
using Journal.Storage;
using Microsoft.Win32.SafeHandles;
using static JournalBench.BenchCommon;

namespace JournalBench.Benchmarks;

/// <summary>
/// <c>journal-bench commit --committers 1,4,16,64</c>: each committer commits one item of 64..256 bytes and forces it,
/// in a loop: durable commits per second through the journal (log file in the system temporary folder; concurrent
/// forces share checkpoints and device flushes), against a baseline measured in the same run that appends the same
/// bytes (a 16-byte record header and the item) to a preallocated file and fdatasyncs after every commit.
/// </summary>
internal static class CommitBenchmark
{
    private sealed record Row(int Committers, int GatherMicros, long Commits, double Seconds, long Flushes, long Checkpoints, long BaselineCommits, double BaselineSeconds, double CpuSeconds)
    {
        public double Rate => Commits / Seconds;
        public double BaselineRate => BaselineCommits / BaselineSeconds;
        public double Ratio => Rate / BaselineRate;
        public double CpuMicrosPerCommit => CpuSeconds * 1e6 / Commits;
    }

    public static Command CreateCommand()
    {
        var seconds = SecondsOption(2);
        var json = JsonOption();
        var committers = new Option<string>("--committers") { Description = "Comma-separated committer counts.", DefaultValueFactory = _ => "1,4,16,64" };
        var gather = new Option<string>("--gather-us") { Description = "Comma-separated checkpoint gather windows in µs (JournalOptions.CheckpointGatherWindow; 0 = off), each run for every committer count.", DefaultValueFactory = _ => "200" };
        var logMib = new Option<int>("--log-mib") { Description = "Size of the log file in MiB.", DefaultValueFactory = _ => 64 };
        var cmd = new Command("commit", "Durable commits/s (commit one 64..256 B item and force it, per committer) against append + fdatasync per commit.")
        {
            committers, gather, seconds, logMib, json,
        };
        cmd.SetAction(async (pr, ct) =>
        {
            double s = pr.GetValue(seconds);
            int mib = pr.GetValue(logMib);
            if (CheckBudget(s, null) is { } err) return UsageError(err);
            if (CountList.Parse(pr.GetValue(committers)!, 4096) is not { } counts) return UsageError("--committers must be a comma-separated list of counts in 1..4096");
            if (mib is < 4 or > 4096) return UsageError("--log-mib must be in 4..4096");
            if (CountList.Parse(pr.GetValue(gather)!, 10000, min: 0) is not { } windows) return UsageError("--gather-us must be a comma-separated list of windows in 0..10000");
            var rows = new List<Row>();
            foreach (int c in counts)
                foreach (int w in windows)
                    rows.Add(await RunOneAsync(c, w, s, mib, ct).ConfigureAwait(false));
            ProgressDone();
            if (pr.GetValue(json)) PrintJson(ToJson(rows, s, mib));
            else Print(rows, s);
            return 0;
        });
        return cmd;
    }

    private static async Task<Row> RunOneAsync(int committers, int gatherMicros, double seconds, int logMib, CancellationToken ct)
    {
        using var logFile = new TempFile("commit-log");
        using var baseFile = new TempFile("commit-baseline");
        long bytes = (long)logMib << 20;
        using var dev = FileBlockDevice.Create(logFile.Path, bytes / BlockDevice.SectorSize);
        var region = LogRegion.WholeDevice(dev);
        var journal = MetadataJournal.Create(region, new JournalOptions { LogSizeBytes = region.Bytes, CheckpointGatherWindow = TimeSpan.FromMicroseconds(gatherMicros) });
        await Journal(journal, 1, 0.2, ct).ConfigureAwait(false); // warm-up
        long flushes0 = dev.Counters.Flushes, checkpoints0 = journal.Statistics.Checkpoints;
        Progress($"commit: {committers} committers, gather {gatherMicros} µs, journal");
        var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
        var (commits, elapsed) = await Journal(journal, committers, seconds, ct).ConfigureAwait(false);
        double cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalSeconds;
        long flushes = dev.Counters.Flushes - flushes0, checkpoints = journal.Statistics.Checkpoints - checkpoints0;
        await journal.CloseAsync().ConfigureAwait(false);

        Progress($"commit: {committers} committers, baseline");
        var (baseline, baseElapsed) = await Baseline(baseFile.Path, bytes, committers, seconds).ConfigureAwait(false);
        return new Row(committers, gatherMicros, commits, elapsed, flushes, checkpoints, baseline, baseElapsed, cpu);
    }

    private static async Task<(long Commits, double Seconds)> Journal(MetadataJournal journal, int committers, double seconds, CancellationToken ct)
    {
        long total = 0;
        var limit = TimeSpan.FromSeconds(seconds);
        var sw = Stopwatch.StartNew();
        var tasks = Enumerable.Range(0, committers).Select(i => Task.Run(async () =>
        {
            var rnd = new Random(); // unseeded: the fast generator (a seeded Random fills bytes one at a time)
            var item = new BenchItem((ulong)i, 64);
            long n = 0;
            while (sw.Elapsed < limit && !ct.IsCancellationRequested)
            {
                item.Resize(64 + rnd.Next(193));
                rnd.NextBytes(item.State);
                ulong seq;
                using (var tx = await journal.BeginTransactionAsync((int)journal.EstimateLogBytes(item.GetLogSize())).ConfigureAwait(false))
                {
                    tx.AddItem(item);
                    seq = tx.Commit();
                }
                await journal.ForceAsync(seq).ConfigureAwait(false);
                n++;
            }
            Interlocked.Add(ref total, n);
        }, ct)).ToArray();
        await Task.WhenAll(tasks).ConfigureAwait(false);
        return (total, sw.Elapsed.TotalSeconds);
    }

    /// <summary>Each committer appends its record (under a lock that assigns the offset) and fdatasyncs the file.</summary>
    private static async Task<(long Commits, double Seconds)> Baseline(string path, long bytes, int committers, double seconds)
    {
        using (FileBlockDevice.Create(path, bytes / BlockDevice.SectorSize)) { } // preallocated and zero-filled, like the log
        using SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite);
        object appendLock = new();
        long end = 0, total = 0;
        var limit = TimeSpan.FromSeconds(seconds);
        var sw = Stopwatch.StartNew();
        var tasks = Enumerable.Range(0, committers).Select(i => Task.Run(() =>
        {
            var rnd = new Random(); // unseeded: the fast generator (a seeded Random fills bytes one at a time)
            var record = new byte[16 + 256];
            long n = 0;
            while (sw.Elapsed < limit)
            {
                int len = 16 + 64 + rnd.Next(193);
                rnd.NextBytes(record.AsSpan(0, len));
                lock (appendLock)
                {
                    if (end + len > bytes) end = 0;
                    RandomAccess.Write(handle, record.AsSpan(0, len), end);
                    end += len;
                }
                int errno = NativeFile.DataSync(handle);
                if (errno != 0) throw new IOException($"{path}: fdatasync failed: {NativeFile.Describe(errno)}");
                n++;
            }
            Interlocked.Add(ref total, n);
        })).ToArray();
        await Task.WhenAll(tasks).ConfigureAwait(false);
        return (total, sw.Elapsed.TotalSeconds);
    }

    private static void Print(List<Row> rows, double seconds)
    {
        Console.Out.WriteLine($"journal-bench commit: commit one 64..256 B item and force it, per committer, {seconds} s per case");
        Console.Out.Write(Table(
            ["committers", "gather µs", "commits/s", "baseline/s", "ratio", "device flushes", "checkpoints", "commits/flush", "cpu µs/commit"],
            rows.Select(r => (IReadOnlyList<string>)[r.Committers.ToString(), r.GatherMicros.ToString(), F(r.Rate), F(r.BaselineRate), F(r.Ratio, 2), r.Flushes.ToString(), r.Checkpoints.ToString(), F((double)r.Commits / Math.Max(1, r.Flushes), 1), F(r.CpuMicrosPerCommit, 2)])));
    }

    private static JsonObject ToJson(List<Row> rows, double seconds, int logMib)
    {
        var results = new JsonArray();
        foreach (var r in rows)
            results.Add(new JsonObject
            {
                ["committers"] = r.Committers,
                ["gather_us"] = r.GatherMicros,
                ["commits"] = r.Commits,
                ["seconds"] = Math.Round(r.Seconds, 4),
                ["commits_per_s"] = Math.Round(r.Rate, 1),
                ["baseline_commits"] = r.BaselineCommits,
                ["baseline_commits_per_s"] = Math.Round(r.BaselineRate, 1),
                ["ratio"] = Math.Round(r.Ratio, 3),
                ["device_flushes"] = r.Flushes,
                ["checkpoints"] = r.Checkpoints,
                ["cpu_seconds"] = Math.Round(r.CpuSeconds, 3),
            });
        return new JsonObject
        {
            ["benchmark"] = "commit",
            ["settings"] = new JsonObject { ["seconds"] = seconds, ["logMib"] = logMib },
            ["machine"] = Machine(),
            ["results"] = results,
        };
    }
}
