using System.Diagnostics;

namespace Journal.Diagnostics;

/// <summary>
/// Lets one report of a recurring event through per interval and counts the ones it holds back, so a condition that
/// repeats thousands of times a second (a gather timeout on every checkpoint) is logged as one line every interval
/// carrying the number of repeats. The first event is always reported. Lock-free; allocates nothing.
/// </summary>
internal sealed class LogRateLimit
{
    private readonly long _intervalTicks;
    private long _next;        // Stopwatch timestamp before which events are held back (0: report the next one)
    private long _suppressed;  // events held back since the last report

    /// <summary>A limit of one report per <paramref name="interval"/>.</summary>
    public LogRateLimit(TimeSpan interval) => _intervalTicks = (long)(interval.TotalSeconds * Stopwatch.Frequency);

    /// <summary>
    /// True when this event is to be reported; <paramref name="suppressed"/> is then the number of events held back since
    /// the previous report. False (and the event counted) otherwise.
    /// </summary>
    public bool TryReport(out long suppressed)
    {
        long now = Stopwatch.GetTimestamp();
        long next = Volatile.Read(ref _next);
        if ((next == 0 || now >= next) && Interlocked.CompareExchange(ref _next, now + _intervalTicks, next) == next)
        {
            suppressed = Interlocked.Exchange(ref _suppressed, 0);
            return true;
        }
        Interlocked.Increment(ref _suppressed);
        suppressed = 0;
        return false;
    }
}
