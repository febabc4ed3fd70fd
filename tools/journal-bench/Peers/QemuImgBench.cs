using System.Globalization;
using System.Text.RegularExpressions;
using JournalBench.Measure;

namespace JournalBench.Peers;

/// <summary>
/// The qcow2 peer of the random first-write benchmark: <c>qemu-img bench -w -t none -d DEPTH -s SIZE -S STRIDE -c COUNT</c>
/// on a fresh qcow2 overlay (clusters of the store's chunk size) over a raw base of the store origin's size, the stride
/// chosen so that every request is the first write of a cluster nobody has allocated.
/// </summary>
/// <remarks>
/// <para>Two figures from one run. <b>Run</b>: qemu-img's own time ("Run completed in X seconds."), from the first request
/// to the last completion. It is not durable: with <c>-t none</c> the data goes to the disk with O_DIRECT but is not
/// flushed, and qcow2's metadata (L2 tables, refcounts) is still in qemu-img's cache. <b>Durable</b>: the run plus the
/// close that follows it, which writes that metadata and flushes the image (fdatasync) — the time from the "Run
/// completed" line's arrival to the process's exit, read through <c>stdbuf -oL</c> so the line arrives when it is
/// printed. (<c>--flush-interval=COUNT</c> is not used for this: qemu-img bench stops its clock when the last request
/// completes, before the flush it then issues completes.) Without stdbuf the durable figure is not given.</para>
/// </remarks>
internal static partial class QemuImgBench
{
    /// <summary>What one run measured.</summary>
    /// <param name="Writes">Requests.</param>
    /// <param name="Seconds">qemu-img's own time for the requests.</param>
    /// <param name="CloseSeconds">From the "Run completed" line to the exit: qcow2's metadata written and the image flushed; null without stdbuf.</param>
    /// <param name="CommandLine">The command run.</param>
    internal sealed record Result(long Writes, double Seconds, double? CloseSeconds, string CommandLine)
    {
        public double WritesPerS => Writes / Seconds;

        /// <summary>Requests per second until they are durable (run plus close), or null.</summary>
        public double? DurableWritesPerS => CloseSeconds is { } c ? Writes / (Seconds + c) : null;
    }

    [GeneratedRegex(@"Run completed in ([0-9]+(?:\.[0-9]+)?) seconds\.")]
    private static partial Regex CompletedLine();

    /// <summary>Seconds from qemu-img bench's "Run completed in X seconds." line, or null when it has none.</summary>
    public static double? ParseSeconds(string output)
    {
        var m = CompletedLine().Match(output);
        return m.Success ? double.Parse(m.Groups[1].Value, NumberStyles.Float, CultureInfo.InvariantCulture) : null;
    }

    /// <summary>
    /// The stride (bytes, a whole number of clusters) that spreads <paramref name="count"/> requests over the image
    /// without wrapping, so that each lands in its own cluster: the image size over the count, rounded down to whole
    /// clusters, at least one cluster. Null when the image has fewer clusters than requests.
    /// </summary>
    public static long? FirstWriteStride(long imageBytes, long count, int clusterBytes)
    {
        if (count <= 0 || clusterBytes <= 0) return null;
        long stride = imageBytes / count / clusterBytes * clusterBytes;
        if (stride < clusterBytes) return null;
        return stride;
    }

    /// <summary>The arguments of one run (after the program name).</summary>
    public static string[] Arguments(string overlay, long count, int depth, int requestBytes, long stride) =>
    [
        "bench", "-w", "-t", "none", "-d", depth.ToString(CultureInfo.InvariantCulture), "-s", requestBytes.ToString(CultureInfo.InvariantCulture),
        "-S", stride.ToString(CultureInfo.InvariantCulture), "-c", count.ToString(CultureInfo.InvariantCulture),
        // A non-zero pattern: the store writes non-zero data too (qemu-img writes zeros by default).
        "--pattern=7", "-f", "qcow2", overlay,
    ];

    /// <summary>
    /// Makes a fresh raw base of <paramref name="imageBytes"/> and a fresh qcow2 overlay with
    /// <paramref name="clusterBytes"/> clusters in the system temporary folder, drops both from the page cache, runs
    /// the bench and removes the images.
    /// </summary>
    public static async Task<Result> RunAsync(string qemuImg, long imageBytes, int clusterBytes, long count, int depth, int requestBytes, CancellationToken ct)
    {
        long stride = FirstWriteStride(imageBytes, count, clusterBytes)
            ?? throw new ArgumentException($"an image of {imageBytes} bytes has fewer than {count} clusters of {clusterBytes} bytes");
        using var baseFile = new BenchCommon.TempFile("qcow2-base");
        using var overlayFile = new BenchCommon.TempFile("qcow2-overlay");
        try
        {
            await QemuTools.CreateColdImagesAsync(qemuImg, baseFile.Path, overlayFile.Path, imageBytes, clusterBytes, ct).ConfigureAwait(false);
            var args = Arguments(overlayFile.Path, count, depth, requestBytes, stride);
            string commandLine = QemuTools.CommandLine(qemuImg, args);
            string? stdbuf = QemuTools.Find("stdbuf");
            var run = stdbuf is null
                ? await QemuTools.RunAsync(qemuImg, args, ct).ConfigureAwait(false)
                : await QemuTools.RunAsync(stdbuf, ["-oL", qemuImg, .. args], ct, watchFor: "Run completed").ConfigureAwait(false);
            run.EnsureSuccess(commandLine);
            double seconds = ParseSeconds(run.StandardOutput)
                ?? throw new IOException($"{commandLine}: no \"Run completed in X seconds.\" line in its output: {run.StandardOutput.Trim()}");
            double? close = run.SinceWatched is { } since ? since.TotalSeconds : null;
            return new Result(count, seconds, close, commandLine);
        }
        finally
        {
            QemuTools.TryDelete(overlayFile.Path);
        }
    }
}
