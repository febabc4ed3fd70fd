using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Journal.Storage;

/// <summary>
/// The few system calls .NET does not offer: fdatasync (data and the metadata needed to read it back, not
/// timestamps), flock for an exclusive advisory lock, fsync of a directory (so a new file's name is durable), statx
/// (the file type, before opening: a FIFO must be refused, not opened), fallocate (space reserved without writing it),
/// statvfs (free space, read-only mounts), and what a shared device flush needs: sync_file_range (data sent to the
/// device without a cache flush), FIEMAP (every block written), the inode's data-journaling flag and the file system's options.
/// Linux only; other systems use <see cref="RandomAccess.FlushToDisk"/> and <see cref="FileShare.None"/>, and report
/// every path as a regular file, reservation as unsupported and free space as unknown.
/// </summary>
internal static partial class NativeFile
{
    private const int EINTR = 4;
    private const int LOCK_EX = 2;
    private const int LOCK_NB = 4;
    private const int O_RDONLY = 0;
    private const int O_CLOEXEC = 0x80000;

    /// <summary>EAGAIN/EWOULDBLOCK on Linux: the lock is held elsewhere.</summary>
    internal const int EWOULDBLOCK = 11;

    /// <summary>ENOSPC on Linux.</summary>
    internal const int ENOSPC = 28;

    /// <summary>EOPNOTSUPP on Linux: the file system cannot reserve space (fallocate).</summary>
    internal const int EOPNOTSUPP = 95;

    /// <summary>EROFS on Linux: read-only file system.</summary>
    internal const int EROFS = 30;

