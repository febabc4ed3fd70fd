using System.Diagnostics;
using System.Globalization;
using Journal;
using Journal.Format;
using Journal.Recovery;
using Journal.Storage;
using Microsoft.Extensions.Logging;
using Snapshot.Format;
using Snapshot.Metadata;
using Snapshot.Storage;

namespace Snapshot.Recovery;

/// <summary>
/// Opening a store's metadata after any stop, clean or not: the home superblock, one scan of the journal, two replays
/// (the superblock items, then the metadata segments of the snapshots the replayed superblock lists), and the journal
/// opened for writing. The store's catalog then loads every snapshot's COW file (cases 10 to 12 of
/// docs/snapshot.md, numbered in <c>SnapshotCatalog.LoadSnapshotsAsync</c>). Also the public entry points <c>jreplay</c> uses:
/// <see cref="ReplayAsync(string, CancellationToken)"/> and <see cref="CheckAsync(string, CancellationToken)"/>.
/// </summary>
/// <remarks>
/// <para><b>Cases</b>, in this order:</para>
/// <list type="number">
/// <item><b>Home superblock.</b> Both copies of <c>store.sb</c> are read; the good copy with the higher generation is the
/// home superblock. Neither good: refused, naming both problems. A blank copy beside a good generation-1 copy was never
/// written (a new store); any other copy that is not good is damaged.</item>
/// <item><b>One scan.</b> The journal is read once (<see cref="JournalRecovery.Scan"/>: records and checkpoints, all
/// validated before anything is applied). A journal file too small to be the store's log is corruption naming it.
/// Nothing below reads the log again.</item>
/// <item><b>Logged items.</b> Every item in the log must be the superblock (type 0x5342) or a metadata segment
/// (0x534e), and decode with the store's decoders (<see cref="StoreLogItems"/>): superblock copies parse and keep the
/// home geometry; segment copies have one region, a header inside the segment, and entries whose new chunk is a data
/// chunk and whose old chunk lies inside the origin. Otherwise refused, naming the log, block, LSN and problem.</item>
/// <item><b>Superblock fallback.</b> When a copy of <c>store.sb</c> is damaged it may have been the newer one, so the
/// good copy may be a change behind. It is used only when the log holds a superblock copy newer than the good copy's
/// <c>home_lsn</c> (case 5 then brings it up to date); otherwise <see cref="CorruptionException"/> naming
/// <c>store.sb</c>, the damaged copy and both generations, and nothing is changed (no COW file is removed on the
/// word of an older copy).</item>
/// <item><b>Replay 1: the superblock.</b> Logged superblock copies above the home <c>home_lsn</c> replace it in
/// checkpoint order; the newest wins.</item>
/// <item><b>Segment bounds.</b> Every logged segment of a snapshot the replayed superblock lists as valid and
/// persistent, and every data chunk its entries name, must lie inside that snapshot's configured COW size; checked for
/// the whole log before any segment is applied (a damaged id must not grow a COW file without bound). Then each such
/// snapshot's COW file must be there, read back, not be an older copy (its header stamp behind its record's) and reach
/// as far as its segments do: otherwise the open is refused with nothing changed, or, when the open invalidates such
/// snapshots (<see cref="CowUnreadablePolicy.InvalidateSnapshot"/>), its segments have no home (case 6b). The COW
/// file of a snapshot whose merge is unfinished is checked the same way with or without segments, and the open refused
/// under either policy when it is unusable: the origin reads through it.</item>
/// <item><b>Replay 2: the segments.</b> Segments of snapshots the replayed superblock lists as valid and persistent
/// (and whose COW file exists with a valid header) are applied at their fixed positions, skipping those the home-LSN
/// slots already reflect. Segments of other snapshots have no home and are skipped: a segment is logged only after the
/// superblock naming its snapshot was committed, and ids are never reused, so a snapshot created and deleted within
/// the replayed part has its segments skipped, and a reused name never receives an earlier snapshot's segments. A
/// listed snapshot whose COW file case 6b found unusable has no home here.</item>
/// <item><b>Completion.</b> Replayed COW files are flushed, then their home-LSN slots stamped and flushed; if a
/// superblock copy was applied, the replayed superblock is written home (next generation, <c>home_lsn</c> = the copy's
/// LSN) and flushed. Replaying again (a crash during or after recovery) skips what the homes hold and gives the same
/// store.</item>
/// <item><b>Open for writing.</b> Only now is the journal opened for writing (its tail may move past the replayed
/// checkpoints from here on). The log is clean at open when it held nothing to replay.</item>
/// </list>
/// <para><b>Why case 4 loses nothing.</b> The superblock changes only through the journal: a create, delete or
/// invalidation commits the superblock item in a checkpoint at some LSN L and forces it before it returns; the AIL
/// writes it home later as the next generation stamped <c>home_lsn</c> = L, flushes, and only then may the log tail
/// pass L (the tail is the oldest LSN of an item not yet home). So for the newest superblock, committed at L, either
/// the log still holds its copy at L, or a completed, flushed home write carries <c>home_lsn</c> &gt;= L. Let the good
/// copy have <c>home_lsn</c> h. If the log holds any superblock copy above h, L is above h too and lies between that
/// copy and the head, so it is in the log: replay applies the copies above h in order and ends on the newest
/// superblock, whatever the damaged copy held. If the log holds none above h, either the good copy is current or the
/// newest superblock survives only in the damaged copy (written and flushed, the tail since moved on); nothing tells
/// these apart, and taking the good copy in the second case would drop the last create or delete (and the sweep of
/// case 12 would remove the COW file of a snapshot created since), so the store refuses. A torn home write (a crash
/// during write-back or during case 8) always falls in the first case: the tail had not passed L.</para>
/// </remarks>
public static class StoreRecovery
{
    /// <summary>What <see cref="Open"/> hands back to the store.</summary>
    internal sealed record Outcome(MetadataJournal Journal, Superblock Superblock, StoreRecoveryReport Report);

