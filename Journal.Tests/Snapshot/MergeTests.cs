using Journal.Storage;
using Journal.Testing;
using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

public sealed class MergeTests
{
    private const long OriginSectors = 8 * 48; // 48 chunks of 4 KiB

    /// <summary>
    /// A store with two other snapshots around the one merged: t0 before s, t1 after it; the origin, s and t1 written
    /// after their creation, with full and partial chunk writes. Returns the volumes' contents as they read now.
    /// </summary>
    private static async Task<(byte[] Origin, byte[] S, byte[] T0, byte[] T1)> PrepareAsync(SnapshotStore store)
    {
        await WriteAsync(store.Origin, 0, Pattern(0, (int)OriginSectors, 1));
        await store.CreateSnapshotAsync("t0");
        await WriteAsync(store.Origin, 8, Pattern(8, 24, 2));           // chunks 1-3
        await store.CreateSnapshotAsync("s");
        await WriteAsync(store.Origin, 16, Pattern(16, 40, 3));         // chunks 2-6
        await WriteAsync(store.Origin, 100, Pattern(100, 3, 3));        // part of chunk 12
        await WriteAsync(store.GetSnapshot("s"), 200, Pattern(200, 8, 4)); // whole chunk 25 of s
        await WriteAsync(store.GetSnapshot("s"), 41, Pattern(41, 2, 4));   // part of chunk 5 of s (already copied)
        await WriteAsync(store.GetSnapshot("s"), 330, Pattern(330, 1, 4)); // part of chunk 41 of s
        await store.CreateSnapshotAsync("t1");
        await WriteAsync(store.Origin, 300, Pattern(300, 20, 5));       // chunks 37-39
        await WriteAsync(store.GetSnapshot("t1"), 24, Pattern(24, 8, 6));
        return (await ReadAsync(store.Origin, 0, (int)OriginSectors), await ReadAsync(store.GetSnapshot("s"), 0, (int)OriginSectors),
            await ReadAsync(store.GetSnapshot("t0"), 0, (int)OriginSectors), await ReadAsync(store.GetSnapshot("t1"), 0, (int)OriginSectors));
    }

    /// <summary>
    /// A memory store on <paramref name="p"/> prepared by <see cref="PrepareAsync"/>, and a merge of s that failed part
    /// way: the origin's writes fail from chunk 20 on (the merge goes in chunk order), then the fault is cleared. Returns
    /// the views s, t0 and t1 showed, and the merge's error.
    /// </summary>
    private static async Task<(SnapshotStore Store, byte[] S, byte[] T0, byte[] T1, JournalException Failed)> FailedMergeAsync(TestDeviceProvider p)
    {
        FaultInjectingBlockDevice? originFaults = null;
        p.Wrap = (path, d) => path.EndsWith("origin.img", StringComparison.Ordinal) ? originFaults = new FaultInjectingBlockDevice(d) : d;
        var store = await CreateMemoryStoreAsync(p, OriginSectors);
        var (_, s, t0, t1) = await PrepareAsync(store);
        originFaults!.AddRule(FaultRule.Permanent(FaultOps.Write, firstSector: 160));
        var failed = await Assert.ThrowsAsync<JournalException>(() => store.MergeSnapshotAsync("s").AsTask().WaitAsync(Watchdog));
        originFaults.ClearFaults();
        return (store, s, t0, t1, failed);
    }

    private static async Task AssertViewsAsync(SnapshotStore store, byte[] origin, byte[] t0, byte[] t1, string when)
    {
        var gotOrigin = await ReadAsync(store.Origin, 0, (int)OriginSectors);
        var gotT0 = await ReadAsync(store.GetSnapshot("t0"), 0, (int)OriginSectors);
        var gotT1 = await ReadAsync(store.GetSnapshot("t1"), 0, (int)OriginSectors);
        Assert.True(origin.AsSpan().SequenceEqual(gotOrigin), $"origin {when}");
        Assert.True(t0.AsSpan().SequenceEqual(gotT0), $"t0 {when}");
        Assert.True(t1.AsSpan().SequenceEqual(gotT1), $"t1 {when}");
    }

