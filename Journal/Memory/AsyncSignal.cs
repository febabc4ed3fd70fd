using System.Threading.Tasks.Sources;

namespace Journal.Memory;

/// <summary>
/// An auto-reset signal for asynchronous waiters: <see cref="Set"/> wakes every current waiter, or, when nobody waits,
/// leaves the signal set so the next wait returns at once. Two ways to wait: <see cref="WaitAsync"/>, a task any number
/// of callers may wait for at once (allocated by the first of them), and <see cref="WaitOneAsync"/>, for the one
/// long-running loop that owns the signal, which allocates nothing (a reusable value-task source).
/// </summary>
/// <remarks>
/// Locking: <c>_lock</c> protects the waiters and <c>_set</c> only; nothing else is done while it is held, and it is
/// never taken while a journal context lock is held by the same thread with an allocation pending: <see cref="Set"/>
/// allocates nothing (a task waiter allocated its task before it waited). Waiters are woken after it is released, and
/// their continuations run asynchronously, never inline in <see cref="Set"/>.
/// </remarks>
internal sealed class AsyncSignal : IValueTaskSource
{
    private readonly object _lock = new();
    private TaskCompletionSource? _waiter;
    private ManualResetValueTaskSourceCore<bool> _one = new() { RunContinuationsAsynchronously = true };
    private bool _oneWaiting;
    private bool _set;

    /// <summary>True when someone waits (lets hot paths skip <see cref="Set"/>).</summary>
    public bool HasWaiters => Volatile.Read(ref _waiter) is not null || Volatile.Read(ref _oneWaiting);

    /// <summary>Wakes the waiters, or leaves the signal set.</summary>
    public void Set()
    {
        TaskCompletionSource? w;
        bool one;
        lock (_lock)
        {
            w = _waiter;
            _waiter = null;
            one = _oneWaiting;
            _oneWaiting = false;
            if (w is null && !one) _set = true;
        }
        w?.TrySetResult();
        if (one) _one.SetResult(true);
    }

    /// <summary>Completes when the signal is set (consuming it). Any number of callers at once.</summary>
    public Task WaitAsync()
    {
        lock (_lock)
        {
            if (_set) { _set = false; return Task.CompletedTask; }
            _waiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _waiter.Task;
        }
    }

    /// <summary>
    /// Completes when the signal is set (consuming it), allocating nothing. One caller at a time: the loop that owns the
    /// signal (the push loop, the AIL worker); its value task is awaited once.
    /// </summary>
    public ValueTask WaitOneAsync()
    {
        lock (_lock)
        {
            if (_set) { _set = false; return ValueTask.CompletedTask; }
            if (_oneWaiting) throw new InvalidOperationException("AsyncSignal.WaitOneAsync has one caller at a time");
            _one.Reset();
            _oneWaiting = true;
            return new ValueTask(this, _one.Version);
        }
    }

    void IValueTaskSource.GetResult(short token) => _one.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _one.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _one.OnCompleted(continuation, state, token, flags);
}
