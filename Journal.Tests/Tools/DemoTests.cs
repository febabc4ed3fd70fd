using System.Text.Json;

namespace Journal.Tests.Tools;

/// <summary>
/// The demo end to end (it verifies every sector itself and exits 0 only if all match), and jreplay on the store the
/// demo leaves behind after its crash: check says it needs replay, a dry run changes nothing, replay makes it clean,
/// and a second replay finds nothing to do.
/// </summary>
public class DemoTests
{
    [Fact]
    public void The_demo_recovers_and_verifies_every_snapshot_and_the_origin()
    {
        using var dir = new TempFolder();
        var r = ToolRunner.SnapCtl("demo", dir["demo"], "--seed", "11");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("reopen (journal replay)", r.Stdout);
        Assert.Contains("result: OK, every sector of the origin and of 3 snapshots as expected after the crash", r.Stdout);
        Assert.Matches(@"recovery +[\d,]+ log records replayed", r.Stdout);
        Assert.Equal("", r.Stderr);
        Assert.DoesNotContain('\u001b', r.Stdout);   // no progress bar or colour when output is not a terminal
    }

    [Fact]
    public void The_demo_json_is_one_object_with_phases_and_figures()
    {
        using var dir = new TempFolder();
        var r = ToolRunner.SnapCtl("demo", dir["demo"], "--seed", "12", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        Assert.True(root.GetProperty("ok").GetBoolean());
        Assert.Equal(12, root.GetProperty("seed").GetInt32());
        var results = root.GetProperty("results");
        Assert.True(results.GetProperty("origin_writes").GetInt64() > 0);
        Assert.True(results.GetProperty("exceptions_before_crash").GetInt64() > 0);
        Assert.True(results.GetProperty("checkpoints").GetInt64() > 0);
        Assert.True(results.GetProperty("records_scanned").GetInt32() > 0, "the crash leaves log records to replay");
        Assert.True(results.GetProperty("replayed_checkpoints").GetInt64() > 0);
        Assert.Equal(0, results.GetProperty("mismatches").GetInt64());
        Assert.Equal(0, root.GetProperty("problems").GetArrayLength());
        Assert.Contains(root.GetProperty("phases").EnumerateArray(), p => p.GetProperty("name").GetString() == "verify");
    }

    [Fact]
    public void The_demo_refuses_a_folder_that_is_not_empty()
    {
        using var dir = new TempFolder();
        File.WriteAllText(dir["keep.txt"], "mine");
        var r = ToolRunner.SnapCtl("demo", dir.Path);
        Assert.Equal(2, r.ExitCode);
        Assert.Equal([$"snapctl: {dir.Path}: folder is not empty (the demo builds a new store there)"], r.ErrorLines);
        Assert.Equal("mine", File.ReadAllText(dir["keep.txt"]));
    }

    [Fact]
    public void Jreplay_recovers_the_store_the_demo_crashed()
    {
        using var dir = new TempFolder();
        var store = dir["crashed"];
        var demo = ToolRunner.SnapCtl("demo", store, "--seed", "13", "--crash-only");
        Assert.True(demo.ExitCode == 0, demo.ToString());
        Assert.Contains("was not closed cleanly", demo.Stdout);

        var check = ToolRunner.JReplay("check", store);
        Assert.True(check.ExitCode == 1, check.ToString());
        Assert.Contains("needs replay", check.Stdout);

        var old = new DateTime(2020, 1, 1, 0, 0, 0, DateTimeKind.Utc);
        foreach (var f in Directory.GetFiles(store)) File.SetLastWriteTimeUtc(f, old);
        var files = Directory.GetFiles(store).ToDictionary(f => f, File.ReadAllBytes);
        var checkJson = ToolRunner.JReplay("check", store, "--json");
        Assert.Equal(1, checkJson.ExitCode);
        int checkpoints;
        using (var doc = JsonDocument.Parse(checkJson.Stdout)) checkpoints = doc.RootElement.GetProperty("checkpoints").GetInt32();
        Assert.True(checkpoints > 0, "the crash leaves checkpoints to replay");
        var print = ToolRunner.JReplay("print", store);
        Assert.True(print.ExitCode == 0, print.ToString());
        Assert.Contains("cow-segment", print.Stdout);
        Assert.Matches(@"snapshot snap-\d \(id \d\) segment \d+: entries \d+\.\.\d+", print.Stdout);
        var dry = ToolRunner.JReplay("replay", store, "--dry-run");
        Assert.True(dry.ExitCode == 0, dry.ToString());
        Assert.Contains("dry run: nothing was changed", dry.Stdout);
        Assert.Equal(files.Keys.Order(), Directory.GetFiles(store).Order());
        foreach (var (f, bytes) in files)
        {
            Assert.Equal(bytes, File.ReadAllBytes(f));
            Assert.Equal(old, File.GetLastWriteTimeUtc(f));
        }

        var replay = ToolRunner.JReplay("replay", store);
        Assert.True(replay.ExitCode == 0, replay.ToString());
        Assert.Contains($"replayed {checkpoints} checkpoints from tail ", replay.Stdout);
        Assert.Contains("the store was closed cleanly", replay.Stdout);
        Assert.Equal(0, ToolRunner.JReplay("check", store).ExitCode);

        var again = ToolRunner.JReplay("replay", store);
        Assert.Equal(0, again.ExitCode);
        Assert.Contains("clean: nothing to replay", again.Stdout);

        using var status = JsonDocument.Parse(ToolRunner.SnapCtl("status", store, "--json").Stdout);
        Assert.True(status.RootElement.GetProperty("log").GetProperty("clean").GetBoolean());
    }
}
