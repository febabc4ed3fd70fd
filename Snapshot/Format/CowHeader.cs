using System.IO.Hashing;
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
///     68     4  le32 store format 2 (1: the fields up to offset 84 only, CRC over bytes 64..83, no store id)
///     72     8  le64 snapshot id  unique within the store, never reused
///     80     4  le32 lsn slots    number of home-LSN slots that follow at offset 128
///     84     4  le32 crc32c       of bytes 64..127 with this field taken as zero
///     88     8  le64 store id     the superblock's store_id: ties the file to its store
///     96     4  le32 kind         1 persistent, 2 transient
///    100     4  le32 marks count  entries in the creation-marks table (0 without a table)
///    104     8  le64 marks chunk  first chunk of the creation-marks table (ChangeMarks): 2, or 0 = no table
///    112     4  le32 stamp        the stamp the superblock's record of the snapshot names (SnapshotRecord.CowStamp, at
///                                 most 0x7fff), advanced when the file changed in a session: a header behind the record
///                                 is an older copy of the file; 0 = none
///    116    12  zero
///    128  16*n  home-LSN slots    { le64 area + 1 (0 = empty), le64 LSN }, see HomeLsnSlots
/// </code>
/// <para>The creation marks (changed-block tracking, <c>Snapshot/Changes/ChangeMarks.cs</c>) are a small table the store
/// writes into data chunks 2.. when the snapshot is created: for every other persistent snapshot then, how many
/// exceptions its COW file held. The allocator never hands those chunks out (also after reopen: the header names
/// them); no exception points at them, so dm-snapshot sees them as unused data chunks. A header written before the
/// fields existed has zeros there: no table.</para>
/// <para>The store id and snapshot id are what lets the store remove a COW file: it removes only files whose header
/// carries its own store id (a file of another store, or a file it did not write, is never removed by name alone).
/// A transient snapshot's scratch file carries the same header (with kind 2) in its chunk 0.</para>
/// </remarks>
internal readonly record struct CowHeader(uint Magic, uint Valid, uint Version, uint ChunkSectors, ulong SnapshotId, uint SlotCount)
{
    /// <summary>The store's id (0 in a format-1 header, which has none).</summary>
    public ulong StoreId { get; init; }

    /// <summary>1 persistent, 2 transient (a format-1 header is always persistent).</summary>
    public uint Kind { get; init; } = KindPersistent;

    /// <summary>First chunk of the creation-marks table, or 0 when the file has none.</summary>
    public ulong MarksChunk { get; init; }

    /// <summary>Entries in the creation-marks table (0 without one).</summary>
    public uint MarksCount { get; init; }

    /// <summary>The store's COW stamp when the header was last stamped (<see cref="SnapshotRecord.CowStamp"/>); 0 = none.</summary>
    public uint Stamp { get; init; }

    /// <summary>Offset of the stamp.</summary>
    public const int StampOffset = 112;

    /// <summary>Largest stamp: the superblock record keeps it in 15 bits (<see cref="SnapshotRecord.CowStamp"/>).</summary>
    public const uint MaxStamp = 0x7fff;

    /// <summary>The stamp after <paramref name="stamp"/> (after <see cref="MaxStamp"/> comes 1: 0 means none).</summary>
    public static uint NextStamp(uint stamp) => stamp >= MaxStamp ? 1 : stamp + 1;

    /// <summary>
    /// True when a header stamped <paramref name="headerStamp"/> is an older copy of its file than the store's record of
    /// it (<see cref="SnapshotRecord.CowStamp"/> <paramref name="storeStamp"/>) expects: the store stamps a file with the
    /// next stamp before it commits the superblock naming it, so a current file carries the record's stamp or, after a
    /// crash between the two, the next one. 0 on either side means no stamp yet: nothing to compare.
    /// </summary>
    public static bool IsOlderCopy(uint headerStamp, uint storeStamp) =>
        headerStamp != 0 && storeStamp != 0 && headerStamp != storeStamp && headerStamp != NextStamp(storeStamp);

    /// <summary>Offset of the marks count.</summary>
    public const int MarksCountOffset = 100;

    /// <summary>Offset of the marks chunk.</summary>
    public const int MarksChunkOffset = 104;

    /// <summary>Kind of a persistent snapshot's COW file.</summary>
    public const uint KindPersistent = 1;

    /// <summary>Kind of a transient snapshot's scratch file.</summary>
    public const uint KindTransient = 2;

    /// <summary>"SnAp" as a little-endian 32-bit value.</summary>
    public const uint SnapMagic = 0x70416e53;

    /// <summary>The only dm-snapshot persistent format version.</summary>
    public const uint DiskVersion = 1;

    /// <summary>"JSnP": the store's own fields are present.</summary>
    public const uint StoreMagic = 0x506e534a;

    /// <summary>Version of the store's own fields written now.</summary>
    public const uint StoreVersion = 2;

    /// <summary>The first version of the store's fields (no store id, CRC over bytes 64..83); still read.</summary>
    public const uint StoreVersionWithoutId = 1;

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

    /// <summary>Bytes of chunk 0 the store reads and writes: <see cref="UsedBytes"/> in whole sectors.</summary>
    public static int UsedSectorBytes(int chunkSectors) =>
        (UsedBytes(chunkSectors) + Journal.Storage.BlockDevice.SectorSize - 1) / Journal.Storage.BlockDevice.SectorSize * Journal.Storage.BlockDevice.SectorSize;

    /// <summary>A fresh header for a new, valid snapshot of store <paramref name="storeId"/>.</summary>
    public static CowHeader New(int chunkSectors, ulong snapshotId, ulong storeId, uint kind = KindPersistent, uint stamp = 0) =>
        new(SnapMagic, 1, DiskVersion, (uint)chunkSectors, snapshotId, (uint)SlotsFor(chunkSectors)) { StoreId = storeId, Kind = kind, Stamp = stamp };

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
        BinaryPrimitives.WriteUInt64LittleEndian(dst[88..], StoreId);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[96..], Kind);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[MarksCountOffset..], MarksCount);
        BinaryPrimitives.WriteUInt64LittleEndian(dst[MarksChunkOffset..], MarksChunk);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[StampOffset..], Stamp);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[84..], StoreFieldsCrc(dst, StoreVersion));
    }

    /// <summary>
    /// Sets the stamp of the format-2 header in <paramref name="chunk0"/> and its checksum; every other byte stays as it
    /// is.
    /// </summary>
    public static void SetStamp(Span<byte> chunk0, uint stamp)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(chunk0[StampOffset..], stamp);
        BinaryPrimitives.WriteUInt32LittleEndian(chunk0[84..], StoreFieldsCrc(chunk0, StoreVersion));
    }

    /// <summary>
    /// Sets the creation-marks fields of the format-2 header in <paramref name="chunk0"/> (written by
    /// <see cref="Write"/>) and its checksum; every other byte stays as it is.
    /// </summary>
    public static void SetMarks(Span<byte> chunk0, ulong marksChunk, uint marksCount)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(chunk0[MarksCountOffset..], marksCount);
        BinaryPrimitives.WriteUInt64LittleEndian(chunk0[MarksChunkOffset..], marksChunk);
        BinaryPrimitives.WriteUInt32LittleEndian(chunk0[84..], StoreFieldsCrc(chunk0, StoreVersion));
    }

    /// <summary>The checksum of the store fields as format <paramref name="version"/> defines it.</summary>
    private static uint StoreFieldsCrc(ReadOnlySpan<byte> src, uint version)
    {
        if (version == StoreVersionWithoutId) return Crc32.HashToUInt32(Crc32ParameterSet.Crc32C, src.Slice(64, 20));
        Span<byte> fields = stackalloc byte[Size - StoreFieldsOffset];
        src.Slice(StoreFieldsOffset, fields.Length).CopyTo(fields);
        BinaryPrimitives.WriteUInt32LittleEndian(fields[20..], 0);
        return Crc32.HashToUInt32(Crc32ParameterSet.Crc32C, fields);
    }

    /// <summary>
    /// Reads the identity of a file that may be a COW file of some store: null unless chunk 0 starts with this
    /// store format's header, checksum and all (so a file that merely has the right name is never taken for one).
    /// </summary>
    public static (ulong StoreId, ulong SnapshotId, uint Kind)? TryIdentify(ReadOnlySpan<byte> src)
    {
        if (src.Length < Size) return null;
        if (BinaryPrimitives.ReadUInt32LittleEndian(src) != SnapMagic) return null;
        if (BinaryPrimitives.ReadUInt32LittleEndian(src[64..]) != StoreMagic) return null;
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(src[68..]);
        if (version is not (StoreVersion or StoreVersionWithoutId)) return null;
        if (BinaryPrimitives.ReadUInt32LittleEndian(src[84..]) != StoreFieldsCrc(src, version)) return null;
        if (version == StoreVersionWithoutId) return (0, BinaryPrimitives.ReadUInt64LittleEndian(src[72..]), KindPersistent);
        return (BinaryPrimitives.ReadUInt64LittleEndian(src[88..]), BinaryPrimitives.ReadUInt64LittleEndian(src[72..]),
            BinaryPrimitives.ReadUInt32LittleEndian(src[96..]));
    }

    /// <summary>
    /// Parses and validates chunk 0. Throws a <see cref="StoreCorruptionException"/> naming <paramref name="file"/> on a
    /// bad magic, version, chunk size, snapshot id, store id (when <paramref name="expectedStoreId"/> is not 0 and the
    /// header has one) or checksum.
    /// </summary>
    public static CowHeader Read(ReadOnlySpan<byte> src, string file, int expectedChunkSectors, ulong expectedId, ulong expectedStoreId = 0)
    {
        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(src);
        if (magic != SnapMagic)
            throw new StoreCorruptionException(file, 0, "not a persistent COW file: bad magic", $"0x{SnapMagic:x8} (\"SnAp\")", $"0x{magic:x8}");
        uint valid = BinaryPrimitives.ReadUInt32LittleEndian(src[4..]);
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(src[8..]);
        if (version != DiskVersion)
            throw new StoreCorruptionException(file, 8, "unsupported COW format version", DiskVersion.ToString(), version.ToString());
        uint chunk = BinaryPrimitives.ReadUInt32LittleEndian(src[12..]);
        if (chunk != (uint)expectedChunkSectors)
            throw new StoreCorruptionException(file, 12, "the COW chunk size is not the store's", $"{expectedChunkSectors} sectors", $"{chunk} sectors");
        uint storeMagic = BinaryPrimitives.ReadUInt32LittleEndian(src[64..]);
        if (storeMagic != StoreMagic)
            throw new StoreCorruptionException(file, 64, "the COW header has no store fields: bad magic", $"0x{StoreMagic:x8}", $"0x{storeMagic:x8}");
        uint storeVersion = BinaryPrimitives.ReadUInt32LittleEndian(src[68..]);
        if (storeVersion is not (StoreVersion or StoreVersionWithoutId))
            throw new StoreCorruptionException(file, 68, "unsupported COW store-fields version", $"{StoreVersionWithoutId} or {StoreVersion}", storeVersion.ToString());
        uint crc = BinaryPrimitives.ReadUInt32LittleEndian(src[84..]);
        uint actual = StoreFieldsCrc(src, storeVersion);
        if (crc != actual)
            throw new StoreCorruptionException(file, 84, "COW header checksum mismatch", $"0x{actual:x8} (computed)", $"0x{crc:x8} (stored)");
        ulong storeId = storeVersion == StoreVersionWithoutId ? 0 : BinaryPrimitives.ReadUInt64LittleEndian(src[88..]);
        uint kind = storeVersion == StoreVersionWithoutId ? KindPersistent : BinaryPrimitives.ReadUInt32LittleEndian(src[96..]);
        if (expectedStoreId != 0 && storeId != 0 && storeId != expectedStoreId)
            throw new StoreCorruptionException(file, 88, "the COW file belongs to another store", $"store id 0x{expectedStoreId:x16}", $"0x{storeId:x16}");
        if (kind != KindPersistent)
            throw new StoreCorruptionException(file, 96, "not a persistent COW file: bad kind", KindPersistent.ToString(), kind.ToString());
        ulong id = BinaryPrimitives.ReadUInt64LittleEndian(src[72..]);
        if (id != expectedId)
            throw new StoreCorruptionException(file, 72, "the COW file belongs to another snapshot", $"snapshot id {expectedId}", id.ToString());
        uint slots = BinaryPrimitives.ReadUInt32LittleEndian(src[80..]);
        if (slots != (uint)SlotsFor(expectedChunkSectors))
            throw new StoreCorruptionException(file, 80, "the COW header has the wrong number of home-LSN slots", SlotsFor(expectedChunkSectors).ToString(), slots.ToString());
        ulong marksChunk = 0;
        uint marksCount = 0;
        uint stamp = 0;
        if (storeVersion == StoreVersion)
        {
            // Checked as a create writes them: no table (both zero), or the table at the first data chunk with at most
            // one entry per other snapshot the store can hold; the bytes after them are zero.
            marksCount = BinaryPrimitives.ReadUInt32LittleEndian(src[MarksCountOffset..]);
            marksChunk = BinaryPrimitives.ReadUInt64LittleEndian(src[MarksChunkOffset..]);
            bool none = marksChunk == 0 && marksCount == 0;
            bool table = marksChunk == CowLayout.FirstDataChunk && marksCount <= Changes.ChangeMarks.MaxEntries;
            if (!none && !table)
                throw new StoreCorruptionException(file, MarksChunkOffset, $"the COW header names a creation-marks table at chunk {marksChunk} with {marksCount} entries (offset {MarksCountOffset})",
                    $"none (both 0) or chunk {CowLayout.FirstDataChunk} with at most {Changes.ChangeMarks.MaxEntries} entries", $"chunk {marksChunk}, {marksCount} entries");
            stamp = BinaryPrimitives.ReadUInt32LittleEndian(src[StampOffset..]);
            if (src.Slice(StampOffset + 4, Size - StampOffset - 4).IndexOfAnyExcept((byte)0) is int at and >= 0)
                throw new StoreCorruptionException(file, StampOffset + 4 + at, "a reserved COW header byte (116..127) is not zero", "0", src[StampOffset + 4 + at].ToString());
        }
        return new CowHeader(magic, valid, version, chunk, id, slots) { StoreId = storeId, Kind = kind, MarksChunk = marksChunk, MarksCount = marksCount, Stamp = stamp };
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"CowHeader(magic 0x{Magic:x8}, valid {Valid}, version {Version}, chunk_size {ChunkSectors}, snapshot id {SnapshotId}, lsn slots {SlotCount}, store id 0x{StoreId:x16}, kind {Kind}, marks chunk {MarksChunk}, marks count {MarksCount})";
}
