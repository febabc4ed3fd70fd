using System.Globalization;
using System.Text.Json.Nodes;
using Journal.Storage;
using JournalBench.Measure;
using JournalBench.Peers;
using Snapshot;
using static JournalBench.BenchCommon;

namespace JournalBench.Benchmarks;

/// <summary>
/// <c>journal-bench cow --sequential</c>: sequential first writes. Writes the whole origin (<c>--gigabytes</c>, default
/// 1 GiB) from offset 0 in requests of <c>--request-kib</c> (default 1 MiB), one request at a time, with one snapshot (so
/// every chunk is a first write), then one <see cref="SnapshotStore.FlushAsync"/>, all timed. In the same run:
/// <list type="bullet">
/// <item><c>qemu-io -f qcow2 [-t CACHE]</c> writing a fresh qcow2 overlay (64 KiB clusters) over a raw base of the same
/// size, then <c>flush</c>, in qemu-io's default cache mode (writethrough), <c>none</c> and <c>writeback</c>, each with
/// one request of the whole size (at most 1 GiB a request; the issue's <c>write -P 7 0 1G</c>) and with requests of the
/// store's size;</item>
/// <item>a plain file of the same size (written in full with zeros beforehand, as the origin is) written in the same
/// requests, then one fdatasync.</item>
/// </list>
/// Ratios: the store's MB/s over each qemu-io run's, and over one third of the plain file's (a first write moves each
/// byte three times: the origin read, the COW write, the origin write).
/// </summary>
internal static class CowSequentialBenchmark
{
    private const int ChunkSectors = 8;
    private const int Qcow2ClusterBytes = 64 * 1024;
    private const long MaxQemuRequest = 1L << 30;

    internal sealed record Row(int Snapshots, CowStoreResult Store, double PlainBytesPerS, double PlainSeconds, IReadOnlyList<QemuIo.Result> Qemu);

    internal sealed record Settings(long Bytes, int RequestBytes, bool WriteThrough, bool ColdCache, string? QemuIo, string? QemuImg, string? Version,
        string? PeerSkipped, LoadAverage? LoadStart, bool Preallocate = false, bool DeferWrites = false)
    {
        public LoadAverage? LoadEnd { get; set; }
        public JitWarmUp.Report? WarmUp { get; set; }
    }

    /// <summary>Bytes a warm-up pass writes (64 MiB, or the whole size when smaller).</summary>
    private const long WarmUpBytes = 64L << 20;

    public static async Task<int> RunCommandAsync(int[] snapshotCounts, double gigabytes, int requestKib, bool writeThrough, bool requirePeer, bool cold, bool json, CancellationToken ct, bool preallocate = false, bool deferWrites = false)
    {
        if (double.IsNaN(gigabytes) || gigabytes <= 0 || gigabytes > 64) return UsageError("--gigabytes must be in (0, 64]");
        if (requestKib is < 4 or > 65536 || (requestKib & 3) != 0) return UsageError("--request-kib must be a multiple of 4 in 4..65536");
        int requestBytes = requestKib * 1024;
        long bytes = (long)(gigabytes * (1L << 30)) / requestBytes * requestBytes;
        if (bytes < requestBytes || bytes % Qcow2ClusterBytes != 0) return UsageError("--gigabytes must hold at least one request and a whole number of 64 KiB clusters");
        string? qemuIo = QemuTools.Find("qemu-io"), qemuImg = QemuTools.Find("qemu-img");
        string? skipped = qemuIo is null ? QemuTools.MissingMessage("qemu-io") : qemuImg is null ? QemuTools.MissingMessage("qemu-img") : null;
        if (skipped is not null)
        {
            Console.Error.WriteLine(requirePeer ? $"journal-bench: qcow2 peer required (--require-peer): {skipped}" : $"journal-bench: qcow2 peer skipped: {skipped}");
            if (requirePeer) return 2;
        }
        var s = new Settings(bytes, requestBytes, writeThrough, cold, qemuIo, qemuImg,
            qemuIo is null ? null : await QemuTools.VersionAsync(qemuIo, ct).ConfigureAwait(false), skipped, LoadAverage.Read(), preallocate, deferWrites);
        // Untimed passes of the same requests on a small origin until the code runs at its steady tier (a GiB is only
        // 1,024 requests: timed cold, the first part of it would run the JIT's first, unoptimized code).
        Progress("cow --sequential: warm-up");
        var warm = s with { Bytes = Math.Max(s.RequestBytes, Math.Min(s.Bytes, WarmUpBytes) / s.RequestBytes * s.RequestBytes) };
        CowStoreRun.MarkTimedParts = false;
        s.WarmUp = await JitWarmUp.RunAsync(async () =>
        {
            foreach (int snaps in snapshotCounts.Distinct()) await StoreRunAsync(snaps, warm, ct).ConfigureAwait(false);
        }).ConfigureAwait(false);
        CowStoreRun.MarkTimedParts = true;
        var rows = new List<Row>();
        foreach (int snaps in snapshotCounts) rows.Add(await RunRowAsync(snaps, s, ct).ConfigureAwait(false));
        ProgressDone();
        s.LoadEnd = LoadAverage.Read();
        if (json) PrintJson(ToJson(rows, s));
        else Console.Out.Write(ToTable(rows, s));
        return 0;
    }

