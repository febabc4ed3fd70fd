using Journal;

namespace Snapshot;

/// <summary>
/// A write needed a copy-on-write copy into a snapshot whose COW file has reached its configured size, and the store
/// runs with <see cref="CowFullPolicy.FailWrite"/>: nothing was written, and the snapshot stays valid.
/// </summary>
public sealed class CowFullException : JournalException
{
    /// <summary>Creates the error.</summary>
    public CowFullException(string cowFile, string snapshot, ulong chunk)
        : base($"{cowFile}: COW file of snapshot '{snapshot}' is full: the write of chunk {chunk} needs a copy and was refused (nothing written; the snapshot keeps its data; delete a snapshot or create it larger)")
    {
        Snapshot = snapshot;
    }

    /// <summary>The snapshot whose COW file is full.</summary>
    public string Snapshot { get; }
}
