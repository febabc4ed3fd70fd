namespace Snapshot.Changes;

/// <summary>A run of consecutive chunks: <c>Start .. Start + Count - 1</c>.</summary>
internal readonly record struct ChunkRun(ulong Start, ulong Count)
{
    /// <summary>One past the last chunk.</summary>
    public ulong End => Start + Count;
}

/// <summary>
/// A set of chunks as sorted runs: ascending, never overlapping, never touching (adjacent runs are merged). Built
/// from the exception tables' runs or from chunk numbers; combined by one linear sweep, so every set operation costs
/// the number of runs of its inputs, never the size of the volume.
/// </summary>
/// <remarks>Immutable once built; safe to share between threads.</remarks>
internal sealed class ChunkRuns
{
    /// <summary>The empty set.</summary>
    public static readonly ChunkRuns Empty = new([], 0);

    private readonly ChunkRun[] _runs;

    private ChunkRuns(ChunkRun[] runs, ulong chunks)
    {
        _runs = runs;
        Chunks = chunks;
    }

    /// <summary>The runs, ascending.</summary>
    public ReadOnlySpan<ChunkRun> Runs => _runs;

    /// <summary>Number of runs.</summary>
    public int Count => _runs.Length;

    /// <summary>Chunks in the set.</summary>
    public ulong Chunks { get; }

    /// <summary>The run at <paramref name="index"/>.</summary>
    public ChunkRun this[int index] => _runs[index];

    /// <summary>Builds a set from runs in any order (they may touch; they must not overlap, as a table's runs never do).</summary>
    public static ChunkRuns FromRuns(List<(ulong Old, int Count)> runs)
    {
        var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(runs);
        span.Sort(static (a, b) => a.Old.CompareTo(b.Old));
        var b = new Builder(runs.Count);
        foreach (var (old, count) in span) b.Add(old, (ulong)count);
        return b.Build();
    }

    /// <summary>Builds a set from chunk numbers in any order (duplicates allowed). Sorts <paramref name="chunks"/> in place.</summary>
    public static ChunkRuns FromChunks(Span<ulong> chunks)
    {
        chunks.Sort();
        var b = new Builder(Math.Min(chunks.Length, 1024));
        foreach (ulong c in chunks) b.Add(c, 1);
        return b.Build();
    }

    /// <summary>Chunks in either set.</summary>
    public static ChunkRuns Union(ChunkRuns a, ChunkRuns b) => Combine(a, b, static (x, y) => x || y);

    /// <summary>Chunks in both sets.</summary>
    public static ChunkRuns Intersect(ChunkRuns a, ChunkRuns b) => Combine(a, b, static (x, y) => x && y);

    /// <summary>Chunks of <paramref name="a"/> not in <paramref name="b"/>.</summary>
    public static ChunkRuns Except(ChunkRuns a, ChunkRuns b) => Combine(a, b, static (x, y) => x && !y);

    /// <summary>Chunks in exactly one of the sets.</summary>
    public static ChunkRuns SymmetricExcept(ChunkRuns a, ChunkRuns b) => Combine(a, b, static (x, y) => x != y);

    /// <summary>
    /// The sweep: walks both run lists once; at every boundary decides from (in a, in b) whether the stretch up to the
    /// next boundary belongs to the result.
    /// </summary>
    private static ChunkRuns Combine(ChunkRuns a, ChunkRuns b, Func<bool, bool, bool> keep)
    {
        var ra = a._runs;
        var rb = b._runs;
        var result = new Builder(Math.Max(ra.Length, rb.Length));
        int i = 0, j = 0;
        ulong pos = 0;
        while (true)
        {
            while (i < ra.Length && ra[i].End <= pos) i++;
            while (j < rb.Length && rb[j].End <= pos) j++;
            if (i >= ra.Length && j >= rb.Length) break;
            bool inA = i < ra.Length && ra[i].Start <= pos;
            bool inB = j < rb.Length && rb[j].Start <= pos;
            ulong nextA = i >= ra.Length ? ulong.MaxValue : inA ? ra[i].End : ra[i].Start;
            ulong nextB = j >= rb.Length ? ulong.MaxValue : inB ? rb[j].End : rb[j].Start;
            ulong next = Math.Min(nextA, nextB);
            if ((inA || inB) && keep(inA, inB)) result.Add(pos, next - pos);
            pos = next;
        }
        return result.Build();
    }

    /// <summary>True when <paramref name="chunk"/> is in the set (binary search).</summary>
    public bool Contains(ulong chunk)
    {
        int i = IndexAtOrAfter(chunk);
        return i < _runs.Length && _runs[i].Start <= chunk;
    }

    /// <summary>Index of the first run that ends after <paramref name="chunk"/> (the run holding it, or the next one).</summary>
    public int IndexAtOrAfter(ulong chunk)
    {
        int lo = 0, hi = _runs.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (_runs[mid].End <= chunk) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    }

    /// <inheritdoc/>
    public override string ToString() => $"ChunkRuns({Chunks} chunks in {Count} runs)";

    /// <summary>Accumulates ascending runs, merging each with the previous one when they touch.</summary>
    internal sealed class Builder(int capacity)
    {
        private readonly List<ChunkRun> _list = new(capacity);
        private ulong _chunks;

        /// <summary>Adds a run starting at or after the end of the previous one (overlap with it is merged too).</summary>
        public void Add(ulong start, ulong count)
        {
            if (count == 0) return;
            int n = _list.Count;
            if (n > 0)
            {
                var last = _list[n - 1];
                if (start < last.Start) throw new InvalidOperationException($"chunk runs: run at {start} added after the run at {last.Start}");
                if (start <= last.End)
                {
                    ulong end = Math.Max(last.End, start + count);
                    _chunks += end - last.End;
                    _list[n - 1] = new ChunkRun(last.Start, end - last.Start);
                    return;
                }
            }
            _list.Add(new ChunkRun(start, count));
            _chunks += count;
        }

        public ChunkRuns Build() => _list.Count == 0 ? Empty : new ChunkRuns(_list.ToArray(), _chunks);
    }
}
