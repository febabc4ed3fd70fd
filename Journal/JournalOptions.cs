using System.Globalization;
using System.Text;
using Journal.Format;
using Journal.Log;
using Journal.Memory;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Journal;

/// <summary>
/// Every tunable of a <see cref="MetadataJournal"/> in one place. Construct with an object initializer;
/// <see cref="Validate()"/> (called by <see cref="MetadataJournal.Create(Journal.Log.ILogSink, JournalOptions)"/> and
/// friends) rejects bad values with a one-line <see cref="JournalArgumentException"/>.
/// </summary>
public sealed class JournalOptions
{
    /// <summary>
    /// Size to give the on-disk log, in bytes (a multiple of 512, at least 64 KiB). Default 16 MiB. Callers that create
    /// the log's region use it; a journal on an existing region uses the region's own size.
    /// </summary>
    public long LogSizeBytes { get; init; } = 16L << 20;

    /// <summary>Number of in-core log buffers (2 to 16). Default 8.</summary>
    public int LogBufferCount { get; init; } = 8;

    /// <summary>Payload bytes of one in-core log buffer, i.e. of one log record (a multiple of 512 from 512 to 57344). Default 32 KiB.</summary>
    public int LogBufferSize { get; init; } = 32 << 10;

    /// <summary>
    /// Log space the current checkpoint may hold before a background push starts. Null (the default) means 12.5% of
    /// the log. Must be positive and at most half of the log.
    /// </summary>
    public long? CilSoftLimitBytes { get; init; }

    /// <summary>
    /// Log space the current checkpoint may hold before committers wait for the push to switch contexts. Null (the
    /// default) means twice the soft limit. Must be at least the soft limit and at most half of the log.
    /// </summary>
    public long? CilHardLimitBytes { get; init; }

    /// <summary>Bytes the journal's buffer pool may hold (log vectors and headers). At least 64 KiB. Default 64 MiB.</summary>
    public long MemoryBudgetBytes { get; init; } = 64L << 20;

    /// <summary>
    /// Bytes set aside at start-up for emergencies (when the pool cannot serve a request in time). 0 to half the
    /// budget. Default 256 KiB.
    /// </summary>
    public long EmergencyReserveBytes { get; init; } = 256L << 10;

    /// <summary>Size of one emergency buffer (64 B to 1 MiB, at most the reserve unless the reserve is 0). Default 16 KiB.</summary>
    public int EmergencyBufferBytes { get; init; } = 16 << 10;

    /// <summary>
    /// How long a committer waits for the pool (while a push frees memory) before it takes an emergency buffer.
    /// 0 to 10 s. Default 50 ms.
    /// </summary>
    public TimeSpan EmergencyAfter { get; init; } = TimeSpan.FromMilliseconds(50);

    /// <summary>
    /// How long after a checkpoint becomes durable the push keeps the next context open for the committers that
    /// checkpoint's completion woke, so that they commit into it and share its flush (see docs/journal.md, "Gathering").
    /// The push yields its thread meanwhile and stops early once they are all back or nothing else is runnable, so the
    /// window bounds the latency added, not the latency taken. 0 (no gathering) to 1 s. Default 200 µs.
    /// </summary>
    public TimeSpan CheckpointGatherWindow { get; init; } = TimeSpan.FromMicroseconds(200);

    /// <summary>
    /// Whether a force that starts the log's device flush runs that flush on its own thread, blocking that thread for
    /// it, instead of handing it to a thread-pool thread and waiting for it: two thread hand-offs fewer per force (the
    /// flush work item, and the wake-up of the waiting force). Only the one flush that covers the force's own buffer runs
    /// there; buffers written meanwhile are flushed on the pool as usual. The checkpoint push forces its own commit
    /// record, so with this on the push's thread blocks during that flush; it waits for that checkpoint before it starts
    /// the next one anyway, except when committers are throttled at the hard limit (then the next push starts after the
    /// flush instead of during it). For a journal whose commits come from a few threads that wait for them (a commit
    /// pipeline), not for many committers that could use the push's thread meanwhile. A force that finds a flush already
    /// running (or an earlier buffer still in flight), or that has a cancellation token, waits as before. Default false.
    /// </summary>
    public bool FlushOnForcingThread { get; init; }