    internal static bool IsLinux { get; } = OperatingSystem.IsLinux();

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int StatX(int dirfd, string path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", EntryPoint = "fallocate", SetLastError = true)]
    private static partial int FAllocate(int fd, int mode, long offset, long length);

    [LibraryImport("libc", EntryPoint = "statvfs", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int StatVfs(string path, byte* buffer);

    [LibraryImport("libc", EntryPoint = "ftruncate", SetLastError = true)]
    private static partial int FTruncate(int fd, long length);

    /// <summary>
    /// Tests only: skip <see cref="Reserve"/>'s free-space check, so that a reservation larger than the free space
    /// reaches fallocate and fails there. Per thread; false (the default): checked.
    /// </summary>
    [ThreadStatic]
    internal static bool TestSkipReserveCheck;

    [LibraryImport("libc", EntryPoint = "fstatvfs", SetLastError = true)]
    private static unsafe partial int FStatVfs(int fd, byte* buffer);

    [LibraryImport("libc", EntryPoint = "access", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Access(string path, int mode);

    private const int W_OK = 2, X_OK = 1;

    /// <summary>
    /// 0 when this process may create and remove entries in <paramref name="directory"/> (write and search
    /// permission, not read-only, not immutable), else the errno (EACCES, EROFS, EPERM). Off Linux: 0.
    /// </summary>
    internal static int CanModifyDirectory(string directory)
    {
        if (!IsLinux) return 0;
        while (true)
        {
            if (Access(directory, W_OK | X_OK) == 0) return 0;
            int errno = Marshal.GetLastPInvokeError();
            if (errno != EINTR) return errno;
        }
    }

    private const int AT_FDCWD = -100;
    private const uint STATX_TYPE = 0x1, STATX_INO = 0x100;
    private const int FALLOC_FL_KEEP_SIZE = 1, FALLOC_FL_PUNCH_HOLE = 2;
    private const uint STATX_SIZE = 0x200, STATX_BLOCKS = 0x400, STATX_NLINK = 0x4;
    private const ulong ST_RDONLY = 1;

    /// <summary>What a path names, from <c>statx</c> (following symbolic links).</summary>
    /// <param name="Errno">0, or why it could not be looked at (ENOENT, EACCES, ...).</param>
    /// <param name="Mode">The file type bits (<c>S_IFMT</c>): see <see cref="KindOf"/>.</param>
    /// <param name="Device">The device the file is on (major &lt;&lt; 32 | minor).</param>
    /// <param name="Inode">The file's inode number.</param>
    internal readonly record struct FileIdentity(int Errno, uint Mode, ulong Device, ulong Inode)
    {
        /// <summary>True for a regular file.</summary>
        public bool IsRegular => (Mode & 0xF000) == 0x8000;
    }

    /// <summary>Looks at <paramref name="path"/> without opening it. Off Linux: a regular file with no identity.</summary>
    internal static unsafe FileIdentity Identify(string path)
    {
        if (!IsLinux) return new FileIdentity(0, 0x8000, 0, 0);
        byte* buf = stackalloc byte[256];
        while (true)
        {
            if (StatX(AT_FDCWD, path, 0, STATX_TYPE | STATX_INO, buf) == 0)
            {
                ushort mode = *(ushort*)(buf + 28);
                ulong ino = *(ulong*)(buf + 32);
                ulong dev = ((ulong)*(uint*)(buf + 136) << 32) | *(uint*)(buf + 140);
                return new FileIdentity(0, mode, dev, ino);
            }
            int errno = Marshal.GetLastPInvokeError();
            if (errno != EINTR) return new FileIdentity(errno, 0, 0, 0);
        }
    }

    /// <summary>A name for the file type in <paramref name="mode"/>, for messages.</summary>
    internal static string KindOf(uint mode) => (mode & 0xF000) switch
    {
        0x8000 => "a regular file",
        0x4000 => "a directory",
        0x1000 => "a FIFO",
        0xC000 => "a socket",
        0x2000 => "a character device",
        0x6000 => "a block device",
        0xA000 => "a symbolic link",
        _ => $"a file of type 0{mode & 0xF000:o}",
    };

    /// <summary>
    /// Reserves the blocks of [0, <paramref name="bytes"/>) without changing the file's size (fallocate with
    /// FALLOC_FL_KEEP_SIZE): later writes and growth inside it cannot fail for lack of space. Returns 0, ENOSPC,
    /// EOPNOTSUPP (the file system cannot), or another errno. Off Linux: EOPNOTSUPP.
    /// </summary>
    internal static unsafe int Reserve(SafeFileHandle handle, long bytes)
    {
        if (!IsLinux) return EOPNOTSUPP;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            int fd = (int)handle.DangerousGetHandle();
            // Short of space, fallocate fails only after taking the blocks it could (ext4 keeps them): a reservation
            // that cannot be had must take nothing, or merely opening a store would fill the file system. So it is not
            // tried when the free space is plainly short, and a failed one gives back what it took past the file's end
            // with a same-size truncate (a reservation lies past it: the file's own blocks are written data; a hole
            // punched past the end would free nothing on ext4).
            byte* buf = stackalloc byte[256];
            long size = -1;
            if (StatX(fd, "", AT_EMPTY_PATH, STATX_SIZE | STATX_BLOCKS, buf) == 0)
            {
                size = *(long*)(buf + 40);
                long allocated = *(long*)(buf + 48) * 512;
                if (!TestSkipReserveCheck && FStatVfs(fd, buf) == 0)
                {
                    ulong free = *(ulong*)(buf + 8) * *(ulong*)(buf + 32);
                    if (bytes - allocated > 0 && (ulong)(bytes - allocated) > free) return ENOSPC;
                }
            }
            while (true)
            {
                if (FAllocate(fd, FALLOC_FL_KEEP_SIZE, 0, bytes) == 0) return 0;
                int errno = Marshal.GetLastPInvokeError();
                if (errno == EINTR) continue;
                if (size >= 0 && bytes > size) DropPastEnd(fd, size);
                return errno;
            }
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    /// <summary>
    /// Frees every block of the file, those past its end (a reservation) too, keeping its size: a hole punched over
    /// [0, size), then a truncate to the same size, which drops the blocks kept past the end (a punch there frees
    /// nothing on ext4). Returns 0 or the errno; EOPNOTSUPP off Linux.
    /// </summary>
    internal static int DiscardAll(SafeFileHandle handle, long size)
    {
        if (!IsLinux) return EOPNOTSUPP;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            int fd = (int)handle.DangerousGetHandle();
            int errno = 0;
            while (size > 0 && FAllocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, size) != 0)
            {
                errno = Marshal.GetLastPInvokeError();
                if (errno != EINTR) break;
                errno = 0;
            }
            int drop = DropPastEnd(fd, size);
            return errno != 0 ? errno : drop;
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    /// <summary>Drops the blocks kept past the end of a file of <paramref name="size"/> bytes (a same-size truncate). Returns 0 or the errno.</summary>
    private static int DropPastEnd(int fd, long size)
    {
        while (true)
        {
            if (FTruncate(fd, size) == 0) return 0;
            int errno = Marshal.GetLastPInvokeError();
            if (errno != EINTR) return errno;
        }
    }

    /// <summary>
    /// Bytes an unprivileged writer can still allocate on the file system holding <paramref name="path"/>, and whether
    /// it is mounted read-only; null when unknown (off Linux, or statvfs failed).
    /// </summary>
    internal static unsafe (long AvailableBytes, bool ReadOnly)? FileSystemSpace(string path)
    {
        if (!IsLinux) return null;
        // struct statvfs on 64-bit Linux: f_bsize, f_frsize, f_blocks, f_bfree, f_bavail, f_files, f_ffree, f_favail,
        // f_fsid, f_flag, f_namemax: eleven 8-byte fields, then spares.
        byte* buf = stackalloc byte[128];
        if (StatVfs(path, buf) != 0) return null;
        ulong frsize = *(ulong*)(buf + 8), bavail = *(ulong*)(buf + 32), flag = *(ulong*)(buf + 72);
        ulong bytes = frsize * bavail;
        return ((long)Math.Min(bytes, long.MaxValue), (flag & ST_RDONLY) != 0);
    }

    [LibraryImport("libc", EntryPoint = "fdatasync", SetLastError = true)]
    private static partial int FDataSync(int fd);

    [LibraryImport("libc", EntryPoint = "sync_file_range", SetLastError = true)]
    private static partial int SyncFileRangeNative(int fd, long offset, long nbytes, uint flags);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static unsafe partial int Ioctl(int fd, nuint request, int* argument);

    private const uint SYNC_FILE_RANGE_WAIT_BEFORE = 1, SYNC_FILE_RANGE_WRITE = 2, SYNC_FILE_RANGE_WAIT_AFTER = 4;
    private const nuint FS_IOC_GETFLAGS = 0x80086601;
    private const int FS_JOURNAL_DATA_FL = 0x4000;
    private const int FS_IMMUTABLE_FL = 0x10, FS_APPEND_FL = 0x20;
    private const int O_NONBLOCK = 0x800;

    /// <summary>O_NOFOLLOW: 0x20000 on x86 and most others, 0x8000 on ARM.</summary>
    private static readonly int O_NOFOLLOW = RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm ? 0x8000 : 0x20000;

    /// <summary>
    /// Why the directory entry <paramref name="path"/> cannot be removed although its folder passes
    /// <see cref="CanModifyDirectory"/>: the folder is append-only, or the file is immutable or append-only (chattr +a,
    /// +i: unlink fails with EPERM). Null when nothing says so (or the flags cannot be read: not Linux, no such file,
    /// a file system without them). A symbolic link's own entry is looked at, not its target.
    /// </summary>
    internal static string? WhyNotRemovable(string path)
    {
        if (!IsLinux) return null;
        string folder = Path.GetDirectoryName(Path.GetFullPath(path)) ?? "/";
        if (InodeFlags(folder) is { } d && (d & FS_APPEND_FL) != 0) return $"{folder}: the folder is append-only (chattr +a): no file in it can be removed";
        if (InodeFlags(path) is { } f && (f & (FS_IMMUTABLE_FL | FS_APPEND_FL)) != 0)
            return $"the file is {((f & FS_IMMUTABLE_FL) != 0 ? "immutable (chattr +i)" : "append-only (chattr +a)")}";
        return null;
    }

    /// <summary>The inode flags (FS_IOC_GETFLAGS) of <paramref name="path"/>, not following a final symbolic link; null when unknown.</summary>
    private static unsafe int? InodeFlags(string path)
    {
        int fd = Open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) return null;
        try
        {
            int flags = 0;
            return Ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 ? flags : null;
        }
        finally
        {
            Close(fd);
        }
    }
    private const int AT_EMPTY_PATH = 0x1000;

    /// <summary>
    /// Writes the file's dirty pages to the storage device and waits for them (sync_file_range with WAIT_BEFORE, WRITE
    /// and WAIT_AFTER over the whole file), without the file's metadata and without flushing the device's cache; with
    /// <paramref name="wait"/> false, only starts writing the pages not already being written (WRITE alone).
    /// Returns 0 or the errno. Linux only.
    /// </summary>
    internal static int WriteBack(SafeFileHandle handle, bool wait = true) => WriteBack(handle, 0, 0, wait);

    /// <summary>As <see cref="WriteBack(SafeFileHandle, bool)"/>, for <paramref name="length"/> bytes at <paramref name="offset"/> (0: to the end).</summary>
    internal static int WriteBack(SafeFileHandle handle, long offset, long length, bool wait)
    {
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            int fd = (int)handle.DangerousGetHandle();
            while (true)
            {
                uint flags = wait ? SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER : SYNC_FILE_RANGE_WRITE;
                if (SyncFileRangeNative(fd, offset, length, flags) == 0) return 0;
                int errno = Marshal.GetLastPInvokeError();
                if (errno != EINTR) return errno;
            }
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    private const nuint FS_IOC_FIEMAP = 0xC020660B;
    private const uint FIEMAP_FLAG_SYNC = 1;
    private const uint FIEMAP_EXTENT_LAST = 0x1, FIEMAP_EXTENT_MERGED = 0x1000;
    private const int FiemapHeader = 32, FiemapExtent = 56, FiemapBatch = 32;

    /// <summary>
    /// True when the file's blocks cover [0, <paramref name="length"/>) without a gap, every extent plainly written:
    /// not unwritten (reserved), delayed, inline in the inode, shared, encoded or unknown (FS_IOC_FIEMAP with
    /// FIEMAP_FLAG_SYNC, which writes back dirty pages first). An overwrite of such a file changes no block map. False
    /// when the system does not say.
    /// </summary>
    internal static unsafe bool IsFullyWritten(SafeFileHandle handle, long length)
    {
        if (!IsLinux || length <= 0) return false;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            int fd = (int)handle.DangerousGetHandle();
            byte* buf = stackalloc byte[FiemapHeader + FiemapBatch * FiemapExtent];
            long covered = 0;
            while (covered < length)
            {
                new Span<byte>(buf, FiemapHeader + FiemapBatch * FiemapExtent).Clear();
                *(ulong*)buf = (ulong)covered;
                *(ulong*)(buf + 8) = (ulong)(length - covered);
                *(uint*)(buf + 16) = FIEMAP_FLAG_SYNC;
                *(uint*)(buf + 24) = FiemapBatch;
                if (Ioctl(fd, FS_IOC_FIEMAP, (int*)buf) != 0) return false;
                uint mapped = *(uint*)(buf + 20);
                if (mapped == 0) return false; // a hole up to the end
                bool last = false;
                for (uint i = 0; i < mapped; i++)
                {
                    byte* e = buf + FiemapHeader + i * FiemapExtent;
                    ulong logical = *(ulong*)e, extentLength = *(ulong*)(e + 16);
                    uint flags = *(uint*)(e + 40);
                    if ((long)logical > covered) return false; // a hole
                    if ((flags & ~(FIEMAP_EXTENT_LAST | FIEMAP_EXTENT_MERGED)) != 0) return false;
                    covered = Math.Max(covered, (long)(logical + extentLength));
                    last |= (flags & FIEMAP_EXTENT_LAST) != 0;
                }
                if (last) break;
            }
            return covered >= length;
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    /// <summary>True when the open file is marked for data journaling (FS_JOURNAL_DATA_FL); false when not or when the system does not say.</summary>
    internal static unsafe bool JournalsData(SafeFileHandle handle)
    {
        if (!IsLinux) return false;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            int flags = 0;
            return Ioctl((int)handle.DangerousGetHandle(), FS_IOC_GETFLAGS, &flags) == 0 && (flags & FS_JOURNAL_DATA_FL) != 0;
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    /// <summary>The number of names (hard links) an open file has; null when the system does not say.</summary>
    internal static unsafe long? LinkCount(SafeFileHandle handle)
    {
        if (!IsLinux) return null;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            byte* buf = stackalloc byte[256];
            if (StatX((int)handle.DangerousGetHandle(), "", AT_EMPTY_PATH, STATX_NLINK, buf) != 0) return null;
            return *(uint*)(buf + 16);
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    /// <summary>The device number (major &lt;&lt; 32 | minor) of the file system an open file is on; null when the system does not say.</summary>
    internal static unsafe ulong? DeviceOf(SafeFileHandle handle)
    {
        if (!IsLinux) return null;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            byte* buf = stackalloc byte[256];
            if (StatX((int)handle.DangerousGetHandle(), "", AT_EMPTY_PATH, STATX_TYPE, buf) != 0) return null;
            return ((ulong)*(uint*)(buf + 136) << 32) | *(uint*)(buf + 140);
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    /// <summary>
    /// The type of the file system mounted from <paramref name="device"/> (major &lt;&lt; 32 | minor), from
    /// /proc/self/mountinfo; null when it is not listed or cannot be read. (Its options there leave out defaults: see
    /// <see cref="Ext4Options"/>.)
    /// </summary>
    internal static string? MountTypeOf(ulong device)
    {
        if (!IsLinux) return null;
        string wanted = $"{device >> 32}:{device & 0xFFFFFFFF}";
        try
        {
            foreach (string line in File.ReadLines("/proc/self/mountinfo"))
            {
                // id parent major:minor root mountpoint options [optional fields...] - type source superoptions
                string[] f = line.Split(' ');
                if (f.Length < 10 || f[2] != wanted) continue;
                int dash = Array.IndexOf(f, "-", 6);
                if (dash < 0 || dash + 1 >= f.Length) continue;
                return f[dash + 1];
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }

    /// <summary>
    /// The options of the ext2/3/4 file system on <paramref name="device"/> as the file system itself lists them, defaults
    /// included (<c>/proc/fs/ext4/&lt;name&gt;/options</c>, the name from <c>/sys/dev/block/major:minor</c>): unlike the
    /// mount table, it shows a data mode set as the superblock's default. Null when it cannot be read.
    /// </summary>
    internal static string[]? Ext4Options(ulong device)
    {
        if (!IsLinux) return null;
        try
        {
            var link = new FileInfo($"/sys/dev/block/{device >> 32}:{device & 0xFFFFFFFF}").LinkTarget;
            if (link is null) return null;
            string name = Path.GetFileName(link.TrimEnd('/'));
            if (name.Length == 0 || name.Contains("..", StringComparison.Ordinal)) return null;
            return File.ReadAllLines($"/proc/fs/ext4/{name}/options");
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    /// <summary>The running kernel's version (major, minor), or null off Linux or when it cannot be read.</summary>
    internal static Version? KernelVersion()
    {
        if (!IsLinux) return null;
        try
        {
            string release = File.ReadAllText("/proc/sys/kernel/osrelease").Trim();
            var parts = release.Split('.', 3);
            if (parts.Length >= 2 && int.TryParse(parts[0], out int major)
                && int.TryParse(new string(parts[1].TakeWhile(char.IsAsciiDigit).ToArray()), out int minor))
                return new Version(major, minor);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int FSync(int fd);

    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    private static partial int FLock(int fd, int operation);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "preadv2", SetLastError = true)]
    private static unsafe partial nint PReadV2(int fd, void* iov, int iovcnt, long offset, int flags);

    private const int RWF_NOWAIT = 0x8;

    /// <summary>
    /// Reads into <paramref name="buffer"/> at <paramref name="offset"/> only what the page cache already holds
    /// (preadv2 with RWF_NOWAIT: no wait for the data to come from the device; on a miss the kernel may still submit
    /// readahead for the range before it returns, which can take a moment on a busy device). Returns the bytes read
    /// (0 at the end of the file; fewer than asked when only the first part is cached), or minus the errno:
    /// -EWOULDBLOCK when the first byte is not cached, -EOPNOTSUPP where the file system or kernel cannot. Off Linux:
    /// -EOPNOTSUPP.
    /// </summary>
    internal static unsafe int ReadCached(SafeFileHandle handle, Span<byte> buffer, long offset)
    {
        if (!IsLinux) return -EOPNOTSUPP;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            int fd = (int)handle.DangerousGetHandle();
            fixed (byte* p = buffer)
            {
                nint* iov = stackalloc nint[2];
                iov[0] = (nint)p;
                iov[1] = buffer.Length;
                while (true)
                {
                    nint n = PReadV2(fd, iov, 1, offset, RWF_NOWAIT);
                    if (n >= 0) return (int)n;
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == EINTR) continue;
                    return -errno;
                }
            }
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    [LibraryImport("libc", EntryPoint = "pwrite", SetLastError = true)]
    private static unsafe partial nint PWrite(int fd, void* buffer, nuint count, long offset);

    private const int O_WRONLY = 1, O_DIRECT = 0x4000;
    private const int EINVAL = 22, EIO = 5;

    // Zeros for O_DIRECT writes: one page-aligned block for the process's life, allocated on first use.
    private static readonly Lazy<nint> s_directZeros = new(() =>
    {
        unsafe
        {
            void* p = NativeMemory.AlignedAlloc(FileBlockDevice.ZeroFillStep, 4096);
            NativeMemory.Clear(p, FileBlockDevice.ZeroFillStep);
            return (nint)p;
        }
    });

    /// <summary>
    /// Tests only: when 0, <see cref="ZeroFillDirect"/> is refused at once; when positive, refused once that many bytes
    /// are written (as a file system that refuses O_DIRECT would be, so the fallback can be tested on any file system).
    /// Per thread (a zero-fill runs on its caller's thread); null (the default): off.
    /// </summary>
    [ThreadStatic]
    internal static long? TestRefuseDirectAfterBytes;

    /// <summary>
    /// True for the errors with which a file system refuses O_DIRECT (one without it, such as tmpfs before Linux 6.6, or an
    /// unsupported alignment).
    /// </summary>
    internal static bool DirectRefused(int errno) => errno is EINVAL or EOPNOTSUPP;

    /// <summary>
    /// Writes zeros over bytes [<paramref name="offset"/>, <paramref name="end"/>) of the file behind
    /// <paramref name="handle"/> with O_DIRECT, in pieces of at most <paramref name="step"/> bytes, through a second open
    /// of the same file (<c>/proc/self/fd</c>: the same inode, whatever its name is now), so nothing of the range is left
    /// in the page cache. Both ends must be 4 KiB-aligned. Returns 0 once the whole range is written, else the errno
    /// of the failure with <paramref name="done"/> bytes written: EINVAL or EOPNOTSUPP when the file system refuses
    /// O_DIRECT (<see cref="DirectRefused"/>; the caller writes the rest another way), EOPNOTSUPP off Linux too.
    /// Durability is the caller's: the data may sit in the device's cache and the new blocks' metadata in the file
    /// system's until an fdatasync.
    /// </summary>
    internal static unsafe int ZeroFillDirect(SafeFileHandle handle, long offset, long end, int step, out long done)
    {
        done = 0;
        if (!IsLinux) return EOPNOTSUPP;
        if (((offset | end) & 4095) != 0 || step % 4096 != 0 || step > FileBlockDevice.ZeroFillStep) return EINVAL;
        bool added = false;
        int fd = -1;
        try
        {
            handle.DangerousAddRef(ref added);
            long? refuseAfter = TestRefuseDirectAfterBytes;
            if (refuseAfter == 0) return EINVAL;
            fd = Open($"/proc/self/fd/{(int)handle.DangerousGetHandle()}", O_WRONLY | O_DIRECT | O_CLOEXEC);
            if (fd < 0)
            {
                // No /proc, or the file system refuses O_DIRECT at open: the caller writes the range another way
                // (what failed does not matter to it: the buffered way reports its own errors).
                return EINVAL;
            }
            void* zeros = (void*)s_directZeros.Value;
            while (offset + done < end)
            {
                int n = (int)Math.Min(step, end - offset - done);
                if (refuseAfter > 0 && done >= refuseAfter) return EINVAL;
                nint w = PWrite(fd, zeros, (nuint)n, offset + done);
                if (w < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == EINTR) continue;
                    return errno;
                }
                if (w == 0) return EIO;
                // A short O_DIRECT write (possible near the end of space) leaves the rest for the next call; a length that
                // is no longer aligned falls back to the caller's way.
                done += w;
                if ((w & 4095) != 0) return EINVAL;
            }
            return 0;
        }
        finally
        {
            if (fd >= 0) Close(fd);
            if (added) handle.DangerousRelease();
        }
    }

    /// <summary>Makes the file's data durable. Returns 0, or the errno of the failure.</summary>
    internal static int DataSync(SafeFileHandle handle)
    {
        if (!IsLinux)
        {
            RandomAccess.FlushToDisk(handle);
            return 0;
        }
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            int fd = (int)handle.DangerousGetHandle();
            while (true)
            {
                if (FDataSync(fd) == 0) return 0;
                int errno = Marshal.GetLastPInvokeError();
                if (errno != EINTR) return errno;
            }
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    /// <summary>
    /// Takes an exclusive, non-blocking flock on the file. Returns 0, <see cref="EWOULDBLOCK"/> when another open
    /// file description holds it, or another errno. A no-op (0) off Linux, where <see cref="FileShare.None"/> locks.
    /// </summary>
    internal static int LockExclusive(SafeFileHandle handle)
    {
        if (!IsLinux) return 0;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            int fd = (int)handle.DangerousGetHandle();
            while (true)
            {
                if (FLock(fd, LOCK_EX | LOCK_NB) == 0) return 0;
                int errno = Marshal.GetLastPInvokeError();
                if (errno != EINTR) return errno;
            }
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    /// <summary>fsyncs a directory so entries created in it are durable. Returns 0 or the errno. A no-op off Linux.</summary>
    internal static int SyncDirectory(string directory)
    {
        if (!IsLinux) return 0;
        int fd = Open(directory, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return Marshal.GetLastPInvokeError();
        try
        {
            while (true)
            {
                if (FSync(fd) == 0) return 0;
                int errno = Marshal.GetLastPInvokeError();
                if (errno != EINTR) return errno;
            }
        }
        finally
        {
            Close(fd);
        }
    }

    /// <summary>The system's words for an errno.</summary>
    internal static string Describe(int errno) => $"{Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})";
}
