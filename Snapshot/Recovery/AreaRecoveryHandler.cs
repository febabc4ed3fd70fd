using System.Buffers.Binary;
using Journal;
using Journal.Format;
using Journal.Recovery;
using Journal.Storage;
using Snapshot.Exceptions;
using Snapshot.Format;
using Snapshot.Storage;

namespace Snapshot.Metadata;

/// <summary>
/// Replays logged metadata-area segments into the COW files at open.
/// </summary>
/// <remarks>
/// Recovery cases, per logged segment copy:
/// <list type="number">
/// <item>The snapshot is not a valid persistent snapshot in the superblock as replayed from the log (the store's
/// superblock pass runs first: deleted, invalid, transient, or its COW file is gone): the copy is skipped (home LSN reported as above every LSN).</item>
/// <item>The COW header is marked invalid: skipped the same way.</item>
/// <item>The segment's home-LSN slot names this segment with an LSN at or above the copy's: the journal skips it.</item>
/// <item>Otherwise the entries are written at their fixed positions in the area (read-modify-write of whole sectors);
/// a region that does not parse (magic, bounds, length) is a <see cref="CorruptionException"/> naming the COW file,
/// the LSN and the problem.</item>
/// </list>
/// At the end every COW file written is flushed, then its home-LSN slots are stamped with the LSNs applied and
/// flushed again (a slot never claims entries that are not durable).
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

    public AreaRecoveryHandler(IDeviceProvider provider, CowLayout layout, Func<ulong, string?> cowPathOfValidSnapshot)
    {
        _provider = provider;
        _layout = layout;
        _cowPathOfValidSnapshot = cowPathOfValidSnapshot;
        _segmentEntries = PersistentExceptionStore.SegmentEntriesFor(layout);
        _segmentsPerArea = layout.ExceptionsPerArea / _segmentEntries;
    }

    /// <summary>Segment copies applied.</summary>
    public long Applied { get; private set; }

    private Target? Get(ulong snapshotId)
    {
        if (_targets.TryGetValue(snapshotId, out var t)) return t;
        t = null;
        string? path = _cowPathOfValidSnapshot(snapshotId);
        if (path is not null && _provider.Exists(path))
        {
            var cow = _provider.Open(path);
            var chunk0 = new byte[(CowHeader.UsedBytes(_layout.ChunkSectors) + BlockDevice.SectorSize - 1) / BlockDevice.SectorSize * BlockDevice.SectorSize];
            cow.Read(0, chunk0);
            var header = CowHeader.Read(chunk0, path, _layout.ChunkSectors, snapshotId);
            if (header.IsValid) t = new Target(cow, chunk0, (int)header.SlotCount);
            else cow.Dispose();
        }
        _targets[snapshotId] = t;
        return t;
    }

    public Lsn GetHomeLsn(ulong itemId)
    {
        var (id, segment) = AreaSegmentItem.SplitId(itemId);
        var t = Get(id);
        if (t is null) return StoreJournal.SkipAll;
        int off = PersistentExceptionStore.SlotOffset(segment, t.Slots);
        ulong key = BinaryPrimitives.ReadUInt64LittleEndian(t.Chunk0.AsSpan(off));
        if (t.Stamps.TryGetValue(segment, out var applied)) return applied;
        return key == (ulong)segment + 1 ? Lsn.FromValue(BinaryPrimitives.ReadUInt64LittleEndian(t.Chunk0.AsSpan(off + 8))) : Lsn.Zero;
    }

    public void Apply(ulong itemId, Lsn checkpointLsn, IReadOnlyList<ReadOnlyMemory<byte>> regions)
    {
        var (id, segment) = AreaSegmentItem.SplitId(itemId);
        var t = Get(id);
        if (t is null) return;
        if (regions.Count != 1)
            throw new CorruptionException(t.Cow.Name, -1, checkpointLsn, $"metadata segment {segment}: {regions.Count} regions logged, expected 1");
        var region = regions[0].Span;
        var h = SegmentLogHeader.TryRead(region, _segmentEntries, out string? problem)
            ?? throw new CorruptionException(t.Cow.Name, -1, checkpointLsn, $"metadata segment {segment}: {problem}");
        if (h.Count > 0)
        {
            long home = _layout.ChunkToSector(_layout.AreaChunk(segment / _segmentsPerArea))
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

    public void Dispose()
    {
        foreach (var t in _targets.Values) t?.Cow.Dispose();
        _targets.Clear();
    }
}
