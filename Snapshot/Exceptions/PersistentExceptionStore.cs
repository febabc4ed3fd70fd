using System.Buffers.Binary;
using Journal.Format;
using Journal.Recovery;
using Journal.Storage;
using Journal;
using Snapshot.Format;
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
/// <para><b>Commit</b>, journal mode (the default): the entry is appended to the current metadata-area segment
/// (<see cref="AreaSegmentItem"/>, at most 4 KiB of entries) and the segment is committed through the store's journal;
/// the commit returns after the journal force (shared among concurrent commits). The journal's AIL later writes the
/// segment home into the area and stamps its home-LSN slot in chunk 0. Direct mode (<see cref="MetadataMode.DirectArea"/>,
/// the dm-snapshot scheme): the commit rewrites the area chunk and flushes (concurrent commits share one area write and
/// one flush; for chunks over 64 KiB only the changed sectors are written). Either way the caller has already made the data durable, so an entry never points
/// at data that is not on disk.</para>
/// <para><b>Home-LSN slots</b>: chunk 0 holds, after the header, slots <c>{ le64 segment + 1, le64 LSN }</c>; segment
/// g uses slot <c>g % slots</c>. A slot is written only after the segment's entries are durable, so it never claims
/// more than the home holds; a segment whose slot was reused by a later one has no home LSN and is replayed in full,
/// which rewrites identical bytes.</para>
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
    private readonly GroupFlush _commitRounds; // one commit round at a time (see CommitRoundAsync)
    private readonly object _queueLock = new(); // leaf: protects _queue
    private List<DiskException> _queue = new(); // exceptions whose data is written, waiting for a commit round
    private readonly Dictionary<long, MetadataArea> _areas = new(); // areas with entries not yet home, and the current one
    private MetadataArea _current;
    private ulong _nextFree = CowLayout.FirstDataChunk;
    private readonly Stack<ulong> _holes = new();
    private volatile bool _invalid;
    private long _committed;

    // Journal mode: the segment entries are appended to now, and the segments not yet known to be home.
    private readonly MetadataJournal? _journal;
    private AreaSegmentItem? _segment;
    private readonly List<AreaSegmentItem> _liveSegments = new();
    private long _nextEntry; // global index of the next entry (area * epa + index in area)
    private readonly WriteBackKicker? _kicker;

    // One kicker per journal, shared by every store committing through it.
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<MetadataJournal, WriteBackKicker> Kickers = new();

    /// <summary>The write-back kicker of <paramref name="journal"/>.</summary>
    public static WriteBackKicker KickerFor(MetadataJournal journal) => Kickers.GetValue(journal, j => new WriteBackKicker(j));

    private PersistentExceptionStore(BlockDevice cow, CowLayout layout, long totalSectors, long growthSectors, ulong snapshotId, MetadataJournal? journal)
        : base(cow, layout, totalSectors, growthSectors)
    {
        SnapshotId = snapshotId;
        _journal = journal;
        if (journal is not null) _kicker = KickerFor(journal);
        SegmentEntries = SegmentEntriesFor(layout);
        _chunk0 = new byte[(CowHeader.UsedBytes(layout.ChunkSectors) + BlockDevice.SectorSize - 1) / BlockDevice.SectorSize * BlockDevice.SectorSize];
        _commitRounds = new GroupFlush(CommitRoundAsync);
        _current = NewArea(0);
        _areas[0] = _current;
        if (journal is not null) _segment = NewSegment(0, null, 0);
    }

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

    private AreaSegmentItem NewSegment(long segment, DiskException[]? preload, int count)
    {
        var item = new AreaSegmentItem(this, segment, SegmentEntries);
        if (preload is not null) Array.Copy(preload, item.Entries, count);
        item.Count = item.HomeCount = count;
        _liveSegments.Add(item);
        return item;
    }

    /// <summary>Stops every segment of this store from writing home (the snapshot was deleted).</summary>
    public void MarkDeleted()
    {
        lock (_metaLock)
            foreach (var seg in _liveSegments) seg.Dead = true;
    }

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

    /// <summary>Exceptions committed since open (not counting those read at open).</summary>
    public long CommittedSinceOpen => Interlocked.Read(ref _committed);

    public override bool IsPersistent => true;

    private MetadataArea NewArea(long index) => new(index, Layout.AreaChunk(index), Layout.ExceptionsPerArea);

    /// <summary>Smallest COW size (in sectors) that holds the header chunk and the first metadata area.</summary>
    public static long MinimumSectors(int chunkSectors) => 2L * chunkSectors;

    /// <summary>Creates a new COW file: header (valid) and a zeroed first area, flushed.</summary>
    public static PersistentExceptionStore Create(IDeviceProvider provider, string path, CowLayout layout, long totalSectors, long growthSectors, ulong snapshotId, ulong storeId, MetadataJournal? journal = null)
    {
        long total = totalSectors / layout.ChunkSectors * layout.ChunkSectors;
        long initial = Math.Min(total, Math.Max(growthSectors, 3L * layout.ChunkSectors));
        initial = Math.Max(initial, MinimumSectors(layout.ChunkSectors));
        var dev = provider.Create(path, initial);
        var s = new PersistentExceptionStore(dev, layout, totalSectors, growthSectors, snapshotId, journal);
        try
        {
            CowHeader.New(layout.ChunkSectors, snapshotId, storeId).Write(s._chunk0);
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
    public static PersistentExceptionStore Open(IDeviceProvider provider, string path, CowLayout layout, long totalSectors, long growthSectors, ulong snapshotId, ulong storeId, out CowHeader header, MetadataJournal? journal = null)
    {
        var dev = provider.Open(path);
        var s = new PersistentExceptionStore(dev, layout, totalSectors, growthSectors, snapshotId, journal);
        try
        {
            if (dev.SectorCount < MinimumSectors(layout.ChunkSectors))
                throw new CorruptionException(path, 0, Lsn.Zero, "COW file is shorter than its header and first area",
                    $"{MinimumSectors(layout.ChunkSectors)} sectors", $"{dev.SectorCount} sectors");
            dev.Read(0, s._chunk0);
            header = CowHeader.Read(s._chunk0, path, layout.ChunkSectors, snapshotId, storeId);
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
            _nextEntry = current.Index * epa + current.Count;
            if (_journal is not null)
            {
                _liveSegments.Clear();
                long seg = _nextEntry / SegmentEntries;
                int first = (int)(seg % SegmentsPerArea) * SegmentEntries;
                int inSeg = (int)(_nextEntry % SegmentEntries);
                _segment = NewSegment(seg, current.Entries.AsSpan(first, Math.Min(inSeg, Math.Max(0, current.Count - first))).ToArray(), inSeg);
            }
            _nextFree = maxNew == 0 ? CowLayout.FirstDataChunk : Layout.SkipMetadata(maxNew + 1);
            _holes.Clear();
            for (ulong c = _nextFree; c-- > CowLayout.FirstDataChunk;)
                if (!Layout.IsMetadataChunk(c) && !used[(int)c]) _holes.Push(c);
        }
    }

    /// <summary>Data chunks below the next free chunk that are free (allocated once, never committed).</summary>
    public int HoleCount { get { lock (_metaLock) return _holes.Count; } }

    /// <summary>The area entries are appended to now.</summary>
    public long CurrentArea { get { lock (_metaLock) return CurrentAreaLocked; } }

    private long CurrentAreaLocked => _journal is null ? _current.Index : _nextEntry / Layout.ExceptionsPerArea;

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
                    (CurrentAreaLocked + 1 + CowLayout.HeaderChunks) * Layout.ChunkSectors);
        }
    }

    /// <summary>Appends the entry to the current area (moving to the next area when it fills). Returns the area used.</summary>
    private MetadataArea AppendLocked(DiskException e)
    {
        var area = _current;
        area.Append(e);
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
        lock (_queueLock) _queue.Add(new DiskException(oldChunk, newChunk));
        // A round that starts after this call takes our entry: waiting for it (it waits for nothing we hold).
        await _commitRounds.FlushAsync(cancellationToken).ConfigureAwait(false);
        Interlocked.Increment(ref _committed);
    }

    /// <summary>Commit rounds run (each makes a batch of exceptions durable together).</summary>
    public long CommitRounds => _commitRounds.Rounds;

    /// <summary>
    /// One commit round: take every queued exception; flush the COW file (their data was written before they were
    /// queued, so it is durable before any metadata points at it); then commit them all — journal mode: append them to
    /// the segments (holding each segment's lock from append to commit), one transaction, commit, force; direct mode:
    /// append them to the areas and rewrite the areas, flush.
    /// </summary>
    private async ValueTask CommitRoundAsync(CancellationToken cancellationToken)
    {
        List<DiskException> batch;
        lock (_queueLock)
        {
            batch = _queue;
            _queue = new List<DiskException>();
        }
        if (batch.Count == 0) return;
        await Cow.FlushAsync(cancellationToken).ConfigureAwait(false);
        if (_invalid) return;
        if (_journal is null)
        {
            lock (_metaLock) foreach (var e in batch) AppendLocked(e);
            await WriteAreasHomeAsync(cancellationToken).ConfigureAwait(false);
            return;
        }
        await CommitThroughJournalAsync(_journal, batch, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Journal commit of a batch, in transactions that each fit the log (<see cref="MetadataJournal.MaxTransactionBytes"/>):
    /// a busy store queues more exceptions per round, and one transaction for all of them could ask for more log space
    /// than the log has. Each transaction reserves log space holding nothing (enough for every segment its part can
    /// touch, each entirely dirty); then, segment by segment, takes its lock, appends, joins it; commits; releases. One
    /// force at the end makes every part durable (sequences are forced in order). Rounds of one store never overlap, so
    /// the segment locks only ever contend with the AIL, which just tries them.
    /// </summary>
    private async ValueTask CommitThroughJournalAsync(MetadataJournal journal, List<DiskException> batch, CancellationToken cancellationToken)
    {
        int entriesPerTransaction = EntriesPerTransaction(journal);
        ulong sequence = 0;
        bool kick = false;
        for (int start = 0; start < batch.Count; start += entriesPerTransaction)
        {
            int count = Math.Min(entriesPerTransaction, batch.Count - start);
            (sequence, bool k) = await CommitTransactionAsync(journal, batch, start, count, cancellationToken).ConfigureAwait(false);
            kick |= k;
            Interlocked.Increment(ref _commitTransactions);
        }
        await journal.ForceAsync(sequence, cancellationToken).ConfigureAwait(false);
        if (kick) _kicker!.Request();
    }

    private long _commitTransactions;

    /// <summary>Journal transactions committed by commit rounds (more than the rounds when a round's batch was split).</summary>
    public long CommitTransactions => Interlocked.Read(ref _commitTransactions);

    /// <summary>Log bytes reserved for one segment that a transaction may fill entirely.</summary>
    private int SegmentReserveBytes(MetadataJournal journal) =>
        (int)journal.EstimateLogBytes(new LogItemSize(1, SegmentLogHeader.Size + SegmentEntries * DiskException.Size));

    /// <summary>
    /// Most exceptions one transaction commits: as many whole segments as fit the log's per-transaction limit, less the
    /// partly filled segment a transaction can start in (at least one segment's worth).
    /// </summary>
    internal int EntriesPerTransaction(MetadataJournal journal)
    {
        long segments = journal.MaxTransactionBytes / SegmentReserveBytes(journal);
        return (int)Math.Max(1, segments - 1) * SegmentEntries;
    }

    /// <summary>Commits <paramref name="count"/> entries of <paramref name="batch"/> from <paramref name="start"/> as one transaction.</summary>
    private async ValueTask<(ulong Sequence, bool Kick)> CommitTransactionAsync(MetadataJournal journal, List<DiskException> batch, int start, int count,
        CancellationToken cancellationToken)
    {
        int maxSegments = 1 + (count + SegmentEntries - 1) / SegmentEntries;
        int reserve = maxSegments * SegmentReserveBytes(journal);
        ulong sequence;
        bool kick = false;
        var held = new List<AreaSegmentItem>(2);
        using (var tx = await journal.BeginTransactionAsync(reserve, cancellationToken).ConfigureAwait(false))
        {
            try
            {
                int i = start, end = start + count;
                while (i < end)
                {
                    AreaSegmentItem seg;
                    lock (_metaLock) seg = _segment!;
                    // Waiting only for an AIL write-back of this segment in progress (it takes nothing we hold).
                    await seg.Lock.WaitAsync(cancellationToken).ConfigureAwait(false);
                    held.Add(seg);
                    while (i < end && !seg.IsFull) seg.Entries[seg.Count++] = batch[i++];
                    if (seg.IsFull)
                    {
                        lock (_metaLock)
                        {
                            _liveSegments.RemoveAll(x => x != seg && x.HomeCount == x.Entries.Length);
                            _segment = NewSegment(seg.Segment + 1, null, 0);
                        }
                    }
                    tx.AddItem(seg);
                }
                lock (_metaLock) _nextEntry += count;
                sequence = await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
                foreach (var seg in held) kick |= seg.Count - seg.HomeCount >= WriteBackKicker.DirtyThreshold;
            }
            finally
            {
                foreach (var seg in held) seg.Lock.Release();
            }
        }
        return (sequence, kick);
    }

    /// <summary>Largest area rewritten whole by a direct-mode commit.</summary>
    private const int WholeAreaWriteLimit = 64 * 1024;

    /// <summary>Direct mode: write every area with entries not yet home, then flush.</summary>
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
                    // Like dm-snapshot, rewrite the whole area chunk (only the changed sectors for chunks over 64 KiB).
                    const int perSector = BlockDevice.SectorSize / DiskException.Size;
                    bool whole = Layout.ChunkBytes <= WholeAreaWriteLimit;
                    int firstSector = whole ? 0 : area.HomeCount / perSector;
                    int endSector = whole ? Layout.ChunkSectors : (area.Count + perSector - 1) / perSector;
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
        if (_invalid || _journal is not null) return; // journal mode: the journal's close writes the segments home
        await _commitRounds.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    public override void Dispose()
    {
        base.Dispose();
        _headerLock.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() => $"PersistentExceptionStore({Cow.Name}, id {SnapshotId}, {Usage})";
}
