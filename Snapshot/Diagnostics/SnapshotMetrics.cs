using System.Diagnostics.Metrics;
using System.Reflection;
using Journal.Diagnostics;
using Snapshot.Nbd;

namespace Snapshot.Diagnostics;

/// <summary>
/// The snapshot store's meter, <c>Snapshot</c>: observable instruments over every open store (tag
/// <c>snapshot.store</c>) and every running NBD server (tag <c>nbd.server</c>), read from counters they keep anyway,
/// so nothing is recorded on the data path. docs/metrics.md lists every instrument; a test checks the list against
/// the meter.
/// </summary>
public static class SnapshotMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "Snapshot";

    /// <summary>The tag naming a store in its measurements (its folder, made unique among the open stores).</summary>
    public const string StoreTag = "snapshot.store";

    /// <summary>The tag naming an NBD server (its first listening address).</summary>
    public const string ServerTag = "nbd.server";

    private static readonly Meter s_meter = new(MeterName,
        typeof(SnapshotMetrics).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion);

    internal static readonly ObservedSet<SnapshotStore> Stores = new(StoreTag);
    internal static readonly ObservedSet<NbdServer> Servers = new(ServerTag);

    static SnapshotMetrics()
    {
        var m = s_meter;
        Stores.CreateUpDownCounter(m, "snapshot.copies.in_flight", "{copy}", "Copy-on-write copies in flight (their data being read and written).", s => s.Throttle.InFlight);
        Stores.CreateUpDownCounter(m, "snapshot.copies.pending", "{copy}", "Copies pending: in flight, or written and waiting for their commit round.", s => s.Throttle.Pending);
        Stores.CreateGauge(m, "snapshot.copies.peak_in_flight", "{copy}", "The most copies in flight at once since open.", s => s.Throttle.Peak);
        Stores.CreateCounter(m, "snapshot.copies", "{copy}", "Chunk copies written and committed (one per snapshot per chunk).", s => s.CopyCounters.ChunksCopied);
        Stores.CreateCounter(m, "snapshot.throttle.waits", "{wait}", "Times a write waited for room under the in-flight or pending copy bound.", s => s.Throttle.Waits);
        Stores.CreateCounter(m, "snapshot.commit.rounds", "{round}", "Commit rounds completed.", s => s.CommitStatistics.Rounds);
        Stores.CreateCounter(m, "snapshot.commit.exceptions", "{exception}", "Exceptions made durable by commit rounds.", s => s.CommitStatistics.Exceptions);
        Stores.CreateCounter(m, "snapshot.commit.cow_flushes", "{flush}", "COW file flushes issued by commit rounds.", s => s.CommitStatistics.CowFlushes);
        Stores.CreateCounter(m, "snapshot.commit.cow_write_backs", "{file}", "COW files whose copies a round made durable by another COW file's flush (one device flush for them all).", s => s.CommitStatistics.CowWriteBacks);
        Stores.CreateCounter(m, "snapshot.commit.carried_rounds", "{round}", "Commit rounds whose COW data the previous round's log force made durable (written back before its flush began: one device flush for both).", s => s.CommitStatistics.CarriedRounds);
        Stores.CreateCounter(m, "snapshot.commit.run_waits", "{round}", "Commit rounds that first waited for the announced runs of origin writes under way, to take all their copies.", s => s.CommitStatistics.RunWaits);
        Stores.CreateCounter(m, "snapshot.commit.log_forces", "{force}", "Log forces (or durable area writes) issued by commit rounds.", s => s.CommitStatistics.DurabilityWaits);
        Stores.CreateUpDownCounter(m, "snapshot.snapshots.count", "{snapshot}", "Snapshots, by state.", "snapshot.state",
            ("valid", s => s.Catalog.Snapshots.Count(x => x.IsValid)), ("invalid", s => s.Catalog.Snapshots.Count(x => !x.IsValid && !x.Unavailable)),
            ("unavailable", s => s.Catalog.Snapshots.Count(x => x.Unavailable)));
        Stores.CreateUpDownCounter(m, "snapshot.pool.usage", "{object}", "Pooled objects out (pending exceptions and copy plans).", "snapshot.pool",
            ("pending_exceptions", s => s.DataPath.PendingPool.Statistics.InUse), ("copy_plans", s => s.DataPath.PlanPool.Statistics.InUse));
        Stores.CreateUpDownCounter(m, "snapshot.pool.emergency.count", "{object}", "Emergency objects out (beyond the pool's budget).", "snapshot.pool",
            ("pending_exceptions", s => s.DataPath.PendingPool.Statistics.Emergency), ("copy_plans", s => s.DataPath.PlanPool.Statistics.Emergency));
        Servers.CreateUpDownCounter(m, "nbd.connections", "{connection}", "Client connections open.", s => s.ConnectionCount);
        Servers.CreateCounter(m, "nbd.requests", "{request}", "Requests served, by operation.", "nbd.operation",
            ("read", s => s.Counters.Reads), ("write", s => s.Counters.Writes), ("write_zeroes", s => s.Counters.WriteZeroes),
            ("flush", s => s.Counters.Flushes), ("trim", s => s.Counters.Trims), ("block_status", s => s.Counters.BlockStatus));
        Servers.CreateCounter(m, "nbd.request.errors", "{request}", "Requests answered with an error.", s => s.Counters.Errors);
        Servers.CreateCounter(m, "nbd.io", "By", "Bytes of data read and written for clients, by direction.", "nbd.direction",
            ("read", s => s.Counters.BytesRead), ("write", s => s.Counters.BytesWritten));
    }

    /// <summary>Starts reporting on <paramref name="store"/>; returns its name in the measurements.</summary>
    internal static string Add(SnapshotStore store) => Stores.Add(store, store.Folder);

    /// <summary>Starts reporting on <paramref name="server"/>.</summary>
    internal static string Add(NbdServer server, string name) => Servers.Add(server, name);
}