    [Fact]
    public async Task Merge_makes_the_origin_what_the_snapshot_showed_deletes_it_and_keeps_the_other_snapshots()
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, OriginSectors);
        var (_, s, t0, t1) = await PrepareAsync(store);
        long exceptions = store.GetStatus().Snapshots.Single(x => x.Name == "s").Exceptions;
        var reports = new List<(long Done, long Total)>();
        await store.MergeSnapshotAsync("s", new SyncProgress(reports.Add)).AsTask().WaitAsync(Watchdog);

        Assert.Equal(exceptions, reports[^1].Done);
        Assert.Equal(exceptions, reports[^1].Total);
        Assert.DoesNotContain(store.GetStatus().Snapshots, x => x.Name == "s");
        Assert.False(p.Exists(Folder + "/s.cow"));
        await AssertViewsAsync(store, s, t0, t1, "after the merge");
        // The origin is a normal origin again: a write goes to it, and the others get their copies first.
        await WriteAsync(store.Origin, 0, Pattern(0, 16, 9));
        await AssertViewsAsync(store, Concat(Pattern(0, 16, 9), s.AsSpan(16 * 512)), t0, t1, "after a later write");
        await store.CloseAsync().AsTask().WaitAsync(Watchdog);

        await using var reopened = await ReopenAsync(p);
        await AssertViewsAsync(reopened, Concat(Pattern(0, 16, 9), s.AsSpan(16 * 512)), t0, t1, "after reopening");
        Assert.Equal(["t0", "t1"], reopened.GetStatus().Snapshots.Select(x => x.Name));
    }

    [Fact]
    public async Task Merge_is_refused_for_an_unknown_transient_or_invalid_snapshot()
    {
        var p = new TestDeviceProvider();
        await using var store = await CreateMemoryStoreAsync(p, OriginSectors);
        var e = await Assert.ThrowsAsync<SnapshotArgumentException>(() => store.MergeSnapshotAsync("nope").AsTask());
        Assert.Equal("/mem/store/nope.cow: no snapshot named 'nope'", e.Message);
        await store.CreateSnapshotAsync("tr", new SnapshotOptions { Persistent = false });
        e = await Assert.ThrowsAsync<SnapshotArgumentException>(() => store.MergeSnapshotAsync("tr").AsTask());
        Assert.Equal("/mem/store/tr.cow: snapshot 'tr' is transient; only persistent snapshots can be merged", e.Message);
        await store.CreateSnapshotAsync("small", new SnapshotOptions { CowSectors = 3 * 8 }); // header, area, one data chunk
        await WriteAsync(store.Origin, 0, Pattern(0, 16, 1)); // two chunks: the second one fills it
        Assert.False(store.GetStatus().Snapshots.Single(x => x.Name == "small").IsValid);
        e = await Assert.ThrowsAsync<SnapshotArgumentException>(() => store.MergeSnapshotAsync("small").AsTask());
        Assert.StartsWith("/mem/store/small.cow: snapshot 'small' is invalid (COW file is full)", e.Message);
    }

    [Fact]
    public async Task A_failed_merge_reports_Merge_failed_keeps_the_origin_reading_as_the_snapshot_and_finishes_when_run_again()
    {
        var p = new TestDeviceProvider();
        var (store, s, t0, t1, failed) = await FailedMergeAsync(p);
        Assert.StartsWith("/mem/store/s.cow: merge of snapshot 's' into the origin failed: ", failed.Message);
        Assert.DoesNotContain('\n', failed.Message);
        var st = store.GetStatus().Snapshots.Single(x => x.Name == "s");
        Assert.Equal("Merge failed", st.DmStatus);
        Assert.True(st.Merging);
        Assert.Contains("\"merging\":true", store.GetStatus().ToJson());

        // Meanwhile the origin reads as s; nothing else may change the snapshot list or use s directly.
        await AssertViewsAsync(store, s, t0, t1, "after the failed merge");
        await Assert.ThrowsAsync<SnapshotArgumentException>(() => store.CreateSnapshotAsync("new").AsTask());
        await Assert.ThrowsAsync<SnapshotArgumentException>(() => store.DeleteSnapshotAsync("s").AsTask());
        await Assert.ThrowsAsync<SnapshotArgumentException>(() => ReadAsync(store.GetSnapshot("s"), 0, 8));

        // Writes meanwhile: chunk 25 is one s holds (it goes into s's COW chunk); chunk 30 is not (it goes to the origin,
        // after t0 and t1 get their copies).
        await WriteAsync(store.Origin, 200, Pattern(200, 4, 7));
        await WriteAsync(store.Origin, 240, Pattern(240, 8, 7));
        var expected = (byte[])s.Clone();
        Pattern(200, 4, 7).CopyTo(expected, 200 * 512);
        Pattern(240, 8, 7).CopyTo(expected, 240 * 512);
        await AssertViewsAsync(store, expected, t0, t1, "after writes to a partly merged origin");
        await store.CloseAsync().AsTask().WaitAsync(Watchdog);

        // Still unfinished after reopening; running it again finishes it.
        await using var reopened = await ReopenAsync(p);
        Assert.Equal("Merging", reopened.GetStatus().Snapshots.Single(x => x.Name == "s").Status);
        await AssertViewsAsync(reopened, expected, t0, t1, "after reopening mid-merge");
        await reopened.MergeSnapshotAsync("s").AsTask().WaitAsync(Watchdog);
        Assert.DoesNotContain(reopened.GetStatus().Snapshots, x => x.Name == "s");
        await AssertViewsAsync(reopened, expected, t0, t1, "after the merge finished");
        await reopened.CreateSnapshotAsync("new");
    }

    /// <summary>
    /// A crash while a merge is unfinished, and the merging snapshot's COW file then missing: the origin reads through
    /// that file, so the store cannot open without it, and the open is refused before the journal is replayed: every
    /// file stays as the crash left it (a replay first would have rewritten the superblock and the log, and moved the
    /// log past metadata the file never received). With the file back, the store opens with the merge unfinished.
    /// </summary>
    [Theory]
    [InlineData(false)] // the log holds segments of s
    [InlineData(true)]  // s's segments are home: the log holds only t0's and t1's
    public async Task A_crashed_store_whose_merging_snapshot_file_is_missing_is_refused_before_the_replay(bool writtenBack)
    {
        var p = new TestDeviceProvider();
        var (store, s, t0, t1, _) = await FailedMergeAsync(p);
        if (writtenBack) await store.Journal!.WriteBackAsync();
        await WriteAsync(store.Origin, 240, Pattern(240, 8, 7)); // a copy into t0 and t1: segments in the log
        var expected = (byte[])s.Clone();
        Pattern(240, 8, 7).CopyTo(expected, 240 * 512);

        var crashed = p.CopyAll(); // the process dies here: no close
        string cow = Folder + "/s.cow";
        var file = crashed.Backing(cow);
        crashed.Forget(cow);
        var before = crashed.Images();
        foreach (var policy in new[] { CowUnreadablePolicy.KeepSnapshot, CowUnreadablePolicy.InvalidateSnapshot })
        {
            var e = await Assert.ThrowsAsync<DeviceOpenException>(() =>
                SnapshotStore.OpenAsync(Folder, crashed.Options(new StoreOptions { CowUnreadablePolicy = policy })).AsTask().WaitAsync(Watchdog));
            Assert.Equal(DeviceOpenError.Missing, e.Error);
            Assert.Equal($"{cow}: COW file of snapshot 's' is missing, and a merge of it into the origin is unfinished (the origin reads through it); " +
                "the store was not opened and nothing was changed (restore the file and open the store again)", e.Message);
            Journal.Tests.Tools.CrashedStore.AssertSameFiles(before, crashed.Images());
            crashed.BreakLocks();
        }

        crashed.Replace(cow, file);
        await using var reopened = await SnapshotStore.OpenAsync(Folder, crashed.Options(new StoreOptions())).AsTask().WaitAsync(Watchdog);
        Assert.Equal("Merging", reopened.GetStatus().Snapshots.Single(x => x.Name == "s").Status);
        await AssertViewsAsync(reopened, expected, t0, t1, "with the file back");
        await reopened.MergeSnapshotAsync("s").AsTask().WaitAsync(Watchdog);
        await AssertViewsAsync(reopened, expected, t0, t1, "after the merge finished");
        await store.DisposeAsync();
    }

    /// <summary>
    /// While a merge is unfinished, an origin write to a chunk the merging snapshot holds goes into that snapshot's COW
    /// file: with FUA it is durable when it returns, so a power cut right after it keeps it.
    /// </summary>
    [Fact]
    public async Task A_FUA_write_redirected_into_an_unfinished_merge_survives_a_power_cut()
    {
        var cut = new PowerCut();
        var crashSim = cut.Devices.Wrap!;
        FaultInjectingBlockDevice? originFaults = null;
        cut.Devices.Wrap = (path, d) => path.EndsWith("origin.img", StringComparison.Ordinal)
            ? originFaults = new FaultInjectingBlockDevice(crashSim(path, d)) : crashSim(path, d);
        var store = await CreateMemoryStoreAsync(cut.Devices, OriginSectors);
        var (_, s, t0, t1) = await PrepareAsync(store);
        originFaults!.AddRule(FaultRule.Permanent(FaultOps.Write, firstSector: 160));
        await Assert.ThrowsAsync<JournalException>(() => store.MergeSnapshotAsync("s").AsTask().WaitAsync(Watchdog));
        originFaults.ClearFaults();

        // Chunk 25 is one s holds: the write goes into s's COW chunk. Chunk 30 is not: it goes to the origin.
        await store.Origin.WriteAsync(200, Pattern(200, 4, 7), WriteFlags.Fua).AsTask().WaitAsync(Watchdog);
        await store.Origin.WriteAsync(240, Pattern(240, 8, 7), WriteFlags.Fua).AsTask().WaitAsync(Watchdog);
        var expected = (byte[])s.Clone();
        Pattern(200, 4, 7).CopyTo(expected, 200 * 512);
        Pattern(240, 8, 7).CopyTo(expected, 240 * 512);

        var images = cut.CrashImages();
        await using var after = await global::Snapshot.SnapshotStore.OpenAsync(Folder, images.Options(new StoreOptions())).AsTask().WaitAsync(Watchdog);
        await AssertViewsAsync(after, expected, t0, t1, "after a power cut following FUA writes to a partly merged origin");
    }

    /// <summary>
    /// A crash at every flush point of a merge (with writes in flight kept, lost or torn): the reopened store shows the
    /// origin either as it was before the merge (the merge had not started) or as the snapshot (started or finished),
    /// never a mix; the other snapshots as they were; and an unfinished merge finishes when run again.
    /// </summary>
    [Fact]
    public async Task After_a_crash_during_a_merge_the_origin_reads_as_before_or_as_the_snapshot_and_the_merge_finishes()
    {
        var log = new WriteLog();
        var p = new TestDeviceProvider { Log = log };
        var store = await CreateMemoryStoreAsync(p, OriginSectors, writeThrough: true);
        var (before, s, t0, t1) = await PrepareAsync(store);
        int start = log.Mark("merge start");
        await store.MergeSnapshotAsync("s").AsTask().WaitAsync(Watchdog);
        int end = log.Mark("merge end");
        // The process dies here: no close.

        int states = int.TryParse(Environment.GetEnvironmentVariable("JOURNAL_SNAP_CRASH_STATES"), out int n) && n > 0 ? n : 240;
        int checkedStates = 0, merging = 0;
        foreach (var state in log.CrashStates(new CrashStateOptions { Seed = 5, FirstPoint = start, MaxPoints = Math.Max(1, states / 4), MaxVariantsPerPoint = 2 }))
        {
            var q = new TestDeviceProvider();
            foreach (var dev in log.Devices)
            {
                bool deleted = p.Deletions.Any(d => d.Path == dev.Name && d.Position < state.Point);
                if (dev.RegisteredAt > state.Point || deleted) continue;
                q.Replace(dev.Name, state.Device(dev.Id));
            }
            string where = state.Description;
            await using var reopened = await SnapshotStore.OpenAsync(Folder, q.Options(new StoreOptions())).AsTask().WaitAsync(Watchdog);
            var status = reopened.GetStatus().Snapshots.SingleOrDefault(x => x.Name == "s");
            var origin = await ReadAsync(reopened.Origin, 0, (int)OriginSectors);
            if (status is not null && !status.Merging)
                Assert.True(before.AsSpan().SequenceEqual(origin), $"origin (merge not started) at {where}");
            else
                Assert.True(s.AsSpan().SequenceEqual(origin), $"origin (merge {(status is null ? "finished" : "unfinished")}) at {where}");
            Assert.True(status is not null || state.Point > start, $"s gone before the merge started at {where}");
            await AssertViewsAsync(reopened, origin, t0, t1, $"at {where}");
            if (status is { Merging: true })
            {
                merging++;
                await reopened.MergeSnapshotAsync("s").AsTask().WaitAsync(Watchdog);
                await AssertViewsAsync(reopened, s, t0, t1, $"after finishing the merge at {where}");
            }
            checkedStates++;
        }
        Assert.True(checkedStates >= Math.Min(states / 4, 20), $"only {checkedStates} crash states checked");
        Assert.True(merging > 0, "no crash state caught the merge in progress");
        Assert.True(end > start);
    }

    private static byte[] Concat(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        var r = new byte[a.Length + b.Length];
        a.CopyTo(r);
        b.CopyTo(r.AsSpan(a.Length));
        return r;
    }

    /// <summary>A progress reporter that runs its callback at once (Progress&lt;T&gt; posts it to the thread pool).</summary>
    private sealed class SyncProgress(Action<(long, long)> report) : IProgress<(long Done, long Total)>
    {
        public void Report((long Done, long Total) value) => report(value);
    }
}
