using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;
using Microsoft.Win32.SafeHandles;

namespace Journal.Storage;

/// <summary>
/// A block device on a regular file, through <see cref="RandomAccess"/> on a <see cref="SafeFileHandle"/>.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>The file is always fully written: <see cref="Create"/> and <see cref="BlockDevice.Extend"/> write zeros in
/// <see cref="ZeroFillStep"/> pieces instead of leaving holes or merely reserving space, because a later
/// fdatasync after overwriting written blocks is much cheaper than after filling fresh ones (the file system has no
/// allocation metadata left to flush).</item>
/// <item><see cref="BlockDevice.Flush"/> is fdatasync on Linux (<see cref="RandomAccess.FlushToDisk"/> elsewhere):
/// the data and the file size are durable when it returns. Once a flush or write-back has failed, every later one
/// fails too, naming the first failure (Linux reports a write-back error once, so a later fdatasync could succeed over
/// data that never reached the disk); only a new open starts clean.</item>
/// <item>With <c>lockExclusive</c> the file is opened with <see cref="FileShare.None"/> and, on Linux, an exclusive
/// non-blocking flock; a second opener (another process, or another handle in this one) is refused at once with
/// <see cref="DeviceOpenError.InUse"/>. The lock goes with the handle when the device is disposed.</item>
/// <item>I/O errors become <see cref="BlockDeviceException"/> naming the file and the sector; no space left becomes
/// <see cref="DeviceFullException"/>.</item>
/// </list>
/// <para><b>Shared device flushes</b> (<see cref="CanFlushThrough"/>, <see cref="WriteBack"/>): fdatasync of any file
/// on an ext2/3/4 file system ends with a flush of the storage device's volatile cache (or a journal commit that
/// issues one), which makes every write the device completed before it durable, whichever file it belongs to. So the
/// data of several files can be made durable by sending each file's dirty pages to the device (sync_file_range,
/// which waits for them but flushes neither the cache nor the file's metadata) and then one fdatasync of any of them.
/// That is sound only for writes that change no metadata: overwrites of blocks already allocated and written, with
/// the allocation durable. A device therefore shares flushes only when all of these hold: it is on ext2/3/4 mounted
/// without <c>data=journal</c> and the file has no data-journaling flag (journaled data reaches its place only after a
/// journal commit), on Linux 5.2 or later; its own fdatasync found every block written (FIEMAP: a block never written,
/// reserved but unwritten, or inline in the inode would be allocated or converted by the write); and it has not grown
/// since its last own fdatasync completed (growth is new blocks and a new size). The carrier must qualify as well (its
/// fdatasync then has no journal commit to wait for and flushes the device itself).
/// Anything else, and every other file system, is flushed by its own fdatasync.</para>
/// Locking: <c>_extendLock</c> serialises growth (who: <see cref="BlockDevice.Extend"/> only); reads and writes take
/// no lock (disjoint ranges are the caller's business; the handle is safe for concurrent positional I/O).
/// </remarks>
public sealed class FileBlockDevice : BlockDevice
{
    /// <summary>Bytes written per step when zero-filling a new file or a growth.</summary>
    public const int ZeroFillStep = 1 << 20;

    private static readonly byte[] s_zeros = new byte[ZeroFillStep];

    private readonly SafeFileHandle _handle;
    private readonly bool _readOnly;
    private readonly object _extendLock = new();
    private long _sectors;

    // Shared flushes (see the remarks). _flushDomain: the file system's device number when a flush of any file on it
    // flushes the device for all, else 0. _growth: bumped by each growth before its size is published (1 at open:
    // nothing is known before the first own fdatasync). _flushedGrowth: the _growth an own fdatasync read before it
    // began, once it succeeded (only ever raised); the file may ride only when the two are equal, so a growth is never
    // taken as durable while the fdatasync that covers it is still running. _fullyWritten: FIEMAP after an fdatasync
    // found every block written; growth writes its zeros, so it stays true. _journalsData: the file's data-journaling
    // flag, read again at every own fdatasync.
    private readonly ulong _flushDomain;
    private long _growth = 1, _flushedGrowth;
    private volatile bool _fullyWritten, _journalsData;

    private FileBlockDevice(SafeFileHandle handle, string path, long sectors, bool readOnly, bool locked)
    {
        _handle = handle;
        Path = path;
        _sectors = sectors;
        _readOnly = readOnly;
        IsLockedExclusive = locked;
        if (!readOnly) _flushDomain = FlushDomainOf(handle);
    }

