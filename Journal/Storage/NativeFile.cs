using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Journal.Storage;

/// <summary>
/// The few system calls .NET does not offer: fdatasync (data and the metadata needed to read it back, not
/// timestamps), flock for an exclusive advisory lock, and fsync of a directory (so a new file's name is durable).
/// Linux only; other systems use <see cref="RandomAccess.FlushToDisk"/> and <see cref="FileShare.None"/>.
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

    internal static bool IsLinux { get; } = OperatingSystem.IsLinux();

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
