using Journal.Format;
using Journal.Recovery;
using Journal.Storage;
using Journal.Tools;
using Snapshot;
using Snapshot.Recovery;

namespace JReplay;

/// <summary>
/// The log a command works on: the shared log of a snapshot store folder (<c>journal.log</c>), or a bare log file
/// (the whole file is the log). Opening checks the path before anything is opened: missing, unreadable, a folder that
/// is not a store, or anything but a regular file (a FIFO, a device, a directory where a file belongs) is exit 66 with
/// one line; a file too small to be a log is exit 2 naming it. The log's content is judged by recovery.
/// </summary>
internal sealed class LogInput : IDisposable
{
    private LogInput(string path, string logPath, bool isStore, FileBlockDevice device)
    {
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

    /// <summary>The log file's device (read-only).</summary>
    public FileBlockDevice Device { get; }

    /// <summary>The log: the whole file.</summary>
    public LogRegion Region { get; }

    /// <summary>Opens <paramref name="path"/> read-only.</summary>
    public static LogInput Open(string path)
    {
        string logPath = CheckPath(path, out bool isStore);
        // The size of the file the name leads to (a symbolic link's target), not of the name itself.
        long length;
        using (var h = File.OpenHandle(logPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite)) length = RandomAccess.GetLength(h);
        long minimum = (long)LogFormat.MinLogBlocks * LogFormat.BlockSize;
        if (length < minimum)
            throw new ToolException(ExitCodes.Failure,
                $"{logPath}: {length} bytes is too small to be a journal log (a log has at least {LogFormat.MinLogBlocks} blocks, {minimum} bytes)");
        var device = FileBlockDevice.Open(logPath, readOnly: true);
        return new LogInput(path, logPath, isStore, device);
    }

    /// <summary>
    /// Checks <paramref name="path"/> without opening anything that could block: for a store folder, every file the
    /// store opens must be a regular file (the COW files are judged by the store's open). Returns the log file.
    /// </summary>
    public static string CheckPath(string path, out bool isStore)
    {
        InputPaths.RequireExisting(path);
        isStore = Directory.Exists(path);
        string logPath = path;
        if (isStore)
        {
            string sb = System.IO.Path.Combine(path, SnapshotStore.SuperblockFileName);
            if (!File.Exists(sb) && !Directory.Exists(sb))
                throw new InputException($"{path}: is a directory but not a snapshot store (no {SnapshotStore.SuperblockFileName})");
            logPath = System.IO.Path.Combine(path, SnapshotStore.JournalFileName);
            if (!File.Exists(logPath) && !Directory.Exists(logPath)) throw new InputException($"{logPath}: not found: the store has no journal");
            // The COW files are the store's to judge: one that is not a regular file makes its snapshot unavailable (as
            // an open by snapctl does), without being opened, and the rest of the store is replayed.
            foreach (var f in new[] { sb, logPath, System.IO.Path.Combine(path, SnapshotStore.OriginFileName) })
                InputPaths.RequireRegular(f);
        }
        InputPaths.RequireRegular(logPath);
        InputPaths.RequireFile(logPath);
        return logPath;
    }

    /// <summary>
    /// Scans the log (<see cref="JournalRecovery.Scan"/>) and validates its items with the store's decoders: as the
    /// store does for a store folder (only store items, the geometry of its <c>store.sb</c>), or only the items of
    /// store types for a bare log.
    /// </summary>
    public RecoveredLog Scan()
    {
        var log = JournalRecovery.Scan(Region);
        if (IsStore) StoreLogItems.ValidateForStore(log, Path);
        else StoreLogItems.Validate(log);
        return log;
    }

    /// <summary>Snapshot names by id from the store's superblock, to label items (null for a bare log or an unreadable superblock).</summary>
    public IReadOnlyDictionary<ulong, string>? SnapshotNames() => IsStore ? StoreLogItems.SnapshotNames(Path) : null;

    /// <inheritdoc/>
    public void Dispose() => Device.Dispose();
}
