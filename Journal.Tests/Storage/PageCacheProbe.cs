using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Journal.Tests.Storage;

/// <summary>What of a file the page cache holds (util-linux fincore), and dropping it (posix_fadvise DONTNEED).</summary>
internal static class PageCacheProbe
{
    private const int PosixFadvDontNeed = 4;

    [DllImport("libc", EntryPoint = "posix_fadvise")]
    private static extern int PosixFadvise(SafeFileHandle fd, long offset, long length, int advice);

    /// <summary>Bytes of <paramref name="path"/> in the page cache.</summary>
    public static long CachedBytes(string path)
    {
        var psi = new ProcessStartInfo("fincore") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "--bytes", "--noheadings", "--output", "RES", path }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        string error = p.StandardError.ReadToEnd();
        Assert.True(p.WaitForExit(30_000), "fincore did not finish");
        Assert.True(p.ExitCode == 0, $"fincore {path} failed: {error}");
        return long.Parse(output.Trim(), CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Drops bytes from <paramref name="offset"/> to the end of <paramref name="path"/> (clean pages) from the page cache,
    /// until what stays cached is <paramref name="keptBytes"/>: the kernel drops pages on a best-effort basis (a page
    /// still in another CPU's batch of pages being added to its lists is skipped), so it tries again, for up to 10 s.
    /// </summary>
    public static void DropFrom(string path, long offset, long keptBytes)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            using (var h = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
                Assert.Equal(0, PosixFadvise(h, offset, 0, PosixFadvDontNeed));
            long cached = CachedBytes(path);
            if (cached == keptBytes) return;
            Assert.True(DateTime.UtcNow < deadline, $"{path}: {cached} bytes still cached after dropping from byte {offset}, expected {keptBytes}");
            Thread.Sleep(50);
        }
    }
}
