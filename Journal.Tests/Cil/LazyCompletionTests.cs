using Journal.Cil;

namespace Journal.Tests.Cil;

/// <summary>
/// <see cref="LazyCompletion"/>: a completion nobody waited for allocates nothing; a waiter before or after the
/// completion sees it, succeeded or failed, exactly once; and completing while a waiter arrives loses nothing (a lost
/// completion would leave a task pending past its deadline).
/// </summary>
public sealed class LazyCompletionTests
{
    private sealed class Holder
    {
        public LazyCompletion C;
    }

    [Fact]
    public void Completed_before_anyone_waits_it_hands_out_the_cached_task_and_allocates_nothing()
    {
        var h = new Holder();
        Assert.False(h.C.IsCompleted);
        long before = GC.GetAllocatedBytesForCurrentThread();
        Assert.True(h.C.TrySetResult());
        var t = h.C.Task;
        bool completed = h.C.IsCompleted;
        var status = h.C.Status;
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Same(Task.CompletedTask, t);
        Assert.True(completed);
        Assert.Equal(TaskStatus.RanToCompletion, status);
        Assert.Equal(0, allocated);
        Assert.False(h.C.TrySetResult());
        Assert.False(h.C.TrySetException(new InvalidOperationException("late")));
    }

    [Fact]
    public async Task A_waiter_before_the_completion_is_completed_by_it()
    {
        var h = new Holder();
        var t = h.C.Task;
        Assert.False(t.IsCompleted);
        Assert.Same(t, h.C.Task); // one source for every waiter
        Assert.Equal(TaskStatus.WaitingForActivation, h.C.Status);
        Assert.True(h.C.TrySetResult());
        await t.WaitAsync(JournalFixture.Watchdog);
        Assert.True(h.C.IsCompleted);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_failure_reaches_waiters_before_and_after_it(bool waitFirst)
    {
        var h = new Holder();
        var early = waitFirst ? h.C.Task : null;
        var error = new InvalidOperationException("journal shut down");
        Assert.True(h.C.TrySetException(error));
        Assert.False(h.C.TrySetException(new InvalidOperationException("second")));
        Assert.False(h.C.TrySetResult());
        Assert.True(h.C.IsCompleted);
        Assert.Equal(TaskStatus.Faulted, h.C.Status);
        Assert.Same(error, await Assert.ThrowsAsync<InvalidOperationException>(() => h.C.Task.WaitAsync(JournalFixture.Watchdog)));
        if (early is not null) Assert.Same(error, await Assert.ThrowsAsync<InvalidOperationException>(() => early.WaitAsync(JournalFixture.Watchdog)));
    }

    /// <summary>
    /// A completer and a waiter on two threads, released together, many times over: every waiter's task completes (a
    /// completer that missed a source published a moment after its look, with the waiter missing the state, would leave
    /// it pending forever; the wait below gives them 10 s in all).
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_completion_racing_a_waiter_is_never_lost(bool fail)
    {
        const int rounds = 20_000;
        var error = new InvalidOperationException("failed");
        var holders = new Holder[rounds];
        for (int i = 0; i < rounds; i++) holders[i] = new Holder();
        var tasks = new Task[rounds];
        using var barrier = new Barrier(2);
        var completer = new Thread(() =>
        {
            for (int i = 0; i < rounds; i++)
            {
                barrier.SignalAndWait();
                if (fail) holders[i].C.TrySetException(error);
                else holders[i].C.TrySetResult();
            }
        });
        completer.Start();
        for (int i = 0; i < rounds; i++)
        {
            barrier.SignalAndWait();
            tasks[i] = holders[i].C.Task;
        }
        Assert.True(completer.Join(JournalFixture.Watchdog), "the completer did not finish");
        // Why we wait: a completion completes its source at once (only continuations are posted); 10 s in all is far
        // past any of them.
        try { await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(10)); }
        catch (TimeoutException) { /* counted below */ }
        catch (InvalidOperationException) { /* the failures, checked below */ }
        Assert.Equal(0, tasks.Count(t => !t.IsCompleted));
        foreach (var t in tasks)
        {
            if (fail) Assert.Same(error, t.Exception!.InnerException);
            else Assert.Equal(TaskStatus.RanToCompletion, t.Status);
        }
    }
}