    /// <summary>The file system's device number when an fdatasync there flushes the device for every file on it, else 0.</summary>
    /// <remarks>
    /// Needs Linux 5.2 or later (before it, sync_file_range with WAIT_AFTER could skip a page redirtied while under
    /// writeback), a file system of type ext2/3/4 in the mount table, and its own option list
    /// (<c>/proc/fs/ext4/&lt;device&gt;/options</c>, which shows a data mode that is the superblock's default) without
    /// <c>data=journal</c>; the file's own data-journaling flag is checked at every own flush.
    /// </remarks>
    private static ulong FlushDomainOf(SafeFileHandle handle)
    {
        if (s_kernel is not { } kernel || kernel < new Version(5, 2)) return 0;
        if (NativeFile.DeviceOf(handle) is not { } device || device == 0 || NativeFile.JournalsData(handle)) return 0;
        if (NativeFile.MountTypeOf(device) is not ("ext4" or "ext3" or "ext2")) return 0;
        if (NativeFile.Ext4Options(device) is not { } options || options.Contains("data=journal")) return 0;
        return device;
    }

    private static readonly Version? s_kernel = NativeFile.KernelVersion();

    /// <summary>
    /// True when a flush of <paramref name="carrier"/> makes durable every write of this device that a
    /// <see cref="WriteBack"/> has completed (see the remarks on shared device flushes): both files are on the same
    /// ext2/3/4 file system without data journaling, and this one is fully written, with no growth since its last own
    /// flush. False for a read-only device and off Linux. It can turn false at any time (growth); a caller checks it
    /// after the writes it wants covered have returned.
    /// </summary>
    public override bool CanFlushThrough(BlockDevice carrier)
    {
        ArgumentNullException.ThrowIfNull(carrier);
        return carrier is FileBlockDevice file && _flushDomain != 0 && file._flushDomain == _flushDomain && _fullyWritten && !_journalsData
            && Interlocked.Read(ref _flushedGrowth) == Interlocked.Read(ref _growth)
            && Volatile.Read(ref _lostWrites) is null && Volatile.Read(ref file._lostWrites) is null;
    }

    /// <summary>
    /// Starts sending this device's written data to the storage device without waiting for it (sync_file_range WRITE):
    /// a later <see cref="WriteBack"/> then waits for I/O already under way, so several devices started one after the
    /// other write in parallel. Off Linux and on a read-only device it does nothing.
    /// </summary>
    /// <exception cref="BlockDeviceException">The system refused (an I/O error already recorded on the file).</exception>
    public override void StartWriteBack()
    {
        ThrowIfDisposed();
        if (_readOnly || !NativeFile.IsLinux) return;
        ThrowIfWritesLost();
        CheckWriteBack(NativeFile.WriteBack(_handle, wait: false));
    }

    /// <summary>
    /// Sends every write that returned before this call to the storage device and waits for it (sync_file_range),
    /// without flushing the device's cache or the file's metadata: the writes are durable only after a later flush of
    /// this device, or of a device this one <see cref="CanFlushThrough"/>. Off Linux it is a full flush. Blocks the
    /// calling thread.
    /// </summary>
    /// <exception cref="BlockDeviceException">The write-back failed (an I/O error on any of the file's pages).</exception>
    public override void WriteBack()
    {
        ThrowIfDisposed();
        if (_readOnly) return;
        if (!NativeFile.IsLinux)
        {
            Flush();
            return;
        }
        lock (_syncLock)
        {
            ThrowIfWritesLost();
            int failure = TakeTestFailure();
            CheckWriteBack(failure != 0 ? failure : NativeFile.WriteBack(_handle, wait: true));
        }
    }

    // One waiting fdatasync or write-back of this device at a time (a leaf lock, held across the system call; nothing is
    // taken under it). The kernel reports a write-back error to one of the calls in progress and the others succeed,
    // so a call that began before another failed could return success over the lost pages; one at a time, each call's
    // error is recorded (_lostWrites) before the next begins, and the next is refused. Two flushes of one file wait
    // for each other; the second finds little left to write.
    private readonly object _syncLock = new();

    private void CheckWriteBack(int errno)
    {
        if (errno != 0) throw WriteBackFailed("write-back (sync_file_range)", errno);
    }

    // The first failed fdatasync or write-back of this device, kept for good. Linux reports a write-back error once per
    // open file: the call that sees it fails, and a later one succeeds although the pages that failed never reached the
    // device (they are marked clean). So once one has failed, every later flush and write-back fails too, naming the
    // first failure; only reopening (and recovery) can tell what is on the device. Written once (compare-exchange).
    private LostWrites? _lostWrites;

