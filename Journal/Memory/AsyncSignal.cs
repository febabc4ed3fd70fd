namespace Journal.Memory;

/// <summary>
/// An auto-reset signal for one or more asynchronous waiters: <see cref="Set"/> wakes every current waiter, or, when
/// nobody waits, leaves the signal set so the next <see cref="WaitAsync"/> returns at once.
/// </summary>
/// <remarks>
/// Locking: <c>_lock</c> protects <c>_waiter</c> and <c>_set</c> only; nothing else is done while it is held, and it is
/// never taken while a journal context lock is held by the same thread with an allocation pending: <see cref="Set"/>
/// allocates nothing (the waiter allocated its task before it waited).
/// </remarks>
internal sealed class AsyncSignal
{
    private readonly object _lock = new();
    private TaskCompletionSource? _waiter;
    private bool _set;

    /// <summary>True when someone waits (lets hot paths skip <see cref="Set"/>).</summary>
    public bool HasWaiters => Volatile.Read(ref _waiter) is not null;

    /// <summary>Wakes the waiters, or leaves the signal set.</summary>
    public void Set()
    {
        TaskCompletionSource? w;
        lock (_lock)
        {
            w = _waiter;
            _waiter = null;
            if (w is null) _set = true;
        }
        w?.TrySetResult();
    }

    /// <summary>Completes when the signal is set (consuming it).</summary>
    public Task WaitAsync()
    {
        lock (_lock)
        {
            if (_set) { _set = false; return Task.CompletedTask; }
            _waiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _waiter.Task;
        }
    }
}
