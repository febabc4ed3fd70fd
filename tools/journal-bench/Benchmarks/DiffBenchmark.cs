using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Journal.Storage;
using Snapshot;
using Snapshot.Changes;
using Snapshot.Nbd;
using Snapshot.Storage;
using static JournalBench.BenchCommon;

namespace JournalBench.Benchmarks;

/// <summary>
/// <c>journal-bench diff</c>: what changed-block tracking costs, in one run.
/// <list type="number">
/// <item><b>Maps</b>: a store with a large origin (1 TiB by default) on sparse memory devices (only written, non-zero
/// bytes take memory; the copies are of zeros and take none), snapshot <c>a</c>, N distinct scattered chunks written
/// (N = 10^3 .. 10^6), snapshot <c>b</c>, N/2 more (half of them chunks <c>a</c> already holds, so both hold them after
/// <c>b</c>'s mark). Then each map from nothing (caches dropped): <c>a → origin</c>, <c>a → b</c>,
/// <c>b → origin</c>, and <c>a → b</c> again after one write into <c>b</c> (the chunks both hold after the mark are then
/// compared by content). For each: time, extents, metadata entries and bytes read, every byte read from the store's
/// devices, chunks compared, bytes allocated — against the size of the volume. The whole <c>a → origin</c> map is also
/// read by <c>nbdinfo --map=qemu:dirty-bitmap:a --totals</c> from an in-process NBD server (the time of the client
/// process, start to exit).</item>
/// <item><b>Incremental backup</b>: a store in real files (256 MiB by default, random data), snapshot <c>a</c>, a full
/// <c>nbdcopy</c> of it, 1% of the chunks rewritten, snapshot <c>b</c>, then the incremental step a backup tool takes:
/// <c>nbdinfo --map=qemu:dirty-bitmap:a --json</c> on export <c>b</c> and only the dirty extents read (python3-libnbd)
/// into the full copy; <c>qemu-img compare</c> confirms the result equals <c>b</c>. Printed: bytes moved by each, and
/// their ratio.</item>
/// </list>
/// </summary>
internal static class DiffBenchmark
{
    private const int ChunkBytes = 4096;
    private const string Python = "/usr/bin/python3";

    internal sealed record MapCase(long VolumeBytes, long Exceptions, string Pair, long Chunks, int Extents, double Ms, long MetadataEntries,
        long MetadataBytes, long DeviceBytesRead, long ChunksCompared, long BytesCompared, long AllocatedBytes);

    internal sealed record ClientCase(long VolumeBytes, long Exceptions, string Export, string Bitmap, long DirtyBytes, double Ms);

    internal sealed record BackupCase(long VolumeBytes, long ChangedChunks, long FullBytes, double FullMs, long IncrementalBytes, double MapMs,
        double CopyMs, bool Identical)
    {
        public double Ratio => (double)IncrementalBytes / FullBytes;
    }

