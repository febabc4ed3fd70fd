using Journal.Cil;

namespace Journal;

/// <summary>
/// A set of item changes committed together, holding a log-space reservation. Obtain one from
/// <see cref="MetadataJournal.BeginTransactionAsync"/>, join the changed items with <see cref="AddItem"/>, then
/// <see cref="Commit"/> (or <see cref="CommitAsync"/>), and finally <see cref="Dispose"/> it. Disposing without
/// committing cancels the transaction and gives its reservation back.
/// </summary>
/// <remarks>
/// <para>A <see cref="Transaction"/> is a handle to state the journal recycles: <see cref="Dispose"/> gives the state
/// back to the journal's pool, and the next <see cref="MetadataJournal.BeginTransactionAsync"/> may hand it to another
/// caller under a new handle. Each handle remembers the generation of the state it was issued for, so once disposed
/// every copy of it is dead: any further use, including a second <see cref="Dispose"/>, throws
/// <see cref="ObjectDisposedException"/> and cannot reach the state of the caller the pool handed it to next. (Unlike
/// most disposable types a second dispose is reported, not ignored: it is a bug that, with recycled state, would have
/// cancelled someone else's transaction.) A <c>using</c> declaration disposes exactly once.</para>
/// <para>One transaction is used by one thread at a time. An item may be joined to one open transaction at a time (see
/// <see cref="LogItem"/>). <c>default(Transaction)</c> is a disposed handle.</para>
/// </remarks>
/// <example>
/// Reserve, lock the item, change it, join it, commit, release the lock, force (from
/// <c>docs/samples/KeyValueStore/KeyValueStore.cs</c>):
/// <include file="obj/doc-snippets.xml" path="snippets/snippet[@id='Put']/*"/>
/// </example>
public readonly struct Transaction : IDisposable
{
    private readonly TransactionState? _state;
    private readonly long _generation;

    internal Transaction(TransactionState state)
    {
        _state = state;
        _generation = Volatile.Read(ref state.Generation);
    }

    /// <summary>Items joined so far.</summary>
    /// <exception cref="ObjectDisposedException">The transaction was disposed.</exception>
    public int Count => State.ItemCount;

    /// <summary>Log bytes reserved for this transaction now.</summary>
    /// <exception cref="ObjectDisposedException">The transaction was disposed.</exception>
    public long ReservedBytes => State.Reserved;

    /// <summary>True until the transaction is committed, cancelled or disposed.</summary>
    public bool IsOpen => _state is { } s && Volatile.Read(ref s.Generation) == _generation && s.Phase == TransactionState.PhaseOpen;

    /// <summary>
    /// Joins <paramref name="item"/> to the transaction and marks it dirty: its state at commit time is logged.
    /// Joining an item twice is harmless.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The transaction was disposed.</exception>
    /// <exception cref="InvalidOperationException">The transaction is committed or cancelled, the item is joined to another open transaction, or it is a <see cref="LockedLogItem"/> whose lock is not held.</exception>
    public void AddItem(LogItem item) => State.AddItem(item);

    /// <summary>
    /// Commits the joined items into the current checkpoint and returns its sequence (pass it to
    /// <see cref="MetadataJournal.ForceAsync"/> to wait until the changes are durable). Blocks the calling thread if the
    /// journal must wait for memory or the hard CIL limit; from asynchronous code prefer <see cref="CommitAsync"/>
    /// (many threads blocked here can starve the thread pool the push runs on).
    /// </summary>
    /// <exception cref="ObjectDisposedException">The transaction was disposed.</exception>
    /// <exception cref="InvalidOperationException">The transaction is already committed or cancelled, or a joined <see cref="LockedLogItem"/>'s lock is no longer held (nothing is committed; the transaction stays open).</exception>
    public ulong Commit()
    {
        var vt = State.CommitAsync(CancellationToken.None);
        return vt.IsCompletedSuccessfully ? vt.Result : vt.AsTask().GetAwaiter().GetResult();
    }

    /// <summary>
    /// Commits the joined items into the current checkpoint and returns its sequence. Completes synchronously, without
    /// allocating, unless the journal must wait for memory, log space or the hard CIL limit. Cancellation only applies
    /// before the items are inserted (then nothing is committed). Await it before disposing the transaction.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The transaction was disposed.</exception>
    /// <exception cref="InvalidOperationException">The transaction is already committed or cancelled, or a joined <see cref="LockedLogItem"/>'s lock is no longer held (nothing is committed; the transaction stays open).</exception>
    public ValueTask<ulong> CommitAsync(CancellationToken cancellationToken = default) => State.CommitAsync(cancellationToken);

    /// <summary>
    /// Cancels the transaction if it was not committed, gives back its reservation, and returns its state to the
    /// journal's pool. Call it exactly once.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The transaction was already disposed (its state may belong to another caller now).</exception>
    /// <exception cref="InvalidOperationException">A <see cref="CommitAsync"/> of this transaction has not completed yet.</exception>
    public void Dispose()
    {
        var s = State;
        if (s.Phase == TransactionState.PhaseCommitting)
            throw new InvalidOperationException("transaction is being committed: await CommitAsync before disposing it");
        // The generation moves on exactly once: of two racing disposes of copies of one handle, one returns the state.
        if (Interlocked.CompareExchange(ref s.Generation, _generation + 1, _generation) != _generation) throw Disposed();
        s.Recycle();
    }

    /// <summary>The state this handle was issued for, while it still is.</summary>
    private TransactionState State
    {
        get
        {
            var s = _state;
            if (s is null || Volatile.Read(ref s.Generation) != _generation) throw Disposed();
            return s;
        }
    }

    private static ObjectDisposedException Disposed() => new(nameof(Transaction),
        "the transaction was disposed and its state returned to the journal's pool (it may belong to another transaction now)");
}

