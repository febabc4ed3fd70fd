using System.Globalization;
using System.Text.RegularExpressions;
using JournalBench.Measure;

namespace JournalBench.Peers;

/// <summary>
/// The qcow2 peer of the random first-write benchmark: <c>qemu-img bench -w -t none -d DEPTH -s SIZE -S STRIDE -c COUNT</c>
/// on a fresh qcow2 overlay (clusters of the store's chunk size) over a raw base of the store origin's size, the stride
/// chosen so that every request is the first write of a cluster nobody has allocated. Optionally with one flush after
/// the last request (<c>--flush-interval=COUNT</c>), which makes the run durable as the store's closing flush does.
/// </summary>
/// <remarks>
/// Durability: with <c>-t none</c> the data goes to the disk with O_DIRECT, but without a flush neither it nor qcow2's
/// own metadata (L2 tables and refcounts, cached in qemu-img's memory and written when they are evicted or when the image
/// is closed, after the timed part) is durable when the run ends. qemu-img times from the first request to the last
/// completion (and the flush, when asked for); opening and closing the image are outside its time.
/// </remarks>
internal static partial class QemuImgBench
{
    /// <summary>What one run measured.</summary>
    internal sealed record Result(long Writes, double Seconds, string CommandLine, bool Flush)
    {
        public double WritesPerS => Writes / Seconds;
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
    public static string[] Arguments(string overlay, long count, int depth, int requestBytes, long stride, bool flush)
    {
        var args = new List<string>
        {
            "bench", "-w", "-t", "none", "-d", depth.ToString(CultureInfo.InvariantCulture), "-s", requestBytes.ToString(CultureInfo.InvariantCulture),
            "-S", stride.ToString(CultureInfo.InvariantCulture), "-c", count.ToString(CultureInfo.InvariantCulture),
            // A non-zero pattern: the store writes non-zero data too (qemu-img writes zeros by default).
            "--pattern=7",
        };
        if (flush) args.Add("--flush-interval=" + count.ToString(CultureInfo.InvariantCulture));
        args.AddRange(["-f", "qcow2", overlay]);
        return [.. args];
    }

    /// <summary>
    /// Makes a fresh raw base of <paramref name="imageBytes"/> and a fresh qcow2 overlay with
    /// <paramref name="clusterBytes"/> clusters in the system temporary folder, drops both from the page cache, runs
    /// the bench and removes the images.
    /// </summary>
    public static async Task<Result> RunAsync(string qemuImg, long imageBytes, int clusterBytes, long count, int depth, int requestBytes, bool flush, CancellationToken ct)
    {
        long stride = FirstWriteStride(imageBytes, count, clusterBytes)
            ?? throw new ArgumentException($"an image of {imageBytes} bytes has fewer than {count} clusters of {clusterBytes} bytes");
        using var baseFile = new BenchCommon.TempFile("qcow2-base");
        using var overlayFile = new BenchCommon.TempFile("qcow2-overlay");
        try
        {
            QemuTools.CreateRawBase(baseFile.Path, imageBytes);
            await QemuTools.CreateOverlayAsync(qemuImg, overlayFile.Path, baseFile.Path, clusterBytes, ct).ConfigureAwait(false);
            PageCache.Drop(baseFile.Path);
            PageCache.Drop(overlayFile.Path);
            var args = Arguments(overlayFile.Path, count, depth, requestBytes, stride, flush);
            string commandLine = QemuTools.CommandLine(qemuImg, args);
            var run = (await QemuTools.RunAsync(qemuImg, args, ct).ConfigureAwait(false)).EnsureSuccess(commandLine);
            double seconds = ParseSeconds(run.StandardOutput)
                ?? throw new IOException($"{commandLine}: no \"Run completed in X seconds.\" line in its output: {run.StandardOutput.Trim()}");
            return new Result(count, seconds, commandLine, flush);
        }
        finally
        {
            QemuTools.TryDelete(overlayFile.Path);
        }
    }
}
