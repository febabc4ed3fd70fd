using Journal;

namespace Snapshot;

/// <summary>
/// The store folder is on a read-only file system, so the store cannot be opened for writing. Not a lock conflict:
/// nothing else holds the store, and deleting files will not help. The store can only be read (a read-only open).
/// </summary>
public sealed class StoreReadOnlyException : JournalException
{
    /// <summary>Creates the error for <paramref name="folder"/>.</summary>
    public StoreReadOnlyException(string folder, Exception? inner = null)
        : this(folder, $"{folder}: read-only file system: the store cannot be opened for writing", inner) { }

    private StoreReadOnlyException(string folder, string message, Exception? inner)
        : base(message, inner)
    {
        Folder = folder;
    }

    /// <summary>A change refused because the store was opened read-only (<see cref="StoreOptions.ReadOnly"/>).</summary>
    internal static StoreReadOnlyException OpenedReadOnly(string folder, string what) =>
        new(folder, $"{folder}: the store is open read-only: {what} is refused", null);

    /// <summary>The store folder.</summary>
    public string Folder { get; }
}
