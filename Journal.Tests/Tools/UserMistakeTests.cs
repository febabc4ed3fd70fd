namespace Journal.Tests.Tools;

/// <summary>
/// Mistakes a user makes at the command line that must cost nothing: an init into a folder with files in it, a read
/// whose output is the store's own file, a write whose range overflows, an init larger than the disk, an init that is
/// killed half way.
/// </summary>
public class UserMistakeTests
{
    private static void Ok(ToolResult r) => Assert.True(r.ExitCode == 0, r.ToString());

    [Fact]
    public void Init_refuses_a_folder_that_holds_files_and_leaves_them()
    {
        using var dir = new TempFolder();
        var folder = dir["mine"];
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "disk.cow"), "user data");
        var r = ToolRunner.SnapCtl("init", folder, "--origin-size", "1M");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("not empty", Assert.Single(r.ErrorLines));
        Assert.Equal(["disk.cow"], Directory.GetFiles(folder).Select(Path.GetFileName));
        Assert.Equal("user data", File.ReadAllText(Path.Combine(folder, "disk.cow")));
        // An empty folder is fine.
        var empty = dir["empty"];
        Directory.CreateDirectory(empty);
        Ok(ToolRunner.SnapCtl("init", empty, "--origin-size", "1M"));
    }

    [Fact]
    public void A_store_whose_files_have_a_second_name_is_not_opened_until_they_have_one()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        Ok(ToolRunner.SnapCtl("init", store, "--origin-size", "1M"));
        Ok(ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "7", "--length", "64K"));
        Ok(ToolRunner.SnapCtl("snapshot", "create", store, "s"));
        // `cp -al store linked`: the same files under a second folder, which the first folder's lock does not guard.
        var linked = dir["linked"];
        Directory.CreateDirectory(linked);
        foreach (var f in Directory.GetFiles(store))
        {
            var p = System.Diagnostics.Process.Start("ln", [f, Path.Combine(linked, Path.GetFileName(f))])!;
            p.WaitForExit(30_000);
            Assert.Equal(0, p.ExitCode);
        }
        var before = Directory.GetFiles(store).ToDictionary(f => f, File.ReadAllBytes);
        foreach (var folder in new[] { linked, store })
        {
            var r = ToolRunner.SnapCtl("write", folder, "--offset", "0", "--pattern", "9", "--length", "4K");
            Assert.Equal(2, r.ExitCode);
            Assert.Contains("names (hard links)", Assert.Single(r.ErrorLines));
            // Looking is allowed: status opens read-only, and a reader cannot harm files another folder writes.
            var status = ToolRunner.SnapCtl("status", folder);
            Assert.True(status.ExitCode == 0 && status.ErrorLines.Length == 0, status.ToString());
        }
        foreach (var (file, bytes) in before) Assert.Equal(bytes, File.ReadAllBytes(file));
        Directory.Delete(linked, recursive: true);
        Ok(ToolRunner.SnapCtl("status", store));
        Assert.All(ToolRunner.SnapCtl("read", store, "--snapshot", "s", "--offset", "0", "--length", "4K").Raw, b => Assert.Equal(7, b));
    }

    [Fact]
    public void An_init_that_cannot_put_the_store_in_place_leaves_nothing_behind()
    {
        using var dir = new TempFolder();
        var store = dir["st3"];
        Directory.CreateDirectory(store);
        FileFlags.Chattr("+i", store); // an empty folder that cannot be replaced
        try
        {
            var r = ToolRunner.SnapCtl("init", store, "--origin-size", "1M");
            Assert.Equal(2, r.ExitCode);
            Assert.Contains("cannot put the new store in place", Assert.Single(r.ErrorLines));
        }
        finally
        {
            FileFlags.Chattr("-i", store);
        }
        Assert.Equal([store], Directory.GetDirectories(dir.Path));
        Ok(ToolRunner.SnapCtl("init", store, "--origin-size", "1M"));
        Assert.Equal([store], Directory.GetDirectories(dir.Path));
        Assert.DoesNotContain(Directory.GetFiles(store), f => Path.GetFileName(f).StartsWith(".snapshot-store", StringComparison.Ordinal));
    }


    [Fact]
    public void Init_leaves_a_users_folder_named_like_a_leftover_of_an_interrupted_init()
    {
        using var dir = new TempFolder();
        var store = dir["st2"];
        // A folder of the user's, under the name an interrupted init's staging folder has, holding a file with a store
        // file's name: nothing marks it as made by a create.
        string mine = dir[".st2.creating-deadbeef"];
        Directory.CreateDirectory(mine);
        File.WriteAllText(Path.Combine(mine, "origin.img"), "user data");
        Ok(ToolRunner.SnapCtl("init", store, "--origin-size", "1M"));
        Assert.Equal("user data", File.ReadAllText(Path.Combine(mine, "origin.img")));
        Ok(ToolRunner.SnapCtl("status", store));
        Assert.DoesNotContain(Directory.GetFiles(store), f => Path.GetFileName(f).StartsWith(".snapshot-store", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("origin.img")]
    [InlineData("journal.log")]
    [InlineData("store.sb")]
    [InlineData("s.cow")]
    [InlineData("new-file-in-the-store")]
    [InlineData("link-to-origin")]
    public void Read_refuses_to_write_its_output_over_the_stores_own_files(string target)
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        Ok(ToolRunner.SnapCtl("init", store, "--origin-size", "1M"));
        Ok(ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "7", "--length", "1M"));
        Ok(ToolRunner.SnapCtl("snapshot", "create", store, "s"));
        Ok(ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "9", "--length", "1M"));
        string output = Path.Combine(store, target);
        if (target == "link-to-origin")
        {
            output = dir["link-to-origin"];
            File.CreateSymbolicLink(output, Path.Combine(store, "origin.img"));
        }
        var sizes = Directory.GetFiles(store).ToDictionary(f => f, f => new FileInfo(f).Length);
        // The snapshot reads as 7s: none of the store's files may start with them after the refused read.
        var r = ToolRunner.SnapCtl("read", store, "--offset", "0", "--length", "64K", "--snapshot", "s", "--output", output);
        Assert.Equal(64, r.ExitCode);
        Assert.Contains("store's own files", Assert.Single(r.ErrorLines));
        Assert.Equal(sizes.Keys.Order(), Directory.GetFiles(store).Order());
        foreach (var (f, size) in sizes)
        {
            Assert.Equal(size, new FileInfo(f).Length);
            var head = File.ReadAllBytes(f).AsSpan(0, (int)Math.Min(size, 4096));
            Assert.True(size == 0 || head.IndexOfAnyExcept((byte)7) >= 0, $"{f} was overwritten with the snapshot's data");
        }
        Assert.All(ToolRunner.SnapCtl("read", store, "--offset", "0", "--length", "1M").Raw, b => Assert.Equal(9, b));
        Assert.All(ToolRunner.SnapCtl("read", store, "--snapshot", "s", "--offset", "0", "--length", "1M").Raw, b => Assert.Equal(7, b));
        Ok(ToolRunner.JReplay("check", store));
    }

    [Fact]
    public void A_write_whose_range_overflows_writes_nothing()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        Ok(ToolRunner.SnapCtl("init", store, "--origin-size", "16M"));
        var r = ToolRunner.SnapCtl("write", store, "--offset", "1M", "--pattern", "0x55", "--length", "9223372036854775296");
        Assert.Equal(64, r.ExitCode);
        Assert.Contains("past the end", Assert.Single(r.ErrorLines));
        Assert.All(File.ReadAllBytes(Path.Combine(store, "origin.img")), b => Assert.Equal(0, b));
    }

    [Fact]
    public void Init_larger_than_the_disk_is_refused_at_once_and_writes_nothing()
    {
        using var dir = new TempFolder();
        var r = ToolRunner.SnapCtl("init", dir["huge"], "--origin-size", "7T");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("not enough space", Assert.Single(r.ErrorLines));
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));
    }

    [Fact]
    public async Task A_killed_init_leaves_no_half_made_store_and_the_next_init_works()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        using (var init = ToolProcess.Start("snapctl", ["init", store, "--origin-size", "2G"]))
        {
            // Kill it while it zero-fills the origin in its staging folder.
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (!Directory.EnumerateFiles(dir.Path, "origin.img", SearchOption.AllDirectories).Any(f => new FileInfo(f).Length > 0))
            {
                Assert.True(DateTime.UtcNow < deadline, "init never started writing the origin");
                Assert.False(init.HasExited, $"init finished before it could be killed:\n{init.Stdout}{init.Stderr}");
                await Task.Delay(5);
            }
            init.Kill();
            await init.WaitForExitAsync(TimeSpan.FromSeconds(30));
        }
        Assert.False(Directory.Exists(store), "the killed init left a folder at the store's path");
        var status = ToolRunner.SnapCtl("status", store);
        Assert.Equal(66, status.ExitCode);

        Ok(ToolRunner.SnapCtl("init", store, "--origin-size", "1M"));
        Ok(ToolRunner.SnapCtl("status", store));
        // The killed init's staging folder was cleaned up by the next init.
        Assert.Equal([store], Directory.GetDirectories(dir.Path));
    }
}

