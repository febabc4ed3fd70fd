namespace Journal.Tests.Campaign;

/// <summary>
/// What one volume (the origin or a snapshot) may hold, sector by sector: the set of writes (<see cref="SectorStamp"/>
/// numbers, 0 = never written) whose data each sector may show. An acknowledged write makes its sectors certain; a
/// killed one adds itself to each sector's set (it may have landed wholly, partly at sector granularity, or not at all);
/// reading the store back collapses every set to what it holds, so later checks are exact again.
/// </summary>
public sealed class VolumeModel
{
    private readonly long[][] _acceptable;

    /// <summary>A volume of <paramref name="sectors"/> sectors that holds write <paramref name="initial"/> everywhere.</summary>
    public VolumeModel(long sectors, long initial = 0)
    {
        _acceptable = new long[sectors][];
        var one = new[] { initial };
        Array.Fill(_acceptable, one);
    }

    private VolumeModel(long[][] acceptable) => _acceptable = acceptable;

    /// <summary>Sectors in the volume.</summary>
    public long Sectors => _acceptable.Length;

    /// <summary>The writes sector <paramref name="sector"/> may show.</summary>
    public IReadOnlyList<long> Acceptable(long sector) => _acceptable[sector];

    /// <summary>True when every sector has exactly one acceptable write.</summary>
    public bool IsCertain => _acceptable.All(a => a.Length == 1);

    /// <summary>Sectors that may show more than one write.</summary>
    public long UncertainSectors => _acceptable.LongCount(a => a.Length > 1);

    /// <summary>A copy (a snapshot taken of this volume now).</summary>
    public VolumeModel Clone() => new((long[][])_acceptable.Clone());

    /// <summary>An acknowledged write: its sectors hold it.</summary>
    public void Acknowledge(long write, long sector, long sectors)
    {
        var one = new[] { write };
        for (long s = sector; s < sector + sectors; s++) _acceptable[s] = one;
    }

    /// <summary>A write that was killed: each of its sectors may hold it or what it held before.</summary>
    public void MayHold(long write, long sector, long sectors)
    {
        for (long s = sector; s < sector + sectors; s++)
            if (!_acceptable[s].Contains(write)) _acceptable[s] = [.. _acceptable[s], write];
    }

    /// <summary>
    /// Checks <paramref name="data"/> (the whole volume as read) against the model: returns how many sectors are wrong
    /// and the first <paramref name="limit"/> runs of them (consecutive sectors with the same expectation and the same
    /// finding), each with what was expected and what was found.
    /// </summary>
    public (long Count, List<Mismatch> First) Check(byte[] data, uint tag, int limit)
    {
        long count = 0;
        var runs = new List<Mismatch>();
        for (long s = 0; s < Sectors; s++)
        {
            var sector = data.AsSpan((int)(s * SectorStamp.SectorSize), SectorStamp.SectorSize);
            long found = SectorStamp.Identify(sector, tag, s);
            if (_acceptable[s].Contains(found)) continue;
            count++;
            if (runs.Count > 0 && runs[^1] is var last && last.Last == s - 1 && last.Found == found
                && last.Expected.SequenceEqual(_acceptable[s]))
            {
                runs[^1] = last with { Last = s };
                continue;
            }
            if (runs.Count < limit) runs.Add(new Mismatch(s, s, _acceptable[s], found, SectorStamp.Describe(sector, tag, s)));
        }
        return (count, runs);
    }

    /// <summary>
    /// A run of wrong sectors: <paramref name="First"/> to <paramref name="Last"/> should hold one of
    /// <paramref name="Expected"/> and hold <paramref name="Found"/> (<see cref="SectorStamp.Unrecognised"/> for anything
    /// else; <paramref name="Description"/> says what the first of them holds).
    /// </summary>
    public sealed record Mismatch(long First, long Last, IReadOnlyList<long> Expected, long Found, string Description)
    {
        /// <summary>"sector 7" or "sectors 7..9 (3)".</summary>
        public string Sectors => First == Last ? $"sector {First}" : $"sectors {First}..{Last} ({Last - First + 1})";
    }

    /// <summary>Makes every sector certain: it holds what <paramref name="data"/> shows (call only after <see cref="Check"/> passed).</summary>
    public void Collapse(byte[] data, uint tag)
    {
        var singles = new Dictionary<long, long[]>();
        for (long s = 0; s < Sectors; s++)
        {
            if (_acceptable[s].Length == 1) continue;
            long found = SectorStamp.Identify(data.AsSpan((int)(s * SectorStamp.SectorSize), SectorStamp.SectorSize), tag, s);
            if (!singles.TryGetValue(found, out var one)) singles[found] = one = [found];
            _acceptable[s] = one;
        }
    }
}