    public static Command CreateCommand()
    {
        var maxExceptions = new Option<long>("--max-exceptions")
        {
            Description = "Largest number of exceptions measured (10^3, 10^4, ... up to it).",
            DefaultValueFactory = _ => 1_000_000,
        };
        var originSize = new Option<long>("--origin-size")
        {
            Description = "Origin size of the map cases (sparse memory devices).",
            DefaultValueFactory = _ => 1L << 40,
            CustomParser = ParseSize,
        };
        var backupSize = new Option<long>("--backup-size")
        {
            Description = "Origin size of the backup case (real files in the temporary folder).",
            DefaultValueFactory = _ => 256L << 20,
            CustomParser = ParseSize,
        };
        var json = JsonOption();
        var cmd = new Command("diff", "Changed-block maps: time and bytes read against the number of exceptions and the volume size; an incremental backup through NBD against a full nbdcopy.")
        {
            maxExceptions, originSize, backupSize, json,
        };
        cmd.SetAction(async (pr, ct) =>
        {
            long max = pr.GetValue(maxExceptions), origin = pr.GetValue(originSize), backup = pr.GetValue(backupSize);
            if (max is < 1000 or > 10_000_000) return UsageError("--max-exceptions must be in 1000..10000000");
            if (origin % ChunkBytes != 0 || origin / ChunkBytes < 4 * max) return UsageError($"--origin-size must be whole 4 KiB chunks, at least 4 per exception ({4 * max * ChunkBytes} bytes)");
            if (backup % ChunkBytes != 0 || backup < 16L << 20 || backup > 64L << 30) return UsageError("--backup-size must be whole 4 KiB chunks from 16 MiB to 64 GiB");
            foreach (var tool in new[] { "nbdinfo", "nbdcopy", "qemu-img" })
                if (Which(tool) is null)
                {
                    Console.Error.WriteLine($"journal-bench: diff needs {tool} (Debian: apt-get install libnbd-bin qemu-utils)");
                    return 2;
                }
            if (RunTool(Python, ["-c", "import nbd"], check: false).Exit != 0)
            {
                Console.Error.WriteLine("journal-bench: diff needs the nbd module of /usr/bin/python3 (Debian: apt-get install python3-libnbd)");
                return 2;
            }
            var maps = new List<MapCase>();
            var clients = new List<ClientCase>();
            for (long n = 1000; n <= max; n *= 10)
                await MapCasesAsync(origin, n, maps, clients, ct).ConfigureAwait(false);
            // The same count on a volume 16 times smaller: the cost does not follow the volume.
            await MapCasesAsync(origin / 16, Math.Min(max, 100_000), maps, clients, ct).ConfigureAwait(false);
            var memory = TableMemory(Math.Min(max, 1_000_000));
            var backupCase = await BackupCaseAsync(backup, ct).ConfigureAwait(false);
            ProgressDone();
            if (pr.GetValue(json)) PrintJson(ToJson(maps, clients, memory, backupCase));
            else Console.Out.Write(ToText(maps, clients, memory, backupCase));
            return 0;
        });
        return cmd;
    }

    // ---- maps -------------------------------------------------------------------------------------------------------

    private static async Task MapCasesAsync(long originBytes, long n, List<MapCase> maps, List<ClientCase> clients, CancellationToken ct)
    {
        Progress($"diff: {n} exceptions on {SizeText(originBytes)}: writing");
        var devices = new SparseProvider();
        var options = new StoreOptions
        {
            OriginSectors = originBytes / 512, ChunkSectors = ChunkBytes / 512, LogBlocks = 131072, DeviceProvider = devices,
        };
        await using var store = await SnapshotStore.CreateAsync("/bench/store", options, ct).ConfigureAwait(false);
        long chunks = originBytes / ChunkBytes;
        // Distinct chunks scattered over the whole volume: an odd stride through a power-of-two-sized range (or a
        // stride coprime with it otherwise) visits every chunk once.
        long stride = Coprime(chunks, (long)(chunks * 0.6180339887) | 1);
        long At(long i) => (long)((UInt128)(ulong)(i + 1) * (ulong)stride % (ulong)chunks);
        await store.CreateSnapshotAsync("a", null, ct).ConfigureAwait(false);
        await WriteChunksAsync(store.Origin, Enumerable.Range(0, (int)n).Select(i => At(i)), ct).ConfigureAwait(false);
        await store.CreateSnapshotAsync("b", null, ct).ConfigureAwait(false);
        // After b: n/4 chunks a already holds (both hold them after the mark), n/4 new ones.
        await WriteChunksAsync(store.Origin, Enumerable.Range(0, (int)(n / 4)).Select(i => At(i))
            .Concat(Enumerable.Range((int)n, (int)(n / 4)).Select(i => At(i))), ct).ConfigureAwait(false);

        async Task Measure(string from, string? to, string label)
        {
            Progress($"diff: {n} exceptions on {SizeText(originBytes)}: map {label}");
            store.Changes.ForgetCaches();
            GC.Collect();
            long readBefore = devices.BytesRead;
            long allocBefore = GC.GetTotalAllocatedBytes(precise: true);
            var sw = Stopwatch.StartNew();
            var map = await store.GetChangedExtentsAsync(from, to, ct).ConfigureAwait(false);
            double ms = sw.Elapsed.TotalMilliseconds;
            long alloc = GC.GetTotalAllocatedBytes(precise: true) - allocBefore;
            maps.Add(new MapCase(originBytes, n, label, map.Chunks, map.Extents.Count, ms, map.Cost.MetadataEntriesRead, map.Cost.MetadataBytesRead,
                devices.BytesRead - readBefore, map.Cost.ChunksCompared, map.Cost.BytesCompared, alloc));
        }
        // Each once to warm up the code, then measured.
        store.Changes.ForgetCaches();
        await store.GetChangedExtentsAsync("a", "b", ct).ConfigureAwait(false);
        await Measure("a", null, "a -> origin");
        await Measure("a", "b", "a -> b");
        await Measure("b", null, "b -> origin");

        // The whole a -> origin map through a real NBD client.
        string dir = TempDir("diff-nbd");
        try
        {
            string socket = Path.Combine(dir, "nbd.sock");
            await using var server = await NbdServer.StartAsync(store, new NbdServerOptions { UnixSockets = [socket] }, ct).ConfigureAwait(false);
            foreach (var (export, bitmap) in new[] { ("origin", "a"), ("b", "a") })
            {
                Progress($"diff: {n} exceptions on {SizeText(originBytes)}: nbdinfo --map on {export}");
                store.Changes.ForgetCaches();
                var sw = Stopwatch.StartNew();
                var (exit, output, error) = RunTool("nbdinfo", [$"--map=qemu:dirty-bitmap:{bitmap}", "--totals", "--json", $"nbd+unix:///{export}?socket={socket}"]);
                double ms = sw.Elapsed.TotalMilliseconds;
                if (exit != 0) throw new IOException($"nbdinfo exited with {exit}: {error.Trim()}");
                clients.Add(new ClientCase(originBytes, n, export, bitmap, DirtyBytes(output), ms));
            }
            await server.StopAsync().ConfigureAwait(false);
        }
        finally
        {
            TryDelete(dir);
        }

        // One write into b: the chunks both hold after b's mark are now compared by content.
        await store.GetSnapshot("b").WriteAsync(0, new byte[512], ct).ConfigureAwait(false);
        await Measure("a", "b", "a -> b, b written");
        await store.CloseAsync(ct).ConfigureAwait(false);
    }

