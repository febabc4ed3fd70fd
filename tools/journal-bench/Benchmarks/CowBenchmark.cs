using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Journal.Storage;
using Snapshot;
using Snapshot.Sync;
using static JournalBench.BenchCommon;

namespace JournalBench.Benchmarks;

/// <summary>
/// <c>journal-bench cow --snapshots 1,8 --writers 16</c>: random 4 KiB first writes to the origin of a snapshot store
/// (4 KiB chunks), each durable when it returns (write-through), in the system temporary folder. For each snapshot
/// count it runs, on the same workload: the store as built (exception metadata through the journal); the same store
/// committing metadata the dm-snapshot way (each commit rewrites the chunk-sized metadata area of the COW file and
/// flushes); and the same writes to a plain file with the same durability (an fdatasync shared by concurrent writers
/// before each write returns).
/// </summary>
internal static class CowBenchmark
{
    private const int ChunkBytes = 4096;

    internal sealed record Result(int Snapshots, int Writers, long Writes, double WritesPerS, double BaselineWritesPerS,
        double MetadataBytesPerException, double AreaBytesPerException, double HomeBytesPerException, double AreaSchemeWritesPerS);

    public static Command CreateCommand()
    {
        var snapshots = new Option<string>("--snapshots") { Description = "Snapshot counts to run, comma-separated.", DefaultValueFactory = _ => "1,8" };
        var writers = new Option<int>("--writers") { Description = "Concurrent writers.", DefaultValueFactory = _ => 16 };
        var count = new Option<long>("--count") { Description = "Origin writes per case (each to a chunk not written before).", DefaultValueFactory = _ => 20000 };
        var json = JsonOption();
        var cmd = new Command("cow", "Copy-on-write first writes to the origin, durable when they return: journal vs dm-snapshot area writes vs a plain file.")
        {
            snapshots, writers, count, json,
        };
        cmd.SetAction(async (pr, ct) =>
        {
            int[] counts;
            try { counts = pr.GetValue(snapshots)!.Split(',').Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray(); }
            catch (FormatException) { return UsageError("--snapshots must be a comma-separated list of numbers"); }
            if (counts.Length == 0 || counts.Any(n => n is < 0 or > SnapshotStore.MaxSnapshots)) return UsageError($"--snapshots must be in 0..{SnapshotStore.MaxSnapshots}");
            int w = pr.GetValue(writers);
            long n = pr.GetValue(count);
            if (w is < 1 or > 4096) return UsageError("--writers must be in 1..4096");
            if (n is < 1 or > 10_000_000) return UsageError("--count must be in 1..10000000");
            var results = await RunAsync(counts, w, n, ct).ConfigureAwait(false);
            if (pr.GetValue(json)) PrintJson(ToJson(results));
            else Console.Out.Write(ToTable(results));
            return 0;
        });
        return cmd;
    }

    internal static async Task<IReadOnlyList<Result>> RunAsync(IReadOnlyList<int> snapshotCounts, int writers, long writes, CancellationToken ct)
    {
        var results = new List<Result>();
        foreach (int snaps in snapshotCounts)
        {
            Progress($"cow: {snaps} snapshots, plain file");
            double baseline = await BaselineAsync(writers, writes, ct).ConfigureAwait(false);
            Progress($"cow: {snaps} snapshots, journal");
            var (wps, logBytes, homeBytes) = await StoreRunAsync(snaps, writers, writes, MetadataMode.Journal, ct).ConfigureAwait(false);
            Progress($"cow: {snaps} snapshots, dm-snapshot area writes");
            var (areaWps, _, areaBytes) = await StoreRunAsync(snaps, writers, writes, MetadataMode.DirectArea, ct).ConfigureAwait(false);
            double exceptions = Math.Max(1, (double)writes * snaps);
            results.Add(new Result(snaps, writers, writes, wps, baseline, logBytes / exceptions, areaBytes / exceptions, homeBytes / exceptions, areaWps));
        }
        ProgressDone();
        return results;
    }

    private static long OriginChunks(long writes) => Math.Max(writes * 2, 4096);

    /// <summary>The chunks written, in a random order, each once.</summary>
    private static long[] Order(long chunks, long writes, int seed)
    {
        var rnd = new Random(seed);
        var all = new long[chunks];
        for (long i = 0; i < chunks; i++) all[i] = i;
        for (long i = chunks - 1; i > 0; i--)
        {
            long j = rnd.NextInt64(i + 1);
            (all[i], all[j]) = (all[j], all[i]);
        }
        return all[..(int)writes];
    }

