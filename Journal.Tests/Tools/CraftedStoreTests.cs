using Journal.Storage;
using Snapshot.Format;

namespace Journal.Tests.Tools;

/// <summary>
/// What a user or an attacker can put on disk: a superblock rewritten with a good checksum but names or sizes a create
/// would refuse, and files in the store folder the store did not make. The store refuses the first (exit 2, naming
/// store.sb) and never removes the second.
/// </summary>
public class CraftedStoreTests
{
    private static string Init(TempFolder dir)
    {
        var store = dir["store"];
        var r = ToolRunner.SnapCtl("init", store, "--origin-size", "1M");
        Assert.True(r.ExitCode == 0, r.ToString());
        return store;
    }

    /// <summary>Rewrites the newest superblock copy of <paramref name="store"/> through <paramref name="change"/>, with a good checksum.</summary>
    internal static void Craft(string store, Func<Superblock, Superblock> change, ulong? generation = null)
    {
        string path = Path.Combine(store, "store.sb");
        var bytes = File.ReadAllBytes(path);
        var a = Superblock.TryParse(bytes.AsSpan(0, Superblock.CopyBytes), path, out _);
        var b = Superblock.TryParse(bytes.AsSpan(Superblock.CopyBytes, Superblock.CopyBytes), path, out _);
        var newest = b is null || (a is not null && a.Generation >= b.Generation) ? a! : b;
        var crafted = change(newest) with { Generation = generation ?? newest.Generation + 1 };
        crafted.ToBytes().CopyTo(bytes, (int)(crafted.Generation % 2) * Superblock.CopyBytes);
        File.WriteAllBytes(path, bytes);
    }

    [Theory]
    [InlineData("../../victim")]
    [InlineData("/elsewhere/victim")]
    [InlineData("..")]
    [InlineData("a\nb")]
    [InlineData("origin")]
    public void A_crafted_name_is_refused_naming_store_sb_and_no_file_outside_is_touched(string name)
    {
        using var dir = new TempFolder();
        var store = Init(dir);
        Assert.Equal(0, ToolRunner.SnapCtl("snapshot", "create", store, "s", "--transient").ExitCode);
        // Files a path-like name could reach: next to the store and two levels up.
        var victims = new[] { dir["victim.cow"], Path.Combine(store, "victim.cow") };
        foreach (var v in victims) File.WriteAllText(v, "user data");
        Craft(store, sb => sb with { Snapshots = [sb.Snapshots[0] with { Name = name }] });

        var r = ToolRunner.SnapCtl("status", store);
        Assert.Equal(2, r.ExitCode);
        Assert.Single(r.ErrorLines);
        Assert.Contains(Path.Combine(store, "store.sb"), r.Stderr);
        Assert.Contains("snapshot record 0", r.Stderr);
        foreach (var v in victims) Assert.Equal("user data", File.ReadAllText(v));
    }

    [Theory]
    [InlineData("cow size")]
    [InlineData("duplicate name")]
    [InlineData("id")]
    [InlineData("chunk size")]
    public void Crafted_sizes_and_ids_are_refused_as_corruption(string what)
    {
        using var dir = new TempFolder();
        var store = Init(dir);
        Assert.Equal(0, ToolRunner.SnapCtl("snapshot", "create", store, "a").ExitCode);
        Assert.Equal(0, ToolRunner.SnapCtl("snapshot", "create", store, "b").ExitCode);
        Craft(store, sb => what switch
        {
            "cow size" => sb with { Snapshots = [sb.Snapshots[0] with { CowSectors = 3 }, sb.Snapshots[1]] },
            "duplicate name" => sb with { Snapshots = [sb.Snapshots[0], sb.Snapshots[1] with { Name = "a" }] },
            "id" => sb with { Snapshots = [sb.Snapshots[0] with { Id = sb.NextSnapshotId + 5 }, sb.Snapshots[1]] },
            _ => sb with { ChunkSectors = 3 },
        });
        var r = ToolRunner.SnapCtl("status", store);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("store.sb", r.Stderr);
        Assert.Contains("not valid", r.Stderr);
        Assert.True(File.Exists(Path.Combine(store, "a.cow")));
        Assert.True(File.Exists(Path.Combine(store, "b.cow")));
    }

