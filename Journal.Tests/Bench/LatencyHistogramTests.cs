using JournalBench.Measure;

namespace Journal.Tests.Bench;

/// <summary>The benchmarks' per-writer latency histogram: bucket arithmetic, percentile accuracy, no allocation when recording.</summary>
public class LatencyHistogramTests
{
    [Fact]
    public void Every_value_falls_in_the_bucket_whose_range_holds_it()
    {
        var rnd = new Random(5);
        var values = new List<long> { 0, 1, 63, 64, 65, 127, 128, 4095, 4096, 1_000_000, long.MaxValue };
        for (int i = 0; i < 10_000; i++) values.Add(rnd.NextInt64(0, long.MaxValue >> rnd.Next(0, 60)));
        foreach (long v in values)
        {
            int index = LatencyHistogram.IndexOf(v);
            var (low, width) = LatencyHistogram.BucketRange(index);
            Assert.True(v >= low && v - low < width, $"{v} is not in bucket {index} [{low}, {low} + {width})");
            // A bucket is at most 1/32 of its values wide.
            Assert.True(width == 1 || width * 32 <= low, $"bucket {index} [{low}, +{width}) is too wide");
        }
    }

    [Fact]
    public void Quantiles_are_within_two_percent_of_the_exact_ones()
    {
        var rnd = new Random(9);
        var h = new LatencyHistogram();
        var all = new List<long>();
        for (int i = 0; i < 100_000; i++)
        {
            // Log-uniform from 1 µs to 100 ms, like write latencies.
            long ns = (long)Math.Pow(10, 3 + 5 * rnd.NextDouble());
            h.RecordNanos(ns);
            all.Add(ns);
        }
        all.Sort();
        foreach (double q in new[] { 0.5, 0.9, 0.99, 0.999 })
        {
            double exact = all[(int)Math.Ceiling(q * all.Count) - 1];
            double got = h.QuantileNanos(q);
            Assert.InRange(got, exact * 0.98, exact * 1.02);
        }
        Assert.Equal(all[^1], h.MaxNanos);
        Assert.Equal(all[^1], h.QuantileNanos(1));
        Assert.Equal(100_000, h.Count);
    }

    [Fact]
    public void Merged_histograms_answer_as_one()
    {
        var a = new LatencyHistogram();
        var b = new LatencyHistogram();
        var one = new LatencyHistogram();
        for (int i = 1; i <= 1000; i++)
        {
            (i % 2 == 0 ? a : b).RecordNanos(i * 1000L);
            one.RecordNanos(i * 1000L);
        }
        a.Add(b);
        Assert.Equal(one.Count, a.Count);
        Assert.Equal(one.QuantileNanos(0.5), a.QuantileNanos(0.5));
        Assert.Equal(one.QuantileNanos(0.99), a.QuantileNanos(0.99));
        Assert.InRange(a.QuantileMicros(0.5), 500 * 0.98, 500 * 1.02);
    }

    [Fact]
    public void An_empty_histogram_answers_zero()
    {
        var h = new LatencyHistogram();
        Assert.Equal(0, h.QuantileNanos(0.5));
        Assert.Equal(0, h.Count);
    }

    [Fact]
    public void Recording_allocates_nothing()
    {
        var h = new LatencyHistogram();
        h.RecordTicks(10); // first call outside the measurement (static initialisation)
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100_000; i++) h.RecordTicks(i * 37L);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
