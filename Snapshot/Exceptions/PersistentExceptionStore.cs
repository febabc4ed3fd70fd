using System.Buffers.Binary;
using Journal.Format;
using Journal.Recovery;
using Journal.Storage;
using Journal;
using Snapshot.Format;
using Snapshot.Commit;
using Snapshot.Metadata;
using Snapshot.Storage;
using Snapshot.Sync;

namespace Snapshot.Exceptions;

/// <summary>
/// A persistent exception store: the COW file in the dm-snapshot persistent format.
/// </summary>
/// <remarks>
/// <para><b>File format</b> (chunk = the store's chunk size; epa = chunk_size * 512 / 16):</para>
/// <code>
/// chunk 0                 header (CowHeader): dm-snapshot's 16 bytes, then the store's fields and home-LSN slots
/// chunk 1 + (epa+1)*i     metadata area i: epa entries { le64 old_chunk, le64 new_chunk } in commit order;
///                         the first entry with new_chunk == 0 ends the exceptions (the rest of the area is zero)
/// other chunks            data: the copied origin chunks (and writes to the snapshot), allocated from chunk 2
///                         upward, stepping over metadata chunks
/// </code>
/// <para>An area that is full is followed by the next one; the file always extends past the area after a full one,
/// so a reader that walks areas until a terminator never reads past the end.</para>
/// <para><b>Commit</b>: a copy's exception is committed by the store-wide <see cref="Commit.CommitPipeline"/>, through
/// the committer this file was opened with: the journal (the default; the metadata lives in <see cref="Metadata"/> as
/// area segments that the journal's AIL writes home into the areas and stamps in chunk 0's home-LSN slots) or direct
/// area writes (the dm-snapshot scheme). Either way the pipeline has already made the data durable, so an entry never
/// points at data that is not on disk.</para>
/// <para><b>Home-LSN slots</b>: chunk 0 holds, after the header, slots <c>{ le64 segment + 1, le64 LSN }</c>; segment
/// g uses slot <c>g % slots</c>. A slot is written only after the segment's entries are durable, so it never claims
/// more than the home holds; a segment whose slot was reused by a later one has no home LSN and is replayed in full,
/// which rewrites identical bytes.</para>
/// <para><b>Open</b>: the areas are read in order until the terminator; every entry is checked (new chunk inside the
/// file, not a metadata chunk, not used twice; old chunk inside the origin). The next free chunk is one past the
/// highest new chunk; data chunks below it that no entry uses (allocated for copies that never committed) go back on
/// a free list, so nothing is leaked.</para>
/// <para>Locking: <c>_metaLock</c> (leaf monitor) protects the allocation state; it is held for in-memory work only,
/// never across I/O. <c>_headerLock</c> (async mutex) serialises writes of chunk 0.</para>
/// </remarks>
internal sealed class PersistentExceptionStore : ExceptionStore
{
    private readonly object _metaLock = new();
    private readonly SemaphoreSlim _headerLock = new(1, 1);
    private readonly byte[] _chunk0;        // header and home-LSN slots, whole sectors
    private readonly IMetadataCommitter _committer;
    private ulong _nextFree = CowLayout.FirstDataChunk;
    private readonly Stack<ulong> _holes = new();
    private volatile bool _invalid;

    // The creation-marks table (changed-block tracking, Snapshot/Changes/ChangeMarks.cs): its first chunk (0 = none),
    // the chunks it takes, and its entries. Set once, at create (ReserveCreationMarks, then WriteCreationMarksAsync)
    // or from the header at open; the allocator never hands these chunks out.
    private ulong _marksChunk;
    private int _marksChunks;
    private uint _marksCount;

    private PersistentExceptionStore(BlockDevice cow, CowLayout layout, long totalSectors, long growthSectors, ulong snapshotId, IMetadataCommitter committer)
        : base(cow, layout, totalSectors, growthSectors)
    {
        SnapshotId = snapshotId;
        _committer = committer;
        SegmentEntries = SegmentEntriesFor(layout);
        _chunk0 = new byte[CowHeader.UsedSectorBytes(layout.ChunkSectors)];
        Metadata = committer.Attach(this, NewArea(0));
    }

    /// <summary>The metadata as the committer keeps it (segments in journal mode, areas in direct mode).</summary>
    public CowMetadata Metadata { get; private set; }

