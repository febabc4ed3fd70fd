using System.CommandLine.Parsing;
using System.Globalization;

namespace Journal.Tools;

/// <summary>
/// Sizes and offsets on the command line: a whole number of bytes with an optional binary suffix
/// K (2^10), M (2^20), G (2^30) or T (2^40), in either case, optionally followed by "iB" or "B"
/// (<c>4096</c>, <c>4K</c>, <c>64M</c>, <c>1GiB</c>). Also the sector suffix "s" (512 bytes).
/// </summary>
internal static class Sizes
{
    /// <summary>Parses <paramref name="text"/>; on failure <paramref name="error"/> says why.</summary>
    public static bool TryParse(string? text, out long bytes, out string error)
    {
        bytes = 0;
        error = "";
        var s = (text ?? "").Trim();
        if (s.Length == 0) { error = "empty size"; return false; }

        int end = 0;
        while (end < s.Length && char.IsAsciiDigit(s[end])) end++;
        if (end == 0)
        {
            error = s.StartsWith('-') ? $"'{text}' is negative" : $"'{text}' is not a size (use a number with an optional K, M or G suffix)";
            return false;
        }
        if (!long.TryParse(s.AsSpan(0, end), NumberStyles.None, CultureInfo.InvariantCulture, out long number))
        {
            error = $"'{text}' is too large";
            return false;
        }

        var suffix = s[end..].Trim().ToUpperInvariant();
        int shift = suffix switch
        {
            "" or "B" => 0,
            "S" => 9,
            "K" or "KB" or "KIB" => 10,
            "M" or "MB" or "MIB" => 20,
            "G" or "GB" or "GIB" => 30,
            "T" or "TB" or "TIB" => 40,
            _ => -1,
        };
        if (shift < 0)
        {
            error = $"'{text}' has an unknown suffix '{s[end..].Trim()}' (use K, M, G or T)";
            return false;
        }
        if (number > (long.MaxValue >> shift))
        {
            error = $"'{text}' is too large";
            return false;
        }
        bytes = number << shift;
        return true;
    }

    /// <summary>Parses or throws <see cref="UsageException"/> naming <paramref name="what"/>.</summary>
    public static long Parse(string what, string? text) =>
        TryParse(text, out long bytes, out string error) ? bytes : throw new UsageException($"{what}: {error}");

    /// <summary>A parser for <c>Option&lt;long&gt;.CustomParser</c>: bad values become parse errors (exit 64).</summary>
    public static long ParseArgument(ArgumentResult result)
    {
        var token = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
        if (TryParse(token, out long bytes, out string error)) return bytes;
        var owner = result.Parent is OptionResult o ? o.Option.Name : result.Argument.Name;
        result.AddError($"{owner}: {error}");
        return 0;
    }

    /// <summary>Formats a byte count with the largest exact binary unit ("4K", "64M", "1000").</summary>
    public static string Format(long bytes)
    {
        if (bytes == 0) return "0";
        foreach (var (unit, shift) in new[] { ("T", 40), ("G", 30), ("M", 20), ("K", 10) })
            if (bytes % (1L << shift) == 0) return $"{bytes >> shift}{unit}";
        return bytes.ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>An exact unit when that reads well ("4K", "64M"), otherwise a rounded one ("64.3 MiB").</summary>
    public static string Friendly(long bytes) =>
        bytes < (1L << 20) || bytes % (1L << 20) == 0 ? Format(bytes) : Human(bytes);

    /// <summary>Formats a byte count for people ("1.5 MiB").</summary>
    public static string Human(double bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        int i = 0;
        while (bytes >= 1024 && i < units.Length - 1) { bytes /= 1024; i++; }
        return i == 0 ? $"{bytes:0} {units[i]}" : $"{bytes:0.0} {units[i]}";
    }
}
