using Journal;
using Journal.Format;
using Journal.Storage;

namespace Samples.KeyValue;

#region KeyItem
/// <summary>
/// One key of the store as a log item. Its item id is its slot in the home file; its state is the key and its value
/// in the logged form of <see cref="KeySlot"/>, encoded when the value is set so that <see cref="FormatLog"/> only
/// copies. <see cref="LockedLogItem"/> does the locking and decides when <see cref="WriteHomeAsync"/> runs.
/// </summary>
public sealed class KeyItem : LockedLogItem
{
    /// <summary>The log item type of keys ("KV").</summary>
    public const ushort Type = 0x4B56;

    private byte[] _logged;

    /// <summary>An item for <paramref name="key"/> in slot <paramref name="slot"/> of <paramref name="home"/>.</summary>
    public KeyItem(BlockDevice home, ulong slot, string key, string? value, Lsn homeLsn)
        : base(Type, slot, home, homeLsn)
    {
        Key = key;
        Value = value;
        _logged = KeySlot.EncodeLogged(key, value);
    }

    /// <summary>The key.</summary>
    public string Key { get; }

    /// <summary>The value as last set; null when the key is deleted (or was never put).</summary>
    public string? Value { get; private set; }

    /// <summary>Sets the value (null deletes the key). Call it holding the item's lock, before joining a transaction.</summary>
    public void Set(string? value)
    {
        _logged = KeySlot.EncodeLogged(Key, value); // allocates here, outside every journal lock
        Value = value;
    }

    /// <inheritdoc/>
    public override LogItemSize GetLogSize() => new(1, _logged.Length);

    /// <inheritdoc/>
    public override void FormatLog(LogVectorWriter writer) => writer.AddRegion(_logged);

    /// <inheritdoc/>
    protected override async ValueTask<bool> WriteHomeAsync(Lsn lsn, CancellationToken cancellationToken)
    {
        var slot = new byte[KeySlot.Bytes];
        KeySlot.Write(slot, lsn, _logged);
        await HomeDevice.WriteAsync(KeySlot.SectorOf(ItemId), slot, cancellationToken).ConfigureAwait(false);
        return true; // the journal flushes the home device before it moves the log tail past this copy
    }
}
#endregion
