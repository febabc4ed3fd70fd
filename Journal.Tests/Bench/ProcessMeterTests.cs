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

    [Fact]
    public void Cpu_time_counts_a_thread_that_ended_and_is_no_more_than_the_cores_allow()
    {
        var meter = ProcessMeter.Start();
        var spinner = new Thread(() =>
        {
            // Spins until the process has spent 100 ms more CPU by /proc's count (another clock than the meter's, in
            // 10 ms ticks), whatever the machine's load.
            using var p = System.Diagnostics.Process.GetCurrentProcess();
            var until = p.TotalProcessorTime + TimeSpan.FromMilliseconds(100);
            do p.Refresh(); while (p.TotalProcessorTime < until);
        });
        spinner.Start();
        spinner.Join();
        var usage = meter.Stop();
        Assert.True(usage.Cpu >= TimeSpan.FromMilliseconds(80), $"{usage.Cpu.TotalMilliseconds} ms of CPU for 100 ms spent by /proc's count");
        // Slack: the meter reads the CPU time just outside its wall-clock interval (a thread descheduled there adds the
        // others' CPU but no wall time), and the kernel's total lags by up to a tick per running thread.
        var most = usage.Wall * Environment.ProcessorCount * 1.1 + TimeSpan.FromMilliseconds(100);
        Assert.True(usage.Cpu <= most, $"{usage.Cpu.TotalMilliseconds} ms of CPU in {usage.Wall.TotalMilliseconds} ms on {Environment.ProcessorCount} cores");
    }
}
