namespace Snapshot;

/// <summary>How a snapshot is created.</summary>
public sealed class SnapshotOptions
{
    /// <summary>
    /// True (default): persistent — the COW file is in the dm-snapshot persistent format and survives close and crash.
    /// False: transient — exceptions live only in memory; after the store is closed the snapshot is reported
    /// <c>Invalid</c> (its contents are gone) until it is deleted.
    /// </summary>
    public bool Persistent { get; init; } = true;

    /// <summary>
    /// Most sectors the COW file may use (header, metadata areas and data). When it fills, the snapshot is invalidated.
    /// Rounded down to whole chunks. Null (default): enough for a full copy of the origin, so it never fills.
    /// </summary>
    public long? CowSectors { get; init; }

    /// <inheritdoc/>
    public override string ToString() => $"SnapshotOptions(persistent {Persistent}, cow sectors {(CowSectors?.ToString() ?? "full copy")})";
}
