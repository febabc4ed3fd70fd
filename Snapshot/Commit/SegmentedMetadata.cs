using Journal;
using Snapshot.Exceptions;
using Snapshot.Format;
using Snapshot.Metadata;

namespace Snapshot.Commit;

/// <summary>
/// Journal mode, one COW file: its metadata areas as log items of at most 4 KiB (<see cref="AreaSegmentItem"/>), the
/// segment entries are appended to now, and the segments not yet known to be home.
/// </summary>
/// <remarks>
/// Locking: <c>_lock</c> (leaf monitor) protects <c>_segment</c>, <c>_live</c> and <c>_nextEntry</c>; held for a few
/// instructions. A segment's own <see cref="AreaSegmentItem.Lock"/> is held by the committer from the append to the
/// end of its transaction (see <see cref="JournalCommitter"/>); <c>_lock</c> may be taken while holding it, never the
/// other way round.
/// </remarks>
internal sealed class SegmentedMetadata : CowMetadata
{
    private readonly PersistentExceptionStore _store;
    private readonly object _lock = new();
    private readonly List<AreaSegmentItem> _live = new();
    private AreaSegmentItem _segment;
    private long _nextEntry; // global index of the next entry (area * epa + index in area)

    public SegmentedMetadata(PersistentExceptionStore store, MetadataArea current)
    {
        _store = store;
        long epa = store.Layout.ExceptionsPerArea;
        int perSegment = store.SegmentEntries;
        _nextEntry = current.Index * epa + current.Count;
        long seg = _nextEntry / perSegment;
        int first = (int)(seg % store.SegmentsPerArea) * perSegment;
        int inSegment = (int)(_nextEntry % perSegment);
        _segment = NewSegment(seg);
        Array.Copy(current.Entries, first, _segment.Entries, 0, Math.Min(inSegment, Math.Max(0, current.Count - first)));
        _segment.Count = _segment.HomeCount = inSegment;
    }

    public override long CurrentArea { get { lock (_lock) return _nextEntry / _store.Layout.ExceptionsPerArea; } }

    public override long EntryCount { get { lock (_lock) return _nextEntry; } }

    public override void CollectSegmentsInMemory(List<AreaSegmentItem> into)
    {
        lock (_lock) into.AddRange(_live);
    }

    private AreaSegmentItem NewSegment(long segment)
    {
        var item = new AreaSegmentItem(_store, segment, _store.SegmentEntries);
        _live.Add(item);
        return item;
    }

    public override void MarkDeleted()
    {
        lock (_lock)
            foreach (var seg in _live) seg.Dead = true;
    }

    /// <summary>
    /// Appends <paramref name="count"/> entries of <paramref name="items"/> from <paramref name="start"/> to the segments
    /// and joins each segment touched to <paramref name="tx"/>, leaving its lock held (added to <paramref name="held"/>;
    /// the caller releases after the commit). At most <c>1 + count / entries per segment</c> segments are touched.
    /// </summary>
    public async ValueTask AppendAsync(Transaction tx, List<PendingException> items, int start, int count, List<AreaSegmentItem> held)
    {
        int i = start, end = start + count;
        while (i < end)
        {
            AreaSegmentItem seg;
            lock (_lock) seg = _segment;
            // Waiting only for an AIL write-back of this segment in progress (it takes nothing we hold).
            await seg.Lock.WaitAsync().ConfigureAwait(false);
            held.Add(seg);
            while (i < end && !seg.IsFull)
            {
                var pe = items[i++];
                seg.Entries[seg.Count++] = new DiskException(pe.OldChunk, pe.NewChunk);
            }
            if (seg.IsFull)
            {
                lock (_lock)
                {
                    // Segments wholly written home leave the live list (a loop, not RemoveAll with a lambda: a
                    // closure over seg would be allocated on every append).
                    int kept = 0;
                    for (int k = 0; k < _live.Count; k++)
                    {
                        var x = _live[k];
                        if (x == seg || x.HomeCount != x.Entries.Length) _live[kept++] = x;
                    }
                    _live.RemoveRange(kept, _live.Count - kept);
                    _segment = NewSegment(seg.Segment + 1);
                }
            }
            tx.AddItem(seg);
        }
        lock (_lock) _nextEntry += count;
    }

    /// <inheritdoc/>
    public override string ToString() => $"SegmentedMetadata({_store.Cow.Name}, next entry {_nextEntry}, {_live.Count} live segments)";
}
