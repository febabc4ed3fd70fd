using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using Snapshot;
using Snapshot.Nbd;
using JournalBench.Measure;
using static JournalBench.BenchCommon;

namespace JournalBench.Benchmarks;

/// <summary>
/// <c>journal-bench nbd</c>: the same <c>fio --ioengine=nbd</c> jobs, in one run, against
/// <list type="bullet">
/// <item><b>snapctl serve</b>: the store's NBD server (<see cref="NbdServer"/>, the code <c>snapctl serve</c> runs, hosted
/// in this process) over a store with one persistent snapshot, on a Unix socket;</item>
/// <item><b>qemu-nbd</b>: <c>qemu-nbd -t</c> serving a qcow2 overlay (4 KiB clusters) on a raw base of the same size
/// (fully written), cache=writeback, on a Unix socket;</item>
/// <item><b>direct</b>: the same operations as calls on the store's volumes in this process (no NBD), 16 at a time —
/// the <c>journal-bench cow</c> workload — to show what the NBD layer costs;</item>
/// <item><b>nbdkit memory</b> (when nbdkit is installed): a server that keeps the volume in RAM and does no disk I/O, on
/// a Unix socket — the ceiling: what fio can drive through one NBD connection on this machine, client and protocol
/// included, so a ratio to qemu-nbd can be read against the most any server could reach here.</item>
/// </list>
/// Jobs: random 4 KiB first writes at iodepth 16, each to a chunk (cluster) not yet copied (fio's random map writes every
/// block of the region once), without flush and with a flush after every write (<c>--fsync=1</c>); then random 4 KiB
/// reads at iodepth 16 of the snapshot: for the store the snapshot export after the write job (half its chunks in the
/// COW file, half read through to the origin), for qemu the raw base the overlay was written over (its point in time).
/// </summary>
internal static class NbdBenchmark
{
    private const int Depth = 16;
    private const int Block = 4096;

    internal sealed record Case(string Job, string Engine, long Operations, double Iops, double P50Us, double P99Us)
    {
        /// <summary>Busy CPU time of the whole machine during the job, per operation (µs); NaN when not measured.</summary>
        public double MachineCpuUs { get; init; } = double.NaN;
    }

    public static Command CreateCommand()
    {
        var count = new Option<long>("--count") { Description = "Writes (and reads) per job without flush.", DefaultValueFactory = _ => 20000 };
        var syncCount = new Option<long>("--sync-count") { Description = "Writes in the job with a flush after every write.", DefaultValueFactory = _ => 4000 };
        var rounds = new Option<int>("--rounds") { Description = "Times every job runs on every engine (interleaved); the median is reported.", DefaultValueFactory = _ => 3 };
        var deferWrites = new Option<bool>("--defer-writes") { Description = "Open the store with StoreOptions.DeferCopiedWrites (snapctl serve --defer-writes): a write that needs a copy is answered once the copy is written and queued for commit." };
        var preallocate = new Option<bool>("--preallocate") { Description = "Create the store's snapshot with a preallocated COW file (SnapshotOptions.Preallocate, untimed)." };
        var json = JsonOption();
        var cmd = new Command("nbd", "fio over NBD: the store's server (1 snapshot) vs qemu-nbd on a qcow2 overlay vs direct store calls.")
        {
            count, syncCount, rounds, deferWrites, preallocate, json,
        };
        cmd.SetAction(async (pr, ct) =>
        {
            long n = pr.GetValue(count), s = pr.GetValue(syncCount);
            int k = pr.GetValue(rounds);
            var choices = new StoreChoices(pr.GetValue(deferWrites), pr.GetValue(preallocate));
            if (k is < 1 or > 99) return UsageError("--rounds must be in 1..99");
            if (n is < 16 or > 2_000_000) return UsageError("--count must be in 16..2000000");
            if (s is < 16 or > 2_000_000) return UsageError("--sync-count must be in 16..2000000");
            foreach (var tool in new[] { "fio", "qemu-nbd", "qemu-img" })
                if (Which(tool) is null)
                {
                    Console.Error.WriteLine($"journal-bench: nbd needs {tool} (Debian: apt-get install fio qemu-utils)");
                    return 2;
                }
            // Untimed: the server runs in this process, so its code is compiled to its steady tier before any round.
            BenchCommon.Progress("nbd: warm-up");
            long warmOrigin = 64L << 20, warmWrites = Math.Min(n, 4000), warmSync = Math.Min(s, 1000);
            var warm = await JitWarmUp.RunAsync(async () =>
            {
                await StoreCaseAsync(warmOrigin, warmWrites, sync: false, viaNbd: true, choices, ct).ConfigureAwait(false);
                await StoreCaseAsync(warmOrigin, warmSync, sync: true, viaNbd: true, choices, ct).ConfigureAwait(false);
            }).ConfigureAwait(false);
            var all = new List<Case>();
            for (int round = 1; round <= k; round++) all.AddRange(await RunAsync(n, s, round, k, choices, ct).ConfigureAwait(false));
            ProgressDone();
            var results = Median(all);
            if (pr.GetValue(json)) PrintJson(ToJson(results, n, s, k, warm, choices));
            else Console.Out.Write(ToTable(results, n, s, k, warm, choices));
            return 0;
        });
        return cmd;
    }

