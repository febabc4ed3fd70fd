using Journal.Format;
using Journal.Recovery;
using static Journal.Tests.Cil.JournalFixture;

namespace Journal.Tests.Cil;

public sealed class CheckpointRecoveryTests
{
    private static MetadataJournal Open(MemoryLogSink.CrashImage image, TestHome home, out MemoryLogSink sink)
    {
        MemoryLogSink? opened = null;
        var j = MetadataJournal.Open("memory-log", SmallOptions(2048), new Dictionary<ushort, IItemRecoveryHandler> { [TestHome.ItemType] = home },
            image.Recover, () => opened = image.OpenAfter());
        sink = opened!;
        return j;
    }

    [Fact]
    public async Task Open_ReplaysCheckpointsInOrder_IntoTheHandlers()
    {
        var (j, sink) = Create();
        var home = new TestHome();
        var items = Enumerable.Range(0, 5).Select(i => new TestItem(home, (ulong)i) { Regions = 1 + i % 3 }).ToArray();
        for (int v = 1; v <= 4; v++)
        {
            foreach (var it in items.Take(v + 1)) Commit(j, it, v * 10 + (long)it.ItemId, 64 + v * 20);
            await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        }
        // Crash: nothing was written home.
        var image = sink.Crash();
        var crashedHome = home.Crash();
        Assert.Empty(crashedHome.Current);

        var j2 = Open(image, crashedHome, out var sink2);
        Assert.Equal(4, j2.RecoveredCheckpoints);
        Assert.Equal(2 + 3 + 4 + 5, j2.RecoveredItemsApplied); // round v committed items 0..v
        Assert.Equal(1, crashedHome.Completes);
        for (int i = 0; i < 5; i++)
        {
            Assert.True(crashedHome.TryGet((ulong)i, out var data, out _));
            long expect = 4 * 10 + i; // every item was committed in the last round
            Assert.Equal(expect, TestItem.VersionOf(data));
            Assert.Equal(64 + (expect / 10) * 20, data.Length);
        }
        // Sequences continue after the recovered ones, on a log that continues after the old one.
        Assert.Equal(5UL, j2.CurrentSequence);
        Assert.True(sink2.Head > image.Records[^1].Position.ToLsnIn(sink2.LogBlocks));
        await j2.CloseAsync().AsTask().WaitAsync(Watchdog);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task Replay_SkipsCopiesAtOrBelowTheHomeLsn_AndIsIdempotent()
    {
        var (j, sink) = Create();
        var home = new TestHome();
        var a = new TestItem(home, 1);
        var b = new TestItem(home, 2);
        Commit(j, a, 1);
        Commit(j, b, 1);
        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        Commit(j, a, 2);
        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        await j.WriteBackAsync().AsTask().WaitAsync(Watchdog); // both home (a at v2, b at v1), stamped
        var image = sink.Snapshot(); // a log that still holds both checkpoints (as if the tail had not moved)
        var crashedHome = home.Crash();

        var j2 = Open(image, crashedHome, out _);
        Assert.Equal(0, j2.RecoveredItemsApplied);
        Assert.Equal(3, j2.RecoveredItemsSkipped);
        crashedHome.TryGet(1, out var da, out _);
        Assert.Equal(2, TestItem.VersionOf(da));
        await j2.CloseAsync().AsTask().WaitAsync(Watchdog);

        // A home older than the log: copies above its LSN are applied, once; a second replay changes nothing.
        var stale = TestHome.FromDurable(new Dictionary<ulong, (byte[], Lsn)>());
        var j3 = Open(image, stale, out _);
        Assert.Equal(3, j3.RecoveredItemsApplied);
        await j3.CloseAsync().AsTask().WaitAsync(Watchdog);
        var after = stale.Current.ToDictionary(kv => kv.Key, kv => (TestItem.VersionOf(kv.Value.Data), kv.Value.Lsn));
        var j4 = Open(image, stale, out _);
        Assert.Equal(0, j4.RecoveredItemsApplied);
        Assert.Equal(after, stale.Current.ToDictionary(kv => kv.Key, kv => (TestItem.VersionOf(kv.Value.Data), kv.Value.Lsn)));
        await j4.CloseAsync().AsTask().WaitAsync(Watchdog);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    [Fact]
    public async Task CheckpointWithAnItemTypeWithoutHandler_IsRefusedWithAClearError()
    {
        var (j, sink) = Create();
        Commit(j, new TestItem(new TestHome(), 1), 1);
        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        var image = sink.Crash();
        var e = Assert.Throws<JournalException>(() => MetadataJournal.Open("memory-log", SmallOptions(2048),
            new Dictionary<ushort, IItemRecoveryHandler>(), image.Recover, image.OpenAfter));
        Assert.Equal($"memory-log: LSN 1:0: checkpoint 1 holds item type {TestHome.ItemType} (item 1) and no recovery handler is registered for it", e.Message);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    public static TheoryData<string, int, byte, string> Corruptions => new()
    {
        { "checkpoint magic", 0, 0xFF, "bad checkpoint magic" },
        { "checkpoint item count", 16, 0x05, "item count disagrees" },
        { "checkpoint region count", 20, 0x09, "region count disagrees" },
        { "checkpoint payload bytes", 24, 0x01, "payload bytes disagree" },
        { "item magic", 32 + 0, 0x00, "bad item magic" },
        { "item region count", 32 + 6, 0x02, "header length" },
        { "item region length", 32 + 16, 0x07, "region 0 length" },
    };

    [Theory]
    [MemberData(nameof(Corruptions))]
    public async Task CorruptCheckpoint_IsRefusedWithCorruptionException_BeforeAnythingIsApplied(string field, int offset, byte value, string problem)
    {
        var (j, sink) = Create();
        var home = new TestHome();
        Commit(j, new TestItem(home, 1), 1);
        Commit(j, new TestItem(home, 2), 1);
        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);
        var image = sink.Crash();
        var target = new TestHome();
        var e = Assert.Throws<CorruptionException>(() => MetadataJournal.Open("memory-log", SmallOptions(2048),
            new Dictionary<ushort, IItemRecoveryHandler> { [TestHome.ItemType] = target },
            deliver => image.Recover((start, regions) =>
            {
                // Flatten the header and the first item header into one buffer view, corrupt one byte.
                var copy = regions.Select(r => r.ToArray()).ToList();
                int off = offset;
                int idx = 0;
                while (off >= copy[idx].Length) { off -= copy[idx].Length; idx++; }
                copy[idx][off] = value;
                deliver(start, copy.Select(c => (ReadOnlyMemory<byte>)c).ToList());
            }),
            image.OpenAfter));
        Assert.Contains(problem, e.Message);
        Assert.StartsWith("memory-log: block 0: LSN 1:0: ", e.Message);
        Assert.Empty(target.Current); // nothing of the checkpoint was applied
        _ = field;
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }
}

internal static class LsnTestExtensions
{
    public static Lsn ToLsnIn(this long position, uint logBlocks) => new((uint)(position / logBlocks), (uint)(position % logBlocks));
}
