using Journal;

namespace Snapshot;

/// <summary>The store is already open (in this process or another): only one opener at a time.</summary>
public sealed class StoreInUseException : JournalException
{
    /// <summary>Creates the error for <paramref name="folder"/>.</summary>
    public StoreInUseException(string folder, Exception? inner = null)
        : base($"{folder}: store is in use (it is open in another process or elsewhere in this one)", inner)
    {
        Folder = folder;
    }

    /// <summary>The store folder.</summary>
    public string Folder { get; }
}