    private static long Coprime(long n, long candidate)
    {
        static long Gcd(long x, long y) { while (y != 0) (x, y) = (y, x % y); return x; }
        while (Gcd(n, candidate) != 1) candidate += 2;
        return candidate;
    }

    /// <summary>Writes a zero chunk at each of <paramref name="chunks"/>, 64 at once.</summary>
    private static async Task WriteChunksAsync(StoreVolume volume, IEnumerable<long> chunks, CancellationToken ct)
    {
        var zeros = new byte[ChunkBytes];
        var running = new List<Task>(64);
        foreach (long c in chunks)
        {
            running.Add(volume.WriteAsync(c * (ChunkBytes / 512), zeros, ct).AsTask());
            if (running.Count == 64)
            {
                var done = await Task.WhenAny(running).ConfigureAwait(false);
                running.Remove(done);
                await done.ConfigureAwait(false);
            }
        }
        await Task.WhenAll(running).ConfigureAwait(false);
    }

    /// <summary>The dirty bytes of an <c>nbdinfo --map --totals --json</c> listing (entries of type 1).</summary>
    private static long DirtyBytes(string json)
    {
        using var doc = JsonDocument.Parse(json);
        return doc.RootElement.EnumerateArray().Where(e => (e.GetProperty("type").GetInt32() & 1) != 0).Sum(e => e.GetProperty("size").GetInt64());
    }

    // ---- memory -----------------------------------------------------------------------------------------------------

    /// <summary>Managed bytes per exception of a snapshot's exception table, scattered and sequential chunks.</summary>
    internal sealed record MemoryCase(long Exceptions, double ScatteredBytesPerException, double SequentialBytesPerException);

    private static MemoryCase TableMemory(long n)
    {
        Progress($"diff: memory of {n} exceptions in an exception table");
        double PerException(Func<long, ulong> old)
        {
            GC.Collect();
            long before = GC.GetTotalMemory(forceFullCollection: true);
            var table = new Snapshot.Exceptions.ExceptionTable();
            for (long i = 0; i < n; i++) table.Insert(old(i), (ulong)i + 3);
            long after = GC.GetTotalMemory(forceFullCollection: true);
            GC.KeepAlive(table);
            return (double)(after - before) / n;
        }
        return new MemoryCase(n, PerException(i => (ulong)i * 7919 % (1UL << 28)), PerException(i => (ulong)i));
    }

