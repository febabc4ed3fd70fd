using System.CommandLine;
using System.Text.Json.Nodes;
using Journal;
using Journal.Format;
using Journal.Storage;
using static JournalBench.BenchCommon;

namespace JournalBench.Benchmarks;

/// <summary>
/// <c>journal-bench relog</c>: 100,000 commits spread over the same 10 items (64..256 bytes each), then one force and
/// a clean close: the bytes the journal wrote to its log file (device counters, the format excluded, the unmount record
/// included), against the bytes a naive write-ahead log writes for the same commits (each commit appended as a 16-byte
/// record header plus the item, no padding).
/// </summary>
internal static class RelogBenchmark
{
    public const int NaiveRecordHeader = 16;

    public static Command CreateCommand()
    {
        var commits = new Option<int>("--commits") { Description = "Commits to make.", DefaultValueFactory = _ => 100_000 };
        var items = new Option<int>("--items") { Description = "Items the commits are spread over.", DefaultValueFactory = _ => 10 };
        var json = JsonOption();
        var cmd = new Command("relog", "Log bytes of many commits over a few items, against a naive write-ahead log.") { commits, items, json };
        cmd.SetAction(async (pr, ct) =>
        {
            int n = pr.GetValue(commits), k = pr.GetValue(items);
            if (n is < 1 or > 100_000_000) return UsageError("--commits must be in 1..100000000");
            if (k is < 1 or > 100_000) return UsageError("--items must be in 1..100000");
            var r = await RunAsync(n, k, ct).ConfigureAwait(false);
            ProgressDone();
            if (pr.GetValue(json)) PrintJson(r);
            else
            {
                Console.Out.WriteLine($"journal-bench relog: {n} commits over {k} items of 64..256 B, one force at the end");
                Console.Out.Write(Table(["commits", "items", "log bytes", "naive bytes", "ratio", "checkpoints"],
                    [[n.ToString(), k.ToString(), r["log_bytes"]!.ToString(), r["naive_bytes"]!.ToString(), F((double)r["ratio"]!, 1), r["checkpoints"]!.ToString()]]));
            }
            return 0;
        });
        return cmd;
    }

    private static async Task<JsonObject> RunAsync(int commits, int items, CancellationToken ct)
    {
        using var logFile = new TempFile("relog-log");
        const long bytes = 16L << 20;
        using var dev = FileBlockDevice.Create(logFile.Path, bytes / BlockDevice.SectorSize);
        var region = LogRegion.WholeDevice(dev);
        var journal = MetadataJournal.Create(region, new JournalOptions { LogSizeBytes = region.Bytes });
        long before = dev.Counters.BytesWritten;
        var set = Enumerable.Range(0, items).Select(i => new BenchItem((ulong)i, 64)).ToArray();
        var rnd = new Random(1);
        long naive = 0;
        Progress($"relog: {commits} commits");
        for (int i = 0; i < commits; i++)
        {
            var item = set[i % items];
            item.Resize(64 + rnd.Next(193));
            rnd.NextBytes(item.State);
            using var tx = await journal.BeginTransactionAsync((int)journal.EstimateLogBytes(item.GetLogSize()), ct).ConfigureAwait(false);
            tx.AddItem(item);
            tx.Commit();
            naive += NaiveRecordHeader + item.State.Length;
        }
        await journal.ForceAllAsync(ct).ConfigureAwait(false);
        var stats = journal.Statistics;
        await journal.CloseAsync().ConfigureAwait(false);
        long logBytes = dev.Counters.BytesWritten - before;
        return new JsonObject
        {
            ["benchmark"] = "relog",
            ["settings"] = new JsonObject { ["commits"] = commits, ["items"] = items, ["naiveRecordHeader"] = NaiveRecordHeader },
            ["machine"] = Machine(),
            ["log_bytes"] = logBytes,
            ["naive_bytes"] = naive,
            ["ratio"] = Math.Round((double)naive / logBytes, 1),
            ["checkpoints"] = stats.Checkpoints,
            ["relogs"] = stats.Relogs,
        };
    }
}