    private static async Task<Row> RunRowAsync(int snaps, Settings s, CancellationToken ct)
    {
        Progress($"cow --sequential: store, {snaps} snapshot(s)");
        var store = await StoreRunAsync(snaps, s, ct).ConfigureAwait(false);
        Progress("cow --sequential: plain file");
        return await PeersAsync(snaps, s, store, ct).ConfigureAwait(false);
    }

    /// <summary>What every side writes: requests of pattern 7.</summary>
    private static byte[] RequestData(Settings s)
    {
        var data = new byte[s.RequestBytes];
        Array.Fill(data, (byte)7);
        return data;
    }

    /// <summary>The store's side: <see cref="Settings.Bytes"/> of first writes from offset 0, then one flush, timed.</summary>
    private static async Task<CowStoreResult> StoreRunAsync(int snaps, Settings s, CancellationToken ct)
    {
        long sectors = s.Bytes / BlockDevice.SectorSize;
        long chunks = sectors / ChunkSectors;
        var setup = new CowStoreSetup(snaps, sectors, ChunkSectors, MetadataMode.Journal, s.WriteThrough, CowStoreRun.CowSectorsFor(chunks, ChunkSectors), s.ColdCache, s.Preallocate, s.DeferWrites);
        var data = RequestData(s);
        return await CowStoreRun.RunAsync(setup, chunks, async (st, latency, token) =>
        {
            long n = 0;
            for (long off = 0; off < s.Bytes; off += s.RequestBytes, n++)
            {
                long start = System.Diagnostics.Stopwatch.GetTimestamp();
                await st.Origin.WriteAsync(off / BlockDevice.SectorSize, data, token).ConfigureAwait(false);
                latency.RecordTicks(System.Diagnostics.Stopwatch.GetTimestamp() - start);
            }
            return (n, s.Bytes);
        }, ct).ConfigureAwait(false);
    }

    private static async Task<Row> PeersAsync(int snaps, Settings s, CowStoreResult store, CancellationToken ct)
    {
        var data = RequestData(s);
        var (plainSeconds, plainRate) = await PlainFileAsync(s, data, ct).ConfigureAwait(false);

        var qemu = new List<QemuIo.Result>();
        if (s.QemuIo is { } io && s.QemuImg is { } img)
        {
            long whole = Math.Min(s.Bytes, MaxQemuRequest);
            foreach (string? mode in new string?[] { null, "none", "writeback" })
                foreach (long request in whole == s.RequestBytes ? [whole] : new[] { whole, (long)s.RequestBytes })
                {
                    Progress($"cow --sequential: qemu-io, cache {mode ?? QemuIo.DefaultCacheMode}, {SizeLabel(request)} requests");
                    qemu.Add(await QemuIo.RunAsync(io, img, s.Bytes, Qcow2ClusterBytes, request, mode, ct).ConfigureAwait(false));
                }
        }
        return new Row(snaps, store, plainRate, plainSeconds, qemu);
    }

    /// <summary>The same requests to a plain zero-filled file, then one fdatasync; (seconds, bytes/s).</summary>
    private static async Task<(double Seconds, double BytesPerS)> PlainFileAsync(Settings s, byte[] data, CancellationToken ct)
    {
        using var file = new TempFile("cow-seq-plain");
        using var dev = FileBlockDevice.Create(file.Path, s.Bytes / BlockDevice.SectorSize);
        if (s.ColdCache) PageCache.Drop(file.Path);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        for (long off = 0; off < s.Bytes; off += s.RequestBytes)
        {
            await dev.WriteAsync(off / BlockDevice.SectorSize, data, ct).ConfigureAwait(false);
            if (s.WriteThrough) await dev.FlushAsync(ct).ConfigureAwait(false);
        }
        if (!s.WriteThrough) await dev.FlushAsync(ct).ConfigureAwait(false);
        double seconds = sw.Elapsed.TotalSeconds;
        return (seconds, s.Bytes / seconds);
    }

