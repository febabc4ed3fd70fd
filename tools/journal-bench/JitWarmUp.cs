using System.Diagnostics;
using System.Runtime;

namespace JournalBench;

/// <summary>
/// Warm-up until the code under test runs at its steady tier. .NET compiles a method quickly first (tier 0, then an
/// instrumented tier) and recompiles it fully optimized in the background once it is hot; on two cores that background
/// compilation takes a quarter of the CPU for seconds, so a run timed right after a short warm-up measures the JIT as
/// much as the store. A long-running server (<c>snapctl serve</c>) is past this within seconds of its start.
/// </summary>
internal static class JitWarmUp
{
    /// <summary>Passes run at least (the first ones compile in bursts between quieter passes).</summary>
    public const int MinPasses = 3;

    /// <summary>A pass that compiles at most this many methods counts as quiet.</summary>
    public const int QuietMethods = 32;

    /// <summary>
    /// Runs <paramref name="pass"/> at least <see cref="MinPasses"/> times and until a pass compiles at most
    /// <see cref="QuietMethods"/> methods (<see cref="System.Runtime.JitInfo.GetCompiledMethodCount"/>, all threads,
    /// background tier-ups included), or for <paramref name="maxSeconds"/>. Returns what was done, for the header.
    /// </summary>
    public static async Task<Report> RunAsync(Func<Task> pass, double maxSeconds = 40)
    {
        var sw = Stopwatch.StartNew();
        int passes = 0;
        bool quiet = false;
        long last = 0;
        while (!(quiet && passes >= MinPasses) && sw.Elapsed.TotalSeconds < maxSeconds)
        {
            long before = JitInfo.GetCompiledMethodCount();
            await pass().ConfigureAwait(false);
            // The background tier-up starts after a short delay with no new tier-0 work: give it that delay, so a
            // pass's compilations are counted in that pass.
            await Task.Delay(250).ConfigureAwait(false);
            last = JitInfo.GetCompiledMethodCount() - before;
            passes++;
            quiet = last <= QuietMethods;
        }
        return new Report(passes, sw.Elapsed, last, quiet);
    }

    /// <summary>What a warm-up did.</summary>
    public readonly record struct Report(int Passes, TimeSpan Elapsed, long LastPassMethods, bool Quiet)
    {
        public string Describe() => Quiet
            ? $"warm-up: {Passes} untimed passes ({Elapsed.TotalSeconds:F1} s) until one compiled at most {QuietMethods} methods ({LastPassMethods})"
            : $"warm-up: stopped after {Passes} untimed passes ({Elapsed.TotalSeconds:F1} s), the last still compiled {LastPassMethods} methods";
    }
}
