using System.Globalization;
using Journal;
using Journal.Format;
using Journal.Log;
using Journal.Recovery;
using Journal.Storage;
using Snapshot.Format;
using Snapshot.Metadata;
using Snapshot.Storage;

namespace Snapshot.Recovery;

/// <summary>
/// The escape for a journal recovery refuses (<c>jreplay zero-log</c>, like <c>xfs_repair -L</c>): discard the log so
/// the store opens again, and leave it honest: every snapshot whose exceptions may have been only in the lost log is
/// marked invalid, with the reason, instead of silently reading wrong data.
/// </summary>
/// <remarks>
/// <para><b>Cases</b>:</para>
/// <list type="number">
/// <item><b>Superblock.</b> The newest good copy of <c>store.sb</c> is the starting point (neither copy good: refused,
/// nothing to reset to). When the other copy is damaged the good one may be a change behind (the store refuses to
/// open for that reason, <see cref="StoreRecovery"/> case 4); a reset takes it as it is, says so, and writes it over the
/// damaged copy, so the store opens.</item>
/// <item><b>Unreadable log</b> (recovery refuses it, or the file is missing or too small): any persistent snapshot may
/// have had exceptions only in it, so every valid or merging persistent snapshot is marked invalid. Superblock changes
/// that were only in the log are lost with it.</item>
/// <item><b>Readable log that needs replay</b>: its superblock copies are applied in memory (so no create, delete or
/// invalidation is lost), and every snapshot with a metadata segment in the log that its home does not yet reflect (or
/// whose COW file cannot be read) is marked invalid. <c>jreplay replay</c> would lose nothing here; the plan says so.</item>
/// <item><b>Clean log</b>: nothing is marked; only the log is rewritten.</item>
/// <item><b>Writes, in order</b>: the COW header of each snapshot marked invalid gets <c>valid = 0</c> (flushed);
/// then, if it changes (a snapshot marked, superblock copies from the log, or a damaged copy of <c>store.sb</c> to
/// replace), the superblock goes home through the store's own two-copy code (next generation, <c>home_lsn</c> 0,
/// flushed); a clean log with nothing to mark changes nothing but the log;
/// then the log is formatted at a cycle above every LSN a home copy still carries (the superblock copies, the home-LSN
/// slots of the snapshots that stay valid, and every sound record of the old log, from which all such LSNs came), so
/// replay never skips a new checkpoint for an old stamp; flushed.
/// A crash in between leaves either the old log (run zero-log again, or replay it if it is readable) or the new one.</item>
/// <item><b>COW files</b> the resulting superblock does not list are not touched here; the plan names them, because the
/// next open removes them.</item>
/// </list>
/// </remarks>
public static class LogReset
{
    /// <summary>What a reset would do (read-only; the folder is not changed and not locked).</summary>
    /// <exception cref="JournalException"><c>store.sb</c> has no good copy, or the folder is not a store.</exception>
    public static LogResetPlan Plan(string folder) => Plan(folder, FileDeviceProvider.Instance, write: false);

    /// <summary>
    /// Resets the journal of the store in <paramref name="folder"/> (see the cases) under the store's lock, and returns
    /// what was done.
    /// </summary>
    /// <exception cref="StoreInUseException">The store is open elsewhere.</exception>
    /// <exception cref="JournalException"><c>store.sb</c> has no good copy, or the folder is not a store.</exception>
    public static LogResetPlan Run(string folder) => Plan(folder, FileDeviceProvider.Instance, write: true);

    /// <summary>Smallest and largest log a reset creates when the journal file is missing or too small (snapctl init's rule).</summary>
    private const long MinNewLogBytes = 2 << 20, MaxNewLogBytes = 128 << 20;

