using System.Globalization;
using Journal.Format;
using Journal.Recovery;

namespace Snapshot.Recovery;

/// <summary>What a store's recovery found in its journal and did (<see cref="StoreRecovery"/>).</summary>
public sealed class StoreRecoveryReport
{
    internal StoreRecoveryReport(RecoveredLog log, long superblockCopiesApplied, long segmentCopiesApplied, string? superblockFallback, TimeSpan elapsed)
    {
        Elapsed = elapsed;
        LogPath = log.Name;
        LogBlocks = log.Log.LogBlocks;
        Clean = log.Clean;
        TailLsn = log.Log.TailLsn;
        HeadLsn = log.Log.HeadLsn;
        NextLsn = log.Log.NextLsn;
        Records = log.Log.RecordsScanned;
        Checkpoints = log.Checkpoints.Count;
        FirstSequence = log.Checkpoints.Count > 0 ? log.Checkpoints[0].Sequence : 0;
        LastSequence = log.LastSequence;
        ItemCopies = log.ItemCopies;
        SuperblockCopiesApplied = superblockCopiesApplied;
        SegmentCopiesApplied = segmentCopiesApplied;
        ItemsSkipped = log.ItemsSkipped;
        ItemsWithoutHome = log.ItemsWithoutHome;
        TornHead = log.Log.TornHeadTruncated;
        DiscardedBlocks = log.Log.DiscardedBlocks;
        IncompleteTransactionsDropped = log.Log.IncompleteTransactionsDropped;
        SuperblockFallback = superblockFallback;
    }

    /// <summary>The journal file.</summary>
    public string LogPath { get; }

    /// <summary>Time the recovery took: reading the superblock, the scan, both replays and their completion.</summary>
    public TimeSpan Elapsed { get; }

    /// <summary>Size of the journal in 512-byte blocks.</summary>
    public uint LogBlocks { get; }

    /// <summary>True when the last close was clean: there was nothing to replay.</summary>
    public bool Clean { get; }

    /// <summary>The oldest LSN recovery needed (the next LSN for a clean log).</summary>
    public Lsn TailLsn { get; }

    /// <summary>The LSN of the last valid record.</summary>
    public Lsn HeadLsn { get; }

    /// <summary>Where the journal continues.</summary>
    public Lsn NextLsn { get; }

    /// <summary>Records read and validated between tail and head.</summary>
    public int Records { get; }

    /// <summary>Complete checkpoints in the log.</summary>
    public int Checkpoints { get; }

    /// <summary>Sequence of the first checkpoint (0 when none).</summary>
    public ulong FirstSequence { get; }

    /// <summary>Sequence of the last checkpoint (0 when none).</summary>
    public ulong LastSequence { get; }

    /// <summary>Item copies in all checkpoints.</summary>
    public long ItemCopies { get; }

    /// <summary>Superblock copies applied.</summary>
    public long SuperblockCopiesApplied { get; }

    /// <summary>Metadata segment copies applied.</summary>
    public long SegmentCopiesApplied { get; }

    /// <summary>Item copies applied in all.</summary>
    public long ItemsApplied => SuperblockCopiesApplied + SegmentCopiesApplied;

    /// <summary>Item copies skipped because their home already reflected them.</summary>
    public long ItemsSkipped { get; }

    /// <summary>Segment copies skipped because their snapshot is no longer listed (deleted, invalid, transient) or its COW file is gone.</summary>
    public long ItemsWithoutHome { get; }

    /// <summary>True when a torn write at the head was cut off.</summary>
    public bool TornHead { get; }

    /// <summary>Blocks cut off at the head.</summary>
    public long DiscardedBlocks { get; }

    /// <summary>Transactions without a commit record, never replayed.</summary>
    public int IncompleteTransactionsDropped { get; }

    /// <summary>When a copy of <c>store.sb</c> was damaged and the journal brought the other up to date: what happened; else null.</summary>
    public string? SuperblockFallback { get; }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{LogPath}: {(Clean ? "clean" : "replayed")} tail {TailLsn} head {HeadLsn}: {Checkpoints} checkpoints, {ItemCopies} item copies, " +
        $"{ItemsApplied} applied ({SuperblockCopiesApplied} superblock, {SegmentCopiesApplied} segment), {ItemsSkipped} already home, {ItemsWithoutHome} without a home, {Elapsed.TotalMilliseconds:0.#} ms");
}
