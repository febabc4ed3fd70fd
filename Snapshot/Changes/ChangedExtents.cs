using System.Globalization;

namespace Snapshot.Changes;

/// <summary>One extent of changed chunks: whole chunks, adjacent chunks merged. In 512-byte sectors.</summary>
/// <param name="StartSector">First sector.</param>
/// <param name="Sectors">Length in sectors (a whole number of chunks).</param>
public readonly record struct ChangedExtent(long StartSector, long Sectors)
{
    /// <summary>Byte offset.</summary>
    public long Offset => StartSector * 512;

    /// <summary>Length in bytes.</summary>
    public long Length => Sectors * 512;
}

/// <summary>One stretch of a range described for NBD BLOCK_STATUS: changed (dirty) or not.</summary>
/// <param name="Sectors">Length in sectors.</param>
/// <param name="Changed">True when the stretch is changed.</param>
public readonly record struct ChangeStretch(long Sectors, bool Changed);

/// <summary>What computing a change map cost.</summary>
/// <param name="ExceptionsConsidered">Exceptions of the snapshots involved (table entries looked at).</param>
/// <param name="MetadataEntriesRead">Exception entries read in commit order (the older snapshot's, up to its creation mark in the newer one).</param>
/// <param name="MetadataBytesRead">Bytes of COW metadata those entries took on disk (entries still only in memory cost none).</param>
/// <param name="ChunksCompared">Chunks whose contents were compared (both snapshots hold them, and one of them was written by a user).</param>
/// <param name="BytesCompared">Bytes read to compare them (both sides).</param>
public sealed record ChangeMapCost(long ExceptionsConsidered, long MetadataEntriesRead, long MetadataBytesRead, long ChunksCompared, long BytesCompared);

/// <summary>
/// The chunks where one snapshot's view differs from another's, or from the origin's current contents: sorted,
/// adjacent chunks merged, with totals. See <c>docs/changed-blocks.md</c> for what is reported and why it is exact at
/// chunk granularity.
/// </summary>
/// <remarks>Immutable; safe to share between threads. <see cref="Describe"/> answers a range in the time of a binary
/// search plus the extents it returns.</remarks>
public sealed class ChangedExtents
{
    private readonly ChunkRuns _runs;
    private readonly int _chunkSectors;

    internal ChangedExtents(string from, string to, long volumeSectors, int chunkSectors, ChunkRuns runs, ChangeMapCost cost,
        bool fromWritten, bool toWritten)
    {
        From = from;
        To = to;
        VolumeSectors = volumeSectors;
        _chunkSectors = chunkSectors;
        _runs = runs;
        Cost = cost;
        FromWritten = fromWritten;
        ToWritten = toWritten;
        var list = new ChangedExtent[runs.Count];
        for (int i = 0; i < runs.Count; i++)
            list[i] = new ChangedExtent((long)runs[i].Start * chunkSectors, (long)runs[i].Count * chunkSectors);
        Extents = list;
    }

    /// <summary>The older snapshot.</summary>
    public string From { get; }

    /// <summary>The newer snapshot, or <c>origin</c>.</summary>
    public string To { get; }

    /// <summary>Size of the volumes in sectors.</summary>
    public long VolumeSectors { get; }

    /// <summary>Chunk size in sectors (every extent is whole chunks).</summary>
    public int ChunkSectors => _chunkSectors;

    /// <summary>The changed extents, ascending, adjacent chunks merged.</summary>
    public IReadOnlyList<ChangedExtent> Extents { get; }

    /// <summary>Changed chunks.</summary>
    public long Chunks => (long)_runs.Chunks;

    /// <summary>Changed bytes (chunks times the chunk size).</summary>
    public long Bytes => Chunks * _chunkSectors * 512L;

    /// <summary>True when <see cref="From"/> was ever written by a user.</summary>
    public bool FromWritten { get; }

    /// <summary>True when <see cref="To"/> (a snapshot) was ever written by a user.</summary>
    public bool ToWritten { get; }

    /// <summary>What computing the map cost.</summary>
    public ChangeMapCost Cost { get; }

    internal ChunkRuns Runs => _runs;

    /// <summary>True when sector <paramref name="sector"/> lies in a changed chunk.</summary>
    public bool IsChanged(long sector) => _runs.Contains((ulong)(sector / _chunkSectors));

    /// <summary>
    /// Describes <c>[startSector, startSector + sectors)</c> as consecutive stretches, alternately changed and not,
    /// starting at <paramref name="startSector"/>, into <paramref name="into"/>; returns how many were written (at least
    /// one when <paramref name="sectors"/> is positive). Their lengths add up to at most <paramref name="sectors"/>: less
    /// when <paramref name="into"/> fills first, and no stretch is longer than <paramref name="maxStretchSectors"/>.
    /// </summary>
    public int Describe(long startSector, long sectors, Span<ChangeStretch> into, long maxStretchSectors = long.MaxValue)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(startSector);
        ArgumentOutOfRangeException.ThrowIfNegative(sectors);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxStretchSectors);
        long end = Math.Min(startSector + sectors, VolumeSectors);
        long pos = startSector;
        int n = 0;
        int i = _runs.IndexAtOrAfter((ulong)(pos / _chunkSectors));
        while (pos < end && n < into.Length)
        {
            bool changed;
            long stop;
            if (i < _runs.Count && (long)_runs[i].Start * _chunkSectors <= pos)
            {
                changed = true;
                stop = (long)_runs[i].End * _chunkSectors;
                i++;
            }
            else
            {
                changed = false;
                stop = i < _runs.Count ? (long)_runs[i].Start * _chunkSectors : VolumeSectors;
            }
            stop = Math.Min(stop, end);
            while (pos < stop && n < into.Length)
            {
                long len = Math.Min(stop - pos, maxStretchSectors);
                into[n++] = new ChangeStretch(len, changed);
                pos += len;
            }
        }
        return n;
    }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"ChangedExtents({From} -> {To}: {Extents.Count} extents, {Chunks} chunks, {Bytes} bytes)");
}