/// <summary>A change that ends in removing a file is refused up front when the folder does not allow it.</summary>
public class UnwritableFolderTests
{
    private static void Ok(ToolResult r) => Assert.True(r.ExitCode == 0, r.ToString());


    [Theory]
    [InlineData("delete", "+i", false)]
    [InlineData("merge", "+i", false)]
    [InlineData("delete", "+a", false)]
    [InlineData("merge", "+a", false)]
    [InlineData("delete", "+i", true)]
    [InlineData("delete", "+a", true)]
    public void Delete_and_merge_in_a_folder_that_refuses_removal_change_nothing(string command, string flag, bool onFile)
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        Ok(ToolRunner.SnapCtl("init", store, "--origin-size", "1M"));
        Ok(ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "1", "--length", "1M"));
        Ok(ToolRunner.SnapCtl("snapshot", "create", store, "s"));
        Ok(ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "2", "--length", "64K"));
        // An immutable folder: no entry of it can be created or removed, not even by root (as a folder without write
        // permission is for everyone else); an append-only one: entries can be made, not removed. An immutable or
        // append-only file cannot be removed from any folder.
        string target = onFile ? Path.Combine(store, "s.cow") : store;
        FileFlags.Chattr(flag, target);
        try
        {
            var r = ToolRunner.SnapCtl("snapshot", command, store, "s");
            // A file that may not be opened for writing stops the open itself (exit 66), before any change.
            Assert.Equal(onFile ? 66 : 2, r.ExitCode);
            var line = Assert.Single(r.ErrorLines);
            Assert.Contains("s.cow", line);
            Assert.Contains("nothing was changed", line);
        }
        finally
        {
            FileFlags.Chattr(flag.Replace('+', '-'), target);
        }
        var status = ToolRunner.SnapCtl("status", store);
        Ok(status);
        Assert.Contains("s: 0 2048 snapshot ", status.Stdout);
        Assert.DoesNotContain("Invalid", status.Stdout);
        Assert.DoesNotContain("erg", status.Stdout); // neither merging nor a failed merge
        Assert.All(ToolRunner.SnapCtl("read", store, "--offset", "0", "--length", "64K").Raw, b => Assert.Equal(2, b));
        Assert.All(ToolRunner.SnapCtl("read", store, "--snapshot", "s", "--offset", "0", "--length", "64K").Raw, b => Assert.Equal(1, b));
        Ok(ToolRunner.SnapCtl("snapshot", command, store, "s"));
        Assert.False(File.Exists(Path.Combine(store, "s.cow")));
    }
}

