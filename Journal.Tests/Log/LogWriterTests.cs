using Journal.Format;
using Journal.Log;
using Journal.Recovery;
using static Journal.Tests.Log.LogTestUtil;

namespace Journal.Tests.Log;

public class LogWriterTests
{
    [Fact]
    public void Formatted_log_recovers_clean_with_the_unmount_record_at_1_0()
    {
        var region = NewLog(64);
        var delivered = RecoverAll(region, out var r);
        Assert.True(r.Clean);
        Assert.Empty(delivered);
        Assert.Equal(new Lsn(1, 0), r.HeadLsn);
        Assert.Equal(new Lsn(1, 1), r.NextLsn);
        Assert.Equal(new Lsn(1, 1), r.TailLsn);
        Assert.False(r.TornHeadTruncated);
    }

    [Fact]
    public void Format_writes_every_block_of_the_region_and_nothing_outside_it()
    {
        var dev = new TestMemoryDevice(100);
        var junk = new byte[100 * 512];
        Array.Fill(junk, (byte)0xEE);
        dev.Write(0, junk);
        LogWriter.Format(new LogRegion(dev, 10, 64));
        var img = dev.Image();
        Assert.All(img[..(10 * 512)], b => Assert.Equal(0xEE, b));
        Assert.All(img[(74 * 512)..], b => Assert.Equal(0xEE, b));
        Assert.All(img[(11 * 512)..(74 * 512)], b => Assert.Equal(0, b));
        Assert.Equal(LogFormat.RecordMagic, BitConverter.ToUInt32(img, 10 * 512));
        Assert.True(dev.Counters.Flushes >= 1);
    }

    [Fact]
    public async Task Forced_transaction_is_recovered_with_identical_regions_and_lsns()
    {
        var region = NewLog(256, start: 5);
        Lsn commit;
        uint tid;
        await using (var w = LogWriter.Open(region, SmallOptions))
        {
            tid = w.AllocateTransactionId();
            var start = await w.WriteAsync(tid, [Payload(1, 0, 100), Payload(1, 1, 0), Payload(1, 2, 700)], start: true).Within();
            commit = await w.WriteCommitAsync(tid).Within();
            await w.ForceAsync(commit).Within();
            Assert.True(w.DurableLsn >= commit);
            Assert.Equal(new Lsn(1, 1), start);
        }
        var got = RecoverAll(region, out var r);
        Assert.False(r.Clean);
        var t = Assert.Single(got);
        Assert.Equal(tid, t.TransactionId);
        Assert.Equal(new Lsn(1, 1), t.StartLsn);
        Assert.Equal(commit, t.CommitLsn);
        Assert.Equal(3, t.Regions.Count);
        Assert.Equal(Payload(1, 0, 100), t.Regions[0].ToArray());
        Assert.Empty(t.Regions[1].ToArray());
        Assert.Equal(Payload(1, 2, 700), t.Regions[2].ToArray());
        Assert.Equal(new Lsn(1, 1), r.TailLsn);
        Assert.True(r.NextTransactionId > tid);
    }

    [Fact]
    public async Task Region_larger_than_a_record_is_split_and_reassembled()
    {
        var region = NewLog(512);
        var big = Payload(2, 0, 9000);   // 2 KiB records: spans 5 records
        await using (var w = LogWriter.Open(region, SmallOptions))
        {
            uint tid = w.AllocateTransactionId();
            var lsn = await w.WriteTransactionAsync(tid, [Payload(2, 1, 10), big, Payload(2, 2, 3000)]).Within();
            await w.ForceAsync(lsn).Within();
            Assert.True(w.Statistics.Records >= 6);
        }
        var t = Assert.Single(RecoverAll(region, out _));
        Assert.Equal(big, t.Regions[1].ToArray());
        Assert.Equal(Payload(2, 2, 3000), t.Regions[2].ToArray());
        Assert.True(t.CommitLsn > t.StartLsn);
    }

