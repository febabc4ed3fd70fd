using System.Globalization;
using Snapshot;

namespace SnapCtl;

/// <summary>
/// <c>snapctl status</c> output. Text: one line for the origin and one per snapshot, in the form of
/// <c>dmsetup status</c> (<c>name: start length target status</c>). JSON: the fields below, snake_case.
/// </summary>
internal sealed record StatusReport(
    string Store, StatusReport.OriginInfo Origin, StatusReport.LogInfo Log, IReadOnlyList<StatusReport.SnapshotInfo> Snapshots,
    StatusReport.CopyInfo Copies, StatusReport.CommitInfo? Commits)
{
    public sealed record OriginInfo(long Sectors, int ChunkSectors);
    public sealed record LogInfo(bool Clean);
    public sealed record SnapshotInfo(string Name, string Kind, string Status, bool Valid, long SectorsAllocated, long TotalSectors,
        long MetadataSectors, long Exceptions, string? InvalidReason, bool Merging, string? MergeFailure, bool Unavailable);
    public sealed record CopyInfo(int Bound, int InFlight, int PeakInFlight, long ThrottleWaits, long DeferredWrites, int DeferredWritesPending);
    public sealed record CommitInfo(string Committer, long Rounds, long Exceptions, double ExceptionsPerRound, long LargestRound, long CowFlushes,
        long CowWriteBacks, long Transactions, long LogForces, double WaitMs, double FlushMs, double CommitMs, double AverageRoundMs, long FailedRounds, long CarriedRounds, long RunWaits);

    public static StatusReport From(StoreStatus s) => new(
        s.Folder,
        new OriginInfo(s.OriginSectors, s.ChunkSectors),
        new LogInfo(s.LogClean),
        s.Snapshots.Select(x => new SnapshotInfo(x.Name, x.Kind == SnapshotKind.Persistent ? "persistent" : "transient", x.DmStatus, x.IsValid,
            x.SectorsAllocated, x.TotalSectors, x.MetadataSectors, x.Exceptions, x.InvalidReason, x.Merging, x.MergeFailure, x.Unavailable)).ToArray(),
        new CopyInfo(s.CopyBound, s.CopiesInFlight, s.PeakCopiesInFlight, s.ThrottleWaits, s.DeferredWrites, s.DeferredWritesPending),
        s.Commits is { } c
            ? new CommitInfo(c.Committer, c.Rounds, c.Exceptions, Math.Round(c.ExceptionsPerRound, 2), c.LargestRound, c.CowFlushes, c.CowWriteBacks, c.Transactions,
                c.DurabilityWaits, Math.Round(c.WaitTime.TotalMilliseconds, 3), Math.Round(c.FlushTime.TotalMilliseconds, 3), Math.Round(c.CommitTime.TotalMilliseconds, 3), Math.Round(c.AverageRoundWait.TotalMilliseconds, 3), c.FailedRounds, c.CarriedRounds, c.RunWaits)
            : null);

    /// <summary>dmsetup-style lines: the origin, then each snapshot.</summary>
    public static IEnumerable<string> Lines(StoreStatus s)
    {
        yield return string.Create(CultureInfo.InvariantCulture, $"origin: 0 {s.OriginSectors} snapshot-origin");
        foreach (var x in s.Snapshots)
        {
            string line = string.Create(CultureInfo.InvariantCulture, $"{x.Name}: 0 {s.OriginSectors} snapshot {x.DmStatus}");
            if (x.Unavailable) line += $" ({x.InvalidReason}; nothing was committed: the origin refuses writes until the file is restored and the store reopened, or the snapshot is deleted)";
            else if (x.InvalidReason is not null) line += $" ({x.InvalidReason})";
            if (x.MergeFailure is not null) line += $" ({x.MergeFailure}; the origin reads as {x.Name} until 'snapshot merge' finishes)";
            else if (x.Merging) line += $" (merge into the origin unfinished: the origin reads as {x.Name} until 'snapshot merge' finishes)";
            yield return line;
        }
    }
}
