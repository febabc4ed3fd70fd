using CsCheck;
using Snapshot.Commit;

namespace Journal.Tests.Snapshot;

/// <summary>
/// <see cref="TransactionPlanner"/>, by property: over random rounds (groups, units, skipped files, segment sizes, log
/// limits), the transactions cover every committed entry once, in each group's order, as one slice per group; each
/// reserves what its slices need and fits the limit (unless one entry alone does not: then it holds the entries of
/// that one segment); a unit that fits a transaction
/// alone is never split; and no transaction could have taken the next unit as well. CsCheck shrinks a failure to a
/// smallest round. Size knob: <c>JOURNAL_PLANNER_ROUNDS</c> (default 2,000 random rounds).
/// </summary>
public sealed class TransactionPlannerTests
{
    private static long Rounds => long.TryParse(Environment.GetEnvironmentVariable("JOURNAL_PLANNER_ROUNDS"), out long n) && n > 0 ? n : 2000;

    /// <param name="Units">Per unit, the group of each of its entries.</param>
    public sealed record Round(int[] SegmentEntries, long[] SegmentBytes, bool[] Skipped, int[][] Units, long MaxBytes)
    {
        public override string ToString() =>
            $"max {MaxBytes}, groups [{string.Join(", ", SegmentEntries.Select((e, g) => $"{e}x{SegmentBytes[g]}{(Skipped[g] ? " skipped" : "")}"))}], " +
            $"units [{string.Join(" | ", Units.Select(u => string.Join(",", u)))}]";
    }

    private static readonly Gen<Round> RoundGen =
        from groups in Gen.Int[1, 8]
        from entries in Gen.OneOf(2, 4, 32).Array[groups]
        from bytes in Gen.Long[64, 1024].Array[groups]
        from skipped in Gen.Int[0, 5].Select(x => x == 0).Array[groups]
        from units in Gen.Int[0, groups - 1].Array[1, 12].Array[1, 40]
        from max in Gen.Long[128, 40_000]
        select new Round(entries, bytes, skipped, units, max);

    private static long UnitCost(Round r, IEnumerable<int> entries, int[]? baseCounts = null)
    {
        var counts = baseCounts is null ? new int[r.SegmentEntries.Length] : (int[])baseCounts.Clone();
        foreach (int g in entries) if (!r.Skipped[g]) counts[g]++;
        long cost = 0;
        for (int g = 0; g < counts.Length; g++) cost += TransactionPlanner.Cost(counts[g], r.SegmentEntries[g], r.SegmentBytes[g]);
        return cost;
    }

    private static void Check(Round r)
    {
        int groups = r.SegmentEntries.Length;
        var groupOf = new List<int>();
        var unitEnds = new List<int>();
        foreach (var unit in r.Units)
        {
            foreach (int g in unit) groupOf.Add(r.Skipped[g] ? -1 : g);
            unitEnds.Add(groupOf.Count);
        }
        var planner = new TransactionPlanner();
        planner.Begin(groups);
        var transactions = new List<(List<(int Group, int Start, int Count)> Slices, long Reserve)>();
        while (planner.Next(groupOf, unitEnds, r.SegmentEntries, r.SegmentBytes, r.MaxBytes))
        {
            transactions.Add((planner.Slices.ToList(), planner.Reserve));
            Assert.True(transactions.Count <= groupOf.Count, "more transactions than entries");
        }

        // Every committed entry once, in each group's order, one slice per group per transaction.
        var taken = new int[groups];
        var txOfGroupEntry = Enumerable.Range(0, groups).Select(_ => new List<int>()).ToArray();
        for (int t = 0; t < transactions.Count; t++)
        {
            var (slices, reserve) = transactions[t];
            Assert.Equal(slices.Count, slices.Select(s => s.Group).Distinct().Count());
            long need = 0;
            foreach (var (g, start, count) in slices)
            {
                Assert.False(r.Skipped[g], $"transaction {t} commits skipped group {g}");
                Assert.Equal(taken[g], start);
                Assert.True(count > 0);
                taken[g] += count;
                txOfGroupEntry[g].AddRange(Enumerable.Repeat(t, count));
                need += TransactionPlanner.Cost(count, r.SegmentEntries[g], r.SegmentBytes[g]);
            }
            Assert.Equal(need, reserve);
            // Over the limit only when one entry alone is: then it holds one group's entries that cost nothing more.
            Assert.True(reserve <= r.MaxBytes
                || slices.Count == 1 && reserve == TransactionPlanner.Cost(1, r.SegmentEntries[slices[0].Group], r.SegmentBytes[slices[0].Group]),
                $"transaction {t} reserves {reserve} > {r.MaxBytes} with {slices.Sum(s => s.Count)} entries");
        }
        for (int g = 0; g < groups; g++)
            Assert.Equal(r.Skipped[g] ? 0 : groupOf.Count(x => x == g), taken[g]);

        // Each entry's transaction, in queue order: never decreasing; a unit that fits alone is in one transaction.
        var next = new int[groups];
        var txOf = groupOf.Select(g => g < 0 ? -1 : txOfGroupEntry[g][next[g]++]).ToArray();
        var committed = txOf.Where(t => t >= 0).ToArray();
        for (int i = 1; i < committed.Length; i++) Assert.True(committed[i] >= committed[i - 1], "queue order not kept");
        int from = 0;
        foreach (int end in unitEnds)
        {
            var unitTx = txOf[from..end].Where(t => t >= 0).Distinct().ToArray();
            if (UnitCost(r, r.Units[unitEnds.IndexOf(end)]) <= r.MaxBytes)
                Assert.True(unitTx.Length <= 1, $"unit [{from}, {end}) fits a transaction but was split over {unitTx.Length}");
            from = end;
        }

        // Greedy: a transaction that ends at a unit boundary could not also have taken the next unit whole.
        from = 0;
        for (int u = 0; u < unitEnds.Count; u++)
        {
            int end = unitEnds[u];
            int before = txOf[..from].Where(t => t >= 0).DefaultIfEmpty(-1).Max();
            int first = txOf[from..end].Where(t => t >= 0).DefaultIfEmpty(-1).Min();
            if (before >= 0 && first > before)
            {
                var counts = new int[groups];
                foreach (var (g, _, count) in transactions[before].Slices) counts[g] = count;
                Assert.True(UnitCost(r, r.Units[u], counts) > r.MaxBytes,
                    $"transaction {before} ended before unit {u}, which would have fitted");
            }
            from = end;
        }
    }

    [Fact]
    public void Transactions_cover_every_entry_once_fit_the_log_and_never_split_a_unit_that_fits()
    {
        RoundGen.Sample(Check, iter: Rounds);
    }

    [Fact]
    public void A_unit_too_big_for_one_transaction_starts_its_own_and_is_cut_entry_by_entry()
    {
        // Two groups of 4-entry segments at 100 bytes: n entries of a group reserve (1 + ceil(n / 4)) * 100.
        var r = new Round([4, 4], [100, 100], [false, false], [[0, 1], [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1], [1]], 500);
        Check(r);
        var planner = new TransactionPlanner();
        planner.Begin(2);
        int[] groupOf = [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
        int[] unitEnds = [2, 20, 21];
        var sizes = new List<int>();
        while (planner.Next(groupOf, unitEnds, [4, 4], [100, 100], 500)) sizes.Add(planner.Slices.Sum(s => s.Count));
        // The first unit fits (400) but not with the second (1,100 alone), which starts the next transaction and is cut:
        // nine entries of group 0 (400), then its nine of group 1 and the last unit's one (400).
        Assert.Equal([2, 9, 10], sizes);
    }
}
