using Journal;
using System.Runtime.InteropServices;
using Journal.Storage;
using Microsoft.Win32.SafeHandles;

namespace Snapshot.Storage;

/// <summary>Files in the store folder; the store's lock is an exclusive flock on the folder itself (see <see cref="Lock"/>).</summary>
/// <remarks>
/// <para><b>The lock rule.</b> One opener at a time holds a store, and it holds it by an exclusive, non-blocking
/// <c>flock</c> on a descriptor of the <i>store folder</i>, never on a file inside it. Why:</para>
/// <list type="number">
/// <item>A lock on a file protects the store only while that file is the one at its path. Earlier builds locked
/// <c>store.lock</c>, which openers created when missing: <c>rm store.lock</c> while a command ran let the next opener
/// create a fresh file, lock it, and run beside the holder, and a snapshot was silently corrupted (issue 9 item 2:
/// 54,325 of 65,536 chunks wrong). A check "is the locked file still the one at the path" after locking does not close
/// that: the file can be deleted the moment after the check, while the holder runs.</item>
/// <item>The folder is something the store cannot work without: every file of the store is reached by name through
/// it, it cannot be deleted while it holds them, and openers never create it once the store exists. So there is
/// nothing a user can delete to let a second opener in. A leftover <c>store.lock</c> of an older build is ignored
/// (older builds lock only that file: do not run one against a store a newer build has open).</item>
/// <item>The path is resolved twice (open, then after the flock, statx of the path against statx of the locked
/// descriptor: same device and inode). If the folder was renamed or replaced between the two, we would hold the lock
/// of a folder that is no longer the store at that path: let go and try again, at most <see cref="LockAttempts"/>
/// times. Later replacement (moving a store folder away while it is open) is not defended against.</item>
/// <item>The lock belongs to the open file description: a second opener in this same process conflicts too, a killed
/// holder's lock is released by the kernel at once (no stale lock to clear by hand), and <c>O_CLOEXEC</c> keeps
/// child processes from inheriting it.</item>
/// <item>A read-only file system is not a lock conflict (issue 9 item 7): <see cref="Lock"/> refuses it with
/// <see cref="StoreReadOnlyException"/> ("read-only file system"), never <see cref="StoreInUseException"/>; a read-only
/// open takes <see cref="LockShared"/> instead, which works there and keeps writers (through another mount of the same
/// file system) out while it reads.</item>
/// <item>A lock can be held for a moment by a copy of the descriptor in a process that does not own the store: a
/// multi-threaded host (a test runner, a server) that starts a child process while a store is open gives the child a
/// copy of every descriptor until the child's exec closes it (<c>O_CLOEXEC</c>), and the flock is released only when
/// the last copy closes. Measured: with one thread starting processes, 6.5% of immediate re-locks of a just released
/// store were refused. So a refused flock is tried again for up to <see cref="InUseGraceMilliseconds"/> before the
/// store is called in use: a real holder holds it far longer, a forked copy lets go within that.</item>
/// </list>
/// <para>Off Linux the lock is <c>store.lock</c> opened with <see cref="FileShare.None"/>, as before: on Windows an
/// open file cannot be deleted, so the hole above does not exist there. On NFS, Linux emulates flock with byte-range
/// locks, and an exclusive one needs a descriptor open for writing; a folder cannot be opened so, so there the lock is
/// refused with an error naming the folder ("cannot lock the store folder: ...", EBADF) rather than running unlocked
/// (from the flock(2) manual; there is no NFS mount in CI to test it).</para>
/// </remarks>
internal sealed partial class FileDeviceProvider : IDeviceProvider
{
    public static readonly FileDeviceProvider Instance = new();

    /// <summary>The lock file of the non-Linux fallback (and of builds before the folder lock).</summary>
    public const string LockFileName = "store.lock";

    /// <summary>How many times the folder lock is tried when the folder is replaced between open and flock.</summary>
    public const int LockAttempts = 3;

    /// <summary>How long a refused folder lock is tried again before the store is reported in use (rule 6).</summary>
    public const int InUseGraceMilliseconds = 100;

    public BlockDevice Create(string path, long sectors) => Eager(FileBlockDevice.Create(path, sectors));

