namespace Journal.Cil;

/// <summary>
/// A one-shot completion (succeeded or failed once) that allocates a <see cref="TaskCompletionSource"/> only when
/// someone waits before it completes. A checkpoint's "start written", "commit written" and "durable" completions are
/// usually complete before anyone looks (the next checkpoint's push finds them done), so most checkpoints allocate
/// none of them.
/// </summary>
/// <remarks>
/// <para>A mutable struct kept in a field of its owner and used in place (never copied: a copy would not see the
/// completion). Thread-safe: completing and waiting may race.</para>
/// <para>The race, and why nothing is lost: the completer publishes its state with an interlocked exchange and then
/// reads the source; a waiter publishes the source with an interlocked exchange and then reads the state. Both
/// exchanges are full fences, so at least one of the two sees the other's write: either the completer finds the
/// source and completes it, or the waiter finds the state set and completes the source itself (completing twice is
/// harmless). Continuations run asynchronously, as with the sources they replace.</para>
/// </remarks>
internal struct LazyCompletion
{
    // Failing: a completer claimed the failure and is writing the error; waiters treat it as pending (that completer
    // completes the source after it publishes Failed).
    private const int Pending = 0, Succeeded = 1, Failed = 2, Failing = 3;

    private int _state;
    private Exception? _error;             // written before _state becomes Failed
    private TaskCompletionSource? _source; // created by the first waiter that finds the completion pending

    /// <summary>Whether it has completed (either way). Allocates nothing.</summary>
    public bool IsCompleted => Volatile.Read(ref _state) is Succeeded or Failed;

    /// <summary>Completes it successfully; false if it had already completed.</summary>
    public bool TrySetResult()
    {
        if (Interlocked.CompareExchange(ref _state, Succeeded, Pending) != Pending) return false;
        Volatile.Read(ref _source)?.TrySetResult();
        return true;
    }

    /// <summary>Fails it with <paramref name="error"/>; false if it had already completed.</summary>
    public bool TrySetException(Exception error)
    {
        if (Interlocked.CompareExchange(ref _state, Failing, Pending) != Pending) return false;
        _error = error;
        Interlocked.Exchange(ref _state, Failed); // publishes the error; a full fence before the source is read
        Volatile.Read(ref _source)?.TrySetException(error);
        return true;
    }

    /// <summary>
    /// A task that completes with it: a cached completed task if it has succeeded (no allocation), else its source's
    /// task (allocated by the first caller).
    /// </summary>
    public Task Task
    {
        get
        {
            int s = Volatile.Read(ref _state);
            if (s == Succeeded) return System.Threading.Tasks.Task.CompletedTask;
            var source = Volatile.Read(ref _source);
            if (source is null)
            {
                var mine = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                source = Interlocked.CompareExchange(ref _source, mine, null) ?? mine;
            }
            // The completer may have set the state before the source was published, and missed it (see the remarks).
            s = Volatile.Read(ref _state);
            if (s == Succeeded) source.TrySetResult();
            else if (s == Failed) source.TrySetException(Volatile.Read(ref _error)!);
            return source.Task;
        }
    }

    /// <summary>
    /// Makes it pending again, for an owner that is reused. Only when nobody can reach the owner any more: a waiter still
    /// holding a task from before keeps that task (already completed), and is not affected.
    /// </summary>
    public void Reset()
    {
        _source = null;
        _error = null;
        Volatile.Write(ref _state, Pending);
    }

    /// <summary>Its status, for diagnostics. Allocates nothing.</summary>
    public TaskStatus Status => Volatile.Read(ref _state) switch
    {
        Succeeded => TaskStatus.RanToCompletion,
        Failed => TaskStatus.Faulted,
        _ => TaskStatus.WaitingForActivation,
    };
}
