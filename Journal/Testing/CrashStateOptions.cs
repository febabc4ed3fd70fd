namespace Journal.Testing;

/// <summary>Which crash states <see cref="WriteLog.CrashStates"/> enumerates.</summary>
public sealed class CrashStateOptions
{
    /// <summary>Chooses the variants; the same seed over the same log gives the same states.</summary>
    public int Seed { get; init; }

    /// <summary>
    /// States per crash point, counting the one that keeps every issued write (always first) and the one that loses
    /// every write in flight (second, when anything is in flight), then the per-device ones (only one device's in-flight
    /// writes kept, or only one device's lost; when more than one device has writes in flight), first, alternating with the
    /// random ones.
    /// At least 1.
    /// </summary>
    public int MaxVariantsPerPoint { get; init; } = 4;

    /// <summary>
    /// Crash after every entry, not only around flushes. By default the points are: just before each flush entry
    /// (the most writes in flight), just after it, and the end of the log.
    /// </summary>
    public bool EveryEntry { get; init; }

    /// <summary>If there are more points than this, an evenly spaced subset (always with the first and last) is used.</summary>
    public int MaxPoints { get; init; } = int.MaxValue;

    /// <summary>Only points in [<see cref="FirstPoint"/>, <see cref="LastPoint"/>] (log positions).</summary>
    public int FirstPoint { get; init; }

    /// <summary>Only points up to this log position; default the end of the log.</summary>
    public int LastPoint { get; init; } = int.MaxValue;
}
