using System.Buffers;
using System.Runtime.CompilerServices;
using Journal;
using Journal.Format;
using Journal.Storage;
using Snapshot.Exceptions;
using Snapshot.Format;

namespace Snapshot.Metadata;

/// <summary>
/// One segment of a metadata area of a persistent COW file, as a journal log item: at most 256 entries (4 KiB; one
/// segment per area with 4 KiB chunks). Its home is its slice of the area chunk in the COW file.
/// </summary>
/// <remarks>
/// <para>Logged state: one region, a <see cref="SegmentLogHeader"/> and the entries appended since the segment was last
/// written home (<c>HomeCount .. Count</c>). Entries are append-only and never change, so each checkpoint of the segment
/// holds everything not yet home, and replaying any copy writes identical bytes at fixed positions.</para>
/// <para>Locking: <see cref="Lock"/> (async mutex) is held by a committer from the append to the end of its commit, so
/// one open transaction at a time holds the segment and <see cref="FormatLog"/> sees a stable state. The AIL's
/// <see cref="WriteBackAsync"/> only <i>tries</i> it (a committer holding it may be waiting for log space that only the
/// write-back can free), holds it just long enough to copy the durable entries, and does its I/O without it (then takes
/// the store's header lock to stamp the home LSN).</para>
/// </remarks>
internal sealed class AreaSegmentItem : LogItem
{
    /// <summary>Log item type of metadata-area segments ("SN").</summary>
    public const ushort Type = 0x534e;

    /// <summary>Bits of the item id holding the segment number (the snapshot id is above them).</summary>
    public const int SegmentBits = 40;

    public AreaSegmentItem(PersistentExceptionStore store, long segment, int entries)
        : base(Type, MakeId(store.SnapshotId, segment))
    {
        Store = store;
        Segment = segment;
        Entries = new DiskException[entries];
    }

    public static ulong MakeId(ulong snapshotId, long segment) => (snapshotId << SegmentBits) | (ulong)segment;

    public static (ulong SnapshotId, long Segment) SplitId(ulong itemId) => (itemId >> SegmentBits, (long)(itemId & ((1UL << SegmentBits) - 1)));

    public PersistentExceptionStore Store { get; }

    /// <summary>Global segment number: area * segments per area + segment within the area.</summary>
    public long Segment { get; }

    /// <summary>Held from an append to the end of its commit (see remarks).</summary>
    public readonly SemaphoreSlim Lock = new(1, 1);

    public readonly DiskException[] Entries;

    /// <summary>Entries in the segment (appended under <see cref="Lock"/>).</summary>
    public int Count;

    /// <summary>Entries written home (read under <see cref="Lock"/>; raised by the write-back, only ever upwards).</summary>
    public int HomeCount;

    /// <summary>Set when the snapshot is deleted: the segment no longer writes home.</summary>
    public volatile bool Dead;

    public bool IsFull => Count == Entries.Length;

    // The first entry the next log copy holds, fixed when the commit sizes the item (GetLogSize) so that the copy it then
    // formats (FormatLog) has exactly that size, whatever a write-back finishing in between does to HomeCount. Both run
    // for the committer holding the lock.
    private int _logFrom;

    public override LogItemSize GetLogSize()
    {
        _logFrom = Volatile.Read(ref HomeCount);
        return new(1, SegmentLogHeader.Size + (Count - _logFrom) * DiskException.Size);
    }

    public override void FormatLog(LogVectorWriter writer)
    {
        int from = _logFrom, to = Count;
        var span = writer.AddRegion(SegmentLogHeader.Size + (to - from) * DiskException.Size);
        new SegmentLogHeader((uint)from, (uint)(to - from)).Write(span);
        for (int i = from; i < to; i++) Entries[i].Write(span.Slice(SegmentLogHeader.Size + (i - from) * DiskException.Size, DiskException.Size));
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public override async ValueTask<bool> WriteBackAsync(Lsn lsn, CancellationToken cancellationToken)
    {
        if (Dead) return true;
        // Under the lock only long enough to take a consistent copy of what is durable: not pinned means every entry
        // appended so far is in a durable checkpoint. The I/O runs without it, so a committer appending the next entries
        // never waits for this write-back's flushes (entries are append-only: the copy stays exactly what it was).
        if (!Lock.Wait(0)) return false; // a committer holds it: the AIL retries later
        int from, to, bytes = 0;
        byte[]? buf = null; // from the shared array pool: a write-back every few rounds allocates nothing
        long sector = 0;
        try
        {
            if (IsPinned) return false;
            if (Dead) return true;
            from = HomeCount;
            to = Count;
            if (from < to)
            {
                const int perSector = BlockDevice.SectorSize / DiskException.Size;
                int s0 = from / perSector, s1 = (to + perSector - 1) / perSector;
                bytes = (s1 - s0) * BlockDevice.SectorSize;
                buf = ArrayPool<byte>.Shared.Rent(bytes);
                for (int i = s0 * perSector; i < to; i++) Entries[i].Write(buf.AsSpan((i - s0 * perSector) * DiskException.Size, DiskException.Size));
                // The rest of the last sector stays zero, as on create (a pooled buffer holds old bytes): a zero entry ends
                // the table for a reader of the dm format.
                buf.AsSpan((to - s0 * perSector) * DiskException.Size, bytes - (to - s0 * perSector) * DiskException.Size).Clear();
                sector = Store.SegmentHomeSector(Segment) + s0;
            }
        }
        finally
        {
            Lock.Release();
        }
        if (buf is not null)
        {
            try { await Store.Cow.WriteAsync(sector, buf.AsMemory(0, bytes), cancellationToken).ConfigureAwait(false); }
            finally { ArrayPool<byte>.Shared.Return(buf); }
            // The entries must be durable before the home-LSN slot claims them (a flush shared with other
            // write-backs and data flushes of this COW file).
            await Store.FlushDataAsync(cancellationToken).ConfigureAwait(false);
        }
        await Store.StampHomeLsnAsync(Segment, lsn, cancellationToken).ConfigureAwait(false);
        // Entries below `to` are home now. A committer reads HomeCount (under the lock) to log only what is not home;
        // it only ever grows, so a commit that read the older value logs a few entries more, which is harmless.
        int seen;
        while ((seen = Volatile.Read(ref HomeCount)) < to && Interlocked.CompareExchange(ref HomeCount, to, seen) != seen) { }
        return true;
    }

    public override BlockDevice? HomeDevice => Dead ? null : Store.Cow;

    /// <inheritdoc/>
    public override string ToString() => $"AreaSegmentItem(snapshot {Store.SnapshotId}, segment {Segment}, {Count}/{Entries.Length} entries, {HomeCount} home)";
}