    /// <remarks>
    /// A file with more than one name (a hard link, as <c>cp -al</c> makes) is refused: the folder lock guards one
    /// folder, so a second folder holding the same files could be opened as a store at the same time and both would
    /// write them.
    /// </remarks>
    public BlockDevice Open(string path)
    {
        var device = FileBlockDevice.Open(path);
        if (device.LinkCount is > 1 and var links)
        {
            device.Dispose();
            throw new DeviceOpenException(path, DeviceOpenError.InUse,
                $"the file has {links} names (hard links): another folder may use it as its own, so it is not opened; give it a single name (copy it instead of linking)");
        }
        return Eager(device);
    }

    /// <summary>
    /// The store's files start the write-back of every write of at least this size at once
    /// (<see cref="FileBlockDevice.EagerWriteBackBytes"/>): a copy run's COW write and its origin write (runs of up to
    /// 256 KiB) reach the disk while the next ones are made, instead of all at the next flush. Measured with
    /// <c>journal-bench cow --sequential --preallocate --defer-writes</c> (docs/benchmarks.md): the closing flush of 1 GiB
    /// went from 0.46-0.61 s to 0.12-0.17 s. Random 4 KiB writes are left to the page cache: starting theirs at once
    /// (a whole-file write-back every 1 MiB written) did not raise random first writes.
    /// </summary>
    public const long EagerWriteBackBytes = 256 << 10;

    private static FileBlockDevice Eager(FileBlockDevice d)
    {
        d.EagerWriteBackBytes = EagerWriteBackBytes;
        return d;
    }

    public bool Exists(string path) => File.Exists(path);

    public void Delete(string path)
    {
        if (File.Exists(path)) File.Delete(path);
    }

    public IEnumerable<string> List(string folder, string suffix) =>
        Directory.Exists(folder) ? Directory.EnumerateFiles(folder, "*" + suffix).ToList() : [];

    public void EnsureFolder(string folder) => Directory.CreateDirectory(folder);

    /// <summary>
    /// Takes the store's exclusive lock (the lock rule above). Throws <see cref="StoreInUseException"/> when another
    /// opener holds it, <see cref="StoreReadOnlyException"/> on a read-only file system.
    /// </summary>
    public IDisposable Lock(string folder)
    {
        if (!OperatingSystem.IsLinux()) return LockFile(folder);
        // Rule 5: say "read-only file system" rather than anything about the lock.
        if (IsReadOnlyFileSystem(folder)) throw new StoreReadOnlyException(folder);
        return LockFolder(folder, LOCK_EX);
    }

    /// <summary>
    /// Takes the store's lock shared, for a read-only open: other readers may hold it too, an exclusive holder (a
    /// writer) excludes it. Works on a read-only file system.
    /// </summary>
    public IDisposable LockShared(string folder) =>
        OperatingSystem.IsLinux() ? LockFolder(folder, LOCK_SH) : LockFile(folder);

    /// <summary>True when <paramref name="folder"/> is on a file system mounted read-only (access(2) says EROFS).</summary>
    public static bool IsReadOnlyFileSystem(string folder) =>
        OperatingSystem.IsLinux() && Access(folder, W_OK) != 0 && Marshal.GetLastPInvokeError() == EROFS;

    private static SafeFileHandle LockFolder(string folder, int operation)
    {
        for (int attempt = 1; ; attempt++)
        {
            int fd = OpenFd(folder, O_RDONLY | O_CLOEXEC);
            if (fd < 0) throw OpenError(folder, Marshal.GetLastPInvokeError());
            var handle = new SafeFileHandle(fd, ownsHandle: true);
            try
            {
                var locked = Identity(folder, handle);
                if (!locked.IsDirectory) throw new IOException($"{folder}: not a folder");
                int errno = FlockRetrying(fd, operation | LOCK_NB);
                // Rule 6: a copy of a holder's descriptor in a child that has not yet exec'd goes away within the grace.
                for (long waited = 0; errno == EWOULDBLOCK && waited < InUseGraceMilliseconds; waited += 2)
                {
                    Thread.Sleep(2);
                    errno = FlockRetrying(fd, operation | LOCK_NB);
                }
                if (errno == EWOULDBLOCK) throw new StoreInUseException(folder);
                if (errno != 0) throw new IOException($"{folder}: cannot lock the store folder: {Describe(errno)}");
                // Rule 3: the path must still name the folder we locked.
                if (PathIdentity(folder) is { } atPath && atPath.Device == locked.Device && atPath.Inode == locked.Inode)
                    return handle;
                if (attempt >= LockAttempts)
                    throw new IOException($"{folder}: the store folder was replaced while it was being locked ({LockAttempts} attempts)");
            }
            catch
            {
                handle.Dispose();
                throw;
            }
            handle.Dispose();
        }
    }

