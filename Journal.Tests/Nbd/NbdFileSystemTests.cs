using System.Diagnostics;
using System.Security.Cryptography;
using Journal.Tests.Tools;
using static Journal.Tests.Nbd.ExternalTools;

namespace Journal.Tests.Nbd;

/// <summary>
/// A Linux file system end to end on served volumes: nbdfuse exposes the origin export as a file, a loop device and
/// ext4 go on top, a tree of files is written; after sync and fsfreeze a snapshot is taken live with
/// <c>snapctl snapshot create</c>; files change and go on the origin; the snapshot export, mounted read-only
/// (<c>ro,noload</c>), still holds every file as it was (by checksum) and <c>e2fsck -fn</c> finds it clean; and all of
/// that holds again after the server is killed with SIGKILL and started again (its journal replayed).
/// Needs root, /dev/fuse and loop devices (CI has them); without them the test fails.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class NbdFileSystemTests
{
    private static readonly TimeSpan Step = TimeSpan.FromMinutes(2);

    /// <summary>One volume exposed as a file by nbdfuse, on a loop device, optionally mounted.</summary>
    private sealed class Exposed : IDisposable
    {
        private readonly Process _fuse;
        private readonly string _fuseDir;
        public string Loop { get; }
        public string? MountPoint { get; private set; }

        private Exposed(Process fuse, string fuseDir, string loop)
        {
            _fuse = fuse;
            _fuseDir = fuseDir;
            Loop = loop;
        }

        public static async Task<Exposed> StartAsync(string dir, string name, string uri, bool readOnly)
        {
            string fuseDir = Path.Combine(dir, "fuse-" + name), pidFile = Path.Combine(dir, name + ".pid");
            Directory.CreateDirectory(fuseDir);
            File.Delete(pidFile);
            var psi = new ProcessStartInfo(Which("nbdfuse")!) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
            if (readOnly) psi.ArgumentList.Add("-r");
            foreach (var a in new[] { "-P", pidFile, Path.Combine(fuseDir, "disk"), uri }) psi.ArgumentList.Add(a);
            var fuse = Process.Start(psi)!;
            _ = fuse.StandardOutput.ReadToEndAsync();
            var errors = fuse.StandardError.ReadToEndAsync();
            var deadline = DateTime.UtcNow + Step;
            // Why we poll: nbdfuse writes its pid file once the file is ready; it has no other signal.
            while (!File.Exists(pidFile))
            {
                if (fuse.HasExited) Assert.Fail($"nbdfuse exited with {fuse.ExitCode}: {await errors}");
                if (DateTime.UtcNow > deadline) Assert.Fail("watchdog: nbdfuse did not become ready");
                await Task.Delay(50);
            }
            var args = new List<string> { "-f", "--show" };
            if (readOnly) args.Add("-r");
            args.Add(Path.Combine(fuseDir, "disk"));
            var loop = Run("losetup", args, Step);
            Assert.True(loop.ExitCode == 0, loop.ToString());
            return new Exposed(fuse, fuseDir, loop.Stdout.Trim());
        }

        public void Mount(string mountPoint, string options)
        {
            Directory.CreateDirectory(mountPoint);
            var r = Run("mount", ["-o", options, Loop, mountPoint], Step);
            Assert.True(r.ExitCode == 0, r.ToString());
            MountPoint = mountPoint;
        }

        public void Unmount()
        {
            if (MountPoint is null) return;
            var r = Run("umount", [MountPoint], Step);
            Assert.True(r.ExitCode == 0, r.ToString());
            MountPoint = null;
        }

        /// <summary>Tears everything down (best effort when a test failed half-way).</summary>
        public void Dispose()
        {
            if (MountPoint is not null) Run("umount", ["-l", MountPoint], Step);
            Run("losetup", ["-d", Loop], Step);
            Run("fusermount3", ["-u", "-z", _fuseDir], Step);
            if (!_fuse.WaitForExit(30_000)) _fuse.Kill();
            _fuse.Dispose();
        }
    }

    private static Dictionary<string, string> Checksums(string root) =>
        Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
            .Where(f => !f.Contains("lost+found", StringComparison.Ordinal))
            .ToDictionary(f => Path.GetRelativePath(root, f), f => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f))));

    private static void WriteTree(string root, int seed)
    {
        var random = new Random(seed);
        for (int d = 0; d < 6; d++)
        {
            string dir = Path.Combine(root, $"dir{d}", $"sub{d % 3}");
            Directory.CreateDirectory(dir);
            for (int f = 0; f < 8; f++)
            {
                var data = new byte[random.Next(1, 300_000)];
                random.NextBytes(data);
                File.WriteAllBytes(Path.Combine(dir, $"file{f}.bin"), data);
            }
        }
    }

    private static void AssertClean(string loop)
    {
        var fsck = Run("e2fsck", ["-fn", loop], Step);
        Assert.True(fsck.ExitCode == 0, fsck.ToString());
    }

    [Fact]
    public async Task An_ext4_file_system_on_the_origin_snapshotted_live_reads_back_intact_also_after_SIGKILL()
    {
        Assert.True(Environment.UserName == "root", "this test needs root (loop devices, mount, FUSE); CI runs as root");
        Assert.True(File.Exists("/dev/fuse"), "this test needs /dev/fuse");
        Require("nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "e2fsck", "fsfreeze");
        using var dir = new TempFolder();
        string store = dir["store"];
        var init = ToolRunner.SnapCtl("init", store, "--origin-size", "128M");
        Assert.True(init.ExitCode == 0, init.ToString());
        var serve = await ServeProcess.StartAsync(store, dir["nbd.sock"]);
        var open = new List<Exposed>();
        try
        {
            // The origin: nbdfuse, loop, ext4, a tree of files.
            var origin = await Exposed.StartAsync(dir.Path, "origin", serve.Uri(), readOnly: false);
            open.Add(origin);
            Check("mkfs.ext4", "-q", "-F", origin.Loop);
            string mnt = dir["mnt-origin"];
            origin.Mount(mnt, "rw");
            WriteTree(mnt, 1);
            var before = Checksums(mnt);
            Assert.True(before.Count >= 40);

            // sync and freeze, snapshot live, thaw.
            Check("sync");
            Check("fsfreeze", "-f", mnt);
            ToolResult created;
            try
            {
                created = await ToolProcess.RunAsync("snapctl", ["snapshot", "create", store, "fs1"], ServeProcess.Watchdog);
            }
            finally
            {
                Check("fsfreeze", "-u", mnt);
            }
            Assert.True(created.ExitCode == 0, created.ToString());

            // Change, delete and add files on the origin.
            var rewrite = before.Keys.Where((_, i) => i % 3 == 0).ToList();
            foreach (var f in rewrite) File.WriteAllBytes(Path.Combine(mnt, f), RandomNumberGenerator.GetBytes(100_000));
            foreach (var f in before.Keys.Where((_, i) => i % 3 == 1)) File.Delete(Path.Combine(mnt, f));
            WriteTree(Path.Combine(mnt, "new"), 2);
            Check("sync");
            var originAfter = Checksums(mnt);
            Assert.NotEqual(before.Count, originAfter.Count);

            async Task CheckSnapshotAsync(ServeProcess server)
            {
                var snap = await Exposed.StartAsync(dir.Path, "snap", server.Uri("fs1"), readOnly: true);
                open.Add(snap);
                string sm = dir["mnt-snap"];
                snap.Mount(sm, "ro,noload");
                Assert.Equal(before, Checksums(sm));
                snap.Unmount();
                AssertClean(snap.Loop);
                snap.Dispose();
                open.Remove(snap);
            }
            await CheckSnapshotAsync(serve);

            // The origin is left unmounted but written; then the server is killed.
            origin.Unmount();
            AssertClean(origin.Loop);
            origin.Dispose();
            open.Remove(origin);
            await serve.KillAsync();
            serve.Dispose();

            serve = await ServeProcess.StartAsync(store, dir["nbd.sock"]);
            Assert.Contains("journal was replayed", serve.Process.Stderr);
            await CheckSnapshotAsync(serve);
            var again = await Exposed.StartAsync(dir.Path, "origin2", serve.Uri(), readOnly: false);
            open.Add(again);
            AssertClean(again.Loop);
            again.Mount(dir["mnt-origin2"], "ro");
            Assert.Equal(originAfter, Checksums(dir["mnt-origin2"]));
            again.Unmount();
            Assert.Equal(0, await serve.StopAsync());
        }
        finally
        {
            foreach (var e in open) e.Dispose();
            serve.Dispose();
        }
    }
}
