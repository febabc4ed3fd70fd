using Journal;
using Journal.Format;
using Journal.Storage;

namespace JournalBench.Benchmarks;

/// <summary>A log item holding a byte array, for the journal benchmarks; its home copy is not written anywhere.</summary>
internal sealed class BenchItem(ulong id, int size) : LogItem(1, id)
{
    public byte[] State = new byte[size];

    public void Resize(int size)
    {
        if (State.Length != size) State = new byte[size];
    }

    public override LogItemSize GetLogSize() => new(1, State.Length);

    public override void FormatLog(LogVectorWriter writer) => writer.AddRegion(State);

    public override ValueTask<bool> WriteBackAsync(Lsn lsn, CancellationToken cancellationToken) => ValueTask.FromResult(true);

    /// <summary>None: the benchmarks measure the log, and the item has no home copy.</summary>
    public override BlockDevice? HomeDevice => null;
}

/// <summary>Parsing of comma-separated counts such as <c>1,4,16,64</c>.</summary>
internal static class CountList
{
    /// <summary>Parses integers from <paramref name="min"/> to <paramref name="max"/>; null if the text is not such a list.</summary>
    public static int[]? Parse(string text, int max, int min = 1)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) return null;
        var list = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out list[i]) || list[i] < min || list[i] > max)
                return null;
        return list;
    }
}
