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

    [Fact]
    public void A_snapshot_against_itself_has_no_changes()
    {
        using var dir = new TempFolder();
        string store = dir["store"];
        Assert.Equal(0, ToolRunner.SnapCtl("init", store, "--origin-size", "1M").ExitCode);
        Assert.Equal(0, ToolRunner.SnapCtl("snapshot", "create", store, "a").ExitCode);
        Assert.Equal(0, ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "1", "--length", "4K").ExitCode);
        var r = ToolRunner.SnapCtl("diff", store, "a", "a");
        Assert.True(r.ExitCode == 0 && r.Stderr.Length == 0, r.ToString());
        Assert.Equal("total: 0 extents, 0 chunks of 4096 bytes, 0 bytes (0% of 1048576) changed from a to a\n", r.Stdout);
    }

    /// <summary>
    /// A snapshot b created while a's COW file was away (a unavailable, so the origin took no writes and a changed
    /// nothing) has no creation mark for a. With the file back, a diff from a to b stays exact once they hold chunks in
    /// common: those are compared.
    /// </summary>
    [Fact]
    public void A_snapshot_created_while_an_older_one_was_unavailable_is_diffed_against_it_once_the_file_is_back()
    {
        using var dir = new TempFolder();
        string store = dir["store"];
        string cow = Path.Combine(store, "a.cow"), aside = dir["a.cow.aside"];
        Assert.Equal(0, ToolRunner.SnapCtl("init", store, "--origin-size", "1M").ExitCode);
        Assert.Equal(0, ToolRunner.SnapCtl("snapshot", "create", store, "a").ExitCode);
        Assert.Equal(0, ToolRunner.SnapCtl("write", store, "--offset", "64K", "--pattern", "1", "--length", "8K").ExitCode);
        File.Move(cow, aside);
        Assert.Equal(0, ToolRunner.SnapCtl("snapshot", "create", store, "b").ExitCode);
        File.Move(aside, cow);
        // Chunk 0 into both a and b (one origin write after b: equal there).
        Assert.Equal(0, ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "2", "--length", "4K").ExitCode);
        var r = ToolRunner.SnapCtl("diff", store, "a", "b");
        Assert.True(r.ExitCode == 0 && r.Stderr.Length == 0, r.ToString());
        Assert.Equal("65536 8192\ntotal: 1 extents, 2 chunks of 4096 bytes, 8192 bytes (0.78% of 1048576) changed from a to b\n" +
            "total: 1 chunks held by both were compared by content (8192 bytes read): b has no creation mark for a\n", r.Stdout);

        // Chunk 32 into b alone, through b.
        Assert.Equal(0, ToolRunner.SnapCtl("write", store, "--snapshot", "b", "--offset", "128K", "--pattern", "3", "--length", "4K").ExitCode);
        r = ToolRunner.SnapCtl("diff", store, "a", "b");
        Assert.True(r.ExitCode == 0 && r.Stderr.Length == 0, r.ToString());
        Assert.Equal("65536 8192\n131072 4096\ntotal: 2 extents, 3 chunks of 4096 bytes, 12288 bytes (1.17% of 1048576) changed from a to b\n" +
            "total: 1 chunks held by both were compared by content (8192 bytes read): b was written by a user\n", r.Stdout);
        // The bytes agree: a's view with the listed extents taken from b is b's view.
        var a = ToolRunner.SnapCtl("read", store, "--snapshot", "a", "--offset", "0", "--length", "1M").Raw;
        var b = ToolRunner.SnapCtl("read", store, "--snapshot", "b", "--offset", "0", "--length", "1M").Raw;
        Array.Copy(b, 65536, a, 65536, 8192);
        Array.Copy(b, 131072, a, 131072, 4096);
        Assert.Equal(b, a);
    }
}
