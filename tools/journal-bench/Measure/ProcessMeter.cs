using System.Diagnostics;
using System.Runtime.InteropServices;

namespace JournalBench.Measure;

/// <summary>
/// What the whole process spent over a timed part: wall time, CPU time (every thread, both user and system), bytes
/// allocated on the managed heap by every thread (<see cref="GC.GetTotalAllocatedBytes(bool)"/>, precise; the
/// per-thread counter would miss the store's background rounds and completions), and context switches of every thread
/// (getrusage: voluntary ones are a thread that blocked, for I/O or for work handed to it by another thread, so they
/// count a write path's hand-offs; involuntary ones are threads preempted).
/// </summary>
internal readonly partial record struct ProcessMeter(long StartTimestamp, TimeSpan StartCpu, long StartAllocated, long StartVoluntary, long StartInvoluntary)
{
    /// <summary>Reads the counters now.</summary>
    public static ProcessMeter Start()
    {
        var cpu = CurrentCpu(); // before reading the allocation counter: reading the CPU time allocates
        var (voluntary, involuntary) = ContextSwitches();
        long allocated = GC.GetTotalAllocatedBytes(true);
        return new ProcessMeter(Stopwatch.GetTimestamp(), cpu, allocated, voluntary, involuntary);
    }

    /// <summary>Wall time, CPU time, bytes allocated and context switches since <see cref="Start"/>.</summary>
    public Usage Stop()
    {
        long end = Stopwatch.GetTimestamp();
        long allocated = GC.GetTotalAllocatedBytes(true); // before reading the CPU time, which allocates
        var (voluntary, involuntary) = ContextSwitches();
        var cpu = CurrentCpu();
        return new Usage(Stopwatch.GetElapsedTime(StartTimestamp, end), cpu - StartCpu, allocated - StartAllocated,
            voluntary - StartVoluntary, involuntary - StartInvoluntary);
    }

    private static TimeSpan CurrentCpu()
    {
        using var p = Process.GetCurrentProcess();
        return p.TotalProcessorTime;
    }

    // struct rusage on 64-bit Linux: two struct timeval (16 bytes each), then fourteen longs; ru_nvcsw and ru_nivcsw
    // are the last two.
    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct RUsage
    {
        public fixed long Times[4];
        public fixed long Fields[14];
    }

    private const int RUsageSelf = 0, NvcswField = 12, NivcswField = 13;

    [LibraryImport("libc", EntryPoint = "getrusage")]
    private static partial int GetRUsage(int who, out RUsage usage);

    /// <summary>Voluntary and involuntary context switches of every thread of the process so far; zeros off 64-bit Linux.</summary>
    private static unsafe (long Voluntary, long Involuntary) ContextSwitches()
    {
        if (!OperatingSystem.IsLinux() || IntPtr.Size != 8 || GetRUsage(RUsageSelf, out var u) != 0) return (0, 0);
        return (u.Fields[NvcswField], u.Fields[NivcswField]);
    }

    /// <summary>What a timed part cost.</summary>
    internal readonly record struct Usage(TimeSpan Wall, TimeSpan Cpu, long AllocatedBytes, long VoluntarySwitches, long InvoluntarySwitches);
}
