namespace Journal;

/// <summary>
/// The lock of a <see cref="LockedLogItem"/>, held until disposed. Dispose it exactly once: a second dispose (of this
/// handle or a copy of it) throws <see cref="ObjectDisposedException"/> and cannot release the lock of whoever took it
/// next. <c>default(ItemLock)</c> holds nothing and disposing it does nothing.
/// </summary>
public readonly struct ItemLock : IDisposable
{
    private readonly LockedLogItem? _item;
    private readonly long _generation;

    internal ItemLock(LockedLogItem item, long generation)
    {
        _item = item;
        _generation = generation;
    }

    /// <summary>The item whose lock this is; null for a handle that holds nothing.</summary>
    public LockedLogItem? Item => _item;

    /// <summary>Releases the item's lock.</summary>
    /// <exception cref="ObjectDisposedException">The lock was already released through this handle or a copy of it.</exception>
    public void Dispose() => _item?.Unlock(_generation);
}
