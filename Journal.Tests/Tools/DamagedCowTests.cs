using Snapshot;

namespace Journal.Tests.Tools;

/// <summary>
/// A missing or damaged COW file found at open loses nothing by default: the snapshot is kept unavailable (nothing is
/// committed), the origin and the other snapshots read as before, the origin refuses writes (each would need a copy into
/// the file), and the snapshot comes back whole once the file is restored. Deleting the snapshot gives the origin back
/// its writes; <see cref="CowUnreadablePolicy.InvalidateSnapshot"/> drops the snapshot at open instead (dm-snapshot's
/// choice).
/// </summary>
public class DamagedCowTests
{
    public static TheoryData<string, string> Damages => new()
    {
        { "deleted", "COW file is missing" },
        { "truncated", "COW file is damaged" },
        { "header", "COW file is damaged" },
        { "area", "COW file is damaged" },
        { "directory", "COW file is damaged: is a directory" },
    };

    [Theory]
    [MemberData(nameof(Damages))]
    public void A_damaged_cow_file_makes_its_snapshot_unavailable_and_the_origin_read_only_until_the_file_is_back(string damage, string reason)
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        string cow = Build(store);
        var intact = File.ReadAllBytes(cow);
        var superblock = File.ReadAllBytes(Path.Combine(store, SnapshotStore.SuperblockFileName));
        Damage(cow, damage);

        var status = ToolRunner.SnapCtl("status", store);
        Ok(status);
        Assert.Contains("bad: 0 2048 snapshot Unavailable (" + reason, status.Stdout);
        Assert.Contains("nothing was committed", status.Stdout);
        Assert.Contains("good: 0 2048 snapshot ", status.Stdout);
        Assert.DoesNotContain("good: 0 2048 snapshot Unavailable", status.Stdout);
        var json = ToolRunner.SnapCtl("status", store, "--json");
        Assert.Contains(reason, json.Stdout);
        Assert.Contains("\"unavailable\": true", json.Stdout);

        // The origin and the other snapshot read as before; the damaged snapshot is refused with its reason.
        Assert.All(ToolRunner.SnapCtl("read", store, "--offset", "0", "--length", "64K").Raw, b => Assert.Equal(0x22, b));
        Assert.All(ToolRunner.SnapCtl("read", store, "--snapshot", "good", "--offset", "0", "--length", "128K").Raw, b => Assert.Equal(0x11, b));
        var read = ToolRunner.SnapCtl("read", store, "--snapshot", "bad", "--offset", "0", "--length", "4K");
        Assert.Equal(2, read.ExitCode);
        Assert.Contains("is unavailable: " + reason, read.Stderr);

        // Origin writes and merges are refused, naming the file, with nothing changed.
        var write = ToolRunner.SnapCtl("write", store, "--offset", "64K", "--pattern", "0x33", "--length", "64K");
        Assert.Equal(2, write.ExitCode);
        var refused = Assert.Single(write.ErrorLines);
        Assert.Contains($"{cow}: snapshot 'bad' is unavailable ({reason}", refused);
        Assert.Contains("writing the origin is refused", refused);
        var merge = ToolRunner.SnapCtl("snapshot", "merge", store, "good");
        Assert.Equal(2, merge.ExitCode);
        Assert.Contains("a merge into the origin is refused", merge.Stderr);
        Assert.All(ToolRunner.SnapCtl("read", store, "--offset", "64K", "--length", "64K").Raw, b => Assert.Equal(0x11, b));
        // The superblock still lists the snapshot as valid: three opens committed nothing.
        Assert.Equal(superblock, File.ReadAllBytes(Path.Combine(store, SnapshotStore.SuperblockFileName)));

