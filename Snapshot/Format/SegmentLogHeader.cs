using System.Buffers.Binary;

namespace Snapshot.Format;

/// <summary>
/// The header of the one region a metadata-area segment logs: 16 bytes, followed by <see cref="Count"/> entries
/// (<see cref="DiskException"/>, 16 bytes each) that belong at entry <see cref="First"/> onwards of the segment.
/// <code>
/// offset size field
///      0    4 le32 magic   0x72416e53 ("SnAr")
///      4    4 le32 first   index of the first entry in the segment
///      8    4 le32 count   entries that follow
///     12    4 le32 zero
/// </code>
/// </summary>
internal readonly record struct SegmentLogHeader(uint First, uint Count)
{
    public const uint Magic = 0x72416e53;
    public const int Size = 16;

    public void Write(Span<byte> dst)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(dst, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[4..], First);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[8..], Count);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[12..], 0);
    }

    /// <summary>Parses and checks a logged region against a segment of <paramref name="segmentEntries"/> entries; null with the problem if bad.</summary>
    public static SegmentLogHeader? TryRead(ReadOnlySpan<byte> region, int segmentEntries, out string? problem)
    {
        problem = null;
        if (region.Length < Size) { problem = $"region of {region.Length} bytes is shorter than its header"; return null; }
        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(region);
        if (magic != Magic) { problem = $"region magic 0x{magic:x8}, expected 0x{Magic:x8}"; return null; }
        uint first = BinaryPrimitives.ReadUInt32LittleEndian(region[4..]);
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(region[8..]);
        if ((long)first + count > segmentEntries) { problem = $"entries {first}..{first + count} are beyond the segment's {segmentEntries}"; return null; }
        if (region.Length != Size + count * DiskException.Size) { problem = $"region of {region.Length} bytes does not hold {count} entries"; return null; }
        return new SegmentLogHeader(first, count);
    }

    /// <inheritdoc/>
    public override string ToString() => $"SegmentLogHeader(magic 0x{Magic:x8}, first {First}, count {Count})";
}
