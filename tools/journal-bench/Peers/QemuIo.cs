using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using JournalBench.Measure;

namespace JournalBench.Peers;

/// <summary>
/// The qcow2 peer of the sequential first-write benchmark: <c>qemu-io -f qcow2 [-t CACHE] OVERLAY</c> with
/// <c>write -P 7 OFFSET LENGTH</c> for every request, then <c>flush</c>, on a fresh qcow2 overlay (64 KiB clusters by
/// default) over a raw base of the same size.
/// </summary>
/// <remarks>
/// <para>The commands go to qemu-io's standard input, one per prompt (qemu-io prints its prompt when the previous
/// command has completed), so that the flush can be timed apart: each write runs with <c>-C</c> (qemu-io reports
/// "bytes,ops,time,bytes/s,ops/s") and its time is qemu-io's own (from the submission of the request to its completion,
/// without filling its buffer with the pattern); the flush is timed here, from sending <c>flush</c> to the prompt after
/// it. Write time plus flush time is the figure; the wall time of the writes as seen from here (buffer fills, command
/// parsing and the pipe's round trips included) is kept beside it.</para>
/// <para>Cache modes: qemu-io's default is <c>writethrough</c> (each write, and each metadata update, is flushed before
/// it completes); <c>none</c> is O_DIRECT without per-write flushes; <c>writeback</c> goes through the page cache. The
/// closing flush makes every mode durable.</para>
/// </remarks>
internal static partial class QemuIo
{
    /// <summary>qemu-io's cache mode when none is given.</summary>
    public const string DefaultCacheMode = "writethrough";

    /// <summary>What one run measured.</summary>
    internal sealed record Result(string CacheMode, long Bytes, long RequestBytes, long Requests, double WriteSeconds, double FlushSeconds,
        double WriteWallSeconds, string CommandLine)
    {
        public double Seconds => WriteSeconds + FlushSeconds;
        public double BytesPerS => Bytes / Seconds;
        public bool IsDefaultCacheMode => CacheMode == DefaultCacheMode;
    }

    /// <summary>One <c>-C</c> statistics line: bytes, operations, seconds.</summary>
    internal readonly record struct Stats(long Bytes, long Ops, double Seconds);

    [GeneratedRegex(@"^([0-9]+),([0-9]+),([0-9:.]+),([0-9]+(?:\.[0-9]+)?),([0-9]+(?:\.[0-9]+)?)$")]
    private static partial Regex StatsLine();

    private const string Prompt = "qemu-io> ";

    /// <summary>A line of qemu-io's output without the prompts printed before it.</summary>
    public static string StripPrompts(string line)
    {
        while (line.StartsWith(Prompt, StringComparison.Ordinal)) line = line[Prompt.Length..];
        return line.Trim();
    }

    /// <summary>
    /// Parses a <c>-C</c> line ("bytes,ops,h:mm:ss.ss,bytes/s,ops/s", prompts allowed before it); the seconds come from
    /// bytes over bytes/s (printed to three decimals) rather than the time field (printed to hundredths).
    /// </summary>
    public static Stats? ParseStats(string line)
    {
        var m = StatsLine().Match(StripPrompts(line));
        if (!m.Success) return null;
        long bytes = long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
        long ops = long.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
        double rate = double.Parse(m.Groups[4].Value, NumberStyles.Float, CultureInfo.InvariantCulture);
        double opsRate = double.Parse(m.Groups[5].Value, NumberStyles.Float, CultureInfo.InvariantCulture);
        double seconds = rate > 0 ? bytes / rate : opsRate > 0 ? ops / opsRate : ParseTime(m.Groups[3].Value);
        return new Stats(bytes, ops, seconds);
    }

    /// <summary>qemu-io's time field: "[h:]mm:ss.ss" or "ss.ss".</summary>
    public static double ParseTime(string text)
    {
        double total = 0;
        foreach (var part in text.Split(':')) total = total * 60 + double.Parse(part, NumberStyles.Float, CultureInfo.InvariantCulture);
        return total;
    }

    /// <summary>
    /// Makes a fresh raw base and qcow2 overlay of <paramref name="bytes"/> in the system temporary folder, drops them
    /// from the page cache, writes the overlay from offset 0 in requests of <paramref name="requestBytes"/> with qemu-io
    /// in cache mode <paramref name="cacheMode"/> (null: qemu-io's default), flushes, and removes the images.
    /// </summary>
    public static async Task<Result> RunAsync(string qemuIo, string qemuImg, long bytes, int clusterBytes, long requestBytes, string? cacheMode, CancellationToken ct)
    {
        using var baseFile = new BenchCommon.TempFile("qemu-io-base");
        using var overlayFile = new BenchCommon.TempFile("qemu-io-overlay");
        try
        {
            await QemuTools.CreateColdImagesAsync(qemuImg, baseFile.Path, overlayFile.Path, bytes, clusterBytes, ct).ConfigureAwait(false);
            var args = new List<string>();
            if (cacheMode is not null) args.AddRange(["-t", cacheMode]);
            args.AddRange(["-f", "qcow2", overlayFile.Path]);
            return await DriveAsync(qemuIo, args, bytes, requestBytes, cacheMode ?? DefaultCacheMode, ct).ConfigureAwait(false);
        }
        finally
        {
            QemuTools.TryDelete(overlayFile.Path);
        }
    }

