namespace Snapshot.Commit;

/// <summary>
/// Cuts a commit round into journal transactions that fit the log, never splitting a <b>unit</b> (the exceptions one
/// copy queued together: every snapshot's copy of every chunk of its run) unless the unit alone is too big for a
/// transaction. So a crash between two transactions of a round never finds one snapshot's copy of a chunk committed
/// and another's not, which would make the changed-block map report the chunk as changed for one snapshot only.
/// </summary>
/// <remarks>
/// <para>Input, per round: the group (COW file) of each exception in queue order, -1 for one that is not committed (its
/// file failed or is invalid); the end of each unit in that order; and per group, the entries per metadata segment and
/// the log bytes reserved for a segment. A transaction's reserve for a group with n entries is
/// <c>(1 + ceil(n / segment entries))</c> segments: the partly filled segment the entries start in, then whole ones.</para>
/// <para>Each transaction takes whole units in queue order while their reserve fits <c>maxBytes</c>; a unit that does
/// not fit even alone is taken entry by entry, and a transaction always takes at least one entry, with any entries
/// after it that cost nothing more (a log too small for one segment still commits a segment at a time). The entries a transaction takes of each group are consecutive in that
/// group's list, so a transaction is one slice (start, count) per group.</para>
/// <para>Not thread-safe: its committer plans one round at a time. Its arrays grow to the largest round's groups and
/// are reused, so planning allocates nothing in the steady state.</para>
/// </remarks>
internal sealed class TransactionPlanner
{
    private int[] _count = new int[8]; // per group: entries in the transaction being planned
    private int[] _start = new int[8]; // per group: entries of the group taken by earlier transactions
    private int _groups, _item, _unit;
    private readonly List<(int Group, int Start, int Count)> _slices = new();

    /// <summary>The slices of the transaction <see cref="Next"/> planned: group, first entry in the group, entries.</summary>
    public IReadOnlyList<(int Group, int Start, int Count)> Slices => _slices;

    /// <summary>Log bytes to reserve for the transaction <see cref="Next"/> planned.</summary>
    public long Reserve { get; private set; }

    /// <summary>Starts a round of <paramref name="groups"/> groups.</summary>
    public void Begin(int groups)
    {
        if (_count.Length < groups)
        {
            _count = new int[Math.Max(groups, _count.Length * 2)];
            _start = new int[_count.Length];
        }
        Array.Clear(_count, 0, groups);
        Array.Clear(_start, 0, groups);
        _groups = groups;
        _item = 0;
        _unit = 0;
        _slices.Clear();
        Reserve = 0;
    }

    /// <summary>
    /// Plans the next transaction of the round (<see cref="Slices"/>, <see cref="Reserve"/>); false when no entry is
    /// left to commit.
    /// </summary>
    /// <param name="groupOf">The group of each exception in queue order; -1 for one not committed.</param>
    /// <param name="unitEnds">The end (exclusive) of each unit in queue order; the last is <c>groupOf.Count</c>.</param>
    /// <param name="segmentEntries">Per group: entries in one metadata segment.</param>
    /// <param name="segmentBytes">Per group: log bytes reserved for one segment.</param>
    /// <param name="maxBytes">The most log bytes one transaction may reserve.</param>
    public bool Next(IReadOnlyList<int> groupOf, IReadOnlyList<int> unitEnds, ReadOnlySpan<int> segmentEntries,
        ReadOnlySpan<long> segmentBytes, long maxBytes)
    {
        _slices.Clear();
        long reserve = 0;
        int n = groupOf.Count;
        while (_item < n)
        {
            int unitStart = _unit == 0 ? 0 : unitEnds[_unit - 1];
            int unitEnd = unitEnds[_unit];
            if (_item == unitStart)
            {
                long d = Add(groupOf, unitStart, unitEnd, 1, segmentEntries, segmentBytes);
                if (reserve + d <= maxBytes)
                {
                    reserve += d;
                    _item = unitEnd;
                    _unit++;
                    continue;
                }
                Add(groupOf, unitStart, unitEnd, -1, segmentEntries, segmentBytes);
                if (reserve > 0) break; // the unit starts the next transaction
                // Too big for a transaction of its own: taken entry by entry below.
            }
            int g = groupOf[_item];
            if (g >= 0)
            {
                long di = Cost(_count[g] + 1, segmentEntries[g], segmentBytes[g]) - Cost(_count[g], segmentEntries[g], segmentBytes[g]);
                if (di > 0 && reserve > 0 && reserve + di > maxBytes) break;
                _count[g]++;
                reserve += di;
            }
            if (++_item == unitEnd) _unit++;
        }
        for (int g = 0; g < _groups; g++)
        {
            if (_count[g] == 0) continue;
            _slices.Add((g, _start[g], _count[g]));
            _start[g] += _count[g];
            _count[g] = 0;
        }
        Reserve = reserve;
        return _slices.Count > 0;
    }

    /// <summary>Adds <paramref name="sign"/> to the counts of the entries in [from, to); returns the change in reserve.</summary>
    private long Add(IReadOnlyList<int> groupOf, int from, int to, int sign, ReadOnlySpan<int> segmentEntries, ReadOnlySpan<long> segmentBytes)
    {
        long d = 0;
        for (int i = from; i < to; i++)
        {
            int g = groupOf[i];
            if (g < 0) continue;
            long before = Cost(_count[g], segmentEntries[g], segmentBytes[g]);
            _count[g] += sign;
            d += Cost(_count[g], segmentEntries[g], segmentBytes[g]) - before;
        }
        return d;
    }

    /// <summary>Log bytes reserved for <paramref name="entries"/> entries of one group.</summary>
    public static long Cost(int entries, int segmentEntries, long segmentBytes) =>
        entries == 0 ? 0 : (1 + (entries + (long)segmentEntries - 1) / segmentEntries) * segmentBytes;
}
