using Journal.Format;

namespace Journal;

/// <summary>
/// Replays logged copies of one item type during recovery (<see cref="Recovery.JournalRecovery"/>, which
/// <see cref="MetadataJournal.Open(LogRegion, JournalOptions, IReadOnlyDictionary{ushort, IItemRecoveryHandler})"/> runs).
/// Register one handler per <see cref="LogItem.ItemType"/>; a checkpoint holding a type with no handler stops recovery
/// with a clear error before anything is applied.
/// </summary>
/// <remarks>
/// Replay is idempotent: an item's home copy carries the LSN it reflects (the LSN passed to
/// <see cref="LogItem.WriteBackAsync"/> when it was written home, or to <see cref="Apply"/> when it was replayed).
/// A logged copy from a checkpoint at or below that LSN is skipped, so replaying a log twice, or replaying a log whose
/// items were partly written home, gives the same result.
/// </remarks>
/// <example>
/// The handler of the key-value store sample's keys, each in a slot of a home file
/// (<c>docs/samples/KeyValueStore/SlotRecoveryHandler.cs</c>):
/// <include file="obj/doc-snippets.xml" path="snippets/snippet[@id='Recovery']/*"/>
/// </example>
public interface IItemRecoveryHandler
{
    /// <summary>
    /// False when item <paramref name="itemId"/> no longer has a home copy to replay into (its owner was removed, for
    /// example a metadata segment of a deleted snapshot): recovery skips its logged copies and counts them apart.
    /// The default is true.
    /// </summary>
    bool HasHome(ulong itemId) => true;

    /// <summary>The LSN the home copy of item <paramref name="itemId"/> reflects; <see cref="Lsn.Zero"/> if it has none.</summary>
    Lsn GetHomeLsn(ulong itemId);

    /// <summary>
    /// Applies the copy of item <paramref name="itemId"/> logged in the checkpoint that starts at
    /// <paramref name="checkpointLsn"/> to its home copy, and stamps the home copy with <paramref name="checkpointLsn"/>.
    /// The regions are exactly those the item's <see cref="LogItem.FormatLog"/> wrote. The memory is valid only during
    /// the call. Called in checkpoint order; only when <paramref name="checkpointLsn"/> is above
    /// <see cref="GetHomeLsn"/>.
    /// </summary>
    void Apply(ulong itemId, Lsn checkpointLsn, IReadOnlyList<ReadOnlyMemory<byte>> regions);

    /// <summary>
    /// Called once after the last checkpoint is replayed, before the log is opened for writing: make every home copy
    /// changed by <see cref="Apply"/> durable (the log tail may move past the replayed checkpoints afterwards).
    /// </summary>
    void Complete() { }

    /// <summary>
    /// <see cref="Complete"/> for the asynchronous opens (<see cref="MetadataJournal.OpenAsync"/>,
    /// <see cref="MetadataJournal.OpenOrCreateAsync"/>), which call this instead: override it to flush home copies
    /// asynchronously. The default calls <see cref="Complete"/>. A cancelled open may stop before or during it; the next
    /// open replays again (replay is idempotent).
    /// </summary>
    ValueTask CompleteAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Complete();
        return ValueTask.CompletedTask;
    }
}
