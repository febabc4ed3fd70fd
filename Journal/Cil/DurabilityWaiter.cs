using System.Threading.Tasks.Sources;
using Microsoft.Extensions.ObjectPool;

namespace Journal.Cil;

/// <summary>
/// One force waiting for a checkpoint sequence to become durable: a pooled, reusable source for the
/// <see cref="ValueTask"/> that <see cref="CommittedItemList.ForceAsync"/> returns. The push completes it once the
/// sequence is durable (or fails it at shutdown); the awaiter's <see cref="GetResult"/> hands it back to its pool. So a
/// force that waits allocates nothing of its own.
/// </summary>
/// <remarks>
/// <para>Lifecycle: taken from the pool and linked on the CIL's waiter list under its waiter lock; unlinked under that
/// lock by the completion or the shutdown, then completed once, outside it; returned to the pool by the single await of
/// its value task. <see cref="Sequence"/> and <see cref="Next"/> are written only while it is registered (under the
/// waiter lock) or while it is on a completer's private list.</para>
/// <para>Continuations run asynchronously (never inline in the push that completes it), as with the task completion
/// sources this replaces.</para>
/// </remarks>
internal sealed class DurabilityWaiter : IValueTaskSource
{
    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private ObjectPool<DurabilityWaiter>? _pool;

    /// <summary>The sequence waited for.</summary>
    internal ulong Sequence;

    /// <summary>The next waiter on the CIL's list, or on a completer's list of waiters to complete.</summary>
    internal DurabilityWaiter? Next;

    /// <summary>The token of the current use (for the value task).</summary>
    public short Version => _core.Version;

    /// <summary>Completes it: successfully when <paramref name="error"/> is null.</summary>
    public void Complete(Exception? error)
    {
        if (error is null) _core.SetResult(true);
        else _core.SetException(error);
    }

    /// <summary>Ends this use: rethrows a failure, resets the source and returns it to its pool.</summary>
    /// <remarks>
    /// Only a completed use ends: a value task awaited twice (a stale token) or read before it completed throws without
    /// touching the waiter, which is still registered (returning it would link it twice).
    /// </remarks>
    public void GetResult(short token)
    {
        if (_core.GetStatus(token) == ValueTaskSourceStatus.Pending)
            throw new InvalidOperationException("a force's result was read before the force completed");
        try
        {
            _core.GetResult(token);
        }
        finally
        {
            _core.Reset();
            Sequence = 0;
            _pool?.Return(this);
        }
    }

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);

    /// <summary>A pool of waiters that go back to it after their await; keeps at most <paramref name="retained"/>.</summary>
    public static ObjectPool<DurabilityWaiter> NewPool(int retained)
    {
        var policy = new Policy();
        var pool = new DefaultObjectPool<DurabilityWaiter>(policy, retained);
        policy.Pool = pool;
        return pool;
    }

    private sealed class Policy : IPooledObjectPolicy<DurabilityWaiter>
    {
        public ObjectPool<DurabilityWaiter>? Pool;

        public DurabilityWaiter Create() => new() { _pool = Pool };

        public bool Return(DurabilityWaiter obj) => true;
    }
}
