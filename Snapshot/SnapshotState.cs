using Snapshot.Exceptions;
using Snapshot.Format;

namespace Snapshot;

/// <summary>
/// Everything the store keeps about one snapshot: its exception store, complete and pending tables, and validity.
/// </summary>
/// <remarks>
/// The tables and <see cref="InvalidReason"/> are protected by the store's state lock (<c>SnapshotStore._stateLock</c>).
/// </remarks>
internal sealed class SnapshotState
{
    public SnapshotState(string name, ulong id, SnapshotKind kind, long cowSectors, string cowPath)
    {
        Name = name;
        Id = id;
        Kind = kind;
        CowSectors = cowSectors;
        CowPath = cowPath;
    }

    public string Name { get; }
    public ulong Id { get; }
    public SnapshotKind Kind { get; }
    public long CowSectors { get; }
    public string CowPath { get; }

    /// <summary>The exception store; null when the snapshot is invalid and its COW file is not open (e.g. transient after close).</summary>
    public ExceptionStore? Store;

    /// <summary>Complete exceptions.</summary>
    public readonly ExceptionTable Complete = new();

    /// <summary>Pending exceptions (copy and commit in flight), keyed by old chunk.</summary>
    public readonly Dictionary<ulong, PendingException> Pending = new();

    /// <summary>Null while valid; else why it is invalid.</summary>
    public string? InvalidReason;

    /// <summary>The on-disk reason code matching <see cref="InvalidReason"/>.</summary>
    public InvalidReasonCode InvalidCode;

    /// <summary>
    /// The stamp the COW file's header carries (<see cref="Format.SnapshotRecord.CowStamp"/>); changed only by the
    /// catalog's stamp step, under the state lock, with no I/O running.
    /// </summary>
    public uint CowStamp;

    /// <summary>
    /// True when the open found the COW file missing or unreadable and kept the snapshot (the default
    /// <see cref="CowUnreadablePolicy.KeepSnapshot"/>): <see cref="InvalidReason"/> says why, and the snapshot is not
    /// read, but nothing was committed: its superblock record stays valid, and the next open with the file back finds it
    /// whole. The origin refuses writes meanwhile (a write would need a copy into the file). Set before the store is in
    /// use, never changed after (the snapshot leaves only by a delete).
    /// </summary>
    public bool Unavailable;

    /// <summary>The invalidation's I/O (header and superblock), started once; later callers await the same task.</summary>
    public Task? Invalidation;

    /// <summary>The public handle.</summary>
    public StoreVolume? Volume;

    /// <summary>True once deleted (the handle refuses I/O).</summary>
    public bool Deleted;

    /// <summary>
    /// True from the start of a merge into the origin until it finishes (the snapshot is then deleted); recorded in the
    /// superblock, so it survives a crash. The snapshot's own handle refuses I/O meanwhile.
    /// </summary>
    public bool Merging;

    /// <summary>Why the last merge attempt failed (status <c>Merge failed</c>), or null.</summary>
    public string? MergeFailure;

    public bool IsValid => InvalidReason is null;

    /// <summary>The error for I/O to this snapshot when it is not valid: unavailable (kept at open) or invalid.</summary>
    public Journal.JournalException NotValidError() => Unavailable
        ? SnapshotUnavailableException.Reading(CowPath, Name, InvalidReason!)
        : new SnapshotInvalidException(CowPath, Name, InvalidReason!);

    // ---- changed-block tracking (Snapshot/Changes/ChangeTracker.cs owns these) ----

    /// <summary>
    /// True once a user write into the snapshot was let through or is being let through: the superblock record then
    /// carries <see cref="SnapshotRecordFlags.Written"/>. Set under the state lock, never cleared.
    /// </summary>
    public bool Written;

    /// <summary>The commit that makes <see cref="Written"/> durable (null before the first write, or after it failed).</summary>
    public Task? WrittenCommit;

    /// <summary>True once <see cref="Written"/> is durable (read without a lock: the write path's fast check).</summary>
    public volatile bool WrittenDurable;

    /// <summary>User writes into the snapshot that finished since open (a change-map cache key; Interlocked).</summary>
    public long UserWrites;

    public SnapshotRecord ToRecord() => new(Id, CowSectors,
        Kind == SnapshotKind.Persistent ? SnapshotKindCode.Persistent : SnapshotKindCode.Transient,
        Unavailable ? SnapshotStateCode.Valid : !IsValid ? SnapshotStateCode.Invalid : Merging ? SnapshotStateCode.Merging : SnapshotStateCode.Valid,
        Unavailable ? InvalidReasonCode.None : InvalidCode, Name)
    {
        Flags = Written ? SnapshotRecordFlags.Written : SnapshotRecordFlags.None,
        CowStamp = CowStamp,
    };

    /// <inheritdoc/>
    public override string ToString() => $"SnapshotState({Name}, id {Id}, {Kind}, {(IsValid ? "valid" : (Unavailable ? "unavailable: " : "invalid: ") + InvalidReason)}, {Complete}, {Pending.Count} pending)";
}
