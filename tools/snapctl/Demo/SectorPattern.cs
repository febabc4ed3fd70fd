using System.Buffers.Binary;

namespace SnapCtl.Demo;

/// <summary>
/// The content the demo writes: every 512-byte sector written by write number <c>v</c> (a version, unique across
/// the run) at sector <c>s</c> of a target is a pure function of (s, v), so the expected content of a whole
/// target is one version number per sector, and a wrong sector can say which write it came from.
/// </summary>
/// <remarks>
/// Sector layout, little-endian:
/// <code>
/// offset size field
///      0    4 magic     0x534D4544 ("DEMS")
///      4    4 version   the write that produced it (1, 2, ...)
///      8    8 sector    the sector number within its target
///     16  496 fill      xorshift64 stream seeded from (sector, version)
/// </code>
/// Version 0 is the initial content: all zeros.
/// </remarks>
internal static class SectorPattern
{
    public const int SectorSize = 512;
    public const uint Magic = 0x534D4544;

    /// <summary>Fills <paramref name="buffer"/> (whole sectors) with the content of <paramref name="version"/> from <paramref name="firstSector"/>.</summary>
    public static void Fill(Span<byte> buffer, long firstSector, int version)
    {
        for (int i = 0; i < buffer.Length / SectorSize; i++)
            FillSector(buffer.Slice(i * SectorSize, SectorSize), firstSector + i, version);
    }

    /// <summary>One sector of <paramref name="version"/>.</summary>
    public static void FillSector(Span<byte> sector, long sectorNumber, int version)
    {
        if (version == 0) { sector.Clear(); return; }
        BinaryPrimitives.WriteUInt32LittleEndian(sector, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(sector[4..], version);
        BinaryPrimitives.WriteInt64LittleEndian(sector[8..], sectorNumber);
        ulong x = Seed(sectorNumber, version);
        for (int o = 16; o < SectorSize; o += 8)
        {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            BinaryPrimitives.WriteUInt64LittleEndian(sector[o..], x);
        }
    }

    /// <summary>
    /// Which version <paramref name="sector"/> holds: 0 for zeros, the version for a correct sector of
    /// <paramref name="sectorNumber"/>, or -1 for anything else (garbage, a sector of another position, a torn fill).
    /// </summary>
    public static int Identify(ReadOnlySpan<byte> sector, long sectorNumber)
    {
        if (!sector.ContainsAnyExcept((byte)0)) return 0;
        if (BinaryPrimitives.ReadUInt32LittleEndian(sector) != Magic) return -1;
        int version = BinaryPrimitives.ReadInt32LittleEndian(sector[4..]);
        if (version <= 0 || BinaryPrimitives.ReadInt64LittleEndian(sector[8..]) != sectorNumber) return -1;
        ulong x = Seed(sectorNumber, version);
        for (int o = 16; o < SectorSize; o += 8)
        {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            if (BinaryPrimitives.ReadUInt64LittleEndian(sector[o..]) != x) return -1;
        }
        return version;
    }

    private static ulong Seed(long sector, int version)
    {
        ulong z = (ulong)sector * 0x9E3779B97F4A7C15UL ^ (ulong)(uint)version * 0xBF58476D1CE4E5B9UL;
        z ^= z >> 31;
        return z == 0 ? 0x2545F4914F6CDD1DUL : z;
    }
}
