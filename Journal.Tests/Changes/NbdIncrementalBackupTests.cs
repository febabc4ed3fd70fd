using Journal.Testing;
using System.Text.Json;
using Journal.Tests.Nbd;
using Journal.Tests.Tools;
using static Journal.Tests.Nbd.ExternalTools;

namespace Journal.Tests.Changes;

/// <summary>
/// Incremental backup with clients nobody here wrote, the way backup tools do it: <c>nbdcopy</c> of snapshot A to a
/// file, then the extents <c>nbdinfo --map=qemu:dirty-bitmap:A --json</c> reports on export B copied over it (a short
/// python3-libnbd script reads exactly those ranges), then <c>qemu-img compare</c> against export B says identical —
/// for a newer snapshot B (written into by a client too, so part of the map comes from comparing contents) and for the
/// origin; the file differs from B before the extents are copied (the check can fail); no dirty extent lies outside
/// what the workload wrote; and all of it again after <c>snapctl serve</c> was killed with SIGKILL and restarted (the
/// maps then come from the replayed journal). Missing clients are installed; if they cannot be, the test fails.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class NbdIncrementalBackupTests
{
    private const string Python = "/usr/bin/python3";
    private const long Size = 32 << 20;
    private const long Chunk = 4096;

    /// <summary>The benchmark's extent copier (python3-libnbd): URI, listing, target; prints the bytes moved.</summary>
    private const string CopyScript = JournalBench.Benchmarks.DiffBenchmark.CopyScript;

    /// <summary>python3-libnbd (the <c>nbd</c> module of Debian's python3): installed if missing; the test fails if it cannot be.</summary>
    private static void RequirePythonNbd()
    {
        if (Run(Python, ["-c", "import nbd"]).ExitCode == 0) return;
        Run("apt-get", ["update"], TimeSpan.FromMinutes(5));
        var install = Run("apt-get", ["install", "-y", "--no-install-recommends", "python3-libnbd"], TimeSpan.FromMinutes(10),
            new Dictionary<string, string> { ["DEBIAN_FRONTEND"] = "noninteractive" });
        var again = Run(Python, ["-c", "import nbd"]);
        Assert.True(again.ExitCode == 0, $"python3-libnbd is missing and 'apt-get install -y python3-libnbd' did not provide it: {install}\n{again}");
    }

    private sealed record Write(int Phase, string Volume, long Offset, long Length);

    [Fact]
    public async Task Nbdcopy_of_the_older_plus_the_dirty_extents_nbdinfo_reports_is_the_newer_also_after_SIGKILL()
    {
        Require("nbdinfo", "nbdcopy", "qemu-img", "qemu-io");
        RequirePythonNbd();
        using var dir = new TempFolder();
        string store = dir["store"];
        File.WriteAllText(dir["copy.py"], CopyScript);
        Assert.Equal(0, ToolRunner.SnapCtl("init", store, "--origin-size", "32M").ExitCode);
        var data = new byte[Size];
        new Random(17).NextBytes(data);
        File.WriteAllBytes(dir["data.bin"], data);
        Assert.Equal(0, ToolRunner.SnapCtl("write", store, "--offset", "0", "--input", dir["data.bin"]).ExitCode);
        Assert.Equal(0, ToolRunner.SnapCtl("snapshot", "create", store, "a").ExitCode);
        var writes = new List<Write>();

        void QemuIo(ServeProcess serve, string export, int phase, params (string Pattern, long Offset, long Length)[] ws)
        {
            var args = new List<string> { "-f", "raw" };
            foreach (var (pattern, offset, length) in ws)
            {
                args.AddRange(["-c", $"write -P {pattern} {offset} {length}"]);
                writes.Add(new Write(phase, export, offset, length));
            }
            args.Add(serve.Uri(export));
            Check("qemu-io", [.. args]);
        }

        using (var serve = await ServeProcess.StartAsync(store, dir["nbd.sock"]))
        {
            // Between a and b: a run, a lone chunk, a write across a chunk boundary, one inside a chunk.
            QemuIo(serve, "origin", 1, ("0x5a", 1 << 20, 256 << 10), ("0x5b", 3 << 20, 4096), ("0x5c", (5 << 20) - 1024, 2048), ("0x5d", (7 << 20) + 512, 1024));
            var created = await ToolProcess.RunAsync("snapctl", ["snapshot", "create", store, "b"], ServeProcess.Watchdog);
            Assert.True(created.ExitCode == 0, created.ToString());
            // After b: the origin again (a and b both get the old data), and writes into b itself, one of them into a
            // chunk both hold since the origin write after b (that chunk is decided by comparing contents).
            QemuIo(serve, "origin", 2, ("0x6a", 9 << 20, 64 << 10), ("0x6b", 1 << 20, 4096));
            QemuIo(serve, "b", 2, ("0x7a", 9 << 20, 512), ("0x7b", 12 << 20, 8192));
            await CheckAllAsync(serve, dir, writes, "served");
            // More writes, then SIGKILL: no clean close; the maps after the restart come from the replayed journal.
            QemuIo(serve, "origin", 2, ("0x8a", 20 << 20, 128 << 10));
            QemuIo(serve, "b", 2, ("0x8b", 21 << 20, 4096));
            await serve.KillAsync();
        }
        using (var again = await ServeProcess.StartAsync(store, dir["nbd.sock"]))
        {
            Assert.Contains("journal was replayed", again.Process.Stderr);
            await CheckAllAsync(again, dir, writes, "after SIGKILL and restart");
            Assert.Equal(0, await again.StopAsync());
        }
    }

    private static async Task CheckAllAsync(ServeProcess serve, TempFolder dir, List<Write> writes, string when)
    {
        await CheckAsync(serve, dir, "a", "b", writes, when);
        await CheckAsync(serve, dir, "a", "origin", writes, when);
        await CheckAsync(serve, dir, "b", "origin", writes, when);
    }

    private static async Task CheckAsync(ServeProcess serve, TempFolder dir, string from, string to, List<Write> writes, string when)
    {
        string what = $"{from} -> {to} ({when})";
        string image = dir[$"{from}-{to}.img"];
        File.Delete(image);
        Check("nbdcopy", serve.Uri(from), image);
        var listing = await RunAsync("nbdinfo", [$"--map=qemu:dirty-bitmap:{from}", "--json", serve.Uri(to)]);
        Assert.True(listing.ExitCode == 0, $"{what}: {listing}");
        File.WriteAllText(dir["map.json"], listing.Stdout);
        using var doc = JsonDocument.Parse(listing.Stdout);
        var dirty = doc.RootElement.EnumerateArray()
            .Where(e => (e.GetProperty("type").GetInt32() & 1) != 0)
            .Select(e => (Offset: e.GetProperty("offset").GetInt64(), Length: e.GetProperty("length").GetInt64())).ToList();
        Assert.NotEmpty(dirty);
        Assert.Equal(Size, doc.RootElement.EnumerateArray().Sum(e => e.GetProperty("length").GetInt64()));

        // Nothing outside what the workload wrote: origin writes after 'from' (and before 'to' for a snapshot), and
        // writes into either snapshot, rounded out to whole chunks.
        int fromPhase = from == "a" ? 1 : 2;
        var allowed = writes.Where(w => w.Volume == "origin" ? w.Phase >= fromPhase && (to == "origin" || w.Phase < 2) : w.Volume == from || w.Volume == to)
            .Select(w => (Start: w.Offset / Chunk * Chunk, End: (w.Offset + w.Length + Chunk - 1) / Chunk * Chunk)).ToList();
        foreach (var (offset, length) in dirty)
            for (long c = offset; c < offset + length; c += Chunk)
                Assert.True(allowed.Any(a => c >= a.Start && c < a.End), $"{what}: dirty chunk at {c} was never written in between");

        // The check can fail: before the extents are copied, the copy of 'from' is not 'to'.
        var before = Run("qemu-img", ["compare", "-f", "raw", "-F", "raw", image, serve.Uri(to)]);
        Assert.True(before.ExitCode == 1, $"{what}: the copy of {from} already equals {to}: {before}");
        var moved = Run(Python, [dir["copy.py"], serve.Uri(to), dir["map.json"], image]);
        Assert.True(moved.ExitCode == 0, $"{what}: {moved}");
        Assert.Equal(dirty.Sum(d => d.Length), long.Parse(moved.Stdout.Trim(), System.Globalization.CultureInfo.InvariantCulture));
        var same = Run("qemu-img", ["compare", "-f", "raw", "-F", "raw", image, serve.Uri(to)]);
        Assert.True(same.ExitCode == 0, $"{what}: {same}");
        Assert.Contains("Images are identical", same.Stdout);
    }
}