    private static async Task<Result> DriveAsync(string qemuIo, List<string> args, long bytes, long requestBytes, string cacheMode, CancellationToken ct)
    {
        string commandLine = QemuTools.CommandLine(qemuIo, args);
        var psi = new ProcessStartInfo(qemuIo)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardInputEncoding = new UTF8Encoding(false),
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new IOException($"{commandLine}: could not be started");
        var stderr = p.StandardError.ReadToEndAsync(ct);
        var input = p.StandardInput;
        input.AutoFlush = true;
        var output = new PromptReader(p.StandardOutput, commandLine, stderr);
        try
        {
            // Why we wait: qemu-io prints its prompt once the image is open, and again after each command completes.
            // One command is sent per prompt: qemu-io reads its input with stdio after polling the descriptor, so a
            // second line sent before the first is read may sit in its buffer unseen.
            await output.ReadToPromptAsync(ct).ConfigureAwait(false);
            long requests = 0;
            double writeSeconds = 0;
            long written = 0;
            var wall = Stopwatch.StartNew();
            for (long off = 0; off < bytes; off += requestBytes, requests++)
            {
                await input.WriteAsync(string.Create(CultureInfo.InvariantCulture, $"write -C -P 7 {off} {Math.Min(requestBytes, bytes - off)}\n")).ConfigureAwait(false);
                string answer = await output.ReadToPromptAsync(ct).ConfigureAwait(false);
                var stats = ParseStats(answer) ?? throw new IOException($"{commandLine}: write at {off}: {answer.Trim()}");
                writeSeconds += stats.Seconds;
                written += stats.Bytes;
            }
            double writeWall = wall.Elapsed.TotalSeconds;
            if (written != bytes) throw new IOException($"{commandLine}: wrote {written} bytes, expected {bytes}");

            var flush = Stopwatch.StartNew();
            await input.WriteAsync("flush\n").ConfigureAwait(false);
            string flushAnswer = await output.ReadToPromptAsync(ct).ConfigureAwait(false);
            double flushSeconds = flush.Elapsed.TotalSeconds;
            if (flushAnswer.Trim().Length > 0) throw new IOException($"{commandLine}: flush: {flushAnswer.Trim()}");

            await input.WriteAsync("quit\n").ConfigureAwait(false);
            input.Close();
            await p.WaitForExitAsync(ct).ConfigureAwait(false);
            if (p.ExitCode != 0) throw new IOException($"{commandLine}: exit code {p.ExitCode}: {(await stderr.ConfigureAwait(false)).Trim()}");
            string commands = requests == 1 ? $"write -P 7 0 {bytes}; flush" : $"write -P 7 OFFSET {requestBytes} (x{requests}, OFFSET from 0 by {requestBytes}); flush";
            return new Result(cacheMode, bytes, requestBytes, requests, writeSeconds, flushSeconds, writeWall, $"{commandLine}, commands on standard input: {commands}");
        }
        catch
        {
            try { if (!p.HasExited) p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            throw;
        }
    }

    /// <summary>Reads qemu-io's output up to each prompt: what a command printed, once it has completed.</summary>
    private sealed class PromptReader(StreamReader output, string commandLine, Task<string> stderr)
    {
        private readonly StringBuilder _pending = new();
        private readonly char[] _buffer = new char[4096];

        /// <summary>Text up to the next prompt (the prompt consumed); fails with qemu-io's error output if it exits first.</summary>
        public async Task<string> ReadToPromptAsync(CancellationToken ct)
        {
            while (true)
            {
                string text = _pending.ToString();
                int at = text.IndexOf(Prompt, StringComparison.Ordinal);
                if (at >= 0)
                {
                    _pending.Remove(0, at + Prompt.Length);
                    return text[..at];
                }
                int n = await output.ReadAsync(_buffer.AsMemory(), ct).ConfigureAwait(false);
                if (n == 0) throw new IOException($"{commandLine}: exited early: {(await stderr.ConfigureAwait(false)).Trim()} {text.Trim()}".TrimEnd());
                _pending.Append(_buffer, 0, n);
            }
        }
    }
}
