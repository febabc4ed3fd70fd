using Journal.Format;
using Journal.Storage;
using Journal.Testing;
using Xunit.Abstractions;
using static Journal.Tests.Cil.JournalFixture;

namespace Journal.Tests.Cil;

/// <summary>
/// A checkpoint costs no allocation once the journal is warm: forces wait on pooled <see cref="Journal.Cil.DurabilityWaiter"/>s
/// (by sequence, not on a context), and a context is reused once its successor is durable.
/// </summary>
public sealed class CheckpointReuseTests
{
    [Fact]
    public async Task Forces_complete_only_once_their_sequence_is_durable_with_contexts_reused()
    {
        var logDev = new MemoryBlockDevice(LogIntegrationTests.Blocks, "log");
        var j = MetadataJournal.Create(new LogRegion(logDev, 0, LogIntegrationTests.Blocks), LogIntegrationTests.RealOptions());
        var home = new TestHome();
        long early = 0;
        // Four committers, each forcing its own commit: their forces overlap the pushes of each other's checkpoints.
        var tasks = Enumerable.Range(0, 4).Select(t => Task.Run(async () =>
        {
            var item = new TestItem(home, (ulong)t);
            for (int i = 0; i < 1500; i++)
            {
                ulong seq = await CommitAsync(j, item, i);
                await j.ForceAsync(seq);
                if (j.DurableSequence < seq) Interlocked.Increment(ref early);
            }
        })).ToArray();
        await Task.WhenAll(tasks).Within(j);
        Assert.Equal(0, Interlocked.Read(ref early));
        long checkpoints = j.Statistics.Checkpoints;
        Assert.True(checkpoints > 100, $"only {checkpoints} checkpoints");
        // Each switch takes a context: all but a handful are reused ones (the free list holds what the pushes in flight
        // and the spare need).
        Assert.True(j.Cil.ContextsCreated <= 8, $"{j.Cil.ContextsCreated} contexts made for {checkpoints} checkpoints");
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task A_waiting_force_fails_when_the_journal_shuts_down()
    {
        var (j, sink) = Create();
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        sink.FlushGate = gate.Task;
        ulong seq = await CommitAsync(j, new TestItem(new TestHome(), 1), 1);
        var force = j.ForceAsync(seq).AsTask();
        await CommitPathTests.WaitUntil(() => j.Cil.DescribeState().Contains("committed=RanToCompletion"), "the checkpoint's commit record was not written");
        Assert.False(force.IsCompleted);
        j.Cil.Shutdown(new IOException("device gone"));
        var e = await Assert.ThrowsAsync<JournalException>(() => force.WaitAsync(Watchdog));
        Assert.Contains("device gone", e.Message);
        gate.SetResult();
        await Assert.ThrowsAsync<JournalException>(() => j.ForceAsync(seq).AsTask().WaitAsync(Watchdog));
    }

    [Fact]
    public async Task A_cancelled_force_leaves_the_other_forces_of_its_sequence_waiting()
    {
        var (j, sink) = Create();
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        sink.FlushGate = gate.Task;
        ulong seq = await CommitAsync(j, new TestItem(new TestHome(), 1), 1);
        using var cts = new CancellationTokenSource();
        var cancellable = j.ForceAsync(seq, cts.Token).AsTask();
        var plain = j.ForceAsync(seq).AsTask();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancellable.WaitAsync(Watchdog));
        Assert.False(plain.IsCompleted);
        gate.SetResult();
        await plain.WaitAsync(Watchdog);
        Assert.True(j.DurableSequence >= seq);
        // The waiters went back to their pool and serve the next forces.
        for (int i = 2; i < 50; i++) await j.ForceAsync(await CommitAsync(j, new TestItem(new TestHome(), 1), i)).AsTask().WaitAsync(Watchdog);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }
}

/// <summary>
/// A commit and its force allocate nothing once warm, on the real log writer flushing on the forcing thread (as the
/// snapshot store's journal does). Runs alone: the process-wide allocation counter sees every thread.
/// </summary>
[Collection(AllocationMeasurement.Name)]
public sealed class CheckpointAllocationTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_forced_commit_allocates_nothing_once_warm()
    {
        var logDev = new MemoryBlockDevice(LogIntegrationTests.Blocks, "log");
        var options = LogIntegrationTests.RealOptions();
        var j = MetadataJournal.Create(new LogRegion(logDev, 0, LogIntegrationTests.Blocks), new JournalOptions
        {
            LogSizeBytes = options.LogSizeBytes, LogBufferCount = options.LogBufferCount, LogBufferSize = options.LogBufferSize,
            CilSoftLimitBytes = options.CilSoftLimitBytes, CilHardLimitBytes = options.CilHardLimitBytes,
            MemoryBudgetBytes = options.MemoryBudgetBytes, FlushOnForcingThread = true,
        });
        var item = new TestItem(new TestHome(), 1);
        int reserve = Reserve(j, item, 64);
        async Task Pass(int n)
        {
            for (int i = 0; i < n; i++)
            {
                ulong seq;
                using (var tx = await j.BeginTransactionAsync(reserve))
                using (item.Lock())
                {
                    item.SetVersion(i, 64);
                    tx.AddItem(item);
                    seq = await tx.CommitAsync();
                }
                await j.ForceAsync(seq);
            }
        }
        await Pass(2000).WaitAsync(Watchdog);
        double best = double.MaxValue;
        for (int trial = 0; trial < 3; trial++)
        {
            const int n = 4000;
            long before = GC.GetTotalAllocatedBytes(precise: true);
            await Pass(n).WaitAsync(Watchdog);
            best = Math.Min(best, (double)(GC.GetTotalAllocatedBytes(precise: true) - before) / n);
        }
        output.WriteLine($"{best:F1} bytes a forced commit; {j.Cil.ContextsCreated} contexts made for {j.Statistics.Checkpoints} checkpoints");
        Assert.True(j.Cil.ContextsCreated <= 8, $"{j.Cil.ContextsCreated} contexts made for {j.Statistics.Checkpoints} checkpoints");
        // Once warm nothing is allocated per checkpoint (a context, its region list and completions, a force's task and
        // state were about a kilobyte before they were reused); what is left is the test's own await machinery.
        Assert.True(best < 16, $"{best:F1} bytes allocated per forced commit");
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }
}
