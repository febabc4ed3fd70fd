using System.Buffers.Binary;
using Journal.Format;
using Journal.Recovery;
using Journal.Storage;
using Snapshot.Format;
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
/// <para><b>Commit</b>: in <see cref="MetadataMode.DirectArea"/> mode (the dm-snapshot scheme) a commit appends the
/// entry to the in-memory area and then rewrites the changed sectors of the area and flushes (concurrent commits share
/// one area write and one flush). The caller has already made the data durable, so an entry never points at data
/// that is not on disk.</para>
/// <para><b>Open</b>: the areas are read in order until the terminator; every entry is checked (new chunk inside the
/// file, not a metadata chunk, not used twice; old chunk inside the origin). The next free chunk is one past the
/// highest new chunk; data chunks below it that no entry uses (allocated for copies that never committed) go back on
/// a free list, so nothing is leaked.</para>
/// <para>Locking: <c>_metaLock</c> (leaf monitor) protects the areas and the allocation state; it is held for
/// in-memory work only, never across I/O. <c>_headerLock</c> (async mutex) serialises writes of chunk 0.</para>
/// </remarks>
internal sealed class PersistentExceptionStore : ExceptionStore
{
    private readonly object _metaLock = new();
    private readonly SemaphoreSlim _headerLock = new(1, 1);
    private readonly byte[] _chunk0;        // header and home-LSN slots, whole sectors
    private readonly GroupFlush _areaWriter; // direct mode: one round = write changed area sectors + flush
    private readonly Dictionary<long, MetadataArea> _areas = new(); // areas with entries not yet home, and the current one
    private MetadataArea _current;
    private ulong _nextFree = CowLayout.FirstDataChunk;
    private readonly Stack<ulong> _holes = new();
    private volatile bool _invalid;
    private long _committed;

    private PersistentExceptionStore(BlockDevice cow, CowLayout layout, long totalSectors, long growthSectors, ulong snapshotId)
        : base(cow, layout, totalSectors, growthSectors)
    {
        SnapshotId = snapshotId;
        _chunk0 = new byte[(CowHeader.UsedBytes(layout.ChunkSectors) + BlockDevice.SectorSize - 1) / BlockDevice.SectorSize * BlockDevice.SectorSize];
        _areaWriter = new GroupFlush(WriteAreasHomeAsync);
        _current = NewArea(0);
        _areas[0] = _current;
    }

    /// <summary>The snapshot id recorded in the header.</summary>
    public ulong SnapshotId { get; }

    /// <summary>False when the header says invalid or the store was invalidated.</summary>
    public bool IsValid => !_invalid;

    /// <summary>Exceptions committed since open (not counting those read at open).</summary>
    public long CommittedSinceOpen => Interlocked.Read(ref _committed);

    public override bool IsPersistent => true;

    private MetadataArea NewArea(long index) => new(index, Layout.AreaChunk(index), Layout.ExceptionsPerArea);

    /// <summary>Smallest COW size (in sectors) that holds the header chunk and the first metadata area.</summary>
    public static long MinimumSectors(int chunkSectors) => 2L * chunkSectors;

