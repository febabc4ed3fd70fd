using Journal.Format;
using Journal.Storage;

namespace Journal;

/// <summary>
/// A log item that does the standard locking and write-back for you. Subclass it and write only how the item's state is
/// logged (<see cref="LogItem.GetLogSize"/> and <see cref="LogItem.FormatLog"/>) and how it is written to its home
/// location (<see cref="WriteHomeAsync"/>); replaying logged copies after a crash is the job of an
/// <see cref="IItemRecoveryHandler"/> registered for <see cref="LogItem.ItemType"/>.
/// </summary>
/// <remarks>
/// <para><b>The item's lock.</b> Every item carries one lock (an asynchronous mutex). Take it with
/// <see cref="LockAsync"/> (or <see cref="Lock"/>) before changing the item, keep it until the transaction that holds the
/// change has committed, and release it by disposing the <see cref="ItemLock"/>. A transaction refuses to join, or to
/// commit, an item whose lock nobody holds (it checks that the lock is held, not by whom), so
/// <see cref="LogItem.FormatLog"/> and <see cref="WriteHomeAsync"/> see a state that nobody is changing. Begin the transaction (which may wait for log space) before taking the lock:
/// the write-back that frees log space needs the lock.</para>
/// <para><b>Write-back</b> (<see cref="WriteBackAsync"/>, called by the journal's AIL once the item's checkpoint is
/// durable): tries the lock without waiting and returns "not now" if it is held; returns "not now" if the item
/// <see cref="LogItem.IsPinned"/> (committed again into a checkpoint not yet durable); otherwise calls
/// <see cref="WriteHomeAsync"/> with the LSN the home copy will reflect and, once it returns true, records that LSN as
/// <see cref="HomeLsn"/>. Items returned "not now" stay in the AIL and are retried.</para>
/// <para><b>Home device.</b> Named at construction and never null: after a batch of write-backs the AIL flushes each
/// distinct home device once, before it moves the log tail past the items written, so a home copy is durable before
/// the log copy it replaces may be overwritten.</para>
/// </remarks>
/// <example>
/// One item per key of a key-value store (<c>docs/samples/KeyValueStore/KeyItem.cs</c>):
/// <include file="obj/doc-snippets.xml" path="snippets/snippet[@id='KeyItem']/*"/>
/// </example>
public abstract class LockedLogItem : LogItem
{
    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly BlockDevice _homeDevice;
    private long _lockGeneration;
    private ulong _homeLsn;

    /// <summary>
    /// Creates an item of type <paramref name="itemType"/> with the identifier <paramref name="itemId"/>, whose home
    /// copy lives on <paramref name="homeDevice"/> and already reflects <paramref name="homeLsn"/> (<see cref="Lsn.Zero"/>
    /// for an item with no home copy yet).
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="homeDevice"/> is null.</exception>
    protected LockedLogItem(ushort itemType, ulong itemId, BlockDevice homeDevice, Lsn homeLsn = default)
        : base(itemType, itemId)
    {
        ArgumentNullException.ThrowIfNull(homeDevice);
        _homeDevice = homeDevice;
        _homeLsn = homeLsn.Value;
    }

    /// <summary>The device holding the home copy, as named at construction; the AIL flushes it after write-backs.</summary>
    public sealed override BlockDevice HomeDevice => _homeDevice;

    /// <summary>
    /// The LSN the home copy reflects: the one given at construction, then the LSN of each successful
    /// <see cref="WriteHomeAsync"/>.
    /// </summary>
    public Lsn HomeLsn => Lsn.FromValue(Volatile.Read(ref _homeLsn));

    /// <summary>True while someone holds the item's lock (a modifier, or the AIL writing the item home).</summary>
    public bool IsLocked => _lock.CurrentCount == 0;

    /// <summary>
    /// Takes the item's lock, waiting while another modifier (or a write-back) holds it. Hold it from the change until
    /// the transaction holding the change has committed; dispose the result to release it.
    /// </summary>
    /// <exception cref="OperationCanceledException">The token was cancelled before the lock was taken.</exception>
    public ValueTask<ItemLock> LockAsync(CancellationToken cancellationToken = default)
    {
        if (_lock.Wait(0)) return new ValueTask<ItemLock>(Held());
        return LockSlowAsync(cancellationToken);
    }

    private async ValueTask<ItemLock> LockSlowAsync(CancellationToken cancellationToken)
    {
        // Why we wait: another modifier holds the item until its commit returns, or the AIL is writing it home.
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        return Held();
    }

    /// <summary>
    /// Takes the item's lock, blocking the calling thread while someone else holds it. From asynchronous code prefer
    /// <see cref="LockAsync"/>.
    /// </summary>
    public ItemLock Lock()
    {
        _lock.Wait();
        return Held();
    }

    /// <summary>Takes the item's lock if nobody holds it; never waits.</summary>
    /// <param name="held">The lock when the call returns true; a handle that holds nothing otherwise.</param>
    public bool TryLock(out ItemLock held)
    {
        if (_lock.Wait(0))
        {
            held = Held();
            return true;
        }
        held = default;
        return false;
    }

    private ItemLock Held() => new(this, Volatile.Read(ref _lockGeneration));

    /// <summary>Releases the lock a handle of generation <paramref name="generation"/> holds; a second release throws.</summary>
    internal void Unlock(long generation)
    {
        // The generation moves on exactly once per acquisition: of two releases of copies of one handle, one releases.
        if (Interlocked.CompareExchange(ref _lockGeneration, generation + 1, generation) != generation)
            throw new ObjectDisposedException(nameof(ItemLock), $"{this}: the item's lock was already released through this handle");
        _lock.Release();
    }

    /// <summary>
    /// The standard write-back: tries the lock without waiting, checks that the item is not pinned, calls
    /// <see cref="WriteHomeAsync"/> and records <see cref="HomeLsn"/>. Returns false (the AIL retries later) when the
    /// lock is held, the item is pinned, or <see cref="WriteHomeAsync"/> returned false. Never waits for the lock: its
    /// holder may be waiting for log space that only this write-back can free.
    /// </summary>
    public sealed override async ValueTask<bool> WriteBackAsync(Lsn lsn, CancellationToken cancellationToken)
    {
        if (!_lock.Wait(0)) return false; // a modifier holds it: retried later
        try
        {
            if (IsPinned) return false;   // committed again, into a checkpoint not yet durable
            if (!await WriteHomeAsync(lsn, cancellationToken).ConfigureAwait(false)) return false;
            Volatile.Write(ref _homeLsn, lsn.Value);
            return true;
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>
    /// Writes the item's current state to its home location on <see cref="HomeDevice"/>, together with
    /// <paramref name="lsn"/> (the LSN the home copy now reflects: the recovery handler's
    /// <see cref="IItemRecoveryHandler.GetHomeLsn"/> reads it back, so replay skips log copies at or below it). The
    /// journal holds the item's lock and has checked that it is not pinned. The write need not be durable: the AIL
    /// flushes the home device afterwards. Return false, having written nothing, to be retried later.
    /// </summary>
    /// <returns>True if the home copy was written.</returns>
    protected abstract ValueTask<bool> WriteHomeAsync(Lsn lsn, CancellationToken cancellationToken);
}
