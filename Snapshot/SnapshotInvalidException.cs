using Journal;

namespace Snapshot;

/// <summary>I/O to a snapshot that has been invalidated (its COW file filled, or an I/O error on it).</summary>
public sealed class SnapshotInvalidException : JournalException
{
    /// <summary>Creates the error.</summary>
    public SnapshotInvalidException(string cowFile, string snapshot, string reason)
        : base($"{cowFile}: snapshot '{snapshot}' is invalid: {reason}")
    {
        Snapshot = snapshot;
        Reason = reason;
    }

    /// <summary>The snapshot's name.</summary>
    public string Snapshot { get; }

    /// <summary>Why it was invalidated.</summary>
    public string Reason { get; }
}
