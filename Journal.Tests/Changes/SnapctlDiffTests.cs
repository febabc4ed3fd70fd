using Journal.Testing;
using System.Text.Json;
using Journal.Tests.Nbd;
using Journal.Tests.Tools;
using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Changes;

/// <summary>
/// <c>snapctl diff</c>: the text and JSON forms, the exit codes of bad input (one line, no stack trace), and the same
/// output and exit codes on a served store (through the control socket, for a listing far larger than a request line)
/// as on an identical closed one.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class SnapctlDiffTests
{
    /// <summary>
    /// The same store in <paramref name="folder"/>: 8 MiB of origin, snapshot a, every other chunk of the first 6000
    /// written (3000 extents), snapshot b, a run of 16 chunks, one write into b.
    /// </summary>
    private static async Task BuildAsync(string folder)
    {
        var store = await SnapshotStore.CreateAsync(folder, new StoreOptions { OriginSectors = 8 * 8192, LogBlocks = 4096 }).AsTask().WaitAsync(Watchdog);
        await store.CreateSnapshotAsync("a").AsTask().WaitAsync(Watchdog);
        for (long c = 0; c < 6000; c += 2) await WriteAsync(store.Origin, c * 8, Pattern(c * 8, 1, 1));
        await store.CreateSnapshotAsync("b").AsTask().WaitAsync(Watchdog);
        await WriteAsync(store.Origin, 7000 * 8, Pattern(7000 * 8, 16 * 8, 2));
        await WriteAsync(store.GetSnapshot("b"), 4 * 8 + 3, Pattern(0, 1, 3));
        await store.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task Diff_lists_merged_extents_with_totals_in_text_and_json_and_refuses_bad_input_with_one_line()
    {
        using var dir = new TempFolder();
        string store = dir["store"];
        await BuildAsync(store);

        var text = ToolRunner.SnapCtl("diff", store, "a");
        Assert.True(text.ExitCode == 0, text.ToString());
        var lines = text.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3001 + 1, lines.Length); // 3001 extents, then the totals
        Assert.Equal("0 4096", lines[0]);
        Assert.Equal("8192 4096", lines[1]);
        Assert.Equal($"{7000 * 4096} {16 * 4096}", lines[^2]);
        Assert.Equal("total: 3001 extents, 3016 chunks of 4096 bytes, 12353536 bytes (36.82% of 33554432) changed from a to origin", lines[^1]);
        Assert.Equal(text.Stdout, ToolRunner.SnapCtl("diff", store, "a", "origin").Stdout);

        var pair = ToolRunner.SnapCtl("diff", store, "a", "b", "--json");
        Assert.True(pair.ExitCode == 0, pair.ToString());
        using (var doc = JsonDocument.Parse(pair.Stdout))
        {
            var root = doc.RootElement;
            Assert.Equal(store, root.GetProperty("store").GetString());
            Assert.Equal(("a", "b"), (root.GetProperty("from").GetString(), root.GetProperty("to").GetString()));
            Assert.Equal(4096, root.GetProperty("chunk_bytes").GetInt64());
            Assert.Equal(8192L * 4096, root.GetProperty("volume_bytes").GetInt64());
            Assert.Equal(3000, root.GetProperty("extent_count").GetInt32());
            Assert.Equal(3000, root.GetProperty("chunks").GetInt64());
            Assert.Equal(3000L * 4096, root.GetProperty("bytes").GetInt64());
            Assert.False(root.GetProperty("from_written").GetBoolean());
            Assert.True(root.GetProperty("to_written").GetBoolean());
            var cost = root.GetProperty("cost");
            Assert.Equal(3000, cost.GetProperty("metadata_entries_read").GetInt64());
            // Chunk 4 (written into b) is held by a since before the mark: reported without reading. The run written to
            // the origin after b is held by both after the mark, and b was written: those 16 are compared (and equal).
            Assert.Equal(16, cost.GetProperty("chunks_compared").GetInt64());
            var first = root.GetProperty("extents")[0];
            Assert.Equal((0L, 4096L), (first.GetProperty("offset").GetInt64(), first.GetProperty("length").GetInt64()));
        }

        void Refused(int exit, string line, params string[] args)
        {
            var r = ToolRunner.SnapCtl(args);
            Assert.True(exit == r.ExitCode, $"{string.Join(' ', args)}: {r}");
            Assert.Equal([line], r.ErrorLines);
            Assert.Equal("", r.Stdout);
        }
        Refused(64, $"snapctl: {store}/b.cow: snapshot 'b' is newer than 'a': give the older snapshot first", "diff", store, "b", "a");
        Refused(66, $"snapctl: {store}: no snapshot named 'nope'", "diff", store, "nope");
        Refused(66, $"snapctl: {store}: no snapshot named 'nope'", "diff", store, "a", "nope");
        Refused(66, $"snapctl: {dir["missing"]}: not found", "diff", dir["missing"], "a");
        var usage = ToolRunner.SnapCtl("diff", store);
        Assert.Equal(64, usage.ExitCode);
        Assert.Contains("Usage:", usage.Stderr);
    }

    [Fact]
    public async Task A_served_store_gives_the_same_output_and_exit_codes_as_a_closed_one()
    {
        using var dir = new TempFolder();
        string store = dir["store"], twin = dir["twin"];
        await BuildAsync(store);
        await BuildAsync(twin);
        using var serve = await ServeProcess.StartAsync(store, dir["nbd.sock"]);
        foreach (var args in new[]
        {
            new[] { "diff", "{}", "a" },
            ["diff", "{}", "a", "--json"],
            ["diff", "{}", "a", "b"],
            ["diff", "{}", "a", "b", "--json"],
            ["diff", "{}", "b", "origin"],
            ["diff", "{}", "b", "a"],       // 64
            ["diff", "{}", "nope"],         // 66
            ["diff", "{}", "a", "nope"],    // 66
        })
        {
            var live = await ToolProcess.RunAsync("snapctl", args.Select(a => a == "{}" ? store : a).ToArray(), ServeProcess.Watchdog);
            var offline = ToolRunner.SnapCtl(args.Select(a => a == "{}" ? twin : a).ToArray());
            Assert.True(offline.ExitCode == live.ExitCode, $"{string.Join(' ', args)}: offline {offline}\nlive {live}");
            Assert.Equal(offline.Stdout.Replace(twin, store, StringComparison.Ordinal), live.Stdout);
            Assert.Equal(offline.Stderr.Replace(twin, store, StringComparison.Ordinal), live.Stderr);
        }
        Assert.True(serve.Process.Stderr.Contains("control: diff a", StringComparison.Ordinal), "the diff did not go through the control socket");
        Assert.Equal(0, await serve.StopAsync());
    }
}