    internal static LogResetPlan Plan(string folder, IDeviceProvider provider, bool write)
    {
        ArgumentNullException.ThrowIfNull(folder);
        string sbPath = Path.Combine(folder, SnapshotStore.SuperblockFileName);
        string logPath = Path.Combine(folder, SnapshotStore.JournalFileName);
        if (!provider.Exists(sbPath)) throw new StoreNotFoundException(folder, sbPath);
        RefuseSymbolicLink(sbPath);
        RefuseSymbolicLink(logPath);
        using var folderLock = write ? provider.Lock(folder) : null;
        using var sbDev = provider.Open(sbPath);

        // Case 1: the superblock to start from.
        var home = Superblock.ReadHome(sbDev);
        var sb = home.Current;
        var layout = new CowLayout(sb.ChunkSectors);
        string? sbNote = home.OtherMayBeNewer
            ? $"{home.File}: {home.Other.Label} is damaged ({home.Other.Problem}); the good {home.Good.Label} ({home.Good.GenerationText}) may be a change behind"
            : null;

        // Cases 2 to 4: what the log holds.
        BlockDevice? logDev = null;
        RecoveredLog? log = null;
        string? unreadable = null;
        try
        {
            if (!provider.Exists(logPath)) unreadable = $"{logPath}: missing";
            else
            {
                logDev = OpenLog(provider, logPath);
                log = JournalRecovery.Scan(StoreRecovery.RegionOf(logDev));
                StoreLogItems.Validate(log, sb);
            }
        }
        catch (JournalException e) when (e is not RefusedLogException)
        {
            log = null;
            unreadable = e.Message;
        }

        try
        {
            var target = sb;
            var invalidate = new Dictionary<ulong, string>();
            using var areas = new AreaRecoveryHandler(provider, layout, sb.OriginSectors,
                id => target.Snapshots.FirstOrDefault(r => r.Id == id && IsLive(r)) is { Name: { } n } ? Path.Combine(folder, n + SnapshotStore.CowExtension) : null,
                logPath, log?.Checkpoints ?? []);
            if (log is null)
            {
                // Case 2: every live persistent snapshot may have lost exceptions.
                foreach (var r in sb.Snapshots.Where(IsLive)) invalidate[r.Id] = "its exceptions may have been only in the unreadable journal";
            }
            else if (!log.Clean)
            {
                // Case 3: superblock copies applied in memory; snapshots with segments not yet home.
                var sbHandler = new SuperblockRecoveryHandler(sbDev, sb, log);
                JournalRecovery.Replay(log, new Dictionary<ushort, IItemRecoveryHandler> { [SuperblockItem.Type] = sbHandler }, [SuperblockItem.Type]);
                target = sbHandler.Current;
                foreach (var c in log.Checkpoints)
                    foreach (var item in c.Items.Where(i => i.ItemType == AreaSegmentItem.Type))
                    {
                        var (id, segment) = AreaSegmentItem.SplitId(item.ItemId);
                        if (invalidate.ContainsKey(id) || !target.Snapshots.Any(r => r.Id == id && IsLive(r))) continue;
                        try
                        {
                            if (!areas.HasHome(item.ItemId)) invalidate[id] = "its COW file is missing, so the exceptions in the journal have no home";
                            else if (areas.GetHomeLsn(item.ItemId) < c.StartLsn)
                                invalidate[id] = string.Create(CultureInfo.InvariantCulture, $"metadata segment {segment} in the journal (checkpoint {c.Sequence}) is not yet written home");
                        }
                        catch (JournalException e)
                        {
                            invalidate[id] = $"its COW file cannot be read ({e.Message})";
                        }
                    }
            }

            // The cycle the new log starts at: above every LSN a home copy that stays in use carries.
            var highest = Lsn.FromValue(sb.HomeLsn);
            if (home.Other.Parsed is { } other) highest = Lsn.Max(highest, Lsn.FromValue(other.HomeLsn));
            if (log is not null) highest = Lsn.Max(highest, log.Log.NextLsn);
            else if (logDev is not null && logDev.SectorCount >= LogFormat.MinLogBlocks) highest = Lsn.Max(highest, HighestSoundRecord(logDev));
            foreach (var r in target.Snapshots.Where(r => IsLive(r) && !invalidate.ContainsKey(r.Id)))
            {
                try { highest = Lsn.Max(highest, areas.HighestSlotLsn(r.Id)); }
                catch (JournalException e) { invalidate[r.Id] = $"its COW file cannot be read ({e.Message})"; }
            }
            if (highest.Cycle >= LogFormat.MaxCycle)
                throw new CorruptionException(sbPath, -1, highest, "a home copy carries an LSN too high to start a new log after it",
                    string.Create(CultureInfo.InvariantCulture, $"a cycle below {LogFormat.MaxCycle}"), highest.Cycle.ToString(CultureInfo.InvariantCulture));
            uint newCycle = highest.Cycle + 1;

            var records = target.Snapshots.Select(r => invalidate.ContainsKey(r.Id)
                ? r with { State = SnapshotStateCode.Invalid, Reason = InvalidReasonCode.LogReset }
                : r).ToArray();
            var next = target with { Generation = sb.Generation + 1, HomeLsn = 0, Snapshots = records };
            var listed = new HashSet<string>(records.Select(r => Path.GetFullPath(Path.Combine(folder, r.Name + SnapshotStore.CowExtension))), StringComparer.Ordinal);
            var unlisted = provider.List(folder, SnapshotStore.CowExtension).Where(f => !listed.Contains(Path.GetFullPath(f))).Order(StringComparer.Ordinal).ToArray();
            long logBytes = logDev is not null && logDev.SectorCount >= StoreJournal.MinLogBlocks
                ? logDev.SectorCount * BlockDevice.SectorSize
                : Math.Clamp(sb.OriginSectors * BlockDevice.SectorSize / 32, MinNewLogBytes, MaxNewLogBytes);

            var plan = new LogResetPlan(folder, logPath, log is null ? null : LogStateText(log), unreadable,
                target.Snapshots.Where(r => invalidate.ContainsKey(r.Id))
                    .Select(r => (r.Name, r.State == SnapshotStateCode.Merging
                        ? invalidate[r.Id] + "; its unfinished merge into the origin is abandoned (the origin keeps the chunks the merge had copied)"
                        : invalidate[r.Id])).ToArray(),
                unlisted, sbNote, newCycle, logBytes / BlockDevice.SectorSize);
            if (!write) return plan;

            // Case 5: the writes, in order. store.sb is written only when it changes (or to replace a damaged copy);
            // its home LSN stays below the new log's LSNs either way.
            foreach (var id in invalidate.Keys) MarkCowInvalid(provider, folder, target, id, layout);
            if (invalidate.Count > 0 || !ReferenceEquals(target, sb) || home.OtherMayBeNewer) next.Write(sbDev);
            logDev = RecreateIfNeeded(provider, logPath, logDev, logBytes / BlockDevice.SectorSize);
            MetadataJournal.FormatLog(StoreJournal.Region(logDev), newCycle);
            return plan with { Done = true };
        }
        finally
        {
            logDev?.Dispose();
        }
    }

