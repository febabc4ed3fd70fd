using System.Buffers.Binary;
using Journal.Format;
using Journal.Log;
using Journal.Recovery;
using Journal.Storage;
using Journal.Tests.Log;
using static Journal.Tests.Log.LogTestUtil;

namespace Journal.Tests.Recovery;

public class LogRecoveryTests
{
    private static async Task<List<(uint Tid, Lsn Commit)>> WriteForced(LogWriter w, int count, int size, int seed = 0)
    {
        var list = new List<(uint, Lsn)>();
        for (int i = 0; i < count; i++)
        {
            uint tid = w.AllocateTransactionId();
            var lsn = await w.WriteTransactionAsync(tid, [Payload(seed, i, size)]).Within();
            await w.ForceAsync(lsn).Within();
            list.Add((tid, lsn));
        }
        return list;
    }

    private static void FlipByte(BlockDevice dev, long sector, int offset)
    {
        var b = new byte[512];
        dev.Read(sector, b);
        b[offset] ^= 0x40;
        dev.Write(sector, b);
    }

    [Fact]
    public async Task Corruption_between_tail_and_head_is_refused_naming_file_block_lsn_and_crcs()
    {
        var region = NewLog(4096);   // in-flight window 2048 blocks
        List<(uint Tid, Lsn Commit)> written;
        await using (var w = LogWriter.Open(region, SmallOptions))
            written = await WriteForced(w, 700, 1500);   // ~5 blocks each, ~3500 blocks
        var victim = written[3].Commit;
        FlipByte(region.Device, region.StartSector + victim.Block + 1, 100);
        var e = Assert.Throws<CorruptionException>(() => LogRecovery.Recover(region));
        Assert.Equal("mem", e.File);
        Assert.Equal(victim.Block, e.Block);
        Assert.Equal(victim, e.Lsn);
        Assert.Contains("CRC mismatch", e.Message);
        Assert.StartsWith($"mem: block {victim.Block}: LSN {victim}: record CRC mismatch (expected 0x", e.Message);
        Assert.NotNull(e.Expected);
        Assert.NotNull(e.Actual);
        Assert.NotEqual(e.Expected, e.Actual);
    }

    [Fact]
    public async Task Recovery_delivers_nothing_before_refusing_corruption()
    {
        var region = NewLog(4096);
        List<(uint Tid, Lsn Commit)> written;
        await using (var w = LogWriter.Open(region, SmallOptions))
            written = await WriteForced(w, 700, 1500);
        FlipByte(region.Device, region.StartSector + written[600].Commit.Block - 600, 7);
        int delivered = 0;
        Assert.ThrowsAny<CorruptionException>(() => LogRecovery.Recover(region, _ => delivered++));
        Assert.Equal(0, delivered);
    }

    [Theory]
    [InlineData(100)]   // payload byte: CRC mismatch
    [InlineData(0)]     // cycle stamp of a payload block: looks like a hole
    public async Task Damaged_record_near_the_head_is_corruption_when_a_later_record_shows_it_was_durable(int offset)
    {
        var region = NewLog(256);   // the whole live log lies inside the in-flight window
        List<(uint Tid, Lsn Commit)> written;
        await using (var w = LogWriter.Open(region, SmallOptions))
            written = await WriteForced(w, 20, 300);
        var victim = written[10].Commit;
        FlipByte(region.Device, region.StartSector + victim.Block + 1, offset);
        var e = Assert.Throws<CorruptionException>(() => LogRecovery.Recover(region));
        Assert.Equal(victim, e.Lsn);
        Assert.Contains("durable", e.Message);
    }

    [Fact]
    public async Task Bad_record_at_the_head_is_a_torn_write_and_is_cut_off()
    {
        var region = NewLog(512);
        List<(uint Tid, Lsn Commit)> written;
        await using (var w = LogWriter.Open(region, SmallOptions))
            written = await WriteForced(w, 10, 300);
        var last = written[^1].Commit;
        FlipByte(region.Device, region.StartSector + last.Block + 1, 50);
        var got = RecoverAll(region, out var r);
        Assert.True(r.TornHeadTruncated);
        Assert.Equal(written.Take(9).Select(x => x.Tid), got.Select(g => g.TransactionId));
        Assert.Equal(written[^2].Commit, r.HeadLsn);
        Assert.Equal(last, r.NextLsn);
    }

