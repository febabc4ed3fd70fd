using JournalBench.Benchmarks;
using Xunit.Abstractions;

namespace Journal.Tests.Bench;

/// <summary>
/// The write storm on a 1 MiB log: 8 snapshots, every write admitted as soon as the copy bound lets it, so commit rounds
/// gather far more exceptions than one log transaction may hold. Every write must succeed (a round is split into
/// transactions that fit the log), with every exception committed.
/// </summary>
public sealed class StormSmallLogTests(ITestOutputHelper output)
{
    [Fact]
    public async Task The_storm_on_a_one_MiB_log_splits_its_rounds_and_every_write_succeeds()
    {
        var r = await StormBenchmark.RunOnceAsync(snapshots: 8, gb: 1.0 / 32, bound: 2048, logMib: 1, CancellationToken.None)
            .WaitAsync(TimeSpan.FromMinutes(5));
        output.WriteLine($"{r.Writes} writes, {r.WritesPerS:F0}/s; {r.Commit.Rounds} rounds, {r.Commit.Transactions} transactions, largest round {r.Commit.LargestRound}");
        Assert.Equal(8192, r.Writes);
        Assert.Equal(8L * 8192, r.Commit.Exceptions);       // one copy per snapshot per chunk, all committed
        Assert.True(r.Commit.Transactions > r.Commit.Rounds, $"no round was split: {r.Commit.Rounds} rounds, {r.Commit.Transactions} transactions");

        // The same storm on the default 32 MiB log commits each round in one transaction: the split above is the log's size.
        var big = await StormBenchmark.RunOnceAsync(snapshots: 8, gb: 1.0 / 32, bound: 2048, logMib: 32, CancellationToken.None)
            .WaitAsync(TimeSpan.FromMinutes(5));
        output.WriteLine($"32 MiB log: {big.Commit.Rounds} rounds, {big.Commit.Transactions} transactions, largest round {big.Commit.LargestRound}");
        Assert.Equal(8L * 8192, big.Commit.Exceptions);
        Assert.Equal(big.Commit.Rounds, big.Commit.Transactions);
    }
}
