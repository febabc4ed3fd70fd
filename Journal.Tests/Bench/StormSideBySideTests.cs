using JournalBench.Benchmarks;
using Snapshot;

namespace Journal.Tests.Bench;

/// <summary>
/// The storm's side-by-side line compares each bounded case's median over its passes with the unbounded case's median,
/// and the largest peak RSS of each, so one slow pass (the first of a run, a load spike) does not decide the ratio.
/// </summary>
public sealed class StormSideBySideTests
{
    private static StormBenchmark.Result Run(int bound, double gb, int pass, double wps, long rssMiB) =>
        new(bound, gb, 8, 1000, wps, rssMiB << 20, 0, 0, 0, 0, default(PoolStatistics), default(PoolStatistics), default) { Pass = pass };

    [Fact]
    public void The_ratio_is_of_medians_and_the_memory_is_each_side_s_largest_peak()
    {
        var results = new[]
        {
            Run(2048, 1, 1, 5_000, 150), Run(2048, 1, 2, 12_000, 170), Run(2048, 1, 3, 10_000, 160),
            Run(0, 1, 1, 11_000, 200), Run(0, 1, 2, 9_000, 240), Run(0, 1, 3, 10_000, 210),
            Run(2048, 4, 1, 8_000, 180), // no unbounded run at 4 GiB: no line
        };
        var lines = StormBenchmark.SideBySide(results);
        var line = Assert.Single(lines);
        Assert.Equal("1 GiB: bound 2048 10,000 writes/s, peak RSS 170.0 MiB; bound off 10,000 writes/s, peak RSS 240.0 MiB; bounded/unbounded 1.00x (medians of 3 and 3 runs)", line);
        Assert.Equal(10_500, StormBenchmark.MedianWritesPerS([Run(0, 1, 1, 12_000, 1), Run(0, 1, 2, 9_000, 1)]));
        Assert.True(double.IsNaN(StormBenchmark.MedianWritesPerS([])));
    }
}