    /// <summary>Entries in one logged segment of an area: 256 (4 KiB), or the whole area when it is smaller.</summary>
    public static int SegmentEntriesFor(CowLayout layout) => (int)Math.Min(layout.ExceptionsPerArea, 256);

    /// <summary>Entries in one logged segment.</summary>
    public int SegmentEntries { get; }

    /// <summary>Segments in one area.</summary>
    public long SegmentsPerArea => Layout.ExceptionsPerArea / SegmentEntries;

    /// <summary>First sector of segment <paramref name="segment"/>'s home (its slice of its area chunk).</summary>
    public long SegmentHomeSector(long segment) =>
        Layout.ChunkToSector(Layout.AreaChunk(segment / SegmentsPerArea)) + segment % SegmentsPerArea * SegmentEntries * DiskException.Size / BlockDevice.SectorSize;

    /// <summary>Home-LSN slots in chunk 0.</summary>
    public int SlotCount => CowHeader.SlotsFor(Layout.ChunkSectors);

    /// <summary>Byte offset in chunk 0 of the home-LSN slot used by <paramref name="segment"/>.</summary>
    public static int SlotOffset(long segment, int slots) => CowHeader.SlotsOffset + (int)(segment % slots) * 16;

    /// <summary>Stops every segment of this store from writing home (the snapshot was deleted).</summary>
    public void MarkDeleted() => Metadata.MarkDeleted();

