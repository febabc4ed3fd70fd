using System.Collections;
using System.Globalization;
using Journal.Format;

namespace Journal.Recovery;

/// <summary>
/// A checkpoint read back from the log and validated as a whole by <see cref="CheckpointReader"/>: its header
/// fields, its log transaction's LSNs, and its items in the order they were written.
/// </summary>
public sealed class Checkpoint
{
    internal Checkpoint(ulong sequence, uint transactionId, Lsn startLsn, Lsn commitLsn, long payloadBytes, IReadOnlyList<CheckpointItem> items)
    {
        Sequence = sequence;
        TransactionId = transactionId;
        StartLsn = startLsn;
        CommitLsn = commitLsn;
        PayloadBytes = payloadBytes;
        Items = items;
    }

    /// <summary>The checkpoint (CIL context) sequence number.</summary>
    public ulong Sequence { get; }

    /// <summary>The log transaction id the checkpoint was written as.</summary>
    public uint TransactionId { get; }

    /// <summary>
    /// The LSN of the record holding the transaction's start op. Replay applies the checkpoint's items with this LSN,
    /// and the AIL stamps home copies with it.
    /// </summary>
    public Lsn StartLsn { get; }

    /// <summary>The LSN of the record holding the commit op; checkpoints are read in this order.</summary>
    public Lsn CommitLsn { get; }

    /// <summary>Bytes of every region of the transaction, the checkpoint header included.</summary>
    public long PayloadBytes { get; }

    /// <summary>The items, in the order they were last committed.</summary>
    public IReadOnlyList<CheckpointItem> Items { get; }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"checkpoint {Sequence} tid=0x{TransactionId:x8} start={StartLsn} commit={CommitLsn} items={Items.Count} bytes={PayloadBytes}");
}

/// <summary>One item copy inside a <see cref="Checkpoint"/>: its type, id and regions, exactly as its
/// <see cref="LogItem.FormatLog"/> wrote them.</summary>
public sealed class CheckpointItem
{
    internal CheckpointItem(ushort itemType, ulong itemId, IReadOnlyList<ReadOnlyMemory<byte>> regions)
    {
        ItemType = itemType;
        ItemId = itemId;
        Regions = regions;
        long bytes = 0;
        for (int i = 0; i < regions.Count; i++) bytes += regions[i].Length;
        Bytes = bytes;
    }

    /// <summary>The item type (selects the recovery handler).</summary>
    public ushort ItemType { get; }

    /// <summary>The item id, unique within its type.</summary>
    public ulong ItemId { get; }

    /// <summary>The item's regions (the item header not included).</summary>
    public IReadOnlyList<ReadOnlyMemory<byte>> Regions { get; }

    /// <summary>Bytes of <see cref="Regions"/>.</summary>
    public long Bytes { get; }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"item type={ItemType} id={ItemId} regions={Regions.Count} bytes={Bytes}");

    /// <summary>A view of <paramref name="count"/> regions of <paramref name="all"/> from <paramref name="first"/> on (no copy).</summary>
    internal sealed class RegionSlice(IReadOnlyList<ReadOnlyMemory<byte>> all, int first, int count) : IReadOnlyList<ReadOnlyMemory<byte>>
    {
        public ReadOnlyMemory<byte> this[int index] =>
            (uint)index < (uint)count ? all[first + index] : throw new ArgumentOutOfRangeException(nameof(index));
        public int Count => count;
        public IEnumerator<ReadOnlyMemory<byte>> GetEnumerator() { for (int i = 0; i < count; i++) yield return all[first + i]; }
        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
    }
}
