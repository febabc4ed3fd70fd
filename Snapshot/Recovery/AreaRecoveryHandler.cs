using System.Buffers.Binary;
using System.Globalization;
using Journal;
using Journal.Format;
using Journal.Recovery;
using Journal.Storage;
using Snapshot.Exceptions;
using Snapshot.Format;
using Snapshot.Metadata;
using Snapshot.Storage;

namespace Snapshot.Recovery;

/// <summary>
/// Replays logged metadata-area segments into the COW files (case 7 of <see cref="StoreRecovery"/>); its
/// <see cref="Complete"/> makes them durable and stamps their home-LSN slots (case 8).
/// </summary>
/// <remarks>
/// Per logged segment copy (every copy in the log was validated by <see cref="StoreLogItems"/> and checked against its
/// snapshot's COW size before the first is applied):
/// <list type="number">
/// <item><b>No home.</b> The snapshot is not listed as valid and persistent by the superblock as replayed from the log
/// (deleted, invalid, transient), its COW file is gone, or its COW header is marked invalid: <see cref="HasHome"/> is
/// false and the journal skips the copy. (A listed snapshot whose file is missing, unreadable or
/// cut short was refused, or given no home, before replay: case 6b of <see cref="StoreRecovery"/>.)</item>
/// <item><b>Home LSN.</b> The segment's home-LSN slot names this segment with an LSN at or above the copy's (or a copy
/// at or above it was applied in this replay): the journal skips it.</item>
/// <item><b>Apply.</b> Otherwise the entries are written at their fixed positions in the area (read-modify-write of
/// whole sectors).</item>
/// <item><b>Complete.</b> Every COW file written is flushed, then its home-LSN slots are stamped with the LSNs applied
/// and flushed again (a slot never claims entries that are not durable).</item>
/// </list>
/// </remarks>
internal sealed class AreaRecoveryHandler : IItemRecoveryHandler, IDisposable
{
    private sealed class Target(BlockDevice cow, byte[] chunk0, int slots)
    {
        public readonly BlockDevice Cow = cow;
        public readonly byte[] Chunk0 = chunk0;
        public readonly int Slots = slots;
        public readonly Dictionary<long, Lsn> Stamps = new();
        public bool Written;
    }

    private readonly IDeviceProvider _provider;
    private readonly CowLayout _layout;
    private readonly Func<ulong, string?> _cowPathOfValidSnapshot;
    private readonly Dictionary<ulong, Target?> _targets = new();
    private readonly int _segmentEntries;
    private readonly long _segmentsPerArea;
    private readonly string _logName;
    private readonly long _originChunks;
    private readonly Dictionary<Lsn, ulong> _sequences = new();

    /// <param name="provider">Where the COW files are opened.</param>
    /// <param name="layout">The store's COW layout.</param>
    /// <param name="originSectors">The origin's size (entries are checked against it).</param>
    /// <param name="cowPathOfValidSnapshot">The COW file of a snapshot id the replayed superblock lists as valid and persistent, else null.</param>
    /// <param name="logName">The journal's name, for errors.</param>
    /// <param name="checkpoints">The scanned log's checkpoints (to name the checkpoint of a copy in errors).</param>
    public AreaRecoveryHandler(IDeviceProvider provider, CowLayout layout, long originSectors, Func<ulong, string?> cowPathOfValidSnapshot,
        string logName, IReadOnlyList<Checkpoint> checkpoints)
    {
        _provider = provider;
        _layout = layout;
        _cowPathOfValidSnapshot = cowPathOfValidSnapshot;
        _segmentEntries = PersistentExceptionStore.SegmentEntriesFor(layout);
        _segmentsPerArea = layout.ExceptionsPerArea / _segmentEntries;
        _logName = logName;
        _originChunks = originSectors / layout.ChunkSectors;
        foreach (var c in checkpoints) _sequences[c.StartLsn] = c.Sequence;
    }

    /// <summary>Segment copies applied.</summary>
    public long Applied { get; private set; }

    /// <summary>The chunk holding the area of <paramref name="segment"/>; a segment whose area chunk is not inside its COW file's configured size is damage.</summary>
    public ulong AreaChunkOf(long segment) => _layout.AreaChunk(segment / _segmentsPerArea);

    private Target? Get(ulong snapshotId)
    {
        if (_targets.TryGetValue(snapshotId, out var t)) return t;
        t = null;
        string? path = _cowPathOfValidSnapshot(snapshotId);
        if (path is not null && _provider.Exists(path))
        {
            var cow = _provider.Open(path);
            try
            {
                var chunk0 = new byte[CowHeader.UsedSectorBytes(_layout.ChunkSectors)];
                if (cow.SectorCount * BlockDevice.SectorSize < chunk0.Length)
                    throw new StoreCorruptionException(path, 0, string.Create(CultureInfo.InvariantCulture,
                        $"the file is {cow.SectorCount * BlockDevice.SectorSize} bytes long, shorter than its header"), chunk0.Length.ToString(CultureInfo.InvariantCulture) + " bytes or more",
                        (cow.SectorCount * BlockDevice.SectorSize).ToString(CultureInfo.InvariantCulture) + " bytes");
                cow.Read(0, chunk0);
                var header = CowHeader.Read(chunk0, path, _layout.ChunkSectors, snapshotId);
                if (header.IsValid) t = new Target(cow, chunk0, (int)header.SlotCount);
                else cow.Dispose();
            }
            catch
            {
                cow.Dispose();
                throw;
            }
        }
        _targets[snapshotId] = t;
        return t;
    }

