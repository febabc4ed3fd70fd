using Microsoft.Extensions.Logging;

namespace Journal.Diagnostics;

/// <summary>
/// The journal's log messages, source-generated (<see cref="LoggerMessageAttribute"/>): each checks
/// <see cref="ILogger.IsEnabled"/> first and formats through a cached template, so a disabled message costs a call and
/// an enabled one allocates only its own state. None is written on the commit fast path or while a journal lock is
/// held.
/// </summary>
/// <remarks>
/// Event ids (docs/metrics.md has the table):
/// <list type="bullet">
/// <item>1000-1099: the running journal (this class).</item>
/// <item>1100-1199: reserved for recovery (<c>Journal/Recovery</c>, <c>MetadataJournal.Open</c>), logged under the
/// category <see cref="JournalLogCategories.Recovery"/>: 1100 torn log head truncated, 1101 checkpoints replayed.</item>
/// <item>2000-2999: reserved for the snapshot store.</item>
/// </list>
/// </remarks>
internal static partial class JournalLog
{
    [LoggerMessage(EventId = JournalEventIds.Started, EventName = "JournalStarted", Level = LogLevel.Information,
        Message = "journal {Journal}: started on {Log} ({LogBytes} bytes of log), first checkpoint sequence {Sequence}")]
    public static partial void Started(ILogger logger, string journal, string log, long logBytes, ulong sequence);

    [LoggerMessage(EventId = JournalEventIds.GatherTimeout, EventName = "CheckpointGatherTimeout", Level = LogLevel.Warning,
        Message = "journal {Journal}: checkpoint {Sequence} gathered {Back} of the {Expected} committers the previous checkpoint woke before the {WindowMicroseconds} µs gather window ran out ({Suppressed} more such timeouts since the last report)")]
    public static partial void GatherTimeout(ILogger logger, string journal, ulong sequence, int back, int expected, double windowMicroseconds, long suppressed);

    [LoggerMessage(EventId = JournalEventIds.EmergencyAllocation, EventName = "EmergencyAllocation", Level = LogLevel.Warning,
        Message = "journal {Journal}: the buffer pool could not serve the {Path} in time; using the emergency reserve ({Current} emergency buffers out, at most {Max} at once, {Total} handed out so far; {Suppressed} more such episodes since the last report)")]
    public static partial void EmergencyAllocation(ILogger logger, string journal, string path, long current, long max, long total, long suppressed);

    [LoggerMessage(EventId = JournalEventIds.Shutdown, EventName = "JournalShutdown", Level = LogLevel.Warning,
        Message = "journal {Journal}: shut down, every later call fails: {Cause}")]
    public static partial void Shutdown(ILogger logger, Exception exception, string journal, string cause);

    [LoggerMessage(EventId = JournalEventIds.Closed, EventName = "JournalClosed", Level = LogLevel.Information,
        Message = "journal {Journal}: closed cleanly (every item home, unmount record written), last durable checkpoint {Sequence}")]
    public static partial void Closed(ILogger logger, string journal, ulong sequence);

    [LoggerMessage(EventId = JournalEventIds.ClosedUnclean, EventName = "JournalClosedUnclean", Level = LogLevel.Warning,
        Message = "journal {Journal}: closed without the unmount record ({Reason}); the next open replays the log")]
    public static partial void ClosedUnclean(ILogger logger, string journal, string reason);
}

/// <summary>The event ids of the journal's log messages (docs/metrics.md lists them with their level and meaning).</summary>
public static class JournalEventIds
{
    /// <summary>Information: a journal started (after recovery, if it opened an existing log).</summary>
    public const int Started = 1000;

    /// <summary>Warning: the push stopped waiting for the committers a checkpoint woke (the gather window ran out).</summary>
    public const int GatherTimeout = 1001;

    /// <summary>Warning: the buffer pool could not serve a committer or the push in time and the emergency reserve did.</summary>
    public const int EmergencyAllocation = 1002;

    /// <summary>Warning: an error shut the journal down; the exception is the cause.</summary>
    public const int Shutdown = 1003;

    /// <summary>Information: the journal closed cleanly.</summary>
    public const int Closed = 1004;

    /// <summary>Warning: the journal closed without its unmount record, so the next open replays the log.</summary>
    public const int ClosedUnclean = 1005;
}

/// <summary>The logger categories the journal uses when <see cref="JournalOptions.LoggerFactory"/> is set.</summary>
public static class JournalLogCategories
{
    /// <summary>The running journal: start, close, shutdown, gathering, emergency memory.</summary>
    public const string Journal = "Journal";

    /// <summary>Opening an existing log: recovery and replay (reserved for the recovery messages, event ids 1100-1199).</summary>
    internal const string Recovery = "Journal.Recovery";
}
