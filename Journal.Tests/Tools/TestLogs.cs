using System.Buffers.Binary;
using Journal.Cil;
using Journal.Format;
using Journal.Log;
using Journal.Storage;
using Snapshot.Format;

namespace Journal.Tests.Tools;

/// <summary>Bare log files for the jreplay tests, written by the real log writer in the journal's checkpoint format.</summary>
public static class TestLogs
{
    /// <summary>Item type the test checkpoints carry.</summary>
    public const ushort ItemType = 7;

    /// <summary>The snapshot store's COW metadata segment item type.</summary>
    public const ushort CowSegmentType = 0x534e;

    /// <summary>The snapshot store's superblock item type.</summary>
    public const ushort SuperblockType = 0x5342;

    /// <summary>
    /// Creates a formatted log of <paramref name="blocks"/> blocks at <paramref name="path"/> holding
    /// <paramref name="checkpoints"/> checkpoints (checkpoint i has i items of <see cref="ItemType"/>, plus one item of
    /// type 9), each forced to disk before the next is written; with <paramref name="clean"/> an unmount record follows, as after a clean close.
    /// </summary>
    public static async Task CreateAsync(string path, uint blocks = 1024, int checkpoints = 3, bool clean = false, bool withSegment = false,
        bool withSuperblock = false)
    {
        using var device = FileBlockDevice.Create(path, blocks);
        var region = LogRegion.WholeDevice(device);
        LogWriter.Format(region);
        await using var writer = LogWriter.Open(region, new LogWriterOptions { IclogCount = 2, IclogSize = 4096 });
        for (int c = 1; c <= checkpoints; c++)
        {
            var regions = new List<ReadOnlyMemory<byte>>();
            var items = new List<(ushort Type, ulong Id, byte[] Data)>();
            for (int i = 0; i < c; i++) items.Add((ItemType, (ulong)(100 * c + i), Fill(300 + 40 * i, (byte)c)));
            items.Add((9, 9, Fill(64, 0x99)));
            if (withSegment) items.Add((CowSegmentType, (1UL << 40) | 5, Segment(first: 3 * (uint)(c - 1), count: 3)));
            if (withSuperblock) items.Add((SuperblockType, 0, StoreSuperblock(generation: (ulong)c, snapshots: c)));
            ulong payload = 0;
            var body = new List<ReadOnlyMemory<byte>>();
            foreach (var (type, id, data) in items)
            {
                var ih = new byte[ItemHeader.SizeFor(1)];
                new ItemHeader(type, 1, id).WriteFixed(ih);
                BinaryPrimitives.WriteUInt32LittleEndian(ih.AsSpan(ItemHeader.FixedSize), (uint)data.Length);
                body.Add(ih);
                body.Add(data);
                payload += (ulong)(ih.Length + data.Length);
            }
            var header = new byte[CheckpointHeader.Size];
            new CheckpointHeader((ulong)c, (uint)items.Count, (uint)body.Count, payload).Write(header);
            regions.Add(header);
            regions.AddRange(body);
            await writer.WriteTransactionAsync(writer.AllocateTransactionId(), regions);
            await writer.ForceAllAsync();   // each checkpoint durable before the next, as the journal's log force does
        }
        await writer.ForceAllAsync();
        if (clean) await writer.WriteUnmountAsync();
    }

    /// <summary>A COW metadata segment region: 16-byte header, then <paramref name="count"/> entries.</summary>
    private static byte[] Segment(uint first, uint count)
    {
        var b = new byte[16 + 16 * count];
        BinaryPrimitives.WriteUInt32LittleEndian(b, 0x72416e53);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), first);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), count);
        for (uint i = 0; i < count; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan((int)(16 + 16 * i)), 100 + first + i);
            BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan((int)(24 + 16 * i)), 2 + first + i);
        }
        return b;
    }

    /// <summary>A logged store superblock with snapshots s1..s<paramref name="snapshots"/>.</summary>
    private static byte[] StoreSuperblock(ulong generation, int snapshots)
    {
        var records = Enumerable.Range(1, snapshots)
            .Select(i => new SnapshotRecord((ulong)i, 4096, SnapshotKindCode.Persistent, SnapshotStateCode.Valid, InvalidReasonCode.None, $"s{i}"))
            .ToArray();
        var sb = new Superblock(generation, 2048, 8, (ulong)snapshots + 1, records);
        var b = new byte[sb.LogBytes];
        sb.ToLogBytes(b);
        return b;
    }

    private static byte[] Fill(int length, byte value)
    {
        var b = new byte[length];
        b.AsSpan().Fill(value);
        return b;
    }
}
