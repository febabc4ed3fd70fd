using System.IO.Hashing;
using System.Buffers.Binary;
using Journal.Format;
using Journal.Storage;

namespace Snapshot.Format;

/// <summary>
/// The store superblock, file <c>store.sb</c>: the store's geometry and its list of snapshots.
/// </summary>
/// <remarks>
/// The file holds two copies, A at sector 0 and B at sector 16, each <see cref="CopyBytes"/> (8 KiB) long. A write
/// goes to the copy not holding the current generation, with generation + 1, then the file is flushed; so a torn or
/// lost write leaves the other copy intact. Reading takes the copy with a good checksum and the higher generation.
/// The superblock changes only when a snapshot is created, deleted or invalidated. Those changes are committed through
/// the metadata journal as a log item (<see cref="Snapshot.Metadata.SuperblockItem"/>, whose logged copy is
/// <see cref="ToLogBytes"/>); this file is the item's home, written by the journal's write-back with the LSN of the
/// checkpoint it reflects in <c>home_lsn</c>, so replay skips logged copies the home already holds.
/// <code>
/// offset size field (of one copy)
///      0    4 le32 magic          0x4253534a ("JSSB")
///      4    4 le32 version        1
///      8    8 le64 generation     +1 on every write
///     16    8 le64 origin_sectors
///     24    4 le32 chunk_sectors
///     28    4 le32 snapshot_count at most 64
///     32    8 le64 next_snapshot_id
///     40    4 le32 reserved       0
///     44    4 le32 crc32c         of the whole 8 KiB copy with this field as zero
///     48    8 le64 home_lsn       LSN of the checkpoint whose superblock item this copy reflects; 0 = none
///     56    8 le64 store_id       random, fixed at creation; every COW file's header carries it (0: a store made
///                                 before the field existed, whose COW files the store never removes on its own)
///     64 96*n snapshot records (SnapshotRecord)
/// </code>
/// <para>A copy whose checksum is good is still checked as a create would check it (<see cref="Check"/>): geometry,
/// names, ids, sizes, states. A copy that fails is refused with the reason, naming the file: a name read from disk
/// becomes a file name, so it must never hold a path.</para>
/// </remarks>
internal sealed record Superblock(ulong Generation, long OriginSectors, int ChunkSectors, ulong NextSnapshotId, IReadOnlyList<SnapshotRecord> Snapshots)
{
    public const uint Magic = 0x4253534a;
    public const uint Version = 1;
    public const int CopyBytes = 8192;
    public const int CopySectors = CopyBytes / BlockDevice.SectorSize;
    public const int FileSectors = 2 * CopySectors;
    public const int HeaderBytes = 64;
    public const int MaxSnapshots = 64;

    /// <summary>Most bytes of a logged copy (<see cref="ToLogBytes"/>): the header and 64 snapshot records.</summary>
    public const int MaxLogBytes = HeaderBytes + MaxSnapshots * SnapshotRecord.Size;

    /// <summary>LSN (raw value) of the checkpoint whose superblock item this copy reflects; 0 = none.</summary>
    public ulong HomeLsn { get; init; }

    /// <summary>The store's identity (random, fixed at creation); 0 for a store created before it existed.</summary>
    public ulong StoreId { get; init; }

    /// <summary>Largest COW size a record may give, in sectors (2^40: 512 TiB).</summary>
    public const long MaxCowSectors = 1L << 40;

    /// <summary>
    /// Largest snapshot id: a metadata segment's log item id holds the snapshot id above
    /// <see cref="Metadata.AreaSegmentItem.SegmentBits"/> bits of segment number, so a larger id would share item ids with
    /// a smaller one (2^24 - 1).
    /// </summary>
    public const ulong MaxSnapshotId = (1UL << (64 - Metadata.AreaSegmentItem.SegmentBits)) - 1;

    /// <summary>
    /// Largest generation a copy may carry (2^62): one is used per superblock change, so a store never comes near it; a
    /// copy beyond it is crafted, and its next write would wrap past the other copy's.
    /// </summary>
    public const ulong MaxGeneration = 1UL << 62;

