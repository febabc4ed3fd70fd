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
    public async Task A_context_is_not_reused_while_its_own_push_still_runs()
    {
        // Once a checkpoint's Durable completes, its successor's push can finish first and give the context up. The hook
        // holds a push right there (every 8th checkpoint, 40 times, up to 20 ms: a preempted thread) while committers
        // that do not force keep checkpoints going. Reused under its push, the context would take a new sequence and
        // the push would then complete the waiters of that sequence, before it was durable.
        var logDev = new GatedDevice(new MemoryBlockDevice(LogIntegrationTests.Blocks, "log")) { AsyncFlushes = true };
        var j = MetadataJournal.Create(new LogRegion(logDev, 0, LogIntegrationTests.Blocks), LogIntegrationTests.RealOptions());
        var home = new TestHome();
        long seen = 0, held = 0, reused = 0, early = 0;
        j.Cil.AfterDurableForTests = c =>
        {
            if (Interlocked.Increment(ref seen) % 8 != 0 || Interlocked.Increment(ref held) > 40) return;
            ulong before = c.Sequence;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (clock.ElapsedMilliseconds < 20)
            {
                if (c.Sequence != before) { Interlocked.Increment(ref reused); return; }
                Thread.Sleep(1);
            }
        };
        using var stop = new CancellationTokenSource();
        var others = Enumerable.Range(10, 4).Select(t => Task.Run(async () =>
        {
            var item = new TestItem(home, (ulong)t);
            for (int i = 0; !stop.IsCancellationRequested; i++) { await CommitAsync(j, item, i); await Task.Yield(); }
        })).ToArray();
        var pusher = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested) { j.Cil.RequestPush(j.CurrentSequence); await Task.Delay(1); }
        });
        var forcers = Enumerable.Range(0, 4).Select(t => Task.Run(async () =>
        {
            var item = new TestItem(home, (ulong)t);
            for (int i = 0; Interlocked.Read(ref held) < 40 || i < 300; i++)
            {
                ulong seq = await CommitAsync(j, item, i);
                await j.ForceAsync(seq);
                if (j.DurableSequence < seq) Interlocked.Increment(ref early);
            }
        })).ToArray();
        await Task.WhenAll(forcers).Within(j);
        stop.Cancel();
        await Task.WhenAll(others).Within(j);
        await pusher.WaitAsync(Watchdog);
        j.Cil.AfterDurableForTests = null;
        Assert.Equal(0, Interlocked.Read(ref reused));
        Assert.Equal(0, Interlocked.Read(ref early));
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    /// <summary>A journal on a memory sink whose flushes wait for the returned gate, and a commit of sequence 1 in it.</summary>
    private static async Task<(MetadataJournal Journal, TaskCompletionSource Gate, ulong Sequence)> CommittedWithFlushHeldAsync()
    {
        var (j, sink) = Create();
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        sink.FlushGate = gate.Task;
        return (j, gate, await CommitAsync(j, new TestItem(new TestHome(), 1), 1));
    }

    [Fact]
    public async Task A_waiting_force_fails_when_the_journal_shuts_down()
    {
        var (j, gate, seq) = await CommittedWithFlushHeldAsync();
        var force = j.ForceAsync(seq).AsTask();
        await CommitPathTests.WaitUntil(() => j.Cil.DescribeState().Contains("committed=RanToCompletion"), "the checkpoint's commit record was not written");
        Assert.False(force.IsCompleted);
        j.Cil.Shutdown(new IOException("device gone"));
        var e = await Assert.ThrowsAsync<JournalException>(() => force.WaitAsync(Watchdog));
        Assert.Contains("device gone", e.Message);
        // (Released, the held flush completes: the checkpoint is then on the device, and a later force of it may
        // succeed, since it is durable; what mattered is that the waiting force did not wait for that.)
        gate.SetResult();
    }

    [Fact]
    public async Task Reading_a_force_before_it_completes_throws_and_harms_no_other_force()
    {
        // A caller's misuse of the value task (its result read before it completed) must not hand the still-registered
        // waiter back to the pool: the next force would take it and link it twice.
        var (j, gate, seq) = await CommittedWithFlushHeldAsync();
        var misused = j.ForceAsync(seq);
        Assert.Throws<InvalidOperationException>(() => misused.GetAwaiter().GetResult());
        var other = j.ForceAsync(seq).AsTask();
        gate.SetResult();
        await other.WaitAsync(Watchdog);
        for (int i = 2; i < 20; i++) await j.ForceAsync(await CommitAsync(j, new TestItem(new TestHome(), 1), i)).AsTask().WaitAsync(Watchdog);
        Assert.Null(j.Cil.ShutdownError);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task A_cancelled_force_leaves_the_other_forces_of_its_sequence_waiting()
    {
        var (j, gate, seq) = await CommittedWithFlushHeldAsync();
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