    /// <summary>Creates a new COW file: header (valid) and a zeroed first area, flushed.</summary>
    public static PersistentExceptionStore Create(IDeviceProvider provider, string path, CowLayout layout, long totalSectors, long growthSectors, ulong snapshotId)
    {
        long total = totalSectors / layout.ChunkSectors * layout.ChunkSectors;
        long initial = Math.Min(total, Math.Max(growthSectors, 3L * layout.ChunkSectors));
        initial = Math.Max(initial, MinimumSectors(layout.ChunkSectors));
        var dev = provider.Create(path, initial);
        var s = new PersistentExceptionStore(dev, layout, totalSectors, growthSectors, snapshotId);
        try
        {
            CowHeader.New(layout.ChunkSectors, snapshotId).Write(s._chunk0);
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

    /// <summary>Opens an existing COW file and reads its header; call <see cref="Load"/> next if it is valid.</summary>
    public static PersistentExceptionStore Open(IDeviceProvider provider, string path, CowLayout layout, long totalSectors, long growthSectors, ulong snapshotId, out CowHeader header)
    {
        var dev = provider.Open(path);
        var s = new PersistentExceptionStore(dev, layout, totalSectors, growthSectors, snapshotId);
        try
        {
            if (dev.SectorCount < MinimumSectors(layout.ChunkSectors))
                throw new CorruptionException(path, 0, Lsn.Zero, "COW file is shorter than its header and first area",
                    $"{MinimumSectors(layout.ChunkSectors)} sectors", $"{dev.SectorCount} sectors");
            dev.Read(0, s._chunk0);
            header = CowHeader.Read(s._chunk0, path, layout.ChunkSectors, snapshotId);
            s._invalid = !header.IsValid;
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
                    if (e.IsTerminator) { terminated = true; break; }
                    long at = areaSector + (off + i) / BlockDevice.SectorSize;
                    string where = $"area {area} entry {index}";
                    if (e.NewChunk >= (ulong)fileChunks || Layout.IsMetadataChunk(e.NewChunk))
                        throw new CorruptionException(Cow.Name, at, Lsn.Zero, $"{where}: new_chunk is not a data chunk of the file",
                            $"a data chunk below {fileChunks}", e.NewChunk.ToString());
                    if (used[(int)e.NewChunk])
                        throw new CorruptionException(Cow.Name, at, Lsn.Zero, $"{where}: new_chunk {e.NewChunk} is used by two exceptions");
                    if (e.OldChunk >= (ulong)originChunks)
                        throw new CorruptionException(Cow.Name, at, Lsn.Zero, $"{where}: old_chunk is beyond the origin",
                            $"below {originChunks}", e.OldChunk.ToString());
                    if (!onException(e.OldChunk, e.NewChunk))
                        throw new CorruptionException(Cow.Name, at, Lsn.Zero, $"{where}: old_chunk {e.OldChunk} has two exceptions");
                    used[(int)e.NewChunk] = true;
                    if (e.NewChunk > maxNew) maxNew = e.NewChunk;
                    current.Append(e);
                }
            }
            if (!terminated && current.Count < epa) break; // cannot happen: a whole area was read
            if (terminated) break;
            area++;
        }
        current.HomeCount = current.Count;
        lock (_metaLock)
        {
            _areas.Clear();
            _current = current;
            _areas[current.Index] = current;
            _nextFree = maxNew == 0 ? CowLayout.FirstDataChunk : Layout.SkipMetadata(maxNew + 1);
            _holes.Clear();
            for (ulong c = _nextFree; c-- > CowLayout.FirstDataChunk;)
                if (!Layout.IsMetadataChunk(c) && !used[(int)c]) _holes.Push(c);
        }
    }

    /// <summary>Data chunks below the next free chunk that are free (allocated once, never committed).</summary>
    public int HoleCount { get { lock (_metaLock) return _holes.Count; } }

    /// <summary>The area entries are appended to now.</summary>
    public long CurrentArea { get { lock (_metaLock) return _current.Index; } }

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
                    (_current.Index + 1 + CowLayout.HeaderChunks) * Layout.ChunkSectors);
        }
    }

    /// <summary>Appends the entry to the current area (moving to the next area when it fills). Returns the area used.</summary>
    private MetadataArea AppendLocked(ulong oldChunk, ulong newChunk)
    {
        var area = _current;
        area.Append(new DiskException(oldChunk, newChunk));
        if (area.IsFull)
        {
            _current = NewArea(area.Index + 1);
            _areas[_current.Index] = _current;
        }
        return area;
    }

    public override async ValueTask CommitAsync(ulong oldChunk, ulong newChunk, CancellationToken cancellationToken = default)
    {
        if (_invalid) return;
        lock (_metaLock) AppendLocked(oldChunk, newChunk);
        Interlocked.Increment(ref _committed);
        await _areaWriter.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>One direct-mode round: write the changed sectors of every area with entries not yet home, then flush.</summary>
    private async ValueTask WriteAreasHomeAsync(CancellationToken cancellationToken)
    {
        List<(long Sector, byte[] Data)> writes = [];
        lock (_metaLock)
        {
            List<long>? done = null;
            foreach (var area in _areas.Values)
            {
                if (area.HomeCount < area.Count)
                {
                    const int perSector = BlockDevice.SectorSize / DiskException.Size;
                    int firstSector = area.HomeCount / perSector;
                    int endSector = (area.Count + perSector - 1) / perSector;
                    var data = new byte[(endSector - firstSector) * BlockDevice.SectorSize];
                    area.Format(firstSector * perSector, area.Count, data);
                    writes.Add((Layout.ChunkToSector(area.Chunk) + firstSector, data));
                    area.HomeCount = area.Count;
                }
                if (area.IsFull && area != _current) (done ??= []).Add(area.Index);
            }
            if (done is not null) foreach (long i in done) _areas.Remove(i);
        }
        if (_invalid) return;
        foreach (var (sector, data) in writes) await Cow.WriteAsync(sector, data, cancellationToken).ConfigureAwait(false);
        await Cow.FlushAsync(cancellationToken).ConfigureAwait(false);
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

    public override async ValueTask CloseAsync(CancellationToken cancellationToken = default)
    {
        if (_invalid) return;
        await _areaWriter.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    public override void Dispose()
    {
        base.Dispose();
        _headerLock.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() => $"PersistentExceptionStore({Cow.Name}, id {SnapshotId}, {Usage})";
}
