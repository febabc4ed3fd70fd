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
    /// Takes the store's exclusive lock at once or throws <see cref="StoreInUseException"/>. Disposing releases it.
    /// </summary>
    IDisposable Lock(string folder);
}
