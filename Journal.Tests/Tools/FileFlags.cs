namespace Journal.Tests.Tools;

/// <summary>Inode flags set with chattr(1) (immutable, append-only): the tests that use them need root and ext4 or alike.</summary>
internal static class FileFlags
{
    /// <summary>Runs <c>chattr <paramref name="flag"/> <paramref name="path"/></c> (e.g. "+i", "-a"); fails the test if it cannot.</summary>
    public static void Chattr(string flag, string path)
    {
        var p = System.Diagnostics.Process.Start("chattr", [flag, path])!;
        p.WaitForExit(30_000);
        Assert.True(p.ExitCode == 0, $"chattr {flag} {path} failed (exit {p.ExitCode}): the test needs an ext4-like file system and root");
    }
}