    private sealed record LostWrites(BlockDeviceException Error, string Problem);

    /// <summary>
    /// Tests only: when not 0, the next fdatasync or write-back of this device fails with this errno instead of calling
    /// the kernel (which a test cannot make fail on demand), then it goes back to 0.
    /// </summary>
    internal int TestFailNextSync;

    /// <summary>Throws if an earlier flush or write-back of this device failed (see <c>_lostWrites</c>).</summary>
    private void ThrowIfWritesLost()
    {
        if (Volatile.Read(ref _lostWrites) is not { } lost) return;
        // An I/O error whatever the first failure was: freeing space does not bring the lost pages back (a
        // DeviceFullException would read as "free space and retry" to a caller).
        throw new BlockDeviceException(Path, 0, $"refused: an earlier flush failed, so written data may be lost ({lost.Problem})", lost.Error);
    }

    /// <summary>Records a failed fdatasync or write-back as this device's lost writes and returns the error to throw.</summary>
    private BlockDeviceException WriteBackFailed(string what, int errno)
    {
        string problem = errno == NativeFile.ENOSPC
            ? $"no space left on device: {what} failed: {NativeFile.Describe(errno)}"
            : $"{what} failed: {NativeFile.Describe(errno)}";
        return Lost(errno == NativeFile.ENOSPC ? new DeviceFullException(Path, 0, problem) : new BlockDeviceException(Path, 0, problem), problem);
    }

    /// <summary>Keeps <paramref name="e"/> as this device's lost writes unless an earlier failure is kept; returns it.</summary>
    private BlockDeviceException Lost(BlockDeviceException e, string problem)
    {
        Interlocked.CompareExchange(ref _lostWrites, new LostWrites(e, problem), null);
        return e;
    }

    /// <summary>The errno a test asked the next fdatasync or write-back to fail with (0: none), cleared as it is taken.</summary>
    private int TakeTestFailure() => TestFailNextSync == 0 ? 0 : Interlocked.Exchange(ref TestFailNextSync, 0);

    /// <summary>The full path of the file.</summary>
    public string Path { get; }

    /// <summary>True when this device holds the file's exclusive lock.</summary>
    public bool IsLockedExclusive { get; }

    /// <inheritdoc/>
    public override string Name => Path;

    /// <inheritdoc/>
    public override long SectorCount => Volatile.Read(ref _sectors);

    /// <inheritdoc/>
    public override bool IsReadOnly => _readOnly;

    /// <summary>
    /// Creates a new device file of <paramref name="sectors"/> sectors, fully written with zeros, and makes it
    /// durable (the data, the size, and the name in its directory). Refuses a path that already exists.
    /// On failure the partial file is removed.
    /// </summary>
    /// <exception cref="DeviceOpenException">The path exists, is a directory, or its directory is missing or not writable.</exception>
    /// <exception cref="DeviceFullException">The file system ran out of space while zero-filling.</exception>
    /// <exception cref="BlockDeviceException">Another I/O error while zero-filling or flushing.</exception>
    public static FileBlockDevice Create(string path, long sectors, bool lockExclusive = false, FileOptions options = FileOptions.None)
    {
        ArgumentNullException.ThrowIfNull(path);
        string full = System.IO.Path.GetFullPath(path);
        if (sectors < 0)
            throw new JournalArgumentException($"{full}: device size {sectors} sectors is negative");
        if (Directory.Exists(full))
            throw new DeviceOpenException(full, DeviceOpenError.IsDirectory, "is a directory, not a device file");
        if (File.Exists(full))
            throw new DeviceOpenException(full, DeviceOpenError.AlreadyExists, "already exists; refusing to overwrite it");
        string directory = System.IO.Path.GetDirectoryName(full) ?? full;
        if (!Directory.Exists(directory))
            throw new DeviceOpenException(full, DeviceOpenError.Missing, $"directory {directory} does not exist");

        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(full, FileMode.CreateNew, FileAccess.ReadWrite,
                lockExclusive ? FileShare.None : FileShare.ReadWrite, options);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw File.Exists(full)
                ? new DeviceOpenException(full, DeviceOpenError.AlreadyExists, "already exists; refusing to overwrite it", e)
                : Translate(full, e);
        }

