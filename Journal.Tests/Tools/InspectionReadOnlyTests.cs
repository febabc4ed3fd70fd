namespace Journal.Tests.Tools;

/// <summary>
/// The commands that only look at a store (status, read, diff) open it read-only: on a store whose last close was not
/// clean they replay the journal in memory, answer from that, and leave every file of the store as it was, so that an
/// operator can look at a crashed store (or copy it) before anything writes to it. The next command that writes
/// replays the journal on disk.
/// </summary>
public class InspectionReadOnlyTests
{
    [Fact]
    public async Task Status_read_and_diff_answer_from_a_replay_in_memory_and_change_no_file()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        var contents = await CrashedStore.CreateAsync(store);
        var before = CrashedStore.Files(store);

        var status = ToolRunner.SnapCtl("status", store);
        var origin = ToolRunner.SnapCtl("read", store, "--offset", "0", "--length", "1M");
        var snapshot = ToolRunner.SnapCtl("read", store, "--snapshot", "s", "--offset", "0", "--length", "1M");
        var diff = ToolRunner.SnapCtl("diff", store, "s", "origin");
        foreach (var r in new[] { status, origin, snapshot, diff })
        {
            Assert.True(r.ExitCode == 0, r.ToString());
            var line = Assert.Single(r.ErrorLines);
            Assert.Contains("the journal was replayed in memory only", line);
        }
        Assert.Matches(@"^origin: 0 2048 snapshot-origin\ns: 0 2048 snapshot \d+/\d+ \d+\n$", status.Stdout);
        Assert.Equal(contents.Origin, origin.Raw);
        Assert.Equal(contents.SnapshotS, snapshot.Raw);
        // Chunks 0..39 were rewritten after s was taken (the last 10 of them only in the journal's segments).
        Assert.StartsWith("0 163840\ntotal: 1 extents, 40 chunks of 4096 bytes, 163840 bytes", diff.Stdout);

        CrashedStore.AssertSameFiles(before, CrashedStore.Files(store));

        // The journal still needs its replay on disk, which the first command that writes does.
        var write = ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "9", "--length", "4K");
        Assert.True(write.ExitCode == 0, write.ToString());
        Assert.Contains("the last close was not clean; the journal was replayed", Assert.Single(write.ErrorLines));
        var again = ToolRunner.SnapCtl("status", store);
        Assert.True(again.ExitCode == 0 && again.ErrorLines.Length == 0, again.ToString());
    }
}