    [Theory]
    [InlineData("generation")]
    [InlineData("next id")]
    [InlineData("home LSN")]
    public void A_crafted_counter_that_would_wrap_or_skip_the_journal_is_refused_before_anything_changes(string what)
    {
        using var dir = new TempFolder();
        var store = Init(dir);
        Assert.Equal(0, ToolRunner.SnapCtl("snapshot", "create", store, "a").ExitCode);
        Craft(store, sb => what switch
        {
            // Past 2^24 a snapshot's log items would carry the ids of another's.
            "next id" => sb with { NextSnapshotId = (1UL << 24) + 2 },
            // A home LSN the journal never reached would make a replay skip the logged copies after it.
            "home LSN" => sb with { HomeLsn = new Journal.Format.Lsn(1_000_000, 0).Value },
            _ => sb,
        },
        // Near 2^64 the next change's generation would wrap below the other copy's, and the older copy would win.
        generation: what == "generation" ? ulong.MaxValue - 3 : null);
        var before = CrashedStore.Files(store);
        foreach (var command in new[] { new[] { "status", store }, new[] { "write", store, "--offset", "0", "--pattern", "1", "--length", "4K" } })
        {
            var r = ToolRunner.SnapCtl(command);
            Assert.Equal(2, r.ExitCode);
            Assert.Contains("store.sb", r.Stderr);
            Assert.Contains(what == "home LSN" ? "home LSN" : what == "next id" ? "next snapshot id" : "generation", r.Stderr);
            Assert.DoesNotContain("   at ", r.Stderr);
        }
        CrashedStore.AssertSameFiles(before, CrashedStore.Files(store));
    }

