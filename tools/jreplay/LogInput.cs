using Journal.Format;
using Journal.Storage;
using Journal.Tools;
using Snapshot;
using Snapshot.Format;

namespace JReplay;

/// <summary>
/// The log a command works on: the shared log of a snapshot store folder (<c>journal.log</c>), or a bare log file
/// (the whole file is the log). Opening checks the path (exit 66 when it is missing, unreadable, or a folder that is
/// not a store) and the size (exit 2 when the file cannot be a log); the log's content is judged by recovery.
/// </summary>
internal sealed class LogInput : IDisposable
{
    private LogInput(string path, string logPath, bool isStore, FileBlockDevice device, IReadOnlyDictionary<ulong, string>? snapshotNames)
    {
        SnapshotNames = snapshotNames;
        Path = path;
        LogPath = logPath;
        IsStore = isStore;
        Device = device;
        Region = LogRegion.WholeDevice(device);
    }

    /// <summary>The path as given.</summary>
    public string Path { get; }

    /// <summary>The log file.</summary>
    public string LogPath { get; }

    /// <summary>True when <see cref="Path"/> is a store folder.</summary>
    public bool IsStore { get; }

    /// <summary>The log file's device (read-only unless opened writable).</summary>
    public FileBlockDevice Device { get; }

    /// <summary>Snapshot names by id, from the store's superblock (null for a bare log or an unreadable superblock).</summary>
    public IReadOnlyDictionary<ulong, string>? SnapshotNames { get; }

    /// <summary>The log: the whole file.</summary>
    public LogRegion Region { get; }

    /// <summary>Opens <paramref name="path"/>; read-only unless <paramref name="writable"/>.</summary>
    public static LogInput Open(string path, bool writable)
    {
        InputPaths.RequireExisting(path);
        bool isStore = Directory.Exists(path);
        string logPath = path;
        if (isStore)
        {
            if (!File.Exists(System.IO.Path.Combine(path, SnapshotStore.SuperblockFileName)))
                throw new InputException($"{path}: is a directory but not a snapshot store (no {SnapshotStore.SuperblockFileName})");
            logPath = System.IO.Path.Combine(path, SnapshotStore.JournalFileName);
            if (!File.Exists(logPath)) throw new InputException($"{logPath}: not found: the store has no journal");
        }
        InputPaths.RequireFile(logPath);
        long length = new FileInfo(logPath).Length;
        long minimum = (long)LogFormat.MinLogBlocks * LogFormat.BlockSize;
        if (length < minimum)
            throw new ToolException(ExitCodes.Failure,
                $"{logPath}: {length} bytes is too small to be a journal log (a log has at least {LogFormat.MinLogBlocks} blocks, {minimum} bytes)");
        var device = FileBlockDevice.Open(logPath, readOnly: !writable);
        return new LogInput(path, logPath, isStore, device, isStore ? ReadSnapshotNames(path) : null);
    }

    /// <summary>
    /// Snapshot names by id from the store superblock, only to label items in print; the superblock is the store's
    /// business, so an unreadable one just leaves items labelled by id.
    /// </summary>
    private static Dictionary<ulong, string>? ReadSnapshotNames(string folder)
    {
        try
        {
            using var sb = FileBlockDevice.Open(System.IO.Path.Combine(folder, SnapshotStore.SuperblockFileName), readOnly: true);
            return Superblock.Read(sb).Snapshots.ToDictionary(r => r.Id, r => r.Name);
        }
        catch (Exception e) when (e is Journal.JournalException or IOException)
        {
            return null;
        }
    }

    /// <inheritdoc/>
    public void Dispose() => Device.Dispose();
}
