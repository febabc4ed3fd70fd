using System.Buffers.Binary;
using Journal.Format;
using Journal.Recovery;
using Journal.Storage;
using Journal.Testing;
using Journal.Tests.Recovery;
using Snapshot;
using Snapshot.Metadata;
using Snapshot.Recovery;
using Xunit.Abstractions;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

/// <summary>
/// Opening a store after an unclean stop (<see cref="StoreRecovery"/>): one read of the log, every logged item
/// validated with the store's decoders before anything is applied, and a read-only check that runs the same open and
/// changes nothing.
/// </summary>
public class StoreRecoveryTests(ITestOutputHelper output)
{
    private const string LogPath = Folder + "/" + SnapshotStore.JournalFileName;


    private static void AssertUnchanged(Dictionary<string, byte[]> before, TestDeviceProvider p)
    {
        Assert.Equal(before.Keys.Order(), p.Paths.Order());
        foreach (var (path, bytes) in before) Assert.True(bytes.AsSpan().SequenceEqual(p.Backing(path).ToArray()), $"{path} changed");
    }

    private static RecoveredLog ScanLog(TestDeviceProvider p)
    {
        var dev = MemoryBlockDevice.FromImage(p.Backing(LogPath).ToArray(), LogPath);
        return JournalRecovery.Scan(new LogRegion(dev, 0, (uint)dev.SectorCount));
    }

