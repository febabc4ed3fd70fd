using System.Reflection.Emit;
using JournalBench;

namespace Journal.Tests.Bench;

/// <summary>The benchmarks' warm-up: it stops once a pass compiles (almost) nothing, and gives up at its time limit.</summary>
/// <remarks>The compiled-method count is the whole process's: these run with no other test class beside them.</remarks>
[Collection(Journal.Tests.Cil.AllocationMeasurement.Name)]
public class JitWarmUpTests
{
    [Fact]
    public async Task A_pass_that_compiles_nothing_new_ends_the_warm_up_after_the_minimum_passes()
    {
        int calls = 0;
        var report = await JitWarmUp.RunAsync(() => { calls++; return Task.CompletedTask; }, maxSeconds: 60);
        Assert.True(report.Quiet, report.Describe());
        // Background tier-ups of code earlier tests ran may keep a pass or two busy; then it goes on.
        Assert.True(report.Passes >= JitWarmUp.MinPasses, report.Describe());
        Assert.Equal(report.Passes, calls);
        Assert.Contains("until one compiled at most", report.Describe());
    }

    [Fact]
    public async Task A_pass_that_always_compiles_new_code_stops_at_the_time_limit_and_says_so()
    {
        var report = await JitWarmUp.RunAsync(() =>
        {
            // Each pass compiles more new methods than a quiet pass may.
            for (int i = 0; i <= JitWarmUp.QuietMethods; i++)
            {
                var m = new DynamicMethod($"warm{Guid.NewGuid():N}", typeof(int), Type.EmptyTypes);
                var il = m.GetILGenerator();
                il.Emit(OpCodes.Ldc_I4, i);
                il.Emit(OpCodes.Ret);
                ((Func<int>)m.CreateDelegate(typeof(Func<int>)))();
            }
            return Task.CompletedTask;
        }, maxSeconds: 1);
        Assert.False(report.Quiet);
        Assert.True(report.LastPassMethods > JitWarmUp.QuietMethods, report.Describe());
        Assert.StartsWith("warm-up: stopped after", report.Describe());
    }
}