    /// <summary>
    /// Cases 1 to 9 for the store whose <c>store.sb</c> is <paramref name="sbDevice"/> and whose journal is
    /// <paramref name="logDevice"/>. COW files are opened through <paramref name="provider"/> at the paths
    /// <paramref name="cowPathOf"/> gives for snapshot names.
    /// </summary>
    internal static Outcome Open(IDeviceProvider provider, BlockDevice sbDevice, BlockDevice logDevice, CowLayout layout,
        Func<string, string> cowPathOf, ILoggerFactory? loggerFactory = null, string? name = null, bool keepUnreadable = false,
        CancellationToken cancellationToken = default)
    {
        long start = Stopwatch.GetTimestamp();
        // Case 1: the home superblock.
        var home = Superblock.ReadHome(sbDevice);
        var homeSb = home.Current;

        // Case 2: one scan.
        var region = RegionOf(logDevice);
        var log = JournalRecovery.Scan(region, cancellationToken);

        // Case 3: every logged item decodes with the store's decoders.
        StoreLogItems.Validate(log, homeSb);

        // Case 3b: a home LSN names a checkpoint the journal wrote, so it lies below the journal's end. One at or past
        // it (a crafted or mismatched store.sb) would make the replay skip logged copies newer than the home: refused.
        var logEnd = log.Log.NextLsn;
        if (Lsn.FromValue(homeSb.HomeLsn) >= logEnd)
            throw new CorruptionException(home.File, home.Good.Sector, Lsn.Zero,
                $"superblock {home.Good.Label} claims a home LSN the journal never reached (the superblock and {log.Name} do not belong together); " +
                "the store was not opened and nothing was changed",
                $"below {logEnd}", Lsn.FromValue(homeSb.HomeLsn).ToString());

        // Case 4: a damaged copy of store.sb is acceptable only when the log brings the good one up to date.
        string? fallback = null;
        if (home.OtherMayBeNewer)
        {
            var homeLsn = Lsn.FromValue(homeSb.HomeLsn);
            var newer = log.Checkpoints.LastOrDefault(c => c.StartLsn > homeLsn && c.Items.Any(i => i.ItemType == SuperblockItem.Type));
            if (newer is null)
                throw new CorruptionException(home.File, home.Other.Sector, Lsn.Zero,
                    $"superblock {home.Other.Label} is damaged ({home.Other.Problem}; {home.Other.GenerationText}) and the journal holds no superblock " +
                    $"newer than the good {home.Good.Label} ({home.Good.GenerationText}, home LSN {homeLsn}): the good copy may be a change behind, " +
                    "so the store is not opened (the last snapshot created or deleted could be lost)",
                    $"a logged superblock above {homeLsn}", "none");
            fallback = string.Create(CultureInfo.InvariantCulture,
                $"{home.File}: {home.Other.Label} is damaged ({home.Other.Problem}); the good {home.Good.Label} ({home.Good.GenerationText}) was brought up to date by the journal (superblock at {newer.StartLsn})");
        }

        // Case 5: replay 1, the superblock.
        var sbHandler = new SuperblockRecoveryHandler(sbDevice, homeSb, log);
        var sbTypes = new[] { SuperblockItem.Type };
        JournalRecovery.Replay(log, new Dictionary<ushort, IItemRecoveryHandler> { [SuperblockItem.Type] = sbHandler }, sbTypes, cancellationToken);
        var replayed = sbHandler.Current;

        var listed = Listed(replayed);

        // Case 6: every segment of a listed snapshot lies inside its COW size, before any is applied.
        var reach = CheckSegmentBounds(log, listed, layout);

        // Case 6b: the COW file of every listed snapshot with segments in the log is there, its header reads back, and it
        // is long enough for them (a file grows, and its growth is durable, before a copy or a segment lands in it).
        // One that is not cannot take them: kept (the default), the snapshot would come back without them once a good
        // file were restored, reading the origin's new data where it holds old data; so the open is refused here,
        // before anything is applied or the log can move past them, and nothing is lost yet. With InvalidateSnapshot
        // the snapshot's segments have no home, and the open invalidates it (case 10).
        // A snapshot whose merge into the origin is unfinished is checked whether or not the log holds segments of it:
        // the origin reads through its file, so the open cannot go on without it under either policy, and is refused
        // here rather than after the replay has rewritten the superblock and the log.
        var checkedReach = new Dictionary<ulong, long>(reach);
        foreach (var r in listed.Values)
            if (r.State == SnapshotStateCode.Merging) checkedReach.TryAdd(r.Id, 0);
        var unusable = UnusableCowFiles(provider, checkedReach, listed, layout, cowPathOf);
        foreach (var (id, (path, problem)) in unusable)
        {
            if (listed[id].State != SnapshotStateCode.Merging) continue;
            string what = $"COW file of snapshot '{listed[id].Name}' {problem}, and a merge of it into the origin is unfinished (the origin reads through it); " +
                "the store was not opened and nothing was changed (restore the file and open the store again)";
            if (problem == MissingProblem) throw new DeviceOpenException(path, DeviceOpenError.Missing, what);
            throw new JournalException($"{path}: {what}");
        }
        if (keepUnreadable && unusable.Count > 0)
        {
            var (id, (path, problem)) = unusable.First();
            string what = $"COW file of snapshot '{listed[id].Name}' {problem}, and the journal holds metadata of it not yet written to the file; " +
                "the store was not opened and nothing was changed (restore the file and open the store again, or replay with " +
                "the snapshot dropped: jreplay replay --invalidate-unreadable)";
            if (problem == MissingProblem) throw new DeviceOpenException(path, DeviceOpenError.Missing, what);
            throw new JournalException($"{path}: {what}");
        }
        using var areas = new AreaRecoveryHandler(provider, layout, replayed.OriginSectors,
            id => listed.TryGetValue(id, out var r) && !unusable.ContainsKey(id) ? cowPathOf(r.Name) : null, log.Name, log.Checkpoints);

        // Case 6c: the home-LSN slots of every listed COW file lie below the journal's end too (case 3b), whether or not
        // the log holds segments of it now: a slot past it would make a later replay skip that segment's newer copies.
        foreach (var (id, r) in listed)
        {
            if (unusable.ContainsKey(id)) continue;
            Lsn highest;
            try { highest = areas.HighestSlotLsn(id); }
            catch (JournalException) { continue; } // unreadable: the load reports it (case 10)
            if (highest >= logEnd)
                throw new CorruptionException(cowPathOf(r.Name), 0, Lsn.Zero,
                    $"a home-LSN slot of snapshot '{r.Name}' claims an LSN the journal never reached (the file and {log.Name} do not belong together); " +
                    "the store was not opened and nothing was changed",
                    $"below {logEnd}", highest.ToString());
        }

        // Case 7: replay 2, the segments of the listed snapshots.
        var segTypes = new[] { AreaSegmentItem.Type };
        JournalRecovery.Replay(log, new Dictionary<ushort, IItemRecoveryHandler> { [AreaSegmentItem.Type] = areas }, segTypes, cancellationToken);

        // Case 8: completion, before the log can move.
        areas.Complete();
        sbHandler.Complete();
        cancellationToken.ThrowIfCancellationRequested(); // the last point where nothing is open for writing yet

        // Case 9: open for writing.
        var journal = MetadataJournal.Open(log, StoreJournal.Options(region.BlockCount, loggerFactory, name));
        var report = new StoreRecoveryReport(log, sbHandler.Applied, areas.Applied, fallback, Stopwatch.GetElapsedTime(start));
        return new Outcome(journal, sbHandler.Current, report);
    }

