using Journal;
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

    // Creating a store: built in a hidden sibling folder and renamed into place (rename(2) is atomic, and replaces an
    // empty target folder), so the target path holds either nothing or a whole store. A staging folder left by a killed
    // create is removed by the next create of the same store, if it holds only store files.

    /// <summary>Names the files a store folder holds; staging folders holding anything else are never removed.</summary>
    private static readonly HashSet<string> StoreFiles = new(StringComparer.Ordinal)
    {
        SnapshotStore.OriginFileName, SnapshotStore.JournalFileName, SnapshotStore.SuperblockFileName, LockFileName,
    };

    private const string StagingMarker = ".creating-";

    public string? WhyNotWritable(string folder) => FileBlockDevice.WhyFolderIsNotWritable(folder);

    public bool IsEmptyOrMissing(string folder) =>
        !Directory.Exists(folder) || !Directory.EnumerateFileSystemEntries(folder).Any();

    public long? AvailableBytes(string folder)
    {
        string? at = Path.GetFullPath(folder);
        while (at is not null && !Directory.Exists(at)) at = Path.GetDirectoryName(at);
        return at is null ? null : FileBlockDevice.GetFileSystemSpace(at)?.AvailableBytes;
    }

    public string BeginCreate(string folder)
    {
        string full = Path.GetFullPath(folder).TrimEnd(Path.DirectorySeparatorChar);
        string parent = Path.GetDirectoryName(full) ?? throw new JournalArgumentException($"{folder}: cannot create a store at the root");
        string name = Path.GetFileName(full);
        if (!Directory.Exists(parent)) throw new DeviceOpenException(full, DeviceOpenError.Missing, $"directory {parent} does not exist");
        string prefix = "." + name + StagingMarker;
        foreach (var stale in Directory.EnumerateDirectories(parent, prefix + "*"))
            if (Directory.EnumerateFileSystemEntries(stale).All(e => File.Exists(e) && StoreFiles.Contains(Path.GetFileName(e))))
                Directory.Delete(stale, recursive: true);
        string staging = Path.Combine(parent, prefix + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(staging);
        return staging;
    }

    public void CompleteCreate(string staging, string folder)
    {
        if (staging == folder) return;
        string full = Path.GetFullPath(folder);
        // rename(2) replaces an empty folder and fails on a non-empty one, so a folder filled meanwhile is never lost.
        if (Directory.Exists(full) && !Directory.EnumerateFileSystemEntries(full).Any()) Directory.Delete(full);
        try
        {
            Directory.Move(staging, full);
        }
        catch (IOException e)
        {
            throw new JournalException($"{full}: cannot put the new store in place: {e.Message.ReplaceLineEndings(" ")}", e);
        }
        FileBlockDevice.SyncDirectory(Path.GetDirectoryName(full)!); // the rename is durable once the parent folder is
    }

    public void AbandonCreate(string staging)
    {
        if (!Directory.Exists(staging)) return;
        if (Directory.EnumerateFileSystemEntries(staging).All(e => File.Exists(e) && StoreFiles.Contains(Path.GetFileName(e))))
            Directory.Delete(staging, recursive: true);
    }
}