    /// <summary>Where the pool gets fresh buffers; null for the garbage-collected heap. Tests inject failures here.</summary>
    public IBufferAllocator? Allocator { get; init; }

    /// <summary>
    /// The journal's name in its log messages and in the <c>journal.name</c> tag of its metrics
    /// (<see cref="Diagnostics.JournalMetrics"/>). Null (the default) means the log's device name, or <c>journal</c>
    /// for a log sink that is not a <see cref="LogWriter"/>. A name another open journal of the process already uses
    /// gets <c>#2</c>, <c>#3</c>... appended (<see cref="MetadataJournal.Name"/> is the name in use). At most 200
    /// characters, no control characters.
    /// </summary>
    public string? Name { get; init; }

    /// <summary>
    /// Where the journal logs (warnings for checkpoint gather timeouts, emergency memory and shutdowns; information
    /// when it starts and closes cleanly). Takes precedence over <see cref="LoggerFactory"/>. Null (the default) and a
    /// null <see cref="LoggerFactory"/> mean no logging (<see cref="NullLogger"/>).
    /// </summary>
    public ILogger? Logger { get; init; }

    /// <summary>
    /// Creates the journal's loggers when <see cref="Logger"/> is null, under the categories in
    /// <see cref="Diagnostics.JournalLogCategories"/>. Null (the default) means no logging.
    /// </summary>
    public ILoggerFactory? LoggerFactory { get; init; }

    /// <summary>
    /// The logger for messages of <paramref name="category"/>: <see cref="Logger"/> if set, else one from
    /// <see cref="LoggerFactory"/>, else <see cref="NullLogger.Instance"/>.
    /// </summary>
    internal ILogger CreateLogger(string category) => Logger ?? LoggerFactory?.CreateLogger(category) ?? NullLogger.Instance;

    /// <summary>The log writer settings these options imply.</summary>
    internal LogWriterOptions ToLogWriterOptions() => new() { IclogCount = LogBufferCount, IclogSize = LogBufferSize, FlushOnForcingThread = FlushOnForcingThread };

    /// <summary>The soft limit for a log of <paramref name="logBytes"/> bytes.</summary>
    public long EffectiveSoftLimit(long logBytes) => CilSoftLimitBytes ?? logBytes / 8;

    /// <summary>The hard limit for a log of <paramref name="logBytes"/> bytes.</summary>
    public long EffectiveHardLimit(long logBytes) => CilHardLimitBytes ?? 2 * EffectiveSoftLimit(logBytes);

    /// <summary>Throws <see cref="JournalArgumentException"/> naming the first bad value; returns this otherwise.</summary>
    public JournalOptions Validate() => Validate(LogSizeBytes);