    /// <summary>Case 1: the segment's snapshot is listed valid and persistent, and its COW file exists with a valid header.</summary>
    public bool HasHome(ulong itemId) => Get(AreaSegmentItem.SplitId(itemId).SnapshotId) is not null;

    /// <summary>Case 2: the LSN the slot of the segment holds (or the last copy applied in this replay).</summary>
    public Lsn GetHomeLsn(ulong itemId)
    {
        var (id, segment) = AreaSegmentItem.SplitId(itemId);
        var t = Get(id) ?? throw new InvalidOperationException($"segment {segment} of snapshot id {id} has no home");
        if (t.Stamps.TryGetValue(segment, out var applied)) return applied;
        int off = PersistentExceptionStore.SlotOffset(segment, t.Slots);
        ulong key = BinaryPrimitives.ReadUInt64LittleEndian(t.Chunk0.AsSpan(off));
        return key == (ulong)segment + 1 ? Lsn.FromValue(BinaryPrimitives.ReadUInt64LittleEndian(t.Chunk0.AsSpan(off + 8))) : Lsn.Zero;
    }

    /// <summary>Case 3: the entries go to their fixed positions.</summary>
    public void Apply(ulong itemId, Lsn checkpointLsn, IReadOnlyList<ReadOnlyMemory<byte>> regions)
    {
        var (id, segment, h) = StoreLogItems.DecodeSegment(_logName, checkpointLsn, _sequences.GetValueOrDefault(checkpointLsn), itemId, regions,
            _layout, _segmentEntries, _originChunks);
        var t = Get(id) ?? throw new InvalidOperationException($"segment {segment} of snapshot id {id} has no home");
        var region = regions[0].Span;
        if (h.Count > 0)
        {
            long home = _layout.ChunkToSector(AreaChunkOf(segment))
                + segment % _segmentsPerArea * _segmentEntries * DiskException.Size / BlockDevice.SectorSize;
            const int perSector = BlockDevice.SectorSize / DiskException.Size;
            long s0 = h.First / perSector, s1 = (h.First + h.Count + perSector - 1) / perSector;
            var buf = new byte[(s1 - s0) * BlockDevice.SectorSize];
            if (t.Cow.SectorCount < home + s1) t.Cow.Extend(home + s1);
            t.Cow.Read(home + s0, buf);
            region.Slice(SegmentLogHeader.Size).CopyTo(buf.AsSpan((int)(h.First - s0 * perSector) * DiskException.Size));
            t.Cow.Write(home + s0, buf);
            t.Written = true;
        }
        t.Stamps[segment] = checkpointLsn;
        Applied++;
    }

    /// <summary>Case 4: flush the replayed COW files, then stamp and flush their slots.</summary>
    public void Complete()
    {
        foreach (var t in _targets.Values)
        {
            if (t is null || t.Stamps.Count == 0) continue;
            if (t.Written) t.Cow.Flush();
            var sectors = new SortedSet<int>();
            foreach (var (segment, lsn) in t.Stamps)
            {
                int off = PersistentExceptionStore.SlotOffset(segment, t.Slots);
                BinaryPrimitives.WriteUInt64LittleEndian(t.Chunk0.AsSpan(off), (ulong)segment + 1);
                BinaryPrimitives.WriteUInt64LittleEndian(t.Chunk0.AsSpan(off + 8), lsn.Value);
                sectors.Add(off / BlockDevice.SectorSize);
            }
            foreach (int s in sectors) t.Cow.Write(s, t.Chunk0.AsSpan(s * BlockDevice.SectorSize, BlockDevice.SectorSize));
            t.Cow.Flush();
        }
    }

    /// <summary>The highest LSN any home-LSN slot of the COW file of <paramref name="snapshotId"/> holds (Lsn.Zero when none or no home).</summary>
    public Lsn HighestSlotLsn(ulong snapshotId)
    {
        var t = Get(snapshotId);
        if (t is null) return Lsn.Zero;
        var max = Lsn.Zero;
        for (int i = 0; i < t.Slots; i++)
        {
            int off = CowHeader.SlotsOffset + i * 16;
            if (BinaryPrimitives.ReadUInt64LittleEndian(t.Chunk0.AsSpan(off)) == 0) continue;
            max = Lsn.Max(max, Lsn.FromValue(BinaryPrimitives.ReadUInt64LittleEndian(t.Chunk0.AsSpan(off + 8))));
        }
        return max;
    }

    public void Dispose()
    {
        foreach (var t in _targets.Values) t?.Cow.Dispose();
        _targets.Clear();
    }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"AreaRecoveryHandler({_targets.Count} COW files, {Applied} applied)");
}
