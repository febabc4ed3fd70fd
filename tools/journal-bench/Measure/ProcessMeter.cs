using System.Diagnostics;

namespace JournalBench.Measure;

/// <summary>
/// What the whole process spent over a timed part: wall time, CPU time (every thread, both user and system) and bytes
/// allocated on the managed heap by every thread (<see cref="GC.GetTotalAllocatedBytes(bool)"/>, precise; the
/// per-thread counter would miss the store's background rounds and completions).
/// </summary>
internal readonly record struct ProcessMeter(long StartTimestamp, TimeSpan StartCpu, long StartAllocated)
{
    /// <summary>Reads the counters now.</summary>
    public static ProcessMeter Start()
    {
        var cpu = CurrentCpu(); // before reading the allocation counter: reading the CPU time allocates
        long allocated = GC.GetTotalAllocatedBytes(true);
        return new ProcessMeter(Stopwatch.GetTimestamp(), cpu, allocated);
    }

    /// <summary>Wall time, CPU time and bytes allocated since <see cref="Start"/>.</summary>
    public Usage Stop()
    {
        long end = Stopwatch.GetTimestamp();
        long allocated = GC.GetTotalAllocatedBytes(true); // before reading the CPU time, which allocates
        var cpu = CurrentCpu();
        return new Usage(Stopwatch.GetElapsedTime(StartTimestamp, end), cpu - StartCpu, allocated - StartAllocated);
    }

    private static TimeSpan CurrentCpu()
    {
        using var p = Process.GetCurrentProcess();
        return p.TotalProcessorTime;
    }

    /// <summary>What a timed part cost.</summary>
    internal readonly record struct Usage(TimeSpan Wall, TimeSpan Cpu, long AllocatedBytes);
}
