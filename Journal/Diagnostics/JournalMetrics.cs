using System.Diagnostics.Metrics;
using System.Reflection;
using Journal.Log;

namespace Journal.Diagnostics;

/// <summary>
/// The journal's metrics: one <see cref="System.Diagnostics.Metrics.Meter"/> named <see cref="MeterName"/> for the
/// whole library, whose instruments report on every open <see cref="MetadataJournal"/> in the process, each tagged
/// <see cref="JournalNameTag"/> = <see cref="MetadataJournal.Name"/>. Every instrument is observable: it reads counters
/// and gauges the journal keeps anyway when a listener collects, so the commit, push and write-back paths do no extra
/// work for metrics. Names and units follow the OpenTelemetry conventions; docs/metrics.md lists every instrument.
/// </summary>
/// <remarks>
/// Watch them with <c>dotnet-counters monitor --counters Journal -n &lt;process&gt;</c>, a
/// <see cref="MeterListener"/>, or an OpenTelemetry exporter (<c>AddMeter("Journal")</c>).
/// </remarks>
public static class JournalMetrics
{
    /// <summary>The name of the journal library's <see cref="System.Diagnostics.Metrics.Meter"/>.</summary>
    public const string MeterName = "Journal";

    /// <summary>The tag on every measurement that names its journal (<see cref="MetadataJournal.Name"/>).</summary>
    public const string JournalNameTag = "journal.name";

    /// <summary>The attribute of <c>journal.log.usage</c>: <c>used</c> or <c>free</c>.</summary>
    internal const string LogStateTag = "journal.log.state";

    /// <summary>The attribute of <c>journal.waits</c>: what the wait was for.</summary>
    internal const string WaitReasonTag = "journal.wait.reason";

    /// <summary>The open journals the instruments report on.</summary>
    internal static readonly ObservedSet<MetadataJournal> Journals = new(JournalNameTag);

    /// <summary>The library's meter (created with the instruments, on first use).</summary>
    internal static readonly Meter Meter = CreateMeter();

    /// <summary>Starts reporting on <paramref name="journal"/>; returns the unique name it is reported and logged under.</summary>
    internal static string Register(MetadataJournal journal, string name)
    {
        _ = Meter; // the instruments exist before the first journal is observed
        return Journals.Add(journal, name);
    }

    /// <summary>Stops reporting on <paramref name="journal"/> (called when it closes).</summary>
    internal static void Unregister(MetadataJournal journal) => Journals.Remove(journal);

