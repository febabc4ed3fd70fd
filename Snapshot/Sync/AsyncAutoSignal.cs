using System.Threading.Tasks.Sources;

namespace Snapshot.Sync;

/// <summary>
/// An auto-reset signal for one waiter at a time that allocates nothing: <see cref="Set"/> wakes the waiter, or, when
/// nobody waits, leaves the signal set so the next <see cref="WaitAsync"/> returns at once. For long-running loops that
/// wait for work: the commit pipeline's, the metadata write-back's, the NBD server's reader, sender and workers.
/// <see cref="Set"/> never runs the waiter's code inline, so it may be called under a lock.
/// </summary>
/// <remarks>
/// Locking: <c>_lock</c> protects <c>_set</c> and <c>_waiting</c>; held for a few instructions; the waiter is woken
/// after it is released (continuations run asynchronously, never inline in <see cref="Set"/>).
/// </remarks>
internal sealed class AsyncAutoSignal : IValueTaskSource
{
    private readonly object _lock = new();
    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private bool _set, _waiting;

    /// <summary>Wakes the waiter, or leaves the signal set.</summary>
    public void Set()
    {
        lock (_lock)
        {
            if (!_waiting)
            {
                _set = true;
                return;
            }
            _waiting = false;
        }
        _core.SetResult(true);
    }

    /// <summary>Completes when the signal is set (consuming it). One waiter at a time.</summary>
    public ValueTask WaitAsync()
    {
        lock (_lock)
        {
            if (_set)
            {
                _set = false;
                return ValueTask.CompletedTask;
            }
            if (_waiting) throw new InvalidOperationException("AsyncAutoSignal has one waiter at a time");
            _core.Reset();
            _waiting = true;
            return new ValueTask(this, _core.Version);
        }
    }

    void IValueTaskSource.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
