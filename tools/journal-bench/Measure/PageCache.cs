using System.Runtime.InteropServices;

namespace JournalBench.Measure;

/// <summary>
/// Starts every side of a benchmark from a cold page cache for its own files, the same way: each file is made durable
/// (fdatasync) and its cached pages dropped (posix_fadvise POSIX_FADV_DONTNEED). Only the benchmark's own files are
/// touched; the rest of the machine's cache is left alone (no drop_caches). Off Linux it does nothing.
/// </summary>
/// <remarks>
/// The file is opened read-only with open(2) rather than through .NET, whose file handles take an advisory lock that
/// would conflict with the store's own handles on the same files.
/// </remarks>
internal static partial class PageCache
{
    private const int ORdOnly = 0, OCloExec = 0x80000, EIntr = 4;
    private const int PosixFadvDontNeed = 4;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "fdatasync", SetLastError = true)]
    private static partial int FDataSync(int fd);

    [LibraryImport("libc", EntryPoint = "posix_fadvise")]
    private static partial int PosixFadvise(int fd, long offset, long length, int advice);

    /// <summary>Makes <paramref name="path"/> durable and drops its cached pages; false off Linux.</summary>
    /// <exception cref="IOException">The file cannot be opened or synced.</exception>
    public static bool Drop(string path)
    {
        if (!OperatingSystem.IsLinux()) return false;
        int fd = Open(path, ORdOnly | OCloExec);
        if (fd < 0) throw new IOException($"{path}: cannot open to drop its cached pages: errno {Marshal.GetLastPInvokeError()}");
        try
        {
            while (FDataSync(fd) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno != EIntr) throw new IOException($"{path}: fdatasync failed: errno {errno}");
            }
            // posix_fadvise returns the error number itself (it does not set errno).
            return PosixFadvise(fd, 0, 0, PosixFadvDontNeed) == 0;
        }
        finally
        {
            Close(fd);
        }
    }

    /// <summary><see cref="Drop(string)"/> for every regular file directly in <paramref name="folder"/>.</summary>
    public static void DropFolder(string folder)
    {
        foreach (var f in Directory.EnumerateFiles(folder)) Drop(f);
    }
}
