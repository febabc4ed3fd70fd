using System.Diagnostics;

namespace Journal.Tests.Nbd;

/// <summary>
/// The real NBD clients the tests drive (Debian packages: qemu-utils, libnbd-bin, nbdkit, fio, fuse3), and a runner for
/// them. A missing client is installed with <c>apt-get install -y</c> (CI runs as root); if it still cannot be found the
/// test fails: these tests never skip.
/// </summary>
internal static class ExternalTools
{
    private static readonly object s_lock = new();
    private static readonly HashSet<string> s_present = new(StringComparer.Ordinal);
    private static bool s_updated;

    /// <summary>Program name and the Debian package that provides it.</summary>
    public static readonly IReadOnlyDictionary<string, string> Packages = new Dictionary<string, string>
    {
        ["qemu-io"] = "qemu-utils",
        ["qemu-img"] = "qemu-utils",
        ["qemu-nbd"] = "qemu-utils",
        ["nbdinfo"] = "libnbd-bin",
        ["nbdcopy"] = "libnbd-bin",
        ["nbdfuse"] = "libnbd-bin",
        ["nbdkit"] = "nbdkit",
        ["fio"] = "fio",
        ["fusermount3"] = "fuse3",
        ["losetup"] = "mount",
        ["mkfs.ext4"] = "e2fsprogs",
        ["e2fsck"] = "e2fsprogs",
        ["fsfreeze"] = "util-linux",
    };

    /// <summary>Makes sure <paramref name="programs"/> can be run, installing their packages if needed; fails otherwise.</summary>
    public static void Require(params string[] programs)
    {
        lock (s_lock)
        {
            var missing = programs.Where(p => !s_present.Contains(p) && Which(p) is null).ToList();
            foreach (var p in programs.Except(missing)) s_present.Add(p);
            if (missing.Count == 0) return;
            var packages = missing.Select(p => Packages.TryGetValue(p, out var pkg) ? pkg : p).Distinct().ToArray();
            string log = "";
            if (!s_updated)
            {
                log += Run("apt-get", ["update"], TimeSpan.FromMinutes(5)).Output;
                s_updated = true;
            }
            var install = Run("apt-get", ["install", "-y", "--no-install-recommends", .. packages], TimeSpan.FromMinutes(10),
                new Dictionary<string, string> { ["DEBIAN_FRONTEND"] = "noninteractive" });
            log += install.Output;
            var still = missing.Where(p => Which(p) is null).ToList();
            if (still.Count > 0)
                Assert.Fail($"required NBD test clients are missing: {string.Join(", ", still)} (Debian packages {string.Join(" ", packages)}); " +
                    $"'apt-get install -y {string.Join(" ", packages)}' exited {install.ExitCode}:\n{Tail(log)}");
            foreach (var p in programs) s_present.Add(p);
        }
    }

    private static string Tail(string s) => s.Length <= 2000 ? s : s[^2000..];

    /// <summary>The full path of <paramref name="program"/> on PATH (or /sbin, /usr/sbin), or null.</summary>
    public static string? Which(string program)
    {
        var dirs = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Concat(["/usr/sbin", "/sbin", "/usr/bin", "/bin"]);
        foreach (var d in dirs.Where(d => d.Length > 0))
        {
            var p = Path.Combine(d, program);
            if (File.Exists(p)) return p;
        }
        return null;
    }

    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        public string Output => Stdout + Stderr;
        public override string ToString() => $"exit {ExitCode}\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
    }

    /// <summary>Runs a program to the end; killed and failed after <paramref name="timeout"/> (watchdog).</summary>
    public static Result Run(string program, IReadOnlyList<string> args, TimeSpan? timeout = null, IReadOnlyDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(Which(program) ?? program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"{program}: could not start");
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        var limit = timeout ?? TimeSpan.FromMinutes(2);
        if (!p.WaitForExit(limit))
        {
            try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            throw new TimeoutException($"watchdog: {program} {string.Join(' ', args)} did not finish within {limit}");
        }
        p.WaitForExit();
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }

    public static Task<Result> RunAsync(string program, IReadOnlyList<string> args, TimeSpan? timeout = null) =>
        Task.Run(() => Run(program, args, timeout));

    /// <summary>Runs and asserts exit 0.</summary>
    public static Result Check(string program, params string[] args)
    {
        var r = Run(program, args);
        Assert.True(r.ExitCode == 0, $"{program} {string.Join(' ', args)}: {r}");
        return r;
    }
}
