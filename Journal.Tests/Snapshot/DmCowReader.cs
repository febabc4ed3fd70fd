using System.Buffers.Binary;

namespace Journal.Tests.Snapshot;

/// <summary>
/// Reads a COW image the way dm-snapshot's persistent store does at load time, written independently of the store's
/// code: the 16-byte header of chunk 0, then metadata area i at chunk 1 + (epa + 1) * i, entries until the first with
/// new_chunk == 0, moving on to the next area only when an area is full.
/// </summary>
internal sealed record DmCow(uint Magic, uint Valid, uint Version, uint ChunkSectors, List<(ulong Old, ulong New)> Exceptions, int AreasRead)
{
    public static DmCow Read(byte[] image)
    {
        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(image);
        uint valid = BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(4));
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(8));
        uint chunk = BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(12));
        var list = new List<(ulong, ulong)>();
        if (magic != 0x70416e53 || chunk == 0) return new DmCow(magic, valid, version, chunk, list, 0);
        long chunkBytes = chunk * 512L;
        long epa = chunkBytes / 16;
        int areas = 0;
        for (long area = 0; ; area++)
        {
            long offset = (1 + (epa + 1) * area) * chunkBytes;
            if (offset + chunkBytes > image.Length) throw new InvalidOperationException($"area {area} at byte {offset} is past the end of the image ({image.Length} bytes)");
            areas++;
            bool full = true;
            for (long i = 0; i < epa; i++)
            {
                ulong o = BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan((int)(offset + i * 16)));
                ulong n = BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan((int)(offset + i * 16 + 8)));
                if (n == 0) { full = false; break; }
                list.Add((o, n));
            }
            if (!full) break;
        }
        return new DmCow(magic, valid, version, chunk, list, areas);
    }
}