    [Fact]
    public async Task Split_record_carries_continue_flags_in_order()
    {
        var region = NewLog(512);
        await using (var w = LogWriter.Open(region, SmallOptions))
        {
            uint tid = w.AllocateTransactionId();
            await w.WriteTransactionAsync(tid, [Payload(3, 0, 5000)]).Within();
            await w.ForceAllAsync().Within();
        }
        var r = LogRecovery.Recover(region);
        var flags = new LogReader(region).ReadRecords(r.TailLsn, r.NextLsn)
            .SelectMany(rec => rec.Ops).Select(o => o.Header.Flags).ToList();
        Assert.Equal(
            [OpFlags.Start, OpFlags.Continue, OpFlags.WasContinued | OpFlags.Continue, OpFlags.WasContinued | OpFlags.End, OpFlags.Commit],
            flags);
    }

    [Fact]
    public async Task Forcing_a_durable_lsn_does_no_io()
    {
        var region = NewLog(256);
        var dev = (TestMemoryDevice)region.Device;
        await using var w = LogWriter.Open(region, SmallOptions);
        uint tid = w.AllocateTransactionId();
        var lsn = await w.WriteTransactionAsync(tid, [Payload(4, 0, 64)]).Within();
        await w.ForceAsync(lsn).Within();
        var before = dev.Counters;
        var stats = w.Statistics;
        await w.ForceAsync(lsn).Within();
        await w.ForceAsync(new Lsn(1, 0)).Within();
        Assert.Equal(before, dev.Counters);
        Assert.Equal(stats.ForcesWithoutIo + 2, w.Statistics.ForcesWithoutIo);
    }

    [Fact]
    public async Task Unforced_data_stays_in_memory_until_forced()
    {
        var region = NewLog(256);
        var dev = (TestMemoryDevice)region.Device;
        await using var w = LogWriter.Open(region, SmallOptions);
        var before = dev.Counters.Writes;
        uint tid = w.AllocateTransactionId();
        var lsn = await w.WriteTransactionAsync(tid, [Payload(5, 0, 64)]).Within();
        Assert.Equal(before, dev.Counters.Writes);
        Assert.True(w.DurableLsn < lsn);
        await w.ForceAsync(lsn).Within();
        Assert.True(w.DurableLsn >= lsn);
        Assert.Equal(before + 1, dev.Counters.Writes);
    }

    [Fact]
    public async Task Concurrent_forces_share_flushes()
    {
        var region = NewLog(4096);
        var dev = (TestMemoryDevice)region.Device;
        // A slow flush, as on a real disk: writes that finish while it runs wait for the next one.
        dev.FlushGate = () => Task.Delay(5);
        await using var w = LogWriter.Open(region, new LogWriterOptions { IclogCount = 8, IclogSize = 8192 });
        var flushesBefore = dev.Counters.Flushes;
        var tasks = Enumerable.Range(0, 64).Select(i => Task.Run(async () =>
        {
            uint tid = w.AllocateTransactionId();
            var lsn = await w.WriteTransactionAsync(tid, [Payload(6, i, 64)]);
            await w.ForceAsync(lsn);
            return tid;
        })).ToArray();
        await Task.WhenAll(tasks).WaitAsync(Watchdog);
        long flushes = dev.Counters.Flushes - flushesBefore;
        Assert.True(flushes <= 32, $"64 forces took {flushes} flushes");
        Assert.Equal(flushes, w.Statistics.Flushes);
        var got = RecoverAll(region, out _);
        Assert.Equal(tasks.Select(t => t.Result).Order(), got.Select(t => t.TransactionId).Order());
    }

    [Fact]
    public async Task Forces_arriving_during_a_flush_share_the_next_record_and_flush()
    {
        var region = NewLog(512);
        var dev = (TestMemoryDevice)region.Device;
        var firstFlush = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int flushCalls = 0;
        dev.FlushGate = () => Interlocked.Increment(ref flushCalls) == 1 ? firstFlush.Task : Task.CompletedTask;
        await using var w = LogWriter.Open(region, SmallOptions);
        var l0 = await w.WriteTransactionAsync(w.AllocateTransactionId(), [Payload(17, 0, 50)]).Within();
        var f0 = w.ForceAsync(l0).AsTask();
        var later = new List<Task>();
        for (int i = 1; i <= 10; i++)
        {
            var l = await w.WriteTransactionAsync(w.AllocateTransactionId(), [Payload(17, i, 50)]).Within();
            later.Add(w.ForceAsync(l).AsTask());
        }
        try
        {
            Assert.False(f0.IsCompleted);
            Assert.All(later, t => Assert.False(t.IsCompleted));
            Assert.Equal(1, w.Statistics.Records);   // the ten wait in the open buffer while the first flush runs
        }
        finally
        {
            firstFlush.TrySetResult();
        }
        await Task.WhenAll(later.Append(f0)).WaitAsync(Watchdog);
        var s = w.Statistics;
        Assert.Equal(2, s.Records);
        Assert.Equal(2, s.Flushes);
        Assert.Equal(11, RecoverAll(region, out _).Count);
    }

