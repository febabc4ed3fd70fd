using System.Buffers.Binary;

namespace Snapshot.Format;

/// <summary>
/// One exception as stored in a metadata area: 16 bytes.
/// <code>
/// offset 0  le64 old_chunk   chunk of the origin
/// offset 8  le64 new_chunk   chunk of the COW file holding its data; 0 terminates the area
/// </code>
/// </summary>
internal readonly record struct DiskException(ulong OldChunk, ulong NewChunk)
{
    /// <summary>Bytes on disk.</summary>
    public const int Size = 16;

    /// <summary>True for the zeroed terminator entry.</summary>
    public bool IsTerminator => NewChunk == 0;

    public static DiskException Read(ReadOnlySpan<byte> src) =>
        new(BinaryPrimitives.ReadUInt64LittleEndian(src), BinaryPrimitives.ReadUInt64LittleEndian(src[8..]));

    public void Write(Span<byte> dst)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(dst, OldChunk);
        BinaryPrimitives.WriteUInt64LittleEndian(dst[8..], NewChunk);
    }

    /// <inheritdoc/>
    public override string ToString() => $"DiskException(old_chunk {OldChunk}, new_chunk {NewChunk})";
}
