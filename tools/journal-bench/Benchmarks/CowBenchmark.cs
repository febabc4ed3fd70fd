using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Journal.Storage;
using Snapshot;
using Snapshot.Sync;

namespace JournalBench.Benchmarks;

/// <summary>
/// <c>journal-bench cow --snapshots 1,8 --writers 16</c>: random 4 KiB first writes to the origin (4 KiB chunks), each
/// durable when it returns (write-through), with 1 and 8 snapshots. Reports writes/s against the same writes to a plain
/// file with the same durability (an fdatasync shared by concurrent writers before each write returns), and journal
/// bytes written per exception against the dm-snapshot scheme (one chunk-sized area write per commit), run in the
/// same invocation on the same workload.
/// </summary>
internal static class CowBenchmark
{
    internal sealed record Result(int Snapshots, int Writers, long Writes, double WritesPerS, double BaselineWritesPerS,
        double MetadataBytesPerException, double AreaBytesPerException, double HomeBytesPerException, double AreaSchemeWritesPerS);

    internal static async Task<IReadOnlyList<Result>> RunAsync(IReadOnlyList<int> snapshotCounts, int writers, long writes, string root)
    {
        var results = new List<Result>();
        foreach (int snaps in snapshotCounts)
        {
            double baseline = await BaselineAsync(root, writers, writes).ConfigureAwait(false);
            var (wps, logBytes, homeBytes) = await StoreRunAsync(root, snaps, writers, writes, MetadataMode.Journal).ConfigureAwait(false);
            var (areaWps, _, areaBytes) = await StoreRunAsync(root, snaps, writers, writes, MetadataMode.DirectArea).ConfigureAwait(false);
            double exceptions = (double)writes * snaps;
            results.Add(new Result(snaps, writers, writes, wps, baseline, logBytes / exceptions, areaBytes / exceptions, homeBytes / exceptions, areaWps));
        }
        return results;
    }

    private const int ChunkBytes = 4096;

    private static long OriginChunks(long writes) => Math.Max(writes * 2, 4096);

    /// <summary>The chunks to write, in a random order, each once.</summary>
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

    private static async Task<double> BaselineAsync(string root, int writers, long writes)
    {
        string path = Path.Combine(root, $"baseline-{Guid.NewGuid():N}.img");
        long chunks = OriginChunks(writes);
        try
        {
            using var dev = FileBlockDevice.Create(path, chunks * 8);
            var flush = new GroupFlush(ct => dev.FlushAsync(ct));
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
                    await dev.WriteAsync(order[i] * 8, data).ConfigureAwait(false);
                    await flush.FlushAsync().ConfigureAwait(false);
                }
            }))).ConfigureAwait(false);
            return writes / sw.Elapsed.TotalSeconds;
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>Runs the workload on a store; returns writes/s, journal bytes written and COW metadata bytes written (COW bytes less data copies).</summary>
    private static async Task<(double WritesPerS, long LogBytes, long CowMetadataBytes)> StoreRunAsync(string root, int snaps, int writers, long writes, MetadataMode mode)
    {
        string folder = Path.Combine(root, $"cow-{Guid.NewGuid():N}");
        long chunks = OriginChunks(writes);
        try
        {
            var options = new StoreOptions
            {
                OriginSectors = chunks * 8, ChunkSectors = 8, WriteThrough = true, LogBlocks = 65536, MetadataMode = mode,
            };
            var store = await SnapshotStore.CreateAsync(folder, options).ConfigureAwait(false);
            for (int s = 0; s < snaps; s++) await store.CreateSnapshotAsync($"s{s}").ConfigureAwait(false);
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
                    await store.Origin.WriteAsync(order[i] * 8, data).ConfigureAwait(false);
            }))).ConfigureAwait(false);
            double wps = writes / sw.Elapsed.TotalSeconds;
            // Metadata still in the log is written home at close: count it too.
            long cowBeforeClose = store.CowBytesWritten;
            long logBytes = store.LogDeviceCounters.BytesWritten - log0;
            await store.CloseAsync().ConfigureAwait(false);
            long dataBytes = writes * snaps * (long)ChunkBytes;
            long cowMeta = cowBeforeClose - cow0 - dataBytes;
            return (wps, logBytes, cowMeta);
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
        sb.Append(c, $"{"snapshots",9} {"writers",7} {"writes",7} {"writes/s",10} {"file writes/s",13} {"journal B/exc",13} {"area B/exc",10} {"home B/exc",10} {"area-scheme w/s",15}\n");
        foreach (var r in results)
            sb.Append(c, $"{r.Snapshots,9} {r.Writers,7} {r.Writes,7} {r.WritesPerS,10:F0} {r.BaselineWritesPerS,13:F0} {r.MetadataBytesPerException,13:F1} {r.AreaBytesPerException,10:F1} {r.HomeBytesPerException,10:F1} {r.AreaSchemeWritesPerS,15:F0}\n");
        return sb.ToString();
    }

    internal static string Json(IReadOnlyList<Result> results)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteString("benchmark", "cow");
            w.WriteStartArray("results");
            foreach (var r in results)
            {
                w.WriteStartObject();
                w.WriteNumber("snapshots", r.Snapshots);
                w.WriteNumber("writers", r.Writers);
                w.WriteNumber("writes", r.Writes);
                w.WriteNumber("writes_per_s", Math.Round(r.WritesPerS, 1));
                w.WriteNumber("baseline_writes_per_s", Math.Round(r.BaselineWritesPerS, 1));
                w.WriteNumber("metadata_bytes_per_exception", Math.Round(r.MetadataBytesPerException, 1));
                w.WriteNumber("area_bytes_per_exception", Math.Round(r.AreaBytesPerException, 1));
                w.WriteNumber("home_bytes_per_exception", Math.Round(r.HomeBytesPerException, 1));
                w.WriteNumber("area_scheme_writes_per_s", Math.Round(r.AreaSchemeWritesPerS, 1));
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }
}