    /// <summary>The snapshots case 7 replays into: persistent, valid or merging.</summary>
    internal static Dictionary<ulong, SnapshotRecord> Listed(Superblock replayed) => replayed.Snapshots
        .Where(r => r.Kind == SnapshotKindCode.Persistent && r.State is SnapshotStateCode.Valid or SnapshotStateCode.Merging)
        .ToDictionary(r => r.Id);

    private const string MissingProblem = "is missing";

    /// <summary>
    /// Case 6b: the listed persistent snapshots whose logged segments cannot be applied to their COW file, by id, with
    /// the file and the problem: the file is missing, its header does not read back or is an older copy (its stamp behind
    /// its superblock record's), or it is shorter than <paramref name="reach"/> (what case 6 found the segments reach).
    /// (A file that may not be opened is not among them: its open throws, refusing the store with nothing changed, as
    /// at case 10.)
    /// </summary>
    internal static Dictionary<ulong, (string Path, string Problem)> UnusableCowFiles(IDeviceProvider provider, IReadOnlyDictionary<ulong, long> reach,
        IReadOnlyDictionary<ulong, SnapshotRecord> listed, CowLayout layout, Func<string, string> cowPathOf)
    {
        var unusable = new Dictionary<ulong, (string, string)>();
        foreach (var (id, sectors) in reach)
        {
            string path = cowPathOf(listed[id].Name);
            if (!provider.Exists(path))
            {
                unusable[id] = (path, MissingProblem);
                continue;
            }
            try
            {
                using var cow = provider.Open(path);
                var chunk0 = new byte[CowHeader.UsedSectorBytes(layout.ChunkSectors)];
                if (cow.SectorCount * BlockDevice.SectorSize < chunk0.Length)
                {
                    unusable[id] = (path, string.Create(CultureInfo.InvariantCulture, $"is damaged: {cow.SectorCount * BlockDevice.SectorSize} bytes long, shorter than its header"));
                    continue;
                }
                cow.Read(0, chunk0);
                var header = CowHeader.Read(chunk0, path, layout.ChunkSectors, id);
                if (header.IsValid && CowHeader.IsOlderCopy(header.Stamp, listed[id].CowStamp))
                    unusable[id] = (path, string.Create(CultureInfo.InvariantCulture,
                        $"is an older copy of the file (its stamp {header.Stamp} is behind the store's record of it, {listed[id].CowStamp})"));
                else if (header.IsValid && cow.SectorCount < sectors)
                    unusable[id] = (path, string.Create(CultureInfo.InvariantCulture,
                        $"is damaged: {cow.SectorCount} sectors long, and the journal's metadata of it reaches sector {sectors} (the file was cut short)"));
            }
            catch (JournalException e) when (e is not DeviceOpenException { Error: DeviceOpenError.AccessDenied or DeviceOpenError.InUse })
            {
                unusable[id] = (path, "is damaged: " + e.Message.ReplaceLineEndings(" ").Replace(path + ": ", "", StringComparison.Ordinal));
            }
        }
        return unusable;
    }

