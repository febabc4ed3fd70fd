using Journal;

namespace Snapshot;

/// <summary>
/// A snapshot's COW file was missing or unreadable when the store was opened, and the snapshot was kept
/// (<see cref="CowUnreadablePolicy.KeepSnapshot"/>): reading it is refused, and so is every origin write and merge, each
/// of which would need a copy into the file. Nothing was changed. Restoring the file and reopening the store brings the
/// snapshot back; deleting the snapshot gives the origin back its writes.
/// </summary>
public sealed class SnapshotUnavailableException : JournalException
{
    private SnapshotUnavailableException(string cowFile, string snapshot, string reason, string message)
        : base(message)
    {
        CowFile = cowFile;
        Snapshot = snapshot;
        Reason = reason;
    }

    /// <summary>The refusal of I/O to the unavailable snapshot itself.</summary>
    internal static SnapshotUnavailableException Reading(string cowFile, string snapshot, string reason) =>
        new(cowFile, snapshot, reason,
            $"{cowFile}: snapshot '{snapshot}' is unavailable: {reason}; restore the file and reopen the store, or delete the snapshot");

    /// <summary>The refusal of <paramref name="what"/> (an origin write, a merge) while the snapshot is unavailable.</summary>
    internal static SnapshotUnavailableException Refusing(string cowFile, string snapshot, string reason, string what) =>
        new(cowFile, snapshot, reason,
            $"{cowFile}: snapshot '{snapshot}' is unavailable ({reason}): {what} is refused until the file is restored and the store reopened, or the snapshot is deleted; nothing was changed");

    /// <summary>The snapshot's COW file.</summary>
    public string CowFile { get; }

    /// <summary>The snapshot's name.</summary>
    public string Snapshot { get; }

    /// <summary>Why the file could not be used.</summary>
    public string Reason { get; }
}
