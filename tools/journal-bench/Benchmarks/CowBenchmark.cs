using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using Journal.Storage;
using JournalBench.Measure;
using JournalBench.Peers;
using JournalBench.Plot;
using Snapshot;
using Snapshot.Sync;
using static JournalBench.BenchCommon;

namespace JournalBench.Benchmarks;

/// <summary>
/// <c>journal-bench cow --snapshots 1,8 --writers 16</c>: random 4 KiB first writes to the origin of a snapshot store
/// (4 KiB chunks) in the system temporary folder, every write to a chunk no snapshot has yet. For each snapshot count,
/// side by side in one run and on the same workload (same sizes, same depth, fresh files, each side's files dropped from
/// the page cache first):
/// <list type="bullet">
/// <item>the store as built (exception metadata through the journal);</item>
/// <item>the same store committing metadata the dm-snapshot way (each commit rewrites the COW file's metadata area and
/// flushes);</item>
/// <item><c>qemu-img bench -w -t none</c> on a fresh qcow2 overlay with clusters of the chunk size over a raw base of
/// the origin's size, as many requests at the same depth, each the first write of its cluster: its own time (not
/// durable) and that time plus the close that writes its metadata and flushes (durable);</item>
/// <item>the same writes to a plain file with the store's durability.</item>
/// </list>
/// Semantics: by default block devices' (a write returns when the data it displaced is durable in every snapshot and
/// its own data is written; one <see cref="SnapshotStore.FlushAsync"/> after the last write, inside the time);
/// <c>--write-through</c> makes each write durable when it returns. <c>--sequential</c> runs
/// <see cref="CowSequentialBenchmark"/> instead.
/// </summary>
internal static class CowBenchmark
{
    private const int ChunkBytes = 4096;
    private const int ChunkSectors = ChunkBytes / BlockDevice.SectorSize;

    /// <summary>One snapshot count's row.</summary>
    internal sealed record Result(int Snapshots, int Writers, long Writes, double BaselineWritesPerS, CowStoreResult Store, CowStoreResult Area,
        QemuImgBench.Result? Qcow2)
    {
        public double WritesPerS => Store.WritesPerS;
        public double AreaSchemeWritesPerS => Area.WritesPerS;
        private double Exceptions => Math.Max(1, (double)Writes * Snapshots);
        public double MetadataBytesPerException => Store.LogBytes / Exceptions;
        public double HomeBytesPerException => Store.CowMetadataBytes / Exceptions;
        public double AreaBytesPerException => Area.CowMetadataBytes / Exceptions;
    }

    /// <summary>The run's settings, for the header and the JSON.</summary>
    internal sealed record Settings(int Writers, long Writes, bool WriteThrough, long OriginSectors, long CowSectors, bool ColdCache,
        string? QemuImg, string? QemuImgVersion, string? PeerSkipped, LoadAverage? LoadStart, bool Preallocate = false, bool DeferWrites = false)
    {
        public LoadAverage? LoadEnd { get; set; }
        public JitWarmUp.Report? WarmUp { get; set; }
        public string Semantics => WriteThrough ? "write-through" : "block-device";
    }