    private static Meter CreateMeter()
    {
        var version = typeof(JournalMetrics).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;
        var m = new Meter(MeterName, version);
        var j = Journals;

        // Commit path (counters the commit path keeps anyway; read here, never written here).
        j.CreateCounter(m, "journal.commits", "{commit}", "Transactions committed with at least one item.", x => Volatile.Read(ref x.Counters.Commits));
        j.CreateCounter(m, "journal.relogs", "{item}", "Item commits that found the item already in the current checkpoint (formatted in place: no new log space).", x => Volatile.Read(ref x.Counters.Relogs));
        j.CreateCounter(m, "journal.reservation.overruns", "{commit}", "Commits whose transaction reserved less log space than its items needed (the rest was taken from the log's headroom).", x => Volatile.Read(ref x.Counters.ReservationOverruns));
        j.CreateCounter(m, "journal.waits", "{wait}", "Waits on the commit path, by what was waited for.", JournalMetrics.WaitReasonTag,
            ("log_space", x => Volatile.Read(ref x.Counters.SpaceWaits)),
            ("hard_limit", x => Volatile.Read(ref x.Counters.HardLimitWaits)),
            ("memory", x => Volatile.Read(ref x.Counters.MemoryWaits)));

        // Push and force.
        j.CreateCounter(m, "journal.checkpoints", "{checkpoint}", "Checkpoints whose commit record was written to the log.", x => Volatile.Read(ref x.Counters.Checkpoints));
        j.CreateCounter(m, "journal.checkpoint.io", "By", "Bytes of checkpoints handed to the log: checkpoint headers and item vectors (log record overhead not included).", x => Volatile.Read(ref x.Counters.CheckpointBytes));
        j.CreateCounter(m, "journal.checkpoint.gathers", "{gather}", "Pushes that held the next checkpoint open for the committers the previous one woke.", x => Volatile.Read(ref x.Counters.Gathers));
        j.CreateCounter(m, "journal.checkpoint.gather.timeouts", "{gather}", "Gathers that ended because the gather window passed before the committers were back.", x => Volatile.Read(ref x.Counters.GatherTimeouts));
        j.CreateCounter(m, "journal.forces", "{force}", "Log forces that had to wait (forcing a durable sequence is not counted).", x => Volatile.Read(ref x.Counters.Forces));

        // The on-disk log (the log writer's own statistics; absent when the journal runs on another ILogSink).
        j.CreateCounter(m, "journal.log.flushes", "{flush}", "Device flushes of the log. Commits per flush = rate(journal.commits) / rate(journal.log.flushes).", x => x.Writer?.Statistics.Flushes);
        j.CreateCounter(m, "journal.log.io", "By", "Bytes written to the log device (records, headers and padding).", x => x.Writer?.Statistics.BytesWritten);
        j.CreateUpDownCounter(m, "journal.log.usage", "By", "Log space, split into used (written between tail and head, plus reserved by open transactions and checkpoints not yet written) and free (what a new reservation can get without waiting; below 0 while commits that under-reserved use the headroom).", JournalMetrics.LogStateTag,
            ("used", x => x.LogUsedBytes),
            ("free", x => x.Space.Capacity - x.LogUsedBytes));
        j.CreateUpDownCounter(m, "journal.log.limit", "By", "Log space reservations can use: the log size minus its headroom for record overhead.", x => x.Space.Capacity);
        j.CreateUpDownCounter(m, "journal.log.tail.lag", "By", "Bytes of log between the tail and the head: what write-back has to retire before that log can be reused.", x => x.Log.UsedBytes);
        j.CreateUpDownCounter(m, "journal.log.buffer.count", "{buffer}", "In-core log buffers the log writer holds (its reserve plus buffers rented from the pool).", x => x.Writer?.Statistics.BuffersHeld);

        // AIL.
        j.CreateUpDownCounter(m, "journal.ail.item.count", "{item}", "Items whose checkpoint is durable and whose home copy is not written yet.", x => x.Ail.Count);
        j.CreateCounter(m, "journal.ail.writebacks", "{item}", "Items written home by the AIL.", x => Volatile.Read(ref x.Counters.AilWriteBacks));

        // Memory: the budgeted pool and its emergency reserve.
        j.CreateUpDownCounter(m, "journal.pool.usage", "By", "Bytes the journal's buffer pool holds (lent out or cached); never above journal.pool.limit.", x => x.Pool.CurrentBytes);
        j.CreateUpDownCounter(m, "journal.pool.limit", "By", "The pool's byte budget.", x => x.Pool.BudgetBytes);
        j.CreateGauge(m, "journal.pool.peak_usage", "By", "The most bytes the pool ever held.", x => x.Pool.PeakBytes);
        j.CreateCounter(m, "journal.pool.failures", "{request}", "Requests the pool could not serve at once (budget exhausted or allocator failed).", x => x.Pool.Failures);
        j.CreateUpDownCounter(m, "journal.pool.emergency.count", "{buffer}", "Emergency buffers out now.", x => x.Pool.Reserve.Current);
        j.CreateGauge(m, "journal.pool.emergency.peak_count", "{buffer}", "The most emergency buffers ever out at once.", x => x.Pool.Reserve.Max);
        j.CreateCounter(m, "journal.pool.emergency.allocations", "{buffer}", "Emergency buffers ever handed out.", x => x.Pool.Reserve.Total);
        return m;
    }
}
