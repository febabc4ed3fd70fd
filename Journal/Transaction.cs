using Journal.Cil;

namespace Journal;

/// <summary>
/// A set of item changes committed together, holding a log-space reservation. Obtain one from
/// <see cref="MetadataJournal.BeginTransactionAsync"/>, join the changed items with <see cref="AddItem"/>, then
/// <see cref="Commit"/> (or <see cref="CommitAsync"/>), and finally <see cref="Dispose"/> it. Disposing without
/// committing cancels the transaction and gives its reservation back.
/// </summary>
/// <remarks>
/// Transactions are recycled: after <see cref="Dispose"/> the object may be handed to another caller, so never touch
/// it again (dispose exactly once; a <c>using</c> declaration does this). One transaction is used by one thread at a
/// time. An item may be joined to one open transaction at a time (see <see cref="LogItem"/>).
/// </remarks>
public sealed class Transaction : IDisposable
{
    private const int StatePooled = 0, StateOpen = 1, StateCommitting = 2, StateDone = 3;

    private MetadataJournal? _journal;
    private int _state;
    internal LogItem[] Items = new LogItem[4];
    internal LogItemSize[] Sizes = new LogItemSize[4];
    internal LogVector?[] Prepared = new LogVector?[4];
    internal int ItemCount;
    internal long Reserved;

    internal Transaction() { }

    internal void Start(MetadataJournal journal, long reserved)
    {
        _journal = journal;
        Reserved = reserved;
        ItemCount = 0;
        _state = StateOpen;
    }

    /// <summary>Items joined so far.</summary>
    public int Count => ItemCount;

    /// <summary>Log bytes reserved for this transaction now.</summary>
    public long ReservedBytes => Reserved;

    /// <summary>True until the transaction is committed or cancelled.</summary>
    public bool IsOpen => _state == StateOpen;

    /// <summary>
    /// Joins <paramref name="item"/> to the transaction and marks it dirty: its state at commit time is logged.
    /// Joining an item twice is harmless.
    /// </summary>
    /// <exception cref="InvalidOperationException">The transaction is not open, or the item is joined to another open transaction.</exception>
    public void AddItem(LogItem item)
    {
        ArgumentNullException.ThrowIfNull(item);
        if (_state != StateOpen) throw new InvalidOperationException("transaction is not open (already committed, cancelled or disposed)");
        if (ReferenceEquals(item.Owner, this)) return;
        if (Interlocked.CompareExchange(ref item.Owner, this, null) is not null)
            throw new InvalidOperationException($"log item {item.ItemType}:{item.ItemId} is already joined to another open transaction");
        if (ItemCount == Items.Length)
        {
            Array.Resize(ref Items, ItemCount * 2);
            Array.Resize(ref Sizes, ItemCount * 2);
            Array.Resize(ref Prepared, ItemCount * 2);
        }
        Items[ItemCount++] = item;
    }

    /// <summary>
    /// Commits the joined items into the current checkpoint and returns its sequence (pass it to
    /// <see cref="MetadataJournal.ForceAsync"/> to wait until the changes are durable). Blocks the calling thread if the
    /// journal must wait for memory or the hard CIL limit; from asynchronous code prefer <see cref="CommitAsync"/>
    /// (many threads blocked here can starve the thread pool the push runs on).
    /// </summary>
    public ulong Commit()
    {
        var vt = CommitAsync();
        return vt.IsCompletedSuccessfully ? vt.Result : vt.AsTask().GetAwaiter().GetResult();
    }

    /// <summary>
    /// Commits the joined items into the current checkpoint and returns its sequence. Completes synchronously, without
    /// allocating, unless the journal must wait for memory, log space or the hard CIL limit. Cancellation only applies
    /// before the items are inserted (then nothing is committed).
    /// </summary>
    public async ValueTask<ulong> CommitAsync(CancellationToken cancellationToken = default)
    {
        if (_state != StateOpen) throw new InvalidOperationException("transaction is not open (already committed, cancelled or disposed)");
        var journal = _journal!;
        _state = StateCommitting;
        try
        {
            return await journal.Cil.CommitAsync(this, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            Finish(journal);
        }
    }

    /// <summary>Cancels the transaction if it was not committed, gives back its reservation, and recycles it.</summary>
    public void Dispose()
    {
        if (_state == StatePooled) return;
        var journal = _journal!;
        if (_state == StateOpen) Finish(journal);
        _journal = null;
        _state = StatePooled;
        journal.ReturnTransaction(this);
    }

    private void Finish(MetadataJournal journal)
    {
        for (int i = 0; i < ItemCount; i++)
        {
            Interlocked.CompareExchange(ref Items[i].Owner, null, this);
            Items[i] = null!;
        }
        ItemCount = 0;
        long r = Reserved;
        Reserved = 0;
        journal.Space.Release(r);
        _state = StateDone;
    }
}