    /// <summary>
    /// The LSN of the newest sound record (header, stamps and CRC checked) anywhere in an unreadable log: every LSN a
    /// home copy was stamped with came from a record of this log, so a new log started above it cannot collide.
    /// </summary>
    private static Lsn HighestSoundRecord(BlockDevice logDev)
    {
        var reader = new LogReader(StoreJournal.Region(logDev));
        var highest = Lsn.Zero;
        uint n = reader.Region.BlockCount;
        var buf = new byte[256 * LogFormat.BlockSize];
        for (uint b = 0; b < n; b += 256)
        {
            int count = (int)Math.Min(256, n - b);
            logDev.Read(b, buf.AsSpan(0, count * LogFormat.BlockSize));
            for (int i = 0; i < count; i++)
            {
                var block = buf.AsSpan(i * LogFormat.BlockSize, LogFormat.BlockSize);
                if (System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(block) != LogFormat.RecordMagic) continue;
                uint cycle = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(block[4..]);
                if (cycle is 0 or > LogFormat.MaxCycle) continue;
                var lsn = new Lsn(cycle, b + (uint)i);
                try
                {
                    reader.ReadRecord(lsn);
                    highest = Lsn.Max(highest, lsn);
                }
                catch (CorruptionException)
                {
                    // not a sound record: its cycle says nothing
                }
            }
        }
        return highest;
    }

    private static bool IsLive(SnapshotRecord r) =>
        r.Kind == SnapshotKindCode.Persistent && r.State is SnapshotStateCode.Valid or SnapshotStateCode.Merging;

    private static string LogStateText(RecoveredLog log) => log.Clean
        ? "clean"
        : string.Create(CultureInfo.InvariantCulture, $"needs replay: {log.Checkpoints.Count} checkpoints, {log.ItemCopies} item copies from tail {log.Log.TailLsn} to head {log.Log.HeadLsn}");

    /// <summary>Writes <c>valid = 0</c> into the COW header of snapshot <paramref name="id"/>, when its file can be read.</summary>
    private static void MarkCowInvalid(IDeviceProvider provider, string folder, Superblock sb, ulong id, CowLayout layout)
    {
        var rec = sb.Snapshots.First(r => r.Id == id);
        string path = Path.Combine(folder, rec.Name + SnapshotStore.CowExtension);
        if (!provider.Exists(path)) return;
        try
        {
            using var cow = provider.Open(path);
            var sector0 = new byte[BlockDevice.SectorSize];
            cow.Read(0, sector0);
            var header = CowHeader.Read(sector0, path, layout.ChunkSectors, id);
            (header with { Valid = 0 }).Write(sector0);
            cow.Write(0, sector0);
            cow.Flush();
        }
        catch (Exception e) when (e is JournalException or IOException)
        {
            // The superblock marks the snapshot invalid whatever its header says; a header that cannot be read or
            // written is left as it is (the store never reads an invalid snapshot's COW file).
        }
    }

