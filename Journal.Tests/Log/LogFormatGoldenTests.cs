using System.Buffers.Binary;
using System.Text;
using Journal.Format;
using Journal.Log;
using Journal.Recovery;
using Journal.Tests.Golden;
using static Journal.Tests.Log.LogTestUtil;

namespace Journal.Tests.Log;

/// <summary>
/// Pins the on-disk log format: a deterministic log is written and its hex dump and decoded listing are compared with
/// the committed files in <c>Journal.Tests/Golden</c> (the worked example in <c>docs/format.md</c> comes from them).
/// </summary>
public class LogFormatGoldenTests
{
    private static byte[] Ascii(string s) => Encoding.ASCII.GetBytes(s);

    /// <summary>A 32-block log: three transactions (one split over records), a wrap with a pad record, an unmount.</summary>
    private static async Task<(LogRegion Region, string Listing)> DeterministicLog()
    {
        var dev = new TestMemoryDevice(34, "golden.log");
        var region = new LogRegion(dev, 1, 32);
        LogWriter.Format(region);
        var opts = new LogWriterOptions { IclogCount = 2, IclogSize = 1024 };
        var listing = new StringBuilder();
        await using (var w = LogWriter.Open(region, opts))
        {
            uint t1 = w.AllocateTransactionId();
            var bitmap = new byte[420];
            for (int i = 0; i < bitmap.Length; i++) bitmap[i] = (byte)i;
            var l1 = await w.WriteTransactionAsync(t1, [Ascii("inode 42: size=4096 mtime=1700000000"), Ascii("extent 0: block 100 len 8"), bitmap]).Within();
            await w.ForceAsync(l1).Within();

            uint t2 = w.AllocateTransactionId();
            var big = new byte[1500];
            for (int i = 0; i < big.Length; i++) big[i] = (byte)('a' + i % 26);
            var l2 = await w.WriteTransactionAsync(t2, [big]).Within();
            await w.ForceAsync(l2).Within();
            listing.Append("records after the first two transactions:\n");
            foreach (var rec in new LogReader(region).ReadRecords(new Lsn(1, 0), w.Head)) listing.Append(rec).Append('\n');
            w.MoveTail(l2);

            // Fill towards the end of the log so the next records wrap.
            for (int i = 0; i < 9; i++)
            {
                uint t = w.AllocateTransactionId();
                var l = await w.WriteTransactionAsync(t, [Ascii($"filler {i}: " + new string('x', 700))]).Within();
                await w.ForceAsync(l).Within();
                w.MoveTail(l);
            }
            uint t3 = w.AllocateTransactionId();
            var l3 = await w.WriteTransactionAsync(t3, [Ascii("after the wrap")]).Within();
            await w.ForceAsync(l3).Within();
            listing.Append("writer: ").Append(w.Statistics).Append('\n');
            listing.Append("writer: head=").Append(w.Head).Append(" tail=").Append(w.Tail).Append(" durable=").Append(w.DurableLsn).Append('\n');
        }
        return (region, listing.ToString());
    }

    [Fact]
    public async Task Deterministic_log_matches_the_verified_hex_dump()
    {
        var (region, _) = await DeterministicLog();
        var img = new byte[region.Bytes];
        region.Device.Read(region.StartSector, img);
        GoldenFile.Verify("log-region.hex", GoldenFile.HexDump(img));
    }

    [Fact]
    public async Task Deterministic_log_matches_the_verified_listing()
    {
        var (region, writer) = await DeterministicLog();
        var sb = new StringBuilder(writer);
        var delivered = new List<RecoveredTransaction>();
        var r = LogRecovery.Recover(region, delivered.Add);
        sb.Append("recovery: ").Append(r).Append('\n');
        sb.Append("records from tail ").Append(r.TailLsn).Append(" to next ").Append(r.NextLsn).Append(":\n");
        foreach (var rec in new LogReader(region).ReadRecords(r.TailLsn, r.NextLsn)) sb.Append(rec).Append('\n');
        sb.Append("records around the wrap, 1:28 to 2:3 (the last filler of cycle 1, the pad in the last block, the first record of cycle 2):\n");
        foreach (var rec in new LogReader(region).ReadRecords(new Lsn(1, 28), new Lsn(2, 3))) sb.Append(rec).Append('\n');
        sb.Append("delivered:\n");
        foreach (var t in delivered)
        {
            sb.Append(t).Append('\n');
            foreach (var reg in t.Regions) sb.Append("  region ").Append(reg.Length).Append(" bytes: ").Append(Printable(reg.Span)).Append('\n');
        }
        GoldenFile.Verify("log-listing", sb.ToString());
    }

