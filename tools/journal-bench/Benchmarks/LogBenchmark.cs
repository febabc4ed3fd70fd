using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using Journal.Format;
using Journal.Log;
using Journal.Storage;
using static JournalBench.BenchCommon;

namespace JournalBench.Benchmarks;

/// <summary>
/// <c>journal-bench log</c>: appends transactions of 64 B, 512 B and 4 KiB to a log file in the system temporary folder
/// (a) forcing each one, (b) from concurrent writers that each force their own (sharing flushes), (c) unforced with one
/// force at the end; and, in the same run, writes the same number of records of the same size with plain FileStream
/// writes and fdatasync per record, per batch of as many records as there are writers, and once at the end.
/// </summary>
internal static class LogBenchmark
{
    private static readonly int[] PayloadSizes = [64, 512, 4096];

    private sealed record Case(int Payload, string Mode, long Records, double Seconds, long LogBytes, long Flushes,
        string BaselineMode, long BaselineRecords, double BaselineSeconds, long BaselineSyncs)
    {
        public double Rate => Records / Seconds;
        public double MBps => Records * (double)Payload / Seconds / 1e6;
        public double BaselineRate => BaselineRecords / BaselineSeconds;
        public double Ratio => Rate / BaselineRate;
    }

    public static Command CreateCommand()
    {
        var seconds = SecondsOption(1.5);
        var count = CountOption();
        var json = JsonOption();
        var writers = new Option<int>("--writers") { Description = "Concurrent writers in the shared-force case.", DefaultValueFactory = _ => 64 };
        var logMib = new Option<int>("--log-mib") { Description = "Size of the log file in MiB.", DefaultValueFactory = _ => 64 };
        var cmd = new Command("log", "Log append throughput: forced each, concurrent writers sharing forces, unforced; against FileStream + fdatasync.")
        {
            seconds, count, writers, logMib, json,
        };
        cmd.SetAction(async (pr, ct) =>
        {
            double s = pr.GetValue(seconds);
            long? c = pr.GetValue(count);
            int w = pr.GetValue(writers);
            int mib = pr.GetValue(logMib);
            if (CheckBudget(s, c) is { } err) return UsageError(err);
            if (w is < 1 or > 4096) return UsageError("--writers must be in 1..4096");
            if (mib is < 1 or > 4096) return UsageError("--log-mib must be in 1..4096");
            var cases = await RunAsync(s, c, w, mib, ct).ConfigureAwait(false);
            if (pr.GetValue(json)) PrintJson(ToJson(cases, s, c, w, mib));
            else Print(cases, s, c, w, mib);
            return 0;
        });
        return cmd;
    }

    private static async Task<List<Case>> RunAsync(double seconds, long? count, int writers, int logMib, CancellationToken ct)
    {
        var cases = new List<Case>();
        using var logFile = new TempFile("log");
        using var baseFile = new TempFile("baseline");
        long bytes = (long)logMib << 20;
        using var dev = FileBlockDevice.Create(logFile.Path, bytes / BlockDevice.SectorSize);
        var region = LogRegion.WholeDevice(dev);
        LogWriter.Format(region);
        using var baseline = new FdatasyncBaseline(baseFile.Path, bytes);
        await using var log = LogWriter.Open(region);

        foreach (int size in PayloadSizes)
        {
            var payload = new byte[size];
            Random.Shared.NextBytes(payload);
            var regions = new ReadOnlyMemory<byte>[] { payload };
            await Measure(log, regions, seconds, 200, forceEach: true, ct).ConfigureAwait(false);   // warm-up: 200 records

            Progress($"log: {size} B forced each");
            var a = await Measure(log, regions, seconds, count, forceEach: true, ct).ConfigureAwait(false);
            var ba = Baseline(baseline, payload, a.Records, 1, seconds);
            cases.Add(new Case(size, "forced each", a.Records, a.Seconds, a.LogBytes, a.Flushes,
                "fdatasync each record", ba.Records, ba.Seconds, ba.Syncs));

            Progress($"log: {size} B, {writers} writers sharing forces");
            var b = await MeasureConcurrent(log, regions, writers, seconds, count, ct).ConfigureAwait(false);
            var bb = Baseline(baseline, payload, b.Records, writers, seconds);
            cases.Add(new Case(size, $"{writers} writers", b.Records, b.Seconds, b.LogBytes, b.Flushes,
                $"fdatasync per {writers} records", bb.Records, bb.Seconds, bb.Syncs));

            Progress($"log: {size} B unforced");
            var u = await Measure(log, regions, seconds, count, forceEach: false, ct).ConfigureAwait(false);
            var bu = Baseline(baseline, payload, u.Records, long.MaxValue, seconds);
            cases.Add(new Case(size, "unforced, one force", u.Records, u.Seconds, u.LogBytes, u.Flushes,
                "one fdatasync at the end", bu.Records, bu.Seconds, bu.Syncs));
        }
        ProgressDone();
        return cases;
    }

    private readonly record struct Run(long Records, double Seconds, long LogBytes, long Flushes);

