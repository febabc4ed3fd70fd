namespace Snapshot.Exceptions;

/// <summary>
/// An exception whose data is being copied and committed: it sits in its snapshot's pending table (keyed by old chunk)
/// from the moment a writer claims the chunk until the exception is durable and moved to the complete table. Other
/// writers and readers of that chunk wait for it (<see cref="WaitTask"/>) holding nothing, then look again.
/// Objects come from a bounded pool and are reused.
/// </summary>
/// <remarks>All fields are read and written under the store's state lock.</remarks>
internal sealed class PendingException
{
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

    /// <summary>Set once the exception is durable in its store.</summary>
    public bool Committed;

    /// <summary>Created only when someone waits; completed (after the state lock is released) when the exception leaves the pending table.</summary>
    public TaskCompletionSource? Waiters;

    /// <summary>The task to wait on; call under the state lock.</summary>
    public Task WaitTask => (Waiters ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

    public void Reset()
    {
        Snapshot = null;
        OldChunk = NewChunk = 0;
        Failed = Committed = false;
        NoSpace = null;
        Waiters = null;
    }

    /// <inheritdoc/>
    public override string ToString() => $"PendingException({Snapshot?.Name}, old {OldChunk} -> new {NewChunk})";
}
