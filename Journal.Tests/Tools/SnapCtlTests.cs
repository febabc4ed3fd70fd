using System.Text.Json;

namespace Journal.Tests.Tools;

/// <summary>
/// snapctl end to end on real store folders: init, snapshots, writes and reads of the origin and of snapshots,
/// dmsetup-style status and its JSON, and the errors a user meets (bad values, missing snapshots, damaged files).
/// </summary>
public class SnapCtlTests
{
    private static string Init(TempFolder dir, string originSize = "1M", params string[] extra)
    {
        var store = dir["store"];
        var r = ToolRunner.SnapCtl(["init", store, "--origin-size", originSize, .. extra]);
        Assert.True(r.ExitCode == 0, r.ToString());
        return store;
    }

    private static void Ok(ToolResult r) => Assert.True(r.ExitCode == 0, r.ToString());

    [Fact]
    public void Init_creates_a_store_that_status_shows_clean_and_empty()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        var r = ToolRunner.SnapCtl("init", store, "--origin-size", "1M", "--chunk-size", "8K", "--log-size", "1M");
        Ok(r);
        Assert.Equal($"created store {store}: origin 1M (2048 sectors), chunk 8K (16 sectors), log 1M (2048 blocks)\n", r.Stdout);
        var s = ToolRunner.SnapCtl("status", store);
        Ok(s);
        Assert.Equal("origin: 0 2048 snapshot-origin\n", s.Stdout);
        using var json = JsonDocument.Parse(ToolRunner.SnapCtl("status", store, "--json").Stdout);
        Assert.True(json.RootElement.GetProperty("log").GetProperty("clean").GetBoolean());
        Assert.Equal(0, json.RootElement.GetProperty("snapshots").GetArrayLength());
    }

    [Theory]
    [InlineData("--chunk-size", "3K", "not a power of two")]
    [InlineData("--chunk-size", "0", "not a power of two")]
    [InlineData("--chunk-size", "100", "not a whole number of 512-byte sectors")]
    [InlineData("--chunk-size", "2G", "not a power of two from 512 bytes to 1G")]
    [InlineData("--origin-size", "1000", "not a whole number of 512-byte sectors")]
    public void Init_refuses_bad_geometry_with_exit_64(string option, string value, string problem)
    {
        using var dir = new TempFolder();
        string[] args = option == "--origin-size"
            ? ["init", dir["store"], "--origin-size", value]
            : ["init", dir["store"], "--origin-size", "1M", option, value];
        var r = ToolRunner.SnapCtl(args);
        Assert.Equal(64, r.ExitCode);
        Assert.Contains($"{option}: ", r.Stderr);
        Assert.Contains(problem, r.Stderr);
        Assert.False(File.Exists(Path.Combine(dir["store"], "store.sb")));
    }

    [Fact]
    public void Init_over_an_existing_store_fails_and_leaves_it_alone()
    {
        using var dir = new TempFolder();
        var store = Init(dir);
        var sb = File.ReadAllBytes(Path.Combine(store, "store.sb"));
        var r = ToolRunner.SnapCtl("init", store, "--origin-size", "2M");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("already exists", Assert.Single(r.ErrorLines));
        Assert.Equal(sb, File.ReadAllBytes(Path.Combine(store, "store.sb")));
    }

    [Fact]
    public void A_preallocated_snapshot_has_its_whole_cow_file_written_at_creation()
    {
        using var dir = new TempFolder();
        var store = Init(dir);
        var c = ToolRunner.SnapCtl("snapshot", "create", store, "full", "--cow-size", "8M", "--preallocate");
        Ok(c);
        Assert.Equal("created snapshot full: persistent, COW 8M (16384 sectors), preallocated\n", c.Stdout);
        Ok(ToolRunner.SnapCtl("snapshot", "create", store, "grows", "--cow-size", "8M"));
        var files = Directory.GetFiles(store, "*.cow").Select(f => new FileInfo(f).Length).Order().ToArray();
        // The one grown on demand holds its header and first metadata area; the preallocated one its whole size.
        Assert.Equal(2, files.Length);
        Assert.True(files[0] < 8 << 20, $"the COW file grown on demand is {files[0]} bytes");
        Assert.Equal(8 << 20, files[1]);
    }

    [Fact]
    public void A_snapshot_keeps_the_old_data_while_the_origin_changes()
    {
        using var dir = new TempFolder();
        var store = Init(dir);
        Ok(ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "17", "--length", "64K"));
        var c = ToolRunner.SnapCtl("snapshot", "create", store, "s1");
        Ok(c);
        Assert.StartsWith("created snapshot s1: persistent, COW ", c.Stdout);
        var w = ToolRunner.SnapCtl("write", store, "--offset", "4K", "--pattern", "0x22", "--length", "8K");
        Ok(w);
        Assert.Equal("wrote 8192 bytes at offset 4096 to origin (durable)\n", w.Stdout);

        var origin = ToolRunner.SnapCtl("read", store, "--offset", "0", "--length", "16K");
        Ok(origin);
        Assert.Equal(16384, origin.Raw.Length);
        Assert.All(origin.Raw.AsSpan(0, 4096).ToArray(), b => Assert.Equal(17, b));
        Assert.All(origin.Raw.AsSpan(4096, 8192).ToArray(), b => Assert.Equal(0x22, b));
        Assert.All(origin.Raw.AsSpan(12288).ToArray(), b => Assert.Equal(17, b));
        Assert.Equal("", origin.Stdout);

        var snap = ToolRunner.SnapCtl("read", store, "--snapshot", "s1", "--offset", "0", "--length", "16K");
        Ok(snap);
        Assert.All(snap.Raw, b => Assert.Equal(17, b));

        var status = ToolRunner.SnapCtl("status", store);
        Ok(status);
        var lines = status.Stdout.TrimEnd('\n').Split('\n');
        Assert.Equal("origin: 0 2048 snapshot-origin", lines[0]);
        Assert.Matches(@"^s1: 0 2048 snapshot \d+/\d+ \d+$", lines[1]);

        using var json = JsonDocument.Parse(ToolRunner.SnapCtl("status", store, "--json").Stdout);
        var s1 = Assert.Single(json.RootElement.GetProperty("snapshots").EnumerateArray());
        Assert.Equal("s1", s1.GetProperty("name").GetString());
        long allocated = s1.GetProperty("sectors_allocated").GetInt64();
        long total = s1.GetProperty("total_sectors").GetInt64();
        long metadata = s1.GetProperty("metadata_sectors").GetInt64();
        Assert.Equal($"{allocated}/{total} {metadata}", s1.GetProperty("status").GetString());
        Assert.True(allocated >= metadata + 16, $"two 4K chunks were copied: allocated {allocated}, metadata {metadata}");
        Assert.Equal(2, s1.GetProperty("exceptions").GetInt64());
        Assert.True(json.RootElement.GetProperty("log").GetProperty("clean").GetBoolean());
    }

    [Fact]
    public void Input_and_output_files_round_trip_through_a_writable_snapshot()
    {
        using var dir = new TempFolder();
        var store = Init(dir);
        Ok(ToolRunner.SnapCtl("snapshot", "create", store, "w"));
        var data = new byte[12 * 1024];
        new Random(3).NextBytes(data);
        File.WriteAllBytes(dir["in.bin"], data);
        Ok(ToolRunner.SnapCtl("write", store, "--snapshot", "w", "--offset", "1536", "--input", dir["in.bin"]));
        Ok(ToolRunner.SnapCtl("read", store, "--snapshot", "w", "--offset", "1536", "--length", "12K", "--output", dir["out.bin"]));
        Assert.Equal(data, File.ReadAllBytes(dir["out.bin"]));
        var origin = ToolRunner.SnapCtl("read", store, "--offset", "1536", "--length", "12K");
        Assert.All(origin.Raw, b => Assert.Equal(0, b));
    }

    [Fact]
    public void Deleting_a_snapshot_removes_it_and_its_cow_file()
    {
        using var dir = new TempFolder();
        var store = Init(dir);
        Ok(ToolRunner.SnapCtl("snapshot", "create", store, "gone", "--cow-size", "256K"));
        Assert.True(File.Exists(Path.Combine(store, "gone.cow")));
        var d = ToolRunner.SnapCtl("snapshot", "delete", store, "gone");
        Ok(d);
        Assert.Equal("deleted snapshot gone\n", d.Stdout);
        Assert.False(File.Exists(Path.Combine(store, "gone.cow")));
        Assert.Equal("origin: 0 2048 snapshot-origin\n", ToolRunner.SnapCtl("status", store).Stdout);
    }

    [Fact]
    public void Merging_a_snapshot_puts_its_contents_back_into_the_origin_and_deletes_it()
    {
        using var dir = new TempFolder();
        var store = Init(dir);
        Ok(ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "1", "--length", "64K"));
        var before = ToolRunner.SnapCtl("read", store, "--offset", "0", "--length", "64K").Raw;
        Ok(ToolRunner.SnapCtl("snapshot", "create", store, "s", "--cow-size", "256K"));
        Ok(ToolRunner.SnapCtl("snapshot", "create", store, "keep", "--cow-size", "256K"));
        Ok(ToolRunner.SnapCtl("write", store, "--offset", "4K", "--pattern", "2", "--length", "20K"));
        var changed = ToolRunner.SnapCtl("read", store, "--offset", "0", "--length", "64K").Raw;
        Assert.NotEqual(before, changed);

        var m = ToolRunner.SnapCtl("snapshot", "merge", store, "s");
        Ok(m);
        Assert.Equal("merged snapshot s into the origin: 5 chunks copied home, snapshot deleted\n", m.Stdout);
        Assert.Equal(before, ToolRunner.SnapCtl("read", store, "--offset", "0", "--length", "64K").Raw);
        Assert.Equal(before, ToolRunner.SnapCtl("read", store, "--snapshot", "keep", "--offset", "0", "--length", "64K").Raw);
        Assert.False(File.Exists(Path.Combine(store, "s.cow")));
        var status = ToolRunner.SnapCtl("status", store).Stdout;
        Assert.DoesNotContain("\ns:", status);
        Assert.Contains("\nkeep:", status);
    }

    [Fact]
    public void Merging_a_transient_snapshot_is_a_usage_error_and_changes_nothing()
    {
        using var dir = new TempFolder();
        var store = Init(dir);
        Ok(ToolRunner.SnapCtl("snapshot", "create", store, "t", "--transient"));
        var r = ToolRunner.SnapCtl("snapshot", "merge", store, "t");
        Assert.Equal(64, r.ExitCode);
        Assert.Equal([$"snapctl: {Path.Combine(store, "t.cow")}: snapshot 't' is transient; only persistent snapshots can be merged"], r.ErrorLines);
    }

    [Fact]
    public void A_transient_snapshot_reports_invalid_once_the_store_is_closed()
    {
        using var dir = new TempFolder();
        var store = Init(dir);
        var c = ToolRunner.SnapCtl("snapshot", "create", store, "t", "--transient");
        Ok(c);
        Assert.Contains("transient", c.Stdout);
        Assert.Contains("reports Invalid", c.Stderr);
        Assert.StartsWith("t: 0 2048 snapshot Invalid", ToolRunner.SnapCtl("status", store).Stdout.Split('\n')[1]);
    }

    [Theory]
    [InlineData("read", "--snapshot", "nope", "--offset", "0", "--length", "512")]
    [InlineData("write", "--snapshot", "nope", "--offset", "0", "--pattern", "1", "--length", "512")]
    [InlineData("snapshot", "delete", "{store}", "nope")]
    [InlineData("snapshot", "merge", "{store}", "nope")]
    public void A_missing_snapshot_exits_66(params string[] args)
    {
        using var dir = new TempFolder();
        var store = Init(dir);
        string[] full = args[0] == "snapshot" ? args.Select(a => a == "{store}" ? store : a).ToArray() : [args[0], store, .. args[1..]];
        var r = ToolRunner.SnapCtl(full);
        Assert.Equal(66, r.ExitCode);
        Assert.Equal([$"snapctl: {store}: no snapshot named 'nope'"], r.ErrorLines);
    }

    [Theory]
    [InlineData("--offset", "100", "--length", "512", "--offset: 100 bytes is not a whole number of 512-byte sectors")]
    [InlineData("--offset", "0", "--length", "1000", "--length: 1000 bytes is not a whole number of 512-byte sectors")]
    [InlineData("--offset", "1M", "--length", "512", "512 bytes at offset 1048576 go past the end of origin (1048576 bytes)")]
    public void Reads_outside_the_volume_or_unaligned_are_usage_errors(string o, string ov, string l, string lv, string message)
    {
        using var dir = new TempFolder();
        var store = Init(dir);
        var r = ToolRunner.SnapCtl("read", store, o, ov, l, lv);
        Assert.Equal(64, r.ExitCode);
        Assert.Contains(message, r.Stderr);
    }

    [Fact]
    public void Snapshot_names_the_store_refuses_are_usage_errors()
    {
        using var dir = new TempFolder();
        var store = Init(dir);
        var r = ToolRunner.SnapCtl("snapshot", "create", store, "bad/name");
        Assert.Equal(64, r.ExitCode);
        Assert.Contains("path separator", r.Stderr);
        // The commands that look a snapshot up say the same for a name no snapshot can have, before the store opens.
        foreach (var args in new[]
                 {
                     new[] { "snapshot", "delete", store, "x/y" }, ["snapshot", "merge", store, "x/y"], ["diff", store, "x/y"],
                     ["diff", store, "a", "x/y"], ["read", store, "--snapshot", "x/y", "--offset", "0", "--length", "4K"],
                     ["write", store, "--snapshot", "x/y", "--offset", "0", "--pattern", "1", "--length", "4K"],
                 })
        {
            r = ToolRunner.SnapCtl(args);
            Assert.True(r.ExitCode == 64, r.ToString());
            Assert.Equal("snapctl: snapshot name 'x/y' contains a path separator", Assert.Single(r.ErrorLines));
        }
        // A well-formed name that no snapshot has is a missing input.
        r = ToolRunner.SnapCtl("snapshot", "delete", store, "nope");
        Assert.True(r.ExitCode == 66, r.ToString());
    }

    [Fact]
    public void A_damaged_superblock_exits_2_with_one_line_naming_the_file()
    {
        using var dir = new TempFolder();
        var store = Init(dir);
        var sb = Path.Combine(store, "store.sb");
        var bytes = File.ReadAllBytes(sb);
        bytes[20] ^= 0xFF;          // copy A
        bytes[8192 + 20] ^= 0xFF;   // copy B
        File.WriteAllBytes(sb, bytes);
        var r = ToolRunner.SnapCtl("status", store);
        Assert.Equal(2, r.ExitCode);
        var line = Assert.Single(r.ErrorLines);
        Assert.StartsWith($"snapctl: {Path.GetFullPath(sb)}: ", line);
        Assert.Contains("sector 0", line);
    }

    [Fact]
    public void A_damaged_cow_header_makes_the_snapshot_unavailable_and_status_names_the_offset()
    {
        using var dir = new TempFolder();
        var store = Init(dir);
        Ok(ToolRunner.SnapCtl("snapshot", "create", store, "s1"));
        var cow = Path.Combine(store, "s1.cow");
        using (var f = new FileStream(cow, FileMode.Open, FileAccess.ReadWrite)) f.Write("JUNK"u8);
        var r = ToolRunner.SnapCtl("status", store);
        Ok(r);
        var line = Assert.Single(r.Stdout.Split('\n'), l => l.StartsWith("s1:", StringComparison.Ordinal));
        Assert.Contains("Unavailable (COW file is damaged: ", line);
        Assert.Contains("offset 0: not a persistent COW file: bad magic (expected 0x70416e53 (\"SnAp\"), found 0x4b4e554a)", line);
        var read = ToolRunner.SnapCtl("read", store, "--snapshot", "s1", "--offset", "0", "--length", "512");
        Assert.Equal(2, read.ExitCode);
        Assert.Contains("s1.cow", Assert.Single(read.ErrorLines));
    }
}