/// <summary>
/// The recycled state behind a <see cref="Transaction"/> handle. <see cref="Generation"/> moves on each time the state
/// goes back to the pool, which invalidates every handle issued before.
/// </summary>
internal sealed class TransactionState
{
    public const int PhasePooled = 0, PhaseOpen = 1, PhaseCommitting = 2, PhaseDone = 3;

    private MetadataJournal? _journal;
    internal int Phase;
    internal long Generation;
    internal LogItem[] Items = new LogItem[4];
    internal LogItemSize[] Sizes = new LogItemSize[4];
    internal LogVector?[] Prepared = new LogVector?[4];
    internal int ItemCount;
    internal long Reserved;

    /// <summary>Makes the state an open transaction of <paramref name="journal"/> holding <paramref name="reserved"/> bytes.</summary>
    internal void Start(MetadataJournal journal, long reserved)
    {
        _journal = journal;
        Reserved = reserved;
        ItemCount = 0;
        Phase = PhaseOpen;
    }

    internal void AddItem(LogItem item)
    {
        ArgumentNullException.ThrowIfNull(item);
        if (Phase != PhaseOpen) throw new InvalidOperationException("transaction is not open (already committed or cancelled)");
        ThrowIfUnlocked(item);
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

    internal async ValueTask<ulong> CommitAsync(CancellationToken cancellationToken)
    {
        if (Phase != PhaseOpen) throw new InvalidOperationException("transaction is not open (already committed or cancelled)");
        for (int i = 0; i < ItemCount; i++) ThrowIfUnlocked(Items[i]);
        var journal = _journal!;
        Phase = PhaseCommitting;
        try
        {
            return await journal.Cil.CommitAsync(this, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            Finish(journal);
        }
    }

    /// <summary>A <see cref="LockedLogItem"/> is joined and committed only while its lock is held.</summary>
    private static void ThrowIfUnlocked(LogItem item)
    {
        if (item is LockedLogItem { IsLocked: false })
            throw new InvalidOperationException(
                $"{item}: its lock is not held (take it with LockAsync before changing the item and hold it until the commit returns)");
    }

    /// <summary>Cancels an open transaction and gives the state back to the pool. The caller moved <see cref="Generation"/> on.</summary>
    internal void Recycle()
    {
        var journal = _journal!;
        if (Phase == PhaseOpen) Finish(journal);
        _journal = null;
        Phase = PhasePooled;
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
        Phase = PhaseDone;
    }
}
