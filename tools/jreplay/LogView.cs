using System.Globalization;
using Journal.Format;
using Journal.Recovery;
using Snapshot.Recovery;

namespace JReplay;

/// <summary>One item copy inside a checkpoint, as printed.</summary>
/// <param name="Type">The item type number.</param>
/// <param name="TypeName">The store's name of the type, or "type N".</param>
/// <param name="Id">The item id.</param>
/// <param name="Regions">Regions of the item.</param>
/// <param name="Bytes">Bytes of the item's regions.</param>
/// <param name="Detail">What the store's decoder says of the item ("snapshot 1 segment 0: entries 0..11"), for store types.</param>
internal sealed record ItemInfo(ushort Type, string TypeName, ulong Id, int Regions, long Bytes, string? Detail);

/// <summary>One checkpoint, as printed: what <see cref="CheckpointReader"/> read, with its items described.</summary>
internal sealed record CheckpointInfo(ulong Sequence, uint TransactionId, Lsn StartLsn, Lsn CommitLsn, long Bytes, IReadOnlyList<ItemInfo> Items)
{
    public static CheckpointInfo From(Checkpoint c, IReadOnlyDictionary<ulong, string>? snapshotNames) => new(
        c.Sequence, c.TransactionId, c.StartLsn, c.CommitLsn, c.PayloadBytes,
        c.Items.Select(i => new ItemInfo(i.ItemType, StoreLogItems.TypeName(i.ItemType), i.ItemId, i.Regions.Count, i.Bytes,
            StoreLogItems.Describe(i, snapshotNames))).ToArray());
}

/// <summary>
/// What recovery says of a log, in the terms check and replay print: from a scan of a bare log
/// (<see cref="JournalRecovery.Scan"/>) or from a store's recovery (<see cref="StoreRecoveryReport"/>).
/// </summary>
internal sealed record LogState(string LogPath, bool Clean, uint LogBlocks, Lsn HeadLsn, Lsn TailLsn, Lsn NextLsn, int Records,
    int Checkpoints, ulong FirstSequence, ulong LastSequence, long Items, bool TornHead, long DiscardedBlocks, int IncompleteDropped)
{
    public static LogState From(RecoveredLog log) => new(log.Name, log.Clean, log.Log.LogBlocks, log.Log.HeadLsn, log.Log.TailLsn, log.Log.NextLsn,
        log.Log.RecordsScanned, log.Checkpoints.Count, log.Checkpoints.Count > 0 ? log.Checkpoints[0].Sequence : 0, log.LastSequence,
        log.ItemCopies, log.Log.TornHeadTruncated, log.Log.DiscardedBlocks, log.Log.IncompleteTransactionsDropped);

    public static LogState From(StoreRecoveryReport r) => new(r.LogPath, r.Clean, r.LogBlocks, r.HeadLsn, r.TailLsn, r.NextLsn, r.Records,
        r.Checkpoints, r.FirstSequence, r.LastSequence, r.ItemCopies, r.TornHead, r.DiscardedBlocks, r.IncompleteTransactionsDropped);

    /// <summary>One line: clean, or what a replay would do.</summary>
    public string Describe()
    {
        if (Clean)
            return string.Create(CultureInfo.InvariantCulture, $"{LogPath}: clean (head {HeadLsn}, {LogBlocks} blocks)");
        string range = Checkpoints > 0 ? string.Create(CultureInfo.InvariantCulture, $" (sequences {FirstSequence}..{LastSequence})") : "";
        string torn = TornHead ? string.Create(CultureInfo.InvariantCulture, $"; torn head: {DiscardedBlocks} blocks discarded") : "";
        string dropped = IncompleteDropped > 0 ? string.Create(CultureInfo.InvariantCulture, $"; {IncompleteDropped} incomplete transactions dropped") : "";
        return string.Create(CultureInfo.InvariantCulture,
            $"{LogPath}: needs replay: {Checkpoints} checkpoints{range}, {Items} item copies in {Records} records from tail {TailLsn} to head {HeadLsn}{torn}{dropped}");
    }
}