    public static Command CreateCommand()
    {
        var snapshots = new Option<string>("--snapshots") { Description = "Snapshot counts to run, comma-separated (e.g. 0,1,2,4,8,16,32).", DefaultValueFactory = _ => "1,8" };
        var writers = new Option<int>("--writers") { Description = "Concurrent writers (and qemu-img bench's queue depth).", DefaultValueFactory = _ => 16 };
        var count = new Option<long>("--count") { Description = "Origin writes per case (each to a chunk not written before).", DefaultValueFactory = _ => 20000 };
        var writeThrough = new Option<bool>("--write-through") { Description = "Every origin write durable when it returns (StoreOptions.WriteThrough), instead of one flush at the end." };
        var requirePeer = new Option<bool>("--require-peer") { Description = "Fail (exit 2) when qemu-img (or qemu-io for --sequential) is not on PATH, instead of skipping the qcow2 peer." };
        var plot = new Option<string?>("--plot") { Description = "Write an SVG plot of writes/s against the snapshot count (store and area scheme) to this file." };
        var cowMib = new Option<long?>("--cow-mib") { Description = "Size of each COW file in MiB (default: what the writes need, with their metadata and 1 MiB spare)." };
        var warm = new Option<bool>("--warm-cache") { Description = "Leave each side's freshly made files in the page cache (default: drop them, so every side starts cold)." };
        var preallocate = new Option<bool>("--preallocate") { Description = "Create the snapshots with preallocated COW files (SnapshotOptions.Preallocate: written in full with zeros at creation, untimed)." };
        var deferWrites = new Option<bool>("--defer-writes") { Description = "Open the stores with StoreOptions.DeferCopiedWrites: an origin write that needs copies returns once they are written and queued for commit (its origin write follows the commit; durable after the timed flush at the end, as without it)." };
        var sequential = new Option<bool>("--sequential") { Description = "Sequential first writes: --gigabytes of the origin in --request-kib requests with one snapshot, against qemu-io on qcow2 and a plain file." };
        var gigabytes = new Option<double>("--gigabytes") { Description = "With --sequential: GiB written.", DefaultValueFactory = _ => 1 };
        var requestKib = new Option<int>("--request-kib") { Description = "With --sequential: request size in KiB.", DefaultValueFactory = _ => 1024 };
        var json = JsonOption();
        var cmd = new Command("cow", "Copy-on-write first writes to the origin: journal vs dm-snapshot area writes vs qcow2 (qemu-img bench) vs a plain file.")
        {
            snapshots, writers, count, writeThrough, requirePeer, plot, cowMib, warm, preallocate, deferWrites, sequential, gigabytes, requestKib, json,
        };
        cmd.SetAction(async (pr, ct) =>
        {
            if (pr.GetValue(deferWrites) && pr.GetValue(writeThrough))
                return UsageError("--defer-writes has no effect with --write-through (every write is durable when it returns)");
            if (pr.GetValue(sequential))
            {
                int[]? seqCounts = null;
                if (pr.GetResult(snapshots) is { Implicit: false })
                {
                    seqCounts = CountList.Parse(pr.GetValue(snapshots)!, SnapshotStore.MaxSnapshots);
                    if (seqCounts is null) return UsageError($"--snapshots must be a comma-separated list of counts in 1..{SnapshotStore.MaxSnapshots} with --sequential");
                }
                return await CowSequentialBenchmark.RunCommandAsync(seqCounts ?? [1], pr.GetValue(gigabytes), pr.GetValue(requestKib), pr.GetValue(writeThrough),
                    pr.GetValue(requirePeer), !pr.GetValue(warm), pr.GetValue(json), ct, pr.GetValue(preallocate), pr.GetValue(deferWrites)).ConfigureAwait(false);
            }
            if (CountList.Parse(pr.GetValue(snapshots)!, SnapshotStore.MaxSnapshots, min: 0) is not { } counts)
                return UsageError($"--snapshots must be a comma-separated list of counts in 0..{SnapshotStore.MaxSnapshots}");
            int w = pr.GetValue(writers);
            long n = pr.GetValue(count);
            if (w is < 1 or > 4096) return UsageError("--writers must be in 1..4096");
            if (n is < 1 or > 10_000_000) return UsageError("--count must be in 1..10000000");
            long? cow = pr.GetValue(cowMib);
            if (cow is < 1 or > 1 << 20) return UsageError("--cow-mib must be in 1..1048576");
            string? plotPath = pr.GetValue(plot);

            string? qemuImg = QemuTools.Find("qemu-img");
            string? skipped = qemuImg is null ? QemuTools.MissingMessage("qemu-img") : null;
            if (skipped is not null)
            {
                bool required = pr.GetValue(requirePeer);
                Console.Error.WriteLine(required ? $"journal-bench: qcow2 peer required (--require-peer): {skipped}" : $"journal-bench: qcow2 peer skipped: {skipped}");
                if (required) return 2;
            }
            long originSectors = OriginChunks(n) * ChunkSectors;
            long cowSectors = cow is { } c ? c * 2048 : CowStoreRun.CowSectorsFor(n, ChunkSectors);
            var settings = new Settings(w, n, pr.GetValue(writeThrough), originSectors, cowSectors, !pr.GetValue(warm), qemuImg,
                qemuImg is null ? null : await QemuTools.VersionAsync(qemuImg, ct).ConfigureAwait(false), skipped, LoadAverage.Read(), pr.GetValue(preallocate), pr.GetValue(deferWrites));
            var results = await RunAsync(counts, settings, ct).ConfigureAwait(false);
            settings.LoadEnd = LoadAverage.Read();
            if (plotPath is not null) File.WriteAllText(plotPath, Plot(results, settings));
            if (pr.GetValue(json)) PrintJson(ToJson(results, settings, plotPath));
            else Console.Out.Write(ToTable(results, settings, plotPath));
            return 0;
        });
        return cmd;
    }

