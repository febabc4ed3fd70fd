using Journal.Format;

namespace Journal.Cil;

/// <summary>
/// One CIL context: the items committed since the last push, in commit order, which become one checkpoint. While
/// current it collects commits (under the shared context lock); once switched out it is owned by its push, which
/// writes it, waits for it to be durable, moves its items into the AIL and frees its vectors.
/// </summary>
/// <remarks>
/// <para>The list is of <see cref="LogVector"/>s, not items: an item can be in two contexts at once (its old vector in
/// the context being pushed, its new one in the current context), and each context owns exactly the vectors on its
/// list. <see cref="ListLock"/> (a spin lock, allocation-free even when contended) serialises committers relinking vectors while they all
/// hold the context lock shared; it is held only for a few pointer updates.</para>
/// <para>The counters are updated with interlocked operations by committers and are final once the context is
/// switched out (the exclusive lock waits for every committer to leave).</para>
/// </remarks>
internal sealed class CilContext
{
    internal ulong Sequence;
    internal CilContext? Previous;           // the context switched out before this one, until this one completes

    internal LogVector? Head, Tail;
    internal ListSpinLock ListLock;

    internal long SpaceUsed;                 // log cost of the vectors on the list (what the CIL limits compare)
    internal long Reserved;                  // log space taken from transactions: SpaceUsed + context overhead
    internal int OverheadPaid;               // 1 once a committer paid the checkpoint's fixed overhead
    internal int ItemCount;
    internal int RecycleRefs;                // pushes still using it once switched out: its own, its successor's (Recycle)
    internal int Forcers;                    // ForceAsync calls that waited for this context (the gather expects them back)
    internal bool Gathered;                  // the push already gave this context its gather window (push loop only)
    internal long DurableTimestamp;          // Stopwatch timestamp of Durable's completion
    internal int RegionCount;                // regions after the checkpoint header (item headers included)
    internal long PayloadBytes;              // bytes of those regions

    internal readonly CheckpointRegionList Regions; // the whole checkpoint as one region list for the log
    internal byte[] Header;                  // the checkpoint header region (a new one each time the context is reused)
    internal bool HeaderPooled;              // Header came from the pool or the emergency reserve (give it back)

    internal Lsn StartLsn, CommitLsn;
    internal Lsn TailBound;                  // the log head when the push registered with the AIL: the tail may not pass it

    // Completions of the push's steps: each allocates a task only if someone waits before it completes. Mutable structs
    // used in place: never readonly (a readonly field would be copied at each use and never see its completion).
    internal LazyCompletion StartWritten;
    internal LazyCompletion CommitWritten;
    internal LazyCompletion Durable;

    public CilContext(byte[] header, bool pooled)
    {
        Header = header;
        HeaderPooled = pooled;
        Regions = new CheckpointRegionList(this);
    }

    /// <summary>
    /// Makes a recycled context new again around <paramref name="header"/> (see
    /// <see cref="CommittedItemList.Recycle"/>). Only its renter holds it: nothing else can reach it any more.
    /// </summary>
    internal void Reset(byte[] header, bool pooled)
    {
        Sequence = 0;
        Previous = null;
        Head = Tail = null;
        SpaceUsed = Reserved = 0;
        OverheadPaid = ItemCount = Forcers = RegionCount = RecycleRefs = 0;
        Gathered = false;
        DurableTimestamp = 0;
        PayloadBytes = 0;
        Header = header;
        HeaderPooled = pooled;
        StartLsn = CommitLsn = TailBound = default;
        StartWritten.Reset();
        CommitWritten.Reset();
        Durable.Reset();
        Regions.Reset();
    }

    public bool IsEmpty => Volatile.Read(ref ItemCount) == 0;

    public override string ToString() =>
        $"context {Sequence}: {ItemCount} items, {RegionCount} regions, {PayloadBytes} bytes, space {SpaceUsed}, start {StartLsn}, commit {CommitLsn}";

    /// <summary>
    /// The whole checkpoint as one region list for the log sink, preallocated with the context: element 0 is the
    /// checkpoint header, then each vector's regions (its item header, then the item's regions) in list order. Read
    /// only after the context is switched out. Sequential access (what the log does) is O(1) per element; it keeps a
    /// cursor (vector, index within it) and restarts from the head for an earlier index.
    /// </summary>
    internal sealed class CheckpointRegionList(CilContext ctx) : IReadOnlyList<ReadOnlyMemory<byte>>
    {
        private LogVector? _vector;
        private int _index, _within;      // element _index is region _within of _vector

        public int Count => 1 + ctx.RegionCount;

        /// <summary>Forgets the cursor (the context is being reused: its vectors are gone).</summary>
        public void Reset()
        {
            _vector = null;
            _index = _within = 0;
        }

        public ReadOnlyMemory<byte> this[int index]
        {
            get
            {
                if ((uint)index >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(index));
                if (index == 0) return new ReadOnlyMemory<byte>(ctx.Header, 0, CheckpointHeader.Size);
                if (_vector is null || index < _index) { _vector = ctx.Head; _index = 1; _within = 0; }
                while (_index < index)
                {
                    _index++;
                    if (++_within == _vector!.Count) { _vector = _vector.Next; _within = 0; }
                }
                return _vector![_within];
            }
        }

        public IEnumerator<ReadOnlyMemory<byte>> GetEnumerator()
        {
            for (int i = 0; i < Count; i++) yield return this[i];
        }

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }
}
