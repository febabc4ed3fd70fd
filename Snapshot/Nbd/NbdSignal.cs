using System.Threading.Tasks.Sources;

namespace Snapshot.Nbd;

/// <summary>
/// An auto-reset event with one waiter and no allocation per wait: <see cref="WaitAsync"/> returns a
/// <see cref="ValueTask"/> backed by this object, completed by the next <see cref="Set"/> (a <see cref="Set"/> with no
/// waiter is remembered for the next wait). Continuations run asynchronously, so <see cref="Set"/> never runs the
/// waiter's code inline and may be called under a lock.
/// </summary>
/// <remarks>
/// Locking: <c>_lock</c> protects <c>_waiting</c> and <c>_pending</c>; held for a few instructions; the completion
/// (<c>SetResult</c>) is done outside it. Only one caller may wait at a time (the owner of the signal: a connection's
/// reader, sender or one worker).
/// </remarks>
internal sealed class NbdSignal : IValueTaskSource
{
    private readonly object _lock = new();
    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private bool _waiting;
    private bool _pending;

    /// <summary>Completes when <see cref="Set"/> is called (at once if it was called since the last wait).</summary>
    public ValueTask WaitAsync()
    {
        lock (_lock)
        {
            if (_pending)
            {
                _pending = false;
                return ValueTask.CompletedTask;
            }
            if (_waiting) throw new InvalidOperationException("NbdSignal: a second waiter");
            _waiting = true;
            _core.Reset();
            return new ValueTask(this, _core.Version);
        }
    }

    /// <summary>Wakes the waiter, or remembers the wake-up for the next wait.</summary>
    public void Set()
    {
        lock (_lock)
        {
            if (!_waiting)
            {
                _pending = true;
                return;
            }
            _waiting = false;
        }
        _core.SetResult(true);
    }

    void IValueTaskSource.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
