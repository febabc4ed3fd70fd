using Journal;

namespace Snapshot;

/// <summary>
/// A COW file holds something a correct store never writes: a header, a creation-marks table or a metadata entry that
/// does not check. The one-line message names the file, the byte offset, what is wrong, and the expected and found
/// values. (A damaged or refused superblock copy is a <see cref="JournalException"/> naming <c>store.sb</c>.)
/// </summary>
public sealed class StoreCorruptionException : JournalException
{
    /// <summary>Creates the error; the message is composed from the parts.</summary>
    public StoreCorruptionException(string file, long offset, string problem, string? expected = null, string? actual = null)
        : base(Compose(file, offset, problem, expected, actual))
    {
        File = file;
        Offset = offset;
        Problem = problem;
        Expected = expected;
        Actual = actual;
    }

    /// <summary>The file holding the damage.</summary>
    public string File { get; }

    /// <summary>Byte offset of the damaged structure in the file; -1 when none applies.</summary>
    public long Offset { get; }

    /// <summary>What is wrong, in words.</summary>
    public string Problem { get; }

    /// <summary>The expected value, when there is one.</summary>
    public string? Expected { get; }

    /// <summary>The value found, when there is one.</summary>
    public string? Actual { get; }

    private static string Compose(string file, long offset, string problem, string? expected, string? actual)
    {
        var s = $"{file}: ";
        if (offset >= 0) s += $"offset {offset}: ";
        s += problem;
        if (expected is not null || actual is not null) s += $" (expected {expected ?? "?"}, found {actual ?? "?"})";
        return s;
    }
}