        // The file restored, the snapshot is back whole, and the origin writes again.
        if (File.Exists(cow)) File.Delete(cow);
        if (Directory.Exists(cow)) Directory.Delete(cow);
        File.WriteAllBytes(cow, intact);
        var back = ToolRunner.SnapCtl("status", store);
        Ok(back);
        Assert.DoesNotContain("Unavailable", back.Stdout);
        Assert.DoesNotContain("Invalid", back.Stdout);
        Assert.All(ToolRunner.SnapCtl("read", store, "--snapshot", "bad", "--offset", "0", "--length", "1M").Raw, b => Assert.Equal(0x11, b));
        Ok(ToolRunner.SnapCtl("write", store, "--offset", "64K", "--pattern", "0x33", "--length", "64K"));
        Assert.All(ToolRunner.SnapCtl("read", store, "--snapshot", "bad", "--offset", "0", "--length", "1M").Raw, b => Assert.Equal(0x11, b));
    }

    [Theory]
    [MemberData(nameof(Damages))]
    public void Deleting_the_unavailable_snapshot_gives_the_origin_back_its_writes(string damage, string reason)
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        string cow = Build(store);
        Damage(cow, damage);
        Assert.Contains(reason, ToolRunner.SnapCtl("status", store).Stdout);

        Ok(ToolRunner.SnapCtl("snapshot", "delete", store, "bad"));
        Assert.False(File.Exists(cow));
        Assert.DoesNotContain("bad", ToolRunner.SnapCtl("status", store).Stdout);
        Ok(ToolRunner.SnapCtl("write", store, "--offset", "64K", "--pattern", "0x33", "--length", "64K"));
        Assert.All(ToolRunner.SnapCtl("read", store, "--offset", "64K", "--length", "64K").Raw, b => Assert.Equal(0x33, b));
        Assert.All(ToolRunner.SnapCtl("read", store, "--snapshot", "good", "--offset", "0", "--length", "128K").Raw, b => Assert.Equal(0x11, b));
    }

    [Fact]
    public async Task With_InvalidateSnapshot_the_open_drops_the_snapshot_for_good_and_the_origin_writes()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        string cow = Build(store);
        string moved = dir["bad.cow.moved"];
        File.Move(cow, moved);

        await using (var s = await SnapshotStore.OpenAsync(store, new StoreOptions { CowUnreadablePolicy = CowUnreadablePolicy.InvalidateSnapshot }))
        {
            Assert.False(s.OriginRefusesWrites);
            var bad = s.GetStatus().Snapshots.Single(x => x.Name == "bad");
            Assert.False(bad.IsValid);
            Assert.False(bad.Unavailable);
            Assert.Equal("COW file is missing", bad.InvalidReason);
            await s.Origin.WriteAsync(128, new byte[64 << 10]);
        }
        // Committed: the file put back is not read again.
        File.Move(moved, cow);
        await using (var s = await SnapshotStore.OpenAsync(store))
        {
            var bad = s.GetStatus().Snapshots.Single(x => x.Name == "bad");
            Assert.Equal("Invalid", bad.Status);
            Assert.False(s.OriginRefusesWrites);
        }
    }

    [Fact]
    public async Task The_library_refuses_origin_writes_with_SnapshotUnavailableException_and_keeps_other_snapshot_changes()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        string cow = Build(store);
        File.Move(cow, dir["aside"]);

        await using var s = await SnapshotStore.OpenAsync(store);
        Assert.True(s.OriginRefusesWrites);
        var e = await Assert.ThrowsAsync<SnapshotUnavailableException>(async () => await s.Origin.WriteAsync(0, new byte[4096]));
        Assert.Equal("bad", e.Snapshot);
        Assert.Equal(cow, e.CowFile);
        await Assert.ThrowsAsync<SnapshotUnavailableException>(async () => await s.MergeSnapshotAsync("good"));
        await Assert.ThrowsAsync<SnapshotUnavailableException>(async () => await s.MergeSnapshotAsync("bad"));
        // A new snapshot can be taken and written; the unavailable one's record is carried through its commit unchanged.
        var fresh = await s.CreateSnapshotAsync("fresh");
        await fresh.WriteAsync(0, Enumerable.Repeat((byte)0x44, 4096).ToArray());
        await s.DeleteSnapshotAsync("bad");
        Assert.False(s.OriginRefusesWrites);
        await s.Origin.WriteAsync(0, new byte[4096]);
    }

    [Fact]
    public void An_older_copy_of_a_cow_file_put_back_is_told_apart_and_the_snapshot_kept_unavailable()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        string cow = Build(store);
        var backup = File.ReadAllBytes(cow);                       // a copy of the closed store's file
        Ok(ToolRunner.SnapCtl("write", store, "--offset", "512K", "--pattern", "0x33", "--length", "256K")); // copies into bad.cow
        var current = File.ReadAllBytes(cow);
        Ok(ToolRunner.SnapCtl("status", store));                    // a session that changes no COW file leaves every copy current
        Assert.Equal(current, File.ReadAllBytes(cow));

        // The backup put back lacks the copies of [512K, 768K): read through it, the snapshot would show the origin's 0x33.
        File.WriteAllBytes(cow, backup);
        var status = ToolRunner.SnapCtl("status", store);
        Ok(status);
        Assert.Contains("bad: 0 2048 snapshot Unavailable (COW file is damaged: offset 112: it is an older copy of the file", status.Stdout);
        var write = ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "0x44", "--length", "4K");
        Assert.Equal(2, write.ExitCode);
        Assert.Equal(backup, File.ReadAllBytes(cow));

        // The current file put back, everything is there.
        File.WriteAllBytes(cow, current);
        Assert.All(ToolRunner.SnapCtl("read", store, "--snapshot", "bad", "--offset", "0", "--length", "1M").Raw, b => Assert.Equal(0x11, b));
        Ok(ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "0x44", "--length", "4K"));
    }

    [Fact]
    public void A_copy_of_a_file_that_did_not_change_stays_current_while_other_files_change()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        string cow = Build(store);
        var backup = File.ReadAllBytes(cow);
        // Sessions that change other COW files only: a write into snapshot "good", a new snapshot.
        Ok(ToolRunner.SnapCtl("write", store, "--snapshot", "good", "--offset", "0", "--pattern", "0x55", "--length", "64K"));
        Ok(ToolRunner.SnapCtl("snapshot", "create", store, "later"));
        Assert.Equal(backup, File.ReadAllBytes(cow));

        File.WriteAllBytes(cow, backup);
        var status = ToolRunner.SnapCtl("status", store);
        Ok(status);
        Assert.DoesNotContain("Unavailable", status.Stdout);
        Assert.All(ToolRunner.SnapCtl("read", store, "--snapshot", "bad", "--offset", "0", "--length", "1M").Raw, b => Assert.Equal(0x11, b));
    }

    [Fact]
    public void Files_that_change_while_a_snapshot_is_unavailable_are_stamped_and_the_unavailable_file_keeps_its_stamp()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        string bad = Build(store);
        string good = Path.Combine(store, "good.cow");
        var goodBackup = File.ReadAllBytes(good);
        File.Move(bad, dir["bad.aside"]);
        // While "bad" is unavailable, "good" is written to: its copy taken before is now an older copy.
        Ok(ToolRunner.SnapCtl("write", store, "--snapshot", "good", "--offset", "0", "--pattern", "0x77", "--length", "4K"));

        File.Move(dir["bad.aside"], bad);
        File.WriteAllBytes(good, goodBackup);
        var status = ToolRunner.SnapCtl("status", store);
        Ok(status);
        Assert.Contains("good: 0 2048 snapshot Unavailable (COW file is damaged: offset 112: it is an older copy of the file", status.Stdout);
        Assert.DoesNotContain("bad: 0 2048 snapshot Unavailable", status.Stdout);
        Assert.All(ToolRunner.SnapCtl("read", store, "--snapshot", "bad", "--offset", "0", "--length", "1M").Raw, b => Assert.Equal(0x11, b));
    }

    /// <summary>A store with snapshots "bad" and "good" of an origin of 0x11, the origin's first 64 KiB then 0x22; returns bad's COW file.</summary>
    private static string Build(string store)
    {
        Ok(ToolRunner.SnapCtl("init", store, "--origin-size", "1M"));
        Ok(ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "0x11", "--length", "1M"));
        Ok(ToolRunner.SnapCtl("snapshot", "create", store, "bad"));
        Ok(ToolRunner.SnapCtl("snapshot", "create", store, "good"));
        Ok(ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "0x22", "--length", "64K"));
        return Path.Combine(store, "bad.cow");
    }

    private static void Damage(string cow, string damage)
    {
        switch (damage)
        {
            case "deleted": File.Delete(cow); break;
            case "directory": File.Delete(cow); Directory.CreateDirectory(cow); break;
            case "truncated": using (var f = File.OpenWrite(cow)) f.SetLength(0); break;
            case "header": Patch(cow, 72, 0xff); break;               // the snapshot id, under the header checksum
            default: Patch(cow, 4096 + 15, 0x7f); break;             // area 0, entry 0: new_chunk far past the end of the file
        }
    }

    private static void Patch(string file, long offset, byte value)
    {
        using var f = new FileStream(file, FileMode.Open, FileAccess.ReadWrite);
        f.Position = offset;
        f.WriteByte(value);
    }

    private static void Ok(ToolResult r) => Assert.True(r.ExitCode == 0, r.ToString());
}
