using System.Buffers.Binary;
using System.Collections;
using Journal.Format;

namespace Journal.Cil;

/// <summary>
/// One formatted copy of a log item: its item header and its regions in one pooled buffer. A vector is either an
/// item's <i>shadow</i> (owned by the item, not in any context) or an item's <i>active</i> vector, owned by the CIL
/// context whose sequence is in <see cref="Sequence"/> and linked into that context's list.
/// </summary>
/// <remarks>
/// <para>Buffer layout: <c>[item header: 16 + 4 * reportedRegions bytes reserved][region 0][region 1]...</c>. The
/// header is written for the regions actually added (its length table grows as regions are added), so the header
/// region is the first <c>16 + 4 * RegionCount</c> bytes; the region data starts after the space reserved for the
/// reported region count.</para>
/// <para>The vector is its own region list (<see cref="IReadOnlyList{T}"/>) for the log sink: element 0 is the item
/// header, element i is region i-1. Handing it to the sink allocates nothing.</para>
/// <para>Threading: written only by the committer of its item under the shared context lock while its context is
/// current; after the context is switched out, read only by that context's push; returned to the pool by the push
/// completion. See <see cref="CommittedItemList"/> for the ownership rule.</para>
/// </remarks>
internal sealed class LogVector : IReadOnlyList<ReadOnlyMemory<byte>>
{
    /// <summary>Approximate bytes of the vector object itself, charged with its buffer in statistics.</summary>
    public const int ShellBytes = 96;

    internal byte[] Buffer = Array.Empty<byte>();
    internal LogItem? Item;
    internal ulong Sequence;
    internal LogVector? Prev, Next;
    internal int ReportedRegions, ReportedBytes, DataStart;
    internal int RegionCount, DataBytes;
    internal long Cost;
    private int _iterIndex, _iterOffset;

    /// <summary>Buffer bytes needed for an item of <paramref name="size"/>.</summary>
    public static int CapacityFor(LogItemSize size) => ItemHeader.SizeFor(size.Regions) + size.Bytes;

    /// <summary>True when this vector's buffer can hold an item of <paramref name="size"/>.</summary>
    public bool CanHold(LogItemSize size) => CapacityFor(size) <= Buffer.Length;

    /// <summary>Bytes of the header region plus all item regions (what the vector puts in the log).</summary>
    public int TotalBytes => ItemHeader.SizeFor(RegionCount) + DataBytes;

    /// <summary>Prepares for formatting an item of <paramref name="size"/> (which must fit).</summary>
    public void Reset(LogItemSize size)
    {
        ReportedRegions = size.Regions;
        ReportedBytes = size.Bytes;
        DataStart = ItemHeader.SizeFor(size.Regions);
        RegionCount = 0;
        DataBytes = 0;
        _iterIndex = 0;
        _iterOffset = DataStart;
    }

    /// <summary>Adds a region; fails (before touching the buffer) if the item writes more than it reported.</summary>
    public Span<byte> AddRegion(int length)
    {
        if (length < 0 || RegionCount >= ReportedRegions || length > ReportedBytes - DataBytes)
            throw new InvalidOperationException(
                $"log item {Item?.ItemType}:{Item?.ItemId} formatted region {RegionCount} of {length} bytes beyond the {ReportedRegions} regions and {ReportedBytes} bytes it reported");
        BinaryPrimitives.WriteUInt32LittleEndian(Buffer.AsSpan(ItemHeader.FixedSize + 4 * RegionCount), (uint)length);
        var span = Buffer.AsSpan(DataStart + DataBytes, length);
        RegionCount++;
        DataBytes += length;
        return span;
    }

    /// <summary>Writes the fixed part of the item header once formatting is done.</summary>
    public void FinishHeader(ushort itemType, ulong itemId) =>
        new ItemHeader(itemType, (ushort)RegionCount, itemId).WriteFixed(Buffer);

    /// <summary>Region list length: the header plus the item's regions.</summary>
    public int Count => 1 + RegionCount;

    /// <summary>Element 0 is the item header; element i is the item's region i-1.</summary>
    [System.Runtime.CompilerServices.IndexerName("Region")]
    public ReadOnlyMemory<byte> this[int index]
    {
        get
        {
            if ((uint)index >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(index));
            if (index == 0) return new ReadOnlyMemory<byte>(Buffer, 0, ItemHeader.SizeFor(RegionCount));
            int r = index - 1;
            if (r < _iterIndex) { _iterIndex = 0; _iterOffset = DataStart; }
            while (_iterIndex < r) { _iterOffset += RegionLength(_iterIndex); _iterIndex++; }
            return new ReadOnlyMemory<byte>(Buffer, _iterOffset, RegionLength(r));
        }
    }

    private int RegionLength(int r) => (int)BinaryPrimitives.ReadUInt32LittleEndian(Buffer.AsSpan(ItemHeader.FixedSize + 4 * r));

    /// <summary>Enumerates the regions.</summary>
    public IEnumerator<ReadOnlyMemory<byte>> GetEnumerator()
    {
        for (int i = 0; i < Count; i++) yield return this[i];
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
