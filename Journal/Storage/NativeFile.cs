using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Journal.Storage;

/// <summary>
/// The few system calls .NET does not offer: fdatasync (data and the metadata needed to read it back, not
/// timestamps), flock for an exclusive advisory lock, fsync of a directory (so a new file's name is durable), statx
/// (the file type, before opening: a FIFO must be refused, not opened), fallocate (space reserved without writing it)
/// and statvfs (free space, read-only mounts).
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
    private const int FALLOC_FL_KEEP_SIZE = 1;
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
    internal static int Reserve(SafeFileHandle handle, long bytes)
    {
        if (!IsLinux) return EOPNOTSUPP;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            int fd = (int)handle.DangerousGetHandle();
            while (true)
            {
                if (FAllocate(fd, FALLOC_FL_KEEP_SIZE, 0, bytes) == 0) return 0;
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

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int FSync(int fd);

    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    private static partial int FLock(int fd, int operation);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

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
