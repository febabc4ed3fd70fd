using System.Text.Json;

namespace Journal.Tests.Tools;

/// <summary>
/// jreplay on bare log files: check's exit codes (0 clean, 1 needs replay, 2 corrupt), print's record and checkpoint
/// views, the bad-input cases (tiny file, not a log, corruption in the middle) as one line naming file and block, and
/// that check and print never write.
/// </summary>
public class JReplayTests
{
    [Fact]
    public async Task Check_a_clean_log_exits_0()
    {
        using var dir = new TempFolder();
        await TestLogs.CreateAsync(dir["clean.log"], checkpoints: 2, clean: true);
        var r = ToolRunner.JReplay("check", dir["clean.log"]);
        Assert.Equal(0, r.ExitCode);
        Assert.StartsWith($"{dir["clean.log"]}: clean (head ", r.Stdout);
        Assert.Equal("", r.Stderr);
    }

    [Fact]
    public async Task Check_a_log_that_needs_replay_exits_1_and_says_what_is_there()
    {
        using var dir = new TempFolder();
        await TestLogs.CreateAsync(dir["dirty.log"], checkpoints: 3);
        var r = ToolRunner.JReplay("check", dir["dirty.log"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("needs replay: 3 checkpoints (sequences 1..3), 9 item copies", r.Stdout);
    }

    [Fact]
    public async Task Check_json_reports_the_state_and_counts()
    {
        using var dir = new TempFolder();
        await TestLogs.CreateAsync(dir["dirty.log"], checkpoints: 3);
        var r = ToolRunner.JReplay("check", dir["dirty.log"], "--json");
        Assert.Equal(1, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        Assert.Equal("needs_replay", doc.RootElement.GetProperty("status").GetString());
        Assert.False(doc.RootElement.GetProperty("clean").GetBoolean());
        Assert.Equal(3, doc.RootElement.GetProperty("checkpoints").GetInt32());
        Assert.Equal(1024, doc.RootElement.GetProperty("log_blocks").GetInt32());
    }

    [Fact]
    public async Task Print_shows_records_ops_and_checkpoints_with_their_items()
    {
        using var dir = new TempFolder();
        await TestLogs.CreateAsync(dir["dirty.log"], checkpoints: 2);
        var r = ToolRunner.JReplay("print", dir["dirty.log"]);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("record 1:", r.Stdout);
        Assert.Contains("START", r.Stdout);
        Assert.Contains("COMMIT", r.Stdout);
        Assert.Contains("checkpoint 2: 3 items, 6 regions", r.Stdout);
        Assert.Contains("checkpoints to replay: 2", r.Stdout);
        Assert.Contains("type 7 id 201  regions 1  bytes 340", r.Stdout);
    }

    [Fact]
    public async Task Print_json_lists_records_and_checkpoints()
    {
        using var dir = new TempFolder();
        await TestLogs.CreateAsync(dir["dirty.log"], checkpoints: 3);
        var r = ToolRunner.JReplay("print", dir["dirty.log"], "--json");
        Assert.Equal(0, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        Assert.True(root.GetProperty("records").GetArrayLength() >= 1);
        var cps = root.GetProperty("checkpoints");
        Assert.Equal(3, cps.GetArrayLength());
        Assert.Equal(4, cps[2].GetProperty("items").GetArrayLength());
        Assert.Equal(7, cps[2].GetProperty("items")[0].GetProperty("type").GetInt32());
    }

    [Fact]
    public async Task Print_item_type_keeps_only_those_items()
    {
        using var dir = new TempFolder();
        await TestLogs.CreateAsync(dir["dirty.log"], checkpoints: 3);
        var r = ToolRunner.JReplay("print", dir["dirty.log"], "--json", "--item-type", "9");
        using var doc = JsonDocument.Parse(r.Stdout);
        var cps = doc.RootElement.GetProperty("checkpoints");
        Assert.Equal(3, cps.GetArrayLength());
        Assert.All(cps.EnumerateArray(), c => Assert.Equal(9, Assert.Single(c.GetProperty("items").EnumerateArray()).GetProperty("type").GetInt32()));
        Assert.Equal(0, doc.RootElement.GetProperty("records").GetArrayLength());
    }

    [Fact]
    public async Task Print_names_and_decodes_the_snapshot_store_metadata_segments()
    {
        using var dir = new TempFolder();
        await TestLogs.CreateAsync(dir["dirty.log"], checkpoints: 2, withSegment: true);
        var r = ToolRunner.JReplay("print", dir["dirty.log"], "--item-type", "cow-segment");
        Assert.Equal(0, r.ExitCode);
        var lines = r.Stdout.Split('\n').Where(l => l.Contains("cow-segment")).ToArray();
        Assert.Equal(2, lines.Length);
        Assert.Contains($"cow-segment id {(1UL << 40) | 5}  regions 1  bytes 64  snapshot id 1 segment 5: entries 0..2", lines[0]);
        Assert.Contains("snapshot id 1 segment 5: entries 3..5", lines[1]);
        Assert.Contains("item cow-segment id", ToolRunner.JReplay("print", dir["dirty.log"]).Stdout);
    }

    [Fact]
    public async Task Print_decodes_the_logged_store_superblock()
    {
        using var dir = new TempFolder();
        await TestLogs.CreateAsync(dir["dirty.log"], checkpoints: 2, withSuperblock: true);
        var r = ToolRunner.JReplay("print", dir["dirty.log"], "--item-type", "superblock");
        Assert.Equal(0, r.ExitCode);
        var lines = r.Stdout.Split('\n').Where(l => l.Contains("superblock id 0")).ToArray();
        Assert.Equal(2, lines.Length);
        Assert.EndsWith("generation 1: 1 snapshot (s1)", lines[0]);
        Assert.EndsWith("generation 2: 2 snapshots (s1, s2)", lines[1]);
    }

    [Fact]
    public void An_unknown_item_type_name_is_a_usage_error()
    {
        using var dir = new TempFolder();
        var r = ToolRunner.JReplay("print", dir["x.log"], "--item-type", "nonsense");
        Assert.Equal(64, r.ExitCode);
        Assert.Contains("--item-type: 'nonsense' is not an item type (a number 0-65535 or one of cow-segment, superblock)", r.Stderr);
    }

    [Fact]
    public async Task Print_lsn_range_selects_records()
    {
        using var dir = new TempFolder();
        await TestLogs.CreateAsync(dir["dirty.log"], checkpoints: 6);
        using var all = JsonDocument.Parse(ToolRunner.JReplay("print", dir["dirty.log"], "--json").Stdout);
        var lsns = all.RootElement.GetProperty("records").EnumerateArray().Select(x => x.GetProperty("lsn").GetString()!).ToArray();
        Assert.True(lsns.Length >= 2, "the test log should span several records");
        var r = ToolRunner.JReplay("print", dir["dirty.log"], "--json", "--from-lsn", lsns[1], "--to-lsn", lsns[1]);
        using var one = JsonDocument.Parse(r.Stdout);
        Assert.Equal([lsns[1]], one.RootElement.GetProperty("records").EnumerateArray().Select(x => x.GetProperty("lsn").GetString()!));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(512)]
    [InlineData(8191)]
    public void A_tiny_file_exits_2_with_a_clear_line(int size)
    {
        using var dir = new TempFolder();
        File.WriteAllBytes(dir["tiny"], new byte[size]);
        foreach (var cmd in new[] { "check", "print" })
        {
            var r = ToolRunner.JReplay(cmd, dir["tiny"]);
            Assert.Equal(2, r.ExitCode);
            Assert.Equal([$"jreplay: {dir["tiny"]}: {size} bytes is too small to be a journal log (a log has at least 16 blocks, 8192 bytes)"], r.ErrorLines);
        }
    }

    [Fact]
    public void A_file_that_is_not_whole_sectors_exits_2()
    {
        using var dir = new TempFolder();
        File.WriteAllBytes(dir["odd"], new byte[10000]);
        var r = ToolRunner.JReplay("check", dir["odd"]);
        Assert.Equal(2, r.ExitCode);
        var line = Assert.Single(r.ErrorLines);
        Assert.Contains(dir["odd"], line);
    }

    [Fact]
    public void A_file_that_is_not_a_log_exits_2_naming_it()
    {
        using var dir = new TempFolder();
        var text = new byte[64 * 1024];
        new Random(5).NextBytes(text);
        File.WriteAllBytes(dir["random.bin"], text);
        var r = ToolRunner.JReplay("check", dir["random.bin"]);
        Assert.Equal(2, r.ExitCode);
        var line = Assert.Single(r.ErrorLines);
        Assert.StartsWith($"jreplay: {Path.GetFullPath(dir["random.bin"])}: ", line);
    }

    [Fact]
    public async Task Corruption_in_the_middle_exits_2_naming_file_block_and_lsn()
    {
        using var dir = new TempFolder();
        await TestLogs.CreateAsync(dir["dirty.log"], checkpoints: 6);
        using var all = JsonDocument.Parse(ToolRunner.JReplay("print", dir["dirty.log"], "--json").Stdout);
        var records = all.RootElement.GetProperty("records").EnumerateArray().ToArray();
        Assert.True(records.Length >= 3, "the test log should span several records");
        var victim = records[1].GetProperty("lsn").GetString()!;
        long block = long.Parse(victim.Split(':')[1]);
        using (var f = new FileStream(dir["dirty.log"], FileMode.Open, FileAccess.ReadWrite))
        {
            f.Position = (block + 1) * 512 + 100;   // inside the record's first payload block
            int b = f.ReadByte();
            f.Position--;
            f.WriteByte((byte)(b ^ 0x40));
        }
        var r = ToolRunner.JReplay("check", dir["dirty.log"]);
        Assert.Equal(2, r.ExitCode);
        var line = Assert.Single(r.ErrorLines);
        Assert.StartsWith($"jreplay: {Path.GetFullPath(dir["dirty.log"])}: block {block}: LSN {victim}: ", line);

        var p = ToolRunner.JReplay("print", dir["dirty.log"]);
        Assert.Equal(2, p.ExitCode);
        Assert.Contains($"record {victim}  BAD", p.Stdout);
        Assert.Contains($"block {block}: LSN {victim}", Assert.Single(p.ErrorLines));
    }

    [Fact]
    public async Task Check_and_print_write_nothing()
    {
        using var dir = new TempFolder();
        var log = dir["dirty.log"];
        await TestLogs.CreateAsync(log, checkpoints: 3);
        File.SetLastWriteTimeUtc(log, new DateTime(2020, 1, 1, 0, 0, 0, DateTimeKind.Utc));
        File.SetAttributes(log, FileAttributes.ReadOnly);
        var before = File.ReadAllBytes(log);
        var mtime = File.GetLastWriteTimeUtc(log);

        Assert.Equal(1, ToolRunner.JReplay("check", log).ExitCode);
        Assert.Equal(0, ToolRunner.JReplay("print", log).ExitCode);
        Assert.Equal(0, ToolRunner.JReplay("print", log, "--json").ExitCode);
        Assert.Equal(0, ToolRunner.JReplay("replay", log, "--dry-run").ExitCode);

        Assert.Equal(before, File.ReadAllBytes(log));
        Assert.Equal(mtime, File.GetLastWriteTimeUtc(log));
    }

    [Fact]
    public async Task Replay_of_a_bare_log_is_refused_but_a_dry_run_says_what_is_there()
    {
        using var dir = new TempFolder();
        await TestLogs.CreateAsync(dir["dirty.log"], checkpoints: 2);
        var dry = ToolRunner.JReplay("replay", dir["dirty.log"], "--dry-run");
        Assert.Equal(0, dry.ExitCode);
        Assert.Contains("needs replay: 2 checkpoints", dry.Stdout);
        Assert.Contains("dry run: nothing was changed", dry.Stdout);
        var r = ToolRunner.JReplay("replay", dir["dirty.log"]);
        Assert.Equal(64, r.ExitCode);
        Assert.Contains("replay needs its store folder", r.Stderr);
    }

    [Fact]
    public async Task Replay_of_a_clean_log_has_nothing_to_do()
    {
        using var dir = new TempFolder();
        await TestLogs.CreateAsync(dir["clean.log"], checkpoints: 2, clean: true);
        var r = ToolRunner.JReplay("replay", dir["clean.log"]);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("clean: nothing to replay", r.Stdout);
    }
}
