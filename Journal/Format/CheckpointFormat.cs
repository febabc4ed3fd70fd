using System.Buffers.Binary;
using System.Globalization;

namespace Journal.Format;

// Checkpoint encoding. A checkpoint is one log transaction whose regions (one log op each) are, in order:
//
//   region 0            checkpoint header (CheckpointHeader, 32 bytes)
//   then for each item, in the order the items were last committed:
//     region            item header (ItemHeader, 16 + 4 * regionCount bytes)
//     regionCount regions: the item's own regions, exactly as its FormatLog wrote them
//
// All integers little-endian. The log's records carry the CRC; these headers carry magics and counts that recovery
// checks against the regions it was actually given (a mismatch is corruption). Written by Journal/Cil/CilPush.cs (the
// header) and Journal/Cil/LogVector.cs (the item headers); read back, with every check, only by
// Journal/Recovery/CheckpointReader.cs. docs/format.md, section "Checkpoint encoding", has the same layout with a
// worked hex example.

/// <summary>
/// The first region of a checkpoint (32 bytes, little-endian).
/// <code>
/// offset size field
///  0     4    magic          0x54504B43 ("CKPT")
///  4     2    version        1
///  6     2    header size    32
///  8     8    sequence       checkpoint (CIL context) sequence number
/// 16     4    item count     items that follow
/// 20     4    region count   regions that follow (item headers included)
/// 24     8    payload bytes  bytes of the regions that follow
/// </code>
/// Reading a header only decodes its fields; whether they are sound is decided by
/// <see cref="Recovery.CheckpointReader"/>.
/// </summary>
public readonly struct CheckpointHeader
{
    /// <summary>Bytes of a checkpoint header.</summary>
    public const int Size = 32;

    /// <summary>The magic, "CKPT" in little-endian bytes.</summary>
    public const uint MagicValue = 0x54504B43;

    /// <summary>The version written and the only one read.</summary>
    public const ushort CurrentVersion = 1;

    /// <summary>A header with the given fields (the magic, version and size default to the current ones).</summary>
    public CheckpointHeader(ulong sequence, uint itemCount, uint regionCount, ulong payloadBytes, uint magic = MagicValue,
        ushort version = CurrentVersion, ushort headerSize = Size)
    {
        Magic = magic; Version = version; HeaderSize = headerSize;
        Sequence = sequence; ItemCount = itemCount; RegionCount = regionCount; PayloadBytes = payloadBytes;
    }

    /// <summary>The magic field.</summary>
    public uint Magic { get; }

    /// <summary>The version field.</summary>
    public ushort Version { get; }

    /// <summary>The header size field.</summary>
    public ushort HeaderSize { get; }

    /// <summary>The checkpoint (CIL context) sequence number.</summary>
    public ulong Sequence { get; }

    /// <summary>Items that follow.</summary>
    public uint ItemCount { get; }

    /// <summary>Regions that follow, item headers included.</summary>
    public uint RegionCount { get; }

    /// <summary>Bytes of the regions that follow.</summary>
    public ulong PayloadBytes { get; }

    /// <summary>Writes the 32 bytes into <paramref name="dest"/>.</summary>
    public void Write(Span<byte> dest)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(dest, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(dest[4..], Version);
        BinaryPrimitives.WriteUInt16LittleEndian(dest[6..], HeaderSize);
        BinaryPrimitives.WriteUInt64LittleEndian(dest[8..], Sequence);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[16..], ItemCount);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[20..], RegionCount);
        BinaryPrimitives.WriteUInt64LittleEndian(dest[24..], PayloadBytes);
    }

    /// <summary>Decodes the fields of the first 32 bytes of <paramref name="src"/> (no checks).</summary>
    public static CheckpointHeader Read(ReadOnlySpan<byte> src) => new(
        magic: BinaryPrimitives.ReadUInt32LittleEndian(src),
        version: BinaryPrimitives.ReadUInt16LittleEndian(src[4..]),
        headerSize: BinaryPrimitives.ReadUInt16LittleEndian(src[6..]),
        sequence: BinaryPrimitives.ReadUInt64LittleEndian(src[8..]),
        itemCount: BinaryPrimitives.ReadUInt32LittleEndian(src[16..]),
        regionCount: BinaryPrimitives.ReadUInt32LittleEndian(src[20..]),
        payloadBytes: BinaryPrimitives.ReadUInt64LittleEndian(src[24..]));

    /// <summary>Every field.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"checkpoint magic=0x{Magic:x8} version={Version} header_size={HeaderSize} sequence={Sequence} items={ItemCount} regions={RegionCount} payload_bytes={PayloadBytes}");
}

/// <summary>
/// The region before each item's own regions (16 + 4 * region count bytes, little-endian).
/// <code>
/// offset size            field
///  0     4               magic         0x4D455449 ("ITEM")
///  4     2               item type     the type the recovery handler is registered for
///  6     2               region count  n, the item's regions that follow
///  8     8               item id
/// 16     4 * n           region lengths, one le32 per following region
/// </code>
/// The fixed part (first 16 bytes) is what this struct holds; the lengths follow it.
/// </summary>
public readonly struct ItemHeader
{
    /// <summary>Bytes of the fixed part.</summary>
    public const int FixedSize = 16;

    /// <summary>The magic, "ITEM" in little-endian bytes.</summary>
    public const uint MagicValue = 0x4D455449;

    /// <summary>Most regions one item may have.</summary>
    public const int MaxRegions = ushort.MaxValue;

    /// <summary>A header with the given fields (the magic defaults to the right one).</summary>
    public ItemHeader(ushort itemType, ushort regionCount, ulong itemId, uint magic = MagicValue)
    {
        Magic = magic; ItemType = itemType; RegionCount = regionCount; ItemId = itemId;
    }

    /// <summary>The magic field.</summary>
    public uint Magic { get; }

    /// <summary>The item type (<see cref="LogItem.ItemType"/>).</summary>
    public ushort ItemType { get; }

    /// <summary>Regions of the item that follow the header.</summary>
    public ushort RegionCount { get; }

    /// <summary>The item id (<see cref="LogItem.ItemId"/>).</summary>
    public ulong ItemId { get; }

    /// <summary>Bytes of an item header for <paramref name="regions"/> regions.</summary>
    public static int SizeFor(int regions) => FixedSize + 4 * regions;

    /// <summary>Writes the fixed part (the lengths are written by the vector as regions are added).</summary>
    public void WriteFixed(Span<byte> dest)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(dest, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(dest[4..], ItemType);
        BinaryPrimitives.WriteUInt16LittleEndian(dest[6..], RegionCount);
        BinaryPrimitives.WriteUInt64LittleEndian(dest[8..], ItemId);
    }

    /// <summary>Decodes the fixed part from the first 16 bytes of <paramref name="src"/> (no checks).</summary>
    public static ItemHeader Read(ReadOnlySpan<byte> src) => new(
        itemType: BinaryPrimitives.ReadUInt16LittleEndian(src[4..]),
        regionCount: BinaryPrimitives.ReadUInt16LittleEndian(src[6..]),
        itemId: BinaryPrimitives.ReadUInt64LittleEndian(src[8..]),
        magic: BinaryPrimitives.ReadUInt32LittleEndian(src));

    /// <summary>Length of region <paramref name="index"/> from a whole item header.</summary>
    public static uint RegionLength(ReadOnlySpan<byte> header, int index) =>
        BinaryPrimitives.ReadUInt32LittleEndian(header[(FixedSize + 4 * index)..]);

    /// <summary>Every field of the fixed part.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"item magic=0x{Magic:x8} type={ItemType} regions={RegionCount} id={ItemId}");
}
