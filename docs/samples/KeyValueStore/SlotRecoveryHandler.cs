using Journal;
using Journal.Format;
using Journal.Storage;

namespace Samples.KeyValue;

#region Recovery
/// <summary>
/// Replays logged copies of <see cref="KeyItem"/>s into their home slots when the store is opened after a crash. The
/// journal calls <see cref="Apply"/> only for copies newer than the LSN the slot reflects, in checkpoint order.
/// </summary>
public sealed class SlotRecoveryHandler(BlockDevice home) : IItemRecoveryHandler
{
    /// <summary>Copies applied.</summary>
    public int Applied { get; private set; }

    /// <inheritdoc/>
    public Lsn GetHomeLsn(ulong itemId)
    {
        if (KeySlot.SectorOf(itemId) + KeySlot.Sectors > home.SectorCount) return Lsn.Zero; // beyond the file: empty
        var slot = new byte[KeySlot.Bytes];
        home.Read(KeySlot.SectorOf(itemId), slot);
        return KeySlot.TryRead(slot, out var lsn, out _) ? lsn : Lsn.Zero;
    }

    /// <inheritdoc/>
    public void Apply(ulong itemId, Lsn checkpointLsn, IReadOnlyList<ReadOnlyMemory<byte>> regions)
    {
        if (regions.Count != 1) throw new InvalidDataException($"key item {itemId}: {regions.Count} regions logged, expected 1");
        KeySlot.DecodeLogged(regions[0].Span); // refuse a copy that is no key before writing it home
        long sector = KeySlot.SectorOf(itemId);
        if (sector + KeySlot.Sectors > home.SectorCount) home.Extend(sector + KeySlot.Sectors); // the slot was added after the last growth reached the disk
        var slot = new byte[KeySlot.Bytes];
        KeySlot.Write(slot, checkpointLsn, regions[0].Span);
        home.Write(sector, slot);
        Applied++;
    }

    /// <inheritdoc/>
    public void Complete() => home.Flush(); // replayed slots are durable before the log tail may move past them
}
#endregion
