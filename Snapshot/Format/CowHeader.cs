using System.Buffers.Binary;
using Journal.Format;

namespace Snapshot.Format;

/// <summary>
/// The header at the start of chunk 0 of a persistent COW file. The first 16 bytes are the dm-snapshot persistent
/// header; the store keeps its own fields after them, in bytes dm-snapshot never reads, so a cleanly closed COW file
/// stays a valid dm-snapshot persistent COW device.
/// </summary>
/// <remarks>
/// <code>
/// offset  size  field
///      0     4  le32 magic        0x70416e53 ("SnAp" read as little-endian bytes "SnAp")
///      4     4  le32 valid        1 = usable, 0 = invalidated (COW full or I/O error)
///      8     4  le32 version      1
///     12     4  le32 chunk_size   sectors
///     16    48  zero
///     64     4  le32 store magic  0x506e534a ("JSnP")
///     68     4  le32 store format 1
///     72     8  le64 snapshot id  unique within the store, never reused
///     80     4  le32 lsn slots    number of home-LSN slots that follow at offset 128
///     84     4  le32 crc32c       of bytes 64..83
///     88    40  zero
///    128  16*n  home-LSN slots    { le64 area + 1 (0 = empty), le64 LSN }, see HomeLsnSlots
/// </code>
/// </remarks>
internal readonly record struct CowHeader(uint Magic, uint Valid, uint Version, uint ChunkSectors, ulong SnapshotId, uint SlotCount)
{
    /// <summary>"SnAp" as a little-endian 32-bit value.</summary>
    public const uint SnapMagic = 0x70416e53;

    /// <summary>The only dm-snapshot persistent format version.</summary>
    public const uint DiskVersion = 1;

    /// <summary>"JSnP": the store's own fields are present.</summary>
    public const uint StoreMagic = 0x506e534a;

    /// <summary>Version of the store's own fields.</summary>
    public const uint StoreVersion = 1;

    /// <summary>Bytes of the fixed header (the home-LSN slots start here).</summary>
    public const int Size = 128;

    /// <summary>Offset of the store's own fields.</summary>
    public const int StoreFieldsOffset = 64;

    /// <summary>Offset of the first home-LSN slot.</summary>
    public const int SlotsOffset = 128;

    /// <summary>Most home-LSN slots kept (fewer when the chunk is small).</summary>
    public const int MaxSlots = 1024;

    /// <summary>Home-LSN slots for a chunk size: as many 16-byte slots as fit after the header, at most <see cref="MaxSlots"/>.</summary>
    public static int SlotsFor(int chunkSectors) => (int)Math.Min(MaxSlots, ((long)chunkSectors * 512 - SlotsOffset) / 16);

    /// <summary>Bytes of chunk 0 the store uses (header and slots).</summary>
    public static int UsedBytes(int chunkSectors) => SlotsOffset + 16 * SlotsFor(chunkSectors);

    /// <summary>A fresh header for a new, valid snapshot.</summary>
    public static CowHeader New(int chunkSectors, ulong snapshotId) =>
        new(SnapMagic, 1, DiskVersion, (uint)chunkSectors, snapshotId, (uint)SlotsFor(chunkSectors));

    /// <summary>True when the snapshot is usable.</summary>
    public bool IsValid => Valid != 0;

    /// <summary>Writes the fixed header into the first <see cref="Size"/> bytes of <paramref name="dst"/>.</summary>
    public void Write(Span<byte> dst)
    {
        dst[..Size].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(dst, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[4..], Valid);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[8..], Version);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[12..], ChunkSectors);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[64..], StoreMagic);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[68..], StoreVersion);
        BinaryPrimitives.WriteUInt64LittleEndian(dst[72..], SnapshotId);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[80..], SlotCount);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[84..], Crc32C.Compute(dst.Slice(64, 20)));
    }

    /// <summary>
    /// Parses and validates chunk 0. Throws a <see cref="Journal.JournalException"/> naming <paramref name="file"/> on a
    /// bad magic, version, chunk size, snapshot id or checksum.
    /// </summary>
    public static CowHeader Read(ReadOnlySpan<byte> src, string file, int expectedChunkSectors, ulong expectedId)
    {
        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(src);
        if (magic != SnapMagic)
            throw new Journal.JournalException($"{file}: not a persistent COW file: magic 0x{magic:x8} at offset 0, expected 0x{SnapMagic:x8} (\"SnAp\")");
        uint valid = BinaryPrimitives.ReadUInt32LittleEndian(src[4..]);
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(src[8..]);
        if (version != DiskVersion)
            throw new Journal.JournalException($"{file}: unsupported COW format version {version} at offset 8, expected {DiskVersion}");
        uint chunk = BinaryPrimitives.ReadUInt32LittleEndian(src[12..]);
        if (chunk != (uint)expectedChunkSectors)
            throw new Journal.JournalException($"{file}: COW chunk size is {chunk} sectors (offset 12), the store's is {expectedChunkSectors}");
        uint storeMagic = BinaryPrimitives.ReadUInt32LittleEndian(src[64..]);
        if (storeMagic != StoreMagic)
            throw new Journal.JournalException($"{file}: COW header has no store fields: magic 0x{storeMagic:x8} at offset 64, expected 0x{StoreMagic:x8}");
        uint crc = BinaryPrimitives.ReadUInt32LittleEndian(src[84..]);
        uint actual = Crc32C.Compute(src.Slice(64, 20));
        if (crc != actual)
            throw new Journal.JournalException($"{file}: COW header checksum mismatch at offset 84: stored 0x{crc:x8}, computed 0x{actual:x8}");
        uint storeVersion = BinaryPrimitives.ReadUInt32LittleEndian(src[68..]);
        if (storeVersion != StoreVersion)
            throw new Journal.JournalException($"{file}: unsupported COW store-fields version {storeVersion} at offset 68, expected {StoreVersion}");
        ulong id = BinaryPrimitives.ReadUInt64LittleEndian(src[72..]);
        if (id != expectedId)
            throw new Journal.JournalException($"{file}: COW file belongs to snapshot id {id} (offset 72), the store expects id {expectedId}");
        uint slots = BinaryPrimitives.ReadUInt32LittleEndian(src[80..]);
        if (slots != (uint)SlotsFor(expectedChunkSectors))
            throw new Journal.JournalException($"{file}: COW header has {slots} home-LSN slots (offset 80), expected {SlotsFor(expectedChunkSectors)}");
        return new CowHeader(magic, valid, version, chunk, id, slots);
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"CowHeader(magic 0x{Magic:x8}, valid {Valid}, version {Version}, chunk_size {ChunkSectors}, snapshot id {SnapshotId}, lsn slots {SlotCount})";
}
