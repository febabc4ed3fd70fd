using System.Diagnostics;
using System.Runtime.InteropServices;

namespace JournalBench.Measure;

/// <summary>
/// What the whole process spent over a timed part: wall time, CPU time (every thread, both user and system), bytes
/// allocated on the managed heap by every thread (<see cref="GC.GetTotalAllocatedBytes(bool)"/>, precise; the
/// per-thread counter would miss the store's background rounds and completions), and context switches of every thread
/// (voluntary ones are a thread that blocked, for I/O or for work handed to it by another thread, so they count a write
/// path's hand-offs; involuntary ones are threads preempted), and thread-pool work items completed (each one a piece of
/// work handed to a pool thread: a continuation resumed there, a queued flush, a signal's waiter). CPU time and switches
/// come from one getrusage call, which allocates nothing.
/// </summary>
internal readonly record struct ProcessMeter(long StartTimestamp, ProcessCounters StartCounters, long StartAllocated, long StartWorkItems)
{
    /// <summary>Reads the counters now.</summary>
    public static ProcessMeter Start()
    {
        var counters = ProcessCounters.Read(); // before reading the allocation counter: off Linux, reading the CPU time allocates
        long allocated = GC.GetTotalAllocatedBytes(true);
        return new ProcessMeter(Stopwatch.GetTimestamp(), counters, allocated, ThreadPool.CompletedWorkItemCount);
    }

    /// <summary>Wall time, CPU time, bytes allocated and context switches since <see cref="Start"/>.</summary>
    public Usage Stop()
    {
        long end = Stopwatch.GetTimestamp();
        long allocated = GC.GetTotalAllocatedBytes(true); // before reading the CPU time (see Start)
        var counters = ProcessCounters.Read();
        return new Usage(Stopwatch.GetElapsedTime(StartTimestamp, end), counters.Cpu - StartCounters.Cpu, allocated - StartAllocated,
            counters.Voluntary - StartCounters.Voluntary, counters.Involuntary - StartCounters.Involuntary, ThreadPool.CompletedWorkItemCount - StartWorkItems);
    }

    /// <summary>What a timed part cost.</summary>
    internal readonly record struct Usage(TimeSpan Wall, TimeSpan Cpu, long AllocatedBytes, long VoluntarySwitches, long InvoluntarySwitches, long WorkItems);
}

/// <summary>The process's CPU time and context switches so far, every thread's, ended ones included.</summary>
internal readonly partial record struct ProcessCounters(TimeSpan Cpu, long Voluntary, long Involuntary)
{
    // struct rusage on 64-bit Linux: ru_utime and ru_stime (struct timeval: seconds, microseconds), then fourteen
    // longs, of which ru_nvcsw and ru_nivcsw are the last two.
    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct RUsage
    {
        public fixed long Times[4];
        public fixed long Fields[14];
    }

    private const int RUsageSelf = 0, NvcswField = 12, NivcswField = 13;

    [LibraryImport("libc", EntryPoint = "getrusage")]
    private static partial int GetRUsage(int who, out RUsage usage);

    /// <summary>Reads them now; off 64-bit Linux, the CPU time from <see cref="Process"/> and no switches.</summary>
    public static unsafe ProcessCounters Read()
    {
        if (OperatingSystem.IsLinux() && IntPtr.Size == 8 && GetRUsage(RUsageSelf, out var u) == 0)
        {
            long micros = (u.Times[0] + u.Times[2]) * 1_000_000 + u.Times[1] + u.Times[3];
            return new ProcessCounters(TimeSpan.FromMicroseconds(micros), u.Fields[NvcswField], u.Fields[NivcswField]);
        }
        using var p = Process.GetCurrentProcess();
        return new ProcessCounters(p.TotalProcessorTime, 0, 0);
    }
}