    /// <summary>
    /// Writes <paramref name="stamp"/> into the header (<see cref="CowHeader.Stamp"/>) and flushes the file: the store's
    /// open and clean close stamp every available COW file before they commit the superblock naming the stamp.
    /// </summary>
    public async ValueTask StampAsync(uint stamp, CancellationToken cancellationToken)
    {
        // A format-1 header has no stamp field under its checksum: it stays as it is (and is never found an older copy).
        if (!HasStamp) return;
        // Waiting for an invalidation or a home-LSN stamp; the holder takes nothing else.
        await _headerLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            CowHeader.SetStamp(_chunk0, stamp);
            await Cow.WriteAsync(0, _chunk0.AsMemory(0, BlockDevice.SectorSize), cancellationToken).ConfigureAwait(false);
            await Cow.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _headerLock.Release();
        }
    }

    /// <summary>True when the header has a stamp field (store format 2; <see cref="StampAsync"/> does nothing otherwise).</summary>
    public bool HasStamp => BinaryPrimitives.ReadUInt32LittleEndian(_chunk0.AsSpan(68)) == CowHeader.StoreVersion;

    /// <summary>Records in chunk 0 that segment <paramref name="segment"/>'s home reflects <paramref name="lsn"/> (one sector write, not flushed).</summary>
    public async ValueTask StampHomeLsnAsync(long segment, Lsn lsn, CancellationToken cancellationToken)
    {
        // Waiting for an invalidation or another stamp; the holder takes nothing else.
        await _headerLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            int off = SlotOffset(segment, SlotCount);
            BinaryPrimitives.WriteUInt64LittleEndian(_chunk0.AsSpan(off), (ulong)segment + 1);
            BinaryPrimitives.WriteUInt64LittleEndian(_chunk0.AsSpan(off + 8), lsn.Value);
            int sector = off / BlockDevice.SectorSize;
            await Cow.WriteAsync(sector, _chunk0.AsMemory(sector * BlockDevice.SectorSize, BlockDevice.SectorSize), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _headerLock.Release();
        }
    }

    /// <summary>The snapshot id recorded in the header.</summary>
    public ulong SnapshotId { get; }

    /// <summary>False when the header says invalid or the store was invalidated.</summary>
    public bool IsValid => !_invalid;

    public override bool IsPersistent => true;

    private MetadataArea NewArea(long index) => new(index, Layout.AreaChunk(index), Layout.ExceptionsPerArea);

    /// <summary>Smallest COW size (in sectors) that holds the header chunk and the first metadata area.</summary>
    public static long MinimumSectors(int chunkSectors) => 2L * chunkSectors;

    /// <summary>Creates a new COW file: header (valid) and a zeroed first area, flushed.</summary>
    public static PersistentExceptionStore Create(IDeviceProvider provider, string path, CowLayout layout, long totalSectors, long growthSectors, ulong snapshotId, ulong storeId, IMetadataCommitter committer,
        uint stamp = 0)
    {
        long total = totalSectors / layout.ChunkSectors * layout.ChunkSectors;
        long initial = Math.Min(total, Math.Max(growthSectors, 3L * layout.ChunkSectors));
        initial = Math.Max(initial, MinimumSectors(layout.ChunkSectors));
        var dev = provider.Create(path, initial);
        var s = new PersistentExceptionStore(dev, layout, totalSectors, growthSectors, snapshotId, committer);
        try
        {
            CowHeader.New(layout.ChunkSectors, snapshotId, storeId, stamp: stamp).Write(s._chunk0);
            dev.Write(0, s._chunk0);
            dev.Flush();
            return s;
        }
        catch
        {
            s.Dispose();
            throw;
        }
    }

    /// <summary>First chunk of the creation-marks table, or 0 when the file has none.</summary>
    public ulong MarksChunk => _marksChunk;

    /// <summary>Chunks the creation-marks table takes (0 when none).</summary>
    public int MarksChunks => _marksChunks;

    /// <summary>Entries in the creation-marks table, as the header says.</summary>
    public uint MarksCount => _marksCount;

    /// <summary>
    /// Changed-block tracking hook, right after <see cref="Create"/> (before any allocation): takes the data chunks
    /// from chunk 2 for the creation-marks table out of allocation. False (nothing reserved) when the configured size
    /// has no room for them beside the header and the first area.
    /// </summary>
    public bool ReserveCreationMarks()
    {
        int n = Changes.ChangeMarks.ChunksFor(Layout.ChunkSectors);
        ulong first = CowLayout.FirstDataChunk;
        lock (_metaLock)
        {
            if (_nextFree != first || _holes.Count > 0 || (ulong)CapacityChunks < first + (ulong)n) return false;
            for (ulong c = first; c < first + (ulong)n; c++)
                if (Layout.IsMetadataChunk(c)) return false;
            _marksChunk = first;
            _marksChunks = n;
            _nextFree = Layout.SkipMetadata(first + (ulong)n);
            return true;
        }
    }

    /// <summary>
    /// Changed-block tracking hook, while the snapshot is created (I/O quiesced, before the superblock names it): writes
    /// the creation-marks table into the chunks <see cref="ReserveCreationMarks"/> reserved, names it in the header,
    /// and flushes. Synchronous, like the rest of the file's creation (the caller runs it on a pool thread). After a
    /// crash before the superblock commit the file is unnamed and removed at open.
    /// </summary>
    public void WriteCreationMarks(Changes.ChangeMarks marks)
    {
        if (_marksChunk == 0) throw new InvalidOperationException($"{Cow.Name}: no chunks reserved for creation marks");
        var table = new byte[_marksChunks * Layout.ChunkBytes];
        marks.Write(table);
        long need = Layout.ChunkToSector(_marksChunk + (ulong)_marksChunks);
        if (Cow.SectorCount < need) Cow.Extend(Math.Min(TotalSectors, Math.Max(need, GrowthSectors)));
        Cow.Write(Layout.ChunkToSector(_marksChunk), table);
        // Nothing else writes chunk 0 yet (the snapshot is not listed: no segment can be stamped, no invalidation run).
        CowHeader.SetMarks(_chunk0, _marksChunk, (uint)marks.Entries.Count);
        _marksCount = (uint)marks.Entries.Count;
        Cow.Write(0, _chunk0.AsSpan(0, BlockDevice.SectorSize));
        Cow.Flush();
    }

    /// <summary>Opens an existing COW file and reads its header; call <see cref="Load"/> next if it is valid.</summary>
    public static PersistentExceptionStore Open(IDeviceProvider provider, string path, CowLayout layout, long totalSectors, long growthSectors, ulong snapshotId, ulong storeId, out CowHeader header, IMetadataCommitter committer)
    {
        var dev = provider.Open(path);
        var s = new PersistentExceptionStore(dev, layout, totalSectors, growthSectors, snapshotId, committer);
        try
        {
            if (dev.SectorCount < MinimumSectors(layout.ChunkSectors))
                throw new StoreCorruptionException(path, 0, "COW file is shorter than its header and first area",
                    $"{MinimumSectors(layout.ChunkSectors) * BlockDevice.SectorSize} bytes", $"{dev.Length} bytes");
            dev.Read(0, s._chunk0);
            header = CowHeader.Read(s._chunk0, path, layout.ChunkSectors, snapshotId, storeId);
            s._invalid = !header.IsValid;
            if (header.MarksChunk != 0)
            {
                s._marksChunk = header.MarksChunk;
                s._marksChunks = Changes.ChangeMarks.ChunksFor(layout.ChunkSectors);
                s._marksCount = header.MarksCount;
            }
            return s;
        }
        catch
        {
            s.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads every committed exception, in commit order, calling <paramref name="onException"/> for each (it returns
    /// false for an old chunk seen twice). Rebuilds the allocation state. Throws <see cref="CorruptionException"/> on a
    /// bad entry.
    /// </summary>
    public void Load(long originChunks, Func<ulong, ulong, bool> onException)
    {
        long fileChunks = Cow.SectorCount / Layout.ChunkSectors;
        var used = new System.Collections.BitArray((int)Math.Min(int.MaxValue, fileChunks));
        ulong maxNew = 0;
        if (_marksChunk != 0)
        {
            // The creation-marks chunks are taken: no entry may point at them, and the allocator starts past them.
            ulong marksEnd = _marksChunk + (ulong)_marksChunks;
            if (marksEnd > (ulong)fileChunks)
                throw new StoreCorruptionException(Cow.Name, CowHeader.MarksChunkOffset, "the creation-marks table the header names lies past the end of the file",
                    $"chunks below {fileChunks}", $"chunks {_marksChunk}..{marksEnd - 1}");
            for (ulong c = _marksChunk; c < marksEnd; c++) used[(int)c] = true;
            maxNew = marksEnd - 1;
        }
        long epa = Layout.ExceptionsPerArea;
        int pieceBytes = (int)Math.Min(Layout.ChunkBytes, 1 << 20);
        var piece = new byte[pieceBytes];
        long area = 0;
        MetadataArea current;
        while (true)
        {
            current = NewArea(area);
            long areaSector = Layout.ChunkToSector(current.Chunk);
            bool terminated = false;
            if ((long)current.Chunk >= fileChunks) break; // past the end: reads as zeros, no entries
            for (long off = 0; off < Layout.ChunkBytes && !terminated; off += pieceBytes)
            {
                Cow.Read(areaSector + off / BlockDevice.SectorSize, piece);
                for (int i = 0; i < pieceBytes; i += DiskException.Size)
                {
                    var e = DiskException.Read(piece.AsSpan(i));
                    long index = (off + i) / DiskException.Size;
                    long entryOffset = areaSector * BlockDevice.SectorSize + off + i;
                    if (e.IsTerminator)
                    {
                        // The rest of the terminator's sector must be zeros: a sector is written whole, so entries after
                        // the terminator in the same sector are damage, not a write the crash cut short (those start in
                        // a later sector, and are ignored as dm-snapshot ignores them).
                        int sectorEnd = (i / BlockDevice.SectorSize + 1) * BlockDevice.SectorSize;
                        int stray = piece.AsSpan(i + DiskException.Size, sectorEnd - i - DiskException.Size).IndexOfAnyExcept((byte)0);
                        if (stray >= 0)
                            throw new StoreCorruptionException(Cow.Name, entryOffset, $"area {area} entry {index}: the terminator (new_chunk 0) is followed by an entry in the same sector",
                                "zeros after the terminator", $"a non-zero byte {DiskException.Size + stray} bytes after it");
                        terminated = true;
                        break;
                    }
                    string where = $"area {area} entry {index}";
                    if (e.NewChunk >= (ulong)fileChunks || Layout.IsMetadataChunk(e.NewChunk))
                        throw new StoreCorruptionException(Cow.Name, entryOffset, $"{where}: new_chunk is not a data chunk of the file",
                            $"a data chunk below {fileChunks}", e.NewChunk.ToString());
                    if (e.NewChunk >= _marksChunk && e.NewChunk < _marksChunk + (ulong)_marksChunks)
                        throw new StoreCorruptionException(Cow.Name, entryOffset, $"{where}: new_chunk is a chunk of the creation-marks table",
                            $"a chunk outside {_marksChunk}..{_marksChunk + (ulong)_marksChunks - 1}", e.NewChunk.ToString());
                    if (used[(int)e.NewChunk])
                        throw new StoreCorruptionException(Cow.Name, entryOffset, $"{where}: new_chunk {e.NewChunk} is used by two exceptions",
                            "a chunk no other entry names", e.NewChunk.ToString());
                    if (e.OldChunk >= (ulong)originChunks)
                        throw new StoreCorruptionException(Cow.Name, entryOffset, $"{where}: old_chunk is beyond the origin",
                            $"below {originChunks}", e.OldChunk.ToString());
                    if (!onException(e.OldChunk, e.NewChunk))
                        throw new StoreCorruptionException(Cow.Name, entryOffset, $"{where}: old_chunk {e.OldChunk} has two exceptions",
                            "one exception per origin chunk", e.OldChunk.ToString());
                    used[(int)e.NewChunk] = true;
                    if (e.NewChunk > maxNew) maxNew = e.NewChunk;
                    current.Append(e);
                }
            }
            if (!terminated && current.Count < epa) break; // cannot happen: a whole area was read
            if (terminated) break;
            area++;
        }
        if (maxNew >= (ulong)CapacityChunks)
            throw new SizeMismatchException(Cow.Name, $"the file uses chunks past the COW size the superblock gives it ({TotalSectors} sectors); the store was not opened and nothing was changed",
                $"chunks below {CapacityChunks}", $"chunk {maxNew}");
        current.HomeCount = current.Count;
        Metadata = _committer.Attach(this, current);
        lock (_metaLock)
        {
            _nextFree = maxNew == 0 ? CowLayout.FirstDataChunk : Layout.SkipMetadata(maxNew + 1);
            _holes.Clear();
            for (ulong c = _nextFree; c-- > CowLayout.FirstDataChunk;)
                if (!Layout.IsMetadataChunk(c) && !used[(int)c]) _holes.Push(c);
        }
    }

    /// <summary>
    /// The COW file and the superblock disagree about its size: neither is known to be the damaged one, so the store is
    /// not opened (a snapshot invalidated for it would be lost for good).
    /// </summary>
    internal sealed class SizeMismatchException(string file, string problem, string expected, string actual)
        : JournalException($"{file}: {problem} (expected {expected}, found {actual})");

    /// <summary>Data chunks below the next free chunk that are free (allocated once, never committed).</summary>
    public int HoleCount { get { lock (_metaLock) return _holes.Count; } }

    /// <summary>The area entries are appended to now.</summary>
    public long CurrentArea => Metadata.CurrentArea;

    protected override ulong LastChunkNeeded(ulong chunk)
    {
        // The area after this chunk's region must exist once the chunk's area could be full (see TryAllocate).
        ulong nextArea = Layout.AreaChunk(Layout.AreaOfDataChunk(chunk) + 1);
        return chunk + 1 == nextArea ? nextArea : chunk;
    }

    public override bool TryAllocate(out ulong newChunk)
    {
        lock (_metaLock)
        {
            if (_invalid) { newChunk = 0; return false; }
            if (_holes.Count > 0) { newChunk = _holes.Pop(); return true; }
            ulong c = _nextFree;
            if (c >= (ulong)CapacityChunks) { newChunk = 0; return false; }
            // The last data chunk before an area can be used only if that area fits too: otherwise the area before it
            // could fill with no room for the terminator area a reader walks into.
            ulong nextArea = Layout.AreaChunk(Layout.AreaOfDataChunk(c) + 1);
            if (c + 1 == nextArea && nextArea >= (ulong)CapacityChunks) { newChunk = 0; return false; }
            newChunk = c;
            _nextFree = Layout.SkipMetadata(c + 1);
            return true;
        }
    }

    public override void Free(ulong newChunk)
    {
        lock (_metaLock) _holes.Push(newChunk);
    }

    public override StoreUsage Usage
    {
        get
        {
            lock (_metaLock)
                return new StoreUsage(((long)_nextFree - _holes.Count) * Layout.ChunkSectors, TotalSectors,
                    (Metadata.CurrentArea + 1 + CowLayout.HeaderChunks + _marksChunks) * Layout.ChunkSectors); // the creation marks are metadata
        }
    }

    public override async ValueTask InvalidateAsync(CancellationToken cancellationToken = default)
    {
        _invalid = true;
        await _headerLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            BinaryPrimitives.WriteUInt32LittleEndian(_chunk0.AsSpan(4), 0);
            await Cow.WriteAsync(0, _chunk0.AsMemory(0, BlockDevice.SectorSize), cancellationToken).ConfigureAwait(false);
            await Cow.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _headerLock.Release();
        }
    }

    public override void Dispose()
    {
        base.Dispose();
        _headerLock.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() => $"PersistentExceptionStore({Cow.Name}, id {SnapshotId}, {Usage})";
}