    private static async Task<double> BaselineAsync(int writers, long writes, CancellationToken ct)
    {
        using var file = new TempFile("cow-baseline");
        long chunks = OriginChunks(writes);
        using var dev = FileBlockDevice.Create(file.Path, chunks * (ChunkBytes / BlockDevice.SectorSize));
        var flush = new GroupFlush(c => dev.FlushAsync(c));
        var order = Order(chunks, writes, 1);
        var data = new byte[ChunkBytes];
        Random.Shared.NextBytes(data);
        long next = -1;
        var sw = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, writers).Select(_ => Task.Run(async () =>
        {
            long i;
            while ((i = Interlocked.Increment(ref next)) < writes)
            {
                await dev.WriteAsync(order[i] * 8, data, ct).ConfigureAwait(false);
                await flush.FlushAsync(ct).ConfigureAwait(false);
            }
        }, ct))).ConfigureAwait(false);
        return writes / sw.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// The workload on a store: returns writes/s, journal bytes written during the writes, and COW metadata bytes
    /// written during the writes (COW bytes less the data copies: segment write-backs and home-LSN stamps in journal
    /// mode, area rewrites in the dm-snapshot mode).
    /// </summary>
    private static async Task<(double WritesPerS, long LogBytes, long CowMetadataBytes)> StoreRunAsync(int snaps, int writers, long writes, MetadataMode mode, CancellationToken ct)
    {
        using var dir = new TempFile("cow-store");
        long chunks = OriginChunks(writes);
        try
        {
            var options = new StoreOptions
            {
                OriginSectors = chunks * 8, ChunkSectors = 8, WriteThrough = true, LogBlocks = 65536, MetadataMode = mode,
            };
            var store = await SnapshotStore.CreateAsync(dir.Path, options, ct).ConfigureAwait(false);
            try
            {
                for (int s = 0; s < snaps; s++) await store.CreateSnapshotAsync($"s{s}", null, ct).ConfigureAwait(false);
                var order = Order(chunks, writes, 2);
                var data = new byte[ChunkBytes];
                Random.Shared.NextBytes(data);
                long log0 = store.LogDeviceCounters.BytesWritten, cow0 = store.CowBytesWritten;
                long next = -1;
                var sw = Stopwatch.StartNew();
                await Task.WhenAll(Enumerable.Range(0, writers).Select(_ => Task.Run(async () =>
                {
                    long i;
                    while ((i = Interlocked.Increment(ref next)) < writes)
                        await store.Origin.WriteAsync(order[i] * 8, data, ct).ConfigureAwait(false);
                }, ct))).ConfigureAwait(false);
                double wps = writes / sw.Elapsed.TotalSeconds;
                long logBytes = store.LogDeviceCounters.BytesWritten - log0;
                long cowMeta = store.CowBytesWritten - cow0 - writes * snaps * (long)ChunkBytes;
                return (wps, logBytes, cowMeta);
            }
            finally
            {
                await store.CloseAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        finally
        {
            try { if (Directory.Exists(dir.Path)) Directory.Delete(dir.Path, true); } catch (IOException) { }
        }
    }

    private static string ToTable(IReadOnlyList<Result> results)
    {
        var header = new[] { "snapshots", "writers", "writes", "writes/s", "file writes/s", "ratio", "journal B/exc", "area B/exc", "home B/exc", "area-scheme writes/s" };
        var rows = results.Select(r => (IReadOnlyList<string>)new[]
        {
            r.Snapshots.ToString(CultureInfo.InvariantCulture), r.Writers.ToString(CultureInfo.InvariantCulture), F(r.Writes), F(r.WritesPerS),
            F(r.BaselineWritesPerS), F(r.WritesPerS / r.BaselineWritesPerS, 2) + "x", F(r.MetadataBytesPerException, 1),
            F(r.AreaBytesPerException, 1), F(r.HomeBytesPerException, 1), F(r.AreaSchemeWritesPerS),
        });
        return "journal-bench cow: random 4 KiB first writes to the origin (4 KiB chunks), write-through, in " + Path.GetTempPath() + "\n\n"
            + Table(header, rows)
            + "\njournal B/exc: journal log bytes written per exception; area B/exc: COW metadata bytes per exception when each commit\n"
            + "rewrites the metadata area (the dm-snapshot scheme, same workload); home B/exc: segments written home by the journal.\n";
    }

    private static JsonObject ToJson(IReadOnlyList<Result> results) => new()
    {
        ["benchmark"] = "cow",
        ["machine"] = Machine(),
        ["results"] = new JsonArray(results.Select(r => (JsonNode)new JsonObject
        {
            ["snapshots"] = r.Snapshots,
            ["writers"] = r.Writers,
            ["writes"] = r.Writes,
            ["writes_per_s"] = Math.Round(r.WritesPerS, 1),
            ["baseline_writes_per_s"] = Math.Round(r.BaselineWritesPerS, 1),
            ["metadata_bytes_per_exception"] = Math.Round(r.MetadataBytesPerException, 1),
            ["area_bytes_per_exception"] = Math.Round(r.AreaBytesPerException, 1),
            ["home_bytes_per_exception"] = Math.Round(r.HomeBytesPerException, 1),
            ["area_scheme_writes_per_s"] = Math.Round(r.AreaSchemeWritesPerS, 1),
        }).ToArray()),
    };
}