    /// <summary>
    /// Case 6: every logged segment of a snapshot in <paramref name="listed"/>, and every data chunk its entries name,
    /// lies inside the snapshot's configured COW size. Returns, by snapshot id, the sectors of its COW file its logged
    /// segments reach (their areas and their entries' data chunks), for case 6b.
    /// </summary>
    internal static Dictionary<ulong, long> CheckSegmentBounds(RecoveredLog log, IReadOnlyDictionary<ulong, SnapshotRecord> listed, CowLayout layout)
    {
        long segmentsPerArea = layout.ExceptionsPerArea / Exceptions.PersistentExceptionStore.SegmentEntriesFor(layout);
        var reach = new Dictionary<ulong, long>();
        foreach (var c in log.Checkpoints)
            foreach (var item in c.Items)
            {
                if (item.ItemType != AreaSegmentItem.Type) continue;
                var (id, segment) = AreaSegmentItem.SplitId(item.ItemId);
                if (!listed.TryGetValue(id, out var rec)) continue;
                ulong area = layout.AreaChunk(segment / segmentsPerArea);
                long capacity = rec.CowSectors / layout.ChunkSectors;
                if (area >= (ulong)capacity)
                    throw new CorruptionException(log.Name, c.StartLsn.Block, c.StartLsn, string.Create(CultureInfo.InvariantCulture,
                        $"checkpoint {c.Sequence}: metadata segment {segment} of snapshot '{rec.Name}' (id {id}) lies beyond its COW size"),
                        string.Create(CultureInfo.InvariantCulture, $"an area chunk below {capacity}"), area.ToString(CultureInfo.InvariantCulture));
                // Case 3 checked the header; the entries' data chunks must lie inside the COW size too.
                var region = item.Regions[0].Span;
                var h = SegmentLogHeader.TryRead(region, int.MaxValue, out _)!.Value;
                ulong last = area;
                for (int i = 0; i < h.Count; i++)
                {
                    var e = DiskException.Read(region.Slice(SegmentLogHeader.Size + i * DiskException.Size));
                    if (e.NewChunk >= (ulong)capacity)
                        throw new CorruptionException(log.Name, c.StartLsn.Block, c.StartLsn, string.Create(CultureInfo.InvariantCulture,
                            $"checkpoint {c.Sequence}: metadata segment {segment} of snapshot '{rec.Name}' (id {id}): entry {h.First + i}: new_chunk lies beyond its COW size"),
                            string.Create(CultureInfo.InvariantCulture, $"below {capacity}"), e.NewChunk.ToString(CultureInfo.InvariantCulture));
                    last = Math.Max(last, e.NewChunk);
                }
                reach[id] = Math.Max(reach.GetValueOrDefault(id), layout.ChunkToSector(last + 1));
            }
        return reach;
    }

