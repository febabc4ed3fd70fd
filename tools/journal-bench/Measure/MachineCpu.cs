using System.Globalization;

namespace JournalBench.Measure;

/// <summary>
/// Busy CPU time of the whole machine (every process, every core), from the first line of <c>/proc/stat</c>: user,
/// nice, system, irq and softirq time, not idle, iowait or steal. For a job that runs in other processes too (fio and an
/// NBD server), it says what one operation cost the machine, client and server together; other load on the machine
/// counts as well, so read it beside the load average. The kernel counts in ticks of 1/100 s (USER_HZ), so a job
/// should run a second or more for a figure within a few percent.
/// </summary>
internal static class MachineCpu
{
    private const double TickSeconds = 0.01; // USER_HZ is 100 on Linux (getconf CLK_TCK)

    /// <summary>Busy seconds since boot; null where <c>/proc/stat</c> cannot be read.</summary>
    public static double? BusySeconds()
    {
        try
        {
            using var r = new StreamReader("/proc/stat");
            string? line = r.ReadLine();
            if (line is null || !line.StartsWith("cpu ", StringComparison.Ordinal)) return null;
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            // cpu user nice system idle iowait irq softirq steal ...
            if (f.Length < 8) return null;
            long busy = 0;
            foreach (int i in new[] { 1, 2, 3, 6, 7 }) busy += long.Parse(f[i], CultureInfo.InvariantCulture);
            return busy * TickSeconds;
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }
}