    internal static async Task<IReadOnlyList<Result>> RunAsync(IReadOnlyList<int> snapshotCounts, Settings s, CancellationToken ct)
    {
        var results = new List<Result>();
        // Untimed warm-up of both commit modes, so the code is compiled (tiered JIT) before any run is timed: the run
        // that went first would otherwise pay for the compilation of what they share.
        Progress("cow: warm-up");
        var warm = s with { Writes = Math.Min(s.Writes, 4000) };
        int warmSnaps = Math.Clamp(snapshotCounts.Max(), 1, 8);
        CowStoreRun.MarkTimedParts = false;
        s.WarmUp = await JitWarmUp.RunAsync(async () =>
        {
            await StoreRunAsync(1, MetadataMode.Journal, warm, ct).ConfigureAwait(false);
            await StoreRunAsync(1, MetadataMode.DirectArea, warm, ct).ConfigureAwait(false);
            if (warmSnaps > 1)
            {
                await StoreRunAsync(warmSnaps, MetadataMode.Journal, warm, ct).ConfigureAwait(false);
                await StoreRunAsync(warmSnaps, MetadataMode.DirectArea, warm, ct).ConfigureAwait(false);
            }
        }).ConfigureAwait(false);
        CowStoreRun.MarkTimedParts = true;
        foreach (int snaps in snapshotCounts)
        {
            Progress($"cow: {snaps} snapshots, plain file");
            double baseline = await BaselineAsync(s, ct).ConfigureAwait(false);
            Progress($"cow: {snaps} snapshots, journal");
            var store = await StoreRunAsync(snaps, MetadataMode.Journal, s, ct).ConfigureAwait(false);
            Progress($"cow: {snaps} snapshots, dm-snapshot area writes");
            var area = await StoreRunAsync(snaps, MetadataMode.DirectArea, s, ct).ConfigureAwait(false);
            QemuImgBench.Result? qcow2 = null;
            if (s.QemuImg is { } qemuImg)
            {
                long imageBytes = s.OriginSectors * BlockDevice.SectorSize;
                Progress($"cow: {snaps} snapshots, qemu-img bench on qcow2");
                qcow2 = await QemuImgBench.RunAsync(qemuImg, imageBytes, ChunkBytes, s.Writes, s.Writers, ChunkBytes, ct).ConfigureAwait(false);
            }
            results.Add(new Result(snaps, s.Writers, s.Writes, baseline, store, area, qcow2));
        }
        ProgressDone();
        return results;
    }

    /// <summary>The origin has twice as many chunks as there are writes (at least 4096), so half of it is written.</summary>
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