    /// <summary>"1 GiB", "128 MiB", "64 KiB".</summary>
    internal static string SizeLabel(long bytes) =>
        bytes % (1L << 30) == 0 ? $"{bytes >> 30} GiB" : bytes % (1L << 20) == 0 ? $"{bytes >> 20} MiB" : $"{bytes >> 10} KiB";

    private static string MB(double bytesPerS) => F(bytesPerS / 1e6, 1);

    private static string Ratio(double a, double b) => b > 0 ? F(a / b, 2) + "x" : "-";

    private static string ToTable(IReadOnlyList<Row> rows, Settings s)
    {
        var sb = new System.Text.StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"journal-bench cow --sequential: {s.Bytes / 1048576.0:N0} MiB of first writes from offset 0 in {SizeLabel(s.RequestBytes)} requests, one at a time, 4 KiB chunks, ");
        sb.Append(s.WriteThrough ? "write-through" : "one flush at the end (timed)");
        sb.Append(CultureInfo.InvariantCulture, $", in {Path.GetTempPath()}\n");
        sb.Append(s.ColdCache ? "each side's files dropped from the page cache before it runs\n" : "files left in the page cache (--warm-cache)\n");
        if (s.Preallocate) sb.Append("snapshot created with a preallocated COW file (--preallocate: zeros written over it and flushed at creation, untimed)\n");
        if (s.DeferWrites) sb.Append("store opened with DeferCopiedWrites (--defer-writes: a write returns once its copies are written and queued; its origin write follows their commit)\n");
        if (s.WarmUp is { } w) sb.Append(w.Describe()).Append(" of the store's side\n");
        sb.Append(s.PeerSkipped is { } why ? $"qcow2 peer skipped: {why}\n" : $"qcow2 peer: {s.Version}, overlay with 64 KiB clusters over a raw base of the same size\n");
        sb.Append(CultureInfo.InvariantCulture, $"{LoadAverage.Describe(s.LoadStart)} at start, {LoadAverage.Describe(s.LoadEnd)} at end\n");
        foreach (var r in rows)
        {
            double storeRate = r.Store.BytesPerS;
            var table = new List<IReadOnlyList<string>>
            {
                new[] { $"store, {r.Snapshots} snapshot(s)", F(r.Store.Bytes / 1048576.0), F(r.Store.Writes), F(r.Store.Seconds, 2), F(r.Store.FlushSeconds, 2), MB(storeRate), "1.00x" },
            };
            foreach (var q in r.Qemu)
                table.Add(new[]
                {
                    $"qemu-io qcow2, cache {q.CacheMode}{(q.IsDefaultCacheMode ? " (default)" : "")}, {SizeLabel(q.RequestBytes)} requests",
                    F(q.Bytes / 1048576.0), F(q.Requests), F(q.Seconds, 2), F(q.FlushSeconds, 2), MB(q.BytesPerS), Ratio(storeRate, q.BytesPerS),
                });
            table.Add(new[] { "plain file", F(s.Bytes / 1048576.0), F(r.Store.Writes), F(r.PlainSeconds, 2), "-", MB(r.PlainBytesPerS), Ratio(storeRate, r.PlainBytesPerS) });
            table.Add(new[] { "plain file / 3", "-", "-", "-", "-", MB(r.PlainBytesPerS / 3), Ratio(storeRate, r.PlainBytesPerS / 3) });
            sb.Append('\n').Append(Table(["side", "MiB", "requests", "seconds", "flush s", "MB/s", "store/side"], table));
            var x = r.Store;
            sb.Append(CultureInfo.InvariantCulture,
                $"store: request p50 {F(x.Latency.QuantileMicros(0.5), 0)} µs, p99 {F(x.Latency.QuantileMicros(0.99), 0)} µs; {F(x.Commit.Rounds)} commit rounds, {F(x.Commit.ExceptionsPerRound, 1)} exceptions/round ({F(x.Commit.RunWaits)} waited for runs, {F(x.Commit.CarriedRounds)} carried), ");
            sb.Append(CultureInfo.InvariantCulture,
                $"{F(x.Commit.CowFlushes)} COW flushes, {F(x.Commit.DurabilityWaits)} log forces, {F(x.OriginFlushes)} origin flushes ({F(x.FlushesPerWrite, 2)} per request); ");
            sb.Append(CultureInfo.InvariantCulture,
                $"a round's step 1 (COW data durable) {F(x.Commit.FlushMicrosPerRound, 0)} µs, step 2 (commit) {F(x.Commit.CommitMicrosPerRound, 0)} µs, wait {F(x.Commit.AverageRoundWaitMs * 1000, 0)} µs; ");
            sb.Append(CultureInfo.InvariantCulture,
                $"cpu {F(x.Usage.Cpu.TotalMilliseconds / (x.Bytes / 1048576.0), 2)} ms/MiB, allocated {F(x.Usage.AllocatedBytes / (x.Bytes / 1048576.0), 0)} B/MiB\n");
        }
        sb.Append("\nseconds: writes plus the closing flush (flush s). qemu-io: its own time for each write (-C), plus the flush timed from\n"
            + "here; its default cache mode is writethrough (each write flushed). store/side: the store's MB/s over that side's.\n");
        return sb.ToString();
    }

    private static JsonObject ToJson(IReadOnlyList<Row> rows, Settings s) => new()
    {
        ["benchmark"] = "cow-sequential",
        ["machine"] = Machine(),
        ["bytes"] = s.Bytes,
        ["request_bytes"] = s.RequestBytes,
        ["semantics"] = s.WriteThrough ? "write-through" : "block-device",
        ["cold_cache"] = s.ColdCache,
        ["preallocate"] = s.Preallocate,
        ["defer_writes"] = s.DeferWrites,
        ["warm_up"] = s.WarmUp?.Describe(),
        ["peer"] = s.PeerSkipped is { } why ? new JsonObject { ["skipped"] = why } : new JsonObject { ["qemu_io"] = s.QemuIo, ["version"] = s.Version },
        ["load_average_start"] = s.LoadStart?.ToString(),
        ["load_average_end"] = s.LoadEnd?.ToString(),
        ["results"] = new JsonArray(rows.Select(r =>
        {
            var x = r.Store;
            var defaultWhole = r.Qemu.FirstOrDefault(q => q.IsDefaultCacheMode && q.RequestBytes == Math.Min(s.Bytes, MaxQemuRequest));
            return (JsonNode)new JsonObject
            {
                ["snapshots"] = r.Snapshots,
                ["store_bytes_per_s"] = Math.Round(x.BytesPerS, 0),
                ["store_seconds"] = Math.Round(x.Seconds, 4),
                ["store_flush_seconds"] = Math.Round(x.FlushSeconds, 4),
                ["store_requests"] = x.Writes,
                ["latency_p50_us"] = Math.Round(x.Latency.QuantileMicros(0.50), 1),
                ["latency_p99_us"] = Math.Round(x.Latency.QuantileMicros(0.99), 1),
                ["commit_rounds"] = x.Commit.Rounds,
                ["exceptions_per_round"] = Math.Round(x.Commit.ExceptionsPerRound, 2),
                ["cow_flushes"] = x.Commit.CowFlushes,
                ["cow_write_backs"] = x.Commit.CowWriteBacks,
                ["carried_rounds"] = x.Commit.CarriedRounds,
                ["run_waits"] = x.Commit.RunWaits,
                ["round_flush_us"] = Math.Round(x.Commit.FlushMicrosPerRound, 1),
                ["round_commit_us"] = Math.Round(x.Commit.CommitMicrosPerRound, 1),
                ["average_round_wait_ms"] = Math.Round(x.Commit.AverageRoundWaitMs, 3),
                ["log_forces"] = x.Commit.DurabilityWaits,
                ["origin_flushes"] = x.OriginFlushes,
                ["flushes_per_request"] = Math.Round(x.FlushesPerWrite, 3),
                ["cpu_seconds"] = Math.Round(x.Usage.Cpu.TotalSeconds, 3),
                ["allocated_bytes"] = x.Usage.AllocatedBytes,
                ["plain_bytes_per_s"] = Math.Round(r.PlainBytesPerS, 0),
                ["ratio_plain_third"] = Math.Round(x.BytesPerS / (r.PlainBytesPerS / 3), 3),
                ["ratio_qemu_io_default"] = defaultWhole is null ? null : Math.Round(x.BytesPerS / defaultWhole.BytesPerS, 3),
                ["qemu_io"] = new JsonArray(r.Qemu.Select(q => (JsonNode)new JsonObject
                {
                    ["cache"] = q.CacheMode,
                    ["default_cache_mode"] = q.IsDefaultCacheMode,
                    ["request_bytes"] = q.RequestBytes,
                    ["requests"] = q.Requests,
                    ["bytes_per_s"] = Math.Round(q.BytesPerS, 0),
                    ["write_seconds"] = Math.Round(q.WriteSeconds, 4),
                    ["flush_seconds"] = Math.Round(q.FlushSeconds, 4),
                    ["write_wall_seconds"] = Math.Round(q.WriteWallSeconds, 4),
                    ["ratio"] = Math.Round(x.BytesPerS / q.BytesPerS, 3),
                    ["command"] = q.CommandLine,
                }).ToArray()),
            };
        }).ToArray()),
    };
}
