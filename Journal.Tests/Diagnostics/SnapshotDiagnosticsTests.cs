using System.Diagnostics.Metrics;
using System.Text.RegularExpressions;
using Journal.Diagnostics;
using Journal.Tests.Nbd;
using Journal.Tests.Snapshot;
using Journal.Testing;
using Journal.Tests.Tools;
using Microsoft.Extensions.Logging;
using Snapshot;
using Snapshot.Diagnostics;
using Snapshot.Nbd;
using static Journal.Tests.Diagnostics.MeterReader;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Diagnostics;

/// <summary>
/// The Snapshot meter and the store's log: each instrument reports what the store's (or the NBD server's) own counters
/// say, under its folder (its first address); a closed store or stopped server is not reported; each logged event
/// happens when its condition does; docs/metrics.md lists exactly the instruments and events published.
/// </summary>
public sealed class SnapshotDiagnosticsTests
{
    private const int Chunk = 8; // sectors

    private static StoreOptions Options(ILoggerFactory? log = null) => new()
    {
        OriginSectors = 64 * Chunk, ChunkSectors = Chunk, LogBlocks = 4096, LoggerFactory = log,
    };

    [Fact]
    public async Task Every_store_instrument_reports_what_the_store_says_until_it_closes()
    {
        using var folder = new TempFolder();
        string path = folder["store"];
        var log = new ListLogger();
        var store = await SnapshotStore.CreateAsync(path, Options(log)).AsTask().WaitAsync(Watchdog);
        using var reader = new MeterReader(SnapshotMetrics.MeterName, SnapshotMetrics.StoreTag, path);
        await WriteAsync(store.Origin, 0, Pattern(0, 16 * Chunk, 1));
        await store.CreateSnapshotAsync("a").AsTask().WaitAsync(Watchdog);
        await store.CreateSnapshotAsync("b", new SnapshotOptions { CowSectors = 6 * Chunk }).AsTask().WaitAsync(Watchdog);
        // 10 chunks: "a" takes 10 copies, "b" (room for 4) fills and is invalidated.
        for (int c = 0; c < 10; c++) await WriteAsync(store.Origin, c * Chunk, Pattern(c * Chunk, Chunk, 2));

        var m = reader.Collect();
        var commits = store.CommitStatistics;
        Assert.Equal(store.CopyCounters.ChunksCopied, Single(m, "snapshot.copies"));
        Assert.True(store.CopyCounters.ChunksCopied >= 10, $"{store.CopyCounters.ChunksCopied} copies");
        Assert.Equal(commits.Rounds, Single(m, "snapshot.commit.rounds"));
        Assert.True(commits.Rounds > 0);
        Assert.Equal(commits.Exceptions, Single(m, "snapshot.commit.exceptions"));
        Assert.Equal(commits.CowFlushes, Single(m, "snapshot.commit.cow_flushes"));
        Assert.Equal(commits.CowWriteBacks, Single(m, "snapshot.commit.cow_write_backs"));
        Assert.Equal(commits.DurabilityWaits, Single(m, "snapshot.commit.log_forces"));
        Assert.Equal(0, Single(m, "snapshot.copies.in_flight"));
        Assert.Equal(0, Single(m, "snapshot.copies.pending"));
        Assert.Equal(store.Throttle.Peak, Single(m, "snapshot.copies.peak_in_flight"));
        Assert.True(store.Throttle.Peak >= 1);
        Assert.Equal(store.Throttle.Waits, Single(m, "snapshot.throttle.waits"));
        Assert.Equal(1, Single(m, "snapshot.snapshots.count", "snapshot.state", "valid"));
        Assert.Equal(1, Single(m, "snapshot.snapshots.count", "snapshot.state", "invalid"));
        Assert.Equal(0, Single(m, "snapshot.pool.usage", "snapshot.pool", "pending_exceptions"));
        Assert.Equal(0, Single(m, "snapshot.pool.emergency.count", "snapshot.pool", "copy_plans"));

        // The log: opened, then the invalidation with its reason; the journal logs under the store's folder.
        var opened = Assert.Single(log.WithId(SnapshotEventIds.Opened));
        Assert.Equal(SnapshotStore.LogCategory, opened.Category);
        Assert.Contains(path, opened.Message);
        var invalid = Assert.Single(log.WithId(SnapshotEventIds.Invalidated));
        Assert.Equal(LogLevel.Warning, invalid.Level);
        Assert.Contains("'b'", invalid.Message);
        Assert.Contains("COW file is full", invalid.Message);
        Assert.Contains(log.WithId(JournalEventIds.Started), e => e.Message.Contains(path, StringComparison.Ordinal));

        await store.CloseAsync().AsTask().WaitAsync(Watchdog);
        Assert.Empty(reader.Collect());
        var closed = Assert.Single(log.WithId(SnapshotEventIds.Closed));
        Assert.Equal($"store {path}: closed", closed.Message);
        Assert.Empty(log.WithId(SnapshotEventIds.Replayed));
    }

