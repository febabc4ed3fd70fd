namespace Snapshot.Format;

/// <summary>
/// Chunk arithmetic of a persistent COW file (the dm-snapshot persistent layout).
/// </summary>
/// <remarks>
/// <code>
/// chunk 0                      header chunk (see CowHeader)
/// chunk 1                      metadata area 0
/// chunks 2 .. 1+epa            data chunks described by area 0 (in allocation order)
/// chunk 1 + (epa+1)*i          metadata area i
/// ...
/// epa (exceptions per area) = chunk_size * 512 / 16; stride = epa + 1 chunks from one area to the next.
/// </code>
/// Allocation starts at chunk 2 and steps over every chunk that is a metadata area.
/// </remarks>
internal readonly struct CowLayout
{
    /// <summary>Chunks holding the header.</summary>
    public const long HeaderChunks = 1;

    /// <summary>The first data chunk of an empty COW file.</summary>
    public const ulong FirstDataChunk = 2;

    public CowLayout(int chunkSectors)
    {
        ChunkSectors = chunkSectors;
        ChunkBytes = (long)chunkSectors * 512;
        ExceptionsPerArea = ChunkBytes / DiskException.Size;
        ChunkShift = System.Numerics.BitOperations.Log2((uint)chunkSectors);
    }

    /// <summary>Chunk size in sectors (a power of two).</summary>
    public int ChunkSectors { get; }

    /// <summary>log2(ChunkSectors).</summary>
    public int ChunkShift { get; }

    /// <summary>Chunk size in bytes.</summary>
    public long ChunkBytes { get; }

    /// <summary>Exception entries in one metadata area (chunk_size * 512 / 16).</summary>
    public long ExceptionsPerArea { get; }

    /// <summary>Chunks from one area to the next.</summary>
    public long Stride => ExceptionsPerArea + 1;

    /// <summary>The chunk holding metadata area <paramref name="area"/>.</summary>
    public ulong AreaChunk(long area) => (ulong)(HeaderChunks + Stride * area);

    /// <summary>True when <paramref name="chunk"/> is a metadata area (or the header).</summary>
    public bool IsMetadataChunk(ulong chunk) => chunk == 0 || (chunk % (ulong)Stride) == (ulong)HeaderChunks;

    /// <summary>The area whose data region holds data chunk <paramref name="chunk"/> (chunk must be a data chunk).</summary>
    public long AreaOfDataChunk(ulong chunk) => (long)((chunk - (ulong)HeaderChunks) / (ulong)Stride);

    /// <summary>The next data chunk at or after <paramref name="chunk"/> (steps over a metadata chunk).</summary>
    public ulong SkipMetadata(ulong chunk) => IsMetadataChunk(chunk) ? (chunk == 0 ? FirstDataChunk : chunk + 1) : chunk;

    /// <summary>First sector of <paramref name="chunk"/>.</summary>
    public long ChunkToSector(ulong chunk) => (long)(chunk << ChunkShift);

    /// <inheritdoc/>
    public override string ToString() => $"CowLayout(chunk {ChunkSectors} sectors, {ExceptionsPerArea} exceptions/area, stride {Stride})";
}
