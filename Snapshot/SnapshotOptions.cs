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

    /// <summary>
    /// True: the COW file is written in full with zeros (its whole size, <see cref="CowSectors"/>) and flushed when the
    /// snapshot is created, as a dm-snapshot COW volume is allocated in full when it is made. Creation takes longer and
    /// the space is used at once; in exchange no first write ever waits for the file to grow, no commit round flushes a
    /// file that grew, and every round can make all its COW files durable with one device flush (docs/snapshot.md).
    /// False (default): the file grows in <see cref="StoreOptions.CowGrowthBytes"/> steps of zeros as copies need them.
    /// </summary>
    public bool Preallocate { get; init; }

    /// <inheritdoc/>
    public override string ToString() => $"SnapshotOptions(persistent {Persistent}, cow sectors {(CowSectors?.ToString() ?? "full copy")}, preallocate {Preallocate})";
}