    /// <summary>One writer: each transaction forced (a), or none until one force at the end (c).</summary>
    private static async Task<Run> Measure(LogWriter log, ReadOnlyMemory<byte>[] regions, double seconds, long? count, bool forceEach, CancellationToken ct)
    {
        var before = log.Statistics;
        var sw = Stopwatch.StartNew();
        var limit = TimeSpan.FromSeconds(seconds);
        long n = 0;
        while (count is { } c ? n < c : sw.Elapsed < limit)
        {
            ct.ThrowIfCancellationRequested();
            var lsn = await log.WriteTransactionAsync(log.AllocateTransactionId(), regions, ct).ConfigureAwait(false);
            if (forceEach) await log.ForceAsync(lsn, ct).ConfigureAwait(false);
            // Nothing is written back anywhere: everything durable may be dropped from the log.
            if ((++n & 255) == 0) log.MoveTail(log.DurableLsn);
        }
        await log.ForceAllAsync(ct).ConfigureAwait(false);
        double elapsed = sw.Elapsed.TotalSeconds;
        log.MoveTail(log.DurableLsn);
        var after = log.Statistics;
        return new Run(n, elapsed, after.BytesWritten - before.BytesWritten, after.Flushes - before.Flushes);
    }

    /// <summary>Many writers, each forcing its own transactions (b): forces share flushes.</summary>
    private static async Task<Run> MeasureConcurrent(LogWriter log, ReadOnlyMemory<byte>[] regions, int writers, double seconds, long? count, CancellationToken ct)
    {
        var before = log.Statistics;
        var sw = Stopwatch.StartNew();
        var limit = TimeSpan.FromSeconds(seconds);
        long total = 0;
        long perWriter = count is { } c ? Math.Max(1, c / writers) : long.MaxValue;
        var tasks = Enumerable.Range(0, writers).Select(_ => Task.Run(async () =>
        {
            for (long i = 0; i < perWriter && (count is not null || sw.Elapsed < limit); i++)
            {
                var lsn = await log.WriteTransactionAsync(log.AllocateTransactionId(), regions, ct).ConfigureAwait(false);
                await log.ForceAsync(lsn, ct).ConfigureAwait(false);
                if ((Interlocked.Increment(ref total) & 255) == 0) log.MoveTail(log.DurableLsn);
            }
        }, ct)).ToArray();
        await Task.WhenAll(tasks).ConfigureAwait(false);
        double elapsed = sw.Elapsed.TotalSeconds;
        log.MoveTail(log.DurableLsn);
        var after = log.Statistics;
        return new Run(total, elapsed, after.BytesWritten - before.BytesWritten, after.Flushes - before.Flushes);
    }

    /// <summary>The same records with FileStream appends and an fdatasync every <paramref name="batch"/> records and at the end.</summary>
    private static (long Records, double Seconds, long Syncs) Baseline(FdatasyncBaseline file, byte[] payload, long records, long batch, double seconds)
    {
        long syncs0 = file.Syncs;
        var sw = Stopwatch.StartNew();
        var cap = TimeSpan.FromSeconds(3 * seconds);   // a very slow baseline stops early; its rate is what it managed
        long n = 0;
        while (n < records && sw.Elapsed < cap)
        {
            file.Append(payload);
            n++;
            if (n % batch == 0) file.Sync();
        }
        if (batch == long.MaxValue || n % batch != 0) file.Sync();
        return (n, sw.Elapsed.TotalSeconds, file.Syncs - syncs0);
    }

    private static void Print(List<Case> cases, double seconds, long? count, int writers, int logMib)
    {
        Console.WriteLine($"journal-bench log: {(count is { } c ? $"{c} records" : $"{seconds} s")} per case, {writers} writers, " +
            $"{logMib} MiB log in {Path.GetTempPath()}, {LogWriterOptions.Default}");
        Console.WriteLine();
        Console.Write(Table(
            ["payload", "log mode", "records", "records/s", "MB/s", "log MB", "flushes", "baseline (FileStream + fdatasync)", "records/s", "syncs", "ratio"],
            cases.Select(x => (IReadOnlyList<string>)[
                $"{x.Payload} B", x.Mode, F(x.Records), F(x.Rate), F(x.MBps, 2), F(x.LogBytes / 1e6, 1), F(x.Flushes),
                x.BaselineMode, F(x.BaselineRate), F(x.BaselineSyncs), F(x.Ratio, 2) + "x"])));
        Console.WriteLine();
        Console.WriteLine("ratio = log records/s / baseline records/s for the same number of records of the same size.");
    }

    private static JsonObject ToJson(List<Case> cases, double seconds, long? count, int writers, int logMib)
    {
        var results = new JsonArray();
        foreach (var x in cases)
        {
            results.Add(new JsonObject
            {
                ["payloadBytes"] = x.Payload,
                ["mode"] = x.Mode,
                ["records"] = x.Records,
                ["seconds"] = Math.Round(x.Seconds, 4),
                ["recordsPerSecond"] = Math.Round(x.Rate, 1),
                ["mbPerSecond"] = Math.Round(x.MBps, 3),
                ["logBytesWritten"] = x.LogBytes,
                ["flushes"] = x.Flushes,
                ["baseline"] = new JsonObject
                {
                    ["mode"] = x.BaselineMode,
                    ["records"] = x.BaselineRecords,
                    ["seconds"] = Math.Round(x.BaselineSeconds, 4),
                    ["recordsPerSecond"] = Math.Round(x.BaselineRate, 1),
                    ["fdatasyncs"] = x.BaselineSyncs,
                },
                ["ratio"] = Math.Round(x.Ratio, 3),
            });
        }
        return new JsonObject
        {
            ["benchmark"] = "log",
            ["settings"] = new JsonObject
            {
                ["secondsPerCase"] = count is null ? seconds : null,
                ["recordsPerCase"] = count,
                ["writers"] = writers,
                ["logMiB"] = logMib,
                ["writerOptions"] = LogWriterOptions.Default.ToString(),
            },
            ["machine"] = Machine(),
            ["results"] = results,
        };
    }
}