    private static FileStream LockFile(string folder)
    {
        string path = Path.Combine(folder, LockFileName);
        try
        {
            // FileShare.None takes a share-mode lock on Windows (and an exclusive flock on other Unix systems): a
            // second opener, in this process or another, fails at once.
            return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.None);
        }
        catch (IOException e) when (e is not FileNotFoundException and not DirectoryNotFoundException)
        {
            throw new StoreInUseException(folder, e);
        }
    }

    // Creating a store: built in a hidden sibling folder and renamed into place (rename(2) is atomic, and replaces an
    // empty target folder), so the target path holds either nothing or a whole store. A staging folder left by a killed
    // create is removed by the next create of the same store if it is empty, or if it holds the staging mark (a file
    // written first, naming the folder) and otherwise only store files: a folder a user made under such a name, even
    // one holding files with store names, is never removed.

    /// <summary>Names the files a store folder holds; staging folders holding anything else are never removed.</summary>
    private static readonly HashSet<string> StoreFiles = new(StringComparer.Ordinal)
    {
        SnapshotStore.OriginFileName, SnapshotStore.JournalFileName, SnapshotStore.SuperblockFileName, LockFileName,
    };

    private const string StagingMarker = ".creating-";

    /// <summary>The staging mark's file name, and the first line of its contents (the second is the folder's own path).</summary>
    private const string StagingMarkFile = ".snapshot-store-staging", StagingMarkText = "snapshot store being created";

    /// <summary>Whether <paramref name="staging"/> is a staging folder a create left: empty, or marked and holding store files only.</summary>
    private static bool IsOwnStaging(string staging)
    {
        var entries = Directory.EnumerateFileSystemEntries(staging).ToArray();
        if (entries.Length == 0) return true;
        string mark = Path.Combine(staging, StagingMarkFile);
        if (!File.Exists(mark) || new FileInfo(mark).LinkTarget is not null || new FileInfo(mark).Length > 4096) return false;
        // Written first and not flushed: after a power loss it may read short or empty, never as anything else.
        if (!MarkText(staging).StartsWith(File.ReadAllText(mark), StringComparison.Ordinal)) return false;
        return HoldsStoreFilesOnly(entries);
    }

    /// <summary>What the staging mark of <paramref name="staging"/> holds.</summary>
    private static string MarkText(string staging) => $"{StagingMarkText}\n{Path.GetFullPath(staging)}\n";

    /// <summary>Every entry a regular file with a store file's name, or the staging mark.</summary>
    private static bool HoldsStoreFilesOnly(IEnumerable<string> entries) =>
        entries.All(e => new FileInfo(e).LinkTarget is null && File.Exists(e)
            && (StoreFiles.Contains(Path.GetFileName(e)) || Path.GetFileName(e) == StagingMarkFile));

    public string? WhyNotWritable(string folder) => FileBlockDevice.WhyFolderIsNotWritable(folder);

    public string? WhyNotRemovable(string path) => FileBlockDevice.WhyFileIsNotRemovable(path);

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
        string parent = Path.GetDirectoryName(full) ?? throw new SnapshotArgumentException($"{folder}: cannot create a store at the root");
        string name = Path.GetFileName(full);
        if (!Directory.Exists(parent)) throw new DeviceOpenException(full, DeviceOpenError.Missing, $"directory {parent} does not exist");
        string prefix = "." + name + StagingMarker;
        foreach (var stale in Directory.EnumerateDirectories(parent, prefix + "*"))
            if (new DirectoryInfo(stale).LinkTarget is null && IsOwnStaging(stale))
                Directory.Delete(stale, recursive: true);
        string staging = Path.Combine(parent, prefix + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(staging);
        File.WriteAllText(Path.Combine(staging, StagingMarkFile), MarkText(staging));
        return staging;
    }

    public void CompleteCreate(string staging, string folder)
    {
        if (staging == folder) return;
        string full = Path.GetFullPath(folder);
        // rename(2) replaces an empty folder and fails on a non-empty one, so a folder filled meanwhile is never lost.
        try
        {
            if (Directory.Exists(full) && !Directory.EnumerateFileSystemEntries(full).Any()) Directory.Delete(full);
            Directory.Move(staging, full);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new JournalException($"{full}: cannot put the new store in place: {e.Message.ReplaceLineEndings(" ")}", e);
        }
        FileBlockDevice.SyncDirectory(Path.GetDirectoryName(full)!); // the rename is durable once the parent folder is
        // The mark goes once the store is in place (a crash before this leaves it in the store's folder, where nothing
        // reads it; removed before the rename, a failed rename would leave a staging folder no later create removes).
        File.Delete(Path.Combine(full, StagingMarkFile));
    }

    public void AbandonCreate(string staging)
    {
        if (!Directory.Exists(staging)) return;
        // This process made the folder: it goes if it holds nothing but what the create put there.
        if (HoldsStoreFilesOnly(Directory.EnumerateFileSystemEntries(staging))) Directory.Delete(staging, recursive: true);
    }
    private static int FlockRetrying(int fd, int operation)
    {
        while (true)
        {
            if (Flock(fd, operation) == 0) return 0;
            int errno = Marshal.GetLastPInvokeError();
            if (errno != EINTR) return errno;
        }
    }

    private static Exception OpenError(string folder, int errno) => errno switch
    {
        ENOENT or ENOTDIR => new DirectoryNotFoundException($"{folder}: no such folder"),
        EACCES => new UnauthorizedAccessException($"{folder}: permission denied"),
        _ => new IOException($"{folder}: cannot open the store folder: {Describe(errno)}"),
    };

    private static string Describe(int errno) => $"{Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})";

    private readonly record struct FileIdentity(ulong Device, ulong Inode, bool IsDirectory);

    /// <summary>Device and inode of the open descriptor (statx with AT_EMPTY_PATH).</summary>
    private static FileIdentity Identity(string folder, SafeFileHandle handle)
    {
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            return StatX((int)handle.DangerousGetHandle(), "", AT_EMPTY_PATH)
                ?? throw new IOException($"{folder}: cannot stat the locked folder: {Describe(Marshal.GetLastPInvokeError())}");
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    /// <summary>Device and inode of whatever the path names now (following symlinks, as open did), or null if nothing.</summary>
    private static FileIdentity? PathIdentity(string folder) => StatX(AT_FDCWD, folder, 0);

    // struct statx is the same on every Linux architecture (unlike struct stat): 256 bytes; stx_mode is the u16 at
    // offset 28, stx_ino the u64 at 32, stx_dev_major and stx_dev_minor the u32s at 136 and 140.
    private static unsafe FileIdentity? StatX(int dirFd, string path, int flags)
    {
        byte* buffer = stackalloc byte[256];
        new Span<byte>(buffer, 256).Clear();
        if (Statx(dirFd, path, flags, STATX_TYPE | STATX_INO, buffer) != 0) return null;
        ushort mode = *(ushort*)(buffer + 28);
        ulong inode = *(ulong*)(buffer + 32);
        ulong device = ((ulong)*(uint*)(buffer + 136) << 32) | *(uint*)(buffer + 140);
        return new FileIdentity(device, inode, (mode & S_IFMT) == S_IFDIR);
    }

    private const int O_RDONLY = 0;
    private const int O_CLOEXEC = 0x80000;
    private const int LOCK_SH = 1;
    private const int LOCK_EX = 2;
    private const int LOCK_NB = 4;
    private const int W_OK = 2;
    private const int AT_FDCWD = -100;
    private const int AT_EMPTY_PATH = 0x1000;
    private const uint STATX_TYPE = 0x1;
    private const uint STATX_INO = 0x100;
    private const int S_IFMT = 0xF000;
    private const int S_IFDIR = 0x4000;
    private const int ENOENT = 2;
    private const int EINTR = 4;
    private const int EWOULDBLOCK = 11;
    private const int EACCES = 13;
    private const int ENOTDIR = 20;
    private const int EROFS = 30;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int OpenFd(string path, int flags);

    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    private static partial int Flock(int fd, int operation);

    [LibraryImport("libc", EntryPoint = "access", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Access(string path, int mode);

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int dirFd, string path, int flags, uint mask, byte* buffer);
}