    /// <summary>
    /// The same writes to a plain zero-filled file of the origin's size: write-through, each write followed by an
    /// fdatasync shared by concurrent writers (<see cref="GroupFlush"/>); else the writes then one fdatasync, timed.
    /// </summary>
    private static async Task<double> BaselineAsync(Settings s, CancellationToken ct)
    {
        using var file = new TempFile("cow-baseline");
        using var dev = FileBlockDevice.Create(file.Path, s.OriginSectors);
        if (s.ColdCache) PageCache.Drop(file.Path);
        var flush = new GroupFlush(c => dev.FlushAsync(c));
        var order = Order(s.OriginSectors / ChunkSectors, s.Writes, 1);
        var data = new byte[ChunkBytes];
        Random.Shared.NextBytes(data);
        long next = -1;
        var sw = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, s.Writers).Select(_ => Task.Run(async () =>
        {
            long i;
            while ((i = Interlocked.Increment(ref next)) < s.Writes)
            {
                await dev.WriteAsync(order[i] * ChunkSectors, data, ct).ConfigureAwait(false);
                if (s.WriteThrough) await flush.FlushAsync(ct).ConfigureAwait(false);
            }
        }, ct))).ConfigureAwait(false);
        if (!s.WriteThrough) await dev.FlushAsync(ct).ConfigureAwait(false);
        return s.Writes / sw.Elapsed.TotalSeconds;
    }

    private static Task<CowStoreResult> StoreRunAsync(int snaps, MetadataMode mode, Settings s, CancellationToken ct)
    {
        var setup = new CowStoreSetup(snaps, s.OriginSectors, ChunkSectors, mode, s.WriteThrough, s.CowSectors, s.ColdCache, s.Preallocate, s.DeferWrites);
        var order = Order(s.OriginSectors / ChunkSectors, s.Writes, 2);
        var data = new byte[ChunkBytes];
        Random.Shared.NextBytes(data);
        return CowStoreRun.RunAsync(setup, snaps == 0 ? 0 : s.Writes, async (store, latency, token) =>
        {
            var next = new StrongBox<long>(-1);
            var perWriter = new LatencyHistogram[s.Writers];
            var tasks = new Task[s.Writers];
            for (int k = 0; k < s.Writers; k++)
            {
                var h = perWriter[k] = new LatencyHistogram();
                tasks[k] = Task.Run(() => WriterAsync(store.Origin, order, data, next, h, token), token);
            }
            await Task.WhenAll(tasks).ConfigureAwait(false);
            foreach (var h in perWriter) latency.Add(h);
            return (s.Writes, s.Writes * ChunkBytes);
        }, ct);
    }

    /// <summary>One writer: takes the next chunk of the order and writes it, timing each write. No allocation per write.</summary>
    private static async Task WriterAsync(StoreVolume origin, long[] order, ReadOnlyMemory<byte> data, StrongBox<long> next, LatencyHistogram latency, CancellationToken ct)
    {
        long i;
        while ((i = Interlocked.Increment(ref next.Value)) < order.Length)
        {
            long start = Stopwatch.GetTimestamp();
            await origin.WriteAsync(order[i] * ChunkSectors, data, ct).ConfigureAwait(false);
            latency.RecordTicks(Stopwatch.GetTimestamp() - start);
        }
    }

    private static string Ratio(double a, double? b) => b is { } v && v > 0 ? F(a / v, 2) + "x" : "-";

    private static string Header(Settings s, string? plotPath)
    {
        var sb = new System.Text.StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"journal-bench cow: random 4 KiB first writes to the origin (4 KiB chunks), {s.Writers} writers, {s.Writes:N0} writes per case, ");
        sb.Append(s.WriteThrough ? "write-through (each write durable when it returns)" : "block-device semantics (one flush after the last write, timed)");
        sb.Append(CultureInfo.InvariantCulture, $", in {Path.GetTempPath()}\n");
        sb.Append(CultureInfo.InvariantCulture, $"origin {s.OriginSectors * BlockDevice.SectorSize / 1048576.0:N0} MiB; each COW file {s.CowSectors * BlockDevice.SectorSize / 1048576.0:N0} MiB (explicit SnapshotOptions.CowSectors: the writes need it; the default is a full copy of the origin); ");
        sb.Append(s.ColdCache ? "each side's files dropped from the page cache before it runs\n" : "files left in the page cache (--warm-cache)\n");
        if (s.Preallocate) sb.Append("snapshots created with preallocated COW files (--preallocate: zeros written over each file and flushed at creation, untimed)\n");
        if (s.DeferWrites) sb.Append("stores opened with DeferCopiedWrites (--defer-writes: a write returns once its copies are written and queued; its origin write follows their commit)\n");
        sb.Append(s.PeerSkipped is { } why ? $"qcow2 peer skipped: {why}\n" : $"qcow2 peer: {s.QemuImgVersion}\n");
        sb.Append(CultureInfo.InvariantCulture, $"{LoadAverage.Describe(s.LoadStart)} at start, {LoadAverage.Describe(s.LoadEnd)} at end\n");
        if (s.WarmUp is { } w) sb.Append(w.Describe()).Append('\n');
        if (plotPath is not null) sb.Append(CultureInfo.InvariantCulture, $"plot written to {plotPath}\n");
        return sb.ToString();
    }

    private static string ToTable(IReadOnlyList<Result> results, Settings s, string? plotPath)
    {
        string I(int v) => v.ToString(CultureInfo.InvariantCulture);
        var throughput = Table(
            ["snapshots", "writers", "writes", "writes/s", "area-scheme writes/s", "qcow2 writes/s", "qcow2 durable writes/s", "store/qcow2", "store/qcow2 durable", "store/area", "file writes/s", "ratio"],
            results.Select(r => (IReadOnlyList<string>)
            [
                I(r.Snapshots), I(r.Writers), F(r.Writes), F(r.WritesPerS), F(r.AreaSchemeWritesPerS),
                r.Qcow2 is { } q ? F(q.WritesPerS) : "-", r.Qcow2?.DurableWritesPerS is { } qd ? F(qd) : "-",
                Ratio(r.WritesPerS, r.Qcow2?.WritesPerS), Ratio(r.WritesPerS, r.Qcow2?.DurableWritesPerS), Ratio(r.WritesPerS, r.AreaSchemeWritesPerS),
                F(r.BaselineWritesPerS), Ratio(r.WritesPerS, r.BaselineWritesPerS),
            ]));
        var costs = Table(
            ["snapshots", "metadata", "writes/s", "p50 µs", "p99 µs", "flushes/write", "COW flushes", "log forces", "origin flushes", "rounds", "exc/round", "step 1 µs", "step 2 µs", "cpu µs/write", "csw/write", "items/write", "alloc B/write", "kept B/write", "flush ms"],
            results.SelectMany(r => new[] { r.Store, r.Area }.Select(x => (IReadOnlyList<string>)
            [
                I(r.Snapshots), x.Commit.Committer, F(x.WritesPerS), F(x.Latency.QuantileMicros(0.50)), F(x.Latency.QuantileMicros(0.99)),
                F(x.FlushesPerWrite, 2), F(x.Commit.CowFlushes), F(x.Commit.DurabilityWaits), F(x.OriginFlushes), F(x.Commit.Rounds),
                F(x.Commit.ExceptionsPerRound, 1), F(x.Commit.FlushMicrosPerRound, 0), F(x.Commit.CommitMicrosPerRound, 0), F(x.CpuMicrosPerWrite, 1), F(x.SwitchesPerWrite, 2), F(x.WorkItemsPerWrite, 2), F(x.AllocatedBytesPerWrite, 0), F(x.KeptBytesPerWrite, 0), F(x.FlushSeconds * 1000, 1),
            ])));
        var bytes = Table(
            ["snapshots", "journal B/exc", "area B/exc", "home B/exc"],
            results.Select(r => (IReadOnlyList<string>)
            [
                I(r.Snapshots), F(r.MetadataBytesPerException, 1), F(r.AreaBytesPerException, 1), F(r.HomeBytesPerException, 1),
            ]));
        return Header(s, plotPath) + "\n" + throughput
            + "\nwrites/s: the store (journal); area-scheme: the same store committing the dm-snapshot way; qcow2: qemu-img bench -w -t none\n"
            + $"-d {s.Writers} -s 4096 -S <stride> -c {s.Writes} on a fresh qcow2 overlay (4 KiB clusters), its own time, not durable at its end;\n"
            + "qcow2 durable: the same run plus the close that writes qcow2's metadata and flushes; file: the same writes to a plain\n"
            + "file with the store's durability; ratio: store/file.\n\n"
            + costs
            + "\nflushes/write: (COW flushes + log forces or durable area writes + origin flushes) / writes; rounds: commit rounds;\n"
            + "step 1, step 2: a round's mean time making its COW data durable, then committing (the pump runs them one round at a time);\n"
            + "cpu: the whole process's CPU time (every thread); csw: voluntary context switches of every thread (a thread blocking for\n"
            + "I/O or for work another thread hands it); items: thread-pool work items completed (work handed to a pool thread: a\n"
            + "continuation resumed there, a queued flush, a woken loop); alloc: bytes allocated by every thread; kept: of those, what is still\n"
            + "held at the end (heap growth between full collections before and after: new exception-table entries, pools grown; the\n"
            + "rest is garbage); flush ms: the closing FlushAsync.\n\n"
            + bytes
            + "\njournal B/exc: journal log bytes written per exception; area B/exc: COW metadata bytes per exception when each commit\n"
            + "rewrites the metadata area (the dm-snapshot scheme, same workload); home B/exc: segments written home by the journal.\n";
    }

    private static string Plot(IReadOnlyList<Result> results, Settings s)
    {
        var lines = new List<SvgLinePlot.Series>
        {
            new("store (journal)", results.Select(r => (double?)r.WritesPerS).ToArray(), "#1f77b4"),
            new("dm-snapshot area scheme", results.Select(r => (double?)r.AreaSchemeWritesPerS).ToArray(), "#d62728"),
        };
        if (results.Any(r => r.Qcow2 is not null))
            lines.Add(new("qcow2 overlay, qemu-img bench (no snapshots; reference)", results.Select(r => r.Qcow2?.WritesPerS).ToArray(), "#7f7f7f", Dashed: true));
        var plot = new SvgLinePlot
        {
            Title = "Origin random 4 KiB first writes against the number of snapshots",
            Subtitle = $"journal-bench cow, {s.Writers} writers, {s.Writes:N0} writes per point, {s.Semantics} semantics"
                + (s.Preallocate ? ", preallocated COW files" : "") + (s.DeferWrites ? ", deferred origin writes" : "") + $", {LoadAverage.Describe(s.LoadStart)}",
            XLabel = "snapshots of the origin",
            YLabel = "origin writes/s (log scale)",
            LogY = true,
            Categories = results.Select(r => r.Snapshots.ToString(CultureInfo.InvariantCulture)).ToArray(),
            Lines = lines,
        };
        return plot.Render();
    }

    private static JsonObject StoreJson(CowStoreResult x) => new()
    {
        ["committer"] = x.Commit.Committer,
        ["writes_per_s"] = Math.Round(x.WritesPerS, 1),
        ["seconds"] = Math.Round(x.Seconds, 4),
        ["flush_seconds"] = Math.Round(x.FlushSeconds, 4),
        ["latency_p50_us"] = Math.Round(x.Latency.QuantileMicros(0.50), 1),
        ["latency_p99_us"] = Math.Round(x.Latency.QuantileMicros(0.99), 1),
        ["latency_max_us"] = Math.Round(x.Latency.QuantileMicros(1), 1),
        ["flushes_per_write"] = Math.Round(x.FlushesPerWrite, 3),
        ["cow_flushes"] = x.Commit.CowFlushes,
        ["cow_write_backs"] = x.Commit.CowWriteBacks,
        ["carried_rounds"] = x.Commit.CarriedRounds,
        ["run_waits"] = x.Commit.RunWaits,
        ["log_forces"] = x.Commit.DurabilityWaits,
        ["log_device_flushes"] = x.LogDeviceFlushes,
        ["origin_flushes"] = x.OriginFlushes,
        ["commit_rounds"] = x.Commit.Rounds,
        ["commit_exceptions"] = x.Commit.Exceptions,
        ["commit_transactions"] = x.Commit.Transactions,
        ["exceptions_per_round"] = Math.Round(x.Commit.ExceptionsPerRound, 2),
        ["largest_round"] = x.Commit.LargestRound,
        ["average_round_wait_ms"] = Math.Round(x.Commit.AverageRoundWaitMs, 3),
        ["round_flush_us"] = Math.Round(x.Commit.FlushMicrosPerRound, 1),
        ["round_commit_us"] = Math.Round(x.Commit.CommitMicrosPerRound, 1),
        ["failed_rounds"] = x.Commit.FailedRounds,
        ["cpu_us_per_write"] = Math.Round(x.CpuMicrosPerWrite, 2),
        ["voluntary_switches_per_write"] = Math.Round(x.SwitchesPerWrite, 3),
        ["involuntary_switches_per_write"] = Math.Round(x.PreemptionsPerWrite, 3),
        ["pool_work_items_per_write"] = Math.Round(x.WorkItemsPerWrite, 3),
        ["allocated_bytes_per_write"] = Math.Round(x.AllocatedBytesPerWrite, 1),
        ["kept_bytes_per_write"] = Math.Round(x.KeptBytesPerWrite, 1),
        ["log_bytes"] = x.LogBytes,
        ["cow_metadata_bytes"] = x.CowMetadataBytes,
    };

    private static JsonNode? QemuJson(QemuImgBench.Result? q) => q is null ? null : new JsonObject
    {
        ["writes_per_s"] = Math.Round(q.WritesPerS, 1),
        ["seconds"] = q.Seconds,
        ["close_seconds"] = q.CloseSeconds is { } c ? Math.Round(c, 4) : null,
        ["durable_writes_per_s"] = q.DurableWritesPerS is { } d ? Math.Round(d, 1) : null,
        ["command"] = q.CommandLine,
    };

    private static JsonObject ToJson(IReadOnlyList<Result> results, Settings s, string? plotPath) => new()
    {
        ["benchmark"] = "cow",
        ["machine"] = Machine(),
        ["semantics"] = s.Semantics,
        ["writers"] = s.Writers,
        ["writes"] = s.Writes,
        ["origin_bytes"] = s.OriginSectors * BlockDevice.SectorSize,
        ["cow_bytes_per_snapshot"] = s.CowSectors * BlockDevice.SectorSize,
        ["cold_cache"] = s.ColdCache,
        ["preallocate"] = s.Preallocate,
        ["defer_writes"] = s.DeferWrites,
        ["peer"] = s.PeerSkipped is { } why ? new JsonObject { ["skipped"] = why } : new JsonObject { ["qemu_img"] = s.QemuImg, ["version"] = s.QemuImgVersion },
        ["load_average_start"] = s.LoadStart?.ToString(),
        ["load_average_end"] = s.LoadEnd?.ToString(),
        ["warm_up"] = s.WarmUp?.Describe(),
        ["plot"] = plotPath,
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
            ["qcow2_writes_per_s"] = r.Qcow2 is { } q ? Math.Round(q.WritesPerS, 1) : null,
            ["qcow2_durable_writes_per_s"] = r.Qcow2?.DurableWritesPerS is { } qd ? Math.Round(qd, 1) : null,
            ["ratio_qcow2"] = r.Qcow2 is { } q2 ? Math.Round(r.WritesPerS / q2.WritesPerS, 3) : null,
            ["ratio_qcow2_durable"] = r.Qcow2?.DurableWritesPerS is { } qd2 ? Math.Round(r.WritesPerS / qd2, 3) : null,
            ["ratio_area_scheme"] = Math.Round(r.WritesPerS / r.AreaSchemeWritesPerS, 3),
            ["latency_p50_us"] = Math.Round(r.Store.Latency.QuantileMicros(0.50), 1),
            ["latency_p99_us"] = Math.Round(r.Store.Latency.QuantileMicros(0.99), 1),
            ["flushes_per_write"] = Math.Round(r.Store.FlushesPerWrite, 3),
            ["exceptions_per_round"] = Math.Round(r.Store.Commit.ExceptionsPerRound, 2),
            ["allocated_bytes_per_write"] = Math.Round(r.Store.AllocatedBytesPerWrite, 1),
            ["kept_bytes_per_write"] = Math.Round(r.Store.KeptBytesPerWrite, 1),
            ["cpu_us_per_write"] = Math.Round(r.Store.CpuMicrosPerWrite, 2),
            ["store"] = StoreJson(r.Store),
            ["area_scheme"] = StoreJson(r.Area),
            ["qcow2"] = QemuJson(r.Qcow2),
        }).ToArray()),
    };
}
