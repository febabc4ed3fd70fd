using System.Globalization;

namespace Snapshot;

/// <summary>Kind of snapshot.</summary>
public enum SnapshotKind
{
    /// <summary>Survives close and crash; COW file in the dm-snapshot persistent format.</summary>
    Persistent,

    /// <summary>Exceptions only in memory; gone when the store is closed.</summary>
    Transient,
}

/// <summary>
/// Status of one snapshot, like <c>dmsetup status</c> of a snapshot target:
/// <c>&lt;sectors_allocated&gt;/&lt;total_sectors&gt; &lt;metadata_sectors&gt;</c>, or <c>Invalid</c>, or
/// <c>Merge failed</c>.
/// </summary>
/// <param name="Name">The snapshot's name.</param>
/// <param name="Kind">Persistent or transient.</param>
/// <param name="IsValid">False once invalidated (COW full, I/O error, or a transient snapshot after close).</param>
/// <param name="SectorsAllocated">Sectors of the COW file in use (header, metadata areas and data chunks).</param>
/// <param name="TotalSectors">The COW file's configured size in sectors.</param>
/// <param name="MetadataSectors">Sectors of header and metadata areas.</param>
/// <param name="Exceptions">Complete exceptions (chunks held in the COW file).</param>
/// <param name="InvalidReason">Why the snapshot is invalid, or null.</param>
public sealed record SnapshotStatus(string Name, SnapshotKind Kind, bool IsValid, long SectorsAllocated, long TotalSectors,
    long MetadataSectors, long Exceptions, string? InvalidReason)
{
    /// <summary>
    /// True while a merge of this snapshot into the origin is unfinished (started, and interrupted or failed): the origin
    /// reads as this snapshot, and the snapshot itself refuses I/O until a merge finishes (and deletes it).
    /// </summary>
    public bool Merging { get; init; }

    /// <summary>Why the last merge attempt failed, or null.</summary>
    public string? MergeFailure { get; init; }

    /// <summary>
    /// True when the open found the COW file missing or unreadable and kept the snapshot
    /// (<see cref="CowUnreadablePolicy.KeepSnapshot"/>; <see cref="IsValid"/> is false, <see cref="InvalidReason"/> says
    /// why): nothing was committed, and the origin refuses writes until the file is back or the snapshot is deleted.
    /// </summary>
    public bool Unavailable { get; init; }

    /// <summary>The dmsetup-style status word: <c>Unavailable</c>, <c>Invalid</c>, <c>Merge failed</c>, <c>Merging</c> or <c>Valid</c>.</summary>
    public string Status => Unavailable ? "Unavailable" : !IsValid ? "Invalid" : MergeFailure is not null ? "Merge failed" : Merging ? "Merging" : "Valid";

    /// <summary>The dmsetup status text: <c>allocated/total metadata</c>, or <c>Unavailable</c>, <c>Invalid</c> or <c>Merge failed</c>.</summary>
    public string DmStatus => Unavailable ? "Unavailable" : !IsValid ? "Invalid"
        : MergeFailure is not null ? "Merge failed"
        : string.Create(CultureInfo.InvariantCulture, $"{SectorsAllocated}/{TotalSectors} {MetadataSectors}");

    /// <inheritdoc/>
    public override string ToString() => $"{Name}: {DmStatus}";
}
