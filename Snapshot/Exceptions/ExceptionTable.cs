namespace Snapshot.Exceptions;

/// <summary>
/// The complete-exception table of one snapshot: origin chunk -> COW chunk, as a hash table of consecutive runs.
/// A run maps old chunks <c>Old .. Old+Count-1</c> to new chunks <c>New .. New+Count-1</c>; inserting an exception
/// adjacent to a run (in both old and new chunk numbers) extends the run instead of adding an entry, so a sequential
/// copy of N chunks costs about N/16 entries. Runs never cross a group of <see cref="GroupSize"/> old chunks and are
/// hashed by group, so a lookup probes one short chain: at most <see cref="GroupSize"/> runs of its own group (scattered
/// single-chunk exceptions), plus the few of other groups that share the bucket. A larger group would make sequential
/// tables smaller but every lookup in a table of scattered exceptions longer (the chain of a group grows with it), and
/// the data path looks up every snapshot's table for every chunk it writes.
/// </summary>
/// <remarks>Not thread-safe: the store's state lock protects it.</remarks>
internal sealed class ExceptionTable
{
    /// <summary>log2 of the run group: runs cover at most 16 consecutive chunks.</summary>
    public const int ConsecutiveBits = 4;

    /// <summary>Old chunks in one group.</summary>
    public const int GroupSize = 1 << ConsecutiveBits;

    private struct Run
    {
        public ulong Old;
        public ulong New;
        public int Count;
        public int Next; // next run in the bucket chain, -1 ends
    }

    // The runs, in pages of PageRuns (24 KiB, under the large-object threshold). The first page starts at 16 runs and
    // doubles up to a whole page (a small table stays small); then the table grows a page at a time, so an insert never
    // copies the runs before it and growth leaves no garbage (a doubled array left the old one behind: about as many
    // bytes again as the table holds, in the large-object heap once past 85 KB).
    private const int PageShift = 10, PageRuns = 1 << PageShift, PageMask = PageRuns - 1, FirstRuns = 16;
    private Run[][] _pages = [new Run[FirstRuns]];
    private int _pageCount = 1;
    private int _runCount;
    private int[] _buckets = NewBuckets(16);
    private long _count;

    private static int[] NewBuckets(int n)
    {
        var b = new int[n];
        Array.Fill(b, -1);
        return b;
    }

    /// <summary>Exceptions in the table.</summary>
    public long Count => _count;

    /// <summary>Forgets every exception.</summary>
    public void Clear()
    {
        _pages = [new Run[FirstRuns]];
        _pageCount = 1;
        _runCount = 0;
        _buckets = NewBuckets(16);
        _count = 0;
    }

    /// <summary>Runs (table entries) used to hold them.</summary>
    public int RunCount => _runCount;

    private ref Run At(int i) => ref _pages[i >> PageShift][i & PageMask];

    private int Bucket(ulong old) => (int)(((old >> ConsecutiveBits) * 0x9E3779B97F4A7C15UL) >> 32) & (_buckets.Length - 1);

    /// <summary>Finds the COW chunk holding origin chunk <paramref name="old"/>.</summary>
    public bool TryLookup(ulong old, out ulong newChunk)
    {
        for (int i = _buckets[Bucket(old)]; i >= 0;)
        {
            ref Run r = ref At(i);
            if (old >= r.Old && old < r.Old + (ulong)r.Count)
            {
                newChunk = r.New + (old - r.Old);
                return true;
            }
            i = r.Next;
        }
        newChunk = 0;
        return false;
    }

    /// <summary>True when <paramref name="old"/> has an exception.</summary>
    public bool Contains(ulong old) => TryLookup(old, out _);

    /// <summary>Adds an exception; an existing exception for the same old chunk is a bug and throws.</summary>
    public void Insert(ulong old, ulong newChunk)
    {
        if (TryLookup(old, out ulong existing))
            throw new InvalidOperationException($"exception table: chunk {old} already maps to {existing}, cannot map it to {newChunk}");
        _count++;
        ulong group = old >> ConsecutiveBits;
        for (int i = _buckets[Bucket(old)]; i >= 0;)
        {
            ref Run r = ref At(i);
            i = r.Next;
            if (r.Old >> ConsecutiveBits != group || r.Count >= GroupSize) continue;
            if (old == r.Old + (ulong)r.Count && newChunk == r.New + (ulong)r.Count)
            {
                r.Count++;
                return;
            }
            if (old + 1 == r.Old && newChunk + 1 == r.New)
            {
                r.Old = old;
                r.New = newChunk;
                r.Count++;
                return;
            }
        }
        if (_runCount == (_pageCount - 1) * PageRuns + _pages[_pageCount - 1].Length) Grow();
        if (_runCount >= _buckets.Length * 2) Rehash(_buckets.Length * 4);
        int b = Bucket(old);
        At(_runCount) = new Run { Old = old, New = newChunk, Count = 1, Next = _buckets[b] };
        _buckets[b] = _runCount++;
    }

    private void Grow()
    {
        if (_pages[0].Length < PageRuns)
        {
            Array.Resize(ref _pages[0], _pages[0].Length * 2);
            return;
        }
        if (_pageCount == _pages.Length) Array.Resize(ref _pages, _pages.Length * 2); // the directory: 8 bytes a page
        _pages[_pageCount++] = new Run[PageRuns];
    }

    private void Rehash(int buckets)
    {
        _buckets = NewBuckets(buckets);
        for (int i = 0; i < _runCount; i++)
        {
            ref Run r = ref At(i);
            int b = Bucket(r.Old);
            r.Next = _buckets[b];
            _buckets[b] = i;
        }
    }

    /// <summary>
    /// Appends every run as (first old chunk, chunks), in table order (not sorted): what changed-block tracking needs,
    /// in time and space proportional to the runs, not to the chunks.
    /// </summary>
    public void CopyRunsTo(List<(ulong Old, int Count)> into)
    {
        into.EnsureCapacity(into.Count + _runCount);
        for (int i = 0; i < _runCount; i++) into.Add((At(i).Old, At(i).Count));
    }

    /// <summary>Every exception, ordered by old chunk (for tests and tools).</summary>
    public List<(ulong Old, ulong New)> ToList()
    {
        var list = new List<(ulong, ulong)>((int)Math.Min(_count, int.MaxValue));
        for (int i = 0; i < _runCount; i++)
        {
            ref Run r = ref At(i);
            for (int k = 0; k < r.Count; k++) list.Add((r.Old + (ulong)k, r.New + (ulong)k));
        }
        list.Sort();
        return list;
    }

    /// <inheritdoc/>
    public override string ToString() => $"ExceptionTable({_count} exceptions in {_runCount} runs, {_buckets.Length} buckets)";
}
