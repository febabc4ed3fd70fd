using Journal.Format;
using Journal.Recovery;
using Journal.Storage;
using Journal.Testing;
using Snapshot;
using Snapshot.Format;
using Snapshot.Metadata;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

/// <summary>
/// The superblock is a journal log item: snapshot create, delete and invalidation are carried by the journal alone
/// until the superblock is written home, replay applies them (newest copy wins, idempotently), and metadata segments are
/// applied only for snapshots the replayed superblock lists. A damaged copy of <c>store.sb</c> is survived only when the
/// journal brings the other copy up to date.
/// </summary>
public class SuperblockJournalTests
{
    private const string SbPath = Folder + "/" + SnapshotStore.SuperblockFileName;
    private const string LogPath = Folder + "/" + SnapshotStore.JournalFileName;

    /// <summary>Waits until the superblock item records <paramref name="name"/> invalid and that commit is durable.</summary>
    private static async Task WaitForInvalidationCommitAsync(SnapshotStore store, string name)
    {
        var item = store.SuperblockLogItem;
        var deadline = DateTime.UtcNow + Watchdog;
        while (!item.Current.Snapshots.Any(r => r.Name == name && r.State == SnapshotStateCode.Invalid))
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"the invalidation of {name} was never committed");
            await Task.Delay(5);
        }
        await item.Lock.WaitAsync().WaitAsync(Watchdog); // the committer holds it until its commit is in
        item.Lock.Release();
        await store.Journal!.ForceAllAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public void Superblock_home_lsn_round_trips_and_a_logged_copy_parses_like_a_home_copy()
    {
        var rec = new SnapshotRecord(7, 800, SnapshotKindCode.Persistent, SnapshotStateCode.Valid, InvalidReasonCode.None, "a");
        var sb = new Superblock(3, 64, 8, 8, [rec]) { HomeLsn = 0x0000_0002_0000_0010 };
        var back = Superblock.TryParse(sb.ToBytes(), "store.sb", out _)!;
        Assert.Equal(sb.HomeLsn, back.HomeLsn);
        Assert.Contains("home LSN 2:16", back.ToString());
        var logged = new byte[sb.LogBytes];
        sb.ToLogBytes(logged);
        Assert.Equal(Superblock.HeaderBytes + SnapshotRecord.Size, logged.Length);
        var parsed = Superblock.TryParseLogged(logged, "store.sb", out string? problem);
        Assert.Null(problem);
        Assert.Equal("a", parsed!.Snapshots.Single().Name);
        logged[Superblock.HeaderBytes + 40] ^= 1; // a name byte: the checksum no longer matches
        Assert.Null(Superblock.TryParseLogged(logged, "store.sb", out problem));
        Assert.Contains("checksum", problem);
        Assert.Null(Superblock.TryParseLogged(logged.AsSpan(0, 70), "store.sb", out problem));
        Assert.Contains("70 bytes", problem);
    }

    [Fact]
    public async Task Create_delete_and_invalidate_survive_losing_every_superblock_write_and_replay_is_idempotent()
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, 8 * 64, writeThrough: true);
        var sbAtCreate = p.Backing(SbPath).ToArray();
        await WriteAsync(store.Origin, 0, Pattern(0, 8 * 64, 1));
        await store.CreateSnapshotAsync("gone");
        await WriteAsync(store.Origin, 0, Pattern(0, 8, 2));
        var keep = await store.CreateSnapshotAsync("keep");
        var small = await store.CreateSnapshotAsync("small", new SnapshotOptions { CowSectors = 6 * 8 }); // 4 data chunks
        for (int c = 1; c < 10; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 3));
        await WriteAsync(keep, 8 * 20, Pattern(8 * 20, 8, 4));
        await store.DeleteSnapshotAsync("gone");
        await WaitForInvalidationCommitAsync(store, "small");
        // The journal alone carries these changes: the superblock item was never written home.
        Assert.Equal(0, store.SuperblockLogItem.HomeWrites);

        var expectedKeep = Pattern(0, 8 * 64, 1);
        Pattern(0, 8, 2).CopyTo(expectedKeep, 0);
        Pattern(8 * 20, 8, 4).CopyTo(expectedKeep, 8 * 20 * 512);

        // Crash, and store.sb loses every write since the store was created.
        var crashed = p.CopyAll();
        crashed.Replace(SbPath, MemoryBlockDevice.FromImage(sbAtCreate, SbPath));
        var a = await ReopenAsync(crashed);
        Assert.False(a.LogClean);
        var status = a.GetStatus().Snapshots.ToDictionary(s => s.Name);
        Assert.Equal(["keep", "small"], status.Keys.Order());
        Assert.True(status["keep"].IsValid);
        Assert.False(status["small"].IsValid);
        Assert.Equal("COW file is full", status["small"].InvalidReason); // from the superblock, not the COW header
        Assert.False(crashed.Exists(a.CowPathOf("gone")));
        Assert.Equal(expectedKeep, await ReadAsync(a.GetSnapshot("keep"), 0, 8 * 64));
        // Recovery wrote the replayed superblock home, stamped with the LSN of the copy it applied.
        var home = Superblock.Read(crashed.Backing(SbPath));
        Assert.Equal(["keep", "small"], home.Snapshots.Select(r => r.Name).Order());
        Assert.NotEqual(0UL, home.HomeLsn);

        // Crash again right after that replay: replaying again gives the same store.
        var again = crashed.CopyAll();
        var b = await ReopenAsync(again);
        Assert.Equal(status.Values.Select(s => s.ToString()).Order(), b.GetStatus().Snapshots.Select(s => s.ToString()).Order());
        Assert.Equal(expectedKeep, await ReadAsync(b.GetSnapshot("keep"), 0, 8 * 64));
        // And once more with store.sb as it was at creation: the log still holds every change.
        var third = crashed.CopyAll();
        third.Replace(SbPath, MemoryBlockDevice.FromImage(sbAtCreate, SbPath));
        var c3 = await ReopenAsync(third);
        Assert.Equal(status.Values.Select(s => s.ToString()).Order(), c3.GetStatus().Snapshots.Select(s => s.ToString()).Order());
        await c3.CloseAsync();

        // A clean close leaves a current store.sb and a clean log.
        await b.CloseAsync();
        var closedHome = Superblock.Read(again.Backing(SbPath));
        Assert.Equal(["keep", "small"], closedHome.Snapshots.Select(r => r.Name).Order());
        var d = await ReopenAsync(again);
        Assert.True(d.LogClean);
        Assert.Equal(expectedKeep, await ReadAsync(d.GetSnapshot("keep"), 0, 8 * 64));
        await d.CloseAsync();
        await a.CloseAsync();
        await store.CloseAsync();
    }

    [Fact]
    public async Task A_snapshot_created_and_deleted_inside_the_replayed_log_leaves_no_snapshot_and_no_cow_file()
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, 8 * 64, writeThrough: true);
        var sbAtCreate = p.Backing(SbPath).ToArray();
        await WriteAsync(store.Origin, 0, Pattern(0, 8 * 64, 1));
        var t = await store.CreateSnapshotAsync("t");
        for (int c = 0; c < 8; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 2)); // segments of t logged
        await WriteAsync(t, 8 * 30, Pattern(8 * 30, 8, 3));
        // The crash hits after the delete was forced to the log but before its COW file was removed.
        var beforeRemoval = p.CopyAll();
        await store.DeleteSnapshotAsync("t");
        beforeRemoval.Replace(LogPath, MemoryBlockDevice.FromImage(p.Backing(LogPath).ToArray(), LogPath));
        beforeRemoval.Replace(SbPath, MemoryBlockDevice.FromImage(sbAtCreate, SbPath));
        Assert.True(beforeRemoval.Exists(store.CowPathOf("t")));

        var a = await ReopenAsync(beforeRemoval);
        Assert.False(a.LogClean);
        Assert.Empty(a.Snapshots);
        Assert.False(beforeRemoval.Exists(a.CowPathOf("t")));
        Assert.DoesNotContain(beforeRemoval.Paths, x => x.EndsWith(SnapshotStore.CowExtension, StringComparison.Ordinal));
        var origin = Pattern(0, 8 * 64, 1);
        Pattern(0, 8 * 8, 2).CopyTo(origin, 0);
        Assert.Equal(origin, await ReadAsync(a.Origin, 0, 8 * 64));
        await a.CloseAsync();
        await store.CloseAsync();
    }

    [Fact]
    public async Task A_cow_file_the_home_superblock_names_but_the_replayed_one_does_not_is_removed()
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, 8 * 64, writeThrough: true);
        await WriteAsync(store.Origin, 0, Pattern(0, 8 * 64, 1));
        await store.CreateSnapshotAsync("t");
        for (int c = 0; c < 8; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 2));
        // store.sb names "t" on disk (written home), then the delete is committed and forced but the file stays.
        await store.Journal!.WriteBackAsync().AsTask().WaitAsync(Watchdog);
        Assert.Equal(["t"], Superblock.Read(p.Backing(SbPath)).Snapshots.Select(r => r.Name));
        var beforeRemoval = p.CopyAll();
        await store.DeleteSnapshotAsync("t");
        beforeRemoval.Replace(LogPath, MemoryBlockDevice.FromImage(p.Backing(LogPath).ToArray(), LogPath));
        Assert.True(beforeRemoval.Exists(store.CowPathOf("t")));

        var a = await ReopenAsync(beforeRemoval);
        Assert.Empty(a.Snapshots);
        Assert.False(beforeRemoval.Exists(a.CowPathOf("t")));
        Assert.Empty(Superblock.Read(beforeRemoval.Backing(SbPath)).Snapshots);
        await a.CloseAsync();
        await store.CloseAsync();
    }

    [Fact]
    public async Task A_name_reused_inside_the_replayed_log_gets_only_the_segments_of_its_own_snapshot()
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, 8 * 64, writeThrough: true);
        var sbAtCreate = p.Backing(SbPath).ToArray();
        await WriteAsync(store.Origin, 0, Pattern(0, 8 * 64, 1));
        await store.CreateSnapshotAsync("t");
        for (int c = 0; c < 8; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 2));
        await store.DeleteSnapshotAsync("t");
        // Same name, new snapshot (new id), new COW file: the segments of the first "t" must not touch it.
        var t2 = await store.CreateSnapshotAsync("t");
        var expected = Pattern(0, 8 * 64, 1);
        Pattern(0, 8 * 8, 2).CopyTo(expected, 0);
        for (int c = 4; c < 12; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 3));
        Assert.Equal(expected, await ReadAsync(t2, 0, 8 * 64));

        var crashed = p.CopyAll();
        crashed.Replace(SbPath, MemoryBlockDevice.FromImage(sbAtCreate, SbPath));
        var a = await ReopenAsync(crashed);
        Assert.Equal(["t"], a.GetStatus().Snapshots.Select(s => s.Name));
        Assert.True(a.GetStatus().Snapshots.Single().IsValid);
        Assert.Equal(8, a.GetStatus().Snapshots.Single().Exceptions);
        Assert.Equal(expected, await ReadAsync(a.GetSnapshot("t"), 0, 8 * 64));
        await a.CloseAsync();
        await store.CloseAsync();
    }

    [Fact]
    public async Task A_closed_store_has_a_current_superblock_home_and_the_item_is_written_by_the_journal()
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, 8 * 16);
        var sbAtCreate = Superblock.Read(p.Backing(SbPath));
        await store.CreateSnapshotAsync("x");
        await store.CreateSnapshotAsync("y");
        await store.DeleteSnapshotAsync("x");
        // Nothing written home yet: the generation on disk is the creation one.
        Assert.Equal(sbAtCreate.Generation, Superblock.Read(p.Backing(SbPath)).Generation);
        await store.Journal!.WriteBackAsync().AsTask().WaitAsync(Watchdog);
        var home = Superblock.Read(p.Backing(SbPath));
        Assert.Equal(["y"], home.Snapshots.Select(r => r.Name));
        Assert.True(home.Generation > sbAtCreate.Generation);
        Assert.NotEqual(0UL, home.HomeLsn);
        Assert.Equal(SuperblockItem.Type, store.SuperblockLogItem.ItemType);
        await store.CloseAsync();
        var closed = Superblock.Read(p.Backing(SbPath));
        Assert.Equal(["y"], closed.Snapshots.Select(r => r.Name));
        await using var again = await ReopenAsync(p);
        Assert.True(again.LogClean);
        Assert.Equal(["y"], again.GetStatus().Snapshots.Select(s => s.Name));
    }

    // ---- Two copies of store.sb: a damaged copy is survived only when the journal covers it (StoreRecovery case 4) ----

    /// <summary>The generations of copy A and copy B of <c>store.sb</c> (null for a copy that is not good).</summary>
    private static (ulong? A, ulong? B) Generations(TestDeviceProvider p)
    {
        var bytes = p.Backing(SbPath).ToArray();
        ulong? Gen(int copy) => Superblock.TryParse(bytes.AsSpan(copy * Superblock.CopyBytes, Superblock.CopyBytes), SbPath, out _)?.Generation;
        return (Gen(0), Gen(1));
    }

    /// <summary>Flips one byte (in the snapshot records) of the copy of <c>store.sb</c> holding <paramref name="generation"/>; returns its sector.</summary>
    private static long DamageCopy(TestDeviceProvider p, ulong generation)
    {
        var (a, b) = Generations(p);
        int copy = a == generation ? 0 : b == generation ? 1 : throw new InvalidOperationException($"no copy holds generation {generation}");
        var bytes = p.Backing(SbPath).ToArray();
        bytes[copy * Superblock.CopyBytes + Superblock.HeaderBytes + 40] ^= 0x20;
        p.Replace(SbPath, MemoryBlockDevice.FromImage(bytes, SbPath));
        return copy * Superblock.CopySectors;
    }

    /// <summary>Every device's bytes, by path.</summary>

    private static void AssertUnchanged(Dictionary<string, byte[]> before, TestDeviceProvider p)
    {
        Assert.Equal(before.Keys.Order(), p.Paths.Order());
        foreach (var (path, bytes) in before) Assert.True(bytes.AsSpan().SequenceEqual(p.Backing(path).ToArray()), $"{path} changed");
    }

    /// <summary>Superblock copies in the log newer than <paramref name="homeLsn"/>.</summary>
    private static int LoggedSuperblocksAbove(TestDeviceProvider p, ulong homeLsn) =>
        JournalRecovery.Scan(new LogRegion(MemoryBlockDevice.FromImage(p.Backing(LogPath).ToArray(), LogPath), 0, (uint)p.Backing(LogPath).SectorCount))
            .Checkpoints.Count(c => c.StartLsn > Lsn.FromValue(homeLsn) && c.Items.Any(i => i.ItemType == SuperblockItem.Type));

    /// <summary>
    /// A store closed cleanly after creating snapshots "older" then "last", with a bad byte in its newest copy of
    /// store.sb (the only one that lists "last"): the generations of both copies and the damaged copy's sector.
    /// </summary>
    private static async Task<(TestDeviceProvider P, SnapshotStore Store, ulong Newest, ulong Other, long Sector)> NewestCopyDamagedAfterCreatingLastAsync()
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, 8 * 64);
        await store.CreateSnapshotAsync("older");
        await store.CreateSnapshotAsync("last");
        await store.CloseAsync();
        var (a, b) = Generations(p);
        ulong newest = Math.Max(a!.Value, b!.Value), other = Math.Min(a.Value, b.Value);
        return (p, store, newest, other, DamageCopy(p, newest));
    }

    [Fact]
    public async Task After_a_clean_close_a_bad_byte_in_the_newest_copy_is_refused_naming_store_sb_and_both_generations_and_nothing_is_removed()
    {
        var (p, store, newest, other, sector) = await NewestCopyDamagedAfterCreatingLastAsync();
        var before = p.Images();

        var e = await Assert.ThrowsAsync<CorruptionException>(() => ReopenAsync(p));
        Assert.StartsWith($"{SbPath}: block {sector}: superblock copy {(sector == 0 ? 'A' : 'B')} (sector {sector}) is damaged", e.Message);
        Assert.Contains($"generation {newest} (claimed by the damaged header)", e.Message);
        Assert.Contains($"(generation {other}, home LSN ", e.Message);
        Assert.Contains("the journal holds no superblock newer than", e.Message);
        // The older copy does not list "last": had it been used, the sweep would have removed last.cow.
        AssertUnchanged(before, p);
        Assert.True(p.Exists(store.CowPathOf("last")));
    }

    /// <summary>
    /// The escape from a damaged newest copy is the log reset, which takes the older copy: its plan names the COW file
    /// the older copy does not list (the next open removes it) and never says that no snapshot loses anything.
    /// </summary>
    [Fact]
    public async Task A_log_reset_after_a_damaged_newest_copy_names_the_cow_file_it_gives_up_and_does_not_promise_nothing_is_lost()
    {
        var (p, store, _, _, _) = await NewestCopyDamagedAfterCreatingLastAsync();

        var plan = global::Snapshot.Recovery.LogReset.Plan(Folder, p, write: false);
        var lines = plan.WarningLines().ToList();
        Assert.Contains($"{store.CowPathOf("last")}: no snapshot lists this COW file; the next open of the store removes it if the store made it (its header names the store)", lines);
        Assert.DoesNotContain(lines, l => l.Contains("no snapshot loses anything", StringComparison.Ordinal));
        Assert.StartsWith($"{Folder}: the origin is not changed; a snapshot whose COW file is named above as unlisted is lost with it", lines[^1]);
    }

    [Fact]
    public async Task After_a_clean_close_a_bad_byte_in_the_older_copy_is_refused_too_because_nothing_tells_which_copy_was_newer()
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, 8 * 64);
        await store.CreateSnapshotAsync("s");
        await store.CloseAsync();
        var (a, b) = Generations(p);
        DamageCopy(p, Math.Min(a!.Value, b!.Value));
        var before = p.Images();
        var e = await Assert.ThrowsAsync<CorruptionException>(() => ReopenAsync(p));
        Assert.Contains($"generation {Math.Max(a.Value, b.Value)}, home LSN", e.Message);
        AssertUnchanged(before, p);
    }

    [Fact]
    public async Task After_a_crash_a_damaged_newest_copy_is_survived_when_the_journal_covers_it_and_store_sb_is_repaired()
    {
        var p = new TestDeviceProvider();
        var (store, homeWithA, newest) = await SnapshotsAAndBWrittenHomeAsync(p, writeAfterB: true);
        Assert.Equal(["a", "b"], newest.Snapshots.Select(r => r.Name));
        var crashed = p.CopyAll();
        // The log still holds the superblock that named "b" (nothing was written after the write-back).
        Assert.True(LoggedSuperblocksAbove(crashed, homeWithA.HomeLsn) > 0);
        DamageCopy(crashed, newest.Generation);

        var reopened = await ReopenAsync(crashed);
        Assert.Equal(["a", "b"], reopened.GetStatus().Snapshots.Select(s => s.Name));
        Assert.True(crashed.Exists(reopened.CowPathOf("b")));
        Assert.Contains("brought up to date by the journal", reopened.RecoveryReport!.SuperblockFallback);
        // Recovery wrote the replayed superblock over the damaged copy: both copies are good again.
        var (ga, gb) = Generations(crashed);
        Assert.NotNull(ga);
        Assert.NotNull(gb);
        await reopened.CloseAsync();
        await store.CloseAsync();
    }

    [Fact]
    public async Task After_a_crash_a_damaged_newest_copy_the_journal_no_longer_covers_is_refused_and_nothing_is_removed()
    {
        var p = new TestDeviceProvider();
        var (store, homeWithA, newest) = await SnapshotsAAndBWrittenHomeAsync(p, writeAfterB: false);
        // More checkpoints, written after the write-back: their records carry a tail past the superblock's.
        for (int c = 0; c < 6; c++)
        {
            await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 2));
            await store.Journal!.WriteBackAsync().AsTask().WaitAsync(Watchdog);
        }
        var crashed = p.CopyAll();
        Assert.Equal(0, LoggedSuperblocksAbove(crashed, homeWithA.HomeLsn));
        DamageCopy(crashed, newest.Generation);
        var before = crashed.Images();

        var e = await Assert.ThrowsAsync<CorruptionException>(() => ReopenAsync(crashed));
        Assert.StartsWith($"{SbPath}: block ", e.Message);
        Assert.Contains($"generation {newest.Generation} (claimed by the damaged header)", e.Message);
        Assert.Contains($"generation {homeWithA.Generation}, home LSN {Lsn.FromValue(homeWithA.HomeLsn)}", e.Message);
        AssertUnchanged(before, crashed);
        Assert.True(crashed.Exists(store.CowPathOf("b")));
        await store.CloseAsync();
    }

    /// <summary>
    /// A write-through store with snapshot a written home (<c>HomeWithA</c>: the superblock then), then snapshot b (and,
    /// if asked, an origin write) written home too (<c>Newest</c>).
    /// </summary>
    private static async Task<(SnapshotStore Store, Superblock HomeWithA, Superblock Newest)> SnapshotsAAndBWrittenHomeAsync(TestDeviceProvider p, bool writeAfterB)
    {
        var store = await CreateMemoryStoreAsync(p, 8 * 64, writeThrough: true);
        await store.CreateSnapshotAsync("a");
        await store.Journal!.WriteBackAsync().AsTask().WaitAsync(Watchdog);
        var homeWithA = Superblock.Read(p.Backing(SbPath));
        await store.CreateSnapshotAsync("b");
        if (writeAfterB) await WriteAsync(store.Origin, 0, Pattern(0, 8, 1));
        await store.Journal!.WriteBackAsync().AsTask().WaitAsync(Watchdog);
        return (store, homeWithA, Superblock.Read(p.Backing(SbPath)));
    }
}
