using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Journal;
using Journal.Storage;

namespace JournalBench;

/// <summary>Helpers shared by the benchmarks: options, temporary files, timing, tables, JSON, the fdatasync baseline.</summary>
internal static class BenchCommon
{
    /// <summary><c>--seconds</c>: how long each measured case runs.</summary>
    public static Option<double> SecondsOption(double defaultSeconds) => new("--seconds")
    {
        Description = "Seconds each measured case runs (ignored when --count is given).",
        DefaultValueFactory = _ => defaultSeconds,
    };

    /// <summary><c>--count</c>: a fixed number of operations per case instead of a duration.</summary>
    public static Option<long?> CountOption() => new("--count")
    {
        Description = "Operations per measured case (instead of --seconds).",
    };

    /// <summary><c>--json</c>: print one JSON object instead of the table.</summary>
    public static Option<bool> JsonOption() => new("--json")
    {
        Description = "Print the results as one JSON object on standard output.",
    };

    /// <summary>
    /// Runs the command line: usage errors and values the library refused (<see cref="JournalArgumentException"/>) print
    /// one line each and exit 64; the project's other errors and I/O errors print one line and exit 2.
    /// </summary>
    public static async Task<int> InvokeAsync(RootCommand root, string[] args)
    {
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var e in parsed.Errors) Console.Error.WriteLine($"journal-bench: {e.Message}");
            Console.Error.WriteLine("journal-bench: see journal-bench --help");
            return 64;
        }
        try
        {
            return await parsed.InvokeAsync().ConfigureAwait(false);
        }
        catch (JournalArgumentException e)
        {
            Console.Error.WriteLine($"journal-bench: {e.Message}");
            return 64;
        }
        catch (Exception e) when (e is JournalException or IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"journal-bench: {e.Message}");
            return 2;
        }
    }

    /// <summary>Validates a duration or count option pair; returns a usage error message or null.</summary>
    public static string? CheckBudget(double seconds, long? count)
    {
        if (count is <= 0) return "--count must be positive";
        if (count is null && (seconds <= 0 || double.IsNaN(seconds) || seconds > 3600)) return "--seconds must be in (0, 3600]";
        return null;
    }

    /// <summary>Prints a usage error (exit code 64).</summary>
    public static int UsageError(string message)
    {
        Console.Error.WriteLine($"journal-bench: {message}");
        return 64;
    }

    /// <summary>A file in the system temporary folder, deleted on dispose.</summary>
    public sealed class TempFile : IDisposable
    {
        public TempFile(string label)
        {
            Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(),
                $"journal-bench-{label}-{Environment.ProcessId}-{Guid.NewGuid():N}.tmp");
        }

        /// <summary>The full path (the file is not created).</summary>
        public string Path { get; }

        public void Dispose()
        {
            try { File.Delete(Path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>Runs <paramref name="step"/> until <paramref name="count"/> steps or <paramref name="seconds"/> elapse; returns (steps, elapsed).</summary>
    public static (long Steps, TimeSpan Elapsed) RunFor(double seconds, long? count, Func<long, bool> step)
    {
        var sw = Stopwatch.StartNew();
        long n = 0;
        var limit = TimeSpan.FromSeconds(seconds);
        while (count is { } c ? n < c : sw.Elapsed < limit)
        {
            if (!step(n)) break;
            n++;
        }
        return (n, sw.Elapsed);
    }

    /// <summary>
    /// Plain appends to a preallocated, zero-filled file (wrapping at its end) with FileStream writes and fdatasync:
    /// the baseline the log is compared with. Overwriting written blocks, as the log does.
    /// </summary>
    public sealed class FdatasyncBaseline : IDisposable
    {
        private readonly FileStream _fs;
        private readonly long _size;

        public FdatasyncBaseline(string path, long bytes)
        {
            using (var dev = FileBlockDevice.Create(path, bytes / BlockDevice.SectorSize)) { }
            _fs = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.None, 4096, FileOptions.None);
            _size = bytes;
        }

        public long Syncs { get; private set; }

        /// <summary>Appends <paramref name="data"/> (through the FileStream buffer, to the OS).</summary>
        public void Append(ReadOnlySpan<byte> data)
        {
            if (_fs.Position + data.Length > _size) _fs.Position = 0;
            _fs.Write(data);
        }

        /// <summary>Hands buffered bytes to the OS and fdatasyncs the file.</summary>
        public void Sync()
        {
            _fs.Flush(flushToDisk: false);
            DataSync(_fs);
            Syncs++;
        }

        public void Dispose() => _fs.Dispose();
    }

    /// <summary>fdatasync(2) on Linux, FlushToDisk elsewhere.</summary>
    public static void DataSync(FileStream fs)
    {
        int errno = NativeFile.DataSync(fs.SafeFileHandle);
        if (errno != 0) throw new IOException($"{fs.Name}: fdatasync failed: {NativeFile.Describe(errno)}");
    }

    /// <summary>A plain-text table with right-aligned numeric columns.</summary>
    public static string Table(IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows)
    {
        var all = new List<IReadOnlyList<string>> { header };
        all.AddRange(rows);
        var widths = new int[header.Count];
        foreach (var r in all) for (int i = 0; i < r.Count; i++) widths[i] = Math.Max(widths[i], r[i].Length);
        var sb = new StringBuilder();
        for (int ri = 0; ri < all.Count; ri++)
        {
            var r = all[ri];
            for (int i = 0; i < r.Count; i++)
            {
                if (i > 0) sb.Append("  ");
                bool left = i == 0 || ri == 0 || !LooksNumeric(r[i]);
                sb.Append(left ? r[i].PadRight(widths[i]) : r[i].PadLeft(widths[i]));
            }
            sb.Append('\n');
            if (ri == 0) sb.Append(new string('-', widths.Sum() + 2 * (widths.Length - 1))).Append('\n');
        }
        return sb.ToString();
    }

    private static bool LooksNumeric(string s) => s.Length > 0 && (char.IsDigit(s[0]) || s[0] == '-' && s.Length > 1);

    /// <summary>Formats a number with the invariant culture.</summary>
    public static string F(double v, int decimals = 0) => v.ToString("N" + decimals, CultureInfo.InvariantCulture);

    /// <summary>Writes one JSON object, indented, to standard output.</summary>
    public static void PrintJson(JsonObject obj)
    {
        var options = new JsonSerializerOptions { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        Console.Out.WriteLine(obj.ToJsonString(options));
    }

    /// <summary>What the run was measured on.</summary>
    public static JsonObject Machine() => new()
    {
        ["os"] = System.Runtime.InteropServices.RuntimeInformation.OSDescription,
        ["runtime"] = System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription,
        ["processors"] = Environment.ProcessorCount,
        ["tempFolder"] = Path.GetTempPath(),
    };

    /// <summary>Progress line on a terminal (stderr); nothing when redirected.</summary>
    public static void Progress(string text)
    {
        if (!Console.IsErrorRedirected) Console.Error.Write($"\r{text,-78}\r");
    }

    /// <summary>Clears the progress line.</summary>
    public static void ProgressDone()
    {
        if (!Console.IsErrorRedirected) Console.Error.Write($"\r{new string(' ', 78)}\r");
    }
}
