using System.Diagnostics;
using Journal.Format;

namespace Journal.Recovery;

/// <summary>
/// Recovery of a journal in two steps: <see cref="Scan"/> reads the log once and validates all of it (records and
/// checkpoints); <see cref="Replay(RecoveredLog, IReadOnlyDictionary{ushort, IItemRecoveryHandler}, IReadOnlyCollection{ushort}?, CancellationToken)"/>
/// applies the checkpoints to the items' home copies through their recovery handlers. Opening a journal is scan, replay,
/// the handlers' <see cref="IItemRecoveryHandler.Complete"/>, then <see cref="MetadataJournal.Open(RecoveredLog, JournalOptions)"/>
/// (which opens the log for writing); a user with items whose homes depend on each other (the snapshot store: the
/// superblock decides which metadata segments have a home) runs several replays of one scan, each for some item types.
/// </summary>
/// <remarks>
/// <para><b>Scan rules</b>:</para>
/// <list type="number">
/// <item><b>Records.</b> The log's records are found and checked by <see cref="LogRecovery"/> (its rules 1 to 11: head
/// and tail, CRC, cycle stamps, torn head, corruption in the middle, transaction reassembly). This is the only read of
/// the log.</item>
/// <item><b>Checkpoints.</b> Every complete transaction is read as a checkpoint by one <see cref="CheckpointReader"/>,
/// in commit order (its cases 1 to 6: header, increasing sequence, counts, item headers, region lengths, totals).</item>
/// <item><b>All before anything.</b> The scan returns only when the whole log passed rules 1 and 2; any refusal is a
/// <see cref="CorruptionException"/>, and nothing has been applied or written.</item>
/// </list>
/// <para><b>Replay rules</b>, for one replay of a scanned log:</para>
/// <list type="number">
/// <item><b>Selection.</b> With an item-type filter only items of those types are replayed; the others are left for
/// another replay of the same scan.</item>
/// <item><b>Handlers first.</b> Before anything is applied, every selected item in the whole log must have a handler
/// for its type; otherwise a <see cref="JournalException"/> names the log, the checkpoint's LSN and sequence, the type and
/// the item.</item>
/// <item><b>Order.</b> Checkpoints are replayed in commit order, the items of each in the order they were written.</item>
/// <item><b>No home.</b> An item whose handler says it has no home any more (<see cref="IItemRecoveryHandler.HasHome"/>
/// false, for example a metadata segment of a deleted snapshot) is skipped and counted.</item>
/// <item><b>Idempotent.</b> An item whose home copy reflects the checkpoint's start LSN or a later one
/// (<see cref="IItemRecoveryHandler.GetHomeLsn"/>) is skipped: replaying a log twice, or a log whose items were partly
/// written home, gives the same homes.</item>
/// <item><b>Apply.</b> Otherwise the item is applied with the checkpoint's start LSN (the LSN the AIL stamps home copies
/// with).</item>
/// <item><b>Completion is the caller's.</b> A replay never calls <see cref="IItemRecoveryHandler.Complete"/>: the
/// caller calls each handler's once, after its last replay and before the log is opened for writing.</item>
/// </list>
/// </remarks>
public static class JournalRecovery
{
    /// <summary>
    /// Reads the log in <paramref name="region"/> once and validates all of it (scan rules 1 to 3). Writes nothing.
    /// </summary>
    /// <exception cref="CorruptionException">The log is damaged anywhere but at its head, or a checkpoint is unsound.</exception>
    public static RecoveredLog Scan(LogRegion region, CancellationToken cancellationToken = default)
    {
        long start = Stopwatch.GetTimestamp();
        var transactions = new List<RecoveredTransaction>();
        var result = LogRecovery.Recover(region, transactions.Add, cancellationToken);     // scan rule 1
        var reader = new CheckpointReader(region.Name);
        var checkpoints = new Checkpoint[transactions.Count];
        for (int i = 0; i < checkpoints.Length; i++) checkpoints[i] = reader.Read(transactions[i]);   // scan rule 2
        return new RecoveredLog(result, checkpoints) { ScanTime = Stopwatch.GetElapsedTime(start) };   // scan rule 3
    }