    // ---- incremental backup ---------------------------------------------------------------------------------------

    /// <summary>
    /// Copies the dirty extents of an <c>nbdinfo --map --json</c> listing from an NBD URI into a file (python3-libnbd),
    /// and prints the bytes moved: arguments URI, listing file, target file. The incremental-backup tests run it too.
    /// </summary>
    internal const string CopyScript = """
        import json, sys, nbd
        uri, listing, target = sys.argv[1], sys.argv[2], sys.argv[3]
        with open(listing) as f:
            extents = json.load(f)
        h = nbd.NBD()
        h.connect_uri(uri)
        moved = 0
        with open(target, "r+b") as out:
            for e in extents:
                if not e["type"] & 1:
                    continue
                offset, length, done = e["offset"], e["length"], 0
                while done < length:
                    n = min(length - done, 32 << 20)
                    out.seek(offset + done)
                    out.write(h.pread(n, offset + done))
                    done += n
                moved += length
        h.shutdown()
        print(moved)
        """;

    private static async Task<BackupCase> BackupCaseAsync(long bytes, CancellationToken ct)
    {
        string dir = TempDir("diff-backup");
        try
        {
            Progress($"diff: backup of {SizeText(bytes)}: filling the origin");
            var store = await SnapshotStore.CreateAsync(Path.Combine(dir, "store"), new StoreOptions
            {
                OriginSectors = bytes / 512, ChunkSectors = ChunkBytes / 512, LogBlocks = 65536,
            }, ct).ConfigureAwait(false);
            try
            {
                var rnd = new Random(7);
                var piece = new byte[1 << 20];
                for (long off = 0; off < bytes; off += piece.Length)
                {
                    rnd.NextBytes(piece);
                    await store.Origin.WriteAsync(off / 512, piece.AsMemory(0, (int)Math.Min(piece.Length, bytes - off)), ct).ConfigureAwait(false);
                }
                await store.FlushAsync(ct).ConfigureAwait(false);
                string socket = Path.Combine(dir, "nbd.sock");
                await using var server = await NbdServer.StartAsync(store, new NbdServerOptions { UnixSockets = [socket] }, ct).ConfigureAwait(false);
                await server.CreateSnapshotAsync("a", null, ct).ConfigureAwait(false);
                string Uri(string export) => $"nbd+unix:///{export}?socket={socket}";

                Progress($"diff: backup of {SizeText(bytes)}: full nbdcopy of a");
                string image = Path.Combine(dir, "backup.img");
                var sw = Stopwatch.StartNew();
                RunTool("nbdcopy", [Uri("a"), image]);
                double fullMs = sw.Elapsed.TotalMilliseconds;
                long fullBytes = new FileInfo(image).Length;

                // 1% of the chunks rewritten, scattered; then the next snapshot.
                long chunks = bytes / ChunkBytes, changed = chunks / 100;
                var chunk = new byte[ChunkBytes];
                foreach (long c in Enumerable.Range(0, (int)chunks).OrderBy(_ => rnd.Next()).Take((int)changed))
                {
                    rnd.NextBytes(chunk);
                    await store.Origin.WriteAsync(c * (ChunkBytes / 512), chunk, ct).ConfigureAwait(false);
                }
                await server.CreateSnapshotAsync("b", null, ct).ConfigureAwait(false);

                Progress($"diff: backup of {SizeText(bytes)}: incremental (nbdinfo --map, dirty extents only)");
                string listing = Path.Combine(dir, "map.json"), script = Path.Combine(dir, "copy.py");
                File.WriteAllText(script, CopyScript);
                sw.Restart();
                var (_, map, _) = RunTool("nbdinfo", ["--map=qemu:dirty-bitmap:a", "--json", Uri("b")]);
                double mapMs = sw.Elapsed.TotalMilliseconds;
                File.WriteAllText(listing, map);
                sw.Restart();
                var (_, moved, _) = RunTool(Python, [script, Uri("b"), listing, image]);
                double copyMs = sw.Elapsed.TotalMilliseconds;
                var compare = RunTool("qemu-img", ["compare", "-f", "raw", "-F", "raw", image, Uri("b")], check: false);
                await server.StopAsync().ConfigureAwait(false);
                return new BackupCase(bytes, changed, fullBytes, fullMs, long.Parse(moved.Trim(), CultureInfo.InvariantCulture), mapMs, copyMs, compare.Exit == 0);
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
    }

    // ---- output -----------------------------------------------------------------------------------------------------

    private static string ToText(List<MapCase> maps, List<ClientCase> clients, MemoryCase memory, BackupCase b)
    {
        var sb = new System.Text.StringBuilder();
        sb.Append("Change maps (sparse memory devices; every map computed from nothing; 4 KiB chunks)\n");
        sb.Append(Table(["volume", "exceptions", "map", "changed chunks", "extents", "ms", "entries read", "metadata bytes", "device bytes read", "chunks compared", "bytes compared", "MB allocated"],
            maps.Select(m => (IReadOnlyList<string>)
            [
                SizeText(m.VolumeBytes), F(m.Exceptions), m.Pair, F(m.Chunks), F(m.Extents), F(m.Ms, 1), F(m.MetadataEntries), F(m.MetadataBytes),
                F(m.DeviceBytesRead), F(m.ChunksCompared), F(m.BytesCompared), F(m.AllocatedBytes / 1e6, 1),
            ])));
        sb.Append("\nThe whole map read by nbdinfo --map=qemu:dirty-bitmap:<bitmap> --totals (process start to exit, map computed from nothing)\n");
        sb.Append(Table(["volume", "exceptions", "export", "bitmap", "dirty bytes", "ms"],
            clients.Select(c => (IReadOnlyList<string>)[SizeText(c.VolumeBytes), F(c.Exceptions), c.Export, c.Bitmap, F(c.DirtyBytes), F(c.Ms, 1)])));
        sb.Append(CultureInfo.InvariantCulture,
            $"\nMemory: an exception table holds {F(memory.Exceptions)} exceptions in {F(memory.ScatteredBytesPerException, 1)} bytes each when scattered, {F(memory.SequentialBytesPerException, 2)} when sequential; the entry order is read on demand (16 bytes of metadata per entry, once per map), so tracking adds no memory per exception (an in-memory entry index would add 8 bytes each).\n");
        sb.Append(CultureInfo.InvariantCulture, $"\nIncremental backup of a {SizeText(b.VolumeBytes)} volume with {b.ChangedChunks} of {b.VolumeBytes / ChunkBytes} chunks (1%) changed, through NBD:\n");
        sb.Append(Table(["step", "bytes moved", "ms"],
        [
            ["full nbdcopy of a", F(b.FullBytes), F(b.FullMs, 1)],
            ["nbdinfo --map=qemu:dirty-bitmap:a on b", "0", F(b.MapMs, 1)],
            ["dirty extents of b (python3-libnbd)", F(b.IncrementalBytes), F(b.CopyMs, 1)],
        ]));
        sb.Append(CultureInfo.InvariantCulture, $"incremental / full = {b.Ratio:P2}; qemu-img compare of the result with b: {(b.Identical ? "identical" : "DIFFERENT")}\n");
        return sb.ToString();
    }

    private static JsonObject ToJson(List<MapCase> maps, List<ClientCase> clients, MemoryCase memory, BackupCase b)
    {
        var mapArray = new JsonArray();
        foreach (var m in maps)
            mapArray.Add(new JsonObject
            {
                ["volumeBytes"] = m.VolumeBytes, ["exceptions"] = m.Exceptions, ["map"] = m.Pair, ["changedChunks"] = m.Chunks, ["extents"] = m.Extents,
                ["ms"] = Math.Round(m.Ms, 2), ["metadataEntriesRead"] = m.MetadataEntries, ["metadataBytesRead"] = m.MetadataBytes,
                ["deviceBytesRead"] = m.DeviceBytesRead, ["chunksCompared"] = m.ChunksCompared, ["bytesCompared"] = m.BytesCompared,
                ["bytesAllocated"] = m.AllocatedBytes,
            });
        var clientArray = new JsonArray();
        foreach (var c in clients)
            clientArray.Add(new JsonObject
            {
                ["volumeBytes"] = c.VolumeBytes, ["exceptions"] = c.Exceptions, ["export"] = c.Export, ["bitmap"] = c.Bitmap,
                ["dirtyBytes"] = c.DirtyBytes, ["ms"] = Math.Round(c.Ms, 2),
            });
        return new JsonObject
        {
            ["benchmark"] = "diff",
            ["machine"] = Machine(),
            ["maps"] = mapArray,
            ["nbdinfo"] = clientArray,
            ["tableMemory"] = new JsonObject
            {
                ["exceptions"] = memory.Exceptions, ["scatteredBytesPerException"] = Math.Round(memory.ScatteredBytesPerException, 2),
                ["sequentialBytesPerException"] = Math.Round(memory.SequentialBytesPerException, 3),
            },
            ["backup"] = new JsonObject
            {
                ["volumeBytes"] = b.VolumeBytes, ["changedChunks"] = b.ChangedChunks, ["fullBytes"] = b.FullBytes, ["fullMs"] = Math.Round(b.FullMs, 2),
                ["incrementalBytes"] = b.IncrementalBytes, ["mapMs"] = Math.Round(b.MapMs, 2), ["copyMs"] = Math.Round(b.CopyMs, 2),
                ["ratio"] = Math.Round(b.Ratio, 5), ["identical"] = b.Identical,
            },
        };
    }

    // ---- helpers ----------------------------------------------------------------------------------------------------

    /// <summary>A size: bytes with an optional K, M, G or T suffix (powers of 1024).</summary>
    private static long ParseSize(System.CommandLine.Parsing.ArgumentResult result)
    {
        string text = result.Tokens.Count == 1 ? result.Tokens[0].Value.Trim() : "";
        long unit = 1;
        if (text.Length > 0 && "KMGTkmgt".Contains(text[^1]))
        {
            unit = 1L << (10 * ("KMGT".IndexOf(char.ToUpperInvariant(text[^1]), StringComparison.Ordinal) + 1));
            text = text[..^1];
        }
        if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long n) || n > long.MaxValue / unit)
        {
            result.AddError($"'{(result.Tokens.Count == 1 ? result.Tokens[0].Value : "")}' is not a size (bytes, or a number with K, M, G or T)");
            return 0;
        }
        return n * unit;
    }

