using Journal.Cil;
using Journal.Format;
using Journal.Storage;

namespace Journal;

/// <summary>
/// A piece of metadata that can be logged: it reports the size of its current state (<see cref="GetLogSize"/>), formats
/// the state into regions (<see cref="FormatLog"/>), writes it to its home location (<see cref="WriteBackAsync"/>) on
/// <see cref="HomeDevice"/>. Recovery of the logged copies is done by an <see cref="IItemRecoveryHandler"/> registered
/// for <see cref="ItemType"/>.
/// </summary>
/// <remarks>
/// <para><b>Subclass <see cref="LockedLogItem"/></b>, which does the locking, the pinned check and the home-LSN
/// bookkeeping of <see cref="WriteBackAsync"/> and takes its home device at construction. Subclass
/// <see cref="LogItem"/> directly only for an item that needs its own locking; it must then follow the write-back
/// contract below itself.</para>
/// <para><b>Serialisation.</b> The user serialises changes to one item: modify it and commit the transaction that
/// holds it under the item's own lock, so that one item is joined to at most one open transaction and
/// <see cref="FormatLog"/> sees a consistent state.</para>
/// <para><b>Lifecycle inside the journal.</b> Committing formats the item into its <i>active</i> log vector (owned by
/// the current CIL context) or, if that vector is too small or belongs to a context already being pushed, into its
/// <i>shadow</i> vector, prepared outside the locks. The item is <see cref="IsPinned"/> while a checkpoint holding it
/// is not yet durable; once it is, the item enters the AIL at that checkpoint's start LSN, and the AIL later calls
/// <see cref="WriteBackAsync"/> and moves the log tail past it.</para>
/// </remarks>
public abstract class LogItem
{
    // Commit path state (see CommittedItemList for who may touch what, and under which lock).
    internal LogVector? Active;        // vector in the context with sequence ActiveSeq (owned by that context)
    internal ulong ActiveSeq;          // sequence of the context that owns Active
    internal LogVector? Shadow;        // owned by the item; swapped in when Active cannot be used
    internal TransactionState? Owner;  // the open transaction this item is joined to
    internal int PinCount;             // contexts holding this item that are not yet durable

    // AIL state (protected by the AIL lock).
    internal Lsn AilLsn;
    internal LogItem? AilPrev, AilNext;
    internal bool InAil;

    /// <summary>Creates an item of type <paramref name="itemType"/> with the identifier <paramref name="itemId"/>.</summary>
    protected LogItem(ushort itemType, ulong itemId)
    {
        ItemType = itemType;
        ItemId = itemId;
    }

    /// <summary>The item type: selects the <see cref="IItemRecoveryHandler"/> during recovery.</summary>
    public ushort ItemType { get; }

    /// <summary>The item identifier, unique within its type (for example the home block number).</summary>
    public ulong ItemId { get; }

    /// <summary>
    /// True while a checkpoint holding this item's latest committed state is not yet durable. A pinned item must not
    /// be written home: <see cref="WriteBackAsync"/> implementations check it under the item's lock.
    /// </summary>
    public bool IsPinned => Volatile.Read(ref PinCount) > 0;

    /// <summary>True while the item is in the AIL (its latest state is durable in the log but not yet home).</summary>
    public bool IsInAil => Volatile.Read(ref InAil);

    /// <summary>
    /// The size of the item's current state as <see cref="FormatLog"/> will write it. Called during commit, outside
    /// every journal lock (the journal sizes the item's shadow vector from it, allocating if needed).
    /// </summary>
    public abstract LogItemSize GetLogSize();

    /// <summary>
    /// Writes the item's current state as regions into <paramref name="writer"/>, at most the regions and bytes the
    /// last <see cref="GetLogSize"/> reported. Called under the shared CIL context lock: it must not allocate, block or
    /// call into the journal. A throw here shuts the journal down (the vector may be half written).
    /// </summary>
    public abstract void FormatLog(LogVectorWriter writer);

    /// <summary>
    /// Writes the item's current state to its home location, stamped as reflecting <paramref name="lsn"/>; the AIL
    /// flushes <see cref="HomeDevice"/> afterwards. Called by the AIL, never concurrently for one item, with the
    /// item unpinned at the time of the call. Implementations <i>try</i> to take the item's lock (the one modifiers
    /// hold from change to commit) without waiting for it, and return <see langword="false"/> without writing if it is
    /// held, or if the item <see cref="IsPinned"/> once they hold it (it was committed again); the AIL retries such
    /// items later. Never wait for the item's lock here: its holder may be waiting for log space that only this
    /// write-back can free.
    /// </summary>
    /// <returns>True if the home copy was written.</returns>
    public abstract ValueTask<bool> WriteBackAsync(Lsn lsn, CancellationToken cancellationToken);

    /// <summary>
    /// The device holding the home copy; every item must name it. After a batch of write-backs the AIL flushes each
    /// distinct home device once, before it moves the log tail past the items written. Return null only when
    /// <see cref="WriteBackAsync"/> makes the home copy durable itself (it flushes before it returns true), or when the
    /// item has no home copy any more; otherwise the log tail may move past a log copy whose home copy is not durable.
    /// </summary>
    public abstract BlockDevice? HomeDevice { get; }

    /// <inheritdoc/>
    public override string ToString() => $"{GetType().Name}({ItemType}:{ItemId})";
}
