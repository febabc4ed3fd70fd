using Microsoft.Extensions.Logging;

namespace Snapshot.Diagnostics;

/// <summary>
/// The snapshot store's log messages, source-generated (<see cref="LoggerMessageAttribute"/>): each checks
/// <see cref="ILogger.IsEnabled"/> first and formats through a cached template. None is written on the write path's
/// fast path or while the state lock is held. Event ids 2000-2099 (docs/metrics.md lists them).
/// </summary>
internal static partial class SnapshotLog
{
    [LoggerMessage(EventId = SnapshotEventIds.Opened, EventName = "StoreOpened", Level = LogLevel.Information,
        Message = "store {Store}: open ({Snapshots} snapshots, origin {OriginBytes} bytes, chunk {ChunkBytes} bytes{ReadOnly})")]
    public static partial void Opened(ILogger logger, string store, int snapshots, long originBytes, long chunkBytes, string readOnly);

    [LoggerMessage(EventId = SnapshotEventIds.Replayed, EventName = "JournalReplayed", Level = LogLevel.Warning,
        Message = "store {Store}: the last close was not clean; the journal was replayed ({Checkpoints} checkpoints, {Applied} item copies applied{TornHead})")]
    public static partial void Replayed(ILogger logger, string store, long checkpoints, long applied, string tornHead);

    [LoggerMessage(EventId = SnapshotEventIds.Invalidated, EventName = "SnapshotInvalidated", Level = LogLevel.Warning,
        Message = "store {Store}: snapshot '{Snapshot}' invalidated: {Reason}")]
    public static partial void Invalidated(ILogger logger, string store, string snapshot, string reason);

    [LoggerMessage(EventId = SnapshotEventIds.MergeFailed, EventName = "MergeFailed", Level = LogLevel.Warning,
        Message = "store {Store}: merge of snapshot '{Snapshot}' into the origin failed (the origin reads as the snapshot until a merge finishes): {Error}")]
    public static partial void MergeFailed(ILogger logger, string store, string snapshot, string error);

    [LoggerMessage(EventId = SnapshotEventIds.ThrottleStall, EventName = "ThrottleStall", Level = LogLevel.Warning,
        Message = "store {Store}: a write waited {Milliseconds} ms for room under the bound of {Bound} copies in flight")]
    public static partial void ThrottleStall(ILogger logger, string store, long milliseconds, int bound);

    [LoggerMessage(EventId = SnapshotEventIds.NoSpace, EventName = "NoSpaceForCopy", Level = LogLevel.Warning,
        Message = "store {Store}: a write that needed a copy failed for lack of space (the snapshot keeps its data): {Error}")]
    public static partial void NoSpace(ILogger logger, string store, string error);

    [LoggerMessage(EventId = SnapshotEventIds.Closed, EventName = "StoreClosed", Level = LogLevel.Information,
        Message = "store {Store}: closed{How}")]
    public static partial void Closed(ILogger logger, string store, string how);

    [LoggerMessage(EventId = SnapshotEventIds.DeferredWriteFailed, EventName = "DeferredWriteFailed", Level = LogLevel.Error,
        Message = "store {Store}: an origin write of {Bytes} bytes at sector {Sector}, acknowledged before its copies were committed, did not reach the origin (every later flush fails): {Error}")]
    public static partial void DeferredWriteFailed(ILogger logger, string store, long sector, int bytes, string error);

    [LoggerMessage(EventId = SnapshotEventIds.GrowthAheadFailed, EventName = "GrowthAheadFailed", Level = LogLevel.Warning,
        Message = "store {Store}: snapshot '{Snapshot}': growing its COW file ahead of its copies failed (a copy that needs the space grows the file itself, and gets the error if it fails again): {Error}")]
    public static partial void GrowthAheadFailed(ILogger logger, string store, string snapshot, string error);

    [LoggerMessage(EventId = SnapshotEventIds.CowFileNotRemoved, EventName = "CowFileNotRemoved", Level = LogLevel.Warning,
        Message = "store {Store}: {File}: this COW file of a deleted snapshot could not be removed ({Error}); the next open tries again")]
    public static partial void CowFileNotRemoved(ILogger logger, string store, string file, string error);

    [LoggerMessage(EventId = SnapshotEventIds.Unavailable, EventName = "SnapshotUnavailable", Level = LogLevel.Warning,
        Message = "store {Store}: snapshot '{Snapshot}' is unavailable: {Reason}; nothing was committed: the origin refuses writes until the file is restored and the store reopened, or the snapshot is deleted")]
    public static partial void Unavailable(ILogger logger, string store, string snapshot, string reason);
}

/// <summary>The event ids of the snapshot store's log messages (docs/metrics.md lists them with their level and meaning).</summary>
public static class SnapshotEventIds
{
    /// <summary>Information: a store opened (after any replay).</summary>
    public const int Opened = 2000;

    /// <summary>Warning: the last close was not clean and the journal was replayed at open.</summary>
    public const int Replayed = 2001;

    /// <summary>Warning: a snapshot was invalidated (COW file full, I/O error, damaged or missing at open).</summary>
    public const int Invalidated = 2002;

    /// <summary>Warning: a merge failed; it is finished by running it again.</summary>
    public const int MergeFailed = 2003;

    /// <summary>Warning: a write waited more than a second for room under the in-flight copy bound.</summary>
    public const int ThrottleStall = 2004;

    /// <summary>Warning: a write that needed a copy failed for lack of space on the file system.</summary>
    public const int NoSpace = 2005;

    /// <summary>Information: a store closed (cleanly, or leaving its journal to replay).</summary>
    public const int Closed = 2006;

    /// <summary>
    /// Error: an origin write acknowledged before its copies were committed (<see cref="StoreOptions.DeferCopiedWrites"/>)
    /// did not reach the origin; every later flush fails.
    /// </summary>
    public const int DeferredWriteFailed = 2007;

    /// <summary>
    /// Warning: growing a COW file ahead of its copies failed (most often a full disk); a copy that needs the space
    /// grows the file itself. Once per failure: no growth ahead is tried again until a copy's own growth succeeds.
    /// </summary>
    public const int GrowthAheadFailed = 2008;

    /// <summary>
    /// Warning: the COW file of a snapshot no longer listed (deleted, merged, or left by an interrupted change) could
    /// not be removed; the snapshot is gone all the same, and the next open tries again.
    /// </summary>
    public const int CowFileNotRemoved = 2009;

    /// <summary>
    /// Warning: at open, a snapshot's COW file was missing or did not read back, and the snapshot was kept
    /// (<see cref="CowUnreadablePolicy.KeepSnapshot"/>): nothing was committed, and the origin refuses writes until the
    /// file is restored and the store reopened, or the snapshot is deleted.
    /// </summary>
    public const int Unavailable = 2010;
}