    [Fact]
    public async Task Single_record_matches_the_verified_worked_example()
    {
        var dev = new TestMemoryDevice(20, "example.log");
        var region = new LogRegion(dev, 0, 16);
        LogWriter.Format(region);
        await using (var w = LogWriter.Open(region, new LogWriterOptions { IclogCount = 2, IclogSize = 1024 }))
        {
            uint tid = w.AllocateTransactionId();
            while (tid < 42) tid = w.AllocateTransactionId();   // tid 0x2a, so the displaced word differs from the cycle stamp
            var lsn = await w.WriteTransactionAsync(tid, [Ascii("hello, log")]).Within();
            await w.ForceAsync(lsn).Within();
        }
        var img = new byte[3 * 512];
        dev.Read(0, img);
        var rec = new LogReader(region).ReadRecord(new Lsn(1, 1));
        var sb = new StringBuilder();
        sb.Append("blocks 0..2 of the log (block 0: the unmount record written by Format; blocks 1-2: one data record)\n");
        sb.Append(GoldenFile.HexDump(img));
        sb.Append(new LogReader(region).ReadRecord(new Lsn(1, 0))).Append('\n');
        sb.Append(rec).Append('\n');
        GoldenFile.Verify("log-record-example", sb.ToString());
    }

    [Fact]
    public void Structure_sizes_are_pinned()
    {
        Assert.Equal(512, LogFormat.BlockSize);
        Assert.Equal(512, RecordHeader.Size);
        Assert.Equal(64, LogFormat.RecordHeaderFixedSize);
        Assert.Equal(112, LogFormat.MaxPayloadBlocks);
        Assert.Equal(57344, LogFormat.MaxPayloadBytes);
        Assert.Equal(113, LogFormat.MaxRecordBlocks);
        Assert.Equal(12, OpHeader.Size);
        Assert.Equal(12, LogFormat.OpHeaderSize);
        Assert.Equal(0xF00D1065u, LogFormat.RecordMagic);
        Assert.Equal(8, LogFormat.Version * 8);
        Assert.Equal(448, LogFormat.MaxPayloadBlocks * 4);
    }

    [Fact]
    public void Record_header_fields_sit_at_their_documented_offsets()
    {
        var h = new RecordHeader
        {
            Magic = LogFormat.RecordMagic, Cycle = 0x11223344, Version = 0x5566, Kind = (RecordKind)0x7788,
            Length = 0x99AABBCC, Lsn = new Lsn(0x01020304, 0x05060708), TailLsn = new Lsn(0x090A0B0C, 0x0D0E0F10),
            Crc = 0xDEADBEEF, OpCount = 0x21222324, PreviousBlock = 0x31323334, LogBlocks = 0x41424344,
            DurableLsn = new Lsn(0x51525354, 0x55565758),
        };
        h.Displaced[0] = 0x61626364;
        h.Displaced[111] = 0x71727374;
        var b = new byte[512];
        h.Write(b);
        Assert.Equal(LogFormat.RecordMagic, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(0)));
        Assert.Equal(0x11223344u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(4)));
        Assert.Equal(0x5566, BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(8)));
        Assert.Equal(0x7788, BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(10)));
        Assert.Equal(0x99AABBCCu, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(12)));
        Assert.Equal(0x0102030405060708ul, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(16)));
        Assert.Equal(0x090A0B0C0D0E0F10ul, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(24)));
        Assert.Equal(0xDEADBEEFu, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(32)));
        Assert.Equal(0x21222324u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(36)));
        Assert.Equal(0x31323334u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(40)));
        Assert.Equal(0x41424344u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(44)));
        Assert.Equal(0x5152535455565758ul, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(48)));
        Assert.All(b[56..64], x => Assert.Equal(0, x));
        Assert.Equal(0x61626364u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(64)));
        Assert.Equal(0x71727374u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(508)));
        var back = RecordHeader.Read(b);
        Assert.Equal(h.ToString(), back.ToString());
        Assert.Equal(h.DurableLsn, back.DurableLsn);
        Assert.Equal(h.Displaced[111], back.Displaced[111]);

        var op = new OpHeader(0xA1A2A3A4, 0xB1B2B3B4, LogClientId.Transaction, OpFlags.WasContinued | OpFlags.End);
        var ob = new byte[12];
        op.Write(ob);
        Assert.Equal("a4a3a2a1b4b3b2b1691800 00".Replace(" ", ""), Convert.ToHexString(ob).ToLowerInvariant());
        Assert.Equal(op, OpHeader.Read(ob));
        Assert.Equal("op tid=0xa1a2a3a4 len=2981278644 client=0x69 flags=WAS_CONT|END reserved=0", op.ToString());
    }

    private static string Printable(ReadOnlySpan<byte> b)
    {
        var sb = new StringBuilder();
        foreach (byte x in b[..Math.Min(b.Length, 48)]) sb.Append(x is >= 0x20 and < 0x7f ? (char)x : '.');
        if (b.Length > 48) sb.Append("...");
        return sb.ToString();
    }
}