    /// <summary>
    /// The checks a create applies, applied to a superblock read from disk: null when it passes, else the first
    /// problem found (the caller names the file and copy).
    /// </summary>
    public string? Check()
    {
        if (ChunkSectors <= 0 || (ChunkSectors & (ChunkSectors - 1)) != 0 || ChunkSectors > StoreOptions.MaxChunkSectors)
            return $"chunk size {ChunkSectors} sectors is not a power of two from 1 to {StoreOptions.MaxChunkSectors}";
        if (OriginSectors <= 0 || OriginSectors % ChunkSectors != 0)
            return $"origin size {OriginSectors} sectors is not a positive whole number of {ChunkSectors}-sector chunks";
        if (Generation > MaxGeneration) return $"generation {Generation} is beyond {MaxGeneration} (a store uses one a change)";
        if (NextSnapshotId == 0 || NextSnapshotId > MaxSnapshotId + 1) return $"next snapshot id {NextSnapshotId} is outside 1..{MaxSnapshotId + 1}";
        var ids = new HashSet<ulong>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        int merging = 0;
        for (int i = 0; i < Snapshots.Count; i++)
        {
            var r = Snapshots[i];
            string what = $"snapshot record {i}";
            if (SnapshotRecord.NameProblem(r.Name) is { } bad) return $"{what}: {bad}";
            what = $"snapshot record {i} ('{r.Name}')";
            if (!names.Add(r.Name)) return $"{what}: the name is used twice";
            if (r.Id == 0 || r.Id >= NextSnapshotId) return $"{what}: id {r.Id} is outside 1..{NextSnapshotId - 1}";
            if (!ids.Add(r.Id)) return $"{what}: id {r.Id} is used twice";
            if (r.CowSectors % ChunkSectors != 0 || r.CowSectors < ChunkSectors || r.CowSectors > MaxCowSectors)
                return $"{what}: COW size {r.CowSectors} sectors is not a whole number of chunks from 1 chunk to {MaxCowSectors} sectors";
            if (r.Kind == SnapshotKindCode.Persistent && r.CowSectors < 2L * ChunkSectors)
                return $"{what}: COW size {r.CowSectors} sectors is too small for a persistent snapshot (2 chunks)";
            if (r.State != SnapshotStateCode.Invalid && r.Reason != InvalidReasonCode.None)
                return $"{what}: state {r.State} with an invalidation reason ({r.Reason})";
            if (r.State == SnapshotStateCode.Merging && (++merging > 1 || r.Kind != SnapshotKindCode.Persistent))
                return $"{what}: merging, but {(r.Kind != SnapshotKindCode.Persistent ? "it is transient" : "another snapshot is merging too")}";
        }
        return null;
    }

    /// <summary>Bytes of the logged copy: the header and the snapshot records (the rest of a copy is zero).</summary>
    public int LogBytes => HeaderBytes + Snapshots.Count * SnapshotRecord.Size;

    /// <summary>
    /// The logged copy: the first <see cref="LogBytes"/> bytes of <see cref="ToBytes"/> (its checksum covers the whole
    /// 8 KiB copy, whose remaining bytes are zero), so replay validates it exactly as it validates a home copy.
    /// </summary>
    public void ToLogBytes(Span<byte> destination) => ToBytes().AsSpan(0, LogBytes).CopyTo(destination);

    /// <summary>Parses a logged copy (<see cref="ToLogBytes"/>); null (with the reason) if it is not a good copy.</summary>
    public static Superblock? TryParseLogged(ReadOnlySpan<byte> logged, string file, out string? problem)
    {
        if (logged.Length < HeaderBytes || logged.Length > MaxLogBytes || (logged.Length - HeaderBytes) % SnapshotRecord.Size != 0)
        {
            problem = $"logged superblock is {logged.Length} bytes, expected {HeaderBytes} + {SnapshotRecord.Size} per snapshot";
            return null;
        }
        var copy = new byte[CopyBytes];
        logged.CopyTo(copy);
        var sb = TryParse(copy, file, out problem);
        if (sb is not null && sb.LogBytes != logged.Length)
        {
            problem = $"logged superblock is {logged.Length} bytes for {sb.Snapshots.Count} snapshots";
            return null;
        }
        return sb;
    }

