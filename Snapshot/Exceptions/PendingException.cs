using System.Threading.Tasks.Sources;

namespace Snapshot.Exceptions;

/// <summary>
/// An exception whose data is being copied and committed: it sits in its snapshot's pending table (keyed by old chunk)
/// from the moment a writer claims the chunk until the exception is durable and moved to the complete table. Other
/// writers and readers of that chunk wait for it (<see cref="WaitTask"/>) holding nothing, then look again.
/// Objects come from a bounded pool and are reused.
/// </summary>
/// <remarks>
/// The fields are read and written under the store's state lock, except the commit completion: the copy that owns the
/// exception queues it to the commit pipeline and awaits <see cref="CommitTask"/> (a reusable value-task source, so a
/// commit allocates nothing), which the pipeline completes once, through <see cref="CompleteCommit"/>.
/// </remarks>
internal sealed class PendingException : IValueTaskSource
{
    private ManualResetValueTaskSourceCore<bool> _commit = new() { RunContinuationsAsynchronously = true };

    public SnapshotState? Snapshot;
    public ulong OldChunk;
    public ulong NewChunk;

    /// <summary>Set when copying into or committing this exception failed (its snapshot is being invalidated).</summary>
    public bool Failed;

    /// <summary>
    /// Set when the COW file had no space for this copy (the file system is full): the exception is dropped and its
    /// chunk freed, the snapshot stays valid, and the write that needed the copy fails with this error.
    /// </summary>
    public Journal.Storage.DeviceFullException? NoSpace;

    /// <summary>Set when the exception was handed to the commit pipeline (its <see cref="CommitTask"/> will complete).</summary>
    public bool Queued;

    /// <summary>Set once the exception is durable in its store.</summary>
    public bool Committed;

    /// <summary>Created only when someone waits; completed (after the state lock is released) when the exception leaves the pending table.</summary>
    public TaskCompletionSource? Waiters;

    /// <summary>The task to wait on; call under the state lock.</summary>
    public Task WaitTask => (Waiters ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

    /// <summary>
    /// Completes when the commit pipeline has made this exception durable (or failed: it then throws the round's
    /// error). Await it once per commit.
    /// </summary>
    public ValueTask CommitTask => new(this, _commit.Version);

    /// <summary>True once the commit pipeline has completed this (queued) exception's commit, either way.</summary>
    public bool CommitCompleted => _commit.GetStatus(_commit.Version) != ValueTaskSourceStatus.Pending;

    /// <summary>
    /// Runs <paramref name="continuation"/>(<paramref name="state"/>) on the thread pool once the commit completes (never
    /// on the pipeline's thread), without consuming the outcome: <see cref="ConsumeCommit"/> does that, once. Takes the
    /// place of awaiting <see cref="CommitTask"/>, for a caller that drives its own continuation.
    /// </summary>
    public void OnCommitCompleted(Action<object?> continuation, object? state) =>
        _commit.OnCompleted(continuation, state, _commit.Version, ValueTaskSourceOnCompletedFlags.None);

    /// <summary>The outcome of a completed commit: returns if durable, throws the round's error if not. Once per commit.</summary>
    public void ConsumeCommit() => _commit.GetResult(_commit.Version);

    /// <summary>Called once by the commit pipeline: durable (<paramref name="error"/> null) or failed.</summary>
    public void CompleteCommit(Exception? error)
    {
        if (error is null) _commit.SetResult(true);
        else _commit.SetException(error);
    }

    public void Reset()
    {
        Snapshot = null;
        OldChunk = NewChunk = 0;
        Failed = Committed = Queued = false;
        NoSpace = null;
        Waiters = null;
        _commit.Reset();
    }

    void IValueTaskSource.GetResult(short token) => _commit.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _commit.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _commit.OnCompleted(continuation, state, token, flags);

    /// <inheritdoc/>
    public override string ToString() => $"PendingException({Snapshot?.Name}, old {OldChunk} -> new {NewChunk})";
}
