using Journal.Format;
using Journal.Recovery;
using Journal.Storage;
using Journal.Testing;
using Journal.Tests.Cil;
using static Journal.Tests.Cil.JournalFixture;

namespace Journal.Tests.Recovery;

/// <summary>
/// Opening a journal after a crash on the real log: scan (the log read once, every checkpoint validated), replay (into
/// the handlers, idempotent by home LSN, optionally by item type), then open for writing.
/// </summary>
public sealed class CheckpointRecoveryTests
{
    private const uint Blocks = LogIntegrationTests.Blocks;
    private const ushort OtherType = 8;

    private static JournalOptions Options => LogIntegrationTests.RealOptions();

    private static (MetadataJournal Journal, MemoryBlockDevice Log) NewJournal()
    {
        var log = new MemoryBlockDevice(Blocks, "log");
        return (MetadataJournal.Create(new LogRegion(log, 0, Blocks), Options), log);
    }

    /// <summary>The log as a crash at this instant leaves it: everything forced is on the device.</summary>
    private static LogRegion Crash(MemoryBlockDevice log) => new(MemoryBlockDevice.FromImage(log.ToArray(), "log"), 0, Blocks);

    private static Dictionary<ushort, IItemRecoveryHandler> Handlers(IItemRecoveryHandler home) => new() { [TestHome.ItemType] = home };

