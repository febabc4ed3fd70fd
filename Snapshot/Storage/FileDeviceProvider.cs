using Journal.Storage;

namespace Snapshot.Storage;

/// <summary>Files in the store folder; the lock is <c>store.lock</c> held open with an exclusive lock.</summary>
internal sealed class FileDeviceProvider : IDeviceProvider
{
    public static readonly FileDeviceProvider Instance = new();

    public const string LockFileName = "store.lock";

    public BlockDevice Create(string path, long sectors) => FileBlockDevice.Create(path, sectors);

    public BlockDevice Open(string path) => FileBlockDevice.Open(path);

    public bool Exists(string path) => File.Exists(path);

    public void Delete(string path)
    {
        if (File.Exists(path)) File.Delete(path);
    }

    public IEnumerable<string> List(string folder, string suffix) =>
        Directory.Exists(folder) ? Directory.EnumerateFiles(folder, "*" + suffix).ToList() : [];

    public void EnsureFolder(string folder) => Directory.CreateDirectory(folder);

    public IDisposable Lock(string folder)
    {
        string path = Path.Combine(folder, LockFileName);
        try
        {
            // FileShare.None takes an exclusive advisory lock (flock) on Unix and a share-mode lock on Windows:
            // a second opener, in this process or another, fails at once.
            return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.None);
        }
        catch (IOException e) when (e is not FileNotFoundException and not DirectoryNotFoundException)
        {
            throw new StoreInUseException(folder, e);
        }
    }
}