    /// <summary>Validates against the size of an existing log (limits are relative to it).</summary>
    public JournalOptions Validate(long logBytes)
    {
        static JournalArgumentException Bad(string what) => new("journal options: " + what);
        if (LogSizeBytes < 64 << 10 || LogSizeBytes % 512 != 0)
            throw Bad($"LogSizeBytes {LogSizeBytes} must be a multiple of 512 and at least 65536");
        if (LogBufferCount is < LogWriterOptions.MinIclogCount or > LogWriterOptions.MaxIclogCount)
            throw Bad($"LogBufferCount {LogBufferCount} must be between {LogWriterOptions.MinIclogCount} and {LogWriterOptions.MaxIclogCount}");
        if (LogBufferSize is < LogWriterOptions.MinIclogSize or > LogWriterOptions.MaxIclogSize || LogBufferSize % 512 != 0)
            throw Bad($"LogBufferSize {LogBufferSize} must be a multiple of 512 from {LogWriterOptions.MinIclogSize} to {LogWriterOptions.MaxIclogSize}");
        long inFlight = (long)LogBufferCount * (LogBufferSize + 512);
        if (inFlight > Math.Min(logBytes / 2, (long)LogFormat.MaxInFlightBlocks * 512))
            throw Bad($"LogBufferCount x (LogBufferSize + 512) ({inFlight}) must be at most half the log ({logBytes / 2} bytes) and at most {LogFormat.MaxInFlightBlocks * 512}");
        long soft = EffectiveSoftLimit(logBytes), hard = EffectiveHardLimit(logBytes);
        if (soft <= 0 || soft > logBytes / 2)
            throw Bad($"CilSoftLimitBytes {soft} must be positive and at most half the log ({logBytes / 2})");
        if (hard < soft || hard > logBytes / 2)
            throw Bad($"CilHardLimitBytes {hard} must be at least the soft limit ({soft}) and at most half the log ({logBytes / 2})");
        if (MemoryBudgetBytes < 64 << 10)
            throw Bad($"MemoryBudgetBytes {MemoryBudgetBytes} must be at least 65536");
        if (EmergencyReserveBytes < 0 || EmergencyReserveBytes > MemoryBudgetBytes / 2)
            throw Bad($"EmergencyReserveBytes {EmergencyReserveBytes} must be between 0 and half the memory budget ({MemoryBudgetBytes / 2})");
        if (EmergencyBufferBytes is < 64 or > 1 << 20 || (EmergencyReserveBytes > 0 && EmergencyBufferBytes > EmergencyReserveBytes))
            throw Bad($"EmergencyBufferBytes {EmergencyBufferBytes} must be from 64 to 1048576 and at most EmergencyReserveBytes ({EmergencyReserveBytes})");
        if (EmergencyAfter < TimeSpan.Zero || EmergencyAfter > TimeSpan.FromSeconds(10))
            throw Bad($"EmergencyAfter {EmergencyAfter} must be between 0 and 10 seconds");
        if (CheckpointGatherWindow < TimeSpan.Zero || CheckpointGatherWindow > TimeSpan.FromSeconds(1))
            throw Bad($"CheckpointGatherWindow {CheckpointGatherWindow.TotalMicroseconds.ToString(CultureInfo.InvariantCulture)} µs must be between 0 and 1 s");
        if (Name is not null && (string.IsNullOrWhiteSpace(Name) || Name.Length > 200 || Name.Any(char.IsControl)))
            throw Bad($"Name must be 1 to 200 characters, not blank, without control characters");
        return this;
    }

    /// <summary>One line per option, with the effective CIL limits.</summary>
    public override string ToString()
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append(c, $"LogSizeBytes={LogSizeBytes} LogBufferCount={LogBufferCount} LogBufferSize={LogBufferSize} ");
        sb.Append(c, $"CilSoftLimitBytes={EffectiveSoftLimit(LogSizeBytes)}{(CilSoftLimitBytes is null ? " (12.5% of log)" : "")} ");
        sb.Append(c, $"CilHardLimitBytes={EffectiveHardLimit(LogSizeBytes)}{(CilHardLimitBytes is null ? " (2x soft)" : "")} ");
        sb.Append(c, $"MemoryBudgetBytes={MemoryBudgetBytes} EmergencyReserveBytes={EmergencyReserveBytes} EmergencyBufferBytes={EmergencyBufferBytes} ");
        sb.Append(c, $"EmergencyAfter={EmergencyAfter.TotalMilliseconds}ms CheckpointGatherWindow={CheckpointGatherWindow.TotalMicroseconds}us FlushOnForcingThread={FlushOnForcingThread} Allocator={(Allocator is null ? "gc" : Allocator.GetType().Name)} ");
        sb.Append(c, $"Name={Name ?? "(log device)"} Logging={(Logger is not null ? "ILogger" : LoggerFactory is not null ? "ILoggerFactory" : "off")}");
        return sb.ToString();
    }
}
