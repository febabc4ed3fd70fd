using System.Globalization;
using System.Runtime.InteropServices;
using Journal.Tests.Tools;

namespace Journal.Tests.Campaign;

/// <summary>
/// Watches a running tool through <c>/proc</c> (Linux): which files it holds open and how much it has written, so a
/// test can act at a point of the tool's work (it holds the store open, it is in the middle of writing) instead of
/// after a guessed delay. Every wait has a timeout and fails loudly; none asserts a duration.
/// </summary>
public static partial class ProcWatch
{
    /// <summary>
    /// Bytes a tool has written when it is well into its work: opening a store alone writes about 1 MiB (to the
    /// journal); past 8 MiB a write or merge has copied chunks and committed them through the journal, so the store is
    /// dirty until it is closed.
    /// </summary>
    public const long MidWorkBytes = 8 << 20;

    /// <summary>SIGCONT on Linux.</summary>
    public const int SigCont = 18;

    /// <summary>SIGSTOP on Linux.</summary>
    public const int SigStop = 19;

    /// <summary>True while the process holds <paramref name="path"/> open (false once it has exited).</summary>
    public static bool HasOpen(int pid, string path)
    {
        // /proc shows the canonical path: resolve symbolic links in ours (a temp folder under a linked /tmp).
        string full = RealPath(path);
        try
        {
            foreach (var fd in Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd"))
            {
                string? target;
                try { target = new FileInfo(fd).LinkTarget; }
                catch (IOException) { continue; }
                catch (UnauthorizedAccessException) { continue; }
                if (target == full) return true;
            }
        }
        catch (DirectoryNotFoundException) { }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return false;
    }

    /// <summary>The canonical absolute path (realpath(3)); the full path as given when it cannot be resolved.</summary>
    public static string RealPath(string path)
    {
        string full = Path.GetFullPath(path);
        IntPtr resolved = Realpath(full, IntPtr.Zero);
        if (resolved == IntPtr.Zero) return full;
        try { return Marshal.PtrToStringUTF8(resolved) ?? full; }
        finally { Free(resolved); }
    }

    [LibraryImport("libc", EntryPoint = "realpath", StringMarshalling = StringMarshalling.Utf8)]
    private static partial IntPtr Realpath(string path, IntPtr resolved);

    [LibraryImport("libc", EntryPoint = "free")]
    private static partial void Free(IntPtr pointer);

    /// <summary>
    /// Bytes the process has passed to write system calls so far (<c>wchar</c> of <c>/proc/&lt;pid&gt;/io</c>), or -1 once
    /// it has exited.
    /// </summary>
    public static long BytesWritten(int pid)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/io"))
                if (line.StartsWith("wchar:", StringComparison.Ordinal))
                    return long.Parse(line.AsSpan(6).Trim(), CultureInfo.InvariantCulture);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return -1;
    }

    /// <summary>
    /// Polls until <paramref name="condition"/> holds for the running process (true), or the process exits first
    /// (false). Past <paramref name="timeout"/> it throws: a tool that neither gets there nor exits is hung.
    /// </summary>
    public static async Task<bool> WaitUntilAsync(ToolProcess process, Func<bool> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            if (process.HasExited) return false;
            if (condition()) return true;
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"{process} did not reach '{what}' within {timeout} and did not exit; stdout:\n{process.Stdout}\nstderr:\n{process.Stderr}");
            await Task.Delay(2);
        }
    }
}
