using Journal;

namespace Snapshot;

/// <summary>The folder holds no snapshot store (its superblock is missing).</summary>
public sealed class StoreNotFoundException : JournalException
{
    /// <summary>Creates the error.</summary>
    public StoreNotFoundException(string folder, string file)
        : base($"{file}: not found: {folder} is not a snapshot store")
    {
        Folder = folder;
    }

    /// <summary>The folder that was opened.</summary>
    public string Folder { get; }
}
