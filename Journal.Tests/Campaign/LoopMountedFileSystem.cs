using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Journal.Tests.Campaign;

/// <summary>
/// A small real file system for tests that need one to run out of space or go read-only: an ext4 image (made with
/// <c>mkfs.ext4</c> from e2fsprogs, no blocks reserved for root, so "full" is full for root too) loop-mounted under a
/// unique temporary folder. Needs root (CI runs as root); missing tools are installed with <c>apt-get install -y</c>.
/// When that cannot be done the test fails, never skips. <see cref="Dispose"/> unmounts and removes everything, also
/// after a failed test; a mount another process still holds is detached lazily so nothing is left mounted.
/// </summary>
public sealed class LoopMountedFileSystem : IDisposable
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromMinutes(3);
    private static readonly SemaphoreSlim s_install = new(1, 1);
    private static bool s_toolsReady;

    private readonly string _folder;
    private bool _mounted;

    private LoopMountedFileSystem(string folder, string image, string mountPoint)
    {
        _folder = folder;
        Image = image;
        MountPoint = mountPoint;
    }

    /// <summary>The image file (outside the mount).</summary>
    public string Image { get; }

    /// <summary>Where the file system is mounted: put the files under test here.</summary>
    public string MountPoint { get; }

    /// <summary>The filler file <see cref="Fill"/> writes.</summary>
    public string FillerPath => Path.Combine(MountPoint, "filler");

    /// <summary>Bytes still available to a writer (statvfs f_bavail).</summary>
    public long AvailableBytes => new DriveInfo(MountPoint).AvailableFreeSpace;

    /// <summary>Makes and mounts a file system of <paramref name="megabytes"/> MiB.</summary>
    public static async Task<LoopMountedFileSystem> CreateAsync(int megabytes = 64)
    {
        if (!OperatingSystem.IsLinux())
            throw new InvalidOperationException("a loop-mounted file system needs Linux");
        if (Environment.UserName != "root" && Run("id", ["-u"]).Trim() != "0")
            throw new InvalidOperationException("a loop-mounted file system needs root (mount -o loop); CI runs the tests as root");
        await EnsureToolsAsync();

        string folder = Path.Combine(Path.GetTempPath(), "journal-loopfs-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(folder);
        string image = Path.Combine(folder, "fs.img");
        string mountPoint = Path.Combine(folder, "mnt");
        Directory.CreateDirectory(mountPoint);
        var fs = new LoopMountedFileSystem(folder, image, mountPoint);
        try
        {
            using (var f = new FileStream(image, FileMode.CreateNew, FileAccess.Write)) f.SetLength((long)megabytes << 20);
            Run("mkfs.ext4", ["-q", "-F", "-m", "0", "-E", "lazy_itable_init=0,lazy_journal_init=0", image]);
            Run("mount", ["-o", "loop", image, mountPoint]);
            fs._mounted = true;
            return fs;
        }
        catch
        {
            fs.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Fills the file system: writes <see cref="FillerPath"/> until no space is left, in ever smaller pieces, syncing
    /// and trying again until a pass gains nothing (ext4 hands back reserved blocks after a sync). Returns the bytes
    /// written.
    /// </summary>
    public long Fill()
    {
        long total = 0;
        using var filler = new FileStream(FillerPath, FileMode.Append, FileAccess.Write, FileShare.Read, 1, FileOptions.None);
        var block = new byte[1 << 20];
        Array.Fill(block, (byte)0xF1);
        for (int pass = 0; pass < 16; pass++)
        {
            long before = total;
            foreach (int size in new[] { 1 << 20, 64 << 10, 4 << 10, 512 })
            {
                while (true)
                {
                    try
                    {
                        filler.Write(block, 0, size);
                        filler.Flush();
                        total += size;
                    }
                    catch (IOException e) when (IsNoSpace(e))
                    {
                        break;
                    }
                }
            }
            try { filler.Flush(flushToDisk: true); }
            catch (IOException e) when (IsNoSpace(e)) { }
            if (total == before) break;
        }
        return total;
    }

    /// <summary>Deletes the filler file, giving its space back.</summary>
    public void Free()
    {
        File.Delete(FillerPath);
        Run("sync", ["-f", MountPoint]);
    }

    /// <summary>Remounts the file system read-only (mount -o remount,ro).</summary>
    public void RemountReadOnly() => Run("mount", ["-o", "remount,ro", MountPoint]);

    /// <summary>Punches holes wherever <paramref name="file"/> holds zeros (fallocate --dig-holes), so writing there needs new blocks again.</summary>
    public static void DigHoles(string file) => Run("fallocate", ["--dig-holes", file]);

    /// <summary>Unmounts (lazily, if something still holds the mount) and removes the image and its folder.</summary>
    public void Dispose()
    {
        if (_mounted)
        {
            for (int attempt = 0; attempt < 5 && _mounted; attempt++)
            {
                if (TryRun("umount", [MountPoint], out _)) _mounted = false;
                else Thread.Sleep(200);
            }
            if (_mounted && TryRun("umount", ["-l", MountPoint], out _)) _mounted = false;
        }
        try { Directory.Delete(_folder, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        if (_mounted) throw new InvalidOperationException($"{MountPoint}: could not be unmounted");
    }

    private static bool IsNoSpace(IOException e) => e.HResult == 28 || e.Message.Contains("No space left", StringComparison.OrdinalIgnoreCase);

    private static async Task EnsureToolsAsync()
    {
        await s_install.WaitAsync();
        try
        {
            if (s_toolsReady) return;
            var missing = new List<string>();
            if (!OnPath("mkfs.ext4")) missing.Add("e2fsprogs");
            if (!OnPath("mount") || !OnPath("umount")) missing.Add("mount");
            if (!OnPath("fallocate")) missing.Add("util-linux");
            if (missing.Count > 0)
            {
                var env = new Dictionary<string, string> { ["DEBIAN_FRONTEND"] = "noninteractive" };
                if (!TryRun("apt-get", ["install", "-y", .. missing], out var install, env))
                {
                    TryRun("apt-get", ["update"], out _, env);
                    if (!TryRun("apt-get", ["install", "-y", .. missing], out install, env))
                        throw new InvalidOperationException($"cannot install {string.Join(", ", missing)} (needed for a loop-mounted test file system): {install}");
                }
                foreach (var tool in new[] { "mkfs.ext4", "mount", "umount", "fallocate" })
                    if (!OnPath(tool)) throw new InvalidOperationException($"{tool} is still missing after apt-get install -y {string.Join(' ', missing)}");
            }
            s_toolsReady = true;
        }
        finally
        {
            s_install.Release();
        }
    }

    private static bool OnPath(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Append("/sbin").Append("/usr/sbin")
            .Any(dir => dir.Length > 0 && File.Exists(Path.Combine(dir, tool)));

    private static string Run(string command, IReadOnlyList<string> args)
    {
        if (!TryRun(command, args, out var output))
            throw new InvalidOperationException($"{command} {string.Join(' ', args)} failed: {output}");
        return output;
    }

    /// <summary>Runs a command to the end (killed after <see cref="CommandTimeout"/>); its output, and whether it exited 0.</summary>
    private static bool TryRun(string command, IReadOnlyList<string> args, out string output, IReadOnlyDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(command)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        string path = Environment.GetEnvironmentVariable("PATH") ?? "";
        psi.Environment["PATH"] = path + ":/sbin:/usr/sbin";
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        var text = new StringBuilder();
        using var p = new Process { StartInfo = psi };
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (text) text.Append(e.Data).Append('\n'); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (text) text.Append(e.Data).Append('\n'); };
        try
        {
            p.Start();
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            output = $"{command}: cannot start: {e.Message}";
            return false;
        }
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (!p.WaitForExit(CommandTimeout))
        {
            try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            output = $"{command} did not finish within {CommandTimeout}";
            return false;
        }
        p.WaitForExit();
        lock (text) output = text.ToString();
        if (p.ExitCode != 0) output = string.Create(CultureInfo.InvariantCulture, $"exit {p.ExitCode}: {output}");
        return p.ExitCode == 0;
    }
}