    /// <summary>Case 2: the journal file as a log region; a file too small for the store's log is corruption naming it.</summary>
    internal static LogRegion RegionOf(BlockDevice logDevice)
    {
        long minimum = StoreJournal.MinLogBlocks;
        if (logDevice.SectorCount < minimum)
            throw new CorruptionException(logDevice.Name, -1, Lsn.Zero,
                "journal file is too small for the store's log: it was truncated or replaced",
                string.Create(CultureInfo.InvariantCulture, $"at least {minimum * LogFormat.BlockSize} bytes ({minimum} blocks)"),
                string.Create(CultureInfo.InvariantCulture, $"{logDevice.SectorCount * LogFormat.BlockSize} bytes"));
        return StoreJournal.Region(logDevice);
    }

    /// <summary>
    /// Recovers the store in <paramref name="folder"/> in place: opens it (which runs cases 1 to 9 and loads every
    /// snapshot), then closes it cleanly (everything written home, the log marked clean). Returns what the recovery did.
    /// </summary>
    /// <exception cref="CorruptionException">The log, <c>store.sb</c> or a COW file is damaged (nothing was applied
    /// when the damage is in the log or <c>store.sb</c>).</exception>
    /// <exception cref="JournalException">Another refusal: the store is in use, an item type the store does not log.</exception>
    public static Task<StoreRecoveryReport> ReplayAsync(string folder, CancellationToken cancellationToken = default) =>
        RunAsync(folder, new StoreOptions(), cancellationToken);