    /// <summary>Serialises one copy.</summary>
    public byte[] ToBytes()
    {
        if (Snapshots.Count > MaxSnapshots) throw new InvalidOperationException($"too many snapshots ({Snapshots.Count})");
        var b = new byte[CopyBytes];
        BinaryPrimitives.WriteUInt32LittleEndian(b, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), Version);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), Generation);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(16), OriginSectors);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(24), ChunkSectors);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(28), Snapshots.Count);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(32), NextSnapshotId);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(48), HomeLsn);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(56), StoreId);
        for (int i = 0; i < Snapshots.Count; i++) Snapshots[i].Write(b.AsSpan(HeaderBytes + i * SnapshotRecord.Size));
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(44), Crc32.HashToUInt32(Crc32ParameterSet.Crc32C, b));
        return b;
    }

    /// <summary>
    /// Parses one copy; returns null (with the reason) if it is not a good copy (magic, checksum, version, count). A copy
    /// with a good checksum that fails <see cref="Check"/> is not a torn write but a crafted or miswritten one: it
    /// throws, naming <paramref name="file"/>.
    /// </summary>
    public static Superblock? TryParse(ReadOnlySpan<byte> b, string file, out string? problem)
    {
        problem = null;
        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(b);
        if (magic != Magic) { problem = $"magic 0x{magic:x8}, expected 0x{Magic:x8}"; return null; }
        uint stored = BinaryPrimitives.ReadUInt32LittleEndian(b[44..]);
        var tmp = b[..CopyBytes].ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(tmp.AsSpan(44), 0);
        uint crc = Crc32.HashToUInt32(Crc32ParameterSet.Crc32C, tmp);
        if (crc != stored) { problem = $"checksum 0x{stored:x8}, computed 0x{crc:x8}"; return null; }
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(b[4..]);
        if (version != Version) { problem = $"version {version}, expected {Version}"; return null; }
        uint reserved = BinaryPrimitives.ReadUInt32LittleEndian(b[40..]);
        if (reserved != 0)
            throw new Journal.JournalException($"{file}: superblock generation {BinaryPrimitives.ReadUInt64LittleEndian(b[8..])} is not valid: the reserved field at offset 40 is 0x{reserved:x8}, expected 0");
        int count = BinaryPrimitives.ReadInt32LittleEndian(b[28..]);
        if (count is < 0 or > MaxSnapshots) { problem = $"snapshot count {count}"; return null; }
        var list = new List<SnapshotRecord>(count);
        ulong generation = BinaryPrimitives.ReadUInt64LittleEndian(b[8..]);
        for (int i = 0; i < count; i++) list.Add(SnapshotRecord.Read(b.Slice(HeaderBytes + i * SnapshotRecord.Size), file, i));
        var sb = new Superblock(generation, BinaryPrimitives.ReadInt64LittleEndian(b[16..]),
            BinaryPrimitives.ReadInt32LittleEndian(b[24..]), BinaryPrimitives.ReadUInt64LittleEndian(b[32..]), list)
        {
            HomeLsn = BinaryPrimitives.ReadUInt64LittleEndian(b[48..]),
            StoreId = BinaryPrimitives.ReadUInt64LittleEndian(b[56..]),
        };
        if (sb.Check() is { } bad)
            throw new Journal.JournalException($"{file}: superblock generation {generation} is not valid: {bad}");
        return sb;
    }

    /// <summary>
    /// Reads both copies from <paramref name="device"/> and returns the newest good one. Whether that copy may be a
    /// change behind a damaged one is decided by <see cref="ReadHome"/> and the store's recovery.
    /// </summary>
    public static Superblock Read(BlockDevice device) => ReadHome(device).Current;

    /// <summary>
    /// Reads both copies: the good copy with the higher generation is <see cref="SuperblockHome.Current"/>, and the
    /// other copy is reported as it was found (good and older, never written, or damaged).
    /// </summary>
    /// <exception cref="Journal.JournalException">The file is too short, or neither copy is good (names both problems).</exception>
    public static SuperblockHome ReadHome(BlockDevice device)
    {
        if (device.SectorCount < FileSectors)
            throw new Journal.JournalException($"{device.Name}: superblock file is {device.SectorCount} sectors, expected {FileSectors}");
        var buf = new byte[FileSectors * BlockDevice.SectorSize];
        device.Read(0, buf);
        var a = ReadCopy(buf.AsSpan(0, CopyBytes), device.Name, 'A', 0);
        var b = ReadCopy(buf.AsSpan(CopyBytes, CopyBytes), device.Name, 'B', CopySectors);
        if (a.Parsed is null && b.Parsed is null)
            throw new Journal.JournalException($"{device.Name}: no valid superblock copy (copy A at sector 0: {a.Problem}; copy B at sector {CopySectors}: {b.Problem})");
        bool aNewest = b.Parsed is null || (a.Parsed is not null && a.Parsed.Generation >= b.Parsed.Generation);
        return aNewest ? new SuperblockHome(device.Name, a, b) : new SuperblockHome(device.Name, b, a);
    }

    private static SuperblockCopy ReadCopy(ReadOnlySpan<byte> copy, string file, char name, long sector)
    {
        Superblock? parsed;
        string? problem;
        try
        {
            parsed = TryParse(copy, file, out problem);
        }
        catch (Journal.JournalException e)
        {
            // A snapshot record that does not parse (SnapshotRecord.Read) makes the copy bad like a checksum would.
            parsed = null;
            problem = e.Message;
        }
        bool blank = parsed is null && !copy.ContainsAnyExcept((byte)0);
        ulong? claimed = parsed is null && BinaryPrimitives.ReadUInt32LittleEndian(copy) == Magic
            ? BinaryPrimitives.ReadUInt64LittleEndian(copy[8..])
            : null;
        return new SuperblockCopy(name, sector, parsed, problem, blank, claimed);
    }

    /// <summary>Writes this superblock as generation <see cref="Generation"/> into the copy that generation selects, and flushes.</summary>
    public async ValueTask WriteAsync(BlockDevice device, CancellationToken cancellationToken)
    {
        long sector = (long)(Generation % 2) * CopySectors;
        await device.WriteAsync(sector, ToBytes(), cancellationToken).ConfigureAwait(false);
        await device.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Synchronous <see cref="WriteAsync"/> (used by recovery, which runs before the store starts).</summary>
    public void Write(BlockDevice device)
    {
        device.Write((long)(Generation % 2) * CopySectors, ToBytes());
        device.Flush();
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"Superblock(generation {Generation}, home LSN {Journal.Format.Lsn.FromValue(HomeLsn)}, origin {OriginSectors} sectors, chunk {ChunkSectors} sectors, next id {NextSnapshotId}, snapshots [{string.Join(", ", Snapshots)}])";
}

/// <summary>One copy of <c>store.sb</c> as read.</summary>
/// <param name="Name">'A' (sector 0) or 'B' (sector 16).</param>
/// <param name="Sector">The copy's first sector.</param>
/// <param name="Parsed">The superblock, when the copy is good.</param>
/// <param name="Problem">Why the copy is not good, when it is not.</param>
/// <param name="Blank">The copy is all zeros.</param>
/// <param name="ClaimedGeneration">For a bad copy whose magic is right: the generation its header claims (not to be trusted).</param>
internal readonly record struct SuperblockCopy(char Name, long Sector, Superblock? Parsed, string? Problem, bool Blank, ulong? ClaimedGeneration)
{
    /// <summary>"copy B (sector 16)".</summary>
    public string Label => $"copy {Name} (sector {Sector})";

    /// <summary>The generation, or what a damaged copy's header claims.</summary>
    public string GenerationText => Parsed is not null
        ? $"generation {Parsed.Generation}"
        : ClaimedGeneration is { } g ? $"generation {g} (claimed by the damaged header)" : "generation unreadable";
}

/// <summary>
/// Both copies of <c>store.sb</c> as read: <see cref="Current"/> is the good copy with the higher generation.
/// </summary>
/// <param name="File">The superblock file.</param>
/// <param name="Good">The copy <see cref="Current"/> comes from.</param>
/// <param name="Other">The other copy: good and older, blank, or damaged.</param>
internal sealed record SuperblockHome(string File, SuperblockCopy Good, SuperblockCopy Other)
{
    /// <summary>The newest good copy.</summary>
    public Superblock Current => Good.Parsed!;

    /// <summary>
    /// True when the other copy may hold a newer superblock than <see cref="Current"/>, so that <see cref="Current"/>
    /// may be a change behind: the other copy is damaged. A blank other copy counts as never written only while the
    /// good copy is generation 1 (a new store's first and only write); once generation 2 exists, both copies have
    /// been written, and a blank one is damage.
    /// </summary>
    public bool OtherMayBeNewer => Other.Parsed is null && !(Other.Blank && Current.Generation == 1);
}
