namespace Snapshot.Sync;

/// <summary>
/// An asynchronous reader-writer gate with writer preference: I/O on the store enters shared, snapshot create,
/// delete and close enter exclusive (they quiesce I/O: in-flight I/O finishes, new I/O waits, none is lost).
/// </summary>
/// <remarks>
/// Locking rules: <c>_lock</c> (a monitor) protects the counters and waiter queues only; it is held for a few
/// instructions and never across an await or a callback. Waiters are woken after it is released, with continuations
/// run asynchronously. Holders of the gate (shared or exclusive) may await device I/O, journal commits and forces,
/// but a shared holder must never wait for the copy throttle, for another writer's pending exception or for tracked
/// reads (those waits happen with nothing held; see <c>DataPath.WriteRunAsync</c>), and nothing on the copy-completion path or
/// the journal's write-back path ever enters the gate.
/// Gate waits take no cancellation token: a waiter that gave up would leave the counts wrong, and every holder
/// finishes in bounded time (its own I/O).
/// </remarks>
internal sealed class AsyncGate
{
    private readonly object _lock = new();
    private int _readers;
    private bool _writer;
    private readonly Queue<TaskCompletionSource> _waitingWriters = new();
    private TaskCompletionSource? _waitingReaders;
    private int _waitingReaderCount;

    /// <summary>Enters shared; completes synchronously when no writer holds or waits for the gate.</summary>
    public ValueTask EnterSharedAsync()
    {
        Task wait;
        lock (_lock)
        {
            if (!_writer && _waitingWriters.Count == 0)
            {
                _readers++;
                return ValueTask.CompletedTask;
            }
            _waitingReaders ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waitingReaderCount++;
            wait = _waitingReaders.Task;
        }
        // Waiting for an exclusive holder (create/delete/close) to finish; nothing is held here.
        return new ValueTask(wait);
    }

    /// <summary>Leaves shared.</summary>
    public void ExitShared()
    {
        TaskCompletionSource? wake = null;
        lock (_lock)
        {
            if (_readers <= 0) throw new InvalidOperationException("gate: ExitShared without EnterShared");
            if (--_readers == 0 && _waitingWriters.Count > 0)
            {
                _writer = true;
                wake = _waitingWriters.Dequeue();
            }
        }
        wake?.TrySetResult();
    }

    /// <summary>Enters exclusive: waits for shared holders to leave; new shared entries wait behind it.</summary>
    public async ValueTask EnterExclusiveAsync()
    {
        TaskCompletionSource tcs;
        lock (_lock)
        {
            if (!_writer && _readers == 0)
            {
                _writer = true;
                return;
            }
            tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waitingWriters.Enqueue(tcs);
        }
        // Waiting for in-flight I/O (shared holders) to finish; nothing is held here.
        await tcs.Task.ConfigureAwait(false);
    }

    /// <summary>Leaves exclusive; wakes the next writer, or every waiting reader.</summary>
    public void ExitExclusive()
    {
        TaskCompletionSource? wakeWriter = null, wakeReaders = null;
        lock (_lock)
        {
            if (!_writer) throw new InvalidOperationException("gate: ExitExclusive without EnterExclusive");
            if (_waitingWriters.Count > 0)
            {
                wakeWriter = _waitingWriters.Dequeue();
            }
            else
            {
                _writer = false;
                _readers += _waitingReaderCount;
                _waitingReaderCount = 0;
                wakeReaders = _waitingReaders;
                _waitingReaders = null;
            }
        }
        wakeWriter?.TrySetResult();
        wakeReaders?.TrySetResult();
    }

    /// <summary>Exclusive entries waiting now (for tests).</summary>
    public int ExclusiveWaiters { get { lock (_lock) return _waitingWriters.Count; } }

    /// <summary>Shared holders now (for tests and status).</summary>
    public int SharedHolders { get { lock (_lock) return _readers; } }
}
