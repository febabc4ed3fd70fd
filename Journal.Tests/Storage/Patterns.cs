using Journal.Storage;

namespace Journal.Tests.Storage;

/// <summary>Recognisable sector contents for device tests.</summary>
internal static class Patterns
{
    /// <summary><paramref name="sectors"/> sectors, every byte of sector i = (tag + i) mod 251, never zero.</summary>
    public static byte[] Sectors(int sectors, int tag)
    {
        var data = new byte[sectors * BlockDevice.SectorSize];
        for (int s = 0; s < sectors; s++)
            data.AsSpan(s * BlockDevice.SectorSize, BlockDevice.SectorSize).Fill((byte)(1 + (tag + s) % 251));
        return data;
    }

    public static byte[] Random(Random random, int sectors)
    {
        var data = new byte[sectors * BlockDevice.SectorSize];
        random.NextBytes(data);
        return data;
    }

    public static ReadOnlySpan<byte> Sector(byte[] image, long sector) =>
        image.AsSpan((int)(sector * BlockDevice.SectorSize), BlockDevice.SectorSize);

    public static bool SectorEquals(byte[] image, long sector, ReadOnlySpan<byte> expected) =>
        Sector(image, sector).SequenceEqual(expected);
}
