using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Snapshot;

/// <summary>Status of a whole store: geometry, every snapshot, the log, the copy engine and its pools.</summary>
/// <param name="Folder">The store folder.</param>
/// <param name="OriginSectors">Size of the origin in sectors.</param>
/// <param name="ChunkSectors">Chunk size in sectors.</param>
/// <param name="LogClean">True when the journal was clean at open (the last close was clean; nothing was replayed).</param>
/// <param name="Snapshots">Every snapshot, in creation order.</param>
/// <param name="CopyBound">The in-flight copy bound (0 = unlimited).</param>
/// <param name="CopiesInFlight">Copies in flight now.</param>
/// <param name="PeakCopiesInFlight">Most copies in flight at once since open.</param>
/// <param name="ThrottleWaits">Times a writer waited for the copy bound.</param>
/// <param name="PendingPool">The pending-exception pool.</param>
/// <param name="CopyJobPool">The copy-job pool.</param>
public sealed record StoreStatus(string Folder, long OriginSectors, int ChunkSectors, bool LogClean,
    IReadOnlyList<SnapshotStatus> Snapshots, int CopyBound, int CopiesInFlight, int PeakCopiesInFlight, long ThrottleWaits,
    PoolStatistics PendingPool, PoolStatistics CopyJobPool)
{
    /// <summary>The pending copy bound: copies in flight or waiting for their commit (0 = unlimited).</summary>
    public int PendingCopyBound { get; init; }

    /// <summary>Copies pending now: in flight, or written and waiting for their commit.</summary>
    public int CopiesPending { get; init; }

    /// <summary>Most copies pending at once since open.</summary>
    public int PeakCopiesPending { get; init; }

    /// <summary>
    /// Origin writes deferred since open (<see cref="StoreOptions.DeferCopiedWrites"/>: returned once their copies were
    /// queued, written to the origin after their commit).
    /// </summary>
    public long DeferredWrites { get; init; }

    /// <summary>Deferred origin writes not yet on the origin now.</summary>
    public int DeferredWritesPending { get; init; }

    /// <summary>Bytes of data buffers held by the deferred writes pending now (in their size classes).</summary>
    public long DeferredBytesHeld { get; init; }

    /// <summary>
    /// Bytes of data buffers kept for reuse by later deferred writes (with <see cref="DeferredBytesHeld"/>, at most 32
    /// MiB; given back at full garbage collections once deferred writes stop).
    /// </summary>
    public long DeferredBytesKept { get; init; }

    /// <summary>The commit pipeline's counters since open (rounds, their exceptions, COW flushes, log forces, wait time).</summary>
    public CommitPipelineStatistics? Commits { get; init; }

    /// <summary>
    /// The status as one JSON object. Field names: <c>folder</c>, <c>origin_sectors</c>, <c>chunk_sectors</c>,
    /// <c>log_clean</c>, <c>snapshots[]</c> (<c>name</c>, <c>kind</c>, <c>status</c>, <c>sectors_allocated</c>,
    /// <c>total_sectors</c>, <c>metadata_sectors</c>, <c>exceptions</c>, <c>invalid_reason</c>), <c>copy_bound</c>,
    /// <c>copies_in_flight</c>, <c>peak_copies_in_flight</c>, <c>pending_copy_bound</c>, <c>copies_pending</c>,
    /// <c>peak_copies_pending</c>, <c>throttle_waits</c>, <c>deferred_writes</c>, <c>deferred_writes_pending</c>, <c>deferred_bytes_held</c>,
    /// <c>deferred_bytes_kept</c>, <c>pools[]</c> (<c>name</c>,
    /// <c>budget</c>, <c>reserve</c>, <c>in_use</c>, <c>peak_in_use</c>, <c>emergency</c>, <c>peak_emergency</c>,
    /// <c>emergency_total</c>), <c>commits</c> (<c>committer</c>, <c>rounds</c>, <c>exceptions</c>,
    /// <c>exceptions_per_round</c>, <c>largest_round</c>, <c>cow_flushes</c>, <c>transactions</c>, <c>log_forces</c>,
    /// <c>wait_ms</c>, <c>average_round_ms</c>, <c>failed_rounds</c>).
    /// </summary>
    public string ToJson(bool indented = false)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = indented }))
        {
            w.WriteStartObject();
            w.WriteString("folder", Folder);
            w.WriteNumber("origin_sectors", OriginSectors);
            w.WriteNumber("chunk_sectors", ChunkSectors);
            w.WriteBoolean("log_clean", LogClean);
            w.WriteStartArray("snapshots");
            foreach (var s in Snapshots)
            {
                w.WriteStartObject();
                w.WriteString("name", s.Name);
                w.WriteString("kind", s.Kind == SnapshotKind.Persistent ? "persistent" : "transient");
                w.WriteString("status", s.DmStatus);
                w.WriteNumber("sectors_allocated", s.SectorsAllocated);
                w.WriteNumber("total_sectors", s.TotalSectors);
                w.WriteNumber("metadata_sectors", s.MetadataSectors);
                w.WriteNumber("exceptions", s.Exceptions);
                if (s.InvalidReason is null) w.WriteNull("invalid_reason"); else w.WriteString("invalid_reason", s.InvalidReason);
                w.WriteBoolean("merging", s.Merging);
                if (s.MergeFailure is null) w.WriteNull("merge_failure"); else w.WriteString("merge_failure", s.MergeFailure);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteNumber("copy_bound", CopyBound);
            w.WriteNumber("copies_in_flight", CopiesInFlight);
            w.WriteNumber("peak_copies_in_flight", PeakCopiesInFlight);
            w.WriteNumber("pending_copy_bound", PendingCopyBound);
            w.WriteNumber("copies_pending", CopiesPending);
            w.WriteNumber("peak_copies_pending", PeakCopiesPending);
            w.WriteNumber("throttle_waits", ThrottleWaits);
            w.WriteNumber("deferred_writes", DeferredWrites);
            w.WriteNumber("deferred_writes_pending", DeferredWritesPending);
            w.WriteNumber("deferred_bytes_held", DeferredBytesHeld);
            w.WriteNumber("deferred_bytes_kept", DeferredBytesKept);
            w.WriteStartArray("pools");
            foreach (var p in new[] { PendingPool, CopyJobPool })
            {
                w.WriteStartObject();
                w.WriteString("name", p.Name);
                w.WriteNumber("budget", p.Budget);
                w.WriteNumber("reserve", p.Reserve);
                w.WriteNumber("in_use", p.InUse);
                w.WriteNumber("peak_in_use", p.PeakInUse);
                w.WriteNumber("emergency", p.Emergency);
                w.WriteNumber("peak_emergency", p.PeakEmergency);
                w.WriteNumber("emergency_total", p.EmergencyTotal);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            if (Commits is { } c)
            {
                w.WriteStartObject("commits");
                w.WriteString("committer", c.Committer);
                w.WriteNumber("rounds", c.Rounds);
                w.WriteNumber("exceptions", c.Exceptions);
                w.WriteNumber("exceptions_per_round", Math.Round(c.ExceptionsPerRound, 2));
                w.WriteNumber("largest_round", c.LargestRound);
                w.WriteNumber("cow_flushes", c.CowFlushes);
                w.WriteNumber("cow_write_backs", c.CowWriteBacks);
                w.WriteNumber("carried_rounds", c.CarriedRounds);
                w.WriteNumber("run_waits", c.RunWaits);
                w.WriteNumber("transactions", c.Transactions);
                w.WriteNumber("log_forces", c.DurabilityWaits);
                w.WriteNumber("wait_ms", Math.Round(c.WaitTime.TotalMilliseconds, 3));
                w.WriteNumber("flush_ms", Math.Round(c.FlushTime.TotalMilliseconds, 3));
                w.WriteNumber("commit_ms", Math.Round(c.CommitTime.TotalMilliseconds, 3));
                w.WriteNumber("average_round_ms", Math.Round(c.AverageRoundWait.TotalMilliseconds, 3));
                w.WriteNumber("failed_rounds", c.FailedRounds);
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    private static string MergeNote(SnapshotStatus s) =>
        s.MergeFailure is not null ? $" ({s.MergeFailure}; the origin reads as this snapshot until a merge finishes)"
        : s.Merging ? " (merge into the origin unfinished: the origin reads as this snapshot until a merge finishes)" : "";

    /// <summary>A human-readable multi-line summary (one line per snapshot in dmsetup form).</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"store {Folder}: origin {OriginSectors} sectors, chunk {ChunkSectors} sectors, log {(LogClean ? "clean" : "replayed")}\n");
        foreach (var s in Snapshots) sb.Append(CultureInfo.InvariantCulture, $"  {s.Name} ({(s.Kind == SnapshotKind.Persistent ? "P" : "N")}): {s.DmStatus}{(s.InvalidReason is null ? "" : $" ({s.InvalidReason})")}{MergeNote(s)}\n");
        sb.Append(CultureInfo.InvariantCulture, $"  copies in flight {CopiesInFlight} (peak {PeakCopiesInFlight}, bound {(CopyBound == 0 ? "unlimited" : CopyBound.ToString(CultureInfo.InvariantCulture))}, waits {ThrottleWaits})\n");
        sb.Append("  ").Append(PendingPool).Append('\n');
        sb.Append("  ").Append(CopyJobPool).Append('\n');
        if (Commits is { } c)
            sb.Append(CultureInfo.InvariantCulture, $"  commit rounds {c.Rounds} ({c.Exceptions} exceptions, {c.ExceptionsPerRound:F1} a round, {c.CowFlushes} COW flushes, {c.CowWriteBacks} COW write-backs, {c.CarriedRounds} carried by a log force, {c.RunWaits} waited for runs, {c.DurabilityWaits} log forces)\n");
        return sb.ToString();
    }
}
