using System.Globalization;

namespace JournalBench.Measure;

/// <summary>The system's load averages (1, 5 and 15 minutes) from /proc/loadavg, to print beside figures measured on a shared machine.</summary>
internal readonly record struct LoadAverage(double One, double Five, double Fifteen)
{
    /// <summary>Reads /proc/loadavg; null where it does not exist or cannot be read.</summary>
    public static LoadAverage? Read()
    {
        try
        {
            return Parse(File.ReadAllText("/proc/loadavg"));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Parses the first three fields of /proc/loadavg's text; null if they are not numbers.</summary>
    public static LoadAverage? Parse(string text)
    {
        var parts = text.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length < 3) return null;
        var v = new double[3];
        for (int i = 0; i < 3; i++)
            if (!double.TryParse(parts[i], NumberStyles.Float, CultureInfo.InvariantCulture, out v[i])) return null;
        return new LoadAverage(v[0], v[1], v[2]);
    }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{One:0.00}, {Five:0.00}, {Fifteen:0.00}");

    /// <summary>"load average 21.38, 22.29, 22.99" or "load average unknown".</summary>
    public static string Describe(LoadAverage? l) => l is { } v ? $"load average {v}" : "load average unknown";
}