    [Fact]
    public async Task A_close_that_could_not_flush_says_so_and_the_next_open_logs_the_replay()
    {
        using var folder = new TempFolder();
        string path = folder["store"];
        var log = new ListLogger();
        var store = await SnapshotStore.CreateAsync(path, Options(log)).AsTask().WaitAsync(Watchdog);
        await store.CreateSnapshotAsync("a").AsTask().WaitAsync(Watchdog);
        await WriteAsync(store.Origin, 0, Pattern(0, 4 * Chunk, 1));
        // A cancelled close flushes nothing: it leaves the journal to replay.
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => store.CloseAsync(new CancellationToken(canceled: true)).AsTask().WaitAsync(Watchdog));
        var closed = Assert.Single(log.WithId(SnapshotEventIds.Closed));
        Assert.Contains("the journal replays at the next open", closed.Message);

        var again = await SnapshotStore.OpenAsync(path, new StoreOptions { LoggerFactory = log }).AsTask().WaitAsync(Watchdog);
        await using (again)
        {
            var replayed = Assert.Single(log.WithId(SnapshotEventIds.Replayed));
            Assert.Equal(LogLevel.Warning, replayed.Level);
            Assert.Contains(path, replayed.Message);
            Assert.Contains("checkpoints", replayed.Message);
            Assert.Equal(2, log.WithId(SnapshotEventIds.Opened).Count());
        }
    }

    [Fact]
    public async Task A_missing_cow_file_is_logged_with_the_snapshot_and_the_reason_and_counted_unavailable_or_invalid()
    {
        using var folder = new TempFolder();
        string path = folder["store"];
        var store = await SnapshotStore.CreateAsync(path, Options()).AsTask().WaitAsync(Watchdog);
        await store.CreateSnapshotAsync("gone").AsTask().WaitAsync(Watchdog);
        await store.CreateSnapshotAsync("kept").AsTask().WaitAsync(Watchdog);
        await WriteAsync(store.Origin, 0, Pattern(0, 2 * Chunk, 1));
        await store.CloseAsync().AsTask().WaitAsync(Watchdog);
        File.Delete(Path.Combine(path, "gone.cow"));

        var log = new ListLogger();
        var again = await SnapshotStore.OpenAsync(path, new StoreOptions { LoggerFactory = log }).AsTask().WaitAsync(Watchdog);
        await using (again)
        {
            Assert.Empty(log.WithId(SnapshotEventIds.Invalidated));
            var unavailable = Assert.Single(log.WithId(SnapshotEventIds.Unavailable));
            Assert.Equal(LogLevel.Warning, unavailable.Level);
            Assert.Contains("'gone'", unavailable.Message);
            Assert.Contains("missing", unavailable.Message);
            using var reader = new MeterReader(SnapshotMetrics.MeterName, SnapshotMetrics.StoreTag, path);
            var m = reader.Collect();
            Assert.Equal(1, Single(m, "snapshot.snapshots.count", "snapshot.state", "unavailable"));
            Assert.Equal(0, Single(m, "snapshot.snapshots.count", "snapshot.state", "invalid"));
            Assert.Equal(1, Single(m, "snapshot.snapshots.count", "snapshot.state", "valid"));
        }

        log = new ListLogger();
        var dropping = await SnapshotStore.OpenAsync(path, new StoreOptions { LoggerFactory = log, CowUnreadablePolicy = CowUnreadablePolicy.InvalidateSnapshot })
            .AsTask().WaitAsync(Watchdog);
        await using (dropping)
        {
            Assert.Empty(log.WithId(SnapshotEventIds.Unavailable));
            var invalid = Assert.Single(log.WithId(SnapshotEventIds.Invalidated));
            Assert.Contains("'gone'", invalid.Message);
            Assert.Contains("missing", invalid.Message);
            using var reader = new MeterReader(SnapshotMetrics.MeterName, SnapshotMetrics.StoreTag, path);
            var m = reader.Collect();
            Assert.Equal(0, Single(m, "snapshot.snapshots.count", "snapshot.state", "unavailable"));
            Assert.Equal(1, Single(m, "snapshot.snapshots.count", "snapshot.state", "invalid"));
        }
    }

    [Fact]
    public async Task A_failed_merge_is_logged_once_with_the_snapshot_and_the_error()
    {
        var p = new TestDeviceProvider();
        FaultInjectingBlockDevice? originFaults = null;
        p.Wrap = (file, d) => file.EndsWith("origin.img", StringComparison.Ordinal) ? originFaults = new FaultInjectingBlockDevice(d) : d;
        var log = new ListLogger();
        var o = p.Options(new StoreOptions { OriginSectors = 64 * Chunk, ChunkSectors = Chunk, LogBlocks = 2048, LoggerFactory = log });
        await using var store = await SnapshotStore.CreateAsync(Folder, o).AsTask().WaitAsync(Watchdog);
        await store.CreateSnapshotAsync("s").AsTask().WaitAsync(Watchdog);
        await WriteAsync(store.Origin, 0, Pattern(0, 4 * Chunk, 1));
        originFaults!.AddRule(FaultRule.Permanent(FaultOps.Write));
        await Assert.ThrowsAsync<JournalException>(() => store.MergeSnapshotAsync("s").AsTask().WaitAsync(Watchdog));
        var failed = Assert.Single(log.WithId(SnapshotEventIds.MergeFailed));
        Assert.Equal(LogLevel.Warning, failed.Level);
        Assert.Contains("'s'", failed.Message);
        Assert.DoesNotContain('\n', failed.Message);
        originFaults.ClearFaults();
        await store.MergeSnapshotAsync("s").AsTask().WaitAsync(Watchdog);
        Assert.Single(log.WithId(SnapshotEventIds.MergeFailed));
    }

    [Fact]
    public async Task Nbd_instruments_count_requests_by_operation_bytes_and_errors_until_the_server_stops()
    {
        await using var h = await NbdHarness.StartAsync(originBytes: 1 << 20);
        string name = h.Server.Addresses[0];
        using var reader = new MeterReader(SnapshotMetrics.MeterName, SnapshotMetrics.ServerTag, name);
        await using var c = await h.OpenAsync();
        var data = new byte[8192];
        Random.Shared.NextBytes(data);
        Assert.Equal(0u, (await c.RoundTripAsync(NbdProtocol.CmdWrite, 0, 8192, data)).Error);
        Assert.Equal(0u, (await c.RoundTripAsync(NbdProtocol.CmdWrite, 8192, 4096, data.AsMemory(0, 4096))).Error);
        Assert.Equal(data, await c.ReadAsync(0, 8192));
        Assert.Equal(0u, (await c.RoundTripAsync(NbdProtocol.CmdFlush, 0, 0)).Error);
        Assert.Equal(0u, (await c.RoundTripAsync(NbdProtocol.CmdTrim, 0, 4096)).Error);
        // Past the end: answered with an error, not counted as a read.
        Assert.NotEqual(0u, (await c.RoundTripAsync(NbdProtocol.CmdRead, 1 << 20, 4096)).Error);

        var m = reader.Collect();
        Assert.Equal(1, Single(m, "nbd.connections"));
        Assert.Equal(2, Single(m, "nbd.requests", "nbd.operation", "write"));
        Assert.Equal(1, Single(m, "nbd.requests", "nbd.operation", "read"));
        Assert.Equal(1, Single(m, "nbd.requests", "nbd.operation", "flush"));
        Assert.Equal(1, Single(m, "nbd.requests", "nbd.operation", "trim"));
        Assert.Equal(0, Single(m, "nbd.requests", "nbd.operation", "write_zeroes"));
        Assert.Equal(1, Single(m, "nbd.request.errors"));
        Assert.Equal(12288, Single(m, "nbd.io", "nbd.direction", "write"));
        Assert.Equal(8192, Single(m, "nbd.io", "nbd.direction", "read"));

        await h.Server.StopAsync().WaitAsync(RawNbdClient.Watchdog);
        Assert.Empty(reader.Collect());
    }

    [Fact]
    public void The_documented_instruments_and_events_are_exactly_those_published()
    {
        var doc = File.ReadAllText(Path.Combine(MetricsTests.RepoRoot(), "docs", "metrics.md"));
        var documented = Regex.Matches(doc, @"^\| `((?:snapshot|nbd)\.[a-z_.]+)` \| ([a-z -]+) \| `([^`]+)` \|", RegexOptions.Multiline)
            .ToDictionary(x => x.Groups[1].Value, x => (Type: x.Groups[2].Value.Trim(), Unit: x.Groups[3].Value));
        using var reader = new MeterReader(SnapshotMetrics.MeterName, SnapshotMetrics.StoreTag, "(none)");
        // The instruments exist once the class is initialised (a store or server registers with it).
        System.Runtime.CompilerServices.RuntimeHelpers.RunClassConstructor(typeof(SnapshotMetrics).TypeHandle);
        var published = reader.Instruments.Values.ToDictionary(i => i.Name, i => (Type: Kind(i), Unit: i.Unit ?? ""));
        Assert.Equal(published.Keys.Order(), documented.Keys.Order());
        foreach (var (n, p) in published) Assert.True(p == documented[n], $"{n}: published {p}, documented {documented[n]}");
        foreach (var i in reader.Instruments.Values) Assert.False(string.IsNullOrWhiteSpace(i.Description), $"{i.Name} has no description");

        // Every event id of the store's log has a row: | 2000 | `StoreOpened` | Information | ... |
        var rows = Regex.Matches(doc, @"^\| (2\d\d\d) \| `([A-Za-z]+)` \| ([A-Za-z]+) \|", RegexOptions.Multiline)
            .ToDictionary(x => int.Parse(x.Groups[1].Value), x => (Name: x.Groups[2].Value, Level: x.Groups[3].Value));
        // The store's events are 2000..2099, the NBD server's 2100..2199.
        CheckEvents(typeof(SnapshotEventIds), typeof(SnapshotLog), rows.Where(r => r.Key < 2100).ToDictionary());
        CheckEvents(typeof(NbdEventIds), typeof(NbdLog), rows.Where(r => r.Key >= 2100).ToDictionary());
    }

    /// <summary>The ids a class declares, the messages a log class declares and the documented rows are the same set, with the same names and levels.</summary>
    private static void CheckEvents(Type idClass, Type logClass, Dictionary<int, (string Name, string Level)> rows)
    {
        var ids = idClass.GetFields().Select(f => (int)f.GetRawConstantValue()!).Order().ToArray();
        Assert.NotEmpty(ids);
        Assert.Equal(ids, rows.Keys.Order().ToArray());
        var declared = logClass.GetMethods(System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.Public)
            .Select(mi => mi.GetCustomAttributes(typeof(LoggerMessageAttribute), false).Cast<LoggerMessageAttribute>().SingleOrDefault())
            .Where(a => a is not null).ToDictionary(a => a!.EventId, a => (Name: a!.EventName!, Level: a.Level.ToString()));
        Assert.Equal(ids, declared.Keys.Order().ToArray());
        foreach (var (id, d) in declared) Assert.True(rows[id] == d, $"event {id}: declared {d}, documented {rows[id]}");
    }

    private static string Kind(Instrument i) => i switch
    {
        ObservableCounter<long> => "counter",
        ObservableUpDownCounter<long> => "up-down counter",
        ObservableGauge<long> => "gauge",
        _ => i.GetType().Name,
    };
}
