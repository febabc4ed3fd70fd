using System.Diagnostics;
using System.Globalization;
using Journal.Storage;
using JournalBench.Measure;

namespace JournalBench.Peers;

/// <summary>
/// The qemu tools used as peers (Debian package <c>qemu-utils</c>): finding them on PATH, running them, and making the
/// images they run on: a raw base written in full with zeros (as the store's origin is) and a fresh qcow2 overlay on it.
/// </summary>
internal static class QemuTools
{
    /// <summary>Why a peer cannot run: the message printed when it is skipped.</summary>
    public static string MissingMessage(string tool) => $"{tool} not found on PATH (Debian package qemu-utils)";

    /// <summary>The full path of <paramref name="tool"/> found on PATH, or null.</summary>
    public static string? Find(string tool)
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? "";
        foreach (var dir in path.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(dir, tool);
            if (File.Exists(candidate) && IsExecutable(candidate)) return candidate;
        }
        return null;
    }

    private static bool IsExecutable(string file) =>
        OperatingSystem.IsWindows() || (File.GetUnixFileMode(file) & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) != 0;

    /// <summary>The result of running a tool to completion.</summary>
    /// <param name="SinceWatched">From the arrival of the first output line holding the watched text to the exit; null when not watched or not seen.</param>
    internal sealed record Run(int ExitCode, string StandardOutput, string StandardError, TimeSpan Elapsed, TimeSpan? SinceWatched = null)
    {
        /// <summary>Throws an <see cref="IOException"/> naming the command when the tool failed.</summary>
        public Run EnsureSuccess(string commandLine)
        {
            if (ExitCode != 0)
                throw new IOException($"{commandLine}: exit code {ExitCode}: {FirstLine(StandardError.Length > 0 ? StandardError : StandardOutput)}");
            return this;
        }
    }

    private static string FirstLine(string text)
    {
        var t = text.Trim();
        int nl = t.IndexOf('\n');
        return nl < 0 ? t : t[..nl];
    }

    /// <summary>
    /// Runs <paramref name="exe"/> with <paramref name="args"/> (no shell) and waits for it; wall time from start to exit.
    /// With <paramref name="watchFor"/>, standard output is read line by line as it arrives and the time from the first
    /// line holding that text to the exit is measured too.
    /// </summary>
    public static async Task<Run> RunAsync(string exe, IReadOnlyList<string> args, CancellationToken ct, string? watchFor = null)
    {
        var psi = new ProcessStartInfo(exe)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        var sw = Stopwatch.StartNew();
        using var p = Process.Start(psi) ?? throw new IOException($"{exe}: could not be started");
        p.StandardInput.Close();
        long seen = 0;
        var stdout = ReadLinesAsync(p.StandardOutput, watchFor, () => Interlocked.CompareExchange(ref seen, Stopwatch.GetTimestamp(), 0), ct);
        var stderr = p.StandardError.ReadToEndAsync(ct);
        try
        {
            await p.WaitForExitAsync(ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            throw;
        }
        long exited = Stopwatch.GetTimestamp();
        var elapsed = sw.Elapsed;
        string output = await stdout.ConfigureAwait(false);
        long at = Interlocked.Read(ref seen);
        // The watched line may be read only after the exit was seen (a slow reader on a busy machine): then the time
        // from the line to the exit is not known, and none is reported.
        TimeSpan? since = at != 0 && at <= exited ? Stopwatch.GetElapsedTime(at, exited) : null;
        return new Run(p.ExitCode, output, await stderr.ConfigureAwait(false), elapsed, since);
    }

    private static async Task<string> ReadLinesAsync(StreamReader reader, string? watchFor, Action onSeen, CancellationToken ct)
    {
        var sb = new System.Text.StringBuilder();
        string? line;
        while ((line = await reader.ReadLineAsync(ct).ConfigureAwait(false)) is not null)
        {
            if (watchFor is not null && line.Contains(watchFor, StringComparison.Ordinal)) onSeen();
            sb.Append(line).Append('\n');
        }
        return sb.ToString();
    }

    /// <summary>A command line for messages and reports, arguments quoted where they hold spaces.</summary>
    public static string CommandLine(string exe, IEnumerable<string> args) =>
        string.Join(' ', new[] { Path.GetFileName(exe) }.Concat(args.Select(a => a.Length == 0 || a.Contains(' ') || a.Contains('\'') ? "'" + a.Replace("'", "'\\''") + "'" : a)));

    /// <summary>The first line of <c>tool --version</c>, or null.</summary>
    public static async Task<string?> VersionAsync(string exe, CancellationToken ct)
    {
        var r = await RunAsync(exe, ["--version"], ct).ConfigureAwait(false);
        return r.ExitCode == 0 ? FirstLine(r.StandardOutput) : null;
    }

    /// <summary>Makes a raw base image of <paramref name="bytes"/> bytes written in full with zeros and durable, like the store's origin.</summary>
    public static void CreateRawBase(string path, long bytes)
    {
        using var dev = FileBlockDevice.Create(path, bytes / BlockDevice.SectorSize);
    }

    /// <summary>
    /// Makes a fresh qcow2 overlay on the raw <paramref name="basePath"/> with clusters of <paramref name="clusterBytes"/>
    /// (no preallocation: clusters are allocated as they are first written).
    /// </summary>
    public static async Task CreateOverlayAsync(string qemuImg, string overlayPath, string basePath, int clusterBytes, CancellationToken ct)
    {
        string[] args = ["create", "-q", "-f", "qcow2", "-o", "cluster_size=" + clusterBytes.ToString(CultureInfo.InvariantCulture), "-b", basePath, "-F", "raw", overlayPath];
        (await RunAsync(qemuImg, args, ct).ConfigureAwait(false)).EnsureSuccess(CommandLine(qemuImg, args));
    }

    /// <summary>
    /// The qcow2 peer's images as each run starts: a raw base of <paramref name="bytes"/> written in full, a fresh overlay
    /// on it with clusters of <paramref name="clusterBytes"/>, both dropped from the page cache (a cold start, like the
    /// store's side).
    /// </summary>
    public static async Task CreateColdImagesAsync(string qemuImg, string basePath, string overlayPath, long bytes, int clusterBytes, CancellationToken ct)
    {
        CreateRawBase(basePath, bytes);
        await CreateOverlayAsync(qemuImg, overlayPath, basePath, clusterBytes, ct).ConfigureAwait(false);
        PageCache.Drop(basePath);
        PageCache.Drop(overlayPath);
    }

    /// <summary>Deletes <paramref name="path"/> if it exists, ignoring errors (temporary files).</summary>
    public static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
