using Journal.Storage;

namespace Snapshot.Storage;

/// <summary>
/// Where the store gets its devices and its lock. The default uses files in the store folder; tests substitute
/// memory, crash-simulating or recording devices under the whole store.
/// </summary>
internal interface IDeviceProvider
{
    /// <summary>Creates a new device of <paramref name="sectors"/> zero-filled, written sectors (fails if it exists).</summary>
    BlockDevice Create(string path, long sectors);

    /// <summary>Opens an existing device.</summary>
    BlockDevice Open(string path);

    /// <summary>True when the device exists.</summary>
    bool Exists(string path);

    /// <summary>Removes the device (no error if it is absent).</summary>
    void Delete(string path);

    /// <summary>Names of the devices in <paramref name="folder"/> that end with <paramref name="suffix"/>.</summary>
    IEnumerable<string> List(string folder, string suffix);

    /// <summary>Creates the folder if needed.</summary>
    void EnsureFolder(string folder);

    /// <summary>
    /// Null when devices can be created and removed in <paramref name="folder"/>; else why not. Checked before a change
    /// is committed that ends in removing a file, so the change is refused instead of half done.
    /// </summary>
    string? WhyNotWritable(string folder);

    /// <summary>
    /// Beyond <see cref="WhyNotWritable"/> of its folder (checked apart): null when nothing else forbids removing the file
    /// <paramref name="path"/> (an append-only folder, an immutable or append-only file); else why. Checked before a
    /// change that ends in removing the file is committed. Memory devices: nothing does.
    /// </summary>
    string? WhyNotRemovable(string path) => null;

    /// <summary>True when <paramref name="folder"/> does not exist or holds nothing at all.</summary>
    bool IsEmptyOrMissing(string folder);

    /// <summary>Bytes free for new files where <paramref name="folder"/> is (or would be); null when unknown.</summary>
    long? AvailableBytes(string folder);

    /// <summary>
    /// Starts creating a store in <paramref name="folder"/> (missing or empty): returns the folder to build it in. The
    /// file provider builds in a new hidden sibling folder and renames it into place at the end, so a failed or killed
    /// create never leaves a half-made store at <paramref name="folder"/>; providers without that return
    /// <paramref name="folder"/> itself.
    /// </summary>
    string BeginCreate(string folder);

    /// <summary>Puts what <paramref name="staging"/> holds in place as <paramref name="folder"/> (no-op when they are the same).</summary>
    void CompleteCreate(string staging, string folder);

    /// <summary>Removes what a failed create made in <paramref name="staging"/>.</summary>
    void AbandonCreate(string staging);

    /// <summary>
    /// Takes the store's lock shared, for a read-only open: several readers, no writer. Throws
    /// <see cref="StoreInUseException"/> when a writer holds the store.
    /// </summary>
    IDisposable LockShared(string folder);

    /// <summary>
    /// Takes the store's exclusive lock at once or throws <see cref="StoreInUseException"/>. Disposing releases it.
    /// </summary>
    IDisposable Lock(string folder);
}