    [Fact]
    public async Task Missing_payload_block_of_the_last_record_is_a_torn_write()
    {
        var region = NewLog(512);
        List<(uint Tid, Lsn Commit)> written;
        await using (var w = LogWriter.Open(region, SmallOptions))
            written = await WriteForced(w, 5, 1500);   // 4 payload blocks each
        var last = written[^1].Commit;
        // The second payload block never reached the disk: it still holds the cycle-0 zeros written by Format.
        region.Device.Write(region.StartSector + last.Block + 2, new byte[512]);
        var got = RecoverAll(region, out var r);
        Assert.True(r.TornHeadTruncated);
        Assert.Equal(4, got.Count);
        Assert.True(r.DiscardedBlocks > 0);
    }

    [Fact]
    public async Task Transaction_without_a_commit_is_never_delivered()
    {
        var region = NewLog(512);
        uint done, open;
        await using (var w = LogWriter.Open(region, SmallOptions))
        {
            done = w.AllocateTransactionId();
            open = w.AllocateTransactionId();
            await w.WriteAsync(open, [Payload(1, 0, 3000)], start: true).Within();
            var lsn = await w.WriteTransactionAsync(done, [Payload(1, 1, 10)]).Within();
            await w.WriteAsync(open, [Payload(1, 2, 100)], start: false).Within();
            await w.ForceAsync(w.Head).Within();
        }
        var got = RecoverAll(region, out var r);
        Assert.Equal([done], got.Select(g => g.TransactionId));
        Assert.Equal(1, r.IncompleteTransactionsDropped);
        Assert.True(r.NextTransactionId > open);
    }

    [Fact]
    public async Task Interleaved_transactions_are_reassembled_by_id_and_delivered_in_commit_order()
    {
        var region = NewLog(512);
        uint a, b;
        await using (var w = LogWriter.Open(region, SmallOptions))
        {
            a = w.AllocateTransactionId();
            b = w.AllocateTransactionId();
            await w.WriteAsync(a, [Payload(2, 0, 2500)], start: true).Within();
            await w.WriteAsync(b, [Payload(2, 1, 700)], start: true).Within();
            await w.WriteAsync(a, [Payload(2, 2, 40)], start: false).Within();
            await w.WriteCommitAsync(b).Within();
            await w.WriteAsync(a, [Payload(2, 3, 4000)], start: false).Within();
            await w.WriteCommitAsync(a).Within();
            await w.ForceAsync(w.Head).Within();
        }
        var got = RecoverAll(region, out _);
        Assert.Equal([b, a], got.Select(g => g.TransactionId));
        Assert.Equal(Payload(2, 1, 700), got[0].Regions.Single().ToArray());
        Assert.Equal([Payload(2, 0, 2500), Payload(2, 2, 40), Payload(2, 3, 4000)], got[1].Regions.Select(r => r.ToArray()));
        Assert.True(got[0].CommitLsn <= got[1].CommitLsn);
        Assert.True(got[1].StartLsn < got[0].StartLsn || got[1].StartLsn == got[0].StartLsn);
    }

    [Fact]
    public void Zeroed_region_is_refused_as_not_a_formatted_log()
    {
        var dev = new TestMemoryDevice(200, "blank.log");
        var e = Assert.Throws<CorruptionException>(() => LogRecovery.Recover(new LogRegion(dev, 0, 128)));
        Assert.Contains("blank.log", e.Message);
        Assert.Contains("formatted log", e.Message);
    }

    [Fact]
    public async Task Log_read_with_another_size_is_refused()
    {
        var region = NewLog(256);
        await using (var w = LogWriter.Open(region, SmallOptions))
            await WriteForced(w, 3, 100);
        var e = Assert.Throws<CorruptionException>(() => LogRecovery.Recover(region with { BlockCount = 240 }));
        Assert.StartsWith("mem: ", e.Message);
    }