    /// <summary>A crashed store: snapshots s and t, 40 origin chunks copied (t deleted after 30, its last segments still in the log), nothing closed.</summary>
    private static async Task<(TestDeviceProvider Crashed, SnapshotStore Live)> CrashedStoreAsync()
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, 8 * 256, writeThrough: true);
        await WriteAsync(store.Origin, 0, Pattern(0, 8 * 256, 1));
        await store.CreateSnapshotAsync("s");
        await store.CreateSnapshotAsync("t");
        for (int c = 0; c < 20; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 2));
        await store.Journal!.WriteBackAsync().AsTask().WaitAsync(Watchdog);
        for (int c = 20; c < 30; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 2));
        await store.DeleteSnapshotAsync("t");
        for (int c = 30; c < 40; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 2));
        return (p.CopyAll(), store);
    }

    /// <summary>
    /// Changes, with a forged CRC, the first logged metadata segment that holds entries: <paramref name="patch"/> gets
    /// its item header and its region.
    /// </summary>
    private static void ForgeSegment(TestDeviceProvider p, Action<Span<byte>, Span<byte>> patch)
    {
        var image = p.Backing(LogPath).ToArray();
        var log = ScanLog(p);
        var c = log.Checkpoints.First(k => k.Items.Any(i => i.ItemType == StoreLogItems.SegmentType && i.Regions[0].Length > 16));
        LogForge.PatchRecord(image, 0, (uint)(image.Length / 512), c.StartLsn, payload =>
        {
            var ops = LogForge.OpData(payload);
            for (int k = 0; k + 1 < ops.Count; k++)
            {
                var h = payload.Slice(ops[k].Offset, ops[k].Length);
                if (h.Length >= ItemHeader.FixedSize && BinaryPrimitives.ReadUInt32LittleEndian(h) == ItemHeader.MagicValue
                    && ItemHeader.Read(h).ItemType == StoreLogItems.SegmentType)
                {
                    patch(h, payload.Slice(ops[k + 1].Offset, ops[k + 1].Length));
                    return;
                }
            }
            throw new InvalidOperationException("the checkpoint's segment is not in its first record");
        });
        p.Replace(LogPath, MemoryBlockDevice.FromImage(image, LogPath));
    }

    [Fact]
    public async Task Opening_after_an_unclean_stop_reads_the_log_once()
    {
        var (crashed, live) = await CrashedStoreAsync();
        var reference = ScanLog(crashed);   // on its own copy: counts its own reads
        var alone = MemoryBlockDevice.FromImage(crashed.Backing(LogPath).ToArray(), LogPath);
        JournalRecovery.Scan(new LogRegion(alone, 0, (uint)alone.SectorCount));
        long oneScan = alone.Counters.BytesRead;

        var store = await ReopenAsync(crashed);
        var read = store.LogDeviceCounters;
        output.WriteLine($"log of {alone.SectorCount} blocks, {reference.Log.RecordsScanned} records, {reference.Checkpoints.Count} checkpoints: " +
            $"one scan reads {alone.Counters.Reads} times, {oneScan} bytes; opening the store read {read.Reads} times, {read.BytesRead} bytes");
        Assert.False(store.LogClean);
        Assert.True(reference.Checkpoints.Count > 10);
        Assert.Equal(oneScan, read.BytesRead);
        Assert.Equal(alone.Counters.Reads, read.Reads);
        await store.CloseAsync();
        await live.CloseAsync();
    }

    static string WithoutTime(StoreRecoveryReport r)
    {
        var text = r.ToString();
        Assert.EndsWith(" ms", text);
        return text[..text.LastIndexOf(", ", StringComparison.Ordinal)];
    }

    [Fact]
    public async Task A_check_runs_the_same_open_writes_nothing_and_reports_what_the_open_then_does()
    {
        var (crashed, live) = await CrashedStoreAsync();
        var before = crashed.Images();
        var checkedReport = await StoreRecovery.CheckAsync(Folder, new ReadOnlyOverlayProvider(crashed, crashed.Open), CancellationToken.None);
        AssertUnchanged(before, crashed);
        Assert.False(checkedReport.Clean);
        Assert.True(checkedReport.SegmentCopiesApplied > 0);
        Assert.True(checkedReport.ItemsWithoutHome > 0);   // segments of the deleted snapshot t

        var store = await ReopenAsync(crashed);
        var real = store.RecoveryReport!;
        Assert.Equal(WithoutTime(checkedReport), WithoutTime(real));   // the time each took differs; the work may not
        Assert.True(real.Elapsed > TimeSpan.Zero);
        Assert.Equal((checkedReport.SuperblockCopiesApplied, checkedReport.SegmentCopiesApplied, checkedReport.ItemsSkipped, checkedReport.ItemsWithoutHome),
            (real.SuperblockCopiesApplied, real.SegmentCopiesApplied, real.ItemsSkipped, real.ItemsWithoutHome));
        await store.CloseAsync();
        await live.CloseAsync();
    }

    public static TheoryData<string, string> Forgeries => new()
    {
        { "entry", ": new_chunk is not a data chunk (expected a data chunk, found 1)" },
        { "header", "region magic 0x00000000, expected 0x72416e53" },
        { "segment", "lies beyond its COW size" },
        { "type", "holds item type 4660 (item " },
    };

    [Theory]
    [MemberData(nameof(Forgeries))]
    public async Task A_logged_item_the_store_cannot_use_is_refused_before_anything_is_applied_and_a_check_refuses_it_alike(string what, string problem)
    {
        var (crashed, live) = await CrashedStoreAsync();
        ForgeSegment(crashed, (header, region) =>
        {
            switch (what)
            {
                case "entry": BinaryPrimitives.WriteUInt64LittleEndian(region[(16 + 8)..], 1); break;      // new_chunk = area 0
                case "header": BinaryPrimitives.WriteUInt32LittleEndian(region, 0); break;                 // segment magic
                case "segment":                                                                           // segment 1,000,000
                    ulong id = BinaryPrimitives.ReadUInt64LittleEndian(header[8..]);
                    BinaryPrimitives.WriteUInt64LittleEndian(header[8..], (id >> AreaSegmentItem.SegmentBits << AreaSegmentItem.SegmentBits) | 1_000_000);
                    break;
                default: BinaryPrimitives.WriteUInt16LittleEndian(header[4..], 0x1234); break;           // item type
            }
        });
        Assert.NotNull(ScanLog(crashed));   // the log itself reads: the CRC was forged
        var before = crashed.Images();

        var check = await Assert.ThrowsAnyAsync<JournalException>(() => StoreRecovery.CheckAsync(Folder, new ReadOnlyOverlayProvider(crashed, crashed.Open), CancellationToken.None));
        var open = await Assert.ThrowsAnyAsync<JournalException>(() => ReopenAsync(crashed));
        Assert.Equal(open.Message, check.Message);
        Assert.StartsWith($"{LogPath}: ", open.Message);
        Assert.Contains(problem, open.Message);
        AssertUnchanged(before, crashed);
        await live.CloseAsync();
    }
}
