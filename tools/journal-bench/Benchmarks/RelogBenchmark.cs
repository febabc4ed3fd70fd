using System.Text.Json.Serialization;
using Journal;
using Journal.Format;
using Journal.Storage;

namespace JournalBench.Benchmarks;

/// <summary>
/// <c>journal-bench relog</c>: 100,000 commits spread over the same 10 items (64..256 bytes each), forced at the end;
/// log bytes the journal wrote (device counters of the log file, format excluded, unmount included), against the bytes
/// a naive write-ahead log writes for the same commits (each commit appended as a 16-byte record header plus the
/// item's bytes, no padding).
/// </summary>
internal static class RelogBenchmark
{
    public sealed record Report(
        [property: JsonPropertyName("benchmark")] string Benchmark,
        [property: JsonPropertyName("commits")] long Commits,
        [property: JsonPropertyName("items")] int Items,
        [property: JsonPropertyName("log_bytes")] long LogBytes,
        [property: JsonPropertyName("naive_bytes")] long NaiveBytes,
        [property: JsonPropertyName("ratio")] double Ratio,
        [property: JsonPropertyName("checkpoints")] long Checkpoints,
        [property: JsonPropertyName("relogs")] long Relogs);

    public const int NaiveRecordHeader = 16;

    public static async Task<Report> RunAsync(int commits = 100_000, int items = 10)
    {
        using var files = new BenchFiles("relog");
        const uint blocks = 16 * 2048; // 16 MiB log
        using var dev = FileBlockDevice.Create(files.File("log"), blocks);
        var j = MetadataJournal.Create(new LogRegion(dev, 0, blocks), new JournalOptions { LogSizeBytes = blocks * 512L });
        long before = dev.Counters.BytesWritten;
        var set = Enumerable.Range(0, items).Select(i => new BenchItem((ulong)i, 64)).ToArray();
        var rnd = new Random(1);
        long naive = 0;
        for (int i = 0; i < commits; i++)
        {
            var item = set[i % items];
            item.Resize(64 + rnd.Next(193));
            rnd.NextBytes(item.State);
            using var tx = await j.BeginTransactionAsync((int)j.EstimateLogBytes(item.GetLogSize()));
            tx.AddItem(item);
            tx.Commit();
            naive += NaiveRecordHeader + item.State.Length;
        }
        await j.ForceAllAsync();
        var stats = j.Statistics;
        await j.CloseAsync();
        long logBytes = dev.Counters.BytesWritten - before;
        return new Report("relog", commits, items, logBytes, naive, Math.Round((double)naive / logBytes, 1), stats.Checkpoints, stats.Relogs);
    }

    public static string Table(Report r) =>
        $"{"commits",8} {"items",6} {"log bytes",10} {"naive bytes",12} {"ratio",8} {"checkpoints",12}\n" +
        $"{r.Commits,8} {r.Items,6} {r.LogBytes,10} {r.NaiveBytes,12} {r.Ratio,8:F1} {r.Checkpoints,12}\n";
}