/// <summary>A delete removes the snapshot's COW file only when it is a regular file: never what a user put in its place.</summary>
public class SpecialCowFileTests
{
    [Theory]
    [InlineData("fifo")]
    [InlineData("symlink")]
    public void Delete_leaves_a_FIFO_or_a_symbolic_link_found_in_place_of_the_COW_file(string kind)
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        Assert.Equal(0, ToolRunner.SnapCtl("init", store, "--origin-size", "1M").ExitCode);
        Assert.Equal(0, ToolRunner.SnapCtl("snapshot", "create", store, "s").ExitCode);
        string cow = Path.Combine(store, "s.cow");
        File.Delete(cow);
        string victim = dir["victim.bin"];
        File.WriteAllText(victim, "user data");
        if (kind == "fifo")
        {
            var p = System.Diagnostics.Process.Start("mkfifo", [cow])!;
            p.WaitForExit(30_000);
            Assert.Equal(0, p.ExitCode);
        }
        else File.CreateSymbolicLink(cow, victim);

        var r = ToolRunner.SnapCtl("snapshot", "delete", store, "s");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.True(new FileInfo(cow).Exists || new FileInfo(cow).LinkTarget is not null, $"the {kind} was removed");
        Assert.Equal(kind == "fifo" ? null : victim, new FileInfo(cow).LinkTarget);
        Assert.Equal("user data", File.ReadAllText(victim));
        Assert.DoesNotContain("s:", ToolRunner.SnapCtl("status", store).Stdout);
    }

    [Fact]
    public void A_leftover_COW_file_that_cannot_be_removed_does_not_stop_the_open()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        Assert.Equal(0, ToolRunner.SnapCtl("init", store, "--origin-size", "1M").ExitCode);
        Assert.Equal(0, ToolRunner.SnapCtl("snapshot", "create", store, "s").ExitCode);
        string cow = Path.Combine(store, "s.cow");
        string aside = dir["s.cow.aside"];
        File.Copy(cow, aside);
        Assert.Equal(0, ToolRunner.SnapCtl("snapshot", "delete", store, "s").ExitCode);
        // What a delete interrupted after its commit leaves: the store's own file, no longer listed.
        File.Copy(aside, cow);
        FileFlags.Chattr("+a", store); // an append-only folder: the file can be read and written, not removed
        try
        {
            var r = ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "1", "--length", "4K");
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.True(File.Exists(cow));
        }
        finally
        {
            FileFlags.Chattr("-a", store);
        }
        Assert.Equal(0, ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "1", "--length", "4K").ExitCode);
        Assert.False(File.Exists(cow), "the next open did not remove the leftover");
    }


    [Fact]
    public void The_open_leaves_an_unlisted_symbolic_link_to_zeros_and_a_zero_file_it_cannot_remove()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        Assert.Equal(0, ToolRunner.SnapCtl("init", store, "--origin-size", "1M").ExitCode);
        string zeros = dir["zeros.bin"];
        File.WriteAllBytes(zeros, new byte[1 << 20]);
        string link = Path.Combine(store, "backup.cow");
        File.CreateSymbolicLink(link, zeros);
        string leftover = Path.Combine(store, "x.cow");
        File.WriteAllBytes(leftover, new byte[65536]); // what a create stopped before its header leaves, with its mark
        string mark = CraftedStoreTests.CreationMark(store, "x.cow");
        File.WriteAllBytes(mark, []);
        FileFlags.Chattr("+a", store);
        try
        {
            var r = ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "1", "--length", "4K");
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.True(File.Exists(leftover));
        }
        finally
        {
            FileFlags.Chattr("-a", store);
        }
        Assert.Equal(0, ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "1", "--length", "4K").ExitCode);
        Assert.False(File.Exists(leftover), "the next open did not remove the leftover");
        Assert.False(File.Exists(mark), "the next open did not remove the creation mark");
        Assert.Equal(zeros, new FileInfo(link).LinkTarget);
        Assert.Equal(1 << 20, new FileInfo(zeros).Length);
    }

    [Fact]
    public void Delete_of_an_invalid_snapshot_refuses_an_immutable_COW_file_up_front()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        Assert.Equal(0, ToolRunner.SnapCtl("init", store, "--origin-size", "1M").ExitCode);
        Assert.Equal(0, ToolRunner.SnapCtl("snapshot", "create", store, "s", "--cow-size", "64K").ExitCode);
        // More first writes than the COW file holds: the snapshot is invalidated (COW full); its file is not opened again.
        Assert.Equal(0, ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "3", "--length", "1M").ExitCode);
        Assert.Contains("Invalid", ToolRunner.SnapCtl("status", store).Stdout);
        string cow = Path.Combine(store, "s.cow");
        FileFlags.Chattr("+i", cow);
        try
        {
            var r = ToolRunner.SnapCtl("snapshot", "delete", store, "s");
            Assert.Equal(2, r.ExitCode);
            Assert.Contains("the file is immutable (chattr +i); nothing was changed", Assert.Single(r.ErrorLines));
        }
        finally
        {
            FileFlags.Chattr("-i", cow);
        }
        Assert.Contains("s: ", ToolRunner.SnapCtl("status", store).Stdout);
        Assert.Equal(0, ToolRunner.SnapCtl("snapshot", "delete", store, "s").ExitCode);
        Assert.False(File.Exists(cow));
    }
}