        FileBlockDevice? device = null;
        try
        {
            if (lockExclusive) TakeLock(full, handle);
            device = new FileBlockDevice(handle, full, 0, readOnly: false, locked: lockExclusive);
            device.ZeroFill(0, sectors);
            device.SyncData();
            int errno = NativeFile.SyncDirectory(directory);
            if (errno != 0)
                throw new BlockDeviceException(full, 0, $"fsync of directory {directory} failed: {NativeFile.Describe(errno)}");
            return device;
        }
        catch
        {
            if (device is not null) device.Dispose(); else handle.Dispose();
            try { File.Delete(full); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>
    /// Opens an existing device file. Its length must be a whole number of 512-byte sectors.
    /// </summary>
    /// <param name="path">The file.</param>
    /// <param name="readOnly">Open for reading only; writes, flushes of data and growth are refused.</param>
    /// <param name="lockExclusive">Take the file's exclusive lock; fail at once with <see cref="DeviceOpenError.InUse"/> if it is held.</param>
    /// <param name="options">Extra <see cref="FileOptions"/> for the handle (e.g. <see cref="FileOptions.WriteThrough"/>).</param>
    /// <exception cref="DeviceOpenException">Missing, a directory, bad length, in use, or access denied.</exception>
    public static FileBlockDevice Open(string path, bool readOnly = false, bool lockExclusive = false, FileOptions options = FileOptions.None)
    {
        ArgumentNullException.ThrowIfNull(path);
        string full = System.IO.Path.GetFullPath(path);
        if (Directory.Exists(full))
            throw new DeviceOpenException(full, DeviceOpenError.IsDirectory, "is a directory, not a device file");
        if (!File.Exists(full))
            throw new DeviceOpenException(full, DeviceOpenError.Missing, "no such file");
        RequireRegularFile(full);

        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(full, FileMode.Open, readOnly ? FileAccess.Read : FileAccess.ReadWrite,
                lockExclusive ? FileShare.None : FileShare.ReadWrite, options);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Translate(full, e);
        }

        try
        {
            if (lockExclusive) TakeLock(full, handle);
            long length = RandomAccess.GetLength(handle);
            if ((length & (SectorSize - 1)) != 0)
                throw new DeviceOpenException(full, DeviceOpenError.BadLength,
                    $"length {length} bytes is not a multiple of the {SectorSize}-byte sector size");
            return new FileBlockDevice(handle, full, length >> SectorShift, readOnly, lockExclusive);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Refuses anything but a regular file before it is opened: opening a FIFO for reading blocks until a writer comes,
    /// and a FIFO, socket or device has no length to check.
    /// </summary>
    private static void RequireRegularFile(string path)
    {
        var id = NativeFile.Identify(path);
        if (id.Errno == 0 && !id.IsRegular)
            throw new DeviceOpenException(path, DeviceOpenError.NotRegularFile, $"is {NativeFile.KindOf(id.Mode)}, not a regular file");
    }

    /// <inheritdoc/>
    /// <remarks>fallocate with FALLOC_FL_KEEP_SIZE: the blocks are the file's, its size and contents do not change.</remarks>
    /// <remarks>
    /// On a file system that cannot reserve (no fallocate), the free space is checked instead: if it is short this
    /// throws all the same, and otherwise returns false (enough space now, but nothing holds it).
    /// </remarks>
    public override bool Reserve(long sectors)
    {
        if (_readOnly) return false;
        long bytes = sectors << SectorShift;
        int errno = NativeFile.Reserve(_handle, bytes);
        if (errno == 0) return true;
        if (errno == NativeFile.ENOSPC)
            throw new DeviceFullException(Path, 0, $"no space left on device: cannot reserve {sectors} sectors ({bytes} bytes)");
        if (errno != NativeFile.EOPNOTSUPP)
            throw new BlockDeviceException(Path, 0, $"reserving {sectors} sectors failed: {NativeFile.Describe(errno)}");
        long missing = bytes - Length;
        if (missing > 0 && GetFileSystemSpace(Path) is { } space && space.AvailableBytes < missing)
            throw new DeviceFullException(Path, 0, $"no space left on device: {sectors} sectors ({bytes} bytes) need {missing} more bytes, the file system has {space.AvailableBytes}");
        return false;
    }

    /// <summary>How many names (hard links) the file has now; null when the system does not say.</summary>
    public long? LinkCount => NativeFile.LinkCount(_handle);

    /// <inheritdoc/>
    /// <remarks>fallocate with FALLOC_FL_PUNCH_HOLE over the whole file, then a same-size truncate for the blocks reserved past its end.</remarks>
    public override bool DiscardAll()
    {
        if (_readOnly) return false;
        return NativeFile.DiscardAll(_handle, Length) == 0;
    }

    /// <summary>
    /// The (device, inode) pair naming the file <paramref name="path"/> refers to (symbolic links followed), or null
    /// when it does not exist or the system does not say: two paths with the same identity are the same file.
    /// </summary>
    public static (ulong Device, ulong Inode)? GetFileIdentity(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!NativeFile.IsLinux) return null;
        var id = NativeFile.Identify(path);
        return id.Errno == 0 ? (id.Device, id.Inode) : null;
    }

    /// <summary>
    /// Null when files can be created and removed in <paramref name="directory"/>; else why not (permission denied,
    /// read-only file system, operation not permitted), in the system's words.
    /// </summary>
    public static string? WhyFolderIsNotWritable(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        int errno = NativeFile.CanModifyDirectory(directory);
        return errno == 0 ? null : NativeFile.Describe(errno);
    }

    /// <summary>
    /// Beyond <see cref="WhyFolderIsNotWritable"/> (checked apart): null when nothing else forbids removing the file
    /// <paramref name="path"/> (its folder is not append-only, the file neither immutable nor append-only); else why.
    /// </summary>
    public static string? WhyFileIsNotRemovable(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return NativeFile.WhyNotRemovable(path);
    }

    /// <summary>Makes the entries of <paramref name="directory"/> durable (fsync of the folder: new and renamed names).</summary>
    /// <exception cref="BlockDeviceException">The fsync failed.</exception>
    public static void SyncDirectory(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        int errno = NativeFile.SyncDirectory(directory);
        if (errno != 0) throw new BlockDeviceException(directory, 0, $"fsync of the directory failed: {NativeFile.Describe(errno)}");
    }

    /// <summary>
    /// Free space and mount state of the file system holding <paramref name="path"/> (a file or a folder), or null
    /// when the system does not say (off Linux).
    /// </summary>
    public static FileSystemSpace? GetFileSystemSpace(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return NativeFile.FileSystemSpace(path) is { } s ? new FileSystemSpace(s.AvailableBytes, s.ReadOnly) : null;
    }

    private static void TakeLock(string path, SafeFileHandle handle)
    {
        int errno = NativeFile.LockExclusive(handle);
        if (errno == NativeFile.EWOULDBLOCK)
            throw new DeviceOpenException(path, DeviceOpenError.InUse, "in use: another process or handle holds its exclusive lock");
        if (errno != 0)
            throw new DeviceOpenException(path, DeviceOpenError.Other, $"cannot lock: {NativeFile.Describe(errno)}");
    }

    private static DeviceOpenException Translate(string path, Exception e) => e switch
    {
        FileNotFoundException or DirectoryNotFoundException => new(path, DeviceOpenError.Missing, "no such file", e),
        UnauthorizedAccessException => new(path, DeviceOpenError.AccessDenied, "permission denied", e),
        IOException io when IsSharingViolation(io) =>
            new(path, DeviceOpenError.InUse, "in use: another process or handle holds its exclusive lock", e),
        _ => new(path, DeviceOpenError.Other, OneLine(e.Message), e),
    };

    // EWOULDBLOCK from flock on Linux; ERROR_SHARING_VIOLATION / ERROR_LOCK_VIOLATION on Windows.
    private static bool IsSharingViolation(IOException e) =>
        e.HResult == NativeFile.EWOULDBLOCK || e.HResult == unchecked((int)0x80070020) || e.HResult == unchecked((int)0x80070021);

    private static bool IsOutOfSpace(IOException e) =>
        e.HResult == NativeFile.ENOSPC || e.HResult == unchecked((int)0x80070070) || e.HResult == unchecked((int)0x80070027);

    private static string OneLine(string s) => s.ReplaceLineEndings(" ");

    private BlockDeviceException IoError(string op, long sector, int sectors, IOException e) =>
        IsOutOfSpace(e)
            ? new DeviceFullException(Path, sector, $"no space left on device: {op} of {sectors} sectors at sector {sector} failed", e)
            : new BlockDeviceException(Path, sector, $"{op} of {sectors} sectors at sector {sector} failed: {OneLine(e.Message)}", e);

    private BlockDeviceException ShortRead(long sector, int sectors, long at) =>
        new(Path, sector, $"read of {sectors} sectors at sector {sector} hit the end of the file at byte {at} (file truncated underneath the device?)");

    /// <inheritdoc/>
    protected override void ReadCore(long sector, Span<byte> buffer)
    {
        long offset = sector << SectorShift;
        int done = 0;
        try
        {
            while (done < buffer.Length)
            {
                int n = RandomAccess.Read(_handle, buffer[done..], offset + done);
                if (n <= 0) throw ShortRead(sector, buffer.Length >> SectorShift, offset + done);
                done += n;
            }
        }
        catch (IOException e) when (e is not BlockDeviceException)
        {
            throw IoError("read", sector, buffer.Length >> SectorShift, e);
        }
    }

    /// <inheritdoc/>
    /// <remarks>
    /// <para>The read runs on the calling thread (<see cref="ReadCore"/>): on Linux, .NET's asynchronous file I/O is the
    /// same blocking pread on a thread-pool thread, so running it inline saves a thread hop and an allocation and blocks a
    /// thread exactly as long. Callers are asynchronous methods on pool threads, many at once; the pool adds threads when
    /// they block for long.</para>
    /// <para>On a thread that must not wait (<see cref="BlockDevice.ReadsMustNotWait"/>: an NBD connection's reader, the
    /// one thread taking that connection's requests), what the page cache holds is read inline all the same (preadv2
    /// with RWF_NOWAIT, which does not wait for data to come from the device), and a read that would wait goes on on a
    /// pool thread (<see cref="ReadUncachedAsync"/>): the reader takes the next request meanwhile, and several such reads wait for
    /// the device at once instead of one after the other. Not by default: where many callers already run in parallel,
    /// the hand-off cost more CPU than the blocking read (docs/benchmarks.md). Where RWF_NOWAIT is refused (a file system
    /// or kernel without it) every read blocks the calling thread.</para>
    /// </remarks>
    protected override ValueTask ReadCoreAsync(long sector, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (ReadsMustNotWait && !_noWaitRefused && buffer.Length > 0)
        {
            int n = NativeFile.ReadCached(_handle, buffer.Span, sector << SectorShift);
            if (n == buffer.Length) return ValueTask.CompletedTask;
            if (n > 0 && (n & (SectorSize - 1)) == 0) return ReadUncachedAsync(sector + (n >> SectorShift), buffer[n..]);
            if (n == -NativeFile.EWOULDBLOCK || n > 0) return ReadUncachedAsync(sector, buffer);
            if (n == -NativeFile.EOPNOTSUPP) _noWaitRefused = true;
            // 0 (the end of the file) or another error: the blocking read below reports it.
        }
        ReadCore(sector, buffer.Span);
        return ValueTask.CompletedTask;
    }

    private volatile bool _noWaitRefused = !NativeFile.IsLinux;

    /// <summary>The part of an asynchronous read the page cache did not hold, as a blocking read on a pool thread.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadUncachedAsync(long sector, Memory<byte> buffer)
    {
        // Why we hop: the read waits for the device; the caller's thread goes back to its work (see ReadCoreAsync).
        await Task.Yield();
        ReadCore(sector, buffer.Span);
    }

    /// <inheritdoc/>
    protected override void WriteCore(long sector, ReadOnlySpan<byte> data)
    {
        try
        {
            RandomAccess.Write(_handle, data, sector << SectorShift);
        }
        catch (IOException e)
        {
            throw IoError("write", sector, data.Length >> SectorShift, e);
        }
        // A large write starts its own write-back at once (see EagerWriteBackBytes). Errors are not lost: a
        // write-back that fails marks the file, and its next fdatasync (or waiting write-back) reports it; starting one
        // consumes no error.
        long eager = Volatile.Read(ref _eagerWriteBackBytes);
        if (eager > 0 && data.Length >= eager && NativeFile.IsLinux)
            NativeFile.WriteBack(_handle, sector << SectorShift, data.Length, wait: false);
    }

    private long _eagerWriteBackBytes;

    /// <summary>
    /// When above 0, a write of at least this many bytes starts sending its own pages to the storage device as soon as
    /// it is in the page cache, without waiting (sync_file_range WRITE on its range), so a later
    /// <see cref="BlockDevice.Flush"/> or <see cref="WriteBack"/> finds the data of large writes already written
    /// instead of writing it all while its caller waits; smaller writes are left to the page cache (their write-back
    /// during a run of random writes competes with the run's reads, and the flush writes them together). 0 (the
    /// default): the page cache decides when to write. It changes nothing about durability: data is durable after a
    /// flush, as before (a crash may keep an unflushed write or lose it, with or without this). The write's caller pays
    /// for submitting its I/O, and may wait briefly when the device's queue is full. Linux only (elsewhere it does
    /// nothing).
    /// </summary>
    public long EagerWriteBackBytes
    {
        get => Volatile.Read(ref _eagerWriteBackBytes);
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            Volatile.Write(ref _eagerWriteBackBytes, value);
        }
    }

    /// <inheritdoc/>
    /// <remarks>Runs on the calling thread, as <see cref="ReadCoreAsync"/> does (a write to the page cache).</remarks>
    protected override ValueTask WriteCoreAsync(long sector, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        WriteCore(sector, data.Span);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    protected override void FlushCore()
    {
        if (_readOnly) return;
        SyncData();
    }

    /// <inheritdoc/>
    protected override bool FlushAsCarrierCore()
    {
        if (_readOnly) return false;
        bool carries = CanFlushThrough(this); // as the fdatasync begins: no growth it would have to commit
        SyncData();
        return carries;
    }

    /// <inheritdoc/>
    /// <remarks>
    /// The flush blocks a thread-pool thread, not the caller's. It runs as a pooled work item that is also the returned
    /// task's source, so a steady stream of flushes allocates nothing (a commit round flushes every COW file with
    /// copies in it).
    /// </remarks>
    protected override ValueTask FlushCoreAsync(CancellationToken cancellationToken)
    {
        if (_readOnly) return ValueTask.CompletedTask;
        cancellationToken.ThrowIfCancellationRequested();
        FlushOperation op;
        lock (_flushOps) op = _flushOps.Count > 0 ? _flushOps.Pop() : new FlushOperation(this);
        return op.Start();
    }

    // Idle flush operations (lock: the stack itself; a leaf, held for a push or a pop).
    private readonly Stack<FlushOperation> _flushOps = new();

    /// <summary>Most idle flush operations kept: more flushes of one file at once than this allocate their own.</summary>
    private const int MaxIdleFlushOps = 16;

    private void ReturnFlushOperation(FlushOperation op)
    {
        lock (_flushOps) if (_flushOps.Count < MaxIdleFlushOps) _flushOps.Push(op);
    }

    /// <summary>
    /// One asynchronous fdatasync: queued to the thread pool, it runs <see cref="SyncData"/> there and completes the
    /// value task it handed out; the awaiter's <c>GetResult</c> returns it to its device's pool (a value task is awaited
    /// once). The continuation runs on the pool thread that flushed, as after <c>Task.Run</c>.
    /// </summary>
    private sealed class FlushOperation(FileBlockDevice device) : IValueTaskSource, IThreadPoolWorkItem
    {
        private ManualResetValueTaskSourceCore<bool> _core;

        public ValueTask Start()
        {
            var task = new ValueTask(this, _core.Version);
            ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
            return task;
        }

        void IThreadPoolWorkItem.Execute()
        {
            try
            {
                device.SyncData();
            }
            catch (Exception e)
            {
                _core.SetException(e);
                return;
            }
            _core.SetResult(true);
        }

        public void GetResult(short token)
        {
            try
            {
                _core.GetResult(token);
            }
            finally
            {
                _core.Reset();
                device.ReturnFlushOperation(this);
            }
        }

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);
    }

    private void SyncData()
    {
        lock (_syncLock) SyncDataLocked();
    }

    /// <summary>Tests only: run inside the sync lock just before the kernel's fdatasync (to hold a flush in progress).</summary>
    internal Action? TestInsideSync;

    private void SyncDataLocked()
    {
        int errno;
        ThrowIfWritesLost();
        // Read before the fdatasync, which covers every growth finished before it; recorded only once it succeeded.
        long growth = Interlocked.Read(ref _growth);
        // A file that shares flushes sends its own pages first (sync_file_range), so the fdatasync below is little more
        // than the device flush, and the flush is numbered only then: another device's write-back that completes while
        // these pages are being written is still covered when a caller reads FlushesBegun after it (see
        // BlockDevice.HasCarriedSince). Numbered before it decides whether it carries, so a write-back that completed
        // before that read is covered by any flush numbered above it.
        if (_flushDomain != 0 && Volatile.Read(ref TestFailNextSync) == 0) CheckWriteBack(NativeFile.WriteBack(_handle, wait: true));
        long begun = BeginFlush();
        bool carries = CanFlushThrough(this);
        try
        {
            errno = TakeTestFailure();
            TestInsideSync?.Invoke();
            if (errno == 0) errno = NativeFile.DataSync(_handle);
        }
        catch (IOException e)
        {
            string problem = $"flush failed: {OneLine(e.Message)}";
            throw Lost(new BlockDeviceException(Path, 0, problem, e), problem);
        }
        if (errno == 0 && _flushDomain != 0)
        {
            _journalsData = NativeFile.JournalsData(_handle);
            // Checked after a successful fdatasync, so no block is merely delayed: a gap or an unwritten extent now is
            // a block never written (a sparse file) or reserved but unwritten. Growth writes zeros, so it adds none.
            if (!_fullyWritten && NativeFile.IsFullyWritten(_handle, Length)) _fullyWritten = true;
            long seen = Interlocked.Read(ref _flushedGrowth);
            while (seen < growth)
            {
                long was = Interlocked.CompareExchange(ref _flushedGrowth, growth, seen);
                if (was == seen) break;
                seen = was;
            }
        }
        if (errno != 0) throw WriteBackFailed("fdatasync", errno);
        if (carries) Carried(begun);
    }

    /// <inheritdoc/>
    /// <remarks>
    /// Appends zeros in <see cref="ZeroFillStep"/> writes. If the file system fills up part way, the file is cut back
    /// to its old length and <see cref="DeviceFullException"/> is thrown.
    /// </remarks>
    protected override void ExtendCore(long sectorCount)
    {
        lock (_extendLock)
        {
            long old = SectorCount;
            if (sectorCount <= old) return;
            try
            {
                ZeroFill(old, sectorCount);
            }
            catch
            {
                // Whatever failed, the file goes back to its old size (the new sectors were never published).
                try { RandomAccess.SetLength(_handle, old << SectorShift); } catch (IOException) { } catch (ObjectDisposedException) { }
                throw;
            }
        }
    }

    // Writes zeros over [from, to) sectors, then publishes the new size.
    //
    // The 4 KiB-aligned middle of the range is written with O_DIRECT (NativeFile.ZeroFillDirect), past the page cache,
    // so the range leaves no cached pages behind. Zeros written through the page cache in 1 MiB pieces leave it cached
    // in large folios (Linux 6.x file systems with large folios, ext4 since 6.16), and every later 4 KiB write into such
    // a folio is far dearer than one into a page of its own (16.7 µs of CPU a write against 2.6 here, on a 1 GiB file
    // written once with 1 MiB buffered writes and once with O_DIRECT ones): the store writes 4 KiB chunks into exactly
    // these files (the origin after create, COW files after growth or preallocation). Where O_DIRECT is refused (a file
    // system without it, a device whose logical block is larger than 4 KiB) the rest is written through the page cache,
    // as are an unaligned head and tail.
    private void ZeroFill(long from, long to)
    {
        long offset = from << SectorShift, end = to << SectorShift;
        long alignedStart = Math.Min(end, (offset + DirectAlignment - 1) & ~(long)(DirectAlignment - 1));
        long alignedEnd = end & ~(long)(DirectAlignment - 1);
        if (alignedEnd > alignedStart)
        {
            ZeroFillBuffered(offset, alignedStart);
            int errno = NativeFile.ZeroFillDirect(_handle, alignedStart, alignedEnd, ZeroFillStep, out long done);
            offset = alignedStart + done;
            if (errno == NativeFile.ENOSPC)
                throw new DeviceFullException(Path, offset >> SectorShift, $"no space left on device: zero-fill at sector {offset >> SectorShift} failed");
            if (errno != 0 && !NativeFile.DirectRefused(errno))
                throw new BlockDeviceException(Path, offset >> SectorShift, $"zero-fill at sector {offset >> SectorShift} failed: {NativeFile.Describe(errno)}");
        }
        ZeroFillBuffered(offset, end);
        // New blocks and a new size: only this file's own fdatasync makes them durable (bumped before the size is
        // published, so no write into the new sectors can be sent before the count says so).
        Interlocked.Increment(ref _growth);
        Volatile.Write(ref _sectors, to);
    }

    /// <summary>Alignment of the zero-fill's O_DIRECT writes: a page, which any logical block size up to 4 KiB divides.</summary>
    private const int DirectAlignment = 4096;

    private void ZeroFillBuffered(long offset, long end)
    {
        while (offset < end)
        {
            int n = (int)Math.Min(ZeroFillStep, end - offset);
            try
            {
                RandomAccess.Write(_handle, s_zeros.AsSpan(0, n), offset);
            }
            catch (IOException e)
            {
                throw IoError("zero-fill", offset >> SectorShift, n >> SectorShift, e);
            }
            offset += n;
        }
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) _handle.Dispose();
    }
}