    [Fact]
    public async Task Completions_are_delivered_in_lsn_order_when_writes_finish_out_of_order()
    {
        var region = NewLog(512);
        var dev = (TestMemoryDevice)region.Device;
        var gates = new Dictionary<long, TaskCompletionSource>();
        var firstSector = region.StartSector + 1;
        dev.WriteGate = sector =>
        {
            lock (gates)
            {
                if (!gates.TryGetValue(sector, out var g)) gates[sector] = g = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                return g.Task;
            }
        };
        TaskCompletionSource Gate(long sector)
        {
            lock (gates)
            {
                if (!gates.TryGetValue(sector, out var g)) gates[sector] = g = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                return g;
            }
        }
        await using var w = LogWriter.Open(region, SmallOptions);
        try
        {
            // A region of two and a bit buffers: the first two records are sealed full and written at once.
            uint tid = w.AllocateTransactionId();
            var l1 = await w.WriteAsync(tid, [Payload(7, 0, 4500)], start: true).Within();
            var l2 = new Lsn(1, 6);
            Assert.Equal(new Lsn(1, 1), l1);
            Assert.Equal(2, w.Statistics.Records);
            var f2 = w.ForceAsync(l2).AsTask();
            var f1 = w.ForceAsync(l1).AsTask();
            // Let the second record's write finish first.
            Gate(region.StartSector + l2.Block).SetResult();
            await Task.Delay(50);
            Assert.False(f2.IsCompleted);
            Assert.False(f1.IsCompleted);
            Assert.True(w.DurableLsn < l1);
            Gate(firstSector).SetResult();
            await f1.WaitAsync(Watchdog);
            await f2.WaitAsync(Watchdog);
            Assert.True(w.DurableLsn >= l2);
        }
        finally
        {
            // Let every held write finish so closing the writer cannot wait for ever after a failed assertion.
            dev.WriteGate = null;
            lock (gates) foreach (var g in gates.Values) g.TrySetResult();
        }
    }

    [Fact]
    public async Task Unmount_record_makes_the_log_clean()
    {
        var region = NewLog(256);
        Lsn um;
        await using (var w = LogWriter.Open(region, SmallOptions))
        {
            uint tid = w.AllocateTransactionId();
            await w.WriteTransactionAsync(tid, [Payload(8, 0, 300)]).Within();
            um = await w.WriteUnmountAsync().Within();
            Assert.True(w.DurableLsn >= um);
        }
        var got = RecoverAll(region, out var r);
        Assert.True(r.Clean);
        Assert.Empty(got);
        Assert.Equal(um, r.HeadLsn);
        Assert.Equal(r.NextLsn, r.TailLsn);
    }

    [Fact]
    public async Task Writes_after_an_unmount_make_the_log_dirty_again()
    {
        var region = NewLog(256);
        await using (var w = LogWriter.Open(region, SmallOptions))
        {
            await w.WriteUnmountAsync().Within();
            var lsn = await w.WriteTransactionAsync(w.AllocateTransactionId(), [Payload(9, 0, 10)]).Within();
            await w.ForceAsync(lsn).Within();
        }
        var got = RecoverAll(region, out var r);
        Assert.False(r.Clean);
        Assert.Single(got);
    }

