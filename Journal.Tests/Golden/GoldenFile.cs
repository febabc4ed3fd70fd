using System.Runtime.CompilerServices;
using System.Text;

namespace Journal.Tests.Golden;

/// <summary>
/// Golden-file comparison. The expected text lives in a committed <c>Golden/&lt;name&gt;.verified.txt</c> beside this
/// file. On mismatch the actual text is written to <c>&lt;name&gt;.received.txt</c> (ignored by git) and the test fails
/// with the first differing lines. Set <c>GOLDEN_ACCEPT=1</c> to overwrite the verified file with what was received.
/// A missing verified file is a failure too (unless accepting), so a new golden test cannot pass by accident.
/// </summary>
public static class GoldenFile
{
    /// <summary>Compares <paramref name="actual"/> with the verified file named <paramref name="name"/>.</summary>
    public static void Verify(string name, string actual, [CallerFilePath] string callerFile = "")
    {
        string dir = FindGoldenDirectory(callerFile);
        string verified = Path.Combine(dir, name + ".verified.txt");
        string received = Path.Combine(dir, name + ".received.txt");
        actual = actual.Replace("\r\n", "\n");

        if (Environment.GetEnvironmentVariable("GOLDEN_ACCEPT") == "1")
        {
            File.WriteAllText(verified, actual, new UTF8Encoding(false));
            if (File.Exists(received)) File.Delete(received);
            return;
        }

        if (!File.Exists(verified))
        {
            File.WriteAllText(received, actual, new UTF8Encoding(false));
            Assert.Fail($"No verified file {verified}. The received text is in {received}; review it and run with GOLDEN_ACCEPT=1 to accept.");
        }

        string expected = File.ReadAllText(verified).Replace("\r\n", "\n");
        if (expected == actual)
        {
            if (File.Exists(received)) File.Delete(received);
            return;
        }

        File.WriteAllText(received, actual, new UTF8Encoding(false));
        Assert.Fail($"Golden file {name} differs. Received: {received}\n{Diff(expected, actual)}\nRun with GOLDEN_ACCEPT=1 to accept.");
    }

    /// <summary>A short line diff: the first differing lines, with their line numbers.</summary>
    public static string Diff(string expected, string actual, int maxLines = 12)
    {
        var e = expected.Split('\n');
        var a = actual.Split('\n');
        var sb = new StringBuilder();
        int shown = 0;
        for (int i = 0; i < Math.Max(e.Length, a.Length) && shown < maxLines; i++)
        {
            string? el = i < e.Length ? e[i] : null;
            string? al = i < a.Length ? a[i] : null;
            if (el == al) continue;
            sb.Append("line ").Append(i + 1).Append('\n');
            if (el is not null) sb.Append("- ").Append(el).Append('\n');
            if (al is not null) sb.Append("+ ").Append(al).Append('\n');
            shown++;
        }
        if (e.Length != a.Length) sb.Append($"(expected {e.Length} lines, received {a.Length})\n");
        return sb.ToString();
    }

    /// <summary>The canonical hex dump used by golden files: 16 bytes a line, offset, hex, ASCII; runs of zero lines folded.</summary>
    public static string HexDump(ReadOnlySpan<byte> data)
    {
        var sb = new StringBuilder();
        bool folding = false;
        for (int off = 0; off < data.Length; off += 16)
        {
            var line = data.Slice(off, Math.Min(16, data.Length - off));
            bool zero = !line.ContainsAnyExcept((byte)0);
            if (zero && off > 0 && off + 16 < data.Length)
            {
                if (!folding) sb.Append("*\n");
                folding = true;
                continue;
            }
            folding = false;
            sb.Append(off.ToString("x8")).Append("  ");
            for (int i = 0; i < 16; i++)
            {
                if (i < line.Length) sb.Append(line[i].ToString("x2")).Append(' ');
                else sb.Append("   ");
                if (i == 7) sb.Append(' ');
            }
            sb.Append(" |");
            foreach (byte b in line) sb.Append(b is >= 0x20 and < 0x7f ? (char)b : '.');
            sb.Append("|\n");
        }
        sb.Append(data.Length.ToString("x8")).Append('\n');
        return sb.ToString();
    }

    private static string FindGoldenDirectory(string callerFile)
    {
        // Prefer the source tree (so received files land next to verified ones); walk up from the caller's file.
        var dir = Path.GetDirectoryName(callerFile);
        while (dir is not null)
        {
            string candidate = Path.Combine(dir, "Golden");
            if (File.Exists(Path.Combine(dir, "Journal.Tests.csproj")) && Directory.Exists(candidate)) return candidate;
            dir = Path.GetDirectoryName(dir);
        }
        throw new InvalidOperationException($"Cannot find the Golden folder from {callerFile}");
    }
}
