using System.Diagnostics;
using System.Numerics;

namespace JournalBench.Measure;

/// <summary>
/// A log-linear histogram of durations, one per writer: recording is an index computation and an increment, with no
/// allocation and no lock, so it can sit in a timed loop. Merged after the run for percentiles.
/// </summary>
/// <remarks>
/// Values are kept in nanoseconds. Values below 64 ns have a bucket each; above, every power of two is split into 32
/// equal buckets, so a bucket is at most 1/32 (about 3%) of its values wide and a percentile read as the bucket's
/// midpoint is within about 1.6% of the true value. The buckets cover the whole range of a long.
/// </remarks>
internal sealed class LatencyHistogram
{
    private const int SubBucketBits = 5;
    private const int SubBuckets = 1 << SubBucketBits;          // 32 buckets per power of two
    private const int Linear = 2 * SubBuckets;                  // values 0..63 ns have one bucket each
    private const int BucketCount = Linear + (63 - SubBucketBits) * SubBuckets;

    private static readonly double s_nanosPerTick = 1e9 / Stopwatch.Frequency;

    private readonly long[] _counts = new long[BucketCount];

    /// <summary>Values recorded.</summary>
    public long Count { get; private set; }

    /// <summary>Largest value recorded, in nanoseconds.</summary>
    public long MaxNanos { get; private set; }

    /// <summary>Records a duration measured as a difference of <see cref="Stopwatch.GetTimestamp"/> values.</summary>
    public void RecordTicks(long ticks) => RecordNanos((long)(ticks * s_nanosPerTick));

    /// <summary>Records a duration in nanoseconds (negative values count as 0).</summary>
    public void RecordNanos(long nanos)
    {
        if (nanos < 0) nanos = 0;
        _counts[IndexOf(nanos)]++;
        Count++;
        if (nanos > MaxNanos) MaxNanos = nanos;
    }

    /// <summary>Adds every value of <paramref name="other"/> to this histogram.</summary>
    public void Add(LatencyHistogram other)
    {
        for (int i = 0; i < BucketCount; i++) _counts[i] += other._counts[i];
        Count += other.Count;
        if (other.MaxNanos > MaxNanos) MaxNanos = other.MaxNanos;
    }

    /// <summary>
    /// The value at quantile <paramref name="q"/> (0..1) in nanoseconds: the midpoint of the bucket holding the
    /// ceil(q * Count)-th smallest value (the largest value itself for the last bucket reached). 0 when empty.
    /// </summary>
    public double QuantileNanos(double q)
    {
        if (Count == 0) return 0;
        if (q <= 0) q = 0;
        if (q >= 1) return MaxNanos;
        long rank = Math.Max(1, (long)Math.Ceiling(q * Count));
        long seen = 0;
        for (int i = 0; i < BucketCount; i++)
        {
            seen += _counts[i];
            if (seen >= rank)
            {
                var (low, width) = BucketRange(i);
                double mid = low + (width - 1) / 2.0;
                return Math.Min(mid, MaxNanos);
            }
        }
        return MaxNanos;
    }

    /// <summary>The value at quantile <paramref name="q"/> in microseconds.</summary>
    public double QuantileMicros(double q) => QuantileNanos(q) / 1000.0;

    /// <summary>The bucket of <paramref name="nanos"/> (non-negative).</summary>
    internal static int IndexOf(long nanos)
    {
        if (nanos < Linear) return (int)nanos;
        int msb = 63 - BitOperations.LeadingZeroCount((ulong)nanos); // >= 6
        int shift = msb - SubBucketBits;                            // keeps the top 6 bits: 32..63
        return Linear + (msb - SubBucketBits - 1) * SubBuckets + (int)((nanos >> shift) - SubBuckets);
    }

    /// <summary>Lowest value of bucket <paramref name="index"/> and how many values it spans.</summary>
    internal static (long Low, long Width) BucketRange(int index)
    {
        if (index < Linear) return (index, 1);
        int octave = (index - Linear) / SubBuckets;           // msb - 6
        int sub = (index - Linear) % SubBuckets + SubBuckets; // 32..63
        int shift = octave + 1;                               // msb - 5
        return ((long)sub << shift, 1L << shift);
    }
}