    /// <summary>"1T", "64G", "256M" for whole powers of 1024, else bytes.</summary>
    private static string SizeText(long bytes)
    {
        foreach (var (suffix, shift) in new[] { ("T", 40), ("G", 30), ("M", 20), ("K", 10) })
            if (bytes >= 1L << shift && bytes % (1L << shift) == 0) return $"{bytes >> shift}{suffix}";
        return bytes.ToString(CultureInfo.InvariantCulture);
    }

    private static (int Exit, string Stdout, string Stderr) RunTool(string program, string[] args, bool check = true)
    {
        var psi = new ProcessStartInfo(program.StartsWith('/') ? program : Which(program) ?? program)
        {
            UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new IOException($"{program}: could not start");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(30)))
        {
            p.Kill();
            throw new IOException($"{program} did not finish within 30 minutes");
        }
        if (check && p.ExitCode != 0) throw new IOException($"{program} {string.Join(' ', args)} exited with {p.ExitCode}: {stderr.Result.Trim()}");
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    private static string? Which(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Concat(["/usr/bin", "/usr/sbin"])
            .Where(d => d.Length > 0).Select(d => Path.Combine(d, program)).FirstOrDefault(File.Exists);

    private static string TempDir(string label)
    {
        string d = Path.Combine(Path.GetTempPath(), $"jb-{label}-{Guid.NewGuid():N}"[..32]);
        Directory.CreateDirectory(d);
        return d;
    }

    private static void TryDelete(string dir)
    {
        try { Directory.Delete(dir, true); } catch (IOException) { }
    }

    /// <summary>
    /// Every file of a store as a sparse in-memory device: 64 KiB pages, made only when non-zero data is written into
    /// them, so a 1 TiB origin and COW files full of copied zeros take no memory; reads of pages never written are
    /// zeros. Counts the bytes read from every device (the map's reads of the store).
    /// </summary>
    private sealed class SparseProvider : IDeviceProvider
    {
        private readonly Dictionary<string, SparseDevice> _devices = new(StringComparer.Ordinal);
        private long _bytesRead;

        /// <summary>Bytes read from every device so far.</summary>
        public long BytesRead => Interlocked.Read(ref _bytesRead);

        internal void CountRead(long bytes) => Interlocked.Add(ref _bytesRead, bytes);

        public BlockDevice Create(string path, long sectors)
        {
            lock (_devices)
            {
                if (_devices.ContainsKey(path)) throw new BlockDeviceException(path, 0, "already exists");
                var d = new SparseDevice(this, path, sectors);
                _devices[path] = d;
                return new Handle(d);
            }
        }

        public BlockDevice Open(string path)
        {
            lock (_devices) return _devices.TryGetValue(path, out var d) ? new Handle(d) : throw new BlockDeviceException(path, 0, "not found");
        }

        public bool Exists(string path) { lock (_devices) return _devices.ContainsKey(path); }
        public void Delete(string path) { lock (_devices) _devices.Remove(path); }
        public IEnumerable<string> List(string folder, string suffix)
        {
            lock (_devices) return _devices.Keys.Where(k => Path.GetDirectoryName(k) == folder && k.EndsWith(suffix, StringComparison.Ordinal)).ToList();
        }
        public void EnsureFolder(string folder) { }
        public string? WhyNotWritable(string folder) => null;
        public bool IsEmptyOrMissing(string folder) { lock (_devices) return !_devices.Keys.Any(k => Path.GetDirectoryName(k) == folder); }
        public long? AvailableBytes(string folder) => null;
        public string BeginCreate(string folder) => folder;
        public void CompleteCreate(string staging, string folder) { }
        public void AbandonCreate(string staging) { }
        public IDisposable Lock(string folder) => new Nothing();
        public IDisposable LockShared(string folder) => new Nothing();

        private sealed class Nothing : IDisposable { public void Dispose() { } }

        /// <summary>A handle: disposing it leaves the device for the next open.</summary>
        private sealed class Handle(SparseDevice d) : BlockDevice
        {
            public override string Name => d.Name;
            public override long SectorCount => d.SectorCount;
            protected override void ReadCore(long sector, Span<byte> buffer) => d.Read(sector, buffer);
            protected override void WriteCore(long sector, ReadOnlySpan<byte> data) => d.Write(sector, data);
            protected override void FlushCore() { }
            protected override void ExtendCore(long sectorCount) => d.Extend(sectorCount);
        }
    }

    /// <summary>One sparse device (see <see cref="SparseProvider"/>). Locking: <c>_lock</c> protects the page table and the size.</summary>
    private sealed class SparseDevice(SparseProvider owner, string name, long sectors) : BlockDevice
    {
        private const int PageBytes = 64 * 1024;
        private readonly object _lock = new();
        private readonly Dictionary<long, byte[]> _pages = new();
        private long _sectors = sectors;

        public override string Name => name;
        public override long SectorCount { get { lock (_lock) return _sectors; } }

        protected override void ReadCore(long sector, Span<byte> buffer)
        {
            owner.CountRead(buffer.Length);
            long pos = sector * 512;
            lock (_lock)
            {
                while (buffer.Length > 0)
                {
                    long page = pos / PageBytes;
                    int off = (int)(pos % PageBytes), n = Math.Min(buffer.Length, PageBytes - off);
                    if (_pages.TryGetValue(page, out var p)) p.AsSpan(off, n).CopyTo(buffer);
                    else buffer[..n].Clear();
                    buffer = buffer[n..];
                    pos += n;
                }
            }
        }

        protected override void WriteCore(long sector, ReadOnlySpan<byte> data)
        {
            long pos = sector * 512;
            lock (_lock)
            {
                while (data.Length > 0)
                {
                    long page = pos / PageBytes;
                    int off = (int)(pos % PageBytes), n = Math.Min(data.Length, PageBytes - off);
                    if (!_pages.TryGetValue(page, out var p))
                    {
                        if (!data[..n].ContainsAnyExcept((byte)0)) goto next; // zeros over a page never written: nothing to keep
                        _pages[page] = p = new byte[PageBytes];
                    }
                    data[..n].CopyTo(p.AsSpan(off));
                next:
                    data = data[n..];
                    pos += n;
                }
            }
        }

        protected override void FlushCore() { }

        protected override void ExtendCore(long sectorCount)
        {
            lock (_lock) _sectors = Math.Max(_sectors, sectorCount);
        }
    }
}