    /// <summary>Per job and engine, the median IOPS, p50 and p99 of the rounds.</summary>
    private static List<Case> Median(List<Case> all) =>
        all.GroupBy(c => (c.Job, c.Engine)).Select(g =>
        {
            double M(Func<Case, double> f)
            {
                var v = g.Select(f).OrderBy(x => x).ToArray();
                return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
            }
            return new Case(g.Key.Job, g.Key.Engine, g.First().Operations, M(c => c.Iops), M(c => c.P50Us), M(c => c.P99Us)) { MachineCpuUs = M(c => c.MachineCpuUs) };
        }).ToList();

    private static async Task<List<Case>> RunAsync(long writes, long syncWrites, int round, int rounds, StoreChoices choices, CancellationToken ct)
    {
        void Progress(string text) => BenchCommon.Progress($"{text} (round {round} of {rounds})");
        var results = new List<Case>();
        long originBytes = Math.Max(writes * 2 * Block, 64L << 20);
        long syncOriginBytes = Math.Max(syncWrites * 2 * Block, 64L << 20);

        Progress("nbd: snapctl serve, writes and snapshot reads");
        results.AddRange(await StoreCaseAsync(originBytes, writes, sync: false, viaNbd: true, choices, ct).ConfigureAwait(false));
        Progress("nbd: snapctl serve, writes with a flush after each");
        results.AddRange(await StoreCaseAsync(syncOriginBytes, syncWrites, sync: true, viaNbd: true, choices, ct).ConfigureAwait(false));
        Progress("nbd: qemu-nbd, writes and base reads");
        results.AddRange(await QemuCaseAsync(originBytes, writes, sync: false, ct).ConfigureAwait(false));
        Progress("nbd: qemu-nbd, writes with a flush after each");
        results.AddRange(await QemuCaseAsync(syncOriginBytes, syncWrites, sync: true, ct).ConfigureAwait(false));
        if (Which("nbdkit") is not null)
        {
            Progress("nbd: nbdkit memory (the ceiling), writes and reads");
            results.AddRange(await CeilingCaseAsync(originBytes, writes, sync: false, ct).ConfigureAwait(false));
            Progress("nbd: nbdkit memory (the ceiling), writes with a flush after each");
            results.AddRange(await CeilingCaseAsync(syncOriginBytes, syncWrites, sync: true, ct).ConfigureAwait(false));
        }
        Progress("nbd: direct store calls, writes and snapshot reads");
        results.AddRange(await StoreCaseAsync(originBytes, writes, sync: false, viaNbd: false, choices, ct).ConfigureAwait(false));
        Progress("nbd: direct store calls, writes with a flush after each");
        results.AddRange(await StoreCaseAsync(syncOriginBytes, syncWrites, sync: true, viaNbd: false, choices, ct).ConfigureAwait(false));
        return results;
    }

    private static string JobName(bool sync) => sync ? "write+flush" : "write";

    /// <summary>A fresh store with one snapshot; the write job (and, without flush, the snapshot read job) through NBD or direct.</summary>
    /// <summary>How the benchmark's stores are opened and their snapshot made (<c>--defer-writes</c>, <c>--preallocate</c>).</summary>
    private sealed record StoreChoices(bool DeferWrites, bool Preallocate);