    [Fact]
    public async Task Log_wraps_many_times_and_recovers_what_was_forced_after_the_tail()
    {
        var region = NewLog(128);
        var opts = new LogWriterOptions { IclogCount = 2, IclogSize = 2048 };
        var forced = new List<(uint Tid, Lsn Start, byte[] Data)>();
        int arranged = 0;
        await using (var w = LogWriter.Open(region, opts))
        {
            for (int i = 0; i < 400; i++)
            {
                uint tid = w.AllocateTransactionId();
                var start = w.Head;
                // Now and then a record sized to leave exactly one block before the end of the log: the next record
                // cannot fit there, so the writer must fill that block with a pad record and wrap.
                long left = region.BlockCount - start.Block;
                bool leaveOne = i % 3 == 0 && left is >= 3 and <= 5;
                int size = leaveOne ? (int)(left - 2) * 512 - 3 * OpHeader.Size : 100 + i % 7 * 300;
                var data = Payload(10, i, size);
                var lsn = await w.WriteTransactionAsync(tid, [data]).Within();
                await w.ForceAsync(lsn).Within();
                if (leaveOne)
                {
                    // The record took all but the last block; that block went to a pad, and the next record starts the
                    // next pass.
                    Assert.Equal(new Lsn(start.Cycle + 1, 0), w.Head);
                    arranged++;
                }
                forced.Add((tid, start, data));
                if (forced.Count > 3) w.MoveTail(forced[^3].Start);
            }
            Assert.True(w.Head.Cycle >= 4, $"head {w.Head}");
            Assert.True(arranged >= 2, $"only {arranged} records left one block before the end");
            Assert.True(w.Statistics.PadRecords >= arranged, $"{w.Statistics.PadRecords} pad records for {arranged} single blocks left at the end");
        }
        var got = RecoverAll(region, out var r);
        Assert.True(r.HeadLsn.Cycle >= 4);
        // The last record carries the tail as it was when that record was sealed (one move behind).
        Assert.InRange(got.Count, 3, 4);
        var expect = forced.TakeLast(got.Count).ToList();
        Assert.Equal(expect.Select(e => e.Tid), got.Select(g => g.TransactionId));
        for (int i = 0; i < got.Count; i++) Assert.Equal(expect[i].Data, got[i].Regions[0].ToArray());
    }

    [Fact]
    public async Task Full_log_makes_writers_wait_until_the_tail_moves()
    {
        var region = NewLog(64);
        var opts = new LogWriterOptions { IclogCount = 2, IclogSize = 1024 };
        await using var w = LogWriter.Open(region, opts);
        Task<Lsn>? blocked = null;
        for (int i = 0; i < 100 && blocked is null; i++)
        {
            var t = w.WriteTransactionAsync(w.AllocateTransactionId(), [Payload(11, i, 900)]).AsTask();
            await Task.WhenAny(t, Task.Delay(200));
            if (!t.IsCompleted) blocked = t;
            else await w.ForceAsync(await t).Within();
        }
        Assert.NotNull(blocked);
        Assert.True(w.Statistics.SpaceWaits > 0);
        Assert.True(w.UsedBytes > 0);
        var tailWait = w.WaitForTailMoveAsync();
        Assert.False(tailWait.IsCompleted);
        w.MoveTail(w.DurableLsn);
        await tailWait.Within();
        var lsn = await blocked!.WaitAsync(Watchdog);
        await w.ForceAsync(lsn).Within();
        var r = LogRecovery.Recover(region);
        Assert.False(r.Clean);
    }

    [Fact]
    public async Task Tail_never_moves_backward_or_past_the_head()
    {
        var region = NewLog(256);
        await using var w = LogWriter.Open(region, SmallOptions);
        var lsn = await w.WriteTransactionAsync(w.AllocateTransactionId(), [Payload(12, 0, 10)]).Within();
        await w.ForceAsync(lsn).Within();
        var head = w.Head;
        w.MoveTail(head);
        Assert.Equal(head, w.Tail);
        w.MoveTail(new Lsn(1, 1));
        Assert.Equal(head, w.Tail);
        Assert.Throws<ArgumentOutOfRangeException>(() => w.MoveTail(new Lsn(head.Cycle + 1, 0)));
        Assert.Equal(0, w.UsedBytes);
    }

    [Fact]
    public async Task Write_error_shuts_the_log_down_and_fails_the_force()
    {
        var region = NewLog(256);
        var dev = (TestMemoryDevice)region.Device;
        await using var w = LogWriter.Open(region, SmallOptions);
        dev.FailWrite = _ => true;
        var lsn = await w.WriteTransactionAsync(w.AllocateTransactionId(), [Payload(13, 0, 10)]).Within();
        var e = await Assert.ThrowsAsync<JournalException>(() => w.ForceAsync(lsn).Within());
        Assert.Contains("mem", e.Message);
        Assert.Contains("injected write error", e.Message);
        await Assert.ThrowsAsync<JournalException>(() => w.WriteCommitAsync(1).Within());
    }