    /// <summary>
    /// <see cref="ReplayAsync(string, CancellationToken)"/> with <paramref name="cowUnreadable"/> deciding what happens to
    /// a snapshot whose COW file is missing or unreadable (<see cref="StoreOptions.CowUnreadablePolicy"/>):
    /// <see cref="CowUnreadablePolicy.InvalidateSnapshot"/> drops such a snapshot for good and lets the replay finish.
    /// </summary>
    public static Task<StoreRecoveryReport> ReplayAsync(string folder, CowUnreadablePolicy cowUnreadable, CancellationToken cancellationToken = default) =>
        RunAsync(folder, new StoreOptions { CowUnreadablePolicy = cowUnreadable }, cancellationToken);

    /// <summary>
    /// Runs exactly what <see cref="ReplayAsync(string, CancellationToken)"/> runs (the store's whole open and clean
    /// close) with every write kept in memory and forgotten: the folder is not changed, and the check accepts and
    /// refuses exactly what a replay would, with the same error. The store's lock is taken for the duration (a store
    /// in use is refused, as a replay would refuse it).
    /// </summary>
    public static Task<StoreRecoveryReport> CheckAsync(string folder, CancellationToken cancellationToken = default) =>
        CheckAsync(folder, ReadOnlyOverlayProvider.OverFiles(), cancellationToken);

    /// <summary>
    /// <see cref="CheckAsync(string, CancellationToken)"/> of what <see cref="ReplayAsync(string, CowUnreadablePolicy, CancellationToken)"/>
    /// with the same <paramref name="cowUnreadable"/> would do.
    /// </summary>
    public static Task<StoreRecoveryReport> CheckAsync(string folder, CowUnreadablePolicy cowUnreadable, CancellationToken cancellationToken = default) =>
        CheckAsync(folder, ReadOnlyOverlayProvider.OverFiles(), cancellationToken, cowUnreadable);

    /// <summary><see cref="CheckAsync(string, CancellationToken)"/> over any provider's files (tests use memory devices).</summary>
    internal static async Task<StoreRecoveryReport> CheckAsync(string folder, ReadOnlyOverlayProvider overlay, CancellationToken cancellationToken,
        CowUnreadablePolicy cowUnreadable = CowUnreadablePolicy.KeepSnapshot)
    {
        try
        {
            return await RunAsync(folder, new StoreOptions { DeviceProvider = overlay, CowUnreadablePolicy = cowUnreadable }, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            overlay.CloseFiles();
        }
    }

    /// <summary>Opens the store with <paramref name="options"/> and closes it cleanly; returns its recovery report.</summary>
    internal static async Task<StoreRecoveryReport> RunAsync(string folder, StoreOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(folder);
        var store = await SnapshotStore.OpenAsync(folder, options, cancellationToken).ConfigureAwait(false);
        try
        {
            return store.RecoveryReport ?? throw new InvalidOperationException($"{folder}: the store has no recovery report");
        }
        finally
        {
            await store.CloseAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }
}
