using Journal.Storage;
using Snapshot.Exceptions;

namespace Snapshot.Commit;

/// <summary>
/// How a commit round makes its exceptions durable in the COW files' metadata: through the store's journal
/// (<see cref="JournalCommitter"/>, the default) or by rewriting the metadata areas in place, the dm-snapshot scheme
/// (<see cref="DirectAreaCommitter"/>). The <see cref="CommitPipeline"/> drives either the same way: it flushes the COW
/// data of a round, calls <see cref="CommitAsync"/> (rounds one at a time, in order), then waits for
/// <see cref="WaitDurableAsync"/> in the background while the next round flushes its data.
/// </summary>
internal interface IMetadataCommitter
{
    /// <summary>Short name for status and benchmarks ("journal", "direct-area").</summary>
    string Name { get; }

    /// <summary>
    /// The metadata state of one persistent COW file, started from what its areas held at open (or empty at create):
    /// <paramref name="current"/> is the area entries are appended to next.
    /// </summary>
    CowMetadata Attach(PersistentExceptionStore store, MetadataArea current);

    /// <summary>
    /// Appends the round's exceptions (their data is durable) to their COW files' metadata, grouped by file in
    /// <paramref name="round"/>. Returns a ticket for <see cref="WaitDurableAsync"/>. Called for one round at a time, in
    /// round order; a later round's ticket covers every earlier one.
    /// </summary>
    ValueTask<ulong> CommitAsync(CommitRound round, CancellationToken cancellationToken);

    /// <summary>Completes when the round that returned <paramref name="ticket"/> (and every earlier one) is durable.</summary>
    ValueTask WaitDurableAsync(ulong ticket, CancellationToken cancellationToken);

    /// <summary>
    /// The device whose flush makes a committed round durable (the journal's log), or null when there is none (the
    /// direct-area commit writes and flushes the areas itself). The pipeline writes the next round's COW data back
    /// before it asks for a round's force, so that the force's one device flush also makes that data durable when every
    /// COW file of the round can ride it (<see cref="BlockDevice.CanFlushThrough"/>).
    /// </summary>
    BlockDevice? FlushCarrier { get; }

    /// <summary>Log forces (or durable area writes) issued, for status.</summary>
    long DurabilityWaits { get; }

    /// <summary>Commit operations: journal transactions (more than the rounds when a round was split to fit the log), or area commits.</summary>
    long Transactions { get; }
}

/// <summary>The metadata of one persistent COW file as a committer keeps it in memory.</summary>
internal abstract class CowMetadata
{
    /// <summary>The area entries are appended to now (for the status line's metadata sectors).</summary>
    public abstract long CurrentArea { get; }

    /// <summary>The snapshot was deleted: nothing of it is written any more.</summary>
    public virtual void MarkDeleted() { }

    /// <summary>
    /// Entries appended so far: the index the next entry gets in commit order (area * entries per area + index in the
    /// area). Changed-block tracking records it for every snapshot when another is created.
    /// </summary>
    public abstract long EntryCount { get; }

    /// <summary>
    /// Adds the segments held in memory whose entries may not all be home yet (journal mode; none in direct mode, whose
    /// commits write the areas before they return). A segment not listed is wholly home. Entries below a segment's
    /// <c>Count</c> never change, so a reader may copy them without its lock.
    /// </summary>
    public virtual void CollectSegmentsInMemory(List<Metadata.AreaSegmentItem> into) { }
}
