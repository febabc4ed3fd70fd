using Journal;

namespace Snapshot;

/// <summary>
/// A value the store refuses (a snapshot name, a size, a range, a snapshot that does not exist or cannot take the
/// change asked for): an <see cref="ArgumentException"/>, with a one-line message naming the file or store it concerns.
/// </summary>
public sealed class SnapshotArgumentException : JournalArgumentException
{
    /// <summary>Creates the error.</summary>
    public SnapshotArgumentException(string message) : base(message) { }
}
