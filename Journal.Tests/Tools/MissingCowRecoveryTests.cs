namespace Journal.Tests.Tools;

/// <summary>
/// A crash leaves metadata of a snapshot in the journal, not yet written to its COW file, and the file is then missing
/// (moved by mistake, on a restore still to come). Replaying without the file would skip that metadata, and the log
/// would move past it: the file, once back, would lack exceptions for chunks the origin has since overwritten, and the
/// snapshot would read the origin's new data. So the open (and jreplay check and replay) refuse with exit 66 and change
/// nothing; with the file back the replay brings the snapshot back whole, and <c>jreplay replay --invalidate-unreadable</c>
/// drops the snapshot for good instead.
/// </summary>
public class MissingCowRecoveryTests
{
    [Fact]
    public async Task A_crashed_store_whose_cow_file_is_missing_is_not_opened_until_the_file_is_back()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        var contents = await CrashedStore.CreateAsync(store);
        string cow = Path.Combine(store, "s.cow");
        string aside = dir["s.cow.aside"];
        File.Move(cow, aside);
        var before = CrashedStore.Files(store);

        foreach (var r in new[]
                 {
                     ToolRunner.SnapCtl("status", store),
                     ToolRunner.SnapCtl("read", store, "--offset", "0", "--length", "4K"),
                     ToolRunner.JReplay("check", store),
                     ToolRunner.JReplay("replay", store),
                     ToolRunner.JReplay("replay", store, "--dry-run"),
                 })
        {
            Assert.True(r.ExitCode == 66, r.ToString());
            var line = Assert.Single(r.ErrorLines);
            Assert.Contains($"{cow}: COW file of snapshot 's' is missing, and the journal holds metadata of it not yet written to the file", line);
            Assert.Contains("nothing was changed", line);
        }
        CrashedStore.AssertSameFiles(before, CrashedStore.Files(store));

        File.Move(aside, cow);
        var read = ToolRunner.SnapCtl("read", store, "--snapshot", "s", "--offset", "0", "--length", "1M");
        Assert.True(read.ExitCode == 0, read.ToString());
        Assert.Equal(contents.SnapshotS, read.Raw);
        Assert.Equal(contents.Origin, ToolRunner.SnapCtl("read", store, "--offset", "0", "--length", "1M").Raw);
    }

    [Fact]
    public async Task Replay_with_invalidate_unreadable_drops_the_snapshot_and_finishes()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        var contents = await CrashedStore.CreateAsync(store);
        File.Move(Path.Combine(store, "s.cow"), dir["s.cow.aside"]);

        var dry = ToolRunner.JReplay("replay", store, "--dry-run", "--invalidate-unreadable");
        Assert.True(dry.ExitCode == 0, dry.ToString());
        var replay = ToolRunner.JReplay("replay", store, "--invalidate-unreadable");
        Assert.True(replay.ExitCode == 0, replay.ToString());
        Assert.Equal(0, ToolRunner.JReplay("check", store).ExitCode);
        var status = ToolRunner.SnapCtl("status", store);
        Assert.True(status.ExitCode == 0, status.ToString());
        Assert.Contains("s: 0 2048 snapshot Invalid (COW file is missing)", status.Stdout);
        Assert.Equal(contents.Origin, ToolRunner.SnapCtl("read", store, "--offset", "0", "--length", "1M").Raw);
        Assert.Equal(0, ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "0x55", "--length", "4K").ExitCode);
    }

    public static TheoryData<string, string> Damages => new()
    {
        { "cut short", "is damaged: 128 sectors long, and the journal's metadata of it reaches sector" },
        { "header only", "is damaged: 8 sectors long, and the journal's metadata of it reaches sector" },
        { "empty", "is damaged: 0 bytes long, shorter than its header" },
        { "bad magic", "is damaged: offset 0: not a persistent COW file: bad magic" },
    };

    [Theory]
    [MemberData(nameof(Damages))]
    public async Task A_crashed_store_whose_cow_file_is_damaged_is_not_opened_until_the_file_is_back(string damage, string problem)
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        var contents = await CrashedStore.CreateAsync(store);
        string cow = Path.Combine(store, "s.cow");
        var intact = File.ReadAllBytes(cow);
        Damage(cow, damage, intact);
        var before = CrashedStore.Files(store);

        foreach (var r in new[]
                 {
                     ToolRunner.SnapCtl("status", store),
                     ToolRunner.JReplay("check", store),
                     ToolRunner.JReplay("replay", store),
                 })
        {
            Assert.True(r.ExitCode == 2, r.ToString());
            var line = Assert.Single(r.ErrorLines);
            Assert.Contains($"{cow}: COW file of snapshot 's' {problem}", line);
            Assert.Contains("the journal holds metadata of it not yet written to the file; the store was not opened and nothing was changed", line);
        }
        CrashedStore.AssertSameFiles(before, CrashedStore.Files(store));

        File.WriteAllBytes(cow, intact);
        var read = ToolRunner.SnapCtl("read", store, "--snapshot", "s", "--offset", "0", "--length", "1M");
        Assert.True(read.ExitCode == 0, read.ToString());
        Assert.Equal(contents.SnapshotS, read.Raw);
    }

    [Theory]
    [MemberData(nameof(Damages))]
    public async Task Replay_with_invalidate_unreadable_drops_a_snapshot_whose_cow_file_is_damaged(string damage, string problem)
    {
        _ = problem;
        using var dir = new TempFolder();
        var store = dir["store"];
        var contents = await CrashedStore.CreateAsync(store);
        string cow = Path.Combine(store, "s.cow");
        var intact = File.ReadAllBytes(cow);
        Damage(cow, damage, intact);

        var replay = ToolRunner.JReplay("replay", store, "--invalidate-unreadable");
        Assert.True(replay.ExitCode == 0, replay.ToString());
        var status = ToolRunner.SnapCtl("status", store);
        Assert.True(status.ExitCode == 0, status.ToString());
        Assert.Contains("s: 0 2048 snapshot Invalid (COW file is damaged", status.Stdout);
        Assert.Equal(contents.Origin, ToolRunner.SnapCtl("read", store, "--offset", "0", "--length", "1M").Raw);
        Assert.Equal(0, ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "0x55", "--length", "4K").ExitCode);
    }

    /// <summary>Writes <paramref name="cow"/> as <paramref name="damage"/> leaves the good file <paramref name="intact"/>.</summary>
    private static void Damage(string cow, string damage, byte[] intact)
    {
        switch (damage)
        {
            case "cut short": File.WriteAllBytes(cow, intact.AsSpan(0, 128 * 512).ToArray()); break;
            case "header only": File.WriteAllBytes(cow, intact.AsSpan(0, 4096).ToArray()); break;
            case "empty": File.WriteAllBytes(cow, []); break;
            default: File.WriteAllBytes(cow, [.. "JUNK"u8, .. intact.AsSpan(4)]); break;
        }
    }
}
