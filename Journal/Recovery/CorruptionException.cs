using Journal.Format;

namespace Journal.Recovery;

/// <summary>
/// The log (or another on-disk structure) is corrupt in a way recovery must not paper over: a bad record between
/// tail and head, a wrong magic, an impossible length. The one-line message names the file, the block, the LSN,
/// what was expected and what was found.
/// </summary>
public class CorruptionException : JournalException
{
    /// <summary>Creates the error; the message is composed from the parts.</summary>
    public CorruptionException(string file, long block, Lsn lsn, string problem, string? expected = null, string? actual = null)
        : base(Compose(file, block, lsn, problem, expected, actual))
    {
        File = file;
        Block = block;
        Lsn = lsn;
        Problem = problem;
        Expected = expected;
        Actual = actual;
    }

    /// <summary>The file (device name) holding the damage.</summary>
    public string File { get; }
    /// <summary>The block (512-byte unit, relative to the start of the structure) holding the damage; -1 if none applies.</summary>
    public long Block { get; }
    /// <summary>The LSN of the damaged record, or <see cref="Lsn.Zero"/>.</summary>
    public Lsn Lsn { get; }
    /// <summary>What is wrong, in words.</summary>
    public string Problem { get; }
    /// <summary>The expected value, when there is one.</summary>
    public string? Expected { get; }
    /// <summary>The value found, when there is one.</summary>
    public string? Actual { get; }

    private static string Compose(string file, long block, Lsn lsn, string problem, string? expected, string? actual)
    {
        var s = $"{file}: ";
        if (block >= 0) s += $"block {block}: ";
        if (!lsn.IsZero) s += $"LSN {lsn}: ";
        s += problem;
        if (expected is not null || actual is not null) s += $" (expected {expected ?? "?"}, found {actual ?? "?"})";
        return s;
    }
}
