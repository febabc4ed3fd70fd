namespace Journal.Tests.Tools;

/// <summary>
/// <c>jreplay zero-log</c> refuses, before it writes anything, a journal it could only rewrite by writing through a
/// symbolic link or could not open for writing at all: such a log is not an unreadable one, and a reset that went on
/// would mark every snapshot invalid (or overwrite a file the store did not make) and then fail.
/// </summary>
public class ZeroLogRefusalTests
{
    private static void Ok(ToolResult r) => Assert.True(r.ExitCode == 0, r.ToString());

    private static string MakeStore(TempFolder dir)
    {
        var store = dir["store"];
        Ok(ToolRunner.SnapCtl("init", store, "--origin-size", "1M"));
        Ok(ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "7", "--length", "1M"));
        Ok(ToolRunner.SnapCtl("snapshot", "create", store, "s"));
        Ok(ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "9", "--length", "64K"));
        return store;
    }


    private static void AssertSnapshotValid(string store)
    {
        var status = ToolRunner.SnapCtl("status", store);
        Ok(status);
        Assert.DoesNotContain("Invalid", status.Stdout);
        Assert.Equal(Enumerable.Repeat((byte)7, 4096), ToolRunner.SnapCtl("read", store, "--snapshot", "s", "--offset", "0", "--length", "4K").Raw);
    }

    [Fact]
    public void A_journal_that_is_a_symbolic_link_is_refused_and_its_target_is_not_written()
    {
        using var dir = new TempFolder();
        var store = MakeStore(dir);
        string log = Path.Combine(store, "journal.log");
        string moved = dir["journal.log.real"];
        File.Move(log, moved);
        string userFile = dir["user.bin"];
        var userData = new byte[2 << 20];
        new Random(5).NextBytes(userData);
        File.WriteAllBytes(userFile, userData);
        File.CreateSymbolicLink(log, userFile);
        var sb = File.ReadAllBytes(Path.Combine(store, "store.sb"));

        foreach (var args in new[] { new[] { "zero-log", store }, ["zero-log", store, "--force"] })
        {
            var r = ToolRunner.JReplay(args);
            Assert.Equal(2, r.ExitCode);
            Assert.Equal([$"jreplay: {log}: is a symbolic link (to {userFile}); a reset rewrites only the store's own files, so nothing was changed"], r.ErrorLines);
        }
        Assert.Equal(userData, File.ReadAllBytes(userFile));
        Assert.Equal(sb, File.ReadAllBytes(Path.Combine(store, "store.sb")));

        File.Delete(log);
        File.Move(moved, log);
        AssertSnapshotValid(store);
    }

    [Fact]
    public void A_journal_that_cannot_be_opened_for_writing_is_refused_and_no_snapshot_is_marked()
    {
        using var dir = new TempFolder();
        var store = MakeStore(dir);
        string log = Path.Combine(store, "journal.log");
        Ok(ToolRunner.JReplay("check", store));
        var sb = File.ReadAllBytes(Path.Combine(store, "store.sb"));
        FileFlags.Chattr("+i", log);
        try
        {
            foreach (var args in new[] { new[] { "zero-log", store }, ["zero-log", store, "--force"] })
            {
                var r = ToolRunner.JReplay(args);
                Assert.Equal(66, r.ExitCode);
                Assert.Equal([$"jreplay: {log}: cannot be opened for reading and writing (permission denied); a reset rewrites it, so nothing was changed"], r.ErrorLines);
            }
            Assert.Equal(sb, File.ReadAllBytes(Path.Combine(store, "store.sb")));
        }
        finally
        {
            FileFlags.Chattr("-i", log);
        }
        AssertSnapshotValid(store);
    }
}
