using System.Buffers.Binary;

namespace Journal.Tests.Campaign;

/// <summary>
/// Content that says where it came from: every 512-byte sector written by write number <c>w</c> at sector <c>s</c> of
/// a volume is a pure function of (run tag, w, s). So the expected content of a volume is a set of write numbers per
/// sector, and a wrong sector is reported as "write A expected, write B found" (or what else it holds: zeros, a sector
/// of another position, data of another run, a torn mix).
/// </summary>
/// <remarks>
/// Sector layout, little-endian:
/// <code>
/// offset size field
///      0    4 magic     0x504D4143 ("CAMP")
///      4    4 run tag   distinguishes runs (a seed), so a stale file of another run is never accepted
///      8    8 write     the write that produced it (1, 2, ...)
///     16    8 sector    the sector number within its volume
///     24  488 fill      xorshift64 stream seeded from (tag, write, sector): a sector torn inside itself is caught
/// </code>
/// Write 0 is the initial content of a fresh store: all zeros.
/// </remarks>
public static class SectorStamp
{
    public const int SectorSize = 512;
    public const uint Magic = 0x504D4143;

    /// <summary>Not a stamp of this run at this position (<see cref="Identify"/>).</summary>
    public const long Unrecognised = -1;

    /// <summary>A buffer of <paramref name="sectors"/> sectors of write <paramref name="write"/> from <paramref name="firstSector"/>.</summary>
    public static byte[] Make(uint tag, long write, long firstSector, int sectors)
    {
        var buffer = new byte[sectors * SectorSize];
        for (int i = 0; i < sectors; i++) Fill(buffer.AsSpan(i * SectorSize, SectorSize), tag, write, firstSector + i);
        return buffer;
    }

    /// <summary>One sector of write <paramref name="write"/> at <paramref name="sector"/>.</summary>
    public static void Fill(Span<byte> dest, uint tag, long write, long sector)
    {
        if (write == 0) { dest[..SectorSize].Clear(); return; }
        BinaryPrimitives.WriteUInt32LittleEndian(dest, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[4..], tag);
        BinaryPrimitives.WriteInt64LittleEndian(dest[8..], write);
        BinaryPrimitives.WriteInt64LittleEndian(dest[16..], sector);
        ulong x = Seed(tag, write, sector);
        for (int o = 24; o < SectorSize; o += 8)
        {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            BinaryPrimitives.WriteUInt64LittleEndian(dest[o..], x);
        }
    }

    /// <summary>
    /// The write <paramref name="data"/> (one sector read at <paramref name="sector"/>) came from: 0 for zeros, the write
    /// number for an intact stamp of this run at this position, else <see cref="Unrecognised"/>.
    /// </summary>
    public static long Identify(ReadOnlySpan<byte> data, uint tag, long sector)
    {
        data = data[..SectorSize];
        if (!data.ContainsAnyExcept((byte)0)) return 0;
        if (BinaryPrimitives.ReadUInt32LittleEndian(data) != Magic || BinaryPrimitives.ReadUInt32LittleEndian(data[4..]) != tag)
            return Unrecognised;
        long write = BinaryPrimitives.ReadInt64LittleEndian(data[8..]);
        if (write <= 0 || BinaryPrimitives.ReadInt64LittleEndian(data[16..]) != sector) return Unrecognised;
        ulong x = Seed(tag, write, sector);
        for (int o = 24; o < SectorSize; o += 8)
        {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            if (BinaryPrimitives.ReadUInt64LittleEndian(data[o..]) != x) return Unrecognised;
        }
        return write;
    }

    /// <summary>What an unrecognised sector holds, for a failure message.</summary>
    public static string Describe(ReadOnlySpan<byte> data, uint tag, long sector)
    {
        data = data[..SectorSize];
        long id = Identify(data, tag, sector);
        if (id == 0) return "zeros (write 0)";
        if (id > 0) return $"write {id}";
        if (BinaryPrimitives.ReadUInt32LittleEndian(data) != Magic)
            return $"unrecognised data (first bytes {Convert.ToHexString(data[..16])})";
        uint otherTag = BinaryPrimitives.ReadUInt32LittleEndian(data[4..]);
        long write = BinaryPrimitives.ReadInt64LittleEndian(data[8..]);
        long at = BinaryPrimitives.ReadInt64LittleEndian(data[16..]);
        if (otherTag != tag) return $"a stamp of another run (tag {otherTag:x8}, write {write}, sector {at})";
        if (at != sector) return $"write {write}'s sector {at} (misplaced: a chunk mapped to the wrong place)";
        return $"write {write} at this sector, torn or damaged after byte 24";
    }

    private static ulong Seed(uint tag, long write, long sector)
    {
        ulong x = (ulong)sector * 0x9E3779B97F4A7C15UL ^ (ulong)write * 0xC2B2AE3D27D4EB4FUL ^ (ulong)tag * 0x165667B19E3779F9UL;
        return x == 0 ? 0x2545F4914F6CDD1DUL : x;
    }
}
