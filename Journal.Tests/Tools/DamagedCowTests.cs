namespace Journal.Tests.Tools;

/// <summary>
/// One damaged COW file costs its snapshot alone: the snapshot is invalidated with the reason, the origin and the other
/// snapshots keep working, and the damaged snapshot can be deleted.
/// </summary>
public class DamagedCowTests
{
    [Theory]
    [InlineData("deleted", "COW file is missing")]
    [InlineData("truncated", "COW file is damaged")]
    [InlineData("header", "COW file is damaged")]
    [InlineData("area", "COW file is damaged")]
    public void A_damaged_cow_file_invalidates_only_its_snapshot(string damage, string reason)
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        Ok(ToolRunner.SnapCtl("init", store, "--origin-size", "1M"));
        Ok(ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "0x11", "--length", "1M"));
        Ok(ToolRunner.SnapCtl("snapshot", "create", store, "bad"));
        Ok(ToolRunner.SnapCtl("snapshot", "create", store, "good"));
        Ok(ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "0x22", "--length", "64K"));
        string cow = Path.Combine(store, "bad.cow");
        switch (damage)
        {
            case "deleted": File.Delete(cow); break;
            case "truncated": using (var f = File.OpenWrite(cow)) f.SetLength(0); break;
            case "header": Patch(cow, 72, 0xff); break;               // the snapshot id, under the header checksum
            default: Patch(cow, 4096 + 15, 0x7f); break;             // area 0, entry 0: new_chunk far past the end of the file
        }

        var status = ToolRunner.SnapCtl("status", store);
        Ok(status);
        Assert.Contains("bad: 0 2048 snapshot Invalid", status.Stdout);
        Assert.Contains("good: 0 2048 snapshot ", status.Stdout);
        Assert.DoesNotContain("good: 0 2048 snapshot Invalid", status.Stdout);
        var json = ToolRunner.SnapCtl("status", store, "--json");
        Assert.Contains(reason, json.Stdout);

        // The origin and the other snapshot read and write as before.
        Assert.All(ToolRunner.SnapCtl("read", store, "--offset", "0", "--length", "64K").Raw, b => Assert.Equal(0x22, b));
        Assert.All(ToolRunner.SnapCtl("read", store, "--snapshot", "good", "--offset", "0", "--length", "128K").Raw, b => Assert.Equal(0x11, b));
        Ok(ToolRunner.SnapCtl("write", store, "--offset", "64K", "--pattern", "0x33", "--length", "64K"));
        Assert.All(ToolRunner.SnapCtl("read", store, "--snapshot", "good", "--offset", "64K", "--length", "64K").Raw, b => Assert.Equal(0x11, b));
        var read = ToolRunner.SnapCtl("read", store, "--snapshot", "bad", "--offset", "0", "--length", "4K");
        Assert.Equal(2, read.ExitCode);
        Assert.Contains(reason, read.Stderr);

        // The damaged snapshot goes on request, file and all.
        Ok(ToolRunner.SnapCtl("snapshot", "delete", store, "bad"));
        Assert.False(File.Exists(cow));
        Assert.DoesNotContain("bad", ToolRunner.SnapCtl("status", store).Stdout);
    }

    private static void Patch(string file, long offset, byte value)
    {
        using var f = new FileStream(file, FileMode.Open, FileAccess.ReadWrite);
        f.Position = offset;
        f.WriteByte(value);
    }

    private static void Ok(ToolResult r) => Assert.True(r.ExitCode == 0, r.ToString());
}