    /// <summary>
    /// Replays the checkpoints of <paramref name="log"/> into <paramref name="handlers"/> (replay rules 1 to 7), only
    /// items of <paramref name="itemTypes"/> when given. The counts are added to <paramref name="log"/>'s.
    /// <paramref name="cancellationToken"/> is checked before each checkpoint: a cancelled replay stops between two
    /// checkpoints (replaying again from the start gives the same result, rule 5) and adds nothing to the counts.
    /// </summary>
    /// <exception cref="JournalException">A selected item has no handler for its type (nothing was applied).</exception>
    /// <exception cref="OperationCanceledException">Cancelled between two checkpoints.</exception>
    public static ReplayResult Replay(RecoveredLog log, IReadOnlyDictionary<ushort, IItemRecoveryHandler> handlers,
        IReadOnlyCollection<ushort>? itemTypes = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(log);
        long start = Stopwatch.GetTimestamp();
        var result = Replay(log.Name, log.Checkpoints, handlers, itemTypes, cancellationToken);
        log.AddReplay(itemTypes ?? log.ItemTypes, result, Stopwatch.GetElapsedTime(start));
        return result;
    }

    /// <summary>
    /// Replays <paramref name="checkpoints"/> (read by a <see cref="CheckpointReader"/>, in commit order) of the log
    /// named <paramref name="logName"/> into <paramref name="handlers"/>: replay rules 1 to 7.
    /// </summary>
    /// <exception cref="JournalException">A selected item has no handler for its type (nothing was applied).</exception>
    public static ReplayResult Replay(string logName, IReadOnlyList<Checkpoint> checkpoints, IReadOnlyDictionary<ushort, IItemRecoveryHandler> handlers,
        IReadOnlyCollection<ushort>? itemTypes = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(logName);
        ArgumentNullException.ThrowIfNull(checkpoints);
        ArgumentNullException.ThrowIfNull(handlers);
        bool Selected(ushort type) => itemTypes is null || itemTypes.Contains(type);   // rule 1

        // Rule 2: every selected item has a handler, before anything is applied.
        RequireHandlers(logName, checkpoints, t => !Selected(t) || handlers.ContainsKey(t));

        long touched = 0, applied = 0, skipped = 0, homeless = 0;
        foreach (var c in checkpoints)                       // rule 3
        {
            cancellationToken.ThrowIfCancellationRequested();
            bool any = false;
            foreach (var item in c.Items)
            {
                if (!Selected(item.ItemType)) continue;
                any = true;
                var handler = handlers[item.ItemType];
                if (!handler.HasHome(item.ItemId)) { homeless++; continue; }                    // rule 4
                if (c.StartLsn <= handler.GetHomeLsn(item.ItemId)) { skipped++; continue; }    // rule 5
                handler.Apply(item.ItemId, c.StartLsn, item.Regions);                           // rule 6
                applied++;
            }
            if (any) touched++;
        }
        return new ReplayResult(touched, applied, skipped, homeless);                           // rule 7: no Complete here
    }

    /// <summary>
    /// Replay rule 2 for a user that replays in several steps: throws unless every item in <paramref name="log"/> is of
    /// one of <paramref name="handledTypes"/>, before any step applies anything.
    /// </summary>
    /// <exception cref="JournalException">An item of another type (names the log, LSN, checkpoint, type and item).</exception>
    public static void RequireHandlers(RecoveredLog log, IReadOnlyCollection<ushort> handledTypes)
    {
        ArgumentNullException.ThrowIfNull(log);
        ArgumentNullException.ThrowIfNull(handledTypes);
        RequireHandlers(log.Name, log.Checkpoints, handledTypes.Contains);
    }

    private static void RequireHandlers(string logName, IReadOnlyList<Checkpoint> checkpoints, Func<ushort, bool> handled)
    {
        foreach (var c in checkpoints)
            foreach (var item in c.Items)
                if (!handled(item.ItemType))
                    throw new JournalException(
                        $"{logName}: LSN {c.StartLsn}: checkpoint {c.Sequence} holds item type {item.ItemType} (item {item.ItemId}) and no recovery handler is registered for it");
    }
}