    [Fact]
    public async Task Open_replays_every_checkpoint_in_order_then_continues_the_log_and_the_sequences()
    {
        var (j, log) = NewJournal();
        var home = new TestHome();
        var items = Enumerable.Range(0, 5).Select(i => new TestItem(home, (ulong)i) { Regions = 1 + i % 3 }).ToArray();
        for (int v = 1; v <= 4; v++)
        {
            foreach (var it in items.Take(v + 1)) await CommitAsync(j, it, v * 10 + (long)it.ItemId, 64 + v * 20);
            await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        }
        var region = Crash(log);
        var crashedHome = home.Crash();
        Assert.Empty(crashedHome.Current);   // nothing was written home

        var j2 = MetadataJournal.Open(region, Options, Handlers(crashedHome));
        Assert.Equal(4, j2.RecoveredCheckpoints);
        Assert.Equal(2 + 3 + 4 + 5, j2.RecoveredItemsApplied);   // round v committed items 0..v
        Assert.Equal(1, crashedHome.Completes);
        for (int i = 0; i < 5; i++)
        {
            Assert.True(crashedHome.TryGet((ulong)i, out var data, out _));
            Assert.Equal(40 + i, TestItem.VersionOf(data));
            Assert.Equal(64 + 4 * 20, data.Length);
        }
        Assert.Equal(5UL, j2.CurrentSequence);

        // The log goes on after the recovered one: a later crash recovers the old and the new checkpoints' effects.
        var again = new TestItem(crashedHome, 0);
        await CommitAsync(j2, again, 99);
        await j2.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        var second = JournalRecovery.Scan(Crash((MemoryBlockDevice)region.Device));
        Assert.Equal(5UL, second.LastSequence);
        Assert.Equal(99, TestItem.VersionOf(second.Checkpoints[^1].Items.Single().Regions[0].ToArray()));
        await j2.CloseAsync().AsTask().WaitAsync(Watchdog);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task Replay_skips_copies_the_home_already_reflects_and_a_second_replay_changes_nothing()
    {
        var (j, log) = NewJournal();
        var home = new TestHome();
        var a = new TestItem(home, 1);
        var b = new TestItem(home, 2);
        await CommitAsync(j, a, 1);
        await CommitAsync(j, b, 1);
        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        await CommitAsync(j, a, 2);
        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        await j.WriteBackAsync().AsTask().WaitAsync(Watchdog);   // both home (a at v2, b at v1), stamped
        var region = Crash(log);   // no record since the write-back: the log still holds both checkpoints

        var homeNow = home.Crash();
        var recovered = JournalRecovery.Scan(region);
        Assert.Equal(2, recovered.Checkpoints.Count);
        var r = JournalRecovery.Replay(recovered, Handlers(homeNow));
        Assert.Equal(new ReplayResult(2, 0, 3, 0), r);
        homeNow.TryGet(1, out var da, out _);
        Assert.Equal(2, TestItem.VersionOf(da));

        // A home older than the log: the copies above its LSN are applied, once; replaying again applies nothing.
        var stale = TestHome.FromDurable(new Dictionary<ulong, (byte[], Lsn)>());
        Assert.Equal(new ReplayResult(2, 3, 0, 0), JournalRecovery.Replay(JournalRecovery.Scan(region), Handlers(stale)));
        var after = stale.Current.ToDictionary(kv => kv.Key, kv => (TestItem.VersionOf(kv.Value.Data), kv.Value.Lsn));
        Assert.Equal(2, after[1].Item1);
        Assert.Equal(new ReplayResult(2, 0, 3, 0), JournalRecovery.Replay(JournalRecovery.Scan(region), Handlers(stale)));
        Assert.Equal(after, stale.Current.ToDictionary(kv => kv.Key, kv => (TestItem.VersionOf(kv.Value.Data), kv.Value.Lsn)));
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task A_replay_with_an_item_type_filter_applies_only_those_types_and_the_journal_opens_only_when_every_type_was_replayed()
    {
        var (j, log) = NewJournal();
        var home = new TestHome();
        var other = new TestHome();
        await CommitAsync(j, new TestItem(home, 1), 5);
        await CommitOtherAsync(j, new OtherItem(other, 1, 7));
        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        var region = Crash(log);

        var recovered = JournalRecovery.Scan(region);
        var target = new TestHome();
        var r = JournalRecovery.Replay(recovered, Handlers(target), [TestHome.ItemType]);
        Assert.Equal(1, r.ItemsApplied);
        Assert.Single(target.Current);
        var e = Assert.Throws<InvalidOperationException>(() => MetadataJournal.Open(recovered, Options));
        Assert.Contains($"not replayed for item types {OtherType}", e.Message);

        var otherTarget = new TestHome();
        Assert.Equal(1, JournalRecovery.Replay(recovered, new Dictionary<ushort, IItemRecoveryHandler> { [OtherType] = otherTarget }, [OtherType]).ItemsApplied);
        Assert.True(otherTarget.TryGet(1, out var od, out _));
        Assert.Equal(7, TestItem.VersionOf(od));
        Assert.Equal(2, recovered.ItemsApplied);
        var j2 = MetadataJournal.Open(recovered, Options);
        Assert.Equal(2, j2.RecoveredItemsApplied);
        await j2.CloseAsync().AsTask().WaitAsync(Watchdog);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task Items_whose_handler_says_they_have_no_home_are_skipped_and_counted_apart()
    {
        var (j, log) = NewJournal();
        var home = new TestHome();
        await CommitAsync(j, new TestItem(home, 1), 1);
        await CommitAsync(j, new TestItem(home, 2), 1);
        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        var target = new HomelessAbove(1);
        var r = JournalRecovery.Replay(JournalRecovery.Scan(Crash(log)), Handlers(target));
        Assert.Equal(new ReplayResult(1, 1, 0, 1), r);
        Assert.Equal([1UL], target.Current.Keys);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task A_checkpoint_with_an_item_type_without_handler_is_refused_before_anything_of_the_log_is_applied()
    {
        var (j, log) = NewJournal();
        var home = new TestHome();
        await CommitAsync(j, new TestItem(home, 1), 1);
        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        await CommitOtherAsync(j, new OtherItem(home, 2, 1));
        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        var region = Crash(log);
        var target = new TestHome();
        var e = Assert.Throws<JournalException>(() => MetadataJournal.Open(region, Options, Handlers(target)));
        Assert.Matches($"^log: LSN 1:\\d+: checkpoint 2 holds item type {OtherType} \\(item 2\\) and no recovery handler is registered for it$", e.Message);
        Assert.Empty(target.Current);   // not even checkpoint 1, which has a handler
        Assert.Equal(0, target.Completes);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    public static TheoryData<string, int, byte, string, string> Corruptions => new()
    {
        // field, offset in the checkpoint's regions laid end to end, new byte, problem, expected/found
        { "checkpoint magic", 0, 0xFF, "bad checkpoint magic", "(expected 0x54504b43, found 0x54504bff)" },
        { "checkpoint version", 4, 0x02, "unsupported checkpoint version or header size", "(expected 1/32, found 2/32)" },
        { "checkpoint sequence", 8, 0x00, "checkpoint 0: sequence does not increase", "(expected > 0, found 0)" },
        { "checkpoint item count", 16, 0x05, "item count disagrees with its regions", "(expected 5, found 2)" },
        { "checkpoint region count", 20, 0x09, "region count disagrees with the log", "(expected 9, found 4)" },
        { "checkpoint payload bytes", 24, 0x01, "payload bytes disagree with its regions", "(expected 1, found 168)" },
        { "item magic", 32 + 0, 0x00, "bad item magic", "(expected 0x4d455449, found 0x4d455400)" },
        { "item region count", 32 + 6, 0x02, "header length", "(expected 24, found 20)" },
        { "item region length", 32 + 16, 0x07, "region 0 length", "(expected 7, found 64)" },
    };

    [Fact]
    public async Task A_record_whose_tail_LSN_has_cycle_zero_is_refused_though_its_crc_is_good()
    {
        var (j, log) = NewJournal();
        var home = new TestHome();
        for (ulong i = 1; i <= 4; i++)
        {
            await CommitAsync(j, new TestItem(home, i), 1);
            await j.ForceAllAsync().AsTask().WaitAsync(Watchdog); // each checkpoint attested by the records after it
        }
        var image = log.ToArray();
        var start = JournalRecovery.Scan(new LogRegion(MemoryBlockDevice.FromImage(image, "log"), 0, Blocks)).Checkpoints[0].StartLsn;
        // A record in the middle of the log whose tail LSN says 0:0 (no cycle is 0), sealed again with a good CRC.
        int at = (int)(start.Block * LogFormat.BlockSize);
        var h = RecordHeader.Read(image.AsSpan(at, LogFormat.BlockSize));
        var record = image.AsSpan(at, h.RecordBlocks * LogFormat.BlockSize);
        RecordCodec.Unstamp(record[LogFormat.BlockSize..], h);
        h.TailLsn = Lsn.Zero;
        RecordCodec.Seal(record, ref h);
        var e = Assert.Throws<CorruptionException>(() => JournalRecovery.Scan(new LogRegion(MemoryBlockDevice.FromImage(image, "log"), 0, Blocks)));
        Assert.Contains("record tail LSN out of range", e.Message);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Theory]
    [MemberData(nameof(Corruptions))]
    public async Task A_checkpoint_with_a_valid_crc_but_inconsistent_contents_is_refused_naming_log_block_lsn_expected_and_found(
        string field, int offset, byte value, string problem, string values)
    {
        var (j, log) = NewJournal();
        var home = new TestHome();
        await CommitAsync(j, new TestItem(home, 1), 1);
        await CommitAsync(j, new TestItem(home, 2), 1);
        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        var image = log.ToArray();
        var start = JournalRecovery.Scan(new LogRegion(MemoryBlockDevice.FromImage(image, "log"), 0, Blocks)).Checkpoints.Single().StartLsn;
        LogForge.PatchRecord(image, 0, Blocks, start, payload =>
        {
            int off = offset;
            foreach (var (at, len) in LogForge.OpData(payload))
            {
                if (off < len) { payload[at + off] = value; return; }
                off -= len;
            }
            throw new InvalidOperationException("offset beyond the checkpoint");
        });
        var region = new LogRegion(MemoryBlockDevice.FromImage(image, "log"), 0, Blocks);
        Assert.NotNull(LogRecovery.Recover(region));   // the log itself is sound: the CRC was forged

        var target = new TestHome();
        var e = Assert.Throws<CorruptionException>(() => MetadataJournal.Open(region, Options, Handlers(target)));
        Assert.StartsWith($"log: block {start.Block}: LSN {start}: ", e.Message);
        Assert.Contains(problem, e.Message);
        Assert.EndsWith(values, e.Message);
        Assert.Empty(target.Current);   // nothing of the checkpoint was applied
        _ = field;
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task Opening_reads_the_log_once_replay_and_open_for_writing_read_nothing_more()
    {
        var (j, log) = NewJournal();
        var home = new TestHome();
        var items = Enumerable.Range(0, 20).Select(i => new TestItem(home, (ulong)i)).ToArray();
        for (int v = 1; v <= 10; v++)
        {
            foreach (var it in items) await CommitAsync(j, it, v, 300);
            await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        }
        var region = Crash(log);
        var device = region.Device;

        var recovered = JournalRecovery.Scan(region);
        var afterScan = device.Counters;
        Assert.True(afterScan.Reads > 0);
        JournalRecovery.Replay(recovered, Handlers(home.Crash()));
        var j2 = MetadataJournal.Open(recovered, Options);
        Assert.Equal(afterScan.Reads, device.Counters.Reads);
        Assert.Equal(afterScan.BytesRead, device.Counters.BytesRead);

        // And the scan itself is one read of the live log, not more than twice its size (the head search and the hole
        // check read a few blocks again).
        var fresh = Crash(log);
        var one = JournalRecovery.Scan(fresh);
        long live = ((long)one.Log.NextLsn.Cycle * Blocks + one.Log.NextLsn.Block - ((long)one.Log.TailLsn.Cycle * Blocks + one.Log.TailLsn.Block)) * 512;
        Assert.InRange(fresh.Device.Counters.BytesRead, live, 2 * live + LogFormat.InFlightWindowBlocks(Blocks) * 512L + 64 * 512);
        await j2.CloseAsync().AsTask().WaitAsync(Watchdog);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    private static async Task CommitOtherAsync(MetadataJournal j, OtherItem item)
    {
        using var tx = await j.BeginTransactionAsync((int)j.EstimateLogBytes(item.GetLogSize()));
        using (await item.LockAsync())
        {
            tx.AddItem(item);
            await tx.CommitAsync();
        }
    }

    /// <summary>An item of another type (8), one region holding its version.</summary>
    private sealed class OtherItem(ITestHome home, ulong id, long version) : LockedLogItem(OtherType, id, home.Device)
    {
        private readonly byte[] _state = BitConverter.GetBytes(version);
        public override LogItemSize GetLogSize() => new(1, 8);
        public override void FormatLog(LogVectorWriter writer) => writer.AddRegion(_state);
        protected override ValueTask<bool> WriteHomeAsync(Lsn lsn, CancellationToken cancellationToken)
        {
            home.Write(ItemId, _state, lsn);
            return ValueTask.FromResult(true);
        }
    }

    /// <summary>A home in which items with an id above <paramref name="lastWithHome"/> no longer exist.</summary>
    private sealed class HomelessAbove(ulong lastWithHome) : IItemRecoveryHandler
    {
        public Dictionary<ulong, Lsn> Current { get; } = new();
        public bool HasHome(ulong itemId) => itemId <= lastWithHome;
        public Lsn GetHomeLsn(ulong itemId) => Current.GetValueOrDefault(itemId);
        public void Apply(ulong itemId, Lsn checkpointLsn, IReadOnlyList<ReadOnlyMemory<byte>> regions)
        {
            Assert.True(HasHome(itemId));
            Current[itemId] = checkpointLsn;
        }
    }
}