    [Fact]
    public async Task Flush_error_fails_the_force()
    {
        var region = NewLog(256);
        var dev = (TestMemoryDevice)region.Device;
        await using var w = LogWriter.Open(region, SmallOptions);
        dev.FailFlush = true;
        var lsn = await w.WriteTransactionAsync(w.AllocateTransactionId(), [Payload(14, 0, 10)]).Within();
        await Assert.ThrowsAsync<JournalException>(() => w.ForceAsync(lsn).Within());
    }

    [Fact]
    public void Options_are_validated_with_a_clear_message()
    {
        Assert.Contains("IclogCount 1", Assert.Throws<JournalArgumentException>(() => new LogWriterOptions { IclogCount = 1 }.Validate()).Message);
        Assert.Contains("IclogSize 1000", Assert.Throws<JournalArgumentException>(() => new LogWriterOptions { IclogSize = 1000 }.Validate()).Message);
        Assert.Throws<JournalArgumentException>(() => new LogWriterOptions { IclogSize = 64 * 1024 }.Validate());
        var region = NewLog(64);
        var e = Assert.Throws<JournalArgumentException>(() => LogWriter.Open(region, LogWriterOptions.Default));
        Assert.Contains("too small", e.Message);
        Assert.Contains("mem", e.Message);
        Assert.Equal("IclogCount=8, IclogSize=32768 (64 blocks, record up to 65 blocks)", LogWriterOptions.Default.ToString());
    }

    [Fact]
    public void Region_is_validated_with_a_clear_message()
    {
        var dev = new TestMemoryDevice(100, "dev0");
        Assert.Contains("beyond the end", Assert.Throws<JournalArgumentException>(() => LogWriter.Format(new LogRegion(dev, 50, 64))).Message);
        Assert.Contains("dev0", Assert.Throws<JournalArgumentException>(() => LogWriter.Format(new LogRegion(dev, 0, 8))).Message);
    }

    [Fact]
    public async Task Reservation_covers_what_a_transaction_really_uses()
    {
        var rng = new Random(42);
        var region = NewLog(2048);
        await using var w = LogWriter.Open(region, SmallOptions);
        for (int i = 0; i < 200; i++)
        {
            int regions = rng.Next(0, 6);
            var data = Enumerable.Range(0, regions).Select(r => (ReadOnlyMemory<byte>)Payload(15, i * 10 + r, rng.Next(0, 5000))).ToList();
            long bytes = data.Sum(d => (long)d.Length);
            long usedBefore = w.UsedBytes;
            var lsn = await w.WriteTransactionAsync(w.AllocateTransactionId(), data).Within();
            await w.ForceAsync(lsn).Within();
            long used = w.UsedBytes - usedBefore;
            Assert.True(used <= w.GetReservationBytes(regions, bytes), $"used {used} > reserved {w.GetReservationBytes(regions, bytes)}");
            w.MoveTail(w.Head);
        }
    }

    [Fact]
    public async Task Statistics_count_records_bytes_flushes_and_forces()
    {
        var region = NewLog(256);
        var dev = (TestMemoryDevice)region.Device;
        await using var w = LogWriter.Open(region, SmallOptions);
        var lsn = await w.WriteTransactionAsync(w.AllocateTransactionId(), [Payload(16, 0, 100)]).Within();
        await w.ForceAsync(lsn).Within();
        var s = w.Statistics;
        Assert.Equal(1, s.Records);
        Assert.Equal(3, s.Ops);
        Assert.Equal(100 + 3 * 12, s.PayloadBytes);
        Assert.Equal(2 * 512, s.BytesWritten);
        Assert.Equal(1, s.Flushes);
        Assert.Equal(1, s.Forces);
        Assert.Equal(1, s.ForceWaits);
        Assert.Equal(1, s.TransactionIds);
        Assert.Contains("records=1", s.ToString());
    }

    [Fact]
    public async Task Disposed_writer_refuses_calls()
    {
        var region = NewLog(256);
        var w = LogWriter.Open(region, SmallOptions);
        await w.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => w.WriteCommitAsync(1).Within());
        Assert.Throws<ObjectDisposedException>(() => w.ForceAsync(new Lsn(5, 0)));
    }
}
