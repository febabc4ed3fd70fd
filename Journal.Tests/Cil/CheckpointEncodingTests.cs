using System.Text;
using Journal.Cil;
using Journal.Format;
using Journal.Tests.Golden;
using static Journal.Tests.Cil.JournalFixture;

namespace Journal.Tests.Cil;

public sealed class CheckpointEncodingTests
{
    [Fact]
    public void HeaderSizes_AreFixed()
    {
        Assert.Equal(32, CheckpointHeader.Size);
        Assert.Equal(16, ItemHeader.FixedSize);
        Assert.Equal(16 + 4 * 3, ItemHeader.SizeFor(3));
        var buf = new byte[CheckpointHeader.Size];
        new CheckpointHeader(5, 2, 4, 100).Write(buf);
        Assert.Equal("CKPT", Encoding.ASCII.GetString(buf, 0, 4));
        Assert.Equal("checkpoint magic=0x54504b43 version=1 header_size=32 sequence=5 items=2 regions=4 payload_bytes=100", CheckpointHeader.Read(buf).ToString());
        var ih = new byte[ItemHeader.FixedSize];
        new ItemHeader(7, 2, 9).WriteFixed(ih);
        Assert.Equal("ITEM", Encoding.ASCII.GetString(ih, 0, 4));
        Assert.Equal("item magic=0x4d455449 type=7 regions=2 id=9", ItemHeader.Read(ih).ToString());
    }

    [Fact]
    public async Task Checkpoint_EncodingIsPinned()
    {
        var (j, sink) = Create();
        var a = new BytesItem(0x0102, 1, "hello", "world!");
        var b = new BytesItem(0x0007, 0x1122334455667788, "\x01\x02\x03\x04\x05\x06\x07\x08");
        using (var tx = await j.BeginTransactionAsync(4096))
        {
            tx.AddItem(a);
            tx.AddItem(b);
            tx.Commit();
        }
        a.Regions[1] = "WORLD!"; // relogged: the checkpoint holds the latest copy, after b (commit order)
        using (var tx = await j.BeginTransactionAsync(4096))
        {
            tx.AddItem(a);
            tx.Commit();
        }
        await j.ForceAllAsync().AsTask().WaitAsync(Watchdog);

        var regions = new List<byte[]>();
        sink.Crash().Recover((_, rs) => regions.AddRange(rs.Select(r => r.ToArray())));
        var sb = new StringBuilder();
        sb.Append("# One checkpoint: sequence 1, item 7:0x1122334455667788 (1 region), then item 0x102:1 (2 regions).\n");
        sb.Append("# Each log region (one log op) is listed and dumped on its own.\n");
        int i = 0;
        foreach (var r in regions)
        {
            string what = i == 0 ? CheckpointHeader.Read(r).ToString()
                : r.Length >= 16 && BitConverter.ToUInt32(r) == ItemHeader.MagicValue ? ItemHeader.Read(r) + $" lengths=[{string.Join(",", Enumerable.Range(0, ItemHeader.Read(r).RegionCount).Select(k => ItemHeader.RegionLength(r, k)))}]"
                : $"item region, {r.Length} bytes";
            sb.Append($"region {i}: {what}\n");
            sb.Append(GoldenFile.HexDump(r));
            i++;
        }
        GoldenFile.Verify("checkpoint-encoding", sb.ToString());
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
    }

    private sealed class BytesItem(ushort type, ulong id, params string[] regions) : LogItem(type, id)
    {
        public readonly string[] Regions = regions;
        public override LogItemSize GetLogSize() => new(Regions.Length, Regions.Sum(r => r.Length));
        public override void FormatLog(LogVectorWriter writer)
        {
            foreach (var r in Regions)
            {
                var span = writer.AddRegion(r.Length);
                for (int k = 0; k < r.Length; k++) span[k] = (byte)r[k];
            }
        }
        public override ValueTask<bool> WriteBackAsync(Lsn lsn, CancellationToken cancellationToken) => ValueTask.FromResult(true);
        public override Journal.Storage.BlockDevice? HomeDevice => null; // no home copy
    }
}
