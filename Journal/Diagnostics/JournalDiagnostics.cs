using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Journal.Diagnostics;

/// <summary>
/// What one journal's paths report through: its logger and name, and the rate limits of its recurring warnings. The
/// CIL, the pool's emergency reserve and the close path call it outside every journal lock; each call first checks
/// whether the message is enabled, so with the default <see cref="NullLogger"/> a report costs a call.
/// </summary>
internal sealed class JournalDiagnostics
{
    /// <summary>How often a recurring warning (gather timeouts, emergency episodes) is written at most.</summary>
    public static readonly TimeSpan RepeatInterval = TimeSpan.FromSeconds(10);

    /// <summary>Reports nowhere (a journal part used on its own in tests).</summary>
    public static readonly JournalDiagnostics None = new(NullLogger.Instance, "journal");

    private readonly LogRateLimit _gatherTimeouts = new(RepeatInterval);
    private readonly LogRateLimit _emergencies = new(RepeatInterval);

    public JournalDiagnostics(ILogger logger, string name)
    {
        Logger = logger;
        Name = name;
    }

    /// <summary>Where the journal's messages go (<see cref="NullLogger.Instance"/> when logging is off).</summary>
    public ILogger Logger { get; }

    /// <summary>The journal's name in messages and in the metrics' <c>journal.name</c> tag (set once it is registered).</summary>
    public string Name { get; set; }

    public void Started(string log, long logBytes, ulong sequence) => JournalLog.Started(Logger, Name, log, logBytes, sequence);

    /// <summary>The push stopped gathering for checkpoint <paramref name="sequence"/> because the window ran out.</summary>
    public void GatherTimedOut(ulong sequence, int back, int expected, TimeSpan window)
    {
        if (!Logger.IsEnabled(LogLevel.Warning) || !_gatherTimeouts.TryReport(out long suppressed)) return;
        JournalLog.GatherTimeout(Logger, Name, sequence, back, expected, window.TotalMicroseconds, suppressed);
    }

    /// <summary>
    /// The emergency reserve handed out a buffer while none was out (an emergency episode starts).
    /// <paramref name="push"/>: a checkpoint header for the push, rather than a committer's vector.
    /// </summary>
    public void EmergencyEpisode(bool push, long current, long max, long total)
    {
        if (!Logger.IsEnabled(LogLevel.Warning) || !_emergencies.TryReport(out long suppressed)) return;
        JournalLog.EmergencyAllocation(Logger, Name, push ? "checkpoint push's header" : "committers' log vectors", current, max, total, suppressed);
    }

    /// <summary>An error shut the journal down.</summary>
    public void ShutDown(Exception cause) => JournalLog.Shutdown(Logger, cause, Name, cause.Message);

    /// <summary>The journal closed; <paramref name="uncleanReason"/> is null when the unmount record was written.</summary>
    public void Closed(ulong durableSequence, string? uncleanReason)
    {
        if (uncleanReason is null) JournalLog.Closed(Logger, Name, durableSequence);
        else JournalLog.ClosedUnclean(Logger, Name, uncleanReason);
    }
}