    private static async Task<List<Case>> StoreCaseAsync(long originBytes, long writes, bool sync, bool viaNbd, StoreChoices choices, CancellationToken ct)
    {
        string dir = TempDir("store");
        var list = new List<Case>();
        try
        {
            var store = await SnapshotStore.CreateAsync(Path.Combine(dir, "store"), new StoreOptions
            {
                OriginSectors = originBytes / 512, ChunkSectors = Block / 512, LogBlocks = 65536, DeferCopiedWrites = choices.DeferWrites,
            }, ct).ConfigureAwait(false);
            try
            {
                await store.CreateSnapshotAsync("s", choices.Preallocate ? new SnapshotOptions { Preallocate = true } : null, ct).ConfigureAwait(false);
                // Every side starts with its files out of the page cache, as in journal-bench cow.
                PageCache.DropFolder(dir);
                string engine = viaNbd ? "snapctl serve" : "direct";
                if (viaNbd)
                {
                    string socket = Path.Combine(dir, "nbd.sock");
                    await using var server = await NbdServer.StartAsync(store, new NbdServerOptions { UnixSockets = [socket] }, ct).ConfigureAwait(false);
                    list.Add(Fio(JobName(sync), engine, $"nbd+unix:///origin?socket={socket}", "randwrite", writes * Block, writes, sync));
                    if (!sync) list.Add(Fio("snapshot read", engine, $"nbd+unix:///s?socket={socket}", "randread", originBytes, writes, false));
                }
                else
                {
                    list.Add(await DirectWritesAsync(store, writes, sync, ct).ConfigureAwait(false));
                    if (!sync) list.Add(await DirectReadsAsync(store.GetSnapshot("s"), originBytes, writes, ct).ConfigureAwait(false));
                }
            }
            finally
            {
                await store.CloseAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        finally
        {
            TryDelete(dir);
        }
        return list;
    }

    /// <summary>qemu-nbd on a qcow2 overlay (4 KiB clusters) over a fully written raw base; reads of the base.</summary>
    private static async Task<List<Case>> QemuCaseAsync(long originBytes, long writes, bool sync, CancellationToken ct)
    {
        string dir = TempDir("qemu");
        var list = new List<Case>();
        try
        {
            string baseImg = Path.Combine(dir, "base.raw"), overlay = Path.Combine(dir, "overlay.qcow2");
            Tool("qemu-img", "create", "-q", "-f", "raw", "-o", "preallocation=full", baseImg, originBytes.ToString(CultureInfo.InvariantCulture));
            Tool("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "-b", baseImg, "-F", "raw", overlay);
            PageCache.DropFolder(dir);
            string socket = Path.Combine(dir, "qemu.sock");
            using (var q = await QemuNbdAsync(socket, ["-f", "qcow2", overlay], ct).ConfigureAwait(false))
                list.Add(Fio(JobName(sync), "qemu-nbd", $"nbd+unix:///?socket={socket}", "randwrite", writes * Block, writes, sync));
            if (!sync)
            {
                string rsocket = Path.Combine(dir, "qemu-r.sock");
                using var r = await QemuNbdAsync(rsocket, ["-r", "-f", "raw", baseImg], ct).ConfigureAwait(false);
                list.Add(Fio("snapshot read", "qemu-nbd", $"nbd+unix:///?socket={rsocket}", "randread", originBytes, writes, false));
            }
        }
        finally
        {
            TryDelete(dir);
        }
        return list;
    }

    /// <summary>
    /// The ceiling: <c>nbdkit memory</c> (the volume in RAM, no disk I/O; a flush does nothing), the same jobs; its reads
    /// cover the same region as the store's snapshot reads, after the write job.
    /// </summary>
    private static async Task<List<Case>> CeilingCaseAsync(long originBytes, long writes, bool sync, CancellationToken ct)
    {
        string dir = TempDir("ceil");
        var list = new List<Case>();
        try
        {
            string socket = Path.Combine(dir, "nbdkit.sock");
            using var server = await ServerAsync("nbdkit", ["-f", "-U", socket, "memory", $"size={originBytes}"], socket, ct).ConfigureAwait(false);
            list.Add(Fio(JobName(sync), Ceiling, $"nbd+unix:///?socket={socket}", "randwrite", writes * Block, writes, sync));
            if (!sync) list.Add(Fio("snapshot read", Ceiling, $"nbd+unix:///?socket={socket}", "randread", originBytes, writes, false));
        }
        finally
        {
            TryDelete(dir);
        }
        return list;
    }

    private const string Ceiling = "nbdkit memory";

    private sealed class Running(Process process) : IDisposable
    {
        public void Dispose()
        {
            try { if (!process.HasExited) process.Kill(); } catch (InvalidOperationException) { }
            process.WaitForExit(30_000);
            process.Dispose();
        }
    }

    private static Task<Running> QemuNbdAsync(string socket, string[] image, CancellationToken ct) =>
        ServerAsync("qemu-nbd", new[] { "-t", "-k", socket, "--cache=writeback", "--aio=threads" }.Concat(image).ToArray(), socket, ct);

    /// <summary>Starts an NBD server process and returns once <paramref name="socket"/> accepts connections.</summary>
    private static async Task<Running> ServerAsync(string program, string[] args, string socket, CancellationToken ct)
    {
        var psi = new ProcessStartInfo(Which(program)!) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        var running = new Running(p);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        // Why we poll: the server has no readiness signal but the socket accepting connections.
        while (true)
        {
            if (p.HasExited) throw new IOException($"{program} exited with {p.ExitCode}: {await p.StandardError.ReadToEndAsync(ct).ConfigureAwait(false)}");
            if (File.Exists(socket))
            {
                using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    probe.Connect(new UnixDomainSocketEndPoint(socket));
                    return running;
                }
                catch (SocketException) { }
            }
            if (DateTime.UtcNow > deadline)
            {
                running.Dispose();
                throw new IOException($"{program} did not start listening within 60 s");
            }
            await Task.Delay(50, ct).ConfigureAwait(false);
        }
    }

    /// <summary>Runs one fio job (iodepth 16, 4 KiB) and reads IOPS and completion-latency percentiles from its JSON.</summary>
    private static Case Fio(string job, string engine, string uri, string rw, long regionBytes, long operations, bool sync)
    {
        var args = new List<string>
        {
            "--name=" + job.Replace(' ', '-').Replace('+', '-'), "--ioengine=nbd", "--uri=" + uri, "--rw=" + rw, "--bs=4k",
            $"--iodepth={Depth}", $"--size={regionBytes}", $"--number_ios={operations}", "--output-format=json",
        };
        if (sync) args.Add("--fsync=1");
        if (rw == "randread") args.AddRange(["--norandommap", "--randrepeat=1"]);
        double? busy0 = MachineCpu.BusySeconds();
        var r = Tool("fio", args.ToArray());
        double? busy1 = MachineCpu.BusySeconds();
        using var doc = JsonDocument.Parse(r[r.IndexOf('{')..]);
        var j = doc.RootElement.GetProperty("jobs")[0];
        var dir = j.GetProperty(rw == "randread" ? "read" : "write");
        var pct = dir.GetProperty("clat_ns").GetProperty("percentile");
        long done = dir.GetProperty("total_ios").GetInt64();
        return new Case(job, engine, done, dir.GetProperty("iops").GetDouble(),
            pct.GetProperty("50.000000").GetDouble() / 1000, pct.GetProperty("99.000000").GetDouble() / 1000)
        {
            MachineCpuUs = PerOperationUs(busy0, busy1, done),
        };
    }

    /// <summary>The write job as direct calls: 16 writers, each write to a chunk not written before (random order).</summary>
    private static async Task<Case> DirectWritesAsync(SnapshotStore store, long writes, bool sync, CancellationToken ct)
    {
        var order = Shuffled(writes, 7);
        var latencies = new long[writes];
        var data = new byte[Block];
        Random.Shared.NextBytes(data);
        long next = -1;
        double? busy0 = MachineCpu.BusySeconds();
        var sw = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, Depth).Select(_ => Task.Run(async () =>
        {
            long i;
            while ((i = Interlocked.Increment(ref next)) < writes)
            {
                long t0 = Stopwatch.GetTimestamp();
                await store.Origin.WriteAsync(order[i] * (Block / 512), data, ct).ConfigureAwait(false);
                if (sync) await store.FlushAsync(ct).ConfigureAwait(false);
                latencies[i] = Stopwatch.GetTimestamp() - t0;
            }
        }, ct))).ConfigureAwait(false);
        var elapsed = sw.Elapsed;
        return Summary(JobName(sync), "direct", writes, elapsed, latencies, busy0, MachineCpu.BusySeconds());
    }