    [Fact]
    public async Task Recovery_result_reports_head_tail_and_next_positions_after_wraps()
    {
        var region = NewLog(128);
        var opts = new LogWriterOptions { IclogCount = 2, IclogSize = 2048 };
        Lsn lastCommit;
        Lsn tail;
        await using (var w = LogWriter.Open(region, opts))
        {
            var all = new List<(uint, Lsn)>();
            for (int i = 0; i < 100; i++)
            {
                all.AddRange(await WriteForced(w, 1, 700, i));
                w.MoveTail(all[Math.Max(0, all.Count - 2)].Item2);
            }
            lastCommit = all[^1].Item2;
            tail = w.Tail;
            // One more record carries the final tail.
            var lsn = await w.WriteTransactionAsync(w.AllocateTransactionId(), [Payload(5, 5, 10)]).Within();
            await w.ForceAsync(lsn).Within();
            lastCommit = lsn;
        }
        var r = LogRecovery.Recover(region);
        Assert.Equal(lastCommit, r.HeadLsn);
        Assert.Equal(tail, r.TailLsn);
        Assert.True(r.HeadLsn.Cycle > 2);
        Assert.True(r.RecordsScanned >= 2);
        Assert.False(r.Clean);
        Assert.Contains("dirty", r.ToString());
    }

    [Fact]
    public async Task Writer_opened_after_recovery_continues_the_log_and_keeps_old_transactions()
    {
        var region = NewLog(512);
        await using (var w = LogWriter.Open(region, SmallOptions))
            await WriteForced(w, 3, 500);
        var first = RecoverAll(region, out var r1);
        await using (var w = LogWriter.Open(region, r1, SmallOptions))
        {
            Assert.Equal(r1.NextLsn, w.Head);
            Assert.Equal(r1.TailLsn, w.Tail);
            Assert.Equal(r1.HeadLsn, w.DurableLsn);
            await WriteForced(w, 2, 500, seed: 9);
        }
        var second = RecoverAll(region, out _);
        Assert.Equal(5, second.Count);
        Assert.Equal(first.Select(t => t.TransactionId), second.Take(3).Select(t => t.TransactionId));
    }

    [Fact]
    public async Task Stale_blocks_past_the_head_are_cleared_when_a_writer_opens()
    {
        var region = NewLog(512);
        await using (var w = LogWriter.Open(region, SmallOptions))
            await WriteForced(w, 2, 100);
        var r = LogRecovery.Recover(region);
        // Plant a block stamped with the current cycle just past the head, as a lost write could leave.
        var stale = new byte[512];
        BinaryPrimitives.WriteUInt32LittleEndian(stale, r.NextLsn.Cycle);
        region.Device.Write(region.StartSector + r.NextLsn.Block + 3, stale);
        await using (var w = LogWriter.Open(region, r, SmallOptions)) { }
        var b = new byte[512];
        region.Device.Read(region.StartSector + r.NextLsn.Block + 3, b);
        Assert.Equal(r.NextLsn.Cycle - 1, BinaryPrimitives.ReadUInt32LittleEndian(b));
        Assert.Equal(r.ToString(), LogRecovery.Recover(region).ToString());
    }

    [Fact]
    public void Recovery_result_from_another_region_is_refused()
    {
        var a = NewLog(256, name: "a");
        var b = NewLog(256, name: "b");
        var r = LogRecovery.Recover(a);
        Assert.Throws<JournalArgumentException>(() => LogWriter.Open(b, r, SmallOptions));
    }

    [Fact]
    public async Task Cancelled_recovery_throws_operation_cancelled()
    {
        var region = NewLog(256);
        await using (var w = LogWriter.Open(region, SmallOptions))
            await WriteForced(w, 3, 100);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => LogRecovery.Recover(region, null, cts.Token));
    }

    [Fact]
    public async Task Reader_lists_every_record_between_tail_and_next()
    {
        var region = NewLog(512);
        await using (var w = LogWriter.Open(region, SmallOptions))
            await WriteForced(w, 4, 3000);
        var r = LogRecovery.Recover(region);
        var records = new LogReader(region).ReadRecords(r.TailLsn, r.NextLsn).ToList();
        Assert.Equal(r.RecordsScanned, records.Count);
        Assert.Equal(r.HeadLsn, records[^1].Lsn);
        Assert.All(records, rec => Assert.Equal(RecordKind.Data, rec.Kind));
        Assert.Throws<CorruptionException>(() => new LogReader(region).ReadRecord(new Lsn(1, 2)));
    }
}
