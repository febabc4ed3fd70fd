using System.Globalization;
using Journal.Format;

namespace Journal.Recovery;

/// <summary>
/// What <see cref="JournalRecovery.Scan"/> found in a log: where its live part is (<see cref="Log"/>) and every
/// complete checkpoint in it, already validated. Replaying it (<see cref="JournalRecovery.Replay(RecoveredLog, IReadOnlyDictionary{ushort, IItemRecoveryHandler}, IReadOnlyCollection{ushort}?, CancellationToken)"/>)
/// and opening the journal on it (<see cref="MetadataJournal.Open(RecoveredLog, JournalOptions)"/>) read nothing
/// more from the log.
/// </summary>
public sealed class RecoveredLog
{
    private readonly HashSet<ushort> _types = new();
    private readonly HashSet<ushort> _replayedTypes = new();

    internal RecoveredLog(RecoveryResult log, IReadOnlyList<Checkpoint> checkpoints)
    {
        Log = log;
        Checkpoints = checkpoints;
        foreach (var c in checkpoints)
        {
            ItemCopies += c.Items.Count;
            foreach (var i in c.Items) _types.Add(i.ItemType);
        }
        LastSequence = checkpoints.Count > 0 ? checkpoints[^1].Sequence : 0;
    }

    /// <summary>The log's head, tail and record counts.</summary>
    public RecoveryResult Log { get; }

    /// <summary>The log's region.</summary>
    public LogRegion Region => Log.Region;

    /// <summary>The log's name (its device), as error messages give it.</summary>
    public string Name => Log.Region.Name;

    /// <summary>True when the log was closed cleanly: there is nothing to replay.</summary>
    public bool Clean => Log.Clean;

    /// <summary>The complete checkpoints of the live log, in commit order.</summary>
    public IReadOnlyList<Checkpoint> Checkpoints { get; }

    /// <summary>The sequence of the last checkpoint (0 when there is none); a journal opened on the log continues after it.</summary>
    public ulong LastSequence { get; }

    /// <summary>Item copies in all checkpoints.</summary>
    public long ItemCopies { get; }

    /// <summary>The item types that occur in the checkpoints.</summary>
    public IReadOnlyCollection<ushort> ItemTypes => _types;

    /// <summary>Item copies applied by the replays so far.</summary>
    public long ItemsApplied { get; private set; }

    /// <summary>Item copies the replays so far skipped because their home copy already reflected them.</summary>
    public long ItemsSkipped { get; private set; }

    /// <summary>Item copies the replays so far skipped because their handler said the item no longer has a home.</summary>
    public long ItemsWithoutHome { get; private set; }

    /// <summary>Time spent scanning the log.</summary>
    public TimeSpan ScanTime { get; internal init; }

    /// <summary>Time spent in the replays so far (including their handlers' applies).</summary>
    public TimeSpan ReplayTime { get; private set; }

    /// <summary>What recovery found and did, without the checkpoints themselves (kept by a journal once it is open).</summary>
    public JournalRecoverySummary Summarize(TimeSpan completeTime = default) => new(
        Log.RecordsScanned, Checkpoints.Count, ItemCopies, ItemsApplied, ItemsSkipped, ItemsWithoutHome, Clean,
        Log.TornHeadTruncated, Log.DiscardedBlocks, Log.IncompleteTransactionsDropped, Log.TailLsn, Log.HeadLsn,
        ScanTime + ReplayTime + completeTime);

    /// <summary>The item types some replay has covered (see <see cref="MetadataJournal.Open(RecoveredLog, JournalOptions)"/>).</summary>
    internal IReadOnlyCollection<ushort> ReplayedTypes => _replayedTypes;

    internal void AddReplay(IEnumerable<ushort> types, ReplayResult result, TimeSpan elapsed)
    {
        ReplayTime += elapsed;
        foreach (var t in types) _replayedTypes.Add(t);
        ItemsApplied += result.ItemsApplied;
        ItemsSkipped += result.ItemsSkipped;
        ItemsWithoutHome += result.ItemsWithoutHome;
    }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{Log}; checkpoints={Checkpoints.Count} item-copies={ItemCopies} last-sequence={LastSequence}");
}

/// <summary>What one <see cref="JournalRecovery.Replay(RecoveredLog, IReadOnlyDictionary{ushort, IItemRecoveryHandler}, IReadOnlyCollection{ushort}?, CancellationToken)"/> did.</summary>
/// <param name="Checkpoints">Checkpoints that held at least one item of a replayed type.</param>
/// <param name="ItemsApplied">Item copies applied to their home copies.</param>
/// <param name="ItemsSkipped">Item copies skipped because the home copy already reflected their checkpoint or a later one.</param>
/// <param name="ItemsWithoutHome">Item copies skipped because their handler said the item no longer has a home.</param>
public readonly record struct ReplayResult(long Checkpoints, long ItemsApplied, long ItemsSkipped, long ItemsWithoutHome);

/// <summary>
/// What a journal's recovery found and did (<see cref="MetadataJournal.Recovery"/>): the log scanned, the checkpoints
/// replayed, whether a torn write at the head was cut off, and how long it took.
/// </summary>
/// <param name="RecordsScanned">Log records read between the tail and the head.</param>
/// <param name="Checkpoints">Complete checkpoints found in the live log (0 after a clean close).</param>
/// <param name="ItemCopies">Item copies in those checkpoints.</param>
/// <param name="ItemsApplied">Item copies applied to their home copies.</param>
/// <param name="ItemsSkipped">Item copies skipped because the home copy already reflected them.</param>
/// <param name="ItemsWithoutHome">Item copies skipped because their handler said the item no longer has a home.</param>
/// <param name="Clean">True when the log was closed cleanly: nothing was replayed.</param>
/// <param name="TornHeadTruncated">True when a torn write at the head (a crash mid-write) was cut off.</param>
/// <param name="DiscardedBlocks">Blocks of that torn write.</param>
/// <param name="IncompleteTransactionsDropped">Transactions whose commit record never reached the log (not replayed).</param>
/// <param name="TailLsn">The log's tail when it was opened.</param>
/// <param name="HeadLsn">The log's head when it was opened.</param>
/// <param name="Elapsed">Time spent scanning, replaying and completing the handlers.</param>
public sealed record JournalRecoverySummary(int RecordsScanned, int Checkpoints, long ItemCopies, long ItemsApplied, long ItemsSkipped,
    long ItemsWithoutHome, bool Clean, bool TornHeadTruncated, long DiscardedBlocks, int IncompleteTransactionsDropped, Lsn TailLsn,
    Lsn HeadLsn, TimeSpan Elapsed)
{
    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{(Clean ? "clean" : "replayed")}: {RecordsScanned} records, {Checkpoints} checkpoints, {ItemsApplied} item copies applied, {ItemsSkipped} skipped{(TornHeadTruncated ? $", torn head cut off ({DiscardedBlocks} blocks)" : "")}, tail {TailLsn}, head {HeadLsn}, {Elapsed.TotalMilliseconds:0.#} ms");
}