    /// <summary>The snapshot read job as direct calls: 16 readers, random 4 KiB reads over the whole volume.</summary>
    private static async Task<Case> DirectReadsAsync(StoreVolume snapshot, long bytes, long reads, CancellationToken ct)
    {
        var latencies = new long[reads];
        long blocks = bytes / Block;
        long next = -1;
        double? busy0 = MachineCpu.BusySeconds();
        var sw = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, Depth).Select(t => Task.Run(async () =>
        {
            var random = new Random(t);
            var buffer = new byte[Block];
            long i;
            while ((i = Interlocked.Increment(ref next)) < reads)
            {
                long t0 = Stopwatch.GetTimestamp();
                await snapshot.ReadAsync(random.NextInt64(blocks) * (Block / 512), buffer, ct).ConfigureAwait(false);
                latencies[i] = Stopwatch.GetTimestamp() - t0;
            }
        }, ct))).ConfigureAwait(false);
        var elapsed = sw.Elapsed;
        return Summary("snapshot read", "direct", reads, elapsed, latencies, busy0, MachineCpu.BusySeconds());
    }

    private static Case Summary(string job, string engine, long n, TimeSpan elapsed, long[] ticks, double? busy0, double? busy1)
    {
        Array.Sort(ticks);
        double Us(double q) => ticks[(int)Math.Min(ticks.Length - 1, q * ticks.Length)] * 1e6 / Stopwatch.Frequency;
        return new Case(job, engine, n, n / elapsed.TotalSeconds, Us(0.50), Us(0.99)) { MachineCpuUs = PerOperationUs(busy0, busy1, n) };
    }

    /// <summary>The machine's busy CPU time between two readings, per operation, in µs (NaN when not measured).</summary>
    private static double PerOperationUs(double? busy0, double? busy1, long operations) =>
        busy0 is null || busy1 is null || operations == 0 ? double.NaN : (busy1.Value - busy0.Value) * 1e6 / operations;

    private static long[] Shuffled(long n, int seed)
    {
        var rnd = new Random(seed);
        var a = new long[n];
        for (long i = 0; i < n; i++) a[i] = i;
        for (long i = n - 1; i > 0; i--)
        {
            long j = rnd.NextInt64(i + 1);
            (a[i], a[j]) = (a[j], a[i]);
        }
        return a;
    }

    private static string Tool(string program, params string[] args)
    {
        var psi = new ProcessStartInfo(Which(program)!) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(30)))
        {
            p.Kill();
            throw new IOException($"{program} did not finish within 30 minutes");
        }
        if (p.ExitCode != 0) throw new IOException($"{program} {string.Join(' ', args)} exited with {p.ExitCode}: {stderr.Result.Trim()}");
        return stdout.Result;
    }

    private static string? Which(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Concat(["/usr/bin", "/usr/sbin"])
            .Where(d => d.Length > 0).Select(d => Path.Combine(d, program)).FirstOrDefault(File.Exists);

    private static string TempDir(string label)
    {
        string d = Path.Combine(Path.GetTempPath(), $"jb-nbd-{label}-{Guid.NewGuid():N}"[..28]);
        Directory.CreateDirectory(d);
        return d;
    }

    private static void TryDelete(string dir)
    {
        try { Directory.Delete(dir, true); } catch (IOException) { }
    }

    private static Case? Find(IReadOnlyList<Case> results, string job, string engine) =>
        results.FirstOrDefault(c => c.Job == job && c.Engine == engine);

    private static string ToTable(IReadOnlyList<Case> results, long writes, long syncWrites, int rounds, JitWarmUp.Report warm, StoreChoices choices)
    {
        var header = new[] { "job", "engine", "ops", "IOPS", "p50 us", "p99 us", "cpu us/op", "vs qemu-nbd", "vs direct", "of ceiling" };
        var rows = results.OrderBy(c => c.Job == "write" ? 0 : c.Job == "write+flush" ? 1 : 2).ThenBy(c => c.Engine).Select(c =>
        {
            var q = Find(results, c.Job, "qemu-nbd");
            var d = Find(results, c.Job, "direct");
            var m = Find(results, c.Job, Ceiling);
            return (IReadOnlyList<string>)new[]
            {
                c.Job, c.Engine, F(c.Operations), F(c.Iops), F(c.P50Us), F(c.P99Us), double.IsNaN(c.MachineCpuUs) ? "-" : F(c.MachineCpuUs, 1),
                q is null || c.Engine == "qemu-nbd" ? "" : F(c.Iops / q.Iops, 2) + "x",
                d is null || c.Engine != "snapctl serve" ? "" : F(c.Iops / d.Iops, 2) + "x",
                m is null || c.Engine is Ceiling or "direct" ? "" : F(c.Iops / m.Iops, 2) + "x",
            };
        });
        return $"journal-bench nbd: fio --ioengine=nbd, 4 KiB, iodepth {Depth}; {writes} first writes (and reads), {syncWrites} with --fsync=1; median of {rounds} rounds; in {Path.GetTempPath()}\n"
            + (choices.DeferWrites ? "store opened with DeferCopiedWrites (--defer-writes, as snapctl serve --defer-writes)\n" : "")
            + (choices.Preallocate ? "snapshot created with a preallocated COW file (--preallocate, untimed)\n" : "") + $"{warm.Describe()}\n\n"
            + Table(header, rows)
            + "\nsnapctl serve: the store's NBD server, 1 persistent snapshot; qemu-nbd -t: qcow2 overlay (4 KiB clusters) on a raw base;\n"
            + "direct: the same operations as store calls, 16 at a time (no NBD). snapshot read: the store's snapshot export after the\n"
            + "write job (half its chunks copied); for qemu-nbd the raw base (the overlay's point in time). Each side's files are\n"
            + "dropped from the page cache before its jobs (the store's after create, qemu's base and overlay). Latencies are fio's\n"
            + "completion latencies (direct: per call, flush included). nbdkit memory: the volume in RAM, no disk I/O (its flush\n"
            + "does nothing), the most fio can drive through one connection here; of ceiling: IOPS / nbdkit memory's. cpu us/op:\n"
            + "busy CPU time of the whole machine during the job (/proc/stat: fio, the server and the kernel together, fio's start\n"
            + "and exit included) per operation; 2 cores busy for a second is 2,000,000 us.\n"
            + (Find(results, "write", Ceiling) is null ? "nbdkit not installed: no ceiling measured (Debian: apt-get install nbdkit)\n" : "");
    }

    private static JsonObject ToJson(IReadOnlyList<Case> results, long writes, long syncWrites, int rounds, JitWarmUp.Report warm, StoreChoices choices) => new()
    {
        ["defer_writes"] = choices.DeferWrites,
        ["preallocate"] = choices.Preallocate,
        ["warm_up"] = warm.Describe(),
        ["benchmark"] = "nbd",
        ["rounds"] = rounds,
        ["machine"] = Machine(),
        ["iodepth"] = Depth,
        ["block_bytes"] = Block,
        ["writes"] = writes,
        ["sync_writes"] = syncWrites,
        ["results"] = new JsonArray(results.Select(c =>
        {
            var q = Find(results, c.Job, "qemu-nbd");
            var d = Find(results, c.Job, "direct");
            var m = Find(results, c.Job, Ceiling);
            return (JsonNode)new JsonObject
            {
                ["job"] = c.Job,
                ["engine"] = c.Engine,
                ["operations"] = c.Operations,
                ["iops"] = Math.Round(c.Iops, 1),
                ["p50_us"] = Math.Round(c.P50Us, 1),
                ["p99_us"] = Math.Round(c.P99Us, 1),
                ["machine_cpu_us_per_op"] = double.IsNaN(c.MachineCpuUs) ? null : Math.Round(c.MachineCpuUs, 2),
                ["ratio_to_qemu_nbd"] = q is null ? null : Math.Round(c.Iops / q.Iops, 3),
                ["ratio_to_direct"] = d is null ? null : Math.Round(c.Iops / d.Iops, 3),
                ["ratio_to_ceiling"] = m is null ? null : Math.Round(c.Iops / m.Iops, 3),
            };
        }).ToArray()),
    };
}
