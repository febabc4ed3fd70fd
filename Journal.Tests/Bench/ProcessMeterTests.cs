using JournalBench.Measure;

namespace Journal.Tests.Bench;

/// <summary>
/// The benchmarks' process meter counts every thread's context switches (getrusage), so a thread that blocks shows up
/// as voluntary switches, including a thread that has ended by the time the meter stops.
/// </summary>
public class ProcessMeterTests
{
    [Fact]
    public void A_thread_that_blocks_is_counted_in_voluntary_switches_after_it_ended()
    {
        const int Sleeps = 20;
        var meter = ProcessMeter.Start();
        var sleeper = new Thread(() =>
        {
            for (int i = 0; i < Sleeps; i++) Thread.Sleep(1); // each sleep blocks the thread: one voluntary switch at least
        });
        sleeper.Start();
        sleeper.Join();
        var usage = meter.Stop();
        Assert.True(usage.VoluntarySwitches >= Sleeps, $"{usage.VoluntarySwitches} voluntary switches for {Sleeps} sleeps of an ended thread");
        Assert.True(usage.Wall >= TimeSpan.FromMilliseconds(Sleeps), $"wall time {usage.Wall}");
    }
}
