using System.Buffers.Binary;
using Journal.Format;
using Journal.Storage;

namespace Journal.Tests.Cil;

/// <summary>
/// Test item home copies on a real block device: item <c>id</c> lives in slot <c>id</c> of <see cref="SlotSectors"/>
/// sectors. Slot layout (little-endian): u32 magic "HOME", u32 data length, u64 LSN, u32 CRC-32C of the length, LSN
/// and data, u32 zero, then the data. A slot that fails its check (never written, or torn by a crash) reads as absent.
/// </summary>
public sealed class DeviceHome(BlockDevice device) : ITestHome
{
    public const int SlotSectors = 4;
    public const int SlotBytes = SlotSectors * 512;
    public const int HeaderBytes = 24;
    public const int MaxData = SlotBytes - HeaderBytes;
    private const uint Magic = 0x454D4F48; // "HOME"

    public BlockDevice Device { get; } = device;
    public long Completes;

    public static long SectorsFor(int items) => (long)items * SlotSectors;

    public void Write(ulong id, byte[] data, Lsn lsn)
    {
        if (data.Length > MaxData) throw new ArgumentException($"item {id}: {data.Length} bytes do not fit a home slot");
        var slot = new byte[SlotBytes];
        BinaryPrimitives.WriteUInt32LittleEndian(slot, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(slot.AsSpan(4), data.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(slot.AsSpan(8), lsn.Value);
        data.CopyTo(slot.AsSpan(HeaderBytes));
        BinaryPrimitives.WriteUInt32LittleEndian(slot.AsSpan(16), Checksum(slot));
        Device.Write((long)id * SlotSectors, slot);
    }

    private static uint Checksum(byte[] slot)
    {
        int len = BinaryPrimitives.ReadInt32LittleEndian(slot.AsSpan(4));
        uint crc = Crc32C.Compute(slot.AsSpan(4, 12));
        return Crc32C.Append(crc, slot.AsSpan(HeaderBytes, len));
    }

    public bool TryGet(ulong id, out byte[] data, out Lsn lsn)
    {
        data = [];
        lsn = Lsn.Zero;
        var slot = new byte[SlotBytes];
        Device.Read((long)id * SlotSectors, slot);
        if (BinaryPrimitives.ReadUInt32LittleEndian(slot) != Magic) return false;
        int len = BinaryPrimitives.ReadInt32LittleEndian(slot.AsSpan(4));
        if (len < 0 || len > MaxData) return false;
        if (BinaryPrimitives.ReadUInt32LittleEndian(slot.AsSpan(16)) != Checksum(slot)) return false;
        data = slot.AsSpan(HeaderBytes, len).ToArray();
        lsn = Lsn.FromValue(BinaryPrimitives.ReadUInt64LittleEndian(slot.AsSpan(8)));
        return true;
    }

    public Lsn GetHomeLsn(ulong itemId) => TryGet(itemId, out _, out var lsn) ? lsn : Lsn.Zero;

    public void Apply(ulong itemId, Lsn checkpointLsn, IReadOnlyList<ReadOnlyMemory<byte>> regions)
    {
        var data = new byte[regions.Sum(r => r.Length)];
        int off = 0;
        foreach (var r in regions) { r.Span.CopyTo(data.AsSpan(off)); off += r.Length; }
        Write(itemId, data, checkpointLsn);
    }

    public void Complete()
    {
        Device.Flush();
        Interlocked.Increment(ref Completes);
    }
}