    /// <summary>
    /// Refuses a store file that is a symbolic link: a reset rewrites the log (and may rewrite <c>store.sb</c>), and must
    /// never write through a link into a file the store did not make.
    /// </summary>
    private static void RefuseSymbolicLink(string path)
    {
        if (new FileInfo(path).LinkTarget is { } target)
            throw new DeviceOpenException(path, DeviceOpenError.NotRegularFile,
                $"is a symbolic link (to {target}); a reset rewrites only the store's own files, so nothing was changed");
    }

    /// <summary>
    /// Opens the journal for reading and writing. A log that cannot be opened (permission denied, in use, not a regular
    /// file) is refused before anything is written: it is not an unreadable log, and treating it as one would mark
    /// every snapshot invalid and then fail to rewrite it.
    /// </summary>
    private static BlockDevice OpenLog(IDeviceProvider provider, string logPath)
    {
        try
        {
            return provider.Open(logPath);
        }
        catch (DeviceOpenException e) when (e.Error is not (DeviceOpenError.Missing or DeviceOpenError.BadLength))
        {
            throw new RefusedLogException(logPath, e.Error == DeviceOpenError.Other ? DeviceOpenError.AccessDenied : e.Error,
                $"cannot be opened for reading and writing ({e.Problem}); a reset rewrites it, so nothing was changed", e);
        }
    }

    /// <summary>A log <see cref="OpenLog"/> could not open: the reset is refused (a log that is merely unreadable is not).</summary>
    private sealed class RefusedLogException(string path, DeviceOpenError error, string problem, Exception inner)
        : DeviceOpenException(path, error, problem, inner);

    /// <summary>The journal device, recreated at <paramref name="sectors"/> when it is missing or too small.</summary>
    private static BlockDevice RecreateIfNeeded(IDeviceProvider provider, string logPath, BlockDevice? logDev, long sectors)
    {
        if (logDev is not null && logDev.SectorCount >= StoreJournal.MinLogBlocks) return logDev;
        logDev?.Dispose();
        provider.Delete(logPath);
        return provider.Create(logPath, sectors);
    }
}

/// <summary>What <see cref="LogReset"/> does (or would do) to a store.</summary>
/// <param name="Folder">The store folder.</param>
/// <param name="LogPath">The journal file.</param>
/// <param name="LogState">"clean" or what the readable log holds; null when it is unreadable.</param>
/// <param name="Unreadable">Why the log is unreadable; null when it is readable.</param>
/// <param name="Invalidated">Snapshots marked invalid: name and why.</param>
/// <param name="UnlistedCowFiles">COW files no snapshot lists: the next open of the store removes those the store made.</param>
/// <param name="SuperblockNote">A damaged copy of <c>store.sb</c>, when there is one.</param>
/// <param name="NewCycle">The cycle the new log starts at.</param>
/// <param name="LogBlocks">Size of the new log in blocks.</param>
public sealed record LogResetPlan(string Folder, string LogPath, string? LogState, string? Unreadable,
    IReadOnlyList<(string Name, string Why)> Invalidated, IReadOnlyList<string> UnlistedCowFiles,
    string? SuperblockNote, uint NewCycle, long LogBlocks)
{
    /// <summary>True once the reset was carried out.</summary>
    public bool Done { get; init; }

    /// <summary>The warning, one line each: what is discarded and what that costs.</summary>
    public IEnumerable<string> WarningLines()
    {
        yield return Unreadable is null
            ? $"{LogPath}: the journal is readable ({LogState}); everything in it is discarded"
            : $"{LogPath}: the journal is unreadable ({Unreadable}); everything in it is discarded";
        if (Unreadable is null && LogState != "clean")
            yield return $"{LogPath}: the journal is readable: 'jreplay replay {Folder}' replays it without losing anything, unless the store's files stop it";
        if (Unreadable is not null)
            yield return $"{Folder}: snapshot creates, deletes and invalidations that were only in the journal are lost";
        if (SuperblockNote is not null) yield return SuperblockNote;
        foreach (var (name, why) in Invalidated)
            yield return $"snapshot '{name}' is marked invalid: {why}";
        foreach (var f in UnlistedCowFiles)
            yield return $"{f}: no snapshot lists this COW file; the next open of the store removes it if the store made it (its header names the store)";
        yield return Invalidated.Count == 0 && UnlistedCowFiles.Count == 0
            ? $"{Folder}: no snapshot loses anything; the origin is not changed"
            : UnlistedCowFiles.Count > 0
                ? $"{Folder}: the origin is not changed; a snapshot whose COW file is named above as unlisted is lost with it (unless the file is what an interrupted create left)"
                : $"{Folder}: the origin is not changed";
    }
}