    [Fact]
    public void A_COW_home_LSN_slot_past_the_journal_is_refused_before_anything_changes()
    {
        using var dir = new TempFolder();
        var store = Init(dir);
        Assert.Equal(0, ToolRunner.SnapCtl("snapshot", "create", store, "a").ExitCode);
        Assert.Equal(0, ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "1", "--length", "64K").ExitCode);
        string cow = Path.Combine(store, "a.cow");
        var bytes = File.ReadAllBytes(cow);
        Assert.NotEqual(0UL, BitConverter.ToUInt64(bytes, CowHeader.SlotsOffset)); // the close stamped slot 0
        BitConverter.GetBytes(new Journal.Format.Lsn(1_000_000, 0).Value).CopyTo(bytes, CowHeader.SlotsOffset + 8);
        File.WriteAllBytes(cow, bytes);
        var before = CrashedStore.Files(store);
        var r = ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "2", "--length", "4K");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("a.cow", r.Stderr);
        Assert.Contains("home-LSN slot", r.Stderr);
        CrashedStore.AssertSameFiles(before, CrashedStore.Files(store));
    }

    [Fact]
    public void A_store_that_has_given_out_every_snapshot_id_refuses_a_create_and_keeps_working()
    {
        using var dir = new TempFolder();
        var store = Init(dir);
        Craft(store, sb => sb with { NextSnapshotId = (1UL << 24) - 1 }); // the largest id
        Assert.Equal(0, ToolRunner.SnapCtl("snapshot", "create", store, "last").ExitCode);
        var r = ToolRunner.SnapCtl("snapshot", "create", store, "more");
        Assert.Equal(64, r.ExitCode);
        Assert.Contains("every snapshot id", r.Stderr);
        Assert.False(File.Exists(Path.Combine(store, "more.cow")));
        Assert.Equal(0, ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "1", "--length", "4K").ExitCode);
        Assert.Contains("last", ToolRunner.SnapCtl("status", store).Stdout);
    }

    [Fact]
    public void Cow_files_the_store_did_not_make_are_never_removed()
    {
        using var dir = new TempFolder();
        var store = Init(dir);
        var other = Init(new TempFolder());
        Assert.Equal(0, ToolRunner.SnapCtl("snapshot", "create", other, "theirs").ExitCode);
        // A user's file with a .cow name, a COW file copied from another store, and one from this store for a snapshot
        // it no longer lists (a create interrupted by a crash): only the last is the store's to remove.
        File.WriteAllText(Path.Combine(store, "notes.cow"), "not a COW file");
        File.Copy(Path.Combine(other, "theirs.cow"), Path.Combine(store, "theirs.cow"));
        Assert.Equal(0, ToolRunner.SnapCtl("snapshot", "create", store, "mine").ExitCode);
        File.Copy(Path.Combine(store, "mine.cow"), Path.Combine(store, "stray.cow"));
        // A create stopped before it wrote the header leaves a file of zeros beside its creation mark: it holds
        // nothing, and it goes too (the mark with it).
        File.WriteAllBytes(Path.Combine(store, "killed.cow"), new byte[1 << 20]);
        File.WriteAllBytes(CreationMark(store, "killed.cow"), []);
        File.WriteAllBytes(Path.Combine(store, "empty.cow"), []);
        File.WriteAllBytes(CreationMark(store, "empty.cow"), []);
        // A user's file of zeros has no mark (a mark of another store's id is not this store's either): it stays.
        File.WriteAllBytes(Path.Combine(store, "zeros.cow"), new byte[1 << 20]);
        string othersMark = Path.Combine(store, $".zeros.cow.creating-{StoreIdOf(store) ^ 1:x16}");
        File.WriteAllBytes(othersMark, []);
        // A file that starts with zeros (as a disk image does) is not one, even beside a mark.
        var image = new byte[1 << 20];
        image[1024] = 0x53;
        File.WriteAllBytes(Path.Combine(store, "image.cow"), image);
        File.WriteAllBytes(CreationMark(store, "image.cow"), []);
        Craft(store, sb => sb with { Snapshots = [] }); // as if the create of 'mine' never became durable

        var r = ToolRunner.SnapCtl("status", store); // looks only: opened read-only, it removes nothing
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.True(File.Exists(Path.Combine(store, "stray.cow")));
        r = ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "1", "--length", "4K");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal("not a COW file", File.ReadAllText(Path.Combine(store, "notes.cow")));
        Assert.True(File.Exists(Path.Combine(store, "theirs.cow")));
        Assert.False(File.Exists(Path.Combine(store, "mine.cow")));
        Assert.False(File.Exists(Path.Combine(store, "stray.cow")));
        Assert.False(File.Exists(Path.Combine(store, "killed.cow")));
        Assert.False(File.Exists(Path.Combine(store, "empty.cow")));
        Assert.Equal(new byte[1 << 20], File.ReadAllBytes(Path.Combine(store, "zeros.cow")));
        Assert.True(File.Exists(othersMark));
        Assert.Equal(image, File.ReadAllBytes(Path.Combine(store, "image.cow")));
        Assert.Empty(Directory.GetFiles(store, $"*.creating-{StoreIdOf(store):x16}"));
    }

    /// <summary>The store id in the newest superblock copy of <paramref name="store"/>.</summary>
    internal static ulong StoreIdOf(string store)
    {
        ulong id = 0;
        Craft(store, sb => { id = sb.StoreId; return sb; });
        return id;
    }

    /// <summary>The creation mark a snapshot create of this store makes beside the COW file <paramref name="cowName"/>.</summary>
    internal static string CreationMark(string store, string cowName) =>
        Path.Combine(store, $".{cowName}.creating-{StoreIdOf(store):x16}");

    [Fact]
    public void A_create_leaves_no_creation_mark_whether_it_succeeds_or_fails()
    {
        using var dir = new TempFolder();
        var store = Init(dir);
        Assert.Equal(0, ToolRunner.SnapCtl("snapshot", "create", store, "a").ExitCode);
        // Refused after the mark was made: the COW size is far beyond what the file system has free.
        var r = ToolRunner.SnapCtl("snapshot", "create", store, "b", "--cow-size", "1P");
        Assert.NotEqual(0, r.ExitCode);
        Assert.False(File.Exists(Path.Combine(store, "b.cow")));
        // A user's file where the COW file would go: refused, and the file stays as it was.
        File.WriteAllBytes(Path.Combine(store, "c.cow"), new byte[4096]);
        r = ToolRunner.SnapCtl("snapshot", "create", store, "c");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Equal(new byte[4096], File.ReadAllBytes(Path.Combine(store, "c.cow")));
        Assert.Equal(new[] { "a.cow", "c.cow", "journal.log", "origin.img", "store.sb" },
            Directory.GetFiles(store).Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal).ToArray());
    }

    [Fact]
    public void A_transient_record_never_removes_a_file_without_this_stores_header()
    {
        using var dir = new TempFolder();
        var store = Init(dir);
        Assert.Equal(0, ToolRunner.SnapCtl("snapshot", "create", store, "t", "--transient").ExitCode);
        // The scratch file of 't' was removed at close; a user's file now has its name.
        Assert.False(File.Exists(Path.Combine(store, "t.cow")));
        File.WriteAllText(Path.Combine(store, "t.cow"), "user data");
        var r = ToolRunner.SnapCtl("status", store);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal("user data", File.ReadAllText(Path.Combine(store, "t.cow")));
    }
}
