using Snapshot.Format;

namespace Snapshot.Exceptions;

/// <summary>
/// The in-memory copy of one metadata area of a persistent COW file: its entries in commit order. Entries are only
/// appended, and an entry never changes once written, so writing any prefix of an area home is always correct and
/// replaying an older log copy of an area over a newer home copy rewrites identical bytes.
/// </summary>
/// <remarks>Fields are protected by the owning store's metadata lock.</remarks>
internal sealed class MetadataArea
{
    public MetadataArea(long index, ulong chunk, long capacity)
    {
        Index = index;
        Chunk = chunk;
        Capacity = capacity;
        Entries = new DiskException[(int)Math.Min(capacity, 256)]; // a whole area for 4 KiB chunks: it fills in order, so growing it only made garbage
    }

    /// <summary>Area number.</summary>
    public long Index { get; }

    /// <summary>Chunk of the COW file holding it.</summary>
    public ulong Chunk { get; }

    /// <summary>Entries it can hold (exceptions per area).</summary>
    public long Capacity { get; }

    /// <summary>Entries, <see cref="Count"/> of them used.</summary>
    public DiskException[] Entries;

    /// <summary>Entries in the area.</summary>
    public int Count;

    /// <summary>Entries known to be in the home copy (the COW file).</summary>
    public int HomeCount;

    /// <summary>True when no entry can be added.</summary>
    public bool IsFull => Count >= Capacity;

    public void Append(DiskException e)
    {
        if (IsFull) throw new InvalidOperationException($"metadata area {Index} is full");
        if (Count == Entries.Length) Array.Resize(ref Entries, (int)Math.Min(Capacity, (long)Entries.Length * 2));
        Entries[Count++] = e;
    }

    /// <summary>Formats entries [from, to) into <paramref name="dst"/> (16 bytes each).</summary>
    public void Format(int from, int to, Span<byte> dst)
    {
        for (int i = from; i < to; i++) Entries[i].Write(dst.Slice((i - from) * DiskException.Size, DiskException.Size));
    }

    /// <inheritdoc/>
    public override string ToString() => $"MetadataArea(index {Index}, chunk {Chunk}, {Count}/{Capacity} entries, {HomeCount} home)";
}
